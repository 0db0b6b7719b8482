//! Time is UTC everywhere. In the database a timestamp is an integer count of
//! microseconds since the Unix epoch (`BIGINT`), the one representation both
//! backends index and compare the same way.

use chrono::{DateTime, TimeZone, Utc};

pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to the microsecond the database keeps, so a
/// value reads back exactly as it was written.
pub fn now() -> Timestamp {
    from_micros(to_micros(Utc::now()))
}

pub fn to_micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> Timestamp {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}
