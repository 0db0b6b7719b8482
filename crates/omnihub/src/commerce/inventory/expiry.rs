//! Expires reservations whose hold ran out. Runs on every node; the
//! conditional status change makes sure each hold is released once.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{InventoryError, reservations, store};
use crate::platform::ids::ReservationId;
use crate::platform::storage::Store;
use crate::platform::time;

/// How often expired holds are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Holds expired per sweep at most.
const SWEEP_BATCH: i64 = 256;

pub fn spawn(store: Store, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            if let Err(error) = sweep(&store).await {
                tracing::warn!(%error, "reservation expiry sweep failed");
            }
        }
    })
}

/// Expires every hold that ended by now; returns how many it expired.
pub async fn sweep(store: &Store) -> Result<usize, InventoryError> {
    let ids = store::expired_reservations(store.reader(), time::now(), SWEEP_BATCH).await?;
    let mut expired = 0;
    let mut pending = Vec::with_capacity(ids.len());
    for id in ids {
        let Ok(id) = id.parse::<ReservationId>() else {
            continue;
        };
        let store = store.clone();
        // Submitted together, so they share commits.
        pending.push(tokio::spawn(async move {
            store
                .write(move |tx| {
                    Box::pin(async move { reservations::release_in(tx, id, true, None).await })
                })
                .await
        }));
    }
    for task in pending {
        match task.await {
            Ok(Ok(_)) => expired += 1,
            Ok(Err(InventoryError::ReservationClosed(_))) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not expire a reservation"),
            Err(error) => tracing::warn!(%error, "expiry task failed"),
        }
    }
    Ok(expired)
}
