//! A live stream whose type filter matches nothing, opened at the start of a
//! large feed: what its catch-up from the database costs.
//!
//! 1. Starts a hub in-process on a fresh SQLite file and writes `--events`
//!    `bench.tick` events through the group-commit writer (`--batch` per
//!    operation), so all but the newest 16,384 (the tail's ring) are only in
//!    the database.
//! 2. Times, through the library, the two ways to catch up from position 0
//!    to the head: every event read and parsed, the filter applied in memory
//!    (the stream before), and the filter in SQL (`events::store::list_range`,
//!    the stream now).
//! 3. Over HTTP: opens `GET /v1/stream?after=0&types=bench.match`, writes one
//!    `bench.match` event and times its arrival.

use std::time::Instant;

use omnihub::app::server::Hub;
use omnihub::platform::config::Settings;
use omnihub::platform::events::{NewEvent, TypeFilter};
use omnihub::platform::events::{head, list_after, list_range};
use omnihub::platform::storage::StoreError;
use serde_json::json;

use crate::profile::{cpu_seconds, load_average};

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Events in the feed before the stream opens.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events per write operation.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
}

/// Events per catch-up query (the stream's `CATCH_UP_BATCH`).
const CATCH_UP_BATCH: i64 = 500;

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
    println!("load average at start: {}", load_average());
    write_events(options, hub).await?;
    let db = hub.state.store.reader();
    let end = head(db).await?;
    let nothing = TypeFilter::parse("bench.match").map_err(anyhow::Error::msg)?;

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let (mut cursor, mut read) = (0, 0usize);
    loop {
        let events = list_after(db, cursor, &TypeFilter::default(), CATCH_UP_BATCH).await?;
        let Some(last) = events.last() else { break };
        cursor = last.position;
        read += events.len();
        let _matching = events.iter().filter(|e| nothing.matches(&e.kind)).count();
    }
    println!(
        "catch-up, every event read and parsed (before): {read} events in {:.2} s, {:.2} s CPU",
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let found = list_range(db, 0, end, &nothing, CATCH_UP_BATCH).await?;
    println!(
        "catch-up, filter in SQL (now): {} events in {:.4} s, {:.4} s CPU",
        found.len(),
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );
    stream_over_http(hub).await?;
    println!("load average at end: {}", load_average());
    Ok(())
}

async fn write_events(options: &Options, hub: &Hub) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = hub.state.store.clone();
    let (events, batch) = (options.events, options.batch.max(1));
    for first in (0..events).step_by(batch) {
        let last = (first + batch).min(events);
        store
            .write(move |tx| {
                Box::pin(async move {
                    for n in first..last {
                        tx.emit(NewEvent::new("bench.tick", tx.now(), json!({ "n": n })));
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .await?;
    }
    println!(
        "wrote {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Opens the stream at position 0 with a filter that matches nothing yet,
/// writes one matching event and times its arrival.
async fn stream_over_http(hub: &Hub) -> anyhow::Result<()> {
    let key = crate::webhooks::admin_key(hub).await?;
    let url = format!("http://{}/v1/stream?after=0&types=bench.match", hub.addr);
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(&key)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().as_u16() == 200,
        "stream: {}",
        response.status()
    );
    hub.state
        .store
        .write(|tx| {
            Box::pin(async move {
                tx.emit(NewEvent::new("bench.match", tx.now(), json!({})));
                Ok::<_, StoreError>(())
            })
        })
        .await?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    crate::sse::wait_for(&mut body, &mut buffer, "bench.match").await?;
    println!(
        "GET /v1/stream?after=0&types=bench.match: the matching event arrived {:.1} ms after connecting; {:.1} ms CPU",
        started.elapsed().as_secs_f64() * 1e3,
        (cpu_seconds() - cpu) * 1e3
    );
    Ok(())
}
