//! Consent settings: how the categories of a consent banner (Segment's
//! `context.consent.categoryPreferences`, e.g. `{"Advertising": false,
//! "Analytics": true}`) map to purposes and channels. Stored in the database
//! (one document, every node reads the same), `GET`/`PUT
//! /v1/consent/settings`; absent, [`ConsentSettings::default`] holds.
//!
//! Category names are matched ignoring case and anything but letters and
//! digits (`Data Sharing` = `datasharing`). A category the map does not name
//! is ignored (and reported in the tracking answer's `ignored`).

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::events::ConsentEvent;
use super::{ContactChannel, Purpose};
use crate::engagement::EngagementState;
use crate::platform::events::NewEvent;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::Json;
use crate::platform::http::problem::{ApiError, Problem};
use crate::platform::storage::StoreError;
use crate::platform::time;

/// Most categories in the map.
pub const MAX_CATEGORIES: usize = 100;

/// Where one banner category's decision goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryTarget {
    pub purpose: Purpose,
    /// The channels the decision covers.
    #[schema(min_items = 1)]
    pub channels: Vec<ContactChannel>,
}

/// The consent settings document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentSettings {
    /// Banner category name → the purposes and channels it decides.
    pub categories: BTreeMap<String, Vec<CategoryTarget>>,
}

impl Default for ConsentSettings {
    /// The common banner categories (Segment Consent Manager, OneTrust's
    /// names): advertising and data sharing decide `advertising` on `ads`;
    /// analytics and personalization decide their purpose on every channel.
    fn default() -> Self {
        let ads = |purpose| {
            vec![CategoryTarget {
                purpose,
                channels: vec![ContactChannel::Ads],
            }]
        };
        let every = |purpose| {
            vec![CategoryTarget {
                purpose,
                channels: ContactChannel::ALL.to_vec(),
            }]
        };
        let mut categories = BTreeMap::new();
        for name in [
            "advertising",
            "targeting",
            "datasharing",
            "marketingandanalytics",
        ] {
            categories.insert(name.to_string(), ads(Purpose::Advertising));
        }
        for name in ["analytics", "performance"] {
            categories.insert(name.to_string(), every(Purpose::Analytics));
        }
        for name in ["personalization", "functional"] {
            categories.insert(name.to_string(), every(Purpose::Personalization));
        }
        ConsentSettings { categories }
    }
}

/// A category name as the map matches it.
pub fn category_key(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl ConsentSettings {
    /// What category `name` decides, if the map names it.
    pub fn targets(&self, name: &str) -> Option<&[CategoryTarget]> {
        self.categories.get(&category_key(name)).map(Vec::as_slice)
    }

    fn normalized(self) -> Result<ConsentSettings, ApiError> {
        if self.categories.len() > MAX_CATEGORIES {
            return Err(ApiError::invalid_field(
                "categories",
                "at most 100 categories",
            ));
        }
        let mut categories = BTreeMap::new();
        for (name, targets) in self.categories {
            let key = category_key(&name);
            if key.is_empty() || key.len() > 64 {
                return Err(ApiError::invalid_field(
                    format!("categories.{name}"),
                    "a name of 1 to 64 letters and digits",
                ));
            }
            if targets.iter().any(|t| t.channels.is_empty()) {
                return Err(ApiError::invalid_field(
                    format!("categories.{name}"),
                    "every target names at least one channel",
                ));
            }
            if categories.insert(key, targets).is_some() {
                return Err(ApiError::invalid_field(
                    format!("categories.{name}"),
                    "two names match the same category",
                ));
            }
        }
        Ok(ConsentSettings { categories })
    }
}

/// The settings in force.
pub async fn load(conn: &mut sqlx::AnyConnection) -> Result<ConsentSettings, StoreError> {
    match super::store::load_settings(conn).await? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("consent_settings: {e}"))),
        None => Ok(ConsentSettings::default()),
    }
}

/// Read the consent settings (the banner category map).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["consent:read"]))), path = "/v1/consent/settings", tag = "consent",
    responses((status = 200, body = ConsentSettings)))]
pub async fn get_settings(
    State(state): State<EngagementState>,
    _caller: Authorized<scope::ConsentRead>,
) -> Result<axum::Json<ConsentSettings>, ApiError> {
    let mut conn = state
        .store
        .reader()
        .acquire()
        .await
        .map_err(StoreError::from)?;
    Ok(axum::Json(load(&mut conn).await?))
}

/// Replace the consent settings (admin).
#[utoipa::path(put, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/consent/settings", tag = "consent",
    request_body = ConsentSettings,
    responses((status = 200, body = ConsentSettings), (status = 422, body = Problem)))]
pub async fn put_settings(
    State(state): State<EngagementState>,
    caller: Authorized<scope::Admin>,
    Json(body): Json<ConsentSettings>,
) -> Result<axum::Json<ConsentSettings>, ApiError> {
    let settings = body.normalized()?;
    let text = serde_json::to_string(&settings).unwrap_or_default();
    let channel = caller.channel_id;
    let written = settings.clone();
    state
        .store
        .write(move |tx| {
            let text = text.clone();
            let settings = written.clone();
            Box::pin(async move {
                let now = tx.now();
                super::store::save_settings(tx.conn(), &text, time::to_micros(now)).await?;
                tx.emit(
                    NewEvent::of(&ConsentEvent::SettingsUpdated(settings), now)
                        .channel(Some(channel)),
                );
                Ok::<_, StoreError>(())
            })
        })
        .await?;
    Ok(axum::Json(settings))
}
