//! Carts and checkout benchmarks (results in docs/benchmarks.md).
//!
//! Against a running hub: `bench/carts.sh` starts one and runs
//! `carts_bench <base url> <admin key> [flash]`, which measures (with
//! `flash`, only the flash sale)
//! 1. add-to-cart latency at a fixed arrival rate (open loop) over many carts;
//! 2. a flash sale: 256 concurrent checkouts of one SKU, more carts than
//!    units, reporting orders/s and checking for oversell;
//! 3. cart sync: request sent on one channel → `cart.updated` received on
//!    another channel's open stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

/// Arrival rate and length of the add-to-cart run.
const ADD_RATE_PER_SECOND: u64 = 1_000;
const ADD_SECONDS: u64 = 10;
/// Carts the add-to-cart run spreads over.
const ADD_CARTS: usize = 1_000;
/// Flash sale: units on sale, carts trying, checkouts in flight.
const FLASH_UNITS: i64 = 2_000;
const FLASH_CARTS: usize = 2_560;
const FLASH_CONCURRENCY: usize = 256;
/// Cart sync: changes measured.
const SYNC_CHANGES: usize = 500;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, key: &str, path: &str, body: Value) -> Result<(u16, Value), Error> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A POST carrying an `Idempotency-Key`, as a client that retries safely sends it.
    async fn post_once(
        &self,
        key: &str,
        path: &str,
        body: Value,
        idempotency_key: &str,
    ) -> Result<(u16, Value), Error> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("idempotency-key", idempotency_key)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn get(&self, key: &str, path: &str) -> Result<Value, Error> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await?;
        Ok(response.json().await?)
    }

    async fn key(&self, admin: &str, kind: &str) -> Result<String, Error> {
        let name = format!("bench {kind} {}", uuid::Uuid::now_v7().simple());
        let (_, channel) = self
            .post(admin, "/v1/channels", json!({ "kind": kind, "name": name }))
            .await?;
        let (_, key) = self
            .post(
                admin,
                "/v1/keys",
                json!({ "channel_id": channel["id"], "name": "bench",
                        "scopes": ["carts:read", "carts:write", "events:read", "inventory:read"] }),
            )
            .await?;
        Ok(key["secret"].as_str().ok_or("no secret")?.to_string())
    }

    /// Opens `count` carts, each with `lines`, 64 at a time.
    async fn carts(
        &self,
        key: &str,
        prefix: &str,
        count: usize,
        lines: &[(&str, i64)],
    ) -> Result<Vec<String>, Error> {
        let gate = Arc::new(Semaphore::new(64));
        let mut tasks = Vec::new();
        for i in 0..count {
            let (api, key, gate) = (self.clone(), key.to_string(), gate.clone());
            let owner = format!("{prefix}-{i}");
            let lines: Vec<(String, i64)> =
                lines.iter().map(|(s, q)| (s.to_string(), *q)).collect();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await?;
                let (_, cart) = api
                    .post(
                        &key,
                        "/v1/carts",
                        json!({ "customer_id": owner, "currency": "USD" }),
                    )
                    .await?;
                let id = cart["id"].as_str().ok_or("no cart id")?.to_string();
                for (sku, quantity) in lines {
                    api.post(
                        &key,
                        &format!("/v1/carts/{id}/lines"),
                        json!({ "sku": sku, "quantity": quantity }),
                    )
                    .await?;
                }
                Ok::<_, Error>(id)
            }));
        }
        let mut ids = Vec::with_capacity(count);
        for task in tasks {
            ids.push(task.await??);
        }
        Ok(ids)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn summary(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    format!(
        "n={} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0)
    )
}

