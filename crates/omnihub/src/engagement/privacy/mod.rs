//! Privacy requests: a person's right of access (an export of everything
//! the hub holds about them) and right to erasure, filed by any identifier.
//!
//! The request runner knows no table. Every context that holds personal
//! data lists an export section and an erasure step
//! (`platform::privacy::Participants`, assembled by `app::privacy`); an
//! access export streams the sections page by page, an erasure runs the
//! steps chunk by chunk, each chunk one short transaction that also records
//! where the erasure stands, so a crash resumes at the next chunk and a
//! rerun of a chunk finds nothing left to do.
//!
//! What is kept after an erasure, and why, is in docs/privacy.md.

pub mod events;
pub mod export;
pub mod http;
pub mod runner;
mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::customers::identity::privacy::{self as identity_privacy, SubjectError};
use crate::platform::config::PrivacySettings;
use crate::platform::events::NewEvent;
use crate::platform::ids::ChannelId;
use crate::platform::privacy::{Participants, Subject};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time;
use events::{ErasureCompleted, ErasureRequested, PrivacyEvent, RequestFiled};

crate::engagement::names! {
    /// What the person asks for.
    RequestKind {
        Access = "access",
        Erasure = "erasure",
    }
}

crate::engagement::names! {
    /// The law the request is filed under; it sets the default due date.
    Regulation {
        Gdpr = "gdpr",
        Ccpa = "ccpa",
    }
}

crate::engagement::names! {
    /// Where a request stands. An access request is `ready` until its export
    /// has been downloaded whole, then `completed`; an erasure is `running`
    /// until its last step, then `completed`.
    RequestStatus {
        Ready = "ready",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
    }
}

/// Each step's count of rows deleted or rewritten, and whether it is done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub steps: Vec<StepProgress>,
    /// Access exports: records written by the last download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_records: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    pub name: String,
    pub changed: u64,
    pub done: bool,
}

/// A privacy request as stored.
#[derive(Clone, Debug)]
pub struct PrivacyRequest {
    pub id: String,
    pub kind: RequestKind,
    pub regulation: Regulation,
    pub status: RequestStatus,
    /// The identifier's kind (`email`, `phone`, `user_id`, `anonymous_id`,
    /// `customer_id`) and normalized value; the value is dropped when the
    /// request completes.
    pub subject_kind: String,
    pub subject_value: Option<String>,
    /// The keyed hash of the identifier (kept: it finds the request again).
    pub subject_hash: String,
    /// The person resolved when an erasure was filed (dropped when done).
    pub subject: Option<Subject>,
    pub step: usize,
    pub step_cursor: Option<String>,
    pub progress: Progress,
    pub key_id: String,
    pub channel_id: String,
    pub due_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    pub receipt: Option<Value>,
    pub error: Option<String>,
}

/// A request to file.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub kind: RequestKind,
    pub regulation: Regulation,
    pub identifier_kind: String,
    pub identifier_value: String,
    /// Overrides the regulation's default due date.
    pub due_in_days: Option<u32>,
}

