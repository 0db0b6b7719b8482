//! Notices: the versioned texts (per language) a person is shown when they
//! decide, e.g. a newsletter sign-up's wording or a cookie banner. A consent
//! record names the notice id and version it was given under; a version
//! that does not exist is refused. A notice may require a double opt-in
//! for email: a grant under it stays `pending` until confirmed.

pub mod events;
pub mod http;
mod store;

use crate::engagement::consent::{ContactChannel, Purpose};
use crate::platform::events::NewEvent;
use crate::platform::ids::ChannelId;
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time;
use events::{NoticeEvent, NoticePublished};

/// Longest notice id, in characters.
pub const MAX_ID_CHARS: usize = 100;
/// Longest notice text, in characters.
pub const MAX_BODY_CHARS: usize = 20_000;
/// Most languages per version.
pub const MAX_TEXTS: usize = 50;

/// One language of a notice version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeText {
    pub language: String,
    pub title: String,
    pub body: String,
    pub url: Option<String>,
}

/// A notice version, with its texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub id: String,
    pub version: i64,
    /// The purposes and channels it asks about (empty: any).
    pub purposes: Vec<Purpose>,
    pub channels: Vec<ContactChannel>,
    /// A grant for email under this notice waits for a confirmation.
    pub double_opt_in: bool,
    pub texts: Vec<NoticeText>,
    pub created_at: i64,
}

impl Notice {
    /// Whether the notice asks about `purpose` on `channel`.
    pub fn covers(&self, purpose: Purpose, channel: ContactChannel) -> bool {
        (self.purposes.is_empty() || self.purposes.contains(&purpose))
            && (self.channels.is_empty() || self.channels.contains(&channel))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("notice {0} version {1} exists already; publish a new version")]
    VersionExists(String, i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(NoticeError);

/// Publishes a notice version (all its languages at once) and emits
/// `notice.published`.
pub async fn publish(
    tx: &mut Tx,
    notice: &Notice,
    key_id: &str,
    channel: ChannelId,
) -> Result<(), NoticeError> {
    if store::version_exists(tx.conn(), &notice.id, notice.version).await? {
        return Err(NoticeError::VersionExists(
            notice.id.clone(),
            notice.version,
        ));
    }
    store::insert(tx.conn(), notice, key_id).await?;
    let now = tx.now();
    tx.emit(
        NewEvent::of(
            &NoticeEvent::Published(NoticePublished {
                notice_id: notice.id.clone(),
                version: notice.version,
                languages: notice.texts.iter().map(|t| t.language.clone()).collect(),
                double_opt_in: notice.double_opt_in,
                published_at: time::from_micros(notice.created_at),
            }),
            now,
        )
        .channel(Some(channel)),
    );
    Ok(())
}

/// The notice version `id`/`version`, with its texts, or `None`.
pub async fn get(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    version: i64,
) -> Result<Option<Notice>, StoreError> {
    store::get(conn, id, version).await
}
