//! Browser clients on the tracking routes: the short paths of Segment's
//! browser SDK, CORS (preflight before authentication, headers on every
//! answer), `text/plain` bodies, `writeKey` in the body, gzip bodies.
//! The real SDK in a real browser is `tests/browser/` (run by `.ci/browser.sh`).

use std::io::Write;

use base64::Engine;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::sse::SseClient;
use crate::support::{Backend, TestApp, assert_problem, read};
use crate::tracking::{lookup, timeline, write_key};

backend_tests!(
    preflight_is_answered_before_authentication,
    short_paths_take_text_plain_bodies_with_basic_auth,
    errors_on_tracking_routes_carry_cors_headers,
    write_key_in_the_body_authenticates_without_a_header,
    configured_origins_are_echoed_and_others_refused,
    gzip_bodies_are_accepted_and_other_encodings_refused,
    segment_python_client_with_gzip,
    stream_token_opens_the_live_stream_from_a_browser,
    stream_tokens_are_limited,
);

const ORIGIN: &str = "http://shop.example.test:3000";

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The preflight Segment's SDK causes (Authorization and a text/plain body
/// from another origin) gets 204 with the CORS grant, without any key.
async fn preflight_is_answered_before_authentication(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/v1/p",
        "/v1/t",
        "/v1/i",
        "/v1/g",
        "/v1/a",
        "/v1/s",
        "/v1/b",
        "/v1/track",
        "/v1/batch",
    ] {
        let response = app
            .client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-retry-count",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let methods = header(&response, "access-control-allow-methods").unwrap_or("");
        assert!(methods.contains("POST"), "{path}: {methods}");
        let allowed = header(&response, "access-control-allow-headers").unwrap_or("");
        for needed in ["authorization", "content-type", "x-retry-count"] {
            assert!(allowed.contains(needed), "{path}: {allowed}");
        }
        assert!(
            header(&response, "access-control-allow-credentials").is_none(),
            "{path}: `*` is never combined with credentials"
        );
        assert!(header(&response, "access-control-max-age").is_some());
    }
    // Routes that are not for browsers get no CORS grant.
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/channels"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(header(&response, "access-control-allow-origin").is_none());
    assert_problem(response, 405, "method_not_allowed").await;
    app.stop().await;
}

/// What the SDK sends, path by path: `Content-Type: text/plain`, Basic auth,
/// `X-Retry-Count`, a JSON body with `writeKey`; each call lands.
async fn short_paths_take_text_plain_bodies_with_basic_auth(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "web").await;
    let calls = [
        ("/v1/p", json!({"anonymousId": "anon-b", "name": "Home"})),
        (
            "/v1/t",
            json!({"anonymousId": "anon-b", "event": "Product Viewed"}),
        ),
        ("/v1/s", json!({"anonymousId": "anon-b", "name": "Cart"})),
        (
            "/v1/g",
            json!({"anonymousId": "anon-b", "groupId": "acme", "traits": {"name": "Acme"}}),
        ),
        (
            "/v1/i",
            json!({"anonymousId": "anon-b", "userId": "browser-user", "traits": {"name": "Ada"}}),
        ),
        (
            "/v1/a",
            json!({"userId": "browser-user", "previousId": "anon-b"}),
        ),
        (
            "/v1/b",
            json!({"batch": [{"type": "track", "userId": "browser-user", "event": "Checkout Started"}]}),
        ),
    ];
    for (path, mut body) in calls {
        body["writeKey"] = json!(key);
        let response = app
            .client
            .post(app.url(path))
            .header("origin", ORIGIN)
            .header("content-type", "text/plain")
            .header("authorization", basic(&key))
            .header("x-retry-count", "1")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let exposed = header(&response, "access-control-expose-headers").unwrap_or("");
        assert!(exposed.contains("retry-after"), "{path}: {exposed}");
        let (status, answer) = read(response).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(answer["success"], true, "{path}: {answer}");
    }
    // A browser key is public: its `identify` is a claim, so the device's
    // calls stay on the device's profile and the user's on the user's.
    let kinds_of = |items: Vec<Value>| {
        let mut kinds: Vec<String> = items
            .iter()
            .map(|i| i["type"].as_str().unwrap().to_string())
            .collect();
        kinds.sort();
        kinds
    };
    let device = lookup(&app, "anonymous_id:anon-b")
        .await
        .expect("profile of the browser");
    let user = lookup(&app, "user_id:browser-user")
        .await
        .expect("profile of the browser user");
    assert_ne!(device, user);
    assert_eq!(
        kinds_of(timeline(&app, &device, "").await),
        ["group", "identify", "page", "screen", "track"]
    );
    assert_eq!(
        kinds_of(timeline(&app, &user, "").await),
        ["alias", "track"]
    );
    app.stop().await;
}

