//! Backups and restore of the embedded database with the real binary: a
//! snapshot taken under write load restores to a hub whose ledger verifies
//! and whose feed continues at the manifest's position; scheduled backups
//! rotate and show in the metrics and `/readyz`; bad input (missing or full
//! directory, damaged snapshot, newer schema, existing database, a killed
//! backup) fails precisely and loses nothing. PostgreSQL is refused with a
//! pointer to its own tools.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use omnihub::app::server::Hub;
use omnihub::platform::backup;
use omnihub::platform::config::BackupSettings;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::inventory::{catalog, receive, warehouse};
use crate::support::{Backend, TestApp, TestDatabase, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_omnihub");

/// `omnihub` on the SQLite database at `database_url`.
fn omnihub(database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("OMNIHUB_CONFIG")
        .env_remove("OMNIHUB_DATA_DIR")
        .env_remove("OMNIHUB_DATABASE_SCHEMA")
        .env_remove("OMNIHUB_BACKUP_DIR")
        .env("OMNIHUB_LOG_LEVEL", "warn")
        .args(["--database-url", database_url])
        .kill_on_drop(true);
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory for snapshots, apart from the test's database (which
/// is removed when its hub stops).
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(format!("{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("create dir");
    dir
}

async fn take_backup(database_url: &str, to: &Path) -> Output {
    omnihub(database_url)
        .args(["backup", "--to"])
        .arg(to)
        .output()
        .await
        .expect("run omnihub backup")
}

/// The snapshot path of a successful `omnihub backup`.
fn snapshot_of(output: &Output) -> PathBuf {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    PathBuf::from(stdout.split('\t').next().expect("path"))
}

/// A receipt of one unit at `location`: a ledger movement, a level and an event.
fn receipt(location: &str) -> Value {
    json!({ "movements": [{ "id": uuid::Uuid::now_v7().to_string(),
        "sku": "BK-1", "location_id": location, "reason": "receipt", "quantity": 1 }] })
}

/// Receipts one after another until `stop`; returns when each was sent and
/// answered.
fn write_load(
    app: &TestApp,
    location: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(Instant, Instant)>> {
    let (client, url, key, location) = (
        app.client.clone(),
        app.url("/v1/inventory/movements"),
        app.admin_key.clone(),
        location.to_string(),
    );
    tokio::spawn(async move {
        let mut finished = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let request = client
                .post(&url)
                .bearer_auth(&key)
                .json(&receipt(&location));
            assert_eq!(request.send().await.expect("request").status(), 200);
            finished.push((sent, Instant::now()));
        }
        finished
    })
}

/// Every event after `after` in the feed at `base`.
async fn feed(client: &reqwest::Client, base: &str, key: &str, after: i64) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    let mut after = after;
    loop {
        let page: Value = client
            .get(format!("{base}/v1/events?after={after}&limit=200"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap().clone();
        let Some(last) = items.last() else {
            return events;
        };
        after = last["position"].as_i64().unwrap();
        events.extend(items);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_write_load_restores_and_the_feed_continues() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    catalog(&app, &["BK-1"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "BK-1", &wh, 10).await;
    let backups = fresh_dir("backups");
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&app, &wh, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let output = take_backup(&app.db.url, &backups).await;
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = load.await.expect("load");
    let snapshot = snapshot_of(&output);
    // The writer kept committing while the copy ran.
    let overlapping = writes
        .iter()
        .filter(|(sent, done)| *sent < ended && *done > started)
        .count();
    let slowest = writes.iter().map(|(s, d)| *d - *s).max().expect("writes");
    eprintln!(
        "backup took {:?}; {overlapping} writes overlapped it; slowest write {slowest:?}; {}",
        ended - started,
        text(&output.stderr).trim()
    );
    assert!(overlapping > 0, "no write overlapped the backup");
    let manifest = backup::read_manifest(&snapshot).expect("manifest");
    assert!(manifest.outbox_position > 0 && manifest.outbox_position <= app.head().await);
    assert_eq!(
        manifest.schema_version,
        omnihub::platform::storage::migrate::latest_version()
    );
    let before: Vec<Value> = app
        .all_events()
        .await
        .into_iter()
        .take_while(|e| e["position"].as_i64() <= Some(manifest.outbox_position))
        .collect();
    let key = app.admin_key.clone();
    app.stop().await;
    restored_hub_continues(&snapshot, &key, &wh, manifest.outbox_position, &before).await;
    let _ = std::fs::remove_dir_all(&backups);
}

/// Restores `snapshot` into an empty place: the ledger verifies, the feed
/// is the snapshot's (`before`), and the next event follows the manifest's
/// position, with no gap and no replay.
async fn restored_hub_continues(
    snapshot: &Path,
    key: &str,
    location: &str,
    position: i64,
    before: &[Value],
) {
    let target = TestDatabase::new(Backend::Sqlite);
    let restored = restore_into(snapshot, &target).await;
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    let line = text(&restored.stdout);
    assert!(line.contains("drifts=0\thold_mismatches=0"), "{line}");
    assert!(
        line.contains(&format!("outbox_position={position}")),
        "{line}"
    );
    let verify = omnihub(&target.url)
        .args(["inventory", "verify"])
        .output()
        .await
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stdout));

    let hub = Hub::start(target.settings()).await.expect("restored hub");
    let base = format!("http://{}", hub.addr);
    let client = reqwest::Client::new();
    assert_eq!(
        feed(&client, &base, key, 0).await,
        before,
        "the snapshot's feed"
    );
    let response = client
        .post(format!("{base}/v1/inventory/movements"))
        .bearer_auth(key)
        .json(&receipt(location))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A consumer that read up to the manifest's position sees the new
    // events, and only them, from the very next position.
    let next = feed(&client, &base, key, position).await;
    assert!(!next.is_empty(), "the new write's events");
    for (offset, event) in next.iter().enumerate() {
        assert_eq!(event["position"], position + 1 + offset as i64, "no gap");
        assert!(before.iter().all(|b| b["id"] != event["id"]), "no replay");
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backup_input_is_refused_precisely() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = app.db.url.clone();
    let backups = fresh_dir("backups");

    let missing = take_backup(&url, &backups.join("not-there")).await;
    assert!(!missing.status.success());
    let error = text(&missing.stderr);
    assert!(
        error.contains("does not exist") && error.contains("not-there"),
        "{error}"
    );

    let file = backups.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let not_dir = take_backup(&url, &file).await;
    assert!(text(&not_dir.stderr).contains("is not a directory"));

    // A disk that takes no more: the backup process may write only a few
    // kilobytes (a file size limit; SQLite reports EFBIG as a write error,
    // a real full disk as SQLITE_FULL, "no space left in": checked by hand
    // on a 200 KB tmpfs, see docs/operations.md). The partial copy is
    // removed and the earlier snapshot stays valid.
    let good = snapshot_of(&take_backup(&url, &backups).await);
    let mut limited = omnihub(&url);
    limited.args(["backup", "--to"]).arg(&backups);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        limited.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 16 * 1024,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let full = limited.output().await.unwrap();
    assert!(!full.status.success());
    let error = text(&full.stderr);
    assert!(
        error.contains("cannot write the copy into")
            && error.contains("the partial copy was removed"),
        "{error}"
    );
    let listed = backup::list(&backups).unwrap();
    assert_eq!(listed.len(), 1, "only the good snapshot is listed");
    assert_eq!(listed[0].path, good);
    let leftovers: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    backup::restore::check(&good, omnihub::platform::storage::migrate::latest_version())
        .expect("the earlier snapshot still verifies");

    // Without --to, the snapshot goes to backup_dir; with neither, the
    // command says what is missing.
    let nowhere = omnihub(&url).arg("backup").output().await.unwrap();
    assert!(!nowhere.status.success());
    assert!(
        text(&nowhere.stderr).contains("--to DIR"),
        "{}",
        text(&nowhere.stderr)
    );
    let mut by_setting = omnihub(&url);
    by_setting.env("OMNIHUB_BACKUP_DIR", &backups).arg("backup");
    let configured = snapshot_of(&by_setting.output().await.unwrap());
    assert_eq!(configured.parent(), Some(backups.as_path()));
    app.stop().await;
}

/// Restores `snapshot` into a fresh database; returns the outcome and the
/// fresh database (kept alive by the caller).
async fn restore_into(snapshot: &Path, target: &TestDatabase) -> Output {
    omnihub(&target.url)
        .args(["restore", "--from"])
        .arg(snapshot)
        .output()
        .await
        .expect("run restore")
}

/// A copy of the snapshot directory to damage.
fn copy_snapshot(snapshot: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for name in [backup::MANIFEST_FILE, backup::DATABASE_FILE] {
        std::fs::copy(snapshot.join(name), to.join(name)).unwrap();
    }
    to.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshots_and_occupied_targets_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let backups = fresh_dir("backups");
    let good = snapshot_of(&take_backup(&app.db.url, &backups).await);
    let target = TestDatabase::new(Backend::Sqlite);
    let target_file = omnihub::platform::storage::sqlite_file(&target.url).unwrap();
    let refused = |output: &Output, expected: &str| {
        assert!(!output.status.success(), "{expected}");
        let error = text(&output.stderr);
        assert!(error.contains(expected), "{expected:?} in {error}");
        assert!(
            !target_file.exists(),
            "nothing was written for {expected:?}"
        );
    };

    let truncated = copy_snapshot(&good, &backups.join("truncated"));
    let db = truncated.join(backup::DATABASE_FILE);
    let size = std::fs::metadata(&db).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    refused(&restore_into(&truncated, &target).await, "is truncated");

    let tampered = copy_snapshot(&good, &backups.join("tampered"));
    let mut bytes = std::fs::read(tampered.join(backup::DATABASE_FILE)).unwrap();
    bytes[size as usize / 2] ^= 0xff;
    std::fs::write(tampered.join(backup::DATABASE_FILE), bytes).unwrap();
    refused(&restore_into(&tampered, &target).await, "SHA-256");

    let newer = copy_snapshot(&good, &backups.join("newer"));
    let mut manifest = backup::read_manifest(&newer).unwrap();
    manifest.schema_version = 9_999;
    std::fs::write(
        newer.join(backup::MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    refused(&restore_into(&newer, &target).await, "schema version 9999");

    let no_manifest = backups.join("empty");
    std::fs::create_dir_all(&no_manifest).unwrap();
    refused(
        &restore_into(&no_manifest, &target).await,
        "is not a snapshot",
    );

    // An existing database is never overwritten: the live one stays as it was.
    let live = omnihub::platform::storage::sqlite_file(&app.db.url).unwrap();
    let (count_before, _) = app.get_json("/v1/channels").await;
    let occupied = restore_into(&good, &app.db).await;
    assert!(!occupied.status.success());
    assert!(text(&occupied.stderr).contains("refusing to restore over an existing database"));
    assert!(live.exists());
    let (count_after, _) = app.get_json("/v1/channels").await;
    assert_eq!(count_before, count_after);

    // The good one still restores.
    let restored = restore_into(&good, &target).await;
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_never_leaves_a_listed_snapshot() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let backups = fresh_dir("backups");
    let good = snapshot_of(&take_backup(&app.db.url, &backups).await);
    // kill -9 at several moments of a backup's life.
    for delay_ms in [0u64, 5, 10, 20, 40] {
        let mut child = omnihub(&app.db.url)
            .args(["backup", "--to"])
            .arg(&backups)
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        for snapshot in backup::list(&backups).unwrap() {
            backup::restore::check(&snapshot.path, i64::MAX)
                .expect("every listed snapshot is complete");
        }
    }
    // What a backup killed in the middle leaves: a partial directory, never
    // listed, not restorable, removed by the next backup.
    let partial = backups.join(".partial-omnihub-20260101T000000.000Z");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join(backup::DATABASE_FILE), b"half a copy").unwrap();
    assert!(
        backup::list(&backups)
            .unwrap()
            .iter()
            .all(|s| s.path != partial)
    );
    let next = snapshot_of(&take_backup(&app.db.url, &backups).await);
    assert!(!partial.exists(), "the leftover was removed");
    let listed: Vec<PathBuf> = backup::list(&backups)
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect();
    assert!(
        listed.contains(&good) && listed.contains(&next),
        "{listed:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_rotate_and_report() {
    let dir = fresh_dir("scheduled");
    let schedule = BackupSettings {
        dir: dir.clone(),
        every: Duration::from_secs(1),
        keep: 2,
    };
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.backup = Some(schedule)).await;
    // The first backup runs at start; rotation keeps the newest two.
    let first = wait_for("a first scheduled backup", || async {
        backup::list(&dir).unwrap().first().map(|s| s.path.clone())
    })
    .await;
    wait_for("rotation past the first snapshot", || async {
        let listed = backup::list(&dir).unwrap();
        (listed.len() == 2 && listed.iter().all(|s| s.path != first)).then_some(())
    })
    .await;
    let metrics = app
        .client
        .get(app.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(value("omnihub_backup_last_success_timestamp_seconds") > 1.7e9);
    assert!(value("omnihub_backup_size_bytes") > 0.0);
    assert!(value("omnihub_backup_duration_seconds") > 0.0);
    let (status, ready) =
        crate::support::read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["backup"]["status"], "ok", "{ready}");
    assert!(ready.get("warnings").is_none(), "{ready}");

    // The directory goes away (an unmounted disk): backups fail, and once
    // the last success is two intervals old readiness warns, still ready.
    std::fs::remove_dir_all(&dir).unwrap();
    let warned = wait_for("a stale-backup warning", || async {
        let response = app.client.get(app.url("/readyz")).send().await.ok()?;
        let (status, body) = crate::support::read(response).await;
        (body["backup"]["status"] == "stale").then_some((status, body))
    })
    .await;
    assert_eq!(warned.0, 200, "{}", warned.1);
    assert_eq!(warned.1["warnings"], json!(["backup_stale"]));
    assert!(warned.1["backup"]["failures"].as_u64() >= Some(1));
    app.stop().await;
}

/// PostgreSQL is backed up with its own tools: `backup` and `restore` say
/// so, and `serve --backup-dir` refuses to start rather than pretend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_pointed_to_its_own_tools() {
    if crate::support::postgres_url().is_none() {
        eprintln!(
            "skipped: set {} to run on PostgreSQL",
            crate::support::POSTGRES_URL_VAR
        );
        return;
    }
    let db = TestDatabase::new(Backend::Postgres);
    let dir = std::env::temp_dir().join("omnihub-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let mut backup = omnihub(&db.url);
    backup.args([
        "--database-schema",
        db.schema.as_deref().unwrap(),
        "backup",
        "--to",
    ]);
    let output = backup.arg(&dir).output().await.unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("pg_basebackup"),
        "{}",
        text(&output.stderr)
    );
    let mut settings = db.settings();
    settings.backup = Some(BackupSettings {
        dir,
        every: Duration::from_secs(3600),
        keep: 2,
    });
    let refused = Hub::start(settings).await.err().expect("refused");
    assert!(refused.to_string().contains("pg_basebackup"), "{refused}");
}
