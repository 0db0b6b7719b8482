//! The first hour of a new user: the `omnihub` binary says where its database
//! is, refuses to invent one, keeps secrets alone on standard output, survives
//! a closed pipe, writes no colour codes into files; a second hub on the same
//! SQLite data says so, a port clash names the setting; the API names missing
//! fields and lists valid scopes.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use omnihub::app::server::Hub;
use serde_json::json;

use crate::backend_tests;
use crate::support::{Backend, TestApp, TestDatabase, assert_problem};

backend_tests!(
    cli_prints_the_database_and_only_the_secret_on_stdout,
    cli_refuses_to_create_a_database,
    openapi_into_a_closed_pipe_exits_quietly,
    serve_logs_without_colour_codes_when_not_a_terminal,
    second_hub_on_one_sqlite_database_says_so,
    port_clash_names_the_listen_setting,
    unknown_scopes_list_the_valid_ones,
    missing_fields_are_named,
);

const BIN: &str = env!("CARGO_BIN_EXE_omnihub");

/// `omnihub` with the database of `db`.
fn omnihub(db: &TestDatabase) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("OMNIHUB_CONFIG")
        .env_remove("OMNIHUB_DATA_DIR")
        .env_remove("OMNIHUB_LISTEN")
        .args(["--database-url", &db.url]);
    if let Some(schema) = &db.schema {
        command.args(["--database-schema", schema]);
    }
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `export KEY=$(omnihub keys create --scopes admin)` captures the secret
/// and nothing else; the rest (where the database is, in absolute form) goes
/// to standard error.
async fn cli_prints_the_database_and_only_the_secret_on_stdout(backend: Backend) {
    let db = TestDatabase::new(backend);
    let migrated = omnihub(&db).arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let created = omnihub(&db)
        .args(["keys", "create", "--scopes", "admin"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.starts_with("ohk_"), "{stdout:?}");
    let stderr = text(&created.stderr);
    let location = stderr
        .lines()
        .find_map(|l| l.strip_prefix("database: "))
        .unwrap_or_else(|| panic!("no database line in {stderr:?}"));
    match backend {
        Backend::Sqlite => {
            assert!(Path::new(location).is_absolute(), "{location}");
            assert!(Path::new(location).exists(), "{location}");
        }
        Backend::Postgres => assert!(location.starts_with("postgres://"), "{location}"),
    }
    // The secret works against a hub on that database.
    let mut settings = db.settings();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    let hub = Hub::start(settings).await.unwrap();
    let response = reqwest::Client::new()
        .get(format!("http://{}/v1/channels", hub.addr))
        .bearer_auth(stdout.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    hub.shutdown().await;
}

/// A command run where there is no database says so (with the absolute path
/// and how to point at one) and creates nothing.
async fn cli_refuses_to_create_a_database(backend: Backend) {
    let dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(uuid::Uuid::now_v7().simple().to_string());
    let relative = Path::new("no-hub-here");
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(&dir)
        .env_remove("OMNIHUB_DATABASE_URL")
        .env_remove("OMNIHUB_CONFIG");
    match backend {
        Backend::Sqlite => {
            command.arg("--data-dir").arg(relative);
        }
        // PostgreSQL databases are made by their administrator; the CLI
        // migrates an empty one like `serve` does.
        Backend::Postgres => {
            let db = TestDatabase::new(backend);
            let listed = omnihub(&db).args(["channels", "list"]).output().unwrap();
            assert!(listed.status.success(), "{}", text(&listed.stderr));
            return;
        }
    }
    for args in [
        &["keys", "create", "--scopes", "admin"][..],
        &["keys", "list"],
        &["channels", "list"],
        &["inventory", "verify"],
    ] {
        let output = command.args(args).output().unwrap();
        command = Command::new(BIN);
        command
            .current_dir(&dir)
            .env_remove("OMNIHUB_DATABASE_URL")
            .env_remove("OMNIHUB_CONFIG")
            .arg("--data-dir")
            .arg(relative);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = text(&output.stderr);
        let expected = dir.join(relative).join("omnihub.db");
        assert!(
            stderr.contains(&format!("no database at {}", expected.display())),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("--data-dir"), "{stderr}");
        assert!(!dir.join(relative).join("omnihub.db").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `omnihub openapi | head` ends quietly when `head` closes the pipe.
async fn openapi_into_a_closed_pipe_exits_quietly(_backend: Backend) {
    let mut child = Command::new(BIN)
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// Logs written to a pipe or file carry no ANSI colour codes.
async fn serve_logs_without_colour_codes_when_not_a_terminal(backend: Backend) {
    let db = TestDatabase::new(backend);
    let mut child = omnihub(&db)
        .args(["--listen", "127.0.0.1:0", "--log-level", "debug", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 256];
    while !seen.contains("database: ") || !seen.ends_with('\n') {
        let n = stdout.read(&mut buffer).unwrap();
        assert!(n > 0, "serve ended: {seen}");
        seen.push_str(&text(&buffer[..n]));
    }
    assert!(
        seen.contains("omnihub listening on http://127.0.0.1:"),
        "{seen}"
    );
    // SIGTERM: the hub logs its shutdown and exits.
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill only sends a signal to the child we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
}

/// A second hub on the same SQLite file is supported, and says so: the
/// first is alone, the second (and a third) knows it shares; once the others
/// stop, a new one is alone again. (`inventory::two_processes_never_oversell`
/// and `carts::cart_sync_across_two_processes` test that sharing is correct.)
async fn second_hub_on_one_sqlite_database_says_so(backend: Backend) {
    let db = TestDatabase::new(backend);
    let first = Hub::start(db.settings()).await.unwrap();
    let second = Hub::start(db.settings()).await.unwrap();
    let third = Hub::start(db.settings()).await.unwrap();
    assert!(!first.shares_sqlite_database);
    let sqlite = backend == Backend::Sqlite;
    assert_eq!(second.shares_sqlite_database, sqlite);
    assert_eq!(third.shares_sqlite_database, sqlite);
    first.shutdown().await;
    second.shutdown().await;
    third.shutdown().await;
    let again = Hub::start(db.settings()).await.unwrap();
    assert!(!again.shares_sqlite_database);
    // `serve` tells the person who started it.
    let mut child = omnihub(&db)
        .args(["--listen", "127.0.0.1:0", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 512];
    while !seen.contains("database: ") || !seen.ends_with('\n') {
        let n = stdout.read(&mut buffer).unwrap();
        assert!(n > 0, "serve ended: {seen}");
        seen.push_str(&text(&buffer[..n]));
    }
    // The note comes right after the database line.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = child.kill();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let _ = child.wait();
    seen.push_str(&rest);
    assert_eq!(
        seen.contains("another omnihub is already serving this database"),
        sqlite,
        "{seen}"
    );
    again.shutdown().await;
}

/// A taken port names the setting to change.
async fn port_clash_names_the_listen_setting(backend: Backend) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let db = TestDatabase::new(backend);
    let mut settings = db.settings();
    settings.listen = taken.local_addr().unwrap();
    let error = format!(
        "{:#}",
        Hub::start(settings).await.err().expect("port taken")
    );
    assert!(error.contains("--listen"), "{error}");
    assert!(error.contains("OMNIHUB_LISTEN"), "{error}");
}

/// A typo in a scope lists the valid ones, over HTTP and on the command line.
async fn unknown_scopes_list_the_valid_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.new_channel().await;
    let response = app
        .post("/v1/keys")
        .json(&json!({"channel_id": channel, "name": "k", "scopes": ["orders:wrte"]}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "scopes", "{problem}");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("\"orders:wrte\""), "{message}");
    assert!(message.contains("orders:write"), "{message}");
    assert!(message.contains("events:read"), "{message}");
    let output = omnihub(&app.db)
        .args(["keys", "create", "--scopes", "orders:wrte"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("valid scopes: admin, "), "{stderr}");
    app.stop().await;
}

/// `errors[0].field` names a missing field, nested ones by their path.
async fn missing_fields_are_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.post_json("/v1/channels", &json!({"kind": "web"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "name", "{body}");
    assert!(
        body["detail"].as_str().unwrap().starts_with("name: "),
        "{body}"
    );
    let (status, body) = app
        .post_json(
            "/v1/products",
            &json!({"titles": {"en": "Tee"}, "variants": [
                {"sku": "TEE-1", "titles": {"en": "Tee"}, "prices": {"EUR": 1000},
                 "components": [{"sku": "SOCK"}]}
            ]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["field"], "variants[0].components[0].quantity",
        "{body}"
    );
    app.stop().await;
}
