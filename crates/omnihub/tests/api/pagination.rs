//! Cursor pagination: every item exactly once, in order; bounded page size;
//! no `next_cursor` on the last page.

use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp};

backend_tests!(
    walking_pages_yields_every_item_once_in_order,
    page_size_is_bounded_and_defaulted,
    event_feed_pages_by_position,
);

/// Walks `path` with `limit` per page; returns the items and the page sizes.
async fn walk(app: &TestApp, path: &str, limit: u32) -> (Vec<Value>, Vec<usize>) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = app.get_json(&url).await;
        assert_eq!(status, 200, "{page}");
        let page_items = page["items"].as_array().expect("items");
        sizes.push(page_items.len());
        items.extend(page_items.iter().cloned());
        match page.get("next_cursor") {
            Some(next) => {
                assert!(!page_items.is_empty(), "a page with a cursor has items");
                cursor = Some(next.as_str().expect("cursor").to_string());
            }
            None => return (items, sizes),
        }
        assert!(sizes.len() < 1_000, "pagination does not end");
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

/// Creates `n` channels concurrently; returns their ids.
async fn create_channels(app: &TestApp, n: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let (status, body) = app
                .post_json(
                    "/v1/channels",
                    &json!({"kind": "web", "name": format!("shop {i:04}")}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn walking_pages_yields_every_item_once_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = create_channels(&app, 23).await;
    let (all, _) = walk(&app, "/v1/channels", 200).await;
    let all = ids(&all);
    assert_eq!(all.len(), 24, "the harness's channel and ours");
    assert!(created.iter().all(|id| all.contains(id)));
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "ordered by id: {all:?}"
    );
    let created = all;
    for limit in [1, 5, 7, 24, 50] {
        let (items, sizes) = walk(&app, "/v1/channels", limit).await;
        assert_eq!(
            ids(&items),
            created,
            "limit {limit}: every item once, in order"
        );
        let full = sizes.iter().take(sizes.len() - 1);
        assert!(full.clone().all(|s| *s == limit as usize), "{sizes:?}");
    }
    // Keys of one channel, and webhooks.
    let channel = &created[3];
    let mut key_ids = Vec::new();
    for i in 0..6 {
        let (status, key) = app
            .post_json(
                "/v1/keys",
                &json!({"channel_id": channel, "name": format!("k{i}"), "scopes": ["events:read"]}),
            )
            .await;
        assert_eq!(status, 201);
        key_ids.push(key["id"].as_str().unwrap().to_string());
    }
    let (keys, _) = walk(&app, &format!("/v1/keys?channel_id={channel}"), 4).await;
    assert_eq!(ids(&keys), key_ids);
    let mut hook_ids = Vec::new();
    for _ in 0..5 {
        let hook = app.webhook("http://127.0.0.1:9/", &["nothing.here"]).await;
        hook_ids.push(hook["id"].as_str().unwrap().to_string());
        assert!(hook["secret"].is_string());
    }
    let (hooks, _) = walk(&app, "/v1/webhooks", 2).await;
    assert_eq!(ids(&hooks), hook_ids);
    assert!(
        hooks.iter().all(|h| h.get("secret").is_none()),
        "lists hide secrets"
    );
    app.stop().await;
}

/// `limit` is 1 to 200 as the document says (50 by default); outside that
/// range it is a 400 naming the range, not a silently different page.
async fn page_size_is_bounded_and_defaulted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_channels(&app, 210).await;
    let (status, page) = app.get_json("/v1/channels?limit=200").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 200);
    assert!(page["next_cursor"].is_string());
    let (_, page) = app.get_json("/v1/channels").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50, "default 50");
    let (_, page) = app.get_json("/v1/channels?limit=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    for path in [
        "/v1/channels?limit=0",
        "/v1/channels?limit=201",
        "/v1/channels?limit=100000",
        "/v1/events?limit=5000",
        "/v1/keys?limit=0",
        "/v1/locations?limit=201",
    ] {
        let (status, problem) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {problem}");
        assert_eq!(problem["code"], "invalid_query", "{path}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("limit must be 1 to 200"),
            "{path}: {problem}"
        );
    }
    let (items, sizes) = walk(&app, "/v1/channels", 200).await;
    assert_eq!(items.len(), 211);
    assert_eq!(sizes, vec![200, 11]);
    app.stop().await;
}

async fn event_feed_pages_by_position(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_channels(&app, 30).await;
    let mut seen = Vec::new();
    let mut after = "0".to_string();
    loop {
        let (status, page) = app
            .get_json(&format!("/v1/events?after={after}&limit=7"))
            .await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap();
        let next = page["next_cursor"].as_str().unwrap().to_string();
        if items.is_empty() {
            assert_eq!(next, after, "an empty page keeps the cursor");
            break;
        }
        assert!(items.len() <= 7);
        seen.extend(items.iter().map(|e| e["position"].as_i64().unwrap()));
        after = next;
    }
    // 30 channels, plus the admin channel and key of the harness.
    assert_eq!(seen.len(), 32);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    app.stop().await;
}
