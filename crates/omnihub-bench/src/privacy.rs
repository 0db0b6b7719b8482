//! Privacy requests on a person with a long history (issue 14's targets):
//! the access export's throughput, and the erasure's duration while another
//! client keeps writing (the longest that client waits is what erasure costs
//! everybody else).
//!
//! 1. Starts a hub in-process on a fresh SQLite file (`synchronous = FULL`).
//! 2. Gives one person `--calls` tracking calls over HTTP (`/v1/batch`,
//!    4 clients) and `--orders` shipped orders (cart, line, checkout).
//! 3. Files an access request and downloads the export: bytes, seconds, MB/s.
//! 4. Starts a probe that sends one `track` call of another person every
//!    10 ms, files an erasure by email and polls it until `completed`:
//!    seconds, and the probe's p50/p99/max latency during the erasure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use omnihub::app::server::Hub;
use omnihub::platform::channels::{self, ChannelKind, ChannelName};
use omnihub::platform::config::Settings;
use omnihub::platform::keys::{self, Scopes};
use serde_json::{Value, json};

use crate::profile::{cpu_seconds, load_average};
use crate::sse::percentiles;

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Tracking calls of the person.
    #[arg(long, default_value_t = 100_000)]
    calls: usize,
    /// Shipped orders of the person.
    #[arg(long, default_value_t = 50)]
    orders: usize,
    /// Calls per `/v1/batch` request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Rows per erasure transaction (`erasure_chunk_rows`).
    #[arg(long, default_value_t = 500)]
    chunk_rows: usize,
}

const EMAIL: &str = "bench.person@example.com";

pub async fn run(options: Options) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("omnihub-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut settings =
        Settings::for_database(&format!("sqlite://{}", dir.join("bench.db").display()));
    settings.listen = "127.0.0.1:0".parse()?;
    settings.privacy.erasure_chunk_rows = options.chunk_rows;
    let hub = Hub::start(settings).await?;
    let result = measure(&options, &hub).await;
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        Ok(response.json().await?)
    }
}

async fn measure(options: &Options, hub: &Hub) -> anyhow::Result<()> {
    let store = hub.state.store.clone();
    let name = ChannelName::parse("bench back office").map_err(anyhow::Error::msg)?;
    let channel = channels::create(&store, ChannelKind::Backoffice, name, None, None).await?;
    let scopes = Scopes::parse(["admin"]).map_err(anyhow::Error::msg)?;
    let (_, key) = keys::create(&store, channel.id, "bench".into(), scopes, None).await?;
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", hub.addr),
        key,
    });
    println!("load average at start: {}", load_average());
    let started = Instant::now();
    let customer = history(options, &client).await?;
    println!(
        "seeded {} calls and {} orders in {:.1} s",
        options.calls,
        options.orders,
        started.elapsed().as_secs_f64()
    );
    export(&client).await?;
    erase(&client, &customer).await?;
    println!("load average at end: {}", load_average());
    Ok(())
}

/// The person's history; returns their profile id.
async fn history(options: &Options, client: &Arc<Client>) -> anyhow::Result<String> {
    let identified = client
        .post(
            "/v1/identify",
            &json!({ "userId": "bench-person", "traits": { "email": EMAIL, "name": "Bench Person" } }),
        )
        .await?;
    let customer = identified["customer_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let requests = options.calls.div_ceil(options.batch);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, options) = (client.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            for request in (worker..requests).step_by(4) {
                let first = request * options.batch;
                let last = (first + options.batch).min(options.calls);
                let calls: Vec<Value> = (first..last)
                    .map(|i| json!({ "type": "track", "userId": "bench-person", "event": "Product Viewed",
                        "messageId": format!("bench-{i}"),
                        "properties": { "sku": format!("SKU-{}", i % 500), "price": 2500, "currency": "USD",
                                        "list": "search results", "position": i % 48 } }))
                    .collect();
                client.post("/v1/batch", &json!({ "batch": calls })).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    client
        .post(
            "/v1/products",
            &json!({ "titles": { "en": "Tee" }, "variants": [{ "sku": "TEE", "prices": { "USD": 2500 }, "titles": { "en": "Tee" } }] }),
        )
        .await?;
    let depot = client
        .post(
            "/v1/locations",
            &json!({ "kind": "warehouse", "name": "Depot", "latitude": 45.7, "longitude": 4.8 }),
        )
        .await?;
    let depot = depot["id"].as_str().unwrap_or_default().to_string();
    client
        .post(
            "/v1/inventory/movements",
            &json!({ "movements": [{ "id": uuid::Uuid::now_v7().to_string(), "sku": "TEE",
                "location_id": depot, "reason": "receipt", "quantity": options.orders + 10 }] }),
        )
        .await?;
    for _ in 0..options.orders {
        let cart = client
            .post(
                "/v1/carts",
                &json!({ "customer_id": customer, "currency": "USD" }),
            )
            .await?;
        let cart = cart["id"].as_str().unwrap_or_default().to_string();
        client
            .post(
                &format!("/v1/carts/{cart}/lines"),
                &json!({ "sku": "TEE", "quantity": 1 }),
            )
            .await?;
        client
            .post(
                &format!("/v1/carts/{cart}/checkout"),
                &json!({ "fulfilment": { "type": "ship", "address": {
                        "name": "Bench Person", "lines": ["1 Rue Bench"], "city": "Lyon",
                        "postal_code": "69001", "country": "fr" } },
                    "tenders": [{ "method": "card", "reference": "psp", "amount_minor": 2500 }] }),
            )
            .await?;
    }
    Ok(customer)
}

async fn export(client: &Client) -> anyhow::Result<()> {
    let filed = client
        .post(
            "/v1/privacy/requests",
            &json!({ "kind": "access", "identifier": { "kind": "email", "value": EMAIL } }),
        )
        .await?;
    let url = filed["export_url"].as_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let mut response = client
        .http
        .get(format!("{}{url}", client.base))
        .bearer_auth(&client.key)
        .send()
        .await?;
    let mut bytes = 0usize;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "access export: {:.1} MB in {seconds:.2} s = {:.1} MB/s (process CPU {:.2} s)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds,
        cpu_seconds() - cpu
    );
    Ok(())
}

async fn erase(client: &Arc<Client>, customer: &str) -> anyhow::Result<()> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let call = json!({ "userId": "bystander", "event": "Probe", "messageId": format!("probe-{n}") });
                if client.post("/v1/track", &call).await.is_ok() {
                    latencies.push(started.elapsed());
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let filed = client
        .post(
            "/v1/privacy/requests",
            &json!({ "kind": "erasure", "identifier": { "kind": "email", "value": EMAIL } }),
        )
        .await?;
    let id = filed["id"].as_str().unwrap_or_default().to_string();
    let done = loop {
        let request = client.get(&format!("/v1/privacy/requests/{id}")).await?;
        if request["status"] == "completed" {
            break request;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = probe.await?;
    let steps: Vec<String> = done["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| format!("{} {}", s["name"].as_str().unwrap_or("?"), s["changed"]))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "erasure of {customer}: {seconds:.2} s ({})",
        steps.join(", ")
    );
    println!(
        "  a concurrent writer (a track call every 10 ms, {} calls): {}",
        latencies.len(),
        percentiles(&mut latencies)
    );
    Ok(())
}
