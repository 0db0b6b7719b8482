//! API conventions: every kind of bad input gets a 4xx problem+json with a
//! stable code (and the offending fields for validation), and changes nothing.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp, assert_problem};

backend_tests!(
    bad_bodies_are_problems_and_write_nothing,
    oversized_bodies_are_413_and_write_nothing,
    unknown_routes_methods_and_bad_queries,
    validation_names_the_field,
    concurrent_duplicates_are_409_not_500,
    odd_inputs_never_500,
    control_characters_in_text_are_rejected,
);

/// What the hub holds: the event feed and the channel list.
async fn snapshot(app: &TestApp) -> (Vec<Value>, Value) {
    let (status, channels) = app.get_json("/v1/channels?limit=200").await;
    assert_eq!(status, 200);
    (app.all_events().await, channels)
}

async fn bad_bodies_are_problems_and_write_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = snapshot(&app).await;
    let post_raw = |body: &'static [u8], content_type: Option<&'static str>| {
        let mut request = app.post("/v1/channels").body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json_type = Some("application/json");

    // Malformed JSON.
    for body in [
        &b"{"[..],
        b"{\"kind\": \"web\", \"name\": }",
        b"",
        b"not json",
        b"{\"kind\": \"web\", \"name\": \"a\"} trailing",
        b"\xff\xfe\x00",
    ] {
        let response = post_raw(body, json_type).await.unwrap();
        assert_problem(response, 400, "malformed_json").await;
    }

    // Wrong types, missing and unknown fields: 422 with the field.
    let cases: [(&'static [u8], &str); 6] = [
        (br#"{"kind": 5, "name": "x"}"#, "kind"),
        (br#"{"kind": "web", "name": ["x"]}"#, "name"),
        (br#"{"kind": "web"}"#, ""),
        (
            br#"{"kind": "web", "name": "x", "colour": "red"}"#,
            "colour",
        ),
        (
            br#"{"kind": "pos", "name": "x", "location_id": "nope"}"#,
            "location_id",
        ),
        (br#"[1, 2, 3]"#, ""),
    ];
    for (body, field) in cases {
        let response = post_raw(body, json_type).await.unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        let errors = problem["errors"].as_array().expect("errors");
        assert!(!errors.is_empty(), "{problem}");
        if !field.is_empty() {
            assert_eq!(errors[0]["field"], field, "{problem}");
        }
        assert!(errors[0]["message"].is_string(), "{problem}");
    }

    // Missing or wrong content type: 415.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let response = post_raw(br#"{"kind": "web", "name": "x"}"#, content_type)
            .await
            .unwrap();
        assert_problem(response, 415, "unsupported_media_type").await;
    }
    // A +json type and a charset are fine (the request is valid).
    let response = post_raw(
        br#"{"kind": "web", "name": "charset"}"#,
        Some("application/json; charset=utf-8"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let (status, _) = app
        .post_json(
            &format!(
                "/v1/channels/{}/nothing",
                uuid::Uuid::now_v7().as_hyphenated()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);

    let after = snapshot(&app).await;
    assert_eq!(
        after.0.len(),
        before.0.len() + 1,
        "only the valid request wrote"
    );
    app.stop().await;
}

async fn oversized_bodies_are_413_and_write_nothing(backend: Backend) {
    const LIMIT: usize = 512;
    let mut app = TestApp::spawn_with(backend, |s| s.max_body_bytes = LIMIT).await;
    let before = snapshot(&app).await;
    let big = json!({"kind": "web", "name": "x".repeat(LIMIT * 2)});
    let response = app.post("/v1/channels").json(&big).send().await.unwrap();
    assert_problem(response, 413, "payload_too_large").await;
    // The same through the idempotency layer, which buffers the body itself.
    let response = app
        .post("/v1/channels")
        .header("idempotency-key", "big-1")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "payload_too_large").await;
    // A body without Content-Length (chunked) is limited too. The hub may
    // close the connection before the client sent everything, which the
    // client can see as a reset instead of the answer: try a few times.
    let mut answer = None;
    for _ in 0..5 {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..4).map(|_| Ok(vec![b' '; LIMIT / 2])).collect();
        let sent = app
            .post("/v1/webhooks")
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await;
        if let Ok(response) = sent {
            answer = Some(response);
            break;
        }
    }
    assert_problem(answer.expect("an answer"), 413, "payload_too_large").await;
    // The hub closes a connection whose body it refused; a pooled client
    // could pick one of those for the next request and see it reset.
    app.client = reqwest::Client::new();
    assert_eq!(snapshot(&app).await, before, "nothing was written");
    // Just under the limit works.
    let (status, body) = app
        .post_json("/v1/channels", &json!({"kind": "web", "name": "small"}))
        .await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}

async fn unknown_routes_methods_and_bad_queries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hook = app.webhook("http://127.0.0.1:9/hook", &["x.y"]).await;
    let hook = hook["id"].as_str().unwrap().to_string();
    let before = snapshot(&app).await;

    for path in [
        "/v1/nothing",
        "/nothing",
        "/v1/channels/x/y/z",
        "/v2/channels",
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_problem(response, 404, "not_found").await;
    }
    // Malformed and unknown ids are 404 too.
    for path in [
        "/v1/channels/not-a-uuid".to_string(),
        format!("/v1/channels/{}", uuid::Uuid::now_v7()),
        format!("/v1/keys/{}", uuid::Uuid::now_v7()),
        format!("/v1/webhooks/{}", uuid::Uuid::now_v7()),
        format!("/v1/webhooks/{}/deliveries", uuid::Uuid::now_v7()),
    ] {
        let response = app.get(&path).send().await.unwrap();
        assert_problem(response, 404, "not_found").await;
    }
    for (method, path) in [
        (Method::DELETE, "/v1/channels".to_string()),
        (Method::PUT, "/v1/channels".to_string()),
        (Method::POST, "/v1/events".to_string()),
        (Method::DELETE, "/v1/keys".to_string()),
        (Method::PUT, format!("/v1/webhooks/{hook}")),
        (
            Method::GET,
            format!("/v1/keys/{}/revoke", uuid::Uuid::now_v7()),
        ),
        (Method::POST, "/healthz".to_string()),
    ] {
        let response = app.request(method.clone(), &path).send().await.unwrap();
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            allow
                .as_deref()
                .is_some_and(|a| !a.is_empty() && !a.contains(method.as_str())),
            "{method} {path}: a 405 names the allowed methods: {allow:?}"
        );
        assert_problem(response, 405, "method_not_allowed").await;
    }
    for path in [
        "/v1/channels?cursor=%21%21%21",
        "/v1/channels?cursor=bm9wZQ",
        "/v1/keys?cursor=Zm9v",
        "/v1/webhooks?cursor=x",
        "/v1/events?after=abc",
        "/v1/events?after=-1",
        "/v1/events?after=1.5",
        "/v1/stream?after=nope",
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_problem(response, 400, "invalid_cursor").await;
    }
    let response = app
        .get(&format!("/v1/webhooks/{hook}/deliveries?page=2"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "invalid_query").await;
    let response = app
        .get(&format!("/v1/webhooks/{hook}/deliveries?cursor=%25%25"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "invalid_cursor").await;
    let response = app
        .get("/v1/stream")
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "invalid_cursor").await;
    for path in [
        "/v1/channels?limit=abc",
        "/v1/channels?limit=-1",
        "/v1/events?limit=many",
        "/v1/events?types=Bad-Type",
        "/v1/events?types=order*",
        "/v1/stream?types=*.created",
        "/v1/keys?channel_id=nope",
        // Unknown parameters are refused, not ignored: a client that pages
        // with a misspelled parameter would otherwise loop on page one.
        "/v1/channels?after=5",
        "/v1/keys?page=2",
        "/v1/variants?sku=A&colour=red",
        "/v1/customers?identifier=email:a@example.com&expand=orders",
        "/v1/customers/x/timeline?kind=page",
        "/v1/customers/x/cart?curency=USD",
        "/v1/identity/identifiers?state=shared",
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_problem(response, 400, "invalid_query").await;
    }
    assert_eq!(snapshot(&app).await, before, "nothing was written");
    app.stop().await;
}

async fn validation_names_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.new_channel().await;
    let before = snapshot(&app).await;
    let cases: Vec<(&str, Method, Value, &str)> = vec![
        (
            "/v1/channels",
            Method::POST,
            json!({"kind": "shop", "name": "x"}),
            "kind",
        ),
        (
            "/v1/channels",
            Method::POST,
            json!({"kind": "web", "name": "  "}),
            "name",
        ),
        (
            "/v1/channels",
            Method::POST,
            json!({"kind": "web", "name": "x".repeat(101)}),
            "name",
        ),
        (
            "/v1/channels",
            Method::POST,
            json!({"kind": "web", "name": "x", "location_id": uuid::Uuid::now_v7()}),
            "location_id",
        ),
        (
            "/v1/keys",
            Method::POST,
            json!({"channel_id": channel, "name": "k", "scopes": ["root"]}),
            "scopes",
        ),
        (
            "/v1/keys",
            Method::POST,
            json!({"channel_id": channel, "name": "k", "scopes": []}),
            "scopes",
        ),
        (
            "/v1/keys",
            Method::POST,
            json!({"channel_id": uuid::Uuid::now_v7(), "name": "k", "scopes": ["admin"]}),
            "channel_id",
        ),
        (
            "/v1/keys",
            Method::POST,
            json!({"channel_id": channel, "name": "", "scopes": ["admin"]}),
            "name",
        ),
        (
            "/v1/webhooks",
            Method::POST,
            json!({"url": "ftp://example.com", "event_types": ["*"]}),
            "url",
        ),
        (
            "/v1/webhooks",
            Method::POST,
            json!({"url": "not a url", "event_types": ["*"]}),
            "url",
        ),
        (
            "/v1/webhooks",
            Method::POST,
            json!({"url": "http://127.0.0.1:9/", "event_types": []}),
            "event_types",
        ),
        (
            "/v1/webhooks",
            Method::POST,
            json!({"url": "http://127.0.0.1:9/", "event_types": ["Order Placed"]}),
            "event_types",
        ),
        (
            "/v1/webhooks",
            Method::POST,
            json!({"url": "http://127.0.0.1:9/", "event_types": ["*"], "secret": "hunter2"}),
            "secret",
        ),
        (
            "/v1/webhooks",
            Method::POST,
            json!({"url": "http://127.0.0.1:9/", "event_types": ["*"], "from_position": -5}),
            "from_position",
        ),
        (
            "/v1/webhooks",
            Method::POST,
            json!({"url": "http://127.0.0.1:9/", "event_types": ["*"], "description": "x".repeat(501)}),
            "description",
        ),
    ];
    for (path, method, body, field) in cases {
        let response = app
            .request(method.clone(), path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{method} {path}: {problem}"
        );
    }
    let hook = app.webhook("http://127.0.0.1:9/hook", &["x.y"]).await;
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let before_patch = snapshot(&app).await;
    for (body, field) in [
        (json!({"status": "paused"}), "status"),
        (json!({"url": "mailto:a@b.c"}), "url"),
        (json!({"event_types": []}), "event_types"),
        (json!({"secret": "whsec_abc"}), "secret"),
        (json!({"status": 1}), "status"),
    ] {
        let response = app.patch(&hook_path).json(&body).send().await.unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    assert_eq!(snapshot(&app).await, before_patch, "nothing was written");
    assert_eq!(before_patch.0.len(), before.0.len() + 1);
    app.stop().await;
}

async fn concurrent_duplicates_are_409_not_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Several rounds: on PostgreSQL the writer lanes race on the unique name.
    for round in 0..4 {
        let name = format!("Same name {round}");
        let statuses: Vec<u16> = futures::future::join_all((0..16).map(|_| async {
            app.post("/v1/channels")
                .json(&json!({"kind": "web", "name": name}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }))
        .await;
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 409),
            "{statuses:?}"
        );
    }
    assert_eq!(app.events_after(0, "channel.created").await.len(), 1 + 4);
    app.stop().await;
}

async fn odd_inputs_never_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = snapshot(&app).await;
    for (path, status) in [
        ("/v1/events?after=99999999999999999999", 400),
        ("/v1/events?limit=99999999999", 400),
        ("/v1/events?after=9223372036854775807", 200),
        ("/v1/events?after=%ZZ", 400),
        ("/v1/channels?cursor=djE6JyBPUiAxPTEgLS0", 200),
        ("/v1/channels?limit=1&limit=2", 400),
        ("/v1/keys?channel_id=", 400),
        (
            "/v1/webhooks/00000000-0000-0000-0000-000000000000/deliveries?status=lost",
            404,
        ),
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
    // Deep nesting: a 4xx, whatever the parser trips on first.
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_value = format!(
        r#"{{"kind": "web", "name": "x", "extra": {}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    for body in [nested, deep_value] {
        let response = app
            .post("/v1/channels")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let huge_number = r#"{"url": "http://127.0.0.1:9/", "event_types": ["*"], "from_position": 99999999999999999999}"#;
    for (body, status) in [
        (huge_number, 422),
        (r#"{"kind": "web", "name": "tab\there"}"#, 422),
        (r#"{"kind": "web", "name": null}"#, 422),
        (r#"{"kind": "web", "name": "\ud800"}"#, 400),
    ] {
        let path = if body.contains("event_types") {
            "/v1/webhooks"
        } else {
            "/v1/channels"
        };
        let response = app
            .post(path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status_got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status_got, status, "{body:.60}: {text}");
    }
    assert_eq!(snapshot(&app).await, before, "nothing was written");
    app.stop().await;
}

async fn control_characters_in_text_are_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.new_channel().await;
    let hook = app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let before = snapshot(&app).await;
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            "/v1/keys".into(),
            json!({"channel_id": channel, "name": "till\u{0}3", "scopes": ["admin"]}),
            "name",
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            json!({"url": "http://127.0.0.1:9/", "event_types": ["*"], "description": "a\u{0}b"}),
            "description",
        ),
        (
            Method::PATCH,
            hook_path.clone(),
            json!({"description": "\u{0}"}),
            "description",
        ),
        (
            Method::POST,
            "/v1/channels".into(),
            json!({"kind": "web", "name": "x\u{0}y"}),
            "name",
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            json!({"url": "http://127.0.0.1:9/", "event_types": ["*"],
                   "secret": "whsec_\u{0}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}),
            "secret",
        ),
        (
            Method::POST,
            "/v1/webhooks".into(),
            json!({"url": "http://127.0.0.1:9/", "event_types": ["*"],
                   "secret": "whsec_not base64 at all, but long enough"}),
            "secret",
        ),
    ];
    for (method, path, body, field) in cases {
        let response = app
            .request(method.clone(), &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{method} {path}: {problem}"
        );
    }
    // A forged cursor with a NUL in it.
    let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1:\u{0}");
    for path in ["/v1/channels", "/v1/keys", "/v1/webhooks"] {
        let response = app
            .get(&format!("{path}?cursor={cursor}"))
            .send()
            .await
            .unwrap();
        assert_problem(response, 400, "invalid_cursor").await;
    }
    // A description may have line breaks.
    let (status, body) = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/", "event_types": ["*"], "description": "two\nlines\t"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(snapshot(&app).await.0.len(), before.0.len() + 1);
    app.stop().await;
}
