//! Online backups of the embedded SQLite database, and their restore.
//!
//! A snapshot is a directory `omnihub-<UTC time>` in the backup directory
//! holding `omnihub.db` (a consistent copy made by SQLite's `VACUUM INTO`)
//! and `manifest.json` ([`Manifest`]: time, schema version, outbox position,
//! size, SHA-256). It is built under `.partial-<name>` and renamed when
//! complete, so a backup killed half-way never leaves a snapshot that
//! [`list`] shows; the next backup removes the leftover.
//!
//! `VACUUM INTO` runs in a read transaction on a connection of its own. In
//! WAL mode readers never block the writer: the hub keeps committing while
//! the copy is made (the WAL grows until the copy ends, because a checkpoint
//! cannot pass a reader). The copy is a snapshot as of the transaction's
//! start, and the manifest is read from the copy itself, so its schema
//! version and outbox position describe exactly the data in it.
//!
//! PostgreSQL has its own tools (base backups, WAL archiving); see
//! `docs/operations.md`. Nothing here runs on PostgreSQL.

pub mod restore;
pub mod schedule;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::platform::storage::{is_disk_full, is_write_error};

/// The manifest's format; a restore refuses formats it does not know.
pub const MANIFEST_FORMAT: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const DATABASE_FILE: &str = "omnihub.db";
/// Snapshot directories start with this; anything else in the backup
/// directory is not ours and left alone.
pub const SNAPSHOT_PREFIX: &str = "omnihub-";
const PARTIAL_PREFIX: &str = ".partial-";
const LOCK_FILE: &str = ".omnihub-backup.lock";
/// How long the copy waits for SQLite locks (a checkpoint's brief one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a snapshot holds, written next to it as `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// When the copy was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The omnihub version that took it.
    pub hub_version: String,
    /// The latest migration applied to the copied database.
    pub schema_version: i64,
    /// The highest event position in the copy: the feed of a hub restored
    /// from it continues at `outbox_position + 1`.
    pub outbox_position: i64,
    pub database_file: String,
    pub size_bytes: u64,
    /// SHA-256 of the database file, lowercase hex.
    pub sha256: String,
}

/// A complete snapshot in a backup directory.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// What one backup did, for logs and metrics.
#[derive(Clone, Debug)]
pub struct BackupReport {
    pub snapshot: Snapshot,
    /// Time spent in `VACUUM INTO` (the read transaction).
    pub copy: Duration,
    /// The whole backup: copy, checks, checksum, fsyncs, rename.
    pub total: Duration,
    /// Older snapshots removed to keep the newest `keep`.
    pub removed: Vec<PathBuf>,
}

/// Why a backup or restore failed; each names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Refused(String),
    #[error("no space left in {}: {detail}; free space or choose another --to, the partial copy was removed", dir.display())]
    Full { dir: PathBuf, detail: String },
    #[error("cannot write the copy into {}: {detail} (a full disk, a quota or a file size limit?); the partial copy was removed", dir.display())]
    WriteFailed { dir: PathBuf, detail: String },
    // `cause`, not `source`: the message already holds it, and `{:#}`
    // would print it twice.
    #[error("{what} {}: {cause}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{what}: {cause}")]
    Database {
        what: &'static str,
        cause: sqlx::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + use<> {
    let path = path.to_path_buf();
    move |cause| BackupError::Io { what, path, cause }
}

/// Takes a snapshot of the SQLite database `database` into `dir`, then
/// removes the oldest snapshots beyond `keep` (`None`: keep all).
pub async fn take(
    database: &Path,
    dir: &Path,
    keep: Option<usize>,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    check_target_dir(dir)?;
    if !database.is_file() {
        return Err(BackupError::Refused(format!(
            "no database at {}: nothing to back up",
            database.display()
        )));
    }
    let _lock = DirLock::take(dir)?;
    remove_partials(dir)?;
    let name = format!(
        "{SNAPSHOT_PREFIX}{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let partial = dir.join(format!("{PARTIAL_PREFIX}{name}"));
    std::fs::create_dir(&partial).map_err(io("cannot write into the backup directory", dir))?;
    let built = build(database, &partial).await;
    let (manifest, copy) = match built {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(match error {
                BackupError::Database { cause, .. } if is_disk_full(&cause) => BackupError::Full {
                    dir: dir.to_path_buf(),
                    detail: cause.to_string(),
                },
                BackupError::Database { cause, .. } if is_write_error(&cause) => {
                    BackupError::WriteFailed {
                        dir: dir.to_path_buf(),
                        detail: cause.to_string(),
                    }
                }
                BackupError::Io { cause, .. } if cause.raw_os_error() == Some(libc::ENOSPC) => {
                    BackupError::Full {
                        dir: dir.to_path_buf(),
                        detail: cause.to_string(),
                    }
                }
                error => error,
            });
        }
    };
    let path = dir.join(&name);
    std::fs::rename(&partial, &path).map_err(io("cannot complete the snapshot", &path))?;
    sync_dir(dir)?;
    let removed = match keep {
        Some(keep) => rotate(dir, keep)?,
        None => Vec::new(),
    };
    Ok(BackupReport {
        snapshot: Snapshot { path, manifest },
        copy,
        total: started.elapsed(),
        removed,
    })
}

/// The backup directory must exist and be a directory: a missing one is
/// refused, not created, so a typo or an unmounted disk does not fill the
/// root file system with backups.
fn check_target_dir(dir: &Path) -> Result<(), BackupError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(BackupError::Refused(format!(
            "the backup directory {} is not a directory",
            dir.display()
        ))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(BackupError::Refused(format!(
                "the backup directory {} does not exist; create it (mkdir -p) or mount it first",
                dir.display()
            )))
        }
        Err(error) => Err(io("cannot read the backup directory", dir)(error)),
    }
}

