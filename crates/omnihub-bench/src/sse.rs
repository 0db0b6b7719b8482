//! What the live-stream benchmarks share: reading server-sent events until
//! one matches, and reporting latency percentiles.

use std::time::Duration;

use futures::{Stream, StreamExt};

/// Reads messages (blank-line separated) from `bytes` until one contains
/// `expected`; earlier messages are dropped. `buffer` keeps what was read
/// past that message for the next call.
pub async fn wait_for(
    bytes: &mut (impl Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    expected: &str,
) -> anyhow::Result<()> {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            if message.contains(expected) {
                return Ok(());
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), bytes.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// `p50 …, p99 …, max …` of `latencies` in milliseconds.
pub fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len().saturating_sub(1)) as f64 * q) as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}
