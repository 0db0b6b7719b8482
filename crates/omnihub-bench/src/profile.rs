//! The 360° view of a profile with many calls, served from the materialized
//! traits, against the fold of every call it replaced; and the cost of the
//! trait upsert that ingest now does.
//!
//! 1. Starts a hub in-process on a fresh SQLite file (`synchronous = FULL`).
//! 2. Sends `--calls` `identify` calls of one person over HTTP (`/v1/batch`,
//!    `--batch` calls per request, 4 clients), each with `--traits` trait
//!    names never seen before (the abuse of issue 11: endless names).
//! 3. Reads `GET /v1/customers/{id}` `--reads` times (what a client sees).
//! 4. Times the traits part alone through the library: the materialized read
//!    (`tracking::traits::of_customer` + `customers::traits_of`) against the
//!    fold of every call (`tracking::store::trait_observations` +
//!    `customers::fold_traits`, the code before), and checks they agree.
//! 5. Times the upsert alone: write operations of 100 calls with 2 traits
//!    each (as the `tracking_bench` identify calls carry), against the same
//!    operations without it.

use std::time::{Duration, Instant};

use omnihub::app::server::Hub;
use omnihub::customers::tracking::NewTrackingRow;
use omnihub::customers::tracking::traits::{self, PendingTraits};
use omnihub::platform::channels::{self, ChannelKind, ChannelName};
use omnihub::platform::config::Settings;
use omnihub::platform::events::NewEvent;
use omnihub::platform::keys::{self, Scopes};
use omnihub::platform::storage::StoreError;
use serde_json::{Map, Value, json};

use crate::sse::percentiles;

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Tracking calls of the one profile.
    #[arg(long, default_value_t = 50_000)]
    calls: usize,
    /// New trait names per call.
    #[arg(long, default_value_t = 10)]
    traits: usize,
    /// Calls per `/v1/batch` request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Reads of the 360° view (and of the materialized traits).
    #[arg(long, default_value_t = 20)]
    reads: usize,
    /// Folds of every call (the old read; each reads every call).
    #[arg(long, default_value_t = 3)]
    folds: usize,
    /// Write operations of the upsert measurement (100 calls each).
    #[arg(long, default_value_t = 200)]
    upsert_operations: usize,
}

/// CPU time of this process (user + system) in seconds.
pub fn cpu_seconds() -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0)
}

/// The load average (1 min) now.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("omnihub-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut settings =
        Settings::for_database(&format!("sqlite://{}", dir.join("bench.db").display()));
    settings.listen = "127.0.0.1:0".parse()?;
    let hub = Hub::start(settings).await?;
    let result = measure(&options, &hub).await;
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(options: &Options, hub: &Hub) -> anyhow::Result<()> {
    let store = hub.state.store.clone();
    let name = ChannelName::parse("bench web").map_err(anyhow::Error::msg)?;
    let channel = channels::create(&store, ChannelKind::Web, name, None, None).await?;
    let scopes = Scopes::parse(["events:write", "customers:write", "customers:read"])
        .map_err(anyhow::Error::msg)?;
    let (_, key) = keys::create(&store, channel.id, "bench".into(), scopes, None).await?;
    let base = format!("http://{}", hub.addr);
    let client = reqwest::Client::new();
    println!("load average at start: {}", load_average());
    let id = ingest(options, &client, &base, &key).await?;
    read_view(options, &client, &base, &key, &id).await?;
    read_traits(options, hub, &id).await?;
    upsert_cost(options, hub).await?;
    println!("load average at end: {}", load_average());
    Ok(())
}

/// Sends the calls; returns the profile id.
async fn ingest(
    options: &Options,
    client: &reqwest::Client,
    base: &str,
    key: &str,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let cpu = cpu_seconds();
    let requests = options.calls.div_ceil(options.batch);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, base, key) = (client.clone(), base.to_string(), key.to_string());
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            for request in (worker..requests).step_by(4) {
                let first = request * options.batch;
                let last = (first + options.batch).min(options.calls);
                let calls: Vec<Value> = (first..last).map(|i| call(i, options.traits)).collect();
                let response = client
                    .post(format!("{base}/v1/batch"))
                    .bearer_auth(&key)
                    .json(&json!({ "batch": calls }))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "batch: {}",
                    response.status()
                );
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "ingest: {} calls × {} new trait names in {elapsed:.2} s = {:.0} calls/s; {:.0} µs CPU per call (client + hub)",
        options.calls,
        options.traits,
        options.calls as f64 / elapsed,
        (cpu_seconds() - cpu) * 1e6 / options.calls as f64
    );
    let (status, body) = get(
        client,
        &format!("{base}/v1/customers?identifier=user_id:bench-profile"),
        key,
    )
    .await?;
    anyhow::ensure!(status == 200, "lookup: {status}");
    body["items"][0]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no profile"))
}

fn call(i: usize, traits: usize) -> Value {
    let names: Map<String, Value> = (0..traits)
        .map(|k| (format!("t{i:06}_{k:02}"), json!(i)))
        .collect();
    let minute = i as i64;
    let timestamp = chrono_like(minute);
    json!({ "type": "identify", "userId": "bench-profile", "traits": names,
            "messageId": format!("bench-{i}"), "timestamp": timestamp })
}

/// An RFC 3339 time `minute` minutes after 2026-01-01.
fn chrono_like(minute: i64) -> String {
    let at = omnihub::platform::time::from_micros(1_767_225_600_000_000 + minute * 60_000_000);
    at.to_rfc3339()
}

