//! One integration-test binary: every test talks HTTP to a real hub on a
//! random port with a fresh database (see `support`).

mod support;

mod carts;
mod foundation;
mod inventory;
mod inventory_properties;
mod orders;
mod worked_example;
