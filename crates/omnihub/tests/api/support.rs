//! The test harness: a real hub on `127.0.0.1:0` with a fresh database per
//! test, on SQLite always and on PostgreSQL when `OMNIHUB_TEST_DATABASE_URL`
//! is set.
//!
//! Not every test module uses every helper.
#![allow(dead_code)]

use std::path::PathBuf;

use omnihub::channels::{self, ChannelKind, ChannelName};
use omnihub::config::Settings;
use omnihub::keys::{self, Scopes};
use omnihub::server::Hub;
use serde_json::Value;

/// The environment variable naming the PostgreSQL database for tests.
pub const POSTGRES_URL_VAR: &str = "OMNIHUB_TEST_DATABASE_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares tests that run once per backend: `mod name { sqlite, postgres }`.
/// Each test is an `async fn name(backend: Backend)` in the same file.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::postgres_url().is_none() {
                    eprintln!("skipped: set {} to run on PostgreSQL", $crate::support::POSTGRES_URL_VAR);
                    return;
                }
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh, empty database for one test.
pub struct TestDatabase {
    pub url: String,
    pub schema: Option<String>,
    dir: Option<PathBuf>,
}

impl TestDatabase {
    pub fn new(backend: Backend) -> TestDatabase {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join("omnihub-tests").join(&unique);
                std::fs::create_dir_all(&dir).expect("create test dir");
                TestDatabase {
                    url: format!("sqlite://{}", dir.join("omnihub.db").display()),
                    schema: None,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => TestDatabase {
                url: postgres_url().expect("PostgreSQL test URL"),
                schema: Some(format!("t_{unique}")),
                dir: None,
            },
        }
    }

    pub fn settings(&self) -> Settings {
        let mut settings = Settings::for_database(&self.url);
        settings.database_schema = self.schema.clone();
        settings.listen = "127.0.0.1:0".parse().expect("addr");
        settings.webhooks.retry_base = std::time::Duration::from_millis(100);
        settings.shutdown_grace = std::time::Duration::from_secs(5);
        settings
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(schema) = self.schema.clone() {
            let url = self.url.clone();
            // Drop the schema from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::Executor::execute(
                            &mut conn,
                            format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str(),
                        )
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running hub and an HTTP client with an admin key.
pub struct TestApp {
    pub base: String,
    pub hub: Option<Hub>,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub db: TestDatabase,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with settings adjusted by `configure`.
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let db = TestDatabase::new(backend);
        let mut settings = db.settings();
        configure(&mut settings);
        let hub = Hub::start(settings).await.expect("hub starts");
        let store = &hub.state.store;
        let name = ChannelName::parse("Back office").expect("name");
        let channel = channels::create(store, ChannelKind::Backoffice, name, None, None)
            .await
            .expect("admin channel");
        let scopes = Scopes::parse(["admin"]).expect("scopes");
        let (_, admin_key) = keys::create(store, channel.id, "test admin".into(), scopes, None)
            .await
            .expect("admin key");
        TestApp {
            base: format!("http://{}", hub.addr),
            hub: Some(hub),
            admin_key,
            client: reqwest::Client::new(),
            backend,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.admin_key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_key)
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .patch(self.url(path))
            .bearer_auth(&self.admin_key)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .delete(self.url(path))
            .bearer_auth(&self.admin_key)
    }

    /// POSTs JSON with the admin key and returns status and body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.post(path).json(body).send().await.expect("request");
        read(response).await
    }

    /// GETs with the admin key and returns status and body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).send().await.expect("request");
        read(response).await
    }

    /// Creates a channel of `kind` and returns its id.
    pub async fn channel(&self, kind: &str, name: &str) -> String {
        let (status, body) = self
            .post_json(
                "/v1/channels",
                &serde_json::json!({ "kind": kind, "name": name }),
            )
            .await;
        assert_eq!(status, 201, "create channel: {body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Creates a channel of `kind` with a key holding `scopes`; returns the secret.
    pub async fn key(&self, kind: &str, scopes: &[&str]) -> String {
        let name = format!("{kind} {}", uuid::Uuid::now_v7().simple());
        let channel = self.channel(kind, &name).await;
        self.key_for(&channel, scopes).await
    }

    pub async fn key_for(&self, channel_id: &str, scopes: &[&str]) -> String {
        let (status, body) = self
            .post_json(
                "/v1/keys",
                &serde_json::json!({ "channel_id": channel_id, "name": "test", "scopes": scopes }),
            )
            .await;
        assert_eq!(status, 201, "create key: {body}");
        body["secret"].as_str().expect("secret").to_string()
    }

    /// Stops the hub gracefully.
    pub async fn stop(mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await;
        }
    }
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
