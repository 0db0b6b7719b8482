//! A full disk: writes are refused with `507 storage_full` (and
//! `Retry-After`), reads go on, and the hub writes again by itself once
//! space is freed, with every write it acknowledged kept.
//!
//! SQLite: a real `SQLITE_FULL` from a size-limited tmpfs (needs root to
//! mount; skipped with a message otherwise). PostgreSQL: a real error with
//! SQLSTATE 53100 (`disk_full`) raised inside a write operation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use omnihub::app::server::Hub;
use omnihub::platform::http::problem::ApiError;
use omnihub::platform::storage::StoreError;
use serde_json::json;

use crate::support::{Backend, TestApp, assert_problem, postgres_url, read};

/// Size of the filesystem the SQLite database lives on.
const TMPFS_SIZE: &str = "24m";
/// Writes tried before the disk must have filled up.
const MAX_WRITES: usize = 5_000;

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// `None` (after saying why) when this process cannot mount.
    fn mount() -> Option<SmallDisk> {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let dir = std::env::temp_dir().join("omnihub-disk-full").join(unique);
        std::fs::create_dir_all(&dir).expect("create mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(&dir)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(SmallDisk { dir }),
            Ok(output) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("skipped: cannot run mount: {error}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fills the filesystem of `dir` with a file of zeros until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).expect("create ballast");
    let chunk = vec![0u8; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
            Err(error) => panic!("filling the disk: {error}"),
        }
    }
    let _ = file.sync_all();
    path
}

async fn create_channel(app: &TestApp, i: usize) -> reqwest::Response {
    // Long names fill the write-ahead log sooner.
    let name = format!("disk {i} {}", "x".repeat(80));
    app.post("/v1/channels")
        .json(&json!({ "kind": "web", "name": name }))
        .send()
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_refuses_writes_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let url = format!("sqlite://{}", disk.dir.join("omnihub.db").display());
    let mut settings = None;
    let mut app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.database_url = url.clone();
        settings = Some(s.clone());
    })
    .await;
    let settings = settings.expect("settings");
    let ballast = fill(&disk.dir);

    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..MAX_WRITES {
        let response = create_channel(&app, i).await;
        if response.status() == 201 {
            let (_, body) = read(response).await;
            acknowledged.push(body["id"].as_str().expect("id").to_string());
            continue;
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let problem = assert_problem(response, 507, "storage_full").await;
        refused = Some((problem, retry_after));
        break;
    }
    let (problem, retry_after) = refused.expect("the disk filled up within MAX_WRITES writes");
    assert_eq!(retry_after.as_deref(), Some("30"), "{problem}");
    // Still full: refused again, clearly, however often it is tried.
    for i in 0..3 {
        assert_problem(
            create_channel(&app, MAX_WRITES + i).await,
            507,
            "storage_full",
        )
        .await;
    }

    // Reads go on.
    let (status, listed) = app.get_json("/v1/channels?limit=1").await;
    assert_eq!(status, 200, "{listed}");
    if let Some(id) = acknowledged.last() {
        let (status, body) = app.get_json(&format!("/v1/channels/{id}")).await;
        assert_eq!(status, 200, "{body}");
    }

    // Space returns: the very next write succeeds, no restart.
    std::fs::remove_file(&ballast).expect("free the disk");
    let response = create_channel(&app, MAX_WRITES + 10).await;
    let (status, body) = read(response).await;
    assert_eq!(status, 201, "a write after space returned: {body}");
    acknowledged.push(body["id"].as_str().expect("id").to_string());

    // Every acknowledged write is there, also after a restart.
    assert_all_present(&app, &acknowledged).await;
    if let Some(hub) = app.hub.take() {
        hub.shutdown().await;
    }
    let hub = Hub::start(settings).await.expect("hub restarts");
    app.base = format!("http://{}", hub.addr);
    app.hub = Some(hub);
    assert_all_present(&app, &acknowledged).await;
    app.stop().await;
    drop(disk);
}

async fn assert_all_present(app: &TestApp, ids: &[String]) {
    for id in ids {
        let (status, body) = app.get_json(&format!("/v1/channels/{id}")).await;
        assert_eq!(status, 200, "acknowledged channel {id} is gone: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_disk_full_is_storage_full_and_the_writer_goes_on() {
    if postgres_url().is_none() {
        eprintln!("skipped: set OMNIHUB_TEST_DATABASE_URL to run on PostgreSQL");
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let store = app.hub.as_ref().expect("hub").state.store.clone();
    // A real PostgreSQL error with SQLSTATE 53100, as a full disk gives.
    let refused: Result<(), StoreError> = store
        .write(|tx| {
            Box::pin(async move {
                sqlx::query(
                    "DO $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' \
                     USING ERRCODE = 'disk_full'; END $$",
                )
                .execute(tx.conn())
                .await?;
                Ok(())
            })
        })
        .await;
    let error = refused.expect_err("the write fails");
    assert!(matches!(error, StoreError::Full(_)), "{error:?}");
    let answer = ApiError::from(error);
    assert_eq!(answer.status().as_u16(), 507);

    // The writer goes on.
    let (status, body) = app
        .post_json("/v1/channels", &json!({ "kind": "web", "name": "after" }))
        .await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}
