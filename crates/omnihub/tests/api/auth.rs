//! Authentication and scopes: 401 for a missing, malformed, unknown or revoked
//! key; 403 for a valid key without the scope, over every endpoint and every
//! scope. The routes and the scope each needs are read from the OpenAPI
//! document (`x-required-scopes`), so a new route is covered the day it is
//! added.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp, assert_problem, read};

backend_tests!(
    missing_malformed_and_unknown_keys_are_401,
    revoked_key_fails_at_once_on_the_same_node,
    basic_auth_with_the_key_as_user_name,
    scope_matrix_over_every_endpoint,
    every_operation_of_the_spec_enforces_the_scopes_it_declares,
);

async fn missing_malformed_and_unknown_keys_are_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.url("/v1/channels");
    let head = app.head().await;

    let no_key = app.client.get(&url).send().await.unwrap();
    let challenge = no_key.headers().get("www-authenticate").cloned();
    assert_problem(no_key, 401, "unauthorized").await;
    // RFC 9110: a 401 carries a challenge.
    let challenge = challenge.expect("WWW-Authenticate on a 401");
    assert!(
        challenge.to_str().unwrap().starts_with("Bearer"),
        "{challenge:?}"
    );

    let basic = |raw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    };
    let malformed = [
        "Bearer".to_string(),
        "Bearer    ".to_string(),
        "Token ohk_abc".to_string(),
        app.admin_key.clone(),
        "Basic !!!not-base64!!!".to_string(),
        basic(":password"),
        basic(""),
        format!("Bearer {}x", app.admin_key),
        "Bearer ohk_0000000000000000000000000000000000000000000".to_string(),
    ];
    for header in malformed {
        let response = app
            .client
            .get(&url)
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert!(response.headers().contains_key("www-authenticate"));
        assert_problem(response, 401, "unauthorized").await;
    }
    // Bytes that are not UTF-8 in the header.
    let response = app
        .client
        .get(&url)
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;

    // A write without a key writes nothing.
    let response = app
        .client
        .post(&url)
        .json(&json!({"kind": "web", "name": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;
    assert_eq!(app.head().await, head, "nothing was written");
    app.stop().await;
}

async fn revoked_key_fails_at_once_on_the_same_node(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.new_channel().await;
    let (status, created) = app
        .post_json(
            "/v1/keys",
            &json!({"channel_id": channel, "name": "till 3", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ohk_"));
    assert!(
        created["prefix"]
            .as_str()
            .is_some_and(|p| secret.starts_with(p))
    );

    // Used once, so the node has it cached.
    let ok = app
        .client
        .get(app.url("/v1/channels"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // A key cannot revoke itself.
    let response = app
        .client
        .post(app.url(&format!("/v1/keys/{id}/revoke")))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_problem(response, 409, "conflict").await;

    let (status, revoked) = app
        .post_json(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");

    let response = app
        .client
        .get(app.url("/v1/channels"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;

    // Revoking again is harmless and emits no second event.
    let (status, again) = app
        .post_json(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    let revocations = app.events_after(0, "key.revoked").await;
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(revocations[0]["subjects"]["key_id"], id.as_str());

    // The listing shows it revoked and never shows a secret.
    let (_, fetched) = app.get_json(&format!("/v1/keys/{id}")).await;
    assert_eq!(fetched["revoked_at"], revoked["revoked_at"]);
    assert!(fetched.get("secret").is_none(), "{fetched}");
    let (_, list) = app.get_json("/v1/keys").await;
    assert!(
        !list.to_string().contains(&secret),
        "no secret in the list: {list}"
    );
    app.stop().await;
}

async fn basic_auth_with_the_key_as_user_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for password in [None, Some("ignored")] {
        let response = app
            .client
            .get(app.url("/v1/channels"))
            .basic_auth(&app.admin_key, password)
            .send()
            .await
            .unwrap();
        let (status, body) = read(response).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["items"].is_array(), "{body}");
    }
    let lowercase = app
        .client
        .get(app.url("/v1/channels"))
        .header("authorization", format!("bearer {}", app.admin_key))
        .send()
        .await
        .unwrap();
    assert_eq!(lowercase.status(), 200);
    app.stop().await;
}

/// One call of one endpoint.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    /// The scope the endpoint needs.
    scope: &'static str,
    /// The status of a successful call.
    success: u16,
}

/// Every endpoint of the API, with fresh targets for the calls that change
/// or remove something.
async fn every_endpoint(app: &TestApp) -> Vec<Call> {
    let channel = app.new_channel().await;
    let (status, key) = app
        .post_json(
            "/v1/keys",
            &json!({"channel_id": channel, "name": "target", "scopes": ["events:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let key = key["id"].as_str().unwrap().to_string();
    let hook = app
        .webhook("http://127.0.0.1:9/hook", &["nothing.here"])
        .await;
    let hook = hook["id"].as_str().unwrap().to_string();
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let call = |method: Method, path: String, body: Option<Value>, scope, success| Call {
        method,
        path,
        body,
        scope,
        success,
    };
    vec![
        call(
            Method::POST,
            "/v1/channels".into(),
            Some(json!({"kind": "app", "name": format!("app {unique}")})),
            "admin",
            201,
        ),
        call(Method::GET, "/v1/channels".into(), None, "admin", 200),
        call(
            Method::GET,
            format!("/v1/channels/{channel}"),
            None,
            "admin",
            200,
        ),
        call(
            Method::POST,
            "/v1/keys".into(),
            Some(json!({"channel_id": channel, "name": "k", "scopes": ["orders:read"]})),
            "admin",
            201,
        ),
        call(Method::GET, "/v1/keys".into(), None, "admin", 200),
        call(Method::GET, format!("/v1/keys/{key}"), None, "admin", 200),
        call(
            Method::POST,
            format!("/v1/keys/{key}/revoke"),
            None,
            "admin",
            200,
        ),
        call(Method::GET, "/v1/events".into(), None, "events:read", 200),
        call(Method::GET, "/v1/stream".into(), None, "events:read", 200),
        call(
            Method::POST,
            "/v1/webhooks".into(),
            Some(json!({"url": "http://127.0.0.1:9/other", "event_types": ["*"]})),
            "admin",
            201,
        ),
        call(Method::GET, "/v1/webhooks".into(), None, "admin", 200),
        call(
            Method::GET,
            format!("/v1/webhooks/{hook}"),
            None,
            "admin",
            200,
        ),
        call(
            Method::PATCH,
            format!("/v1/webhooks/{hook}"),
            Some(json!({"description": "changed"})),
            "admin",
            200,
        ),
        call(
            Method::GET,
            format!("/v1/webhooks/{hook}/deliveries"),
            None,
            "admin",
            200,
        ),
        call(
            Method::DELETE,
            format!("/v1/webhooks/{hook}"),
            None,
            "admin",
            204,
        ),
    ]
}

async fn send(app: &TestApp, call: &Call, secret: &str) -> reqwest::Response {
    let mut request = app
        .client
        .request(call.method.clone(), app.url(&call.path))
        .bearer_auth(secret);
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

async fn scope_matrix_over_every_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let probe = every_endpoint(&app).await;
    let head = app.head().await;
    let mut keys = Vec::new();
    for scope in omnihub::platform::keys::Scope::ALL {
        keys.push((scope.as_str(), app.key("web", &[scope.as_str()]).await));
    }
    let head_with_keys = app.head().await;
    assert!(head_with_keys > head);

    // Wrong scope: 403 everywhere, and nothing written.
    for (scope, secret) in &keys {
        for call in &probe {
            if *scope == "admin" || *scope == call.scope {
                continue;
            }
            let response = send(&app, call, secret).await;
            let body = assert_problem(response, 403, "forbidden").await;
            assert!(
                body["detail"].as_str().unwrap().contains(call.scope),
                "{} {} with {scope}: {body}",
                call.method,
                call.path
            );
        }
    }
    assert_eq!(app.head().await, head_with_keys, "403s wrote nothing");

    // The right scope: the call succeeds.
    for (scope, secret) in &keys {
        let calls = every_endpoint(&app).await;
        for call in calls
            .iter()
            .filter(|c| *scope == "admin" || *scope == c.scope)
        {
            let response = send(&app, call, secret).await;
            let status = response.status().as_u16();
            if call.path == "/v1/stream" {
                assert_eq!(status, 200);
                let content_type = response.headers()["content-type"].to_str().unwrap();
                assert!(content_type.starts_with("text/event-stream"));
                continue;
            }
            let (status, body) = read(response).await;
            assert_eq!(
                status, call.success,
                "{} {} with {scope}: {body}",
                call.method, call.path
            );
        }
    }
    app.stop().await;
}

/// `{id}`-style parameters of `path` filled with a fresh UUIDv7, which every
/// parameter of the API accepts in form (ids, SKUs, identifier values).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&uuid::Uuid::now_v7().to_string());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Every operation the OpenAPI document lists with the scopes it declares
/// (public operations, with none, are left to the other tests).
fn operations_with_scopes() -> Vec<(Method, String, Vec<String>)> {
    let spec: Value = serde_json::from_str(&omnihub::app::openapi::document_json()).unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if operation.get("responses").is_none() {
                continue;
            }
            let required: Vec<String> = operation["x-required-scopes"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} declares no x-required-scopes"))
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            if !required.is_empty() {
                operations.push((method, path.clone(), required));
            }
        }
    }
    operations
}

/// The status and body of an answer; a live stream's body (which never
/// ends) is not read.
async fn outcome(response: reqwest::Response) -> (u16, Value) {
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if streaming {
        return (response.status().as_u16(), Value::Null);
    }
    read(response).await
}

/// Each operation of the spec, with a key holding any other single scope,
/// answers 403 `forbidden` naming the scope it needs (before its path or
/// body are looked at) and writes nothing; with a key holding the declared
/// scope it is never refused for its scope.
async fn every_operation_of_the_spec_enforces_the_scopes_it_declares(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let operations = operations_with_scopes();
    assert!(
        operations.len() >= 80,
        "only {} operations",
        operations.len()
    );
    let mut keys = Vec::new();
    for scope in omnihub::platform::keys::Scope::ALL {
        keys.push((scope.as_str(), app.key("web", &[scope.as_str()]).await));
    }
    let call = |method: &Method, path: &str| Call {
        method: method.clone(),
        path: concrete(path),
        body: (method != Method::GET && method != Method::DELETE).then(|| json!({})),
        scope: "",
        success: 0,
    };
    let head = app.head().await;
    for (method, path, required) in &operations {
        for (scope, secret) in &keys {
            if *scope == "admin" || required.iter().any(|r| r == scope) {
                continue;
            }
            let (status, body) = outcome(send(&app, &call(method, path), secret).await).await;
            let detail = body["detail"].as_str().unwrap_or("");
            assert!(
                status == 403
                    && body["code"] == "forbidden"
                    && required.iter().any(|r| detail.contains(r.as_str())),
                "{method} {path} with only `{scope}` (needs {required:?}): {status} {body}"
            );
        }
    }
    assert_eq!(app.head().await, head, "refused calls wrote nothing");
    for (method, path, required) in &operations {
        for (scope, secret) in &keys {
            if *scope != "admin" && !required.iter().any(|r| r == scope) {
                continue;
            }
            let (status, body) = outcome(send(&app, &call(method, path), secret).await).await;
            assert!(
                status != 401 && !(status == 403 && body["code"] == "forbidden"),
                "{method} {path} refused a key with `{scope}`: {status} {body}"
            );
        }
    }
    app.stop().await;
}
