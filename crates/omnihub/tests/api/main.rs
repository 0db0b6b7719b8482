//! One integration-test binary: every test talks HTTP to a real hub on a
//! random port with a fresh database (see `support`).

mod support;

mod foundation;
mod identity;
mod tracking;
