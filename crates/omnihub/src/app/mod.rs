//! The composition root: it knows every context and wires them together
//! (the server, the CLI). Nothing below imports it.

pub mod cli;
pub mod event_catalog;
pub mod server;
