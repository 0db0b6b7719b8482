//! The access export: one JSON document with every section of every
//! context, streamed page by page, so a person with a long history never
//! sits in memory whole.
//!
//! ```json
//! {"request_id": "…", "generated_at": "…",
//!  "subject": {"kind": "email", "value": "…"},
//!  "person": {"customer_id": "…", "customer_ids": ["…"]},
//!  "sections": {"profiles": [...], "identifiers": [...], "timeline": [...], …},
//!  "records": 1234}
//! ```

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use super::{PrivacyError, PrivacyRequest};
use crate::customers::identity::privacy as identity_privacy;
use crate::platform::privacy::{Participants, Subject};
use crate::platform::storage::Store;
use crate::platform::time;

/// Records read per page of a section.
const PAGE: usize = 500;
/// Bytes gathered before a chunk is handed to the reader.
const CHUNK_BYTES: usize = 64 * 1024;

/// The person an access request names, resolved now.
pub async fn subject_for(store: &Store, request: &PrivacyRequest) -> Result<Subject, PrivacyError> {
    let value = request.subject_value.as_deref().ok_or_else(|| {
        PrivacyError::InvalidState(
            "this access request was delivered; its identifier is no longer kept: file a new one"
                .into(),
        )
    })?;
    let mut conn = store
        .reader()
        .acquire()
        .await
        .map_err(|e| PrivacyError::Store(e.into()))?;
    Ok(identity_privacy::subject_of(&mut conn, &request.subject_kind, value).await?)
}

/// Where the export stands, for progress reports: the section being
/// written and the records written so far.
pub type Progress = Box<dyn Fn(&str, u64) + Send + Sync>;

/// Writes the export of `subject` into `out` in chunks; returns the number
/// of records. Stops early (`Ok(None)`) when the reader went away.
pub async fn stream(
    store: &Store,
    participants: &Participants,
    request: &PrivacyRequest,
    subject: &Subject,
    out: mpsc::Sender<Bytes>,
    progress: Option<Progress>,
) -> Result<Option<u64>, PrivacyError> {
    let mut conn = store
        .reader()
        .acquire()
        .await
        .map_err(|e| PrivacyError::Store(e.into()))?;
    let mut buffer = String::with_capacity(CHUNK_BYTES * 2);
    let head = json!({
        "request_id": request.id,
        "generated_at": time::now(),
        "subject": {"kind": request.subject_kind, "value": request.subject_value},
        "person": {"customer_id": subject.customer_id, "customer_ids": subject.customer_ids},
    })
    .to_string();
    // The head object without its closing brace, then the sections.
    buffer.push_str(&head[..head.len() - 1]);
    buffer.push_str(",\"sections\":{");
    let mut records: u64 = 0;
    for (n, section) in participants.sections.iter().enumerate() {
        if n > 0 {
            buffer.push(',');
        }
        buffer.push_str(&serde_json::to_string(section.name).unwrap_or_default());
        buffer.push_str(":[");
        let mut first = true;
        let mut cursor = None;
        loop {
            let (page, next) = (section.page)(&mut conn, subject, cursor, PAGE).await?;
            for record in &page {
                if !first {
                    buffer.push(',');
                }
                first = false;
                buffer.push_str(&record.to_string());
                records += 1;
                if buffer.len() >= CHUNK_BYTES {
                    let chunk =
                        std::mem::replace(&mut buffer, String::with_capacity(CHUNK_BYTES * 2));
                    if out.send(Bytes::from(chunk)).await.is_err() {
                        return Ok(None);
                    }
                    if let Some(progress) = &progress {
                        progress(section.name, records);
                    }
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        buffer.push(']');
        if let Some(progress) = &progress {
            progress(section.name, records);
        }
    }
    buffer.push_str(&format!("}},\"records\":{records}}}"));
    if out.send(Bytes::from(buffer)).await.is_err() {
        return Ok(None);
    }
    Ok(Some(records))
}
