//! Contact preferences: the channels a person prefers, in order, their
//! language and time zone, quiet hours, how often they want to hear about
//! each purpose, and the global suppression flag (no message at all, not
//! even a transactional one). They feed message orchestration and
//! `may_contact` (suppression).
//!
//! A document is stored per profile id as the request named it; a person's
//! preferences are the newest document among their profile ids (so a merge
//! shows the latest one and an unmerge gives each profile its own back),
//! except suppression, which holds when any of their documents says so.

pub mod events;
pub mod http;
mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::engagement::consent::{ContactChannel, Purpose};
use crate::platform::events::NewEvent;
use crate::platform::ids::ChannelId;
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time;
use events::{PreferencesEvent, PreferencesUpdated};

/// Quiet hours, local to the person's time zone: no message from `start`
/// until `end` (`22:00`–`08:00` spans midnight).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, 24-hour clock.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    /// `HH:MM`, 24-hour clock.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub end: String,
}

/// How often a person wants to hear about a purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Any,
    Daily,
    Weekly,
    Monthly,
    Never,
}

/// A person's contact preferences.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Contact channels, most preferred first (each at most once).
    #[serde(default)]
    pub channel_order: Vec<ContactChannel>,
    /// BCP 47 language tag, e.g. `fr-CA`.
    #[schema(max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
    pub language: Option<String>,
    /// IANA time zone, e.g. `Europe/Paris`.
    #[schema(max_length = 64)]
    pub time_zone: Option<String>,
    pub quiet_hours: Option<QuietHours>,
    /// How often, per purpose.
    #[serde(default)]
    pub frequency: BTreeMap<Purpose, Frequency>,
    /// No message at all, transactional ones included (a legal block, a
    /// person who asked to hear nothing more).
    #[serde(default)]
    pub suppressed: bool,
}

/// Why a preferences document was refused: the field and the reason.
pub type Invalid = (&'static str, String);

fn valid_clock(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 5
        && bytes[2] == b':'
        && text[..2]
            .parse::<u8>()
            .is_ok_and(|h| h < 24 && bytes[0].is_ascii_digit())
        && text[3..]
            .parse::<u8>()
            .is_ok_and(|m| m < 60 && bytes[3].is_ascii_digit())
}

/// A BCP 47 language tag in its common form (`fr`, `fr-CA`, `zh-Hant-TW`).
pub fn valid_language(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or("");
    tag.len() <= 35
        && (2..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl Preferences {
    /// Checks the document: an IANA time zone, a language tag, clock times,
    /// each channel once.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(zone) = &self.time_zone {
            if zone.parse::<chrono_tz::Tz>().is_err() {
                return Err((
                    "time_zone",
                    format!("{zone:?} is not an IANA time zone (e.g. Europe/Paris)"),
                ));
            }
        }
        if let Some(language) = &self.language {
            if !valid_language(language) {
                return Err(("language", format!("{language:?} is not a BCP 47 tag")));
            }
        }
        if let Some(quiet) = &self.quiet_hours {
            for (field, text) in [
                ("quiet_hours.start", &quiet.start),
                ("quiet_hours.end", &quiet.end),
            ] {
                if !valid_clock(text) {
                    return Err((field, format!("{text:?} is not HH:MM")));
                }
            }
        }
        let mut seen = Vec::new();
        for channel in &self.channel_order {
            if seen.contains(channel) {
                return Err((
                    "channel_order",
                    format!("{} is listed twice", channel.as_str()),
                ));
            }
            seen.push(*channel);
        }
        Ok(())
    }
}

/// A person's preferences: the newest document among `customer_ids`, with
/// `suppressed` when any of them is (`None`: never set).
pub async fn of_person(
    conn: &mut sqlx::AnyConnection,
    customer_ids: &[String],
) -> Result<Option<(Preferences, i64)>, StoreError> {
    let documents = store::documents(conn, customer_ids).await?;
    let suppressed = documents.iter().any(|d| d.2);
    let Some((_, text, _, updated_at)) = documents.into_iter().next() else {
        return Ok(None);
    };
    let mut preferences: Preferences = serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("customer_preferences.document: {e}")))?;
    preferences.suppressed |= suppressed;
    Ok(Some((preferences, updated_at)))
}

/// Replaces the preferences written for profile `customer_id` (the person
/// `person_id` now) and emits `preferences.updated`.
pub async fn put(
    tx: &mut Tx,
    customer_id: &str,
    person_id: &str,
    preferences: &Preferences,
    channel: ChannelId,
) -> Result<(), StoreError> {
    let now = tx.now();
    let text = serde_json::to_string(preferences)
        .map_err(|e| StoreError::Corrupt(format!("preferences: {e}")))?;
    store::upsert(
        tx.conn(),
        customer_id,
        &text,
        preferences.suppressed,
        time::to_micros(now),
    )
    .await?;
    tx.emit(
        NewEvent::of(
            &PreferencesEvent::Updated(PreferencesUpdated {
                customer_id: person_id.to_string(),
                preferences: preferences.clone(),
            }),
            now,
        )
        .channel(Some(channel))
        .subject("customer_id", person_id),
    );
    Ok(())
}

/// Every preferences document of `customer_ids`, for the access export.
pub async fn export_documents(
    conn: &mut sqlx::AnyConnection,
    customer_ids: &[String],
) -> Result<Value, StoreError> {
    let documents = store::documents(conn, customer_ids).await?;
    Ok(Value::Array(
        documents
            .into_iter()
            .map(|(customer_id, text, suppressed, updated_at)| {
                let document: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                json!({
                    "customer_id": customer_id,
                    "document": document,
                    "suppressed": suppressed,
                    "updated_at": time::from_micros(updated_at),
                })
            })
            .collect(),
    ))
}

/// Deletes the preferences documents of `customer_ids`; returns how many.
pub async fn erase_documents(
    conn: &mut sqlx::AnyConnection,
    customer_ids: &[String],
) -> Result<u64, StoreError> {
    store::delete(conn, customer_ids).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let mut p = Preferences {
            time_zone: Some("Europe/Paris".into()),
            language: Some("fr-CA".into()),
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "08:30".into(),
            }),
            ..Preferences::default()
        };
        assert_eq!(p.validate(), Ok(()));
        p.time_zone = Some("Mars/Olympus".into());
        assert_eq!(p.validate().unwrap_err().0, "time_zone");
        p.time_zone = None;
        p.quiet_hours = Some(QuietHours {
            start: "24:00".into(),
            end: "08:00".into(),
        });
        assert_eq!(p.validate().unwrap_err().0, "quiet_hours.start");
        p.quiet_hours = None;
        p.channel_order = vec![ContactChannel::Sms, ContactChannel::Sms];
        assert_eq!(p.validate().unwrap_err().0, "channel_order");
    }
}
