//! One integration-test binary: every test talks HTTP to a real hub on a
//! random port with a fresh database (see `support`).

mod node;
mod receiver;
mod sse;
mod support;

mod architecture;
mod auth;
mod backup;
mod browser;
mod carts;
mod catalog;
mod consent;
mod consent_identity;
mod consent_links;
mod contract;
mod conventions;
mod event_catalog;
mod event_visibility;
mod events;
mod first_hour;
mod foundation;
mod fuzz;
mod idempotency;
mod identity;
mod identity_trust;
mod inventory;
mod inventory_properties;
mod limits;
mod metrics;
pub mod multinode;
mod openapi;
mod orders;
mod ownership;
mod pagination;
mod profile_commerce;
mod promises;
mod shared_database;
mod stream;
mod tracking;
mod tracking_isolation;
mod traits;
mod unmerge;
mod upgrade;
mod webhook_destinations;
mod webhooks;
mod worked_example;
