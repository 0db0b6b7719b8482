//! `GET /v1/stream`: live server-sent events with type filters and
//! `Last-Event-ID` resume.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::sse::{Message, SseClient};
use crate::support::{Backend, TestApp};

backend_tests!(
    live_events_arrive_as_sse,
    type_filters_select_events,
    resume_with_last_event_id_gets_exactly_the_missed_events,
    resume_after_a_restart_reads_the_database,
    shutdown_ends_live_streams,
    writes_of_another_process_interleave_in_order,
    a_filter_matching_nothing_catches_up_without_reading_other_events,
);

/// What the stream should say for feed events.
fn expected(events: &[Value]) -> Vec<Message> {
    events
        .iter()
        .map(|e| Message {
            id: e["position"].to_string(),
            event: e["type"].as_str().unwrap().to_string(),
            data: e.clone(),
        })
        .collect()
}

async fn create_channels(app: &TestApp, n: usize) {
    for _ in 0..n {
        app.new_channel().await;
    }
}

async fn live_events_arrive_as_sse(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let head = app.head().await;
    let mut stream = SseClient::connect(&app, "", None).await;
    create_channels(&app, 3).await;
    app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let received = stream.take(4).await;
    let events = app.events_after(head, "").await;
    assert_eq!(events.len(), 4);
    assert_eq!(
        received,
        expected(&events),
        "id = position, event = type, data = event"
    );
    // Nothing in between: the next message is the next event.
    app.new_channel().await;
    let next = stream.next().await.unwrap();
    assert_eq!(next, expected(&app.events_after(head, "").await)[4]);
    app.stop().await;
}

async fn type_filters_select_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let head = app.head().await;
    let mut hooks = SseClient::connect(&app, "?types=webhook.*", None).await;
    let mut exact = SseClient::connect(&app, "?types=channel.created", None).await;
    let mut list = SseClient::connect(&app, "?types=key.created,webhook.created", None).await;
    let channel = app.new_channel().await;
    let hook = app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    app.key_for(&channel, &["events:read"]).await;
    let (status, _) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()),
        )
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 204);
    // A sentinel every filter lets through ends each check.
    let sentinel = app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let all = app.events_after(head, "").await;
    let pick = |types: &[&str]| -> Vec<Message> {
        let chosen: Vec<Value> = all
            .iter()
            .filter(|e| types.contains(&e["type"].as_str().unwrap()))
            .cloned()
            .collect();
        expected(&chosen)
    };
    let got = hooks.take(3).await;
    assert_eq!(got, pick(&["webhook.created", "webhook.deleted"]));
    assert_eq!(got[2].data["subjects"]["webhook_id"], sentinel["id"]);
    let got = exact.take(1).await;
    assert_eq!(got, pick(&["channel.created"]));
    let got = list.take(3).await;
    assert_eq!(got, pick(&["key.created", "webhook.created"]));
    app.stop().await;
}

async fn resume_with_last_event_id_gets_exactly_the_missed_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let head = app.head().await;
    let mut stream = SseClient::connect(&app, "", None).await;
    create_channels(&app, 6).await;
    let first = stream.take(3).await;
    drop(stream);
    create_channels(&app, 4).await;
    let all = expected(&app.events_after(head, "").await);
    assert_eq!(all.len(), 10);
    assert_eq!(first, all[..3]);

    // Last-Event-ID resumes after the last message seen: 7 missed events.
    let last_seen = first[2].id.clone();
    let mut resumed = SseClient::connect(&app, "", Some(&last_seen)).await;
    assert_eq!(resumed.take(7).await, all[3..]);
    // `?after=` does the same; Last-Event-ID wins over it.
    let mut by_query = SseClient::connect(&app, &format!("?after={}", all[7].id), None).await;
    assert_eq!(by_query.take(2).await, all[8..]);
    let mut both =
        SseClient::connect(&app, &format!("?after={}", all[0].id), Some(&all[8].id)).await;
    // A resumed filtered stream.
    let mut filtered = SseClient::connect(&app, "?types=channel.created", Some(&all[5].id)).await;
    assert_eq!(filtered.take(4).await, all[6..]);

    // None twice: the next message on every stream is the next new event.
    app.new_channel().await;
    let newest = expected(&app.events_after(head, "").await)[10].clone();
    assert_eq!(both.take(2).await, [all[9].clone(), newest.clone()]);
    for stream in [&mut resumed, &mut by_query, &mut filtered] {
        assert_eq!(stream.next().await.unwrap(), newest);
    }
    app.stop().await;
}

