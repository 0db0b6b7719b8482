//! The test harness: a real hub on `127.0.0.1:0` with a fresh database per
//! test, on SQLite always and on PostgreSQL when `OMNIHUB_TEST_DATABASE_URL`
//! is set.
//!
//! Not every test module uses every helper.
#![allow(dead_code)]

use std::path::PathBuf;

use omnihub::app::server::Hub;
use omnihub::platform::channels::{self, ChannelKind, ChannelName};
use omnihub::platform::config::Settings;
use omnihub::platform::keys::{self, Scopes};
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
        // The receivers of the webhook tests listen on 127.0.0.1: allow-listed
        // here; by default the hub refuses loopback destinations.
        settings.webhooks.allowed_networks = ["127.0.0.0/8", "::1/128"]
            .iter()
            .map(|n| omnihub::platform::webhooks::destination::Network::parse(n).expect("network"))
            .collect();
        // Every test client shares 127.0.0.1, and several tests send hundreds
        // of requests without a key on purpose; the throttle has its own test.
        settings.limits.auth_failures_per_minute = 100_000;
        settings.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
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

    /// The URL of `/metrics` on the hub's metrics listener.
    pub fn metrics_url(&self) -> String {
        let hub = self.hub.as_ref().expect("a running hub");
        let addr = hub
            .metrics_addr
            .expect("metrics_listen is set by the harness");
        format!("http://{addr}/metrics")
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

/// How long a test waits for something asynchronous before it fails.
pub const WAIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Polls `check` until it returns `Some`, failing the test after
/// [`WAIT_DEADLINE`] with `what` in the message.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + WAIT_DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {WAIT_DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Checks that `response` is an RFC 9457 problem with `status` and `code`;
/// returns the body.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (actual, body) = read(response).await;
    assert_eq!(actual, status, "status of {body}");
    assert_eq!(
        content_type, "application/problem+json",
        "content type of {body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(
        body["type"],
        format!("urn:omnihub:problem:{code}"),
        "{body}"
    );
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    body
}

impl TestApp {
    /// A request with the admin key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.admin_key)
    }

    /// Every event after `after` matching `types` (empty: all), walking the feed.
    pub async fn events_after(&self, after: i64, types: &str) -> Vec<Value> {
        let mut cursor = after.to_string();
        let mut all = Vec::new();
        loop {
            let path = format!("/v1/events?after={cursor}&types={types}&limit=200");
            let (status, page) = self.get_json(&path).await;
            assert_eq!(status, 200, "{page}");
            let items = page["items"].as_array().expect("items").clone();
            if items.is_empty() {
                return all;
            }
            cursor = page["next_cursor"]
                .as_str()
                .expect("next_cursor")
                .to_string();
            all.extend(items);
        }
    }

    /// Every event in the feed.
    pub async fn all_events(&self) -> Vec<Value> {
        self.events_after(0, "").await
    }

    /// The position of the newest event (0 when there is none).
    pub async fn head(&self) -> i64 {
        self.all_events()
            .await
            .last()
            .map_or(0, |e| e["position"].as_i64().expect("position"))
    }

    /// Creates a channel with the admin key and returns its id.
    pub async fn new_channel(&self) -> String {
        let name = format!("channel {}", uuid::Uuid::now_v7().simple());
        self.channel("web", &name).await
    }

    /// Creates a webhook to `url` for `types`; returns its body (with the secret).
    pub async fn webhook(&self, url: &str, types: &[&str]) -> Value {
        let (status, body) = self
            .post_json(
                "/v1/webhooks",
                &serde_json::json!({ "url": url, "event_types": types }),
            )
            .await;
        assert_eq!(status, 201, "create webhook: {body}");
        body
    }

    /// The current state of webhook `id`.
    pub async fn webhook_state(&self, id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The whole delivery log of webhook `id`, newest first.
    pub async fn deliveries(&self, id: &str) -> Vec<Value> {
        let (status, body) = self
            .get_json(&format!("/v1/webhooks/{id}/deliveries?limit=200"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().expect("items").clone()
    }
}

impl TestApp {
    /// Stops the hub and starts a new one on the same database (on another
    /// port); `base` follows.
    pub async fn restart(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await;
        }
        let hub = Hub::start(self.db.settings()).await.expect("hub restarts");
        self.base = format!("http://{}", hub.addr);
        self.hub = Some(hub);
    }
}

/// Holds the database's write lock (SQLite) or the channels table (PostgreSQL)
/// until `release`d.
pub struct WriteBlock {
    conn: sqlx::AnyConnection,
}

impl WriteBlock {
    pub async fn hold(app: &TestApp) -> WriteBlock {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
        let statements: Vec<String> = match &app.db.schema {
            Some(schema) => vec![
                format!("SET search_path TO \"{schema}\""),
                "BEGIN".into(),
                "LOCK TABLE channels IN EXCLUSIVE MODE".into(),
            ],
            None => vec!["BEGIN IMMEDIATE".into()],
        };
        for statement in statements {
            sqlx::query(&statement).execute(&mut conn).await.unwrap();
        }
        WriteBlock { conn }
    }

    pub async fn release(mut self) {
        sqlx::query("COMMIT").execute(&mut self.conn).await.unwrap();
    }
}
