//! A minimal server-sent events client for tests.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::support::{TestApp, WAIT_DEADLINE};

/// One SSE message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// A minimal SSE client over a reqwest byte stream.
pub struct SseClient {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
}

impl SseClient {
    /// Connects to `/v1/stream{query}` of `app` with its admin key.
    pub async fn connect(app: &TestApp, query: &str, last_event_id: Option<&str>) -> SseClient {
        let url = app.url(&format!("/v1/stream{query}"));
        Self::connect_url(&app.client, &url, &app.admin_key, last_event_id).await
    }

    pub async fn connect_url(
        client: &reqwest::Client,
        url: &str,
        key: &str,
        last_event_id: Option<&str>,
    ) -> SseClient {
        let mut request = client.get(url).bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("connect");
        Self::from_response(response)
    }

    /// Reads the stream of an answer (which must be a 200 event stream).
    pub fn from_response(response: reqwest::Response) -> SseClient {
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseClient {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next message, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(WAIT_DEADLINE, self.next_inner())
            .await
            .expect("an SSE message within the deadline")
    }

    async fn next_inner(&mut self) -> Option<Message> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = parse_block(&block) {
                    return Some(message);
                }
            }
            // A broken connection ends the stream as a closed one does.
            let chunk = self.body.next().await?.ok()?;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<Message> {
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            messages.push(self.next().await.expect("stream still open"));
        }
        messages
    }
}

/// Parses one SSE block; comments (keep-alives) give `None`.
fn parse_block(block: &str) -> Option<Message> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_string()),
            "event" => event = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(Message {
        id: id.expect("every message has an id"),
        event: event.expect("every message has an event type"),
        data: serde_json::from_str(&data.join("\n")).expect("data is JSON"),
    })
}
