//! Outbox-to-webhook delivery throughput on SQLite.
//!
//! 1. Starts a hub in-process (`Hub::start`) on a fresh SQLite file in a
//!    temporary directory, listening on `127.0.0.1:0`.
//! 2. Starts a local receiver (axum) that answers 204 and counts the distinct
//!    `webhook-id`s of `bench.tick` events.
//! 3. Creates an admin key through the library (as the test harness does) and
//!    subscribes the receiver to `*` through the HTTP API.
//! 4. Writes N `bench.tick` events through the group-commit writer
//!    (`store.write(|tx| tx.emit(…))`), `--batch` events per operation from
//!    `--producers` concurrent tasks: the events enter the outbox exactly as a
//!    domain change's events do, without the cost of an HTTP request each.
//! 5. Reports events/s from the first write to the last delivery received.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use omnihub::app::server::Hub;
use omnihub::platform::channels::{self, ChannelKind, ChannelName};
use omnihub::platform::config::Settings;
use omnihub::platform::events::NewEvent;
use omnihub::platform::keys::{self, Scopes};
use omnihub::platform::storage::StoreError;
use serde_json::json;
use tokio::sync::Notify;

/// The event type the benchmark writes; the receiver counts only these.
const EVENT_TYPE: &str = "bench.tick";
/// How often progress is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Events to write and deliver.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Events emitted per write operation.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent producer tasks (their operations share group commits).
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// SQLite `synchronous` of the hub: FULL (the default) or NORMAL.
    #[arg(long, default_value = "FULL")]
    sqlite_synchronous: String,
    /// Concurrent requests to the endpoint (the hub's webhook_concurrency).
    #[arg(long)]
    webhook_concurrency: Option<usize>,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

/// What the receiver has seen.
struct Received {
    ids: Mutex<HashSet<String>>,
    requests: AtomicU64,
    target: usize,
    all_in: Notify,
}

async fn receive(
    State(received): State<Arc<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    received.requests.fetch_add(1, Ordering::Relaxed);
    let needle = format!("\"type\":\"{EVENT_TYPE}\"");
    if !body
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
    {
        return StatusCode::NO_CONTENT;
    }
    let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    let count = match received.ids.lock() {
        Ok(mut ids) => {
            ids.insert(id.to_string());
            ids.len()
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR,
    };
    if count == received.target {
        received.all_in.notify_one();
    }
    StatusCode::NO_CONTENT
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.events > 0 && options.batch > 0 && options.producers > 0);
    let dir = std::env::temp_dir().join(format!("omnihub-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&options, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(options: &Options, dir: &std::path::Path) -> anyhow::Result<()> {
    let received = Arc::new(Received {
        ids: Mutex::new(HashSet::with_capacity(options.events)),
        requests: AtomicU64::new(0),
        target: options.events,
        all_in: Notify::new(),
    });
    let receiver_url = start_receiver(received.clone()).await?;

    let hub = start_hub(options, dir.join("omnihub.db")).await?;
    let base = format!("http://{}", hub.addr);
    let admin_key = admin_key(&hub).await?;
    subscribe(&base, &admin_key, &receiver_url).await?;

    println!(
        "writing {} events ({} per operation, {} producers) on SQLite (synchronous={})",
        options.events, options.batch, options.producers, options.sqlite_synchronous
    );
    let progress = tokio::spawn(report_progress(received.clone()));
    let started = Instant::now();
    produce(&hub, options).await?;
    let written = started.elapsed();
    let waited = tokio::time::timeout(
        Duration::from_secs(options.timeout_secs),
        received.all_in.notified(),
    )
    .await;
    let delivered = started.elapsed();
    progress.abort();

    let distinct = received.ids.lock().map(|ids| ids.len()).unwrap_or(0);
    let requests = received.requests.load(Ordering::Relaxed);
    hub.shutdown().await;
    if waited.is_err() {
        anyhow::bail!(
            "only {distinct} of {} events arrived within {} s",
            options.events,
            options.timeout_secs
        );
    }
    let rate = |d: Duration| options.events as f64 / d.as_secs_f64();
    println!(
        "written:   {} events in {:.2} s ({:.0} events/s into the outbox)",
        options.events,
        written.as_secs_f64(),
        rate(written)
    );
    println!(
        "delivered: {distinct} events in {:.2} s from the first write to the last delivery ({} requests received)",
        delivered.as_secs_f64(),
        requests
    );
    println!("throughput: {:.0} events/s", rate(delivered));
    Ok(())
}

async fn start_receiver(received: Arc<Received>) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn start_hub(options: &Options, db: PathBuf) -> anyhow::Result<Hub> {
    let mut settings = Settings::for_database(&format!("sqlite://{}", db.display()));
    settings.listen = "127.0.0.1:0".parse()?;
    settings.sqlite_synchronous = options.sqlite_synchronous.to_ascii_uppercase();
    if let Some(concurrency) = options.webhook_concurrency {
        settings.webhooks.concurrency = concurrency;
    }
    Hub::start(settings).await
}

/// An admin key made through the library, as `tests/api/support.rs` does.
pub(crate) async fn admin_key(hub: &Hub) -> anyhow::Result<String> {
    let store = &hub.state.store;
    let name = ChannelName::parse("Bench back office").map_err(anyhow::Error::msg)?;
    let channel = channels::create(store, ChannelKind::Backoffice, name, None, None).await?;
    let scopes = Scopes::parse(["admin"]).map_err(anyhow::Error::msg)?;
    let (_, secret) = keys::create(store, channel.id, "bench".into(), scopes, None).await?;
    Ok(secret)
}

async fn subscribe(base: &str, admin_key: &str, url: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(admin_key)
        .json(&json!({ "url": url, "event_types": ["*"], "description": "omnihub-bench" }))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "subscribe: {status} {body}");
    Ok(())
}

/// Writes the events from concurrent producers through the group-commit writer.
async fn produce(hub: &Hub, options: &Options) -> anyhow::Result<()> {
    let operations = options.events.div_ceil(options.batch);
    let next = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::with_capacity(options.producers);
    for _ in 0..options.producers {
        let store = hub.state.store.clone();
        let next = next.clone();
        let (events, batch) = (options.events as u64, options.batch as u64);
        producers.push(tokio::spawn(async move {
            loop {
                let op = next.fetch_add(1, Ordering::Relaxed);
                if op >= operations as u64 {
                    return Ok::<_, StoreError>(());
                }
                let first = op * batch;
                let last = (first + batch).min(events);
                store
                    .write(move |tx| {
                        Box::pin(async move {
                            for n in first..last {
                                let event = NewEvent::new(EVENT_TYPE, tx.now(), json!({ "n": n }))
                                    .subject("bench_id", n);
                                tx.emit(event);
                            }
                            Ok::<_, StoreError>(())
                        })
                    })
                    .await?;
            }
        }));
    }
    for producer in producers {
        producer.await??;
    }
    Ok(())
}

async fn report_progress(received: Arc<Received>) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(PROGRESS_INTERVAL).await;
        let distinct = received.ids.lock().map(|ids| ids.len()).unwrap_or(0);
        eprintln!(
            "  {:>5.1} s: {distinct} delivered",
            started.elapsed().as_secs_f64()
        );
    }
}
