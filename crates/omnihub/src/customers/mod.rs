//! The people side: every interaction from every channel (tracking), the
//! identity graph that joins identifiers into one customer (identity), what
//! the hub knows of a customer (profiles) and company groups (groups).
//!
//! Nothing here imports [`crate::commerce`]: identity announces merges and
//! unmerges through hooks ([`identity::FollowUps`]) that commerce registers.

pub mod groups;
pub mod identity;
pub mod tracking;
