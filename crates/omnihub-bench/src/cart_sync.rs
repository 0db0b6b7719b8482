//! `cart-sync`: how long a cart change made through one `omnihub` process
//! takes to reach a client whose live stream is open on another process on
//! the same PostgreSQL database — from the moment the writing channel sends
//! the change to the moment the reading channel has the `cart.updated`
//! event. The processes are real `omnihub serve` children (the release
//! binary), so the figure includes the commit, `LISTEN/NOTIFY` and the
//! other node's tail.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(clap::Args)]
pub struct Options {
    /// PostgreSQL database both processes use (a fresh schema is created).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub database_url: String,
    /// The `omnihub` binary to run.
    #[arg(long, default_value = "target/release/omnihub")]
    pub omnihub: PathBuf,
    /// Cart changes to time, one after another.
    #[arg(long, default_value_t = 500)]
    pub changes: usize,
}

/// One `omnihub` child process on the benchmark's schema.
fn omnihub(options: &Options, schema: &str, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(&options.omnihub);
    command
        .env("OMNIHUB_DATABASE_URL", &options.database_url)
        .env("OMNIHUB_DATABASE_SCHEMA", schema)
        .env("OMNIHUB_DATA_DIR", data_dir)
        .env("OMNIHUB_LISTEN", "127.0.0.1:0")
        .env("OMNIHUB_LOG_LEVEL", "warn")
        .env_remove("OMNIHUB_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts `omnihub serve` and returns it with its base URL.
async fn serve(
    options: &Options,
    schema: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(Child, String)> {
    let mut child = omnihub(options, schema, dir)
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(base) = line.strip_prefix("omnihub listening on ") {
                return Ok(base.trim().to_string());
            }
        }
        anyhow::bail!("omnihub serve exited before listening")
    })
    .await??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, base))
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let schema = format!("bench_{unique}");
    let dir = std::env::temp_dir().join(format!("omnihub-cart-sync-{unique}"));
    std::fs::create_dir_all(&dir)?;
    let output = omnihub(&options, &schema, &dir)
        .args(["keys", "create", "--scopes", "admin", "--name", "bench"])
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8(output.stdout)?.trim().to_string();
    let (_writer_node, writer) = serve(&options, &schema, &dir).await?;
    let (_reader_node, reader) = serve(&options, &schema, &dir).await?;

    let client = reqwest::Client::new();
    let post = |base: &str, path: &str, body: Value| {
        client
            .post(format!("{base}/v1{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    post(
        &writer,
        "/products",
        json!({"titles": {"en": "Shirt"}, "variants": [{"sku": "SHIRT", "prices": {"USD": 2500}}]}),
    )
    .await?
    .error_for_status()?;
    let cart: Value = post(
        &writer,
        "/carts",
        json!({"customer_id": "bench-shopper", "currency": "USD"}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let cart_id = cart["id"].as_str().unwrap_or_default().to_string();

    // The reading channel listens on the other process.
    let stream = client
        .get(format!("{reader}/v1/stream?types=cart.updated"))
        .bearer_auth(&key)
        .send()
        .await?
        .error_for_status()?;
    let mut bytes = stream.bytes_stream();
    let mut buffer = String::new();
    let mut latencies = Vec::with_capacity(options.changes);
    for i in 0..options.changes {
        let started = Instant::now();
        post(
            &writer,
            &format!("/carts/{cart_id}/lines"),
            json!({"sku": "SHIRT", "quantity": 1}),
        )
        .await?
        .error_for_status()?;
        let expected = format!("\"quantity\":{}", i + 1);
        crate::sse::wait_for(&mut bytes, &mut buffer, &expected).await?;
        latencies.push(started.elapsed());
    }
    println!(
        "cart change on process A → cart.updated on process B's stream (PostgreSQL), {} changes: {} (includes the change's own durable commit)",
        latencies.len(),
        crate::sse::percentiles(&mut latencies)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
