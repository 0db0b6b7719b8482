//! omnihub: the omnichannel commerce hub.
//!
//! The crate is laid out by bounded context, and dependencies point one way:
//!
//! - [`platform`]: what every capability stands on (storage and the
//!   group-commit writer, the outbox and its consumers, HTTP plumbing,
//!   authentication and API keys, channels, idempotency, metrics, settings).
//!   It knows no domain.
//! - [`customers`]: the people side (tracking, identity resolution, profiles,
//!   groups). It stands on the platform and never imports commerce.
//! - [`commerce`]: catalog, locations, inventory, carts and orders. It calls
//!   the customers context's public API, never its storage.
//! - [`engagement`]: what the hub may do with a person and what they may
//!   ask of it: consent, notices and contact preferences, and privacy
//!   requests (access exports, erasure). It calls customers and commerce
//!   through their public API.
//! - [`app`]: the composition root (application state, the router, the
//!   composite views such as the customer 360° view, the server and the CLI).
//!
//! Inside a context each domain folder holds `mod.rs` (types, rules, the
//! functions that run a change inside `store.write`), a private `store.rs`
//! (its SQL; no other domain can name it) and `http.rs` (handlers).
//!
//! See `ARCHITECTURE.md` at the repository root for the code map and the
//! invariants the code keeps.

pub mod app;
pub mod commerce;
pub mod customers;
pub mod engagement;
pub mod platform;
