//! Hubs sharing one database: two hubs on two PostgreSQL schemas of one
//! database do not share locks or notification channels, and a webhook
//! subscription whose node died mid-delivery is taken over by another node
//! once the lease (`webhook_lease_secs`) expires, with every event delivered.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::multinode::cli_admin_key;
use crate::node::Node;
use crate::receiver::{Mode, Receiver};
use crate::support::{Backend, TestApp, TestDatabase, postgres_url, read, wait_for};

backend_tests!(a_dead_nodes_webhooks_are_taken_over_after_the_lease);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schemas_of_one_database_share_no_lock_or_channel() {
    if postgres_url().is_none() {
        eprintln!("skipped: PostgreSQL only");
        return;
    }
    use sqlx::Connection;
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = TestApp::spawn(Backend::Postgres).await;
    sqlx::any::install_default_drivers();
    let mut holder = sqlx::AnyConnection::connect(&a.db.url).await.unwrap();
    let schema_a = a.db.schema.clone().unwrap();
    for statement in [format!("SET search_path TO \"{schema_a}\""), "BEGIN".into()] {
        sqlx::query(&statement).execute(&mut holder).await.unwrap();
    }
    // Hold hub A's outbox lock, as A's writer takes it before appending.
    omnihub::platform::storage::outbox::lock_outbox(&mut holder)
        .await
        .unwrap();
    // Hub B writes events all the same.
    let written = tokio::time::timeout(Duration::from_secs(10), b.new_channel()).await;
    assert!(written.is_ok(), "hub B was blocked by hub A's lock");
    // Hub A waits for its own lock.
    let blocked = tokio::time::timeout(Duration::from_millis(700), a.new_channel()).await;
    assert!(blocked.is_err(), "hub A's writes wait for A's outbox lock");
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let (status, _) = a
        .post_json(
            "/v1/channels",
            &json!({"kind": "web", "name": "after the lock"}),
        )
        .await;
    assert_eq!(status, 201);
    // Each hub notifies on a channel of its own schema.
    let channel = |app: &TestApp| {
        let pool = app.hub.as_ref().unwrap().state.store.reader().clone();
        async move {
            omnihub::platform::events::notify_channel(&pool)
                .await
                .unwrap()
        }
    };
    let (channel_a, channel_b) = (channel(&a).await, channel(&b).await);
    assert_ne!(channel_a, channel_b);
    assert!(channel_a.len() <= 63, "{channel_a}");
    a.stop().await;
    b.stop().await;
}

