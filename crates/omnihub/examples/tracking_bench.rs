//! Tracking and identity benchmark: starts a hub on a fresh SQLite database
//! (synchronous = FULL: a call is answered only once durable) and drives it
//! over HTTP on 127.0.0.1, then times the resolver alone.
//!
//! ```text
//! cargo run --release -p omnihub --example tracking_bench -- \
//!     [single_calls=20000] [single_concurrency=64] [batch_events=200000] [batch_size=100] [batch_concurrency=8] [rebuild_identifiers=1000000]
//! ```
//!
//! Every loop is bounded by the counts given; nothing leaves the machine.

use std::time::{Duration, Instant};

use omnihub::app::server::Hub;
use omnihub::customers::identity::resolver::{self, EdgeInput, NodeInput};
use omnihub::customers::identity::rules::IdentityRules;
use omnihub::platform::channels::{self, ChannelKind, ChannelName};
use omnihub::platform::config::Settings;
use omnihub::platform::keys::{self, Scopes};
use serde_json::{Value, json};

/// Distinct visitors the generated traffic comes from.
const VISITORS: usize = 5_000;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The i-th call of a realistic mix: mostly tracks and pages from known
/// visitors, one in ten an identify that links a visitor to a user (and an
/// email), so the identity graph grows and regroups as it goes.
fn call(i: usize) -> Value {
    let visitor = i % VISITORS;
    match i % 10 {
        0 => {
            json!({"type": "identify", "messageId": format!("m-{i}"), "anonymousId": format!("anon-{visitor}"),
                    "userId": format!("user-{}", visitor / 2),
                    "traits": {"email": format!("user-{}@example.com", visitor / 2), "plan": "gold"}})
        }
        1..=3 => {
            json!({"type": "page", "messageId": format!("m-{i}"), "anonymousId": format!("anon-{visitor}"),
                    "name": "Product", "properties": {"path": format!("/p/{}", i % 97)}})
        }
        _ => {
            json!({"type": "track", "messageId": format!("m-{i}"), "anonymousId": format!("anon-{visitor}"),
                    "event": "Product Viewed", "properties": {"sku": format!("SKU-{}", i % 500), "price": 1999}})
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let single_calls = arg(1, 20_000);
    let single_concurrency = arg(2, 64);
    let batch_events = arg(3, 200_000);
    let batch_size = arg(4, 100);
    let batch_concurrency = arg(5, 8);

    let dir = std::env::temp_dir().join(format!("omnihub-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut settings =
        Settings::for_database(&format!("sqlite://{}", dir.join("bench.db").display()));
    settings.listen = "127.0.0.1:0".parse()?;
    let hub = Hub::start(settings).await?;
    let store = hub.state.store.clone();
    let channel = channels::create(
        &store,
        ChannelKind::Web,
        ChannelName::parse("bench web").map_err(anyhow::Error::msg)?,
        None,
        None,
    )
    .await?;
    let scopes = Scopes::parse(["events:write", "customers:read"]).map_err(anyhow::Error::msg)?;
    let (_, key) = keys::create(&store, channel.id, "bench".into(), scopes, None).await?;
    let base = format!("http://{}", hub.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    // Single calls: `single_concurrency` clients, each waits for its answer.
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let mut tasks = Vec::new();
    for worker in 0..single_concurrency {
        let client = client.clone();
        let key = key.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker;
            while i < single_calls {
                let body = call(i);
                let path = format!("/v1/{}", body["type"].as_str().unwrap_or("track"));
                let sent = Instant::now();
                let response = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => latencies.push(sent.elapsed()),
                    Ok(r) => eprintln!("single call failed: {}", r.status()),
                    Err(e) => eprintln!("single call failed: {e}"),
                }
                i += single_concurrency;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let single_elapsed = started.elapsed();
    let single_cpu = cpu_seconds() - cpu_started;
    latencies.sort();
    println!(
        "single: {} calls in {:.2}s = {:.0} calls/s (concurrency {single_concurrency}); latency p50 {:?} p99 {:?}; \
         process CPU {:.0} µs per call (client + server)",
        latencies.len(),
        single_elapsed.as_secs_f64(),
        latencies.len() as f64 / single_elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        single_cpu * 1e6 / latencies.len().max(1) as f64,
    );

    // Batches: `batch_concurrency` clients sending `batch_size` calls each time.
    let batches = batch_events.div_ceil(batch_size);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let mut tasks = Vec::new();
    for worker in 0..batch_concurrency {
        let client = client.clone();
        let key = key.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0usize;
            let mut b = worker;
            while b < batches {
                let calls: Vec<Value> = (0..batch_size)
                    .map(|j| call(single_calls + b * batch_size + j))
                    .collect();
                let response = client
                    .post(format!("{base}/v1/batch"))
                    .bearer_auth(&key)
                    .json(&json!({"batch": calls}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        accepted += body["accepted"].as_u64().unwrap_or(0) as usize;
                    }
                    Ok(r) => eprintln!("batch failed: {}", r.status()),
                    Err(e) => eprintln!("batch failed: {e}"),
                }
                b += batch_concurrency;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await?;
    }
    let batch_elapsed = started.elapsed();
    let batch_cpu = cpu_seconds() - cpu_started;
    println!(
        "batch: {accepted} events in {:.2}s = {:.0} events/s ({batch_size} per batch, concurrency {batch_concurrency}); \
         process CPU {:.0} µs per event (client + server)",
        batch_elapsed.as_secs_f64(),
        accepted as f64 / batch_elapsed.as_secs_f64(),
        batch_cpu * 1e6 / accepted.max(1) as f64,
    );

    // Incremental resolution alone: the resolver on a typical profile's part
    // of the graph (a user, 4 browsers, 2 devices, 2 emails, a loyalty id).
    let rules = IdentityRules::default();
    let mut samples = Vec::new();
    for round in 0..20_000 {
        let kinds = [
            "user_id",
            "anonymous_id",
            "anonymous_id",
            "anonymous_id",
            "anonymous_id",
            "device_id",
            "device_id",
            "email",
            "email",
            "loyalty_id",
        ];
        let nodes: Vec<NodeInput> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| NodeInput {
                id: format!("n{round}-{i:02}"),
                kind: k.to_string(),
                home: format!("h{i:02}"),
                pinned_quarantine: false,
            })
            .collect();
        let edges: Vec<EdgeInput> = (1..kinds.len())
            .map(|i| EdgeInput {
                id: format!("e{i:02}"),
                from: nodes[0].id.clone(),
                to: nodes[i].id.clone(),
                verified: i % 2 == 0,
                trusted: true,
                observed_at: i as i64,
            })
            .collect();
        let t = Instant::now();
        let resolution = resolver::resolve(&rules, &nodes, &edges);
        samples.push(t.elapsed());
        assert_eq!(resolution.groups.len(), 1);
    }
    samples.sort();
    println!(
        "resolver (10 identifiers, 9 links): p50 {:?} p99 {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99)
    );

    // A regrouping call end to end: an identify that links a new browser to
    // an existing user, one at a time (includes HTTP and the durable commit).
    let mut samples = Vec::new();
    for i in 0..500 {
        let body =
            json!({"userId": format!("user-{}", i % 100), "anonymousId": format!("fresh-{i}")});
        let t = Instant::now();
        let r = client
            .post(format!("{base}/v1/identify"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await?;
        if r.status().is_success() {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    println!(
        "regrouping identify end to end (concurrency 1): p50 {:?} p99 {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99)
    );

    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    // Full rebuild in memory: the resolver over a synthetic graph of
    // `rebuild_identifiers` identifiers (a quarter each user ids, browsers,
    // emails, devices), three links per user. No index is kept between runs:
    // this is the cost of regrouping everything from the ledger.
    let rebuild_identifiers = arg(6, 1_000_000);
    let users = rebuild_identifiers / 4;
    let hwm_before = peak_rss_kib();
    let mut nodes = Vec::with_capacity(rebuild_identifiers);
    let mut edges = Vec::with_capacity(users * 3);
    for u in 0..users {
        let user = format!("u{u:09}");
        for (kind, prefix) in [
            ("user_id", "u"),
            ("anonymous_id", "a"),
            ("email", "e"),
            ("device_id", "d"),
        ] {
            nodes.push(NodeInput {
                id: format!("{prefix}{u:09}"),
                kind: kind.to_string(),
                home: format!("h{prefix}{u:09}"),
                pinned_quarantine: false,
            });
        }
        for (i, prefix) in ["a", "e", "d"].iter().enumerate() {
            edges.push(EdgeInput {
                id: format!("l{i}{u:09}"),
                from: user.clone(),
                to: format!("{prefix}{u:09}"),
                verified: true,
                trusted: true,
                observed_at: u as i64,
            });
        }
    }
    let t = Instant::now();
    let resolution = resolver::resolve(&rules, &nodes, &edges);
    let elapsed = t.elapsed();
    let hwm_after = peak_rss_kib();
    println!(
        "rebuild: {} identifiers, {} links -> {} profiles in {:.2}s; peak RSS grew {} MiB ({} bytes/identifier incl. inputs)",
        nodes.len(),
        edges.len(),
        resolution.groups.len(),
        elapsed.as_secs_f64(),
        hwm_after.saturating_sub(hwm_before) / 1024,
        hwm_after.saturating_sub(hwm_before) * 1024 / nodes.len().max(1) as u64,
    );
    Ok(())
}

/// CPU time (user + system) this process used so far, in seconds (Linux
/// `/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which ends with ')').
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0)
}

/// Peak resident memory of this process (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
