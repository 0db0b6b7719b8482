//! Scheduled backups of a serving hub (`serve --backup-dir … --backup-every …
//! --backup-keep …`): one snapshot per interval, the oldest beyond `keep`
//! removed, the outcome in the metrics and in `/readyz` (a warning, not
//! unreadiness: a late backup is no reason to stop serving).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::platform::config::BackupSettings;
use crate::platform::metrics::Metrics;

/// A backup is late when none succeeded for this many intervals.
const STALE_AFTER_INTERVALS: u32 = 2;

/// Runs until `shutdown`: a backup when the newest snapshot in the directory
/// is an interval old (at once when there is none), then one per interval.
pub async fn run(
    database: PathBuf,
    settings: BackupSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let newest = newest_snapshot_time(&settings);
    if let Some(time) = newest {
        metrics.backup_last_success.set(unix_seconds(time));
    }
    let mut next_due = newest.map_or(SystemTime::now(), |time| time + settings.every);
    loop {
        let wait = next_due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match super::take(&database, &settings.dir, Some(settings.keep)).await {
            Ok(report) => {
                let now = SystemTime::now();
                next_due = now + settings.every;
                metrics.backup_last_success.set(unix_seconds(now));
                metrics
                    .backup_duration_seconds
                    .set(report.total.as_secs_f64());
                metrics
                    .backup_size_bytes
                    .set(report.snapshot.manifest.size_bytes as i64);
                tracing::info!(
                    snapshot = %report.snapshot.path.display(),
                    outbox_position = report.snapshot.manifest.outbox_position,
                    size_bytes = report.snapshot.manifest.size_bytes,
                    copy_ms = report.copy.as_millis() as u64,
                    total_ms = report.total.as_millis() as u64,
                    removed = report.removed.len(),
                    "backup taken"
                );
            }
            Err(error) => {
                metrics.backup_failures.inc();
                tracing::error!(%error, dir = %settings.dir.display(), "backup failed");
                // Retry after a tenth of the interval rather than a whole one.
                let retry = (settings.every / 10).max(Duration::from_secs(1));
                next_due = SystemTime::now() + retry;
            }
        }
    }
}

fn newest_snapshot_time(settings: &BackupSettings) -> Option<SystemTime> {
    let snapshots = super::list(&settings.dir).ok()?;
    let newest = snapshots.last()?;
    let created = chrono::DateTime::parse_from_rfc3339(&newest.manifest.created_at).ok()?;
    let seconds = u64::try_from(created.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The backup part of `/readyz` when backups are scheduled: the last
/// success, its age, and `stale` once no backup succeeded for
/// [`STALE_AFTER_INTERVALS`] intervals (or none ever did).
pub fn readiness(settings: &BackupSettings, metrics: &Metrics) -> Value {
    let last = metrics.backup_last_success.get();
    let max_age = settings.every * STALE_AFTER_INTERVALS;
    let now = unix_seconds(SystemTime::now());
    let (status, age) = if last <= 0 {
        ("none", None)
    } else {
        let age = (now - last).max(0);
        let stale = age as u64 > max_age.as_secs();
        (if stale { "stale" } else { "ok" }, Some(age))
    };
    json!({
        "status": status,
        "dir": settings.dir.display().to_string(),
        "last_success_at": (last > 0).then(|| chrono::DateTime::from_timestamp(last, 0).map(|t| t.to_rfc3339())).flatten(),
        "age_seconds": age,
        "max_age_seconds": max_age.as_secs(),
        "failures": metrics.backup_failures.get(),
    })
}