/// Copies the database into `partial`, checks the copy, makes it durable
/// and writes its manifest. Returns the manifest and the copy's duration.
async fn build(database: &Path, partial: &Path) -> Result<(Manifest, Duration), BackupError> {
    let target = partial.join(DATABASE_FILE);
    let mut source = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|cause| BackupError::Database {
            what: "cannot open the database",
            cause,
        })?;
    let copy_started = Instant::now();
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(target.to_string_lossy().into_owned())
        .execute(&mut source)
        .await;
    let copy = copy_started.elapsed();
    let _ = source.close().await;
    copied.map_err(|cause| BackupError::Database {
        what: "the copy failed",
        cause,
    })?;
    let (schema_version, outbox_position) = describe(&target).await?;
    let (size_bytes, sha256) = tokio::task::spawn_blocking({
        let target = target.clone();
        move || sync_and_hash(&target)
    })
    .await
    .map_err(|e| BackupError::Refused(format!("the checksum task failed: {e}")))??;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        hub_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version,
        outbox_position,
        database_file: DATABASE_FILE.to_string(),
        size_bytes,
        sha256,
    };
    write_manifest(partial, &manifest)?;
    sync_dir(partial)?;
    Ok((manifest, copy))
}

/// Checks a database copy (`PRAGMA quick_check`) and reads its schema version
/// (the highest applied migration) and outbox position (the highest event).
pub(crate) async fn describe(file: &Path) -> Result<(i64, i64), BackupError> {
    let failed = |what| move |cause| BackupError::Database { what, cause };
    let mut conn: SqliteConnection = SqliteConnectOptions::new()
        .filename(file)
        .immutable(true)
        .read_only(true)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(failed("cannot open the copy"))?;
    let check: String = sqlx::query("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed("cannot check the copy"))?;
    if check != "ok" {
        return Err(BackupError::Refused(format!(
            "the copy {} is damaged: {check}",
            file.display()
        )));
    }
    let schema_version: i64 =
        sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(failed(
                "the copy has no schema_migrations table (not an omnihub database?)",
            ))?;
    let outbox_position: i64 = sqlx::query("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(&mut conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed(
            "the copy has no events table (not an omnihub database?)",
        ))?;
    let _ = conn.close().await;
    Ok((schema_version, outbox_position))
}

/// fsyncs `file` (`VACUUM INTO` does not) and returns its size and SHA-256.
pub(crate) fn sync_and_hash(file: &Path) -> Result<(u64, String), BackupError> {
    let mut handle = std::fs::File::open(file).map_err(io("cannot read", file))?;
    handle.sync_all().map_err(io("cannot flush", file))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = handle.read(&mut buffer).map_err(io("cannot read", file))?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = dir.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::Refused(format!("cannot encode the manifest: {e}")))?;
    let mut file = std::fs::File::create(&path).map_err(io("cannot write", &path))?;
    file.write_all(&json).map_err(io("cannot write", &path))?;
    file.sync_all().map_err(io("cannot flush", &path))?;
    Ok(())
}

