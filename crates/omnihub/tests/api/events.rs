//! The event feed: commit order, strictly increasing positions, `after` and
//! `types` filters, and one event per state change carrying the caller's
//! channel.

use std::collections::HashSet;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp, read};

backend_tests!(
    every_state_change_emits_its_event_with_the_callers_channel,
    feed_is_in_commit_order_and_filters_by_position_and_type,
    type_prefixes_match_literally,
    unknown_feed_parameters_are_refused,
);

/// The feed pages with `after`; a `cursor` (as other lists use) must not be
/// silently ignored, or a client would read the first page forever.
async fn unknown_feed_parameters_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, problem) = app.get_json("/v1/events?cursor=abc").await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "invalid_query");
    assert!(
        problem["detail"].as_str().unwrap().contains("cursor"),
        "{problem}"
    );
    let response = app.get("/v1/stream?cursor=abc").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let (status, _) = app
        .get_json("/v1/events?after=0&types=channel.created&limit=5")
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn every_state_change_emits_its_event_with_the_callers_channel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ops = app.channel("backoffice", "Ops").await;
    let secret = app.key_for(&ops, &["admin"]).await;
    let head = app.head().await;
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(&secret);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    use reqwest::Method;
    let (status, channel) = call(
        Method::POST,
        "/v1/channels".into(),
        Some(json!({"kind": "pos", "name": "Store 7", "location_id": uuid::Uuid::now_v7()})),
    )
    .await;
    assert_eq!(status, 201, "{channel}");
    let channel_id = channel["id"].as_str().unwrap().to_string();
    let (status, key) = call(
        Method::POST,
        "/v1/keys".into(),
        Some(json!({"channel_id": channel_id, "name": "till", "scopes": ["orders:write", "carts:write"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let key_id = key["id"].as_str().unwrap().to_string();
    let key_secret = key["secret"].as_str().unwrap().to_string();
    let (status, _) = call(Method::POST, format!("/v1/keys/{key_id}/revoke"), None).await;
    assert_eq!(status, 200);
    let (status, hook) = call(
        Method::POST,
        "/v1/webhooks".into(),
        Some(json!({"url": "http://127.0.0.1:9/hook", "event_types": ["order.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let hook_secret = hook["secret"].as_str().unwrap().to_string();
    let (status, _) = call(
        Method::PATCH,
        format!("/v1/webhooks/{hook_id}"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(Method::DELETE, format!("/v1/webhooks/{hook_id}"), None).await;
    assert_eq!(status, 204);

    let events = app.events_after(head, "").await;
    assert_eq!(
        kinds(&events),
        [
            "channel.created",
            "key.created",
            "key.revoked",
            "webhook.created",
            "webhook.updated",
            "webhook.deleted"
        ]
    );
    for event in &events {
        assert_eq!(
            event["channel_id"],
            ops.as_str(),
            "caller's channel: {event}"
        );
        assert_eq!(event["schema_version"], 1);
        assert!(event["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
        assert!(
            chrono::DateTime::parse_from_rfc3339(event["occurred_at"].as_str().unwrap()).is_ok()
        );
        let text = event.to_string();
        assert!(!text.contains(&key_secret), "no key secret in events");
        assert!(!text.contains(&hook_secret), "no webhook secret in events");
    }
    assert_eq!(events[0]["subjects"]["channel_id"], channel_id.as_str());
    assert_eq!(events[0]["data"]["name"], "Store 7");
    assert_eq!(events[0]["data"]["kind"], "pos");
    assert_eq!(events[1]["subjects"]["key_id"], key_id.as_str());
    assert_eq!(events[1]["subjects"]["channel_id"], channel_id.as_str());
    assert_eq!(
        events[1]["data"]["scopes"],
        json!(["carts:write", "orders:write"])
    );
    assert_eq!(events[2]["subjects"]["key_id"], key_id.as_str());
    for event in &events[3..] {
        assert_eq!(event["subjects"]["webhook_id"], hook_id.as_str());
    }
    assert_eq!(events[4]["data"]["status"], "disabled");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn feed_is_in_commit_order_and_filters_by_position_and_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Concurrent writers of different kinds, so batches interleave.
    let created: Vec<u16> = futures::stream::iter(0..60)
        .map(|i| {
            let app = &app;
            async move {
                let response = if i % 3 == 0 {
                    app.post("/v1/webhooks")
                        .json(&json!({"url": "http://127.0.0.1:9/", "event_types": ["x.y"]}))
                        .send()
                        .await
                } else {
                    app.post("/v1/channels")
                        .json(&json!({"kind": "app", "name": format!("app {i}")}))
                        .send()
                        .await
                };
                response.unwrap().status().as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(created.iter().all(|s| *s == 201), "{created:?}");

    let all = app.all_events().await;
    assert_eq!(all.len(), 2 + 60);
    let positions: Vec<i64> = all
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {positions:?}"
    );
    let unique: HashSet<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), all.len(), "each event once");

    // `after`: exactly the events past the position.
    for cut in [0, positions[0], positions[10], positions[61]] {
        let after = app.events_after(cut, "").await;
        let expected: Vec<&Value> = all
            .iter()
            .filter(|e| e["position"].as_i64().unwrap() > cut)
            .collect();
        assert_eq!(after.iter().collect::<Vec<_>>(), expected, "after {cut}");
    }
    // `types`: exact names, prefixes and lists; paging with a filter.
    let by = |pred: &dyn Fn(&str) -> bool| -> Vec<Value> {
        all.iter()
            .filter(|e| pred(e["type"].as_str().unwrap()))
            .cloned()
            .collect()
    };
    let channels = app.events_after(0, "channel.created").await;
    assert_eq!(channels, by(&|t| t == "channel.created"));
    assert_eq!(channels.len(), 41);
    let hooks = app.events_after(0, "webhook.*").await;
    assert_eq!(hooks, by(&|t| t.starts_with("webhook.")));
    assert_eq!(hooks.len(), 20);
    let both = app.events_after(0, "key.created,webhook.*").await;
    assert_eq!(
        both,
        by(&|t| t == "key.created" || t.starts_with("webhook."))
    );
    assert_eq!(app.events_after(0, "*").await, all);
    assert!(
        app.events_after(0, "channel").await.is_empty(),
        "exact, not prefix"
    );
    assert!(app.events_after(0, "order.*").await.is_empty());
    let (status, page) = app
        .get_json("/v1/events?types=webhook.created&limit=3")
        .await;
    assert_eq!(status, 200);
    let first = page["items"].as_array().unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(page["next_cursor"], first[2]["position"].to_string());
    app.stop().await;
}

async fn type_prefixes_match_literally(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let hooks = app.events_after(0, "webhook.*").await;
    assert_eq!(hooks.len(), 1);
    // `_` in a pattern is a character, not a wildcard.
    for pattern in [
        "we_hook.*",
        "webhoo_.*",
        "_ebhook.*",
        "webhook_created",
        "channel_created",
    ] {
        let found = app.events_after(0, pattern).await;
        assert!(found.is_empty(), "{pattern} matched {found:?}");
    }
    // Webhook subscriptions filter the same way.
    let receiver = crate::receiver::Receiver::start(crate::receiver::Mode::Accept).await;
    let sloppy = app
        .webhook(&receiver.url, &["chann_l.*", "key_created"])
        .await;
    let exact = app.webhook(&receiver.url, &["webhook.created"]).await;
    app.new_channel().await;
    app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let got = receiver.wait_accepted(2).await;
    // Wait for both subscriptions to have moved past every event.
    let head = app.head().await;
    for hook in [&sloppy, &exact] {
        let id = hook["id"].as_str().unwrap().to_string();
        crate::support::wait_for("the subscription to catch up", || async {
            (app.webhook_state(&id).await["position"].as_i64() >= Some(head)).then_some(())
        })
        .await;
    }
    // Only `exact` delivers: its own creation and the later webhook, never
    // the events committed before it was created.
    let feed = app.events_after(0, "webhook.created").await;
    assert_eq!(feed.len(), 4);
    let mut positions: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| r.json()["position"].as_i64().unwrap())
        .collect();
    positions.sort();
    let expected = [&feed[2]["position"], &feed[3]["position"]].map(|p| p.as_i64().unwrap());
    assert_eq!(positions, expected, "{got:?}");
    assert_eq!(feed[2]["subjects"]["webhook_id"], exact["id"]);
    app.stop().await;
}
