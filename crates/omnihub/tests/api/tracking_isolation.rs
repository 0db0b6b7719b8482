//! One caller's bad input never fails another's: call times are bounded and
//! the clock-skew correction is checked, so the times that used to panic in
//! date arithmetic are rejected, and concurrent good callers, whose calls
//! share coalesced writes with the bad ones, all succeed.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp};
use crate::tracking::{send, timeline, write_key};

backend_tests!(
    bad_times_are_rejected_and_never_fail_neighbours,
    clock_skew_is_corrected_within_its_bound_and_ignored_beyond,
    a_batch_context_that_is_no_object_is_refused,
);

/// The call that panicked: +262000 and −262000 are valid chrono years, and
/// `receivedAt − sentAt` overflowed.
fn attack(n: usize) -> Value {
    json!({
        "userId": format!("attacker-{n}"),
        "event": "Overflow",
        "messageId": format!("attack-{n}"),
        "timestamp": "+262000-01-01T00:00:00",
        "sentAt": "-262000-01-01T00:00:00",
    })
}

async fn bad_times_are_rejected_and_never_fail_neighbours(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bad_key = write_key(&app, "web").await;
    let good_key = write_key(&app, "app").await;
    const ROUNDS: usize = 60;
    let attackers = (0..4).map(|t| {
        let (app, key) = (&app, &bad_key);
        async move {
            let mut statuses = Vec::new();
            for i in 0..ROUNDS {
                let (status, body) = send(app, key, "/v1/track", &attack(t * ROUNDS + i)).await;
                if status != 400 {
                    panic!("the attack answered {status}: {body}");
                }
                statuses.push(body["code"].as_str().unwrap_or("").to_string());
            }
            statuses
        }
    });
    let good = (0..4).map(|t| {
        let (app, key) = (&app, &good_key);
        async move {
            let mut ok = 0;
            for i in 0..ROUNDS {
                let call = json!({
                    "userId": format!("shopper-{t}"),
                    "event": "Viewed",
                    "messageId": format!("good-{t}-{i}"),
                    "timestamp": "2026-11-30T10:00:00Z",
                    "sentAt": "2026-11-30T10:00:01Z",
                });
                let (status, body) = send(app, key, "/v1/track", &call).await;
                assert_eq!(status, 200, "a good call failed: {body}");
                ok += 1;
            }
            ok
        }
    });
    let (bad, good) = tokio::join!(
        futures::future::join_all(attackers),
        futures::future::join_all(good)
    );
    assert!(bad.iter().flatten().all(|code| code == "invalid_event"));
    assert_eq!(
        good.iter().sum::<usize>(),
        4 * ROUNDS,
        "every good call succeeded"
    );

    // Inside one batch: the bad calls are rejected by index, the good stored.
    let mut in_batch = attack(9_000);
    in_batch["type"] = json!("track");
    let (status, body) = send(
        &app,
        &good_key,
        "/v1/batch",
        &json!({"batch": [
            in_batch,
            {"type": "track", "userId": "shopper-batch", "event": "Viewed", "messageId": "batch-good"},
            {"type": "track", "userId": "shopper-batch", "event": "Viewed", "timestamp": "99999-01-01T00:00:00Z"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    let rejected: Vec<u64> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![0, 2], "{body}");
    let reason = body["rejected"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("1970") && reason.contains("9999"),
        "{reason}"
    );
    app.stop().await;
}

async fn clock_skew_is_corrected_within_its_bound_and_ignored_beyond(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = crate::tracking::server_key(&app, "app").await;
    // A device whose clock was reset to 1970: corrected to about now.
    let (status, body) = send(
        &app,
        &key,
        "/v1/track",
        &json!({
            "userId": "reset-clock",
            "event": "Opened",
            "timestamp": "1970-01-01T00:00:05Z",
            "sentAt": "1970-01-01T00:00:10Z",
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let customer = body["customer_id"].as_str().unwrap().to_string();
    let entries = timeline(&app, &customer, "").await;
    let stored = entries
        .iter()
        .find_map(|e| e["timestamp"].as_str().or(e["observed_at"].as_str()))
        .unwrap_or_else(|| panic!("a timestamp in {entries:?}"));
    let stored: chrono::DateTime<chrono::Utc> = stored.parse().unwrap();
    let off = (chrono::Utc::now() - stored).num_seconds().abs();
    assert!(off < 120, "corrected to about now, not 1970: {stored}");

    // A sentAt more than a century from the hub's clock says nothing usable
    // about the device's clock: the call is kept with its own timestamp.
    let (status, body) = send(
        &app,
        &key,
        "/v1/track",
        &json!({
            "userId": "far-clock",
            "event": "Opened",
            "timestamp": "2026-01-01T00:00:00Z",
            "sentAt": "9000-01-01T00:00:00Z",
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let customer = body["customer_id"].as_str().unwrap().to_string();
    let entries = timeline(&app, &customer, "").await;
    let stored = entries
        .iter()
        .find_map(|e| e["timestamp"].as_str().or(e["observed_at"].as_str()))
        .unwrap_or_else(|| panic!("a timestamp in {entries:?}"));
    let stored: chrono::DateTime<chrono::Utc> = stored.parse().unwrap();
    assert_eq!(
        stored.to_rfc3339(),
        "2026-01-01T00:00:00+00:00",
        "kept as sent"
    );
    app.stop().await;
}

/// A batch's shared `context` is an object (or null), as the document says;
/// anything else refuses the batch with the field named, instead of being
/// dropped without a word.
async fn a_batch_context_that_is_no_object_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = crate::tracking::server_key(&app, "app").await;
    let calls = json!([{ "type": "track", "userId": "u-ctx", "event": "Opened" }]);
    let (status, body) = send(
        &app,
        &key,
        "/v1/batch",
        &json!({ "batch": calls, "context": ["not", "an", "object"] }),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "context", "{body}");
    let (status, body) = send(
        &app,
        &key,
        "/v1/batch",
        &json!({ "batch": calls, "context": null }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