async fn get(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<(u16, Value)> {
    let response = client.get(url).bearer_auth(key).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

async fn read_view(
    options: &Options,
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
) -> anyhow::Result<()> {
    let mut latencies = Vec::new();
    let mut bytes = 0;
    let cpu = cpu_seconds();
    for _ in 0..options.reads {
        let started = Instant::now();
        let response = client
            .get(format!("{base}/v1/customers/{id}"))
            .bearer_auth(key)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().as_u16() == 200,
            "view: {}",
            response.status()
        );
        bytes = response.bytes().await?.len();
        latencies.push(started.elapsed());
    }
    println!(
        "GET /v1/customers/{{id}} ({} calls): {}; {:.1} ms CPU per read; {bytes} bytes",
        options.calls,
        percentiles(&mut latencies),
        (cpu_seconds() - cpu) * 1e3 / options.reads as f64
    );
    Ok(())
}

/// The traits part of the view: materialized read against the full fold.
async fn read_traits(options: &Options, hub: &Hub, id: &str) -> anyhow::Result<()> {
    let db = hub.state.store.reader();
    let mut new = Vec::new();
    let mut materialized = Default::default();
    let cpu = cpu_seconds();
    for _ in 0..options.reads {
        let started = Instant::now();
        materialized = omnihub::app::customer_view::traits_of(traits::of_customer(db, id).await?);
        new.push(started.elapsed());
    }
    let new_cpu = (cpu_seconds() - cpu) * 1e3 / options.reads as f64;
    let mut old: Vec<Duration> = Vec::new();
    let mut folded = Default::default();
    let cpu = cpu_seconds();
    for _ in 0..options.folds {
        let started = Instant::now();
        let observations = omnihub::customers::tracking::trait_observations(db, id).await?;
        folded = omnihub::app::customer_view::fold_traits(observations);
        old.push(started.elapsed());
    }
    let old_cpu = (cpu_seconds() - cpu) * 1e3 / options.folds.max(1) as f64;
    anyhow::ensure!(materialized == folded, "the two reads disagree");
    println!(
        "traits, materialized ({} names): {}; {new_cpu:.1} ms CPU per read",
        materialized.len(),
        percentiles(&mut new)
    );
    println!(
        "traits, fold of every call (before): {}; {old_cpu:.1} ms CPU per read; same answer",
        percentiles(&mut old)
    );
    Ok(())
}

/// The upsert alone, per call, in write operations of 100 calls: empty
/// operations (one event each), upserting ones (the same event), empty ones
/// again (CPU is counted in 10 ms
/// ticks, so per phase, not per operation).
async fn upsert_cost(options: &Options, hub: &Hub) -> anyhow::Result<()> {
    const CALLS: usize = 100;
    let ops = options.upsert_operations;
    let mut phases = Vec::new();
    for (phase, with_traits) in [false, true, false].into_iter().enumerate() {
        let (started, cpu) = (Instant::now(), cpu_seconds());
        for op in 0..ops {
            let pending = if with_traits {
                pending_traits(op, CALLS)
            } else {
                PendingTraits::default()
            };
            // Runs once (no clone of the traits in what is measured).
            hub.state
                .store
                .write_once(move |tx| {
                    Box::pin(async move {
                        let dialect = tx.dialect();
                        traits::write(tx.conn(), dialect, pending).await?;
                        // One event in every operation, so each one commits
                        // (an operation that writes nothing does not).
                        let event = NewEvent::new("bench.op", tx.now(), json!({}));
                        tx.emit(event);
                        Ok::<_, StoreError>(())
                    })
                })
                .await?;
        }
        let wall = started.elapsed().as_secs_f64();
        phases.push((wall, cpu_seconds() - cpu));
        println!(
            "  phase {phase} ({}): {ops} operations in {wall:.2} s",
            if with_traits { "upserts" } else { "empty" }
        );
    }
    let empty = (
        (phases[0].0 + phases[2].0) / 2.0,
        (phases[0].1 + phases[2].1) / 2.0,
    );
    let calls = (ops * CALLS) as f64;
    println!(
        "trait upsert: {:.1} µs wall, {:.1} µs CPU per call with 2 traits (operations of {CALLS} calls, minus empty operations)",
        (phases[1].0 - empty.0) * 1e6 / calls,
        (phases[1].1 - empty.1) * 1e6 / calls,
    );
    Ok(())
}

/// `calls` calls of distinct visitors with an email and a plan, as the
/// identify calls of `tracking_bench` carry; a third of them revisit an
/// identifier of the previous operation (an update, not an insert).
fn pending_traits(op: usize, calls: usize) -> PendingTraits {
    let mut pending = PendingTraits::default();
    for c in 0..calls {
        let visitor = if c % 3 == 0 {
            op.saturating_sub(2) * calls + c
        } else {
            op * calls + c
        };
        let row = NewTrackingRow {
            id: uuid::Uuid::now_v7().to_string(),
            channel_id: "bench".into(),
            message_id: format!("m-{op}-{c}"),
            kind: "identify",
            name: None,
            user_id: None,
            anonymous_id: None,
            anchor_id: format!("visitor-{visitor}"),
            timestamp: omnihub::platform::time::now(),
            received_at: omnihub::platform::time::now(),
            sent_at: None,
            original_timestamp: None,
            properties: "{}".into(),
            traits: String::new(),
            has_traits: true,
            context: "{}".into(),
            locale: None,
            timezone: None,
        };
        let mut traits = Map::new();
        traits.insert("email".into(), json!(format!("user-{visitor}@example.com")));
        traits.insert("plan".into(), json!("gold"));
        pending.observe(
            &row,
            omnihub::platform::time::to_micros(row.timestamp),
            &traits,
        );
    }
    pending
}
