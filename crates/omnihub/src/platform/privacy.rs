//! The contract between privacy requests and the contexts that hold personal
//! data. Privacy requests (`engagement::privacy`) know no table: each context
//! that keeps something about a person lists an export [`Section`] and an
//! erasure [`Step`] of its own, and the composition root (`app::privacy`)
//! hands the list to the request runner. A capability added later (messages,
//! flows, stored value) registers its own section and step there; nothing
//! else changes.
//!
//! The platform knows no domain, so the person is described here in plain
//! terms ([`Subject`]): the profile ids and the identifiers the identity graph
//! gave them, resolved once when the request was filed.

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use sqlx::AnyConnection;

use crate::platform::storage::{StoreError, Tx};

/// A person as a privacy request names them: every profile id (the survivor
/// and those merged into it) and every identifier that is a member of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The profile the request resolved to (the survivor).
    pub customer_id: String,
    /// The survivor's id first, then the ids merged into it.
    pub customer_ids: Vec<String>,
    /// The member identifiers of those profiles.
    pub identifiers: Vec<SubjectIdentifier>,
    /// Identifiers linked to the person's that are nobody's own (a shared
    /// device): the person's calls anchored there are theirs to erase, the
    /// device and the other people's calls stay.
    #[serde(default)]
    pub linked_identifier_ids: Vec<String>,
}

/// One identifier of the subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectIdentifier {
    pub id: String,
    pub kind: String,
    pub value: String,
}

impl Subject {
    /// Values of the subject's identifiers of `kind`.
    pub fn values_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.identifiers
            .iter()
            .filter(move |i| i.kind == kind)
            .map(|i| i.value.as_str())
    }

    pub fn identifier_ids(&self) -> Vec<String> {
        self.identifiers.iter().map(|i| i.id.clone()).collect()
    }

    /// Every string that names this person anywhere the hub copies data
    /// (event payloads, stored answers): profile ids, identifier ids and
    /// identifier values. Erasure redacts any text that contains one.
    pub fn tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self.customer_ids.clone();
        for identifier in &self.identifiers {
            tokens.push(identifier.id.clone());
            tokens.push(identifier.value.clone());
        }
        // Very short values (a one-letter user id) would match unrelated
        // text; identifiers that short are refused by no rule, so they are
        // matched only as whole strings (`mentions`).
        tokens.sort();
        tokens.dedup();
        tokens
    }
}

/// Shortest token matched inside longer text; shorter ones match whole strings only.
pub const MIN_EMBEDDED_TOKEN: usize = 6;

/// Whether `text` names the subject: equals one of `tokens`, or contains one
/// at least [`MIN_EMBEDDED_TOKEN`] characters long.
pub fn mentions(text: &str, tokens: &[String]) -> bool {
    tokens
        .iter()
        .any(|t| text == t || (t.len() >= MIN_EMBEDDED_TOKEN && text.contains(t.as_str())))
}

/// Payload members that hold personal data, removed at any depth when a
/// copy of data about an erased person is redacted. `properties` is what a
/// person's tracking call said (free-form: a name, a search, a note), so it
/// goes whole.
pub const PERSONAL_MEMBERS: [&str; 13] = [
    "address",
    "shipping_address",
    "buyer_alias",
    "email",
    "phone",
    "name",
    "first_name",
    "last_name",
    "traits",
    "context",
    "properties",
    "identifiers",
    "ip",
];

/// What replaces erased text.
pub const ERASED: &str = "[erased]";

/// Redacts a JSON copy of data about the subject: every personal member
/// becomes [`ERASED`], and every string that mentions the subject too.
/// Returns whether anything changed.
pub fn redact(value: &mut Value, tokens: &[String]) -> bool {
    match value {
        Value::String(text) if mentions(text, tokens) => {
            *text = ERASED.to_string();
            true
        }
        Value::Object(members) => {
            let mut changed = false;
            for (name, member) in members.iter_mut() {
                if PERSONAL_MEMBERS.contains(&name.as_str()) {
                    if *member != Value::String(ERASED.into()) {
                        *member = Value::String(ERASED.into());
                        changed = true;
                    }
                } else {
                    changed |= redact(member, tokens);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| redact(item, tokens) | changed),
        _ => false,
    }
}

/// Redacts stored JSON text about the subject; `None` when it does not
/// mention them (checked on the raw text first, so unrelated rows cost a
/// substring search, not a parse). Text that is not JSON is replaced whole.
pub fn redact_text(text: &str, tokens: &[String]) -> Option<String> {
    // Short tokens count only as a whole JSON string (`"t"`), checked in
    // place: this runs on every event of the outbox during an erasure.
    let mentioned = tokens.iter().any(|t| {
        if t.len() >= MIN_EMBEDDED_TOKEN {
            text.contains(t.as_str())
        } else {
            text.match_indices(t.as_str())
                .any(|(at, _)| text[..at].ends_with('"') && text[at + t.len()..].starts_with('"'))
        }
    });
    if !mentioned {
        return None;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) => {
            redact(&mut value, tokens);
            Some(value.to_string())
        }
        Err(_) => Some(Value::String(ERASED.into()).to_string()),
    }
}

/// The event type that ends an erasure; each node's event tail drops what
/// it holds in memory when it sees one, so live streams re-read redacted
/// events from the database.
pub const ERASURE_COMPLETED: &str = "privacy.erasure_completed";

/// The event type that tells connected systems whom to erase (its payload
/// names the identifiers; erasure never redacts it, retention purges it).
pub const ERASURE_REQUESTED: &str = "privacy.erasure_requested";

/// One page of an export section: its records and where the next page
/// starts (`None`: the section is complete).
pub type Page = (Vec<Value>, Option<String>);

/// Reads one page of a section for `subject` after `cursor`, at most `limit` records.
pub type PageFn = for<'c> fn(
    &'c mut AnyConnection,
    &'c Subject,
    Option<String>,
    usize,
) -> BoxFuture<'c, Result<Page, StoreError>>;

