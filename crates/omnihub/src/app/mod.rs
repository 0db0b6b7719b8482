//! The composition root: it knows every context and wires them together
//! (state, router, OpenAPI document, the customer 360° view, the server and
//! the CLI). Nothing below imports it.

pub mod cli;
pub mod customer_view;
pub mod event_catalog;
pub mod openapi;
pub mod operations;
pub mod privacy;
pub mod router;
pub mod server;
pub mod state;

pub use state::{AppParts, AppState};
