//! Real `omnihub serve` processes on one database. On PostgreSQL two nodes
//! both serve the API and a webhook gets each event exactly once; SQLite
//! (one writer process) runs the same flow on one node.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::node::{Node, command};
use crate::receiver::{Mode, Receiver};
use crate::sse::SseClient;
use crate::support::{Backend, TestDatabase, read, wait_for};

backend_tests!(nodes_serve_the_api_and_deliver_each_event_once);

/// Events produced through the nodes.
const EVENTS: usize = 300;

/// Migrates the database and creates an admin key with the CLI.
pub async fn cli_admin_key(db: &TestDatabase, data_dir: &std::path::Path) -> String {
    let migrated = command(db, data_dir)
        .arg("migrate")
        .output()
        .await
        .expect("run omnihub migrate");
    assert!(
        migrated.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let output = command(db, data_dir)
        .args(["keys", "create", "--scopes", "admin", "--name", "multinode"])
        .output()
        .await
        .expect("run omnihub keys create");
    assert!(
        output.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("ohk_"), "{secret}");
    secret
}

async fn nodes_serve_the_api_and_deliver_each_event_once(backend: Backend) {
    let db = TestDatabase::new(backend);
    let data_dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(uuid::Uuid::now_v7().simple().to_string());
    std::fs::create_dir_all(&data_dir).unwrap();
    let key = cli_admin_key(&db, &data_dir).await;
    let node_count = if backend == Backend::Postgres { 2 } else { 1 };
    let nodes: Vec<Node> =
        futures::future::join_all((0..node_count).map(|_| Node::start(&db, &data_dir))).await;
    let client = reqwest::Client::new();
    for node in &nodes {
        let ready = client.get(node.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
    }
    let node = |i: usize| &nodes[i % nodes.len()];
    let post = |i: usize, path: &str, body: Value| {
        let request = client.post(node(i).url(path)).bearer_auth(&key).json(&body);
        async move { read(request.send().await.unwrap()).await }
    };
    let get = |i: usize, path: &str| {
        let request = client.get(node(i).url(path)).bearer_auth(&key);
        async move { read(request.send().await.unwrap()).await }
    };

    let receiver = Receiver::start(Mode::Accept).await;
    let (status, hook) = post(
        0,
        "/v1/webhooks",
        json!({"url": receiver.url, "event_types": ["*"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let hook_position = hook["position"].as_i64().unwrap();
    // A live stream on the last node sees the events written through all.
    let mut stream = SseClient::connect_url(
        &client,
        &node(1).url("/v1/stream?types=channel.created"),
        &key,
        None,
    )
    .await;

    let created: Vec<(usize, String)> = futures::stream::iter(0..EVENTS)
        .map(|i| {
            let post = &post;
            async move {
                let (status, body) = post(
                    i,
                    "/v1/channels",
                    json!({"kind": "web", "name": format!("shop {i}")}),
                )
                .await;
                assert_eq!(status, 201, "{body}");
                (i, body["id"].as_str().unwrap().to_string())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // Every node reads what any node wrote.
    for (i, id) in created.iter().take(10) {
        let (status, body) = get(i + 1, &format!("/v1/channels/{id}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let streamed = stream.take(EVENTS).await;
    let positions: Vec<i64> = streamed.iter().map(|m| m.id.parse().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "stream in order");

    // Everything after the webhook's start, including its own creation.
    let mut feed = Vec::new();
    let mut after = hook_position;
    loop {
        let (status, page) = get(1, &format!("/v1/events?after={after}&limit=200")).await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        after = page["next_cursor"].as_str().unwrap().parse().unwrap();
        feed.extend(items);
    }
    assert_eq!(feed.len(), EVENTS + 1);
    let expected: HashSet<String> = feed
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    receiver.wait_accepted(expected.len()).await;
    // A last event through the other node: once it arrived, anything sent
    // twice before it would have arrived too.
    let (status, _) = post(1, "/v1/channels", json!({"kind": "app", "name": "last"})).await;
    assert_eq!(status, 201);
    let accepted = receiver.wait_accepted(expected.len() + 1).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for request in &accepted {
        *counts
            .entry(request.header("webhook-id").to_string())
            .or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    assert_eq!(accepted.len(), expected.len() + 1);
    assert!(expected.iter().all(|id| counts.contains_key(id)));

    // The delivery log agrees, whichever node delivered.
    let hook_id = hook["id"].as_str().unwrap();
    wait_for("every delivery to be logged", || async {
        let mut logged = 0;
        let mut cursor = String::new();
        loop {
            let (_, page) = get(
                0,
                &format!("/v1/webhooks/{hook_id}/deliveries?status=succeeded&limit=200{cursor}"),
            )
            .await;
            logged += page["items"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        (logged == expected.len() + 1).then_some(())
    })
    .await;

    // An Idempotency-Key used on one node replays on the other.
    let idempotent = |i: usize| {
        client
            .post(node(i).url("/v1/channels"))
            .bearer_auth(&key)
            .header("idempotency-key", "across-nodes")
            .json(&json!({"kind": "pos", "name": "Till 1"}))
            .send()
    };
    let (status, first) = read(idempotent(0).await.unwrap()).await;
    assert_eq!(status, 201, "{first}");
    let again = idempotent(1).await.unwrap();
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(read(again).await.1, first);

    // A key revoked through one node stops working on every node (within the
    // key cache's lifetime on the others).
    let (status, other) = post(
        0,
        "/v1/keys",
        json!({"channel_id": first["id"], "name": "till", "scopes": ["events:read"]}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let secret = other["secret"].as_str().unwrap().to_string();
    for i in 0..nodes.len() {
        let response = client
            .get(node(i).url("/v1/events?limit=1"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let revoke = format!("/v1/keys/{}/revoke", other["id"].as_str().unwrap());
    let (status, _) = post(0, &revoke, json!({})).await;
    assert_eq!(status, 200);
    for i in 0..nodes.len() {
        wait_for("the revoked key to fail on every node", || async {
            let response = client
                .get(node(i).url("/v1/events?limit=1"))
                .bearer_auth(&secret)
                .send()
                .await
                .unwrap();
            (response.status() == 401).then_some(())
        })
        .await;
    }

    let mut nodes = nodes.into_iter();
    if let Some(first) = nodes.next() {
        first.terminate().await;
    }
    for node in nodes {
        node.stop().await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
