//! The operator's commands: `migrate --check`, `backup` and `restore`
//! (docs/operations.md). Results on standard output, one tab-separated line;
//! explanations on standard error, as in the rest of the CLI.

use std::path::Path;

use super::cli::{location, write_stdout};
use crate::platform::backup::{self, restore::restore as restore_snapshot};
use crate::platform::config::Settings;
use crate::platform::storage::{Store, migrate, sqlite_file};

/// Says which migrations a start would apply, changing nothing. Exits with
/// status 1 when some would run (as `cargo fmt --check` does), fails when
/// the database has migrations this binary does not know.
pub async fn migrate_check(settings: &Settings) -> anyhow::Result<()> {
    eprintln!("database: {}", location(settings));
    if let Some(file) = sqlite_file(&settings.database_url) {
        if !file.exists() {
            write_stdout(&format!(
                "no database at {}: a start would create it and apply {} migrations (up to version {})",
                file.display(),
                migrate::MIGRATIONS.len(),
                migrate::latest_version()
            ));
            std::process::exit(1);
        }
    }
    let store = Store::connect(&settings.store_options()).await?;
    let status = migrate::status(&store).await;
    store.close().await;
    let status = status?;
    if !status.unknown.is_empty() {
        return Err(crate::platform::storage::StoreError::UnknownSchema {
            unknown: status.unknown,
            known: migrate::latest_version(),
        }
        .into());
    }
    for migration in &status.pending {
        write_stdout(&format!(
            "would apply\t{:04}\t{}",
            migration.version, migration.name
        ));
    }
    if status.pending.is_empty() {
        write_stdout(&format!(
            "schema at version {}: up to date, nothing would run",
            status.version()
        ));
        return Ok(());
    }
    write_stdout(&format!(
        "schema at version {}: {} migrations would run (up to version {})",
        status.version(),
        status.pending.len(),
        migrate::latest_version()
    ));
    std::process::exit(1);
}

/// `omnihub backup --to DIR`: one snapshot, printed as
/// `path<TAB>outbox_position<TAB>schema_version<TAB>size_bytes<TAB>sha256`.
/// Without `--to`, the snapshot goes where scheduled ones go (`backup_dir`).
pub async fn backup(
    settings: &Settings,
    to: Option<std::path::PathBuf>,
    keep: Option<usize>,
) -> anyhow::Result<()> {
    let Some(database) = sqlite_file(&settings.database_url) else {
        anyhow::bail!(
            "omnihub backup copies the embedded SQLite database; this hub uses {}. Back \
             PostgreSQL up with its own tools (pg_basebackup with WAL archiving for \
             point-in-time recovery, or pg_dump): see docs/operations.md, which also says how \
             to find the outbox position of a restored database",
            location(settings)
        );
    };
    let Some(to) = to.or_else(|| settings.backup.as_ref().map(|b| b.dir.clone())) else {
        anyhow::bail!("say where the snapshot goes: --to DIR (or set backup_dir)");
    };
    eprintln!("database: {}", database.display());
    let report = backup::take(&database, &to, keep).await?;
    let manifest = &report.snapshot.manifest;
    eprintln!(
        "snapshot complete: copy {} ms (a read transaction; writers were not blocked), total {} ms",
        report.copy.as_millis(),
        report.total.as_millis()
    );
    for removed in &report.removed {
        eprintln!("removed the old snapshot {}", removed.display());
    }
    write_stdout(&format!(
        "{}\t{}\t{}\t{}\t{}",
        report.snapshot.path.display(),
        manifest.outbox_position,
        manifest.schema_version,
        manifest.size_bytes,
        manifest.sha256
    ));
    Ok(())
}

/// `omnihub restore --from SNAPSHOT`: checks and copies the snapshot, brings
/// its schema up to date, then verifies the stock ledger and that the event
/// feed ends at the manifest's position. Exits with status 1 when a ledger
/// does not verify (the restored database stays, for inspection).
pub async fn restore(settings: &Settings, from: &Path) -> anyhow::Result<()> {
    let Some(database) = sqlite_file(&settings.database_url) else {
        anyhow::bail!(
            "omnihub restore restores the embedded SQLite database; this hub uses {}. Restore \
             PostgreSQL with its own tools (see docs/operations.md)",
            location(settings)
        );
    };
    eprintln!("database: {}", database.display());
    let manifest = restore_snapshot(from, &database, migrate::latest_version())?;
    eprintln!(
        "restored {} (taken {}, schema version {}); checking it",
        from.display(),
        manifest.created_at,
        manifest.schema_version
    );
    let store = Store::connect(&settings.store_options()).await?;
    let checked = verify_restored(&store, manifest.outbox_position).await;
    store.close().await;
    let (drifts, holds) = checked?;
    write_stdout(&format!(
        "restored\t{}\toutbox_position={}\tschema_version={}\tdrifts={drifts}\thold_mismatches={holds}",
        database.display(),
        manifest.outbox_position,
        migrate::latest_version()
    ));
    if drifts > 0 || holds > 0 {
        eprintln!(
            "the stock ledger does not verify; see `omnihub inventory verify` (and `inventory rebuild`)"
        );
        std::process::exit(1);
    }
    eprintln!(
        "the event feed continues at position {}; consumers that read past {} before the \
         failure must rewind to it (those events were not in the snapshot)",
        manifest.outbox_position + 1,
        manifest.outbox_position
    );
    Ok(())
}

/// Migrates a restored database and checks it: the highest event is the
/// manifest's, and the stock levels and holds agree with the ledger.
/// Returns the number of drifted levels and of hold mismatches.
async fn verify_restored(store: &Store, outbox_position: i64) -> anyhow::Result<(usize, usize)> {
    use crate::commerce::inventory::ledger;
    migrate::run(store).await?;
    let head = crate::platform::events::head(store.reader()).await?;
    if head != outbox_position {
        anyhow::bail!(
            "the restored database ends at event {head}, the manifest says {outbox_position}"
        );
    }
    let drifts = ledger::verify(store).await?.len();
    let holds = ledger::verify_holds(store).await?.len();
    Ok((drifts, holds))
}
