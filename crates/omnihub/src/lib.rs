//! omnihub: the omnichannel commerce hub.
//!
//! The crate is laid out by domain. Each domain module (`channels`, `keys`,
//! `events`, `webhooks`, …) holds its domain types in `mod.rs`, its SQL in
//! `store.rs` and its HTTP handlers in `http.rs`. Cross-cutting pieces live in
//! `storage` (connections, migrations, the group-commit writer) and `http`
//! (router, errors, auth, idempotency, pagination, OpenAPI).
//!
//! See `ARCHITECTURE.md` at the repository root for the code map and the
//! invariants the code keeps.

pub mod carts;
pub mod catalog;
pub mod channels;
pub mod cli;
pub mod config;
pub mod customers;
pub mod events;
pub mod groups;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod inventory;
pub mod keys;
pub mod locations;
pub mod metrics;
pub mod orders;
pub mod panic_log;
pub mod server;
pub mod storage;
pub mod time;
pub mod tracking;
pub mod webhooks;