/// Reads and parses `manifest.json` of a snapshot directory.
pub fn read_manifest(snapshot: &Path) -> Result<Manifest, BackupError> {
    let path = snapshot.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|cause| {
        if cause.kind() == std::io::ErrorKind::NotFound {
            BackupError::Refused(format!(
                "{} is not a snapshot: it has no {MANIFEST_FILE}",
                snapshot.display()
            ))
        } else {
            io("cannot read", &path)(cause)
        }
    })?;
    serde_json::from_str(&text).map_err(|e| {
        BackupError::Refused(format!("the manifest {} is invalid: {e}", path.display()))
    })
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot flush", dir))
}

/// Complete snapshots in `dir`, oldest first (names sort by time).
pub fn list(dir: &Path) -> Result<Vec<Snapshot>, BackupError> {
    let mut snapshots = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("cannot list", dir))? {
        let entry = entry.map_err(io("cannot list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(SNAPSHOT_PREFIX) || !entry.path().is_dir() {
            continue;
        }
        if let Ok(manifest) = read_manifest(&entry.path()) {
            snapshots.push(Snapshot {
                path: entry.path(),
                manifest,
            });
        }
    }
    snapshots.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(snapshots)
}

/// Removes the oldest snapshots so that `keep` remain (at least one).
fn rotate(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let snapshots = list(dir)?;
    let excess = snapshots.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for snapshot in snapshots.into_iter().take(excess) {
        std::fs::remove_dir_all(&snapshot.path)
            .map_err(io("cannot remove an old snapshot", &snapshot.path))?;
        removed.push(snapshot.path);
    }
    Ok(removed)
}

/// Leftovers of backups that were killed: never listed, removed under the
/// directory's lock (so never one that is still being written).
fn remove_partials(dir: &Path) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io("cannot list", dir))? {
        let entry = entry.map_err(io("cannot list", dir))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
        {
            std::fs::remove_dir_all(entry.path())
                .map_err(io("cannot remove a partial snapshot", &entry.path()))?;
        }
    }
    Ok(())
}

/// An exclusive `flock` on the backup directory's lock file: one backup at a
/// time per directory (a second one is refused, not queued).
struct DirLock(#[allow(dead_code)] std::fs::File);

impl DirLock {
    fn take(dir: &Path) -> Result<DirLock, BackupError> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("cannot write into the backup directory", dir))?;
        if !try_lock_exclusive(&file).map_err(io("cannot lock", &path))? {
            return Err(BackupError::Refused(format!(
                "another backup into {} is running",
                dir.display()
            )));
        }
        Ok(DirLock(file))
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(not(unix))]
fn try_lock_exclusive(_file: &std::fs::File) -> std::io::Result<bool> {
    Ok(true)
}

/// A duration written as `90s`, `30m`, `1h` or `2d` (a bare number is seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl FromStr for Interval {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (number, unit) = raw.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {raw:?}: use e.g. 90s, 30m, 1h or 2d"))?;
        let seconds = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "invalid duration {raw:?}: use e.g. 90s, 30m, 1h or 2d"
                ));
            }
        };
        if number == 0 {
            return Err(format!("invalid duration {raw:?}: must be more than zero"));
        }
        Ok(Interval(Duration::from_secs(number * seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::Interval;
    use std::time::Duration;

    #[test]
    fn intervals_parse_with_units() {
        assert_eq!("90".parse(), Ok(Interval(Duration::from_secs(90))));
        assert_eq!("30m".parse(), Ok(Interval(Duration::from_secs(1800))));
        assert_eq!("1h".parse(), Ok(Interval(Duration::from_secs(3600))));
        assert_eq!("2d".parse(), Ok(Interval(Duration::from_secs(172_800))));
        assert!("0h".parse::<Interval>().is_err());
        assert!("1w".parse::<Interval>().is_err());
        assert!("h".parse::<Interval>().is_err());
    }
}
