//! Cursor pagination: `?limit=&cursor=`; answers carry `next_cursor`, absent on
//! the last page. Cursors are opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problem::{ApiError, ErrorCode};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest `limit`; a larger one is a 400 `invalid_query`.
pub const MAX_PAGE_SIZE: u32 = 200;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Items per page, 1 to 200 [default: 50].
    #[serde(default, deserialize_with = "deserialize_limit")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// `limit` of a list: 1 to [`MAX_PAGE_SIZE`], or a query error (the
/// document states the range, so the hub does not quietly cap it).
pub fn deserialize_limit<'de, D>(deserializer: D) -> Result<Option<u32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let limit = Option::<u32>::deserialize(deserializer)?;
    match limit {
        Some(n) if !(1..=MAX_PAGE_SIZE).contains(&n) => Err(serde::de::Error::custom(format!(
            "limit must be 1 to {MAX_PAGE_SIZE}"
        ))),
        other => Ok(other),
    }
}

impl PageParams {
    pub fn limit(&self) -> u32 {
        self.limit
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE)
    }

    /// The decoded cursor: the sort key of the last item already seen.
    pub fn after(&self) -> Result<Option<String>, ApiError> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        let invalid = || {
            ApiError::new(
                ErrorCode::InvalidCursor,
                "use the next_cursor of a previous page",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let key = text.strip_prefix("v1:").ok_or_else(invalid)?;
        // Keys are ids; a control character (NUL, which PostgreSQL rejects
        // in text, among them) can only come from a forged cursor.
        if key.chars().any(char::is_control) {
            return Err(invalid());
        }
        Ok(Some(key.to_string()))
    }
}

pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
}

/// One page of a list.
#[derive(Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items: the extra one only
    /// tells that there is a next page.
    pub fn from_overfetch<S>(
        mut rows: Vec<S>,
        limit: u32,
        key: impl Fn(&S) -> String,
        map: impl Fn(S) -> T,
    ) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(|r| encode_cursor(&key(r)))
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(map).collect(),
            next_cursor,
        }
    }
}