/// The SDK must read the status of a failed call to decide on retries, so
/// errors carry `Access-Control-Allow-Origin` too.
async fn errors_on_tracking_routes_carry_cors_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "web").await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            app.client.post(app.url("/v1/t")).body("{}"),
            401,
            "unauthorized",
        ),
        (
            app.client
                .post(app.url("/v1/t"))
                .header("authorization", basic("ohk_unknown"))
                .body("{}"),
            401,
            "unauthorized",
        ),
        (
            app.client
                .post(app.url("/v1/t"))
                .header("authorization", basic(&key))
                .body("{not json"),
            400,
            "malformed_json",
        ),
        (
            app.client
                .post(app.url("/v1/t"))
                .header("authorization", basic(&key))
                .body(json!({"event": "x"}).to_string()),
            400,
            "invalid_event",
        ),
        (
            app.client
                .post(app.url("/v1/p"))
                .header("authorization", basic(&key))
                .body(vec![b' '; 40 * 1024]),
            413,
            "event_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.header("origin", ORIGIN).send().await.unwrap();
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("*"),
            "{code}"
        );
        assert_problem(response, status, code).await;
    }
    app.stop().await;
}

/// Beacon-style clients cannot set headers: the key may be `writeKey` in the
/// body when no Authorization header is sent (tracking routes only).
async fn write_key_in_the_body_authenticates_without_a_header(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "web").await;
    let send = |path: &'static str, body: Value| {
        app.client
            .post(app.url(path))
            .header("content-type", "text/plain")
            .body(body.to_string())
            .send()
    };
    let (status, answer) = read(
        send(
            "/v1/track",
            json!({"writeKey": key, "userId": "beacon-user", "event": "Left"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = read(
        send(
            "/v1/b",
            json!({"writeKey": key, "batch": [{"type": "page", "userId": "beacon-user"}]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let id = lookup(&app, "user_id:beacon-user").await.expect("profile");
    assert_eq!(timeline(&app, &id, "").await.len(), 2);
    // A wrong or missing writeKey is 401, and the body key is ignored outside
    // the tracking routes.
    for body in [
        json!({"writeKey": "ohk_nope", "userId": "u", "event": "e"}),
        json!({"userId": "u", "event": "e"}),
        json!({"writeKey": 12, "userId": "u", "event": "e"}),
    ] {
        assert_problem(send("/v1/track", body).await.unwrap(), 401, "unauthorized").await;
    }
    let response = app
        .client
        .post(app.url("/v1/channels"))
        .header("content-type", "application/json")
        .body(json!({"writeKey": app.admin_key, "kind": "web", "name": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;
    app.stop().await;
}

/// With `cors_allowed_origins` set to a list, a listed origin is echoed back
/// (with `Vary: Origin`); another gets a 403 preflight and no grant.
async fn configured_origins_are_echoed_and_others_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.cors_allowed_origins = omnihub::platform::http::browser::CorsOrigins::parse(
            "https://a.example, http://b.example:8080",
        )
        .unwrap();
    })
    .await;
    let key = write_key(&app, "web").await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/t"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let response = preflight("http://b.example:8080").await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("http://b.example:8080")
    );
    assert!(
        header(&response, "vary")
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("origin")
    );
    let response = preflight("https://evil.example").await.unwrap();
    assert!(header(&response, "access-control-allow-origin").is_none());
    assert_problem(response, 403, "forbidden").await;
    // The actual call from an unlisted origin is served (CORS is the
    // browser's rule) but without a grant, so a page cannot read it.
    let response = app
        .client
        .post(app.url("/v1/t"))
        .header("origin", "https://evil.example")
        .bearer_auth(&key)
        .body(json!({"userId": "u", "event": "e"}).to_string())
        .send()
        .await
        .unwrap();
    assert!(header(&response, "access-control-allow-origin").is_none());
    let response = app
        .client
        .post(app.url("/v1/t"))
        .header("origin", "https://a.example")
        .bearer_auth(&key)
        .body(json!({"userId": "u", "event": "e"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://a.example")
    );
    assert!(omnihub::platform::http::browser::CorsOrigins::parse("*, https://a.example").is_err());
    assert!(omnihub::platform::http::browser::CorsOrigins::parse("a.example").is_err());
    app.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `Content-Encoding: gzip` is decompressed (as the Segment Python client
/// sends with `gzip=True`), capped at `max_body_bytes` once decompressed;
/// other encodings are 415, a broken stream 400.
async fn gzip_bodies_are_accepted_and_other_encodings_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "web").await;
    let body = json!({"batch": [{"type": "track", "userId": "gz-user", "event": "Zipped"}]});
    let response = app
        .client
        .post(app.url("/v1/batch"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    let (status, answer) = read(response).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    // Any JSON endpoint takes gzip, not only tracking.
    let response = app
        .post("/v1/channels")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(
            json!({"kind": "web", "name": "Zipped shop"})
                .to_string()
                .as_bytes(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    for encoding in ["br", "deflate", "gzip, br"] {
        let response = app
            .client
            .post(app.url("/v1/batch"))
            .bearer_auth(&key)
            .header("content-encoding", encoding)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 415, "unsupported_media_type").await;
        assert!(problem["detail"].as_str().unwrap().contains("gzip"));
    }
    let response = app
        .client
        .post(app.url("/v1/batch"))
        .bearer_auth(&key)
        .header("content-encoding", "gzip")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "malformed_json").await;
    // 2 MB of spaces compress to a few KB; decompressed they pass the 1 MB cap.
    let bomb = gzip(&vec![b' '; 2 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let response = app
        .client
        .post(app.url("/v1/batch"))
        .bearer_auth(&key)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "payload_too_large").await;
    app.stop().await;
}

/// The official Segment Python client with `gzip=True` (it compresses its
/// batches) delivers its calls.
async fn segment_python_client_with_gzip(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A server-side SDK: a trusted key (its logins count).
    let key = crate::tracking::server_key(&app, "web").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/segment_client.py");
    let base = app.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &base, &key, "gzip"])
            .output()
            .expect("run python3 (pip install segment-analytics-python)")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "segment client failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let id = lookup(&app, "user_id:segment-user-1")
        .await
        .expect("profile of the Segment user");
    assert_eq!(timeline(&app, &id, "").await.len(), 3);
    app.stop().await;
}

async fn mint(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/v1/stream/tokens"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    read(response).await
}

/// A backend mints a stream token with its `events:read` key; a page on
/// another origin opens `/v1/stream?token=…` (no header, as `EventSource`)
/// and gets the live events with the CORS grant.
async fn stream_token_opens_the_live_stream_from_a_browser(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reader = app.key("web", &["events:read"]).await;
    let (status, minted) = mint(&app, &reader, json!({})).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ost_"), "{token}");
    let expires =
        chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((290..=300).contains(&ttl), "default lifetime 300 s: {ttl}");
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/stream"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(
        header(&preflight, "access-control-allow-methods")
            .unwrap()
            .contains("GET")
    );
    let response = app
        .client
        .get(app.url("/v1/stream"))
        .query(&[("token", token.as_str()), ("types", "channel.*")])
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    let mut stream = SseClient::from_response(response);
    let channel = app.new_channel().await;
    let message = stream.next().await.expect("an event");
    assert_eq!(message.event, "channel.created");
    assert_eq!(message.data["subjects"]["channel_id"], channel);
    app.stop().await;
}

/// Only `events:read` keys mint; the token opens the stream and nothing
/// else; a forged, expired or revoked one is refused (with the CORS grant,
/// so the page can tell).
async fn stream_tokens_are_limited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let writer = write_key(&app, "web").await;
    let (status, body) = mint(&app, &writer, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let reader = app.key("web", &["events:read"]).await;
    for ttl in [0, 3601, -5] {
        let (status, body) = mint(&app, &reader, json!({ "ttl_seconds": ttl })).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["errors"][0]["field"], "ttl_seconds", "{body}");
    }
    let (_, minted) = mint(&app, &reader, json!({ "ttl_seconds": 1 })).await;
    let short = minted["token"].as_str().unwrap().to_string();
    let (_, minted) = mint(&app, &reader, json!({ "ttl_seconds": 600 })).await;
    let token = minted["token"].as_str().unwrap().to_string();
    let open = |token: String| {
        app.client
            .get(app.url("/v1/stream"))
            .query(&[("token", token)])
            .header("origin", ORIGIN)
            .send()
    };
    // Not a key: useless as a Bearer, and only /v1/stream reads `?token=`.
    let response = app
        .client
        .get(app.url("/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;
    let response = app
        .client
        .get(app.url("/v1/events"))
        .query(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;
    // Forged: another expiry under the same signature.
    let mut parts: Vec<&str> = token.split('.').collect();
    let later = (chrono::Utc::now().timestamp() + 3000).to_string();
    parts[1] = &later;
    let forged = parts.join(".");
    for bad in [forged, "ost_nonsense".to_string(), format!("{token}x")] {
        let response = open(bad).await.unwrap();
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
        assert_problem(response, 401, "unauthorized").await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_problem(open(short).await.unwrap(), 401, "unauthorized").await;
    let response = open(token.clone()).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the valid token still opens the stream"
    );
    drop(response);
    // Revoking the key revokes its tokens.
    let (_, keys) = app.get_json("/v1/keys?limit=200").await;
    let key_id = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scopes"] == json!(["events:read"]))
        .map(|k| k["id"].as_str().unwrap().to_string())
        .unwrap();
    let (status, body) = app
        .post_json(&format!("/v1/keys/{key_id}/revoke"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_problem(open(token).await.unwrap(), 401, "unauthorized").await;
    app.stop().await;
}
