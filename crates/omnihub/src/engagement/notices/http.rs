//! `/v1/notices`: publish and list versioned notice texts.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{MAX_BODY_CHARS, MAX_ID_CHARS, MAX_TEXTS, Notice, NoticeError, NoticeText, store};
use crate::engagement::EngagementState;
use crate::engagement::consent::{ContactChannel, Purpose};
use crate::engagement::preferences::valid_language;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::time;

/// A notice version to publish, with its text in each language.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNotice {
    /// The notice's id, e.g. `newsletter-signup`.
    #[schema(min_length = 1, max_length = 100, pattern = "^[A-Za-z0-9._-]+$")]
    pub id: String,
    /// The version (a new wording is a new version).
    #[schema(minimum = 1)]
    pub version: i64,
    /// The purposes it asks about (empty: any).
    #[serde(default)]
    pub purposes: Vec<Purpose>,
    /// The channels it asks about (empty: any).
    #[serde(default)]
    pub channels: Vec<ContactChannel>,
    /// A grant for email under this notice stays `pending` until the person
    /// confirms it through the link the hub returns.
    #[serde(default)]
    pub double_opt_in: bool,
    /// The text in each language (at least one).
    #[schema(min_items = 1, max_items = 50)]
    pub texts: Vec<NoticeTextBody>,
}

/// A notice's text in one language.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeTextBody {
    /// BCP 47 tag, e.g. `en` or `fr-CA`.
    #[schema(max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
    pub language: String,
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(min_length = 1, max_length = 20000)]
    pub body: String,
    /// Where the full text is published.
    #[schema(max_length = 2000)]
    pub url: Option<String>,
}

/// A notice version.
#[derive(Serialize, ToSchema)]
pub struct NoticeBody {
    pub id: String,
    pub version: i64,
    pub purposes: Vec<Purpose>,
    pub channels: Vec<ContactChannel>,
    pub double_opt_in: bool,
    pub texts: Vec<NoticeTextBody>,
    pub created_at: DateTime<Utc>,
}

impl From<Notice> for NoticeBody {
    fn from(n: Notice) -> Self {
        NoticeBody {
            id: n.id,
            version: n.version,
            purposes: n.purposes,
            channels: n.channels,
            double_opt_in: n.double_opt_in,
            texts: n
                .texts
                .into_iter()
                .map(|t| NoticeTextBody {
                    language: t.language,
                    title: t.title,
                    body: t.body,
                    url: t.url,
                })
                .collect(),
            created_at: time::from_micros(n.created_at),
        }
    }
}

impl From<NoticeError> for ApiError {
    fn from(error: NoticeError) -> Self {
        match error {
            NoticeError::VersionExists(..) => {
                ApiError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            NoticeError::Store(e) => e.into(),
        }
    }
}

fn checked_text(i: usize, text: NoticeTextBody) -> Result<NoticeText, ApiError> {
    let field = |name: &str| format!("texts[{i}].{name}");
    if !valid_language(&text.language) {
        return Err(ApiError::invalid_field(
            field("language"),
            "not a BCP 47 tag",
        ));
    }
    if text.title.trim().is_empty() || text.title.chars().count() > 200 {
        return Err(ApiError::invalid_field(
            field("title"),
            "1 to 200 characters",
        ));
    }
    if text.body.trim().is_empty() || text.body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::invalid_field(
            field("body"),
            "1 to 20000 characters",
        ));
    }
    if text.url.as_ref().is_some_and(|u| u.chars().count() > 2000) {
        return Err(ApiError::invalid_field(
            field("url"),
            "at most 2000 characters",
        ));
    }
    Ok(NoticeText {
        language: text.language,
        title: text.title,
        body: text.body,
        url: text.url,
    })
}

fn checked(body: CreateNotice) -> Result<Notice, ApiError> {
    let id_ok = !body.id.is_empty()
        && body.id.chars().count() <= MAX_ID_CHARS
        && body
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !id_ok {
        return Err(ApiError::invalid_field(
            "id",
            "1 to 100 of A-Z a-z 0-9 . _ -",
        ));
    }
    if body.version < 1 {
        return Err(ApiError::invalid_field("version", "must be 1 or more"));
    }
    if body.texts.is_empty() || body.texts.len() > MAX_TEXTS {
        return Err(ApiError::invalid_field("texts", "give 1 to 50 texts"));
    }
    let mut texts: Vec<NoticeText> = Vec::new();
    for (i, text) in body.texts.into_iter().enumerate() {
        let text = checked_text(i, text)?;
        if texts.iter().any(|t| t.language == text.language) {
            return Err(ApiError::invalid_field(
                format!("texts[{i}].language"),
                "listed twice",
            ));
        }
        texts.push(text);
    }
    let mut purposes = body.purposes;
    purposes.sort();
    purposes.dedup();
    let mut channels = body.channels;
    channels.sort();
    channels.dedup();
    Ok(Notice {
        id: body.id,
        version: body.version,
        purposes,
        channels,
        double_opt_in: body.double_opt_in,
        texts,
        created_at: time::to_micros(time::now()),
    })
}

/// Publish a notice version (every language at once). Versions are
/// immutable: the same id and version again is a 409.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["consent:write"]))), path = "/v1/notices", tag = "consent",
    request_body = CreateNotice,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 201, body = NoticeBody), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_notice(
    State(state): State<EngagementState>,
    caller: Authorized<scope::ConsentWrite>,
    Json(body): Json<CreateNotice>,
) -> Result<(StatusCode, axum::Json<NoticeBody>), ApiError> {
    let notice = checked(body)?;
    let key_id = caller.key_id.to_string();
    let channel = caller.channel_id;
    let written = notice.clone();
    state
        .store
        .write(move |tx| {
            let notice = written.clone();
            let key_id = key_id.clone();
            Box::pin(async move { super::publish(tx, &notice, &key_id, channel).await })
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(notice.into())))
}

/// List notice texts: one item per version and language, in publication order.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["consent:read"]))), path = "/v1/notices", tag = "consent",
    params(PageParams),
    responses((status = 200, body = Page<NoticeBody>)))]
pub async fn list_notices(
    State(state): State<EngagementState>,
    _caller: Authorized<scope::ConsentRead>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<NoticeBody>>, ApiError> {
    let limit = page.limit();
    let rows = store::list(
        state.store.reader(),
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |(row_id, _)| row_id.clone(),
        |(_, notice)| NoticeBody::from(notice),
    )))
}