async fn setup(api: &Api, admin: &str) -> Result<String, Error> {
    api.post(
        admin,
        "/v1/products",
        json!({ "titles": { "en": "Bench" }, "variants": [
            { "sku": "BENCH-TEE", "prices": { "USD": 1000 } },
            { "sku": "FLASH", "prices": { "USD": 1000 } } ] }),
    )
    .await?;
    let (_, wh) = api
        .post(
            admin,
            "/v1/locations",
            json!({ "kind": "warehouse", "name": "Bench" }),
        )
        .await?;
    let wh = wh["id"].as_str().ok_or("no location")?.to_string();
    let receipts: Vec<Value> = (0..10)
        .map(|i| {
            json!({ "id": format!("bench-{i}"), "sku": "BENCH-TEE", "location_id": wh,
                          "reason": "receipt", "quantity": 100_000 })
        })
        .chain(std::iter::once(
            json!({ "id": "bench-flash", "sku": "FLASH",
            "location_id": wh, "reason": "receipt", "quantity": FLASH_UNITS }),
        ))
        .collect();
    api.post(
        admin,
        "/v1/inventory/movements",
        json!({ "movements": receipts }),
    )
    .await?;
    Ok(wh)
}

async fn add_to_cart(api: &Api, key: &str) -> Result<(), Error> {
    let carts = Arc::new(api.carts(key, "bench-add", ADD_CARTS, &[]).await?);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / ADD_RATE_PER_SECOND));
    let total = ADD_RATE_PER_SECOND * ADD_SECONDS;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total as usize {
        ticker.tick().await;
        let (api, key, carts) = (api.clone(), key.to_string(), carts.clone());
        let (latencies, errors) = (latencies.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let cart = &carts[i % carts.len()];
            let sent = Instant::now();
            let outcome = api
                .post(
                    &key,
                    &format!("/v1/carts/{cart}/lines"),
                    json!({ "sku": "BENCH-TEE", "quantity": 1 }),
                )
                .await;
            let took = sent.elapsed();
            match outcome {
                Ok((200, _)) => latencies.lock().await.push(took),
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let latencies = std::mem::take(&mut *latencies.lock().await);
    println!(
        "== 1. add-to-cart at {ADD_RATE_PER_SECOND}/s offered over {ADD_CARTS} carts: {:.0}/s done, {} errors; {}",
        latencies.len() as f64 / seconds,
        errors.load(std::sync::atomic::Ordering::Relaxed),
        summary(latencies)
    );
    Ok(())
}

/// With `idempotent`, every checkout carries an `Idempotency-Key` (as
/// docs/quickstart.md recommends).
async fn flash_sale(
    api: &Api,
    key: &str,
    admin: &str,
    wh: &str,
    idempotent: bool,
) -> Result<(), Error> {
    let carts = api
        .carts(key, "bench-flash", FLASH_CARTS, &[("FLASH", 1)])
        .await?;
    let gate = Arc::new(Semaphore::new(FLASH_CONCURRENCY));
    println!("   (carts ready; checkouts start)");
    let cpu_before = hub_cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for cart in carts {
        let (api, key, gate) = (api.clone(), key.to_string(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let body = json!({ "fulfilment": { "type": "sourced" },
                "tenders": [{ "method": "card", "reference": "bench", "amount_minor": 1000 }] });
            let path = format!("/v1/carts/{cart}/checkout");
            let (status, _) = if idempotent {
                let once = format!("checkout-{cart}");
                api.post_once(&key, &path, body, &once).await?
            } else {
                api.post(&key, &path, body).await?
            };
            Ok::<_, Error>((status, Instant::now()))
        }));
    }
    let (mut placed, mut refused, mut other) = (0, 0, 0);
    let mut last_order = started;
    for task in tasks {
        let (status, at) = task.await??;
        match status {
            201 => {
                placed += 1;
                last_order = last_order.max(at);
            }
            409 => refused += 1,
            _ => other += 1,
        }
    }
    let all = started.elapsed().as_secs_f64();
    let hub_cpu = match (cpu_before, hub_cpu_seconds()) {
        (Some(before), Some(after)) => format!(
            "; hub CPU {:.0} µs per checkout",
            (after - before) * 1e6 / FLASH_CARTS as f64
        ),
        _ => String::new(),
    };
    let until_sold_out = (last_order - started).as_secs_f64();
    let level = api.get(admin, "/v1/availability?sku=FLASH").await?;
    let at_wh = level["locations"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["location_id"] == wh))
        .map(|l| l["level"].clone())
        .unwrap_or(Value::Null);
    println!(
        "== 2. flash sale{}: {FLASH_CARTS} checkouts of 1 FLASH, {FLASH_CONCURRENCY} in flight, {FLASH_UNITS} units: \
         {placed} orders in {until_sold_out:.2} s ({:.0} orders/s), {refused} refused, {other} other, all answered in {all:.2} s \
         ({:.0} checkouts/s); level after: reserved {} available {} → oversold: {}",
        if idempotent {
            " with Idempotency-Key"
        } else {
            ""
        },
        placed as f64 / until_sold_out.max(1e-9),
        FLASH_CARTS as f64 / all,
        at_wh["reserved"],
        at_wh["available"],
        placed > FLASH_UNITS || at_wh["available"].as_i64().unwrap_or(0) < 0
    );
    println!("   (the flash sale's checkouts, refused ones included{hub_cpu})");
    Ok(())
}

