//! Mutated requests, generated from a fixed seed: whatever the input, the hub
//! answers 2xx or 4xx (with a problem body), never 5xx.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp};

backend_tests!(mutated_requests_never_get_5xx);

/// Requests per endpoint.
const CASES: usize = 60;

fn random_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.r#gen::<bool>()),
        2 => json!(rng.r#gen::<i64>()),
        3 => json!(rng.r#gen::<f64>() * 1e300),
        4 => json!(u64::MAX),
        5 => json!(""),
        6 => json!("x".repeat(rng.gen_range(0..3_000))),
        7 => json!("\u{0}\u{7f}\u{feff}é漢🙂"),
        8 => json!([1, "a", null]),
        9 => json!({"nested": {"deeper": [1, 2]}}),
        10 => json!("*"),
        _ => json!(uuid::Uuid::now_v7()),
    }
}

fn mutate(rng: &mut StdRng, valid: &Value) -> Vec<u8> {
    let mut value = valid.clone();
    match rng.gen_range(0..6) {
        // Replace a field's value.
        0 | 1 => {
            if let Some(object) = value.as_object_mut() {
                let keys: Vec<String> = object.keys().cloned().collect();
                let key = &keys[rng.gen_range(0..keys.len())];
                object.insert(key.clone(), random_value(rng));
            }
        }
        // Drop a field or add an unknown one.
        2 => {
            if let Some(object) = value.as_object_mut() {
                if rng.gen_bool(0.5) {
                    let keys: Vec<String> = object.keys().cloned().collect();
                    object.remove(&keys[rng.gen_range(0..keys.len())]);
                } else {
                    object.insert("surprise".into(), random_value(rng));
                }
            }
        }
        // A different top-level value.
        3 => value = random_value(rng),
        _ => {}
    }
    let mut bytes = serde_json::to_vec(&value).unwrap();
    match rng.gen_range(0..6) {
        0 if !bytes.is_empty() => bytes.truncate(rng.gen_range(0..bytes.len())),
        1 if !bytes.is_empty() => {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = rng.r#gen();
        }
        2 => {
            let at = rng.gen_range(0..=bytes.len());
            bytes.insert(at, rng.r#gen());
        }
        _ => {}
    }
    bytes
}

fn random_query(rng: &mut StdRng) -> String {
    let values = [
        "-1",
        "0",
        "1",
        "18446744073709551616",
        "abc",
        "%00",
        "%FF%FE",
        "djE6",
        "djE6eg",
        "*",
        "a.*,b",
        ".*",
        "",
    ];
    let names = ["limit", "cursor", "after", "types", "channel_id", "status"];
    (0..rng.gen_range(1..4))
        .map(|_| {
            format!(
                "{}={}",
                names[rng.gen_range(0..names.len())],
                values[rng.gen_range(0..values.len())]
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn mutated_requests_never_get_5xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.new_channel().await;
    let hook = app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let bodies: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/v1/channels".into(),
            json!({"kind": "pos", "name": "Till", "location_id": uuid::Uuid::now_v7()}),
        ),
        (
            Method::POST,
            "/v1/keys".into(),
            json!({"channel_id": channel, "name": "k", "scopes": ["events:read"]}),
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            json!({"url": "http://127.0.0.1:9/", "event_types": ["a.*"], "description": "d",
                   "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "from_position": 1}),
        ),
        (
            Method::PATCH,
            hook_path.clone(),
            json!({"url": "http://127.0.0.1:9/x", "event_types": ["*"], "description": "",
                   "status": "disabled"}),
        ),
    ];
    let mut rng = StdRng::seed_from_u64(0x0de1_1ce5);
    let mut failures = Vec::new();
    for (method, path, valid) in &bodies {
        for _ in 0..CASES {
            let body = mutate(&mut rng, valid);
            let mut request = app
                .request(method.clone(), path)
                .header("content-type", "application/json")
                .body(body.clone());
            if rng.gen_bool(0.2) {
                request = request.header("idempotency-key", format!("k{}", rng.gen_range(0..5)));
            }
            let status = request.send().await.unwrap().status();
            if status.is_server_error() {
                failures.push(format!(
                    "{method} {path} {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
    }
    let deliveries = format!("{hook_path}/deliveries");
    for path in [
        "/v1/channels",
        "/v1/keys",
        "/v1/webhooks",
        "/v1/events",
        deliveries.as_str(),
    ] {
        for _ in 0..CASES {
            let url = format!("{path}?{}", random_query(&mut rng));
            let status = app.get(&url).send().await.unwrap().status();
            if status.is_server_error() {
                failures.push(format!("GET {url}"));
            }
        }
    }
    assert!(failures.is_empty(), "5xx for: {failures:#?}");
    app.stop().await;
}