/// A part of an access export (`identifiers`, `timeline`, `orders`, …).
#[derive(Clone, Copy)]
pub struct Section {
    pub name: &'static str,
    pub page: PageFn,
}

/// What one erasure chunk did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Rows deleted or pseudonymized by this chunk.
    pub changed: u64,
    /// Where the step resumes; `None`: the step is complete.
    pub next: Option<String>,
}

impl Chunk {
    pub fn done(changed: u64) -> Chunk {
        Chunk {
            changed,
            next: None,
        }
    }
}

/// Runs one chunk of a step inside the writer's transaction: at most about
/// `limit` rows, resuming at `cursor`. Chunks are short so that other writers
/// never wait long behind an erasure, and the runner records each chunk's
/// `next` in the same transaction, so a crash resumes where it stopped.
pub type EraseFn = for<'t> fn(
    &'t mut Tx,
    &'t Subject,
    Option<String>,
    usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>>;

/// One context's part of an erasure.
#[derive(Clone, Copy)]
pub struct Step {
    pub name: &'static str,
    pub erase: EraseFn,
}

/// The sections and steps of every context, in the order they run, and
/// the retention rules.
#[derive(Clone, Default)]
pub struct Participants {
    pub sections: Vec<Section>,
    pub steps: Vec<Step>,
    pub retention: Vec<Retention>,
}

/// Deletes up to `limit` rows of one kind older than `before` (µs) inside the
/// writer's transaction; returns how many.
pub type PruneFn = for<'t> fn(&'t mut Tx, i64, usize) -> BoxFuture<'t, Result<u64, StoreError>>;

/// A retention rule: rows of `kind` older than `keep` are deleted by the
/// privacy runner (`None`: kept until erased).
#[derive(Clone, Copy)]
pub struct Retention {
    pub kind: &'static str,
    pub keep: Option<std::time::Duration>,
    pub prune: PruneFn,
}

/// A keyed hash of a personal value (HMAC-SHA-256 under the hub's secret,
/// hex): what the hub keeps of an erased identifier, so it can recognise the
/// value again without holding it.
pub fn keyed_hash(secret: &[u8], kind: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(kind.as_bytes());
    mac.update(b":");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub use crate::platform::storage::secrets::hub_secret;

/// A stored row as an export record: every column by name, integers and
/// text as they are, JSON text (traits, properties, addresses) parsed.
/// Exports read whole rows this way so nothing a table holds is left out.
pub fn record(row: &sqlx::any::AnyRow) -> Value {
    use sqlx::{Column, Row};
    let mut out = serde_json::Map::new();
    for column in row.columns() {
        let i = column.ordinal();
        let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            v.map(Value::from).unwrap_or(Value::Null)
        } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
            match v {
                None => Value::Null,
                Some(text) if text.starts_with('{') || text.starts_with('[') => {
                    serde_json::from_str(&text).unwrap_or(Value::String(text))
                }
                Some(text) => Value::String(text),
            }
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
            v.map(Value::from).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        out.insert(column.name().to_string(), value);
    }
    Value::Object(out)
}

/// The `id` column of rows.
pub fn ids_of(rows: &[sqlx::any::AnyRow]) -> Vec<String> {
    use sqlx::Row;
    rows.iter()
        .filter_map(|r| r.try_get::<String, _>("id").ok())
        .collect()
}

/// One page of parent rows (carts, orders) as records, each with its child
/// rows (lines) under `member`: a child names its parent in
/// `parent_column`. A full page's cursor is its last parent's id.
pub fn page_with_children(
    parents: &[sqlx::any::AnyRow],
    children: &[sqlx::any::AnyRow],
    parent_column: &str,
    member: &str,
    limit: usize,
) -> Page {
    let mut by_parent: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for child in children.iter().map(record) {
        let parent = child[parent_column]
            .as_str()
            .unwrap_or_default()
            .to_string();
        by_parent.entry(parent).or_default().push(child);
    }
    let records: Vec<Value> = parents
        .iter()
        .map(|row| {
            let mut parent = record(row);
            let id = parent["id"].as_str().unwrap_or_default().to_string();
            parent[member] = Value::Array(by_parent.remove(&id).unwrap_or_default());
            parent
        })
        .collect();
    let next = match records.len() == limit {
        true => records
            .last()
            .and_then(|r| r["id"].as_str())
            .map(str::to_string),
        false => None,
    };
    (records, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_removes_personal_members_and_mentions() {
        let tokens = vec!["kim@example.com".to_string(), "c-1".to_string()];
        let mut payload = json!({
            "customer_id": "c-1",
            "note": "sent to kim@example.com today",
            "total_minor": 1200,
            "address": {"city": "Lyon"},
            "lines": [{"sku": "SHIRT", "by": "c-10"}],
        });
        assert!(redact(&mut payload, &tokens));
        assert_eq!(
            payload,
            json!({
                "customer_id": ERASED,
                "note": ERASED,
                "total_minor": 1200,
                "address": ERASED,
                // A short token matches whole strings only.
                "lines": [{"sku": "SHIRT", "by": "c-10"}],
            })
        );
        assert!(!redact(&mut payload, &tokens), "redaction is idempotent");
        // Stored text: a short token counts as a whole string only.
        assert_eq!(redact_text(r#"{"by":"c-10"}"#, &tokens), None);
        assert_eq!(
            redact_text(r#"{"by":"c-1"}"#, &tokens).as_deref(),
            Some(r#"{"by":"[erased]"}"#)
        );
    }
}
