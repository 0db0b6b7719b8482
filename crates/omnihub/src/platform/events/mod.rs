//! Domain events and the outbox.
//!
//! Every state change emits a [`NewEvent`] through [`crate::platform::storage::Tx::emit`];
//! the group-commit writer appends it to the `events` table in the same
//! transaction. The table is the feed: its `position` is commit order, so a
//! consumer that remembers the last position it saw never misses an event.
//! Consumers: the pull feed (`GET /v1/events`), the live stream (`stream`,
//! fed by the per-node [`tail::Tail`]) and webhooks (`crate::platform::webhooks`).

pub mod http;
pub mod privacy;
mod store;
// The feed as the platform's consumers read it (webhook delivery, the
// catch-up of the live stream, benchmarks).
pub use store::{by_positions, head, list_after, list_range, notify_channel};
pub mod stream;
pub mod tail;
pub mod types;
pub mod visibility;

pub use crate::platform::storage::outbox::{Event, NewEvent};
pub(crate) use types::event_types;
pub use types::{DomainEvent, EventTypeInfo};

/// A filter on event types: exact names (`channel.created`) or prefixes
/// ending in `.*` (`cart.*`). Empty matches everything.
#[derive(Clone, Debug, Default)]
pub struct TypeFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

/// At most this many type patterns in one filter.
pub const MAX_TYPE_PATTERNS: usize = 32;

impl TypeFilter {
    /// Parses a comma-separated list. Returns the offending pattern on error.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut filter = TypeFilter::default();
        for pattern in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            filter.add(pattern)?;
        }
        Ok(filter)
    }

    pub fn from_patterns<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut filter = TypeFilter::default();
        for pattern in patterns {
            filter.add(pattern.trim())?;
        }
        Ok(filter)
    }

    fn add(&mut self, pattern: &str) -> Result<(), String> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.';
        if self.exact.len() + self.prefixes.len() >= MAX_TYPE_PATTERNS {
            return Err(format!("at most {MAX_TYPE_PATTERNS} event types"));
        }
        if pattern == "*" {
            self.prefixes.push(String::new());
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            if prefix.is_empty() || !prefix.ends_with('.') || !prefix.chars().all(valid_char) {
                return Err(pattern.to_string());
            }
            self.prefixes.push(prefix.to_string());
        } else if !pattern.is_empty() && pattern.chars().all(valid_char) {
            self.exact.push(pattern.to_string());
        } else {
            return Err(pattern.to_string());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    pub fn matches(&self, kind: &str) -> bool {
        self.is_empty()
            || self.exact.iter().any(|e| e == kind)
            || self.prefixes.iter().any(|p| kind.starts_with(p.as_str()))
    }

    /// The patterns as given, for storage and display.
    pub fn patterns(&self) -> Vec<String> {
        self.exact
            .iter()
            .cloned()
            .chain(self.prefixes.iter().map(|p| format!("{p}*")))
            .collect()
    }
}
