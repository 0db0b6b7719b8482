//! The erasure runner: a background task on every node that takes running
//! erasures under a lease (so two nodes never run one erasure at once) and
//! advances them chunk by chunk, and enforces the retention rules (among
//! them the purge of `privacy.erasure_requested` notices' identifiers).
//!
//! A crash loses at most the chunk in flight (rolled back); after the lease
//! expires, any node resumes at the step and cursor the last chunk recorded.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Advance, PrivacyState, store};
use crate::platform::time;

/// How long a node holds an erasure between chunks before another may take it.
const LEASE: Duration = Duration::from_secs(30);
/// How often the runner looks for work when nothing woke it.
const POLL: Duration = Duration::from_secs(5);

/// Starts the runner; it stops with `shutdown`.
pub fn spawn(state: PrivacyState, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let owner = format!("node-{}", uuid::Uuid::now_v7());
    tokio::spawn(async move {
        let mut retention_due = tokio::time::Instant::now();
        loop {
            if let Err(error) = run_once(&state, &owner, &shutdown).await {
                tracing::warn!(%error, "privacy runner pass failed; retrying");
            }
            if tokio::time::Instant::now() >= retention_due {
                retention_due += state.settings.privacy.retention_interval;
                if let Err(error) = enforce_retention(&state, &shutdown).await {
                    tracing::warn!(%error, "retention pass failed; retrying next time");
                }
            }
            let pause =
                POLL.min(retention_due.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = state.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}

/// One pass: every claimable erasure to its end, then the notice purge.
pub async fn run_once(
    state: &PrivacyState,
    owner: &str,
    shutdown: &CancellationToken,
) -> Result<(), super::PrivacyError> {
    let now = time::to_micros(time::now());
    let ids = {
        let mut conn = state
            .store
            .reader()
            .acquire()
            .await
            .map_err(|e| super::PrivacyError::Store(e.into()))?;
        store::claimable(&mut conn, now).await?
    };
    let chunk_rows = state.settings.privacy.erasure_chunk_rows.max(1);
    for id in ids {
        loop {
            if shutdown.is_cancelled() {
                // A stop between chunks hands the erasure on at once; a
                // crash leaves the lease to expire.
                super::release(&state.store, &id, owner).await?;
                return Ok(());
            }
            let advance = super::advance(
                &state.store,
                Arc::clone(&state.participants),
                &id,
                owner,
                LEASE.as_micros() as i64,
                chunk_rows,
            )
            .await?;
            if advance != Advance::More {
                break;
            }
            // Let other writers' batches in between chunks.
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// Deletes what each retention rule says is too old, a chunk per
/// transaction, and counts it (`omnihub_retention_deleted_total{kind}`).
pub async fn enforce_retention(
    state: &PrivacyState,
    shutdown: &CancellationToken,
) -> Result<(), super::PrivacyError> {
    let chunk_rows = state.settings.privacy.erasure_chunk_rows.max(1);
    let mut deleted_any = false;
    for rule in &state.participants.retention {
        let Some(keep) = rule.keep else { continue };
        let before = time::to_micros(time::now()) - keep.as_micros() as i64;
        let prune = rule.prune;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let deleted = state
                .store
                .write(move |tx| Box::pin(async move { prune(tx, before, chunk_rows).await }))
                .await?;
            if deleted > 0 {
                deleted_any = true;
                state
                    .metrics
                    .retention_deleted
                    .get_or_create(&vec![("kind".to_string(), rule.kind.to_string())])
                    .inc_by(deleted);
            }
            if (deleted as usize) < chunk_rows {
                break;
            }
        }
    }
    if deleted_any {
        // As after an erasure: the WAL must not keep what retention removed.
        state.store.truncate_wal().await?;
    }
    Ok(())
}
