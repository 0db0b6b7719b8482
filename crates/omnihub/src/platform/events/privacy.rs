//! The outbox's part of an erasure: every stored event that mentions the
//! person is rewritten with personal members and mentions redacted
//! (`platform::privacy::redact`). Events keep their position, id and type,
//! so feed cursors, webhook cursors and counts are unaffected. The
//! `privacy.erasure_requested` notice is left to retention: connected
//! systems must read whom to erase.

use futures::future::BoxFuture;

use super::store;
use crate::platform::privacy::{self, Chunk, ERASURE_REQUESTED, Step, Subject};
use crate::platform::storage::{StoreError, Tx};

pub const STEP: Step = Step {
    name: "events",
    erase,
};

fn erase<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    cursor: Option<String>,
    limit: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let tokens = subject.tokens();
        let after: i64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        // Scanning is cheap next to rewriting: read a wider window per chunk.
        let rows = store::raw_after(tx.conn(), after, (limit * 4) as i64).await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(Chunk::done(0));
        };
        let mut changed = 0;
        for (position, event_type, subjects, payload) in &rows {
            if event_type == ERASURE_REQUESTED {
                continue;
            }
            let new_subjects = privacy::redact_text(subjects, &tokens);
            let new_payload = privacy::redact_text(payload, &tokens);
            if new_subjects.is_none() && new_payload.is_none() {
                continue;
            }
            store::rewrite(
                tx.conn(),
                *position,
                new_subjects.as_deref().unwrap_or(subjects),
                new_payload.as_deref().unwrap_or(payload),
            )
            .await?;
            changed += 1;
        }
        Ok(Chunk {
            changed,
            next: Some(last.to_string()),
        })
    })
}

/// Retention of erasure notices: the identifiers of `privacy.erasure_requested`
/// events older than `before` (µs) are purged, `request_id` kept.
pub fn prune_erasure_notices<'t>(
    tx: &'t mut Tx,
    before: i64,
    limit: usize,
) -> BoxFuture<'t, Result<u64, StoreError>> {
    Box::pin(async move {
        store::purge_payloads(
            tx.conn(),
            ERASURE_REQUESTED,
            before,
            &["request_id"],
            limit as i64,
        )
        .await
    })
}