/// User + system CPU seconds of the hub process named by `OMNIHUB_PID`
/// (`/proc/<pid>/stat`); it moves little with the machine's load, unlike
/// throughput.
fn hub_cpu_seconds() -> Option<f64> {
    let pid = std::env::var("OMNIHUB_PID").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime is the 14th field.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS_PER_SECOND)
}

/// `getconf CLK_TCK` on Linux.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

async fn cart_sync(api: &Api, writer: &str, reader: &str) -> Result<(), Error> {
    let carts = api.carts(writer, "bench-sync", 1, &[]).await?;
    let cart = carts[0].clone();
    let response = api
        .client
        .get(format!("{}/v1/stream?types=cart.updated", api.base))
        .bearer_auth(reader)
        .send()
        .await?;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut latencies = Vec::with_capacity(SYNC_CHANGES);
    for _ in 0..SYNC_CHANGES {
        let sent = Instant::now();
        let (status, body) = api
            .post(
                writer,
                &format!("/v1/carts/{cart}/lines"),
                json!({ "sku": "BENCH-TEE", "quantity": 1 }),
            )
            .await?;
        if status != 200 {
            return Err(format!("add failed: {status}").into());
        }
        let version = body["version"].as_i64().ok_or("no version")?;
        // Read until this version's event arrives.
        'wait: loop {
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                    let event: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    if event["data"]["id"] == cart.as_str() && event["data"]["version"] == version {
                        latencies.push(sent.elapsed());
                        break 'wait;
                    }
                }
            }
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(chunk)) => buffer.push_str(&String::from_utf8_lossy(&chunk?)),
                _ => return Err("stream ended or stalled".into()),
            }
        }
    }
    println!(
        "== 3. cart sync, request sent on one channel → cart.updated on another's stream (includes the write): {}",
        summary(latencies)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .ok_or("usage: carts_bench <base url> <admin key> [flash | flash-idempotent]")?;
    let admin = args
        .next()
        .ok_or("usage: carts_bench <base url> <admin key> [flash | flash-idempotent]")?;
    let api = Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()?,
        base,
    };
    // `flash`: only the flash sale; `flash-idempotent`: only the flash sale,
    // every checkout with an Idempotency-Key.
    let mode = args.next();
    let idempotent = mode.as_deref() == Some("flash-idempotent");
    let only_flash = idempotent || mode.as_deref() == Some("flash");
    let wh = setup(&api, &admin).await?;
    let web = api.key(&admin, "web").await?;
    let app = api.key(&admin, "app").await?;
    if !only_flash {
        add_to_cart(&api, &web).await?;
    }
    flash_sale(&api, &web, &admin, &wh, idempotent).await?;
    if !only_flash {
        cart_sync(&api, &app, &web).await?;
    }
    Ok(())
}
