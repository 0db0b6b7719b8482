//! Restoring a snapshot into an empty place: the manifest and checksum are
//! checked before anything is written, the copy is checked again after it
//! was written, and an existing database is never overwritten.

use std::path::{Path, PathBuf};

use super::{BackupError, MANIFEST_FORMAT, Manifest, io, read_manifest, sync_and_hash};

/// Checks `snapshot` and copies its database to `database`, which must not
/// exist. `known_schema` is the latest migration this binary knows: a
/// snapshot from a newer schema is refused (an older binary would misread
/// it). Returns the snapshot's manifest.
pub fn restore(
    snapshot: &Path,
    database: &Path,
    known_schema: i64,
) -> Result<Manifest, BackupError> {
    let manifest = check(snapshot, known_schema)?;
    refuse_existing(database)?;
    let parent = database.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("cannot create the data directory", parent))?;
    let mut temporary = database.as_os_str().to_owned();
    temporary.push(".restoring");
    let temporary = PathBuf::from(temporary);
    // A leftover of a restore that was killed; ours, never a database.
    let _ = std::fs::remove_file(&temporary);
    let source = snapshot.join(&manifest.database_file);
    std::fs::copy(&source, &temporary).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        io("cannot copy the snapshot to", &temporary)(e)
    })?;
    let copied = sync_and_hash(&temporary).and_then(|(size, sha256)| {
        if size == manifest.size_bytes && sha256 == manifest.sha256 {
            Ok(())
        } else {
            Err(BackupError::Refused(format!(
                "the copy at {} differs from the snapshot (size {size}, SHA-256 {sha256}); \
                 check the disk of the data directory",
                temporary.display()
            )))
        }
    });
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    std::fs::rename(&temporary, database).map_err(io("cannot move the copy to", database))?;
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot flush", parent))?;
    Ok(manifest)
}

/// The manifest of `snapshot`, once its format, schema and database file
/// (size, then SHA-256) are checked.
pub fn check(snapshot: &Path, known_schema: i64) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(snapshot)?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(BackupError::Refused(format!(
            "the snapshot {} has manifest format {}; this omnihub reads format {MANIFEST_FORMAT} \
             (restore it with the omnihub {} that wrote it, or newer)",
            snapshot.display(),
            manifest.format,
            manifest.hub_version
        )));
    }
    if manifest.schema_version > known_schema {
        return Err(BackupError::Refused(format!(
            "the snapshot {} is from schema version {}, newer than this omnihub knows ({known_schema}); \
             restore it with omnihub {} or newer",
            snapshot.display(),
            manifest.schema_version,
            manifest.hub_version
        )));
    }
    if manifest.database_file.contains(['/', '\\']) || manifest.database_file.starts_with('.') {
        return Err(BackupError::Refused(format!(
            "the manifest of {} names an invalid database file {:?}",
            snapshot.display(),
            manifest.database_file
        )));
    }
    let file = snapshot.join(&manifest.database_file);
    let size = std::fs::metadata(&file)
        .map_err(io("cannot read the snapshot's database", &file))?
        .len();
    if size != manifest.size_bytes {
        return Err(BackupError::Refused(format!(
            "the snapshot {} is truncated or damaged: {} has {size} bytes, the manifest says {}",
            snapshot.display(),
            file.display(),
            manifest.size_bytes
        )));
    }
    let (_, sha256) = sync_and_hash(&file)?;
    if sha256 != manifest.sha256 {
        return Err(BackupError::Refused(format!(
            "the snapshot {} is damaged or was altered: the SHA-256 of {} is {sha256}, the manifest says {}",
            snapshot.display(),
            file.display(),
            manifest.sha256
        )));
    }
    Ok(manifest)
}

/// A restore never overwrites: not the database, nor its WAL, shared
/// memory or rollback journal (a hub may have stopped without merging them).
fn refuse_existing(database: &Path) -> Result<(), BackupError> {
    let existing: Vec<String> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut path = database.as_os_str().to_owned();
            path.push(suffix);
            PathBuf::from(path)
        })
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(BackupError::Refused(format!(
        "refusing to restore over an existing database ({}); move it away first, or restore into \
         an empty --data-dir",
        existing.join(", ")
    )))
}
