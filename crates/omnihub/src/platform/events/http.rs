//! `GET /v1/events`: the pull feed, in commit order.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::visibility::Reader;
use super::{Event, TypeFilter, store};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::Query;
use crate::platform::http::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::{ChannelId, EventId};
use crate::platform::state::Platform;

/// A domain event as every consumer sees it: in the feed, on the live stream
/// and in webhook bodies.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct EventBody {
    /// Feed position: increases in commit order. Use it as `after` or `Last-Event-ID`.
    pub position: i64,
    pub id: EventId,
    /// Dotted type, e.g. `channel.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Version of the payload schema of this type.
    pub schema_version: i64,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// The channel whose request caused the event.
    pub channel_id: Option<ChannelId>,
    /// Ids of the entities the event is about, e.g. `{"customer_id": "…"}`.
    pub subjects: BTreeMap<String, String>,
    /// The type-specific payload.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The W3C trace context (`00-<trace id>-<span id>-<flags>`) of the
    /// request that caused the event, as it came in (`traceparent` header)
    /// or as the hub started it; webhook deliveries of the event carry it
    /// in their `traceparent` header. Absent for events no request caused
    /// and for events written before omnihub recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl From<&Event> for EventBody {
    fn from(e: &Event) -> Self {
        EventBody {
            position: e.position,
            id: e.id,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            occurred_at: e.occurred_at,
            channel_id: e.channel_id,
            subjects: e.subjects.clone(),
            data: e.payload.clone(),
            traceparent: e.traceparent.clone(),
        }
    }
}

/// Unknown parameters are refused: the feed pages with `after`, and a client
/// that sent the `cursor` of other lists would otherwise read page one forever.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// Return events after this position (the `next_cursor` of the last page); 0 for the start.
    #[param(pattern = "^(\\+?[0-9]{1,18})?$")]
    pub after: Option<String>,
    /// Comma-separated types; `cart.*` matches a prefix, `*` everything
    /// (at most 32).
    #[param(
        pattern = "^[ \\t]*(\\*|[a-z0-9_.]*\\.\\*|[a-z0-9_.]+)?[ \\t]*(,[ \\t]*(\\*|[a-z0-9_.]*\\.\\*|[a-z0-9_.]+)?[ \\t]*){0,31}$"
    )]
    pub types: Option<String>,
    /// Items per page, 1 to 200 [default: 50].
    #[serde(
        default,
        deserialize_with = "crate::platform::http::pagination::deserialize_limit"
    )]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventBody>,
    /// Pass as `after` for the next page; equal to `after` when nothing is new.
    pub next_cursor: String,
}

/// Parses a feed cursor (a position).
pub fn parse_position(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None | Some("") => Ok(0),
        Some(raw) => raw.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidCursor,
                "after must be a feed position (an integer ≥ 0)",
            )
        }),
    }
}

pub fn parse_types(raw: Option<&str>) -> Result<TypeFilter, ApiError> {
    TypeFilter::parse(raw.unwrap_or("")).map_err(|bad| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("invalid event type pattern {bad:?}"),
        )
    })
}

/// Read the event feed in order.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["events:read"]))), path = "/v1/events", tag = "events",
    params(FeedParams),
    responses((status = 200, body = EventPage), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_events(
    State(state): State<Platform>,
    caller: Authorized<scope::EventsRead>,
    Query(params): Query<FeedParams>,
) -> Result<axum::Json<EventPage>, ApiError> {
    let after = parse_position(params.after.as_deref())?;
    let types = parse_types(params.types.as_deref())?;
    let limit = params
        .limit
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    // Only what the key may read (`visibility`): scan on past hidden events,
    // a bounded number of times; `next_cursor` is the last position scanned.
    let reader = Reader::of(&caller);
    let mut items = Vec::new();
    let mut next = after;
    for _ in 0..MAX_SCANS_PER_PAGE {
        let events =
            store::list_after(state.store.reader(), next, &types, i64::from(limit)).await?;
        let exhausted = events.len() < limit as usize;
        for event in &events {
            if items.len() == limit as usize {
                break;
            }
            next = event.position;
            items.extend(reader.view(event));
        }
        if items.len() == limit as usize || exhausted {
            break;
        }
    }
    Ok(axum::Json(EventPage {
        items,
        next_cursor: next.to_string(),
    }))
}

/// Most reads of `limit` events one feed page scans for events the key may
/// see; a page can then hold fewer than `limit` events with a `next_cursor`
/// that moved on (keep paging until `next_cursor` stops moving).
pub const MAX_SCANS_PER_PAGE: usize = 10;