/// Node A takes the subscription and dies (SIGKILL) while its deliveries
/// hang; node B, started with the same 2 s lease, takes the subscription over
/// and delivers every event. The receiver deduplicates by `webhook-id`.
async fn a_dead_nodes_webhooks_are_taken_over_after_the_lease(backend: Backend) {
    const EVENTS: usize = 5;
    let db = TestDatabase::new(backend);
    let data_dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(uuid::Uuid::now_v7().simple().to_string());
    std::fs::create_dir_all(&data_dir).unwrap();
    let key = cli_admin_key(&db, &data_dir).await;
    let lease = [("OMNIHUB_WEBHOOK_LEASE_SECS", "2")];
    let first = Node::start_with(&db, &data_dir, &lease).await;
    let client = reqwest::Client::new();
    let post = |node: &Node, path: &str, body: Value| {
        let request = client.post(node.url(path)).bearer_auth(&key).json(&body);
        async move { read(request.send().await.unwrap()).await }
    };
    let receiver = Receiver::start(Mode::Hang).await;
    let (status, hook) = post(
        &first,
        "/v1/webhooks",
        json!({"url": receiver.url, "event_types": ["channel.created"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let mut ids = HashSet::new();
    for i in 0..EVENTS {
        let (status, channel) = post(
            &first,
            "/v1/channels",
            json!({"kind": "web", "name": format!("shop {i}")}),
        )
        .await;
        assert_eq!(status, 201, "{channel}");
        ids.insert(channel["id"].as_str().unwrap().to_string());
    }
    // The first node is mid-delivery (the receiver holds its requests) …
    wait_for("the first node to be delivering", || async {
        (receiver.arrived() >= 1).then_some(())
    })
    .await;
    // … and dies without recording anything or releasing its lease.
    first.stop().await;
    receiver.release();
    let second = Node::start_with(&db, &data_dir, &lease).await;
    let delivered = wait_for("every event delivered by the second node", || async {
        let unique: HashSet<String> = receiver
            .accepted()
            .iter()
            .map(|r| r.json()["data"]["id"].as_str().unwrap_or("").to_string())
            .collect();
        ids.is_subset(&unique).then_some(unique)
    })
    .await;
    assert!(ids.is_subset(&delivered));
    // The second node records each delivery once.
    let hook_id = hook["id"].as_str().unwrap();
    wait_for("the delivery log to show every event", || async {
        let response = client
            .get(second.url(&format!("/v1/webhooks/{hook_id}/deliveries?limit=200")))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?;
        let (_, log) = read(response).await;
        let items = log["items"].as_array()?.clone();
        (items.len() == EVENTS && items.iter().all(|d| d["status"] == "succeeded")).then_some(())
    })
    .await;
    second.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Two writer lanes that lock the same rows in opposite order deadlock;
/// PostgreSQL aborts one of them. The writer rolls the aborted operation back
/// and runs it again in a later transaction: both writes succeed, and the
/// aborted one ran twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_between_writer_lanes_runs_the_aborted_write_again() {
    if postgres_url().is_none() {
        eprintln!("skipped: PostgreSQL only");
        return;
    }
    use omnihub::platform::storage::StoreError;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = TestApp::spawn(Backend::Postgres).await;
    let (first, second) = (app.new_channel().await, app.new_channel().await);
    let store = app.hub.as_ref().unwrap().state.store.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let rename_both = |one: String, other: String, name: &'static str| {
        let (store, runs) = (store.clone(), runs.clone());
        async move {
            store
                .write(move |tx| {
                    let (one, other, runs) = (one.clone(), other.clone(), runs.clone());
                    Box::pin(async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let rename = "UPDATE channels SET name = name || $1 WHERE id = $2";
                        sqlx::query(rename)
                            .bind(name)
                            .bind(&one)
                            .execute(tx.conn())
                            .await?;
                        sqlx::query("SELECT 1 FROM (SELECT pg_sleep(0.5)) AS s")
                            .execute(tx.conn())
                            .await?;
                        sqlx::query(rename)
                            .bind(name)
                            .bind(&other)
                            .execute(tx.conn())
                            .await?;
                        Ok::<_, StoreError>(())
                    })
                })
                .await
        }
    };
    let a = tokio::spawn(rename_both(first.clone(), second.clone(), "+a"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = tokio::spawn(rename_both(second.clone(), first.clone(), "+b"));
    let results = [a.await.unwrap(), b.await.unwrap()];
    assert!(
        results.iter().all(Result::is_ok),
        "both writes succeed: {results:?}"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the aborted write ran again, once"
    );
    // Each write renamed each channel exactly once: the aborted run left
    // nothing behind.
    let reader = store.reader();
    let mut seen = Vec::new();
    for id in [&first, &second] {
        let name: String = sqlx::query_scalar("SELECT name FROM channels WHERE id = $1")
            .bind(id.clone())
            .fetch_one(reader)
            .await
            .unwrap();
        seen.push(name);
    }
    for name in &seen {
        assert_eq!(name.matches("+a").count(), 1, "{seen:?}");
        assert_eq!(name.matches("+b").count(), 1, "{seen:?}");
    }
    app.stop().await;
}

/// A write that the database aborts with a lock conflict on every run is
/// run again a bounded number of times, then answered as a retryable 503
/// (`unavailable`) with nothing of it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_aborted_by_conflicts_every_time_is_a_retryable_error() {
    if postgres_url().is_none() {
        eprintln!("skipped: PostgreSQL only");
        return;
    }
    use omnihub::platform::http::problem::ApiError;
    use omnihub::platform::storage::StoreError;
    use omnihub::platform::storage::writer::CONFLICT_RERUNS;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = TestApp::spawn(Backend::Postgres).await;
    let channel = app.new_channel().await;
    let store = app.hub.as_ref().unwrap().state.store.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let result = store
        .write(move |tx| {
            let (channel, runs) = (channel.clone(), counted.clone());
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                sqlx::query("UPDATE channels SET name = 'changed' WHERE id = $1")
                    .bind(&channel)
                    .execute(tx.conn())
                    .await?;
                // What PostgreSQL raises on the victim of a deadlock.
                let abort =
                    "DO $$ BEGIN RAISE EXCEPTION 'provoked' USING ERRCODE = '40P01'; END $$";
                sqlx::query(abort).execute(tx.conn()).await?;
                Ok::<_, StoreError>(())
            })
        })
        .await;
    let error = result.expect_err("aborted every time");
    assert!(error.is_transient_conflict(), "{error:?}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1 + usize::from(CONFLICT_RERUNS)
    );
    let answer = ApiError::from(error);
    assert_eq!(answer.status().as_u16(), 503, "{answer:?}");
    let (status, body) = app.get_json("/v1/channels?limit=200").await;
    assert_eq!(status, 200);
    assert!(
        !body.to_string().contains("\"changed\""),
        "nothing of the aborted write is committed"
    );
    app.stop().await;
}