/// Who filed or acted on a request (the audit trail's key).
#[derive(Clone, Debug)]
pub struct Actor {
    pub key_id: String,
    pub channel_id: ChannelId,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no person is known by this identifier")]
    SubjectNotFound,
    #[error(
        "this identifier is shared by several people (a shared device) or quarantined; name the person by another identifier"
    )]
    SubjectShared,
    #[error(
        "this identifier belonged to a person who was erased; the hub keeps only its keyed hash"
    )]
    SubjectErased,
    #[error("privacy request not found")]
    NotFound,
    #[error("{0}")]
    InvalidState(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(PrivacyError);

impl From<SubjectError> for PrivacyError {
    fn from(e: SubjectError) -> Self {
        match e {
            SubjectError::Invalid(m) => PrivacyError::Invalid(m),
            SubjectError::NotFound => PrivacyError::SubjectNotFound,
            SubjectError::Shared => PrivacyError::SubjectShared,
            SubjectError::Store(e) => PrivacyError::Store(e),
        }
    }
}

/// What privacy's handlers and runner share.
#[derive(Clone)]
pub struct PrivacyState {
    pub platform: crate::platform::state::Platform,
    pub participants: Arc<Participants>,
    /// Wakes the runner when an erasure is filed.
    pub wake: Arc<tokio::sync::Notify>,
}

impl std::ops::Deref for PrivacyState {
    type Target = crate::platform::state::PlatformParts;
    fn deref(&self) -> &Self::Target {
        &self.platform
    }
}

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

fn due_in(settings: &PrivacySettings, new: &NewRequest) -> i64 {
    let days = new.due_in_days.unwrap_or(match new.regulation {
        Regulation::Gdpr => settings.gdpr_due_days,
        Regulation::Ccpa => settings.ccpa_due_days,
    });
    i64::from(days) * MICROS_PER_DAY
}

/// Files a request. An erasure of a person with an erasure already filed
/// (running or completed) answers that one (`false`: nothing new was filed),
/// so a retried or repeated erasure is idempotent.
pub async fn file(
    store: &Store,
    settings: &PrivacySettings,
    participants: &Participants,
    actor: Actor,
    new: NewRequest,
) -> Result<(PrivacyRequest, bool), PrivacyError> {
    let due = due_in(settings, &new);
    let steps: Vec<String> = participants
        .steps
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    store
        .write(move |tx| {
            let (actor, new, steps) = (actor.clone(), new.clone(), steps.clone());
            Box::pin(async move { file_in(tx, actor, new, due, &steps).await })
        })
        .await
}

async fn file_in(
    tx: &mut Tx,
    actor: Actor,
    new: NewRequest,
    due: i64,
    steps: &[String],
) -> Result<(PrivacyRequest, bool), PrivacyError> {
    let (kind, value) =
        identity_privacy::normalize_subject(tx.conn(), &new.identifier_kind, &new.identifier_value)
            .await?;
    let hash = identity_privacy::suppression_hash(tx.conn(), &kind, &value).await?;
    if new.kind == RequestKind::Erasure {
        if let Some(earlier) = store::erasure_of(tx.conn(), &hash).await? {
            return Ok((earlier, false));
        }
    }
    let subject = match identity_privacy::subject_of(tx.conn(), &kind, &value).await {
        Err(SubjectError::NotFound)
            if identity_privacy::is_suppressed(tx.conn(), &hash).await? =>
        {
            return Err(PrivacyError::SubjectErased);
        }
        other => other?,
    };
    let now = time::to_micros(tx.now());
    let request = new_request(&actor, &new, (kind, value, hash), &subject, steps, now, due);
    store::insert(tx.conn(), &request).await?;
    let detail = json!({"kind": new.kind.as_str(), "regulation": new.regulation.as_str(),
        "identifier_kind": request.subject_kind});
    store::log(
        tx.conn(),
        &request.id,
        now,
        Some(&actor.key_id),
        "filed",
        &detail,
    )
    .await?;
    emit_filed(tx, &request, actor.channel_id, &subject);
    Ok((request, true))
}

/// A request as filed: an erasure keeps the resolved person and starts at
/// its first step; an access request is ready at once.
fn new_request(
    actor: &Actor,
    new: &NewRequest,
    (kind, value, hash): (String, String, String),
    subject: &Subject,
    steps: &[String],
    now: i64,
    due: i64,
) -> PrivacyRequest {
    let erasure = new.kind == RequestKind::Erasure;
    let steps = match erasure {
        true => steps
            .iter()
            .map(|name| StepProgress {
                name: name.clone(),
                changed: 0,
                done: false,
            })
            .collect(),
        false => Vec::new(),
    };
    PrivacyRequest {
        id: crate::platform::ids::PrivacyRequestId::new().to_string(),
        kind: new.kind,
        regulation: new.regulation,
        status: if erasure {
            RequestStatus::Running
        } else {
            RequestStatus::Ready
        },
        subject_kind: kind,
        subject_value: Some(value),
        subject_hash: hash,
        subject: erasure.then(|| subject.clone()),
        step: 0,
        step_cursor: None,
        progress: Progress {
            steps,
            exported_records: None,
        },
        key_id: actor.key_id.clone(),
        channel_id: actor.channel_id.to_string(),
        due_at: now + due,
        lease_owner: None,
        lease_until: None,
        created_at: now,
        updated_at: now,
        completed_at: None,
        receipt: None,
        error: None,
    }
}

/// `privacy.request_filed`, and for an erasure `privacy.erasure_requested`
/// naming the person for connected systems (retention purges its
/// identifiers: the `erasure_notices` retention rule).
fn emit_filed(tx: &mut Tx, request: &PrivacyRequest, channel: ChannelId, subject: &Subject) {
    let id = &request.id;
    let filed = RequestFiled {
        request_id: id,
        kind: request.kind.as_str(),
        regulation: request.regulation.as_str(),
    };
    tx.emit(
        NewEvent::of(&PrivacyEvent::RequestFiled(filed), tx.now())
            .channel(Some(channel))
            .subject("privacy_request_id", id),
    );
    if request.kind != RequestKind::Erasure {
        return;
    }
    let identifiers: Vec<Value> = subject
        .identifiers
        .iter()
        .map(|i| json!({"kind": i.kind, "value": i.value}))
        .collect();
    let requested = ErasureRequested {
        request_id: id,
        customer_ids: Some(subject.customer_ids.clone()),
        identifiers: Some(identifiers),
        purged: false,
    };
    tx.emit(
        NewEvent::of(&PrivacyEvent::ErasureRequested(requested), tx.now())
            .channel(Some(channel))
            .subject("privacy_request_id", id),
    );
}

pub async fn get(store: &Store, id: &str) -> Result<PrivacyRequest, PrivacyError> {
    store::get(store.reader(), id)
        .await?
        .ok_or(PrivacyError::NotFound)
}

pub async fn list(
    store: &Store,
    status: Option<RequestStatus>,
    before_id: Option<&str>,
    limit: i64,
) -> Result<Vec<PrivacyRequest>, PrivacyError> {
    Ok(store::list(store.reader(), status.map(|s| s.as_str()), before_id, limit).await?)
}

/// A request's audit trail: (at µs, key id, action, detail).
pub async fn audit(
    store: &Store,
    id: &str,
) -> Result<Vec<(i64, Option<String>, String, Value)>, PrivacyError> {
    Ok(store::audit(store.reader(), id).await?)
}

/// What one erasure chunk left: more to do, or the request is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    More,
    Done,
    /// Another node holds the request (its lease is not ours).
    NotOurs,
}