async fn resume_after_a_restart_reads_the_database(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    create_channels(&app, 5).await;
    app.restart().await;
    // The new node's memory starts at the head; older events come from the
    // database.
    let all = expected(&app.all_events().await);
    assert_eq!(all.len(), 7);
    let mut from_start = SseClient::connect(&app, "", Some("0")).await;
    assert_eq!(from_start.take(7).await, all);
    let mut middle = SseClient::connect(&app, "?types=channel.*", Some(&all[2].id)).await;
    let channels: Vec<Message> = all[3..]
        .iter()
        .filter(|m| m.event == "channel.created")
        .cloned()
        .collect();
    assert_eq!(middle.take(channels.len()).await, channels);
    // Then live events follow without a gap.
    let (status, body) = app
        .post_json("/v1/channels", &json!({"kind": "social", "name": "Insta"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let newest = expected(&app.all_events().await)[7].clone();
    assert_eq!(from_start.next().await.unwrap(), newest);
    assert_eq!(middle.next().await.unwrap(), newest);
    app.stop().await;
}

async fn shutdown_ends_live_streams(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut stream = SseClient::connect(&app, "", None).await;
    app.new_channel().await;
    assert!(stream.next().await.is_some());
    app.stop().await;
    assert_eq!(stream.next().await, None, "the stream ends at shutdown");
}

/// The node hands its own commits to its tail in memory (SQLite); events
/// another process writes to the same database in between must still reach
/// the stream, in feed order, exactly as the feed has them.
async fn writes_of_another_process_interleave_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let head = app.head().await;
    let mut stream = SseClient::connect(&app, "", None).await;
    let data_dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(uuid::Uuid::now_v7().simple().to_string());
    std::fs::create_dir_all(&data_dir).unwrap();
    for round in 0..3 {
        app.new_channel().await;
        let output = crate::node::command(&app.db, &data_dir)
            .args(["channels", "create", "--kind", "web"])
            .args(["--name", &format!("Written elsewhere {round}")])
            .output()
            .await
            .expect("run omnihub channels create");
        assert!(output.status.success(), "{output:?}");
        app.new_channel().await;
    }
    let received = stream.take(9).await;
    let events = app.events_after(head, "").await;
    assert_eq!(events.len(), 9);
    assert_eq!(received, expected(&events));
    app.stop().await;
}

/// How many events live streams read from the database while catching up
/// (`omnihub_sse_catch_up_events_total`).
async fn catch_up_reads(app: &TestApp) -> u64 {
    let text = app
        .client
        .get(app.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("omnihub_sse_catch_up_events_total "))
        .expect("the catch-up counter is exposed")
        .trim()
        .parse()
        .unwrap()
}

/// A stream from the start of a long feed whose filter matches nothing there
/// reads none of those events (the filter runs in SQL), still delivers the
/// later matching events, and reads nothing again while it waits; one whose
/// filter matches reads exactly the matching events.
async fn a_filter_matching_nothing_catches_up_without_reading_other_events(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let key = app.key("web", &["events:write"]).await;
    for round in 0..4 {
        let calls: Vec<Value> = (0..250)
            .map(|i| {
                json!({ "type": "track", "anonymousId": "stream-noise", "event": "Viewed",
                             "messageId": format!("noise-{round}-{i}") })
            })
            .collect();
        let (status, body) =
            crate::tracking::send(&app, &key, "/v1/batch", &json!({ "batch": calls })).await;
        assert_eq!(status, 200, "{body}");
    }
    // A new node: its memory starts at the head, the 1,000 calls' events are
    // only in the database.
    app.restart().await;
    let head = app.head().await;
    assert!(head > 1_000, "{head}");
    let mut nothing_yet = SseClient::connect(&app, "?types=webhook.created", Some("0")).await;
    let mut one_match = SseClient::connect(&app, "?types=customer.created", Some("0")).await;
    let created = one_match.next().await.unwrap();
    assert_eq!(created.event, "customer.created");
    assert_eq!(
        catch_up_reads(&app).await,
        1,
        "only the matching event was read"
    );
    let hook = app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let delivered = nothing_yet.next().await.unwrap();
    assert_eq!(delivered.event, "webhook.created");
    assert_eq!(delivered.data["data"]["id"], hook["id"]);
    // Idle past a key re-check, then another matching event: delivered from
    // memory, nothing read again.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let second = app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let next = nothing_yet.next().await.unwrap();
    assert_eq!(next.data["data"]["id"], second["id"]);
    assert_eq!(catch_up_reads(&app).await, 1, "no re-read");
    app.stop().await;
}
