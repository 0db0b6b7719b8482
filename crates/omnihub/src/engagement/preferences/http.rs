//! `GET`/`PUT /v1/customers/{id}/preferences`.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Preferences;
use crate::engagement::EngagementState;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path};
use crate::platform::http::problem::{ApiError, Problem};
use crate::platform::storage::StoreError;
use crate::platform::time;

/// A customer's contact preferences.
#[derive(Serialize, ToSchema)]
pub struct PreferencesBody {
    /// The person's profile.
    pub customer_id: String,
    pub preferences: Preferences,
    /// When they were last written; absent: never (the defaults).
    pub updated_at: Option<DateTime<Utc>>,
}

/// Read a customer's contact preferences (the newest document among the
/// person's profiles; suppressed when any of them is).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["consent:read"]))), path = "/v1/customers/{id}/preferences", tag = "consent",
    params(("id" = String, Path, description = "Any profile id of the customer")),
    responses((status = 200, body = PreferencesBody), (status = 404, body = Problem)))]
pub async fn get_preferences(
    State(state): State<EngagementState>,
    _caller: Authorized<scope::ConsentRead>,
    Path(id): Path<String>,
) -> Result<axum::Json<PreferencesBody>, ApiError> {
    let mut conn = state
        .store
        .reader()
        .acquire()
        .await
        .map_err(StoreError::from)?;
    let person = crate::engagement::consent::person(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let found = super::of_person(&mut conn, &person.customer_ids).await?;
    let (preferences, updated_at) = match found {
        Some((p, at)) => (p, Some(time::from_micros(at))),
        None => (Preferences::default(), None),
    };
    Ok(axum::Json(PreferencesBody {
        customer_id: person.customer_id,
        preferences,
        updated_at,
    }))
}

/// Replace a customer's contact preferences (written for the profile id the
/// path names).
#[utoipa::path(put, extensions(("x-required-scopes" = json!(["consent:write"]))), path = "/v1/customers/{id}/preferences", tag = "consent",
    params(("id" = String, Path, description = "Any profile id of the customer")),
    request_body = Preferences,
    responses((status = 200, body = PreferencesBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_preferences(
    State(state): State<EngagementState>,
    caller: Authorized<scope::ConsentWrite>,
    Path(id): Path<String>,
    Json(body): Json<Preferences>,
) -> Result<axum::Json<PreferencesBody>, ApiError> {
    body.validate()
        .map_err(|(field, message)| ApiError::invalid_field(field, message))?;
    let channel = caller.channel_id;
    let written = body.clone();
    let person_id = state
        .store
        .write(move |tx| {
            let (id, preferences) = (id.clone(), written.clone());
            Box::pin(async move {
                crate::customers::identity::lock_graph(tx).await?;
                let Some(person_id) =
                    crate::customers::identity::resolve_customer(tx.conn(), &id).await?
                else {
                    return Err(ApiError::not_found("customer"));
                };
                super::put(tx, &id, &person_id, &preferences, channel).await?;
                Ok(person_id)
            })
        })
        .await?;
    state.consent.sync().await;
    let mut conn = state
        .store
        .reader()
        .acquire()
        .await
        .map_err(StoreError::from)?;
    let ids = crate::engagement::consent::person(&mut conn, &person_id)
        .await?
        .map(|p| p.customer_ids)
        .unwrap_or_default();
    let (preferences, updated_at) = match super::of_person(&mut conn, &ids).await? {
        Some((p, at)) => (p, Some(time::from_micros(at))),
        None => (body, None),
    };
    Ok(axum::Json(PreferencesBody {
        customer_id: person_id,
        preferences,
        updated_at,
    }))
}
