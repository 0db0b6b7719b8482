//! `live-availability`: how long a POS sale takes to reach another channel's
//! open live stream, on one node (SQLite), from the moment the POS sends the
//! movement to the moment the web client has the `inventory.availability_changed`
//! event.

use std::time::Instant;

use serde_json::{Value, json};

use omnihub::app::server::Hub;
use omnihub::platform::channels::{self, ChannelKind, ChannelName};
use omnihub::platform::config::Settings;
use omnihub::platform::keys::{self, Scopes};

#[derive(clap::Args)]
pub struct Options {
    /// Sales to time, one after another.
    #[arg(long, default_value_t = 500)]
    pub sales: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("omnihub-live-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut settings =
        Settings::for_database(&format!("sqlite://{}", dir.join("omnihub.db").display()));
    settings.listen = "127.0.0.1:0".parse()?;
    let hub = Hub::start(settings).await?;
    let base = format!("http://{}/v1", hub.addr);
    let store = hub.state.store.clone();
    let admin = channels::create(
        &store,
        ChannelKind::Backoffice,
        ChannelName::parse("Bench").map_err(anyhow::Error::msg)?,
        None,
        None,
    )
    .await?;
    let (_, key) = keys::create(
        &store,
        admin.id,
        "bench".into(),
        Scopes::parse(["admin"]).map_err(anyhow::Error::msg)?,
        None,
    )
    .await?;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    post(
        "/products",
        json!({"titles": {"en": "Shoe"}, "variants": [{"sku": "SHOE"}]}),
    )
    .await?
    .error_for_status()?;
    let store_location: Value = post("/locations", json!({"kind": "store", "name": "Main St"}))
        .await?
        .json()
        .await?;
    let location = store_location["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let receipt = json!({"movements": [{"id": "stock", "sku": "SHOE", "location_id": location, "reason": "receipt", "quantity": 100000}]});
    post("/inventory/movements", receipt)
        .await?
        .error_for_status()?;

    let stream = client
        .get(format!(
            "{base}/stream?types=inventory.availability_changed"
        ))
        .bearer_auth(&key)
        .send()
        .await?
        .error_for_status()?;
    let mut bytes = stream.bytes_stream();
    let mut buffer = String::new();
    let mut latencies = Vec::with_capacity(options.sales);
    for i in 0..options.sales {
        let sale = json!({"movements": [{"id": format!("sale-{i}"), "sku": "SHOE", "location_id": location, "reason": "sale", "quantity": 1}]});
        let expected = format!("\"on_hand\":{}", 100_000 - i as i64 - 1);
        let started = Instant::now();
        post("/inventory/movements", sale)
            .await?
            .error_for_status()?;
        crate::sse::wait_for(&mut bytes, &mut buffer, &expected).await?;
        latencies.push(started.elapsed());
    }
    println!(
        "POS sale → web stream, {} sales: {} (includes the sale's own durable commit)",
        latencies.len(),
        crate::sse::percentiles(&mut latencies)
    );
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