/// Runs the next chunk of erasure `id` under `owner`'s lease (renewed for
/// `lease_micros`), in one transaction with the record of where it stands.
pub async fn advance(
    store: &Store,
    participants: Arc<Participants>,
    id: &str,
    owner: &str,
    lease_micros: i64,
    chunk_rows: usize,
) -> Result<Advance, PrivacyError> {
    let (id, owner) = (id.to_string(), owner.to_string());
    let advance = store
        .write(move |tx| {
            let (id, owner, participants) = (id.clone(), owner.clone(), participants.clone());
            Box::pin(async move {
                advance_in(tx, &participants, &id, &owner, lease_micros, chunk_rows).await
            })
        })
        .await?;
    if advance == Advance::Done {
        // The deleted rows' pages are zeroed (`secure_delete`); the WAL
        // still holds their earlier images until it is checkpointed.
        store.truncate_wal().await?;
    }
    Ok(advance)
}

async fn advance_in(
    tx: &mut Tx,
    participants: &Participants,
    id: &str,
    owner: &str,
    lease_micros: i64,
    chunk_rows: usize,
) -> Result<Advance, PrivacyError> {
    let now = time::to_micros(tx.now());
    let mut request = store::get(&mut *tx.conn(), id)
        .await?
        .ok_or(PrivacyError::NotFound)?;
    if request.status != RequestStatus::Running {
        return Ok(Advance::Done);
    }
    let ours = request.lease_owner.as_deref() == Some(owner);
    let free = request.lease_until.is_none_or(|until| until < now);
    if !ours && !free {
        return Ok(Advance::NotOurs);
    }
    request.lease_owner = Some(owner.to_string());
    request.lease_until = Some(now + lease_micros);
    request.updated_at = now;
    let subject = request
        .subject
        .clone()
        .ok_or_else(|| StoreError::Corrupt(format!("privacy request {id} lost its subject")))?;
    if let Some(step) = participants.steps.get(request.step) {
        let chunk = (step.erase)(tx, &subject, request.step_cursor.take(), chunk_rows).await?;
        if let Some(progress) = request.progress.steps.get_mut(request.step) {
            progress.changed += chunk.changed;
            progress.done = chunk.next.is_none();
        }
        match chunk.next {
            Some(next) => request.step_cursor = Some(next),
            None => request.step += 1,
        }
        store::update(tx.conn(), &request).await?;
        return Ok(Advance::More);
    }
    complete(tx, request, now).await?;
    Ok(Advance::Done)
}

/// Gives up `owner`'s lease on erasure `id` (a node stopping).
pub async fn release(store: &Store, id: &str, owner: &str) -> Result<(), PrivacyError> {
    let (id, owner) = (id.to_string(), owner.to_string());
    store
        .write(move |tx| {
            let (id, owner) = (id.clone(), owner.clone());
            Box::pin(async move { Ok(store::release(tx.conn(), &id, &owner).await?) })
        })
        .await
}

/// Ends an erasure: the plain identifier and the resolved person go, the
/// receipt stays, every other request's plain copy of the person goes.
async fn complete(tx: &mut Tx, mut request: PrivacyRequest, now: i64) -> Result<(), PrivacyError> {
    store::forget_subject(tx.conn(), &request.subject_hash, &request.id).await?;
    request.status = RequestStatus::Completed;
    request.subject = None;
    request.subject_value = None;
    request.step_cursor = None;
    request.lease_owner = None;
    request.lease_until = None;
    request.completed_at = Some(now);
    let receipt = receipt(&request, now);
    request.receipt = Some(receipt.clone());
    store::update(tx.conn(), &request).await?;
    store::log(tx.conn(), &request.id, now, None, "completed", &receipt).await?;
    let counts: Vec<Value> = request
        .progress
        .steps
        .iter()
        .map(|s| json!({"step": s.name, "changed": s.changed}))
        .collect();
    let completed = ErasureCompleted {
        request_id: &request.id,
        steps: counts,
    };
    tx.emit(
        NewEvent::of(&PrivacyEvent::ErasureCompleted(completed), tx.now())
            .subject("privacy_request_id", &request.id),
    );
    Ok(())
}

/// The receipt of a completed request: what was done, when, under which
/// law, for the subject's keyed hash (never the identifier itself).
fn receipt(request: &PrivacyRequest, now: i64) -> Value {
    json!({
        "request_id": request.id,
        "kind": request.kind.as_str(),
        "regulation": request.regulation.as_str(),
        "subject_kind": request.subject_kind,
        "subject_hash": request.subject_hash,
        "filed_at": time::from_micros(request.created_at),
        "completed_at": time::from_micros(now),
        "due_at": time::from_micros(request.due_at),
        "steps": request.progress.steps,
        "exported_records": request.progress.exported_records,
    })
}

/// Marks an access request delivered after a whole export was streamed:
/// the plain identifier goes, the receipt stays.
pub async fn delivered(
    store: &Store,
    id: &str,
    records: u64,
    key_id: &str,
) -> Result<(), PrivacyError> {
    let (id, key_id) = (id.to_string(), key_id.to_string());
    store
        .write(move |tx| {
            let (id, key_id) = (id.clone(), key_id.clone());
            Box::pin(async move {
                let now = time::to_micros(tx.now());
                let mut request = store::get(&mut *tx.conn(), &id)
                    .await?
                    .ok_or(PrivacyError::NotFound)?;
                if request.status != RequestStatus::Ready {
                    return Ok(());
                }
                request.status = RequestStatus::Completed;
                request.subject_value = None;
                request.completed_at = Some(now);
                request.updated_at = now;
                request.progress.exported_records = Some(records);
                let receipt = receipt(&request, now);
                request.receipt = Some(receipt.clone());
                store::update(tx.conn(), &request).await?;
                store::log(tx.conn(), &id, now, Some(&key_id), "delivered", &receipt).await?;
                let done = events::AccessCompleted {
                    request_id: &id,
                    records,
                };
                tx.emit(
                    NewEvent::of(&PrivacyEvent::AccessCompleted(done), tx.now())
                        .subject("privacy_request_id", &id),
                );
                Ok(())
            })
        })
        .await
}
