//! The OpenAPI document is the contract: each operation's `x-required-scopes`
//! is what the hub enforces (derived from the document, not listed again
//! here), every POST declares `Idempotency-Key`, schema names are distinct,
//! operation ids say what they do. `.ci/contract.sh` runs schemathesis on top.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::backend_tests;
use crate::support::{Backend, TestApp, read};

backend_tests!(
    required_scopes_in_the_document_are_enforced,
    integral_floats_are_integers,
    skus_are_at_most_64_characters_as_sent,
);

/// Every scope but `admin`.
const SCOPES: &[&str] = &[
    "events:read",
    "events:write",
    "customers:read",
    "customers:write",
    "catalog:read",
    "catalog:write",
    "inventory:read",
    "inventory:write",
    "carts:read",
    "carts:write",
    "orders:read",
    "orders:write",
    "privacy:read",
    "privacy:write",
    "consent:read",
    "consent:write",
];

/// `(method, path template, required scopes)` of every operation.
fn operations(document: &Value) -> Vec<(Method, String, Vec<String>)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let scopes = operation["x-required-scopes"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} has no x-required-scopes"))
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            all.push((method, path.clone(), scopes));
        }
    }
    all
}

/// A concrete path for a template: ids that exist nowhere.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|part| {
            if part.starts_with('{') {
                "0190a9d3-0000-7000-8000-000000000000"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// For every operation: a key holding every other scope gets 403 (the scope
/// check runs before anything looks at the request), a key with the
/// declared scope does not; public operations need no key.
async fn required_scopes_in_the_document_are_enforced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, document) = read(
        app.client
            .get(app.url("/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let mut keys = std::collections::HashMap::new();
    for scope in SCOPES {
        let others: Vec<&str> = SCOPES.iter().copied().filter(|s| s != scope).collect();
        keys.insert(
            scope.to_string(),
            (
                app.key("web", &[scope]).await,
                app.key("web", &others).await,
            ),
        );
    }
    let every_scope = app.key("web", SCOPES).await;
    let mut seen = BTreeSet::new();
    for (method, path, scopes) in operations(&document) {
        let url = app.url(&concrete(&path));
        let send = |key: Option<&str>| {
            let mut request = app.client.request(method.clone(), &url);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            if method == Method::GET && path == "/v1/stream" {
                request = request.timeout(std::time::Duration::from_secs(2));
            }
            request.send()
        };
        match scopes.as_slice() {
            [] => {
                assert!(!path.starts_with("/v1/") || path == "/v1/openapi.json");
                let response = send(None).await.unwrap();
                assert_ne!(response.status(), 401, "{method} {path} is public");
            }
            [scope] if scope == "admin" => {
                let response = send(Some(&every_scope)).await.unwrap();
                assert_eq!(response.status(), 403, "{method} {path} needs admin");
                let response = send(Some(&app.admin_key)).await.unwrap();
                assert_ne!(response.status(), 403, "{method} {path} with admin");
            }
            [scope] => {
                let (with, without) = &keys[scope];
                let response = send(Some(without)).await.unwrap();
                assert_eq!(
                    response.status(),
                    403,
                    "{method} {path} needs {scope}, not another"
                );
                let response = send(Some(with)).await.unwrap();
                assert_ne!(response.status(), 403, "{method} {path} with {scope}");
                assert_ne!(response.status(), 401, "{method} {path} with {scope}");
            }
            other => panic!("{method} {path}: one scope expected, got {other:?}"),
        }
        seen.insert(format!("{method} {path}"));
    }
    assert!(seen.len() > 70, "{seen:?}");
    app.stop().await;
}

/// The document's shape: every POST under /v1 declares `Idempotency-Key`,
/// operation ids are unique and say what they do, the license has its SPDX
/// identifier and the document names a server.
#[test]
fn document_declares_what_clients_need() {
    let document: Value = serde_json::from_str(&omnihub::app::openapi::document_json()).unwrap();
    assert_eq!(document["info"]["license"]["identifier"], "Apache-2.0");
    assert!(document["servers"][0]["url"].is_string());
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "duplicate operation id {id}");
            assert!(
                id.contains('_'),
                "{method} {path}: operation id {id:?} should say verb and object"
            );
            if method == "post" && path.starts_with("/v1/") {
                let declared = operation["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"))
                    .unwrap_or(false);
                assert!(declared, "POST {path} does not declare Idempotency-Key");
            }
        }
    }
}

/// The enums of the document are the values the domain parses, no more,
/// no fewer.
#[test]
fn document_enums_match_the_domain() {
    use omnihub::platform::http::schema::*;
    let names = |all: Vec<String>| all;
    assert_eq!(
        ChannelKindName::VALUES,
        names(
            omnihub::platform::channels::ChannelKind::ALL
                .iter()
                .map(|k| k.as_str().to_string())
                .collect()
        )
    );
    assert_eq!(
        ScopeName::VALUES,
        names(
            omnihub::platform::keys::Scope::ALL
                .iter()
                .map(|s| s.as_str().to_string())
                .collect()
        )
    );
    assert_eq!(
        LocationKindName::VALUES,
        names(
            omnihub::commerce::locations::LocationKind::ALL
                .iter()
                .map(|k| k.as_str().to_string())
                .collect()
        )
    );
    for value in MovementReasonName::VALUES {
        assert!(
            value
                .parse::<omnihub::commerce::inventory::ClientReason>()
                .is_ok(),
            "{value}"
        );
    }
    assert!(
        "restock"
            .parse::<omnihub::commerce::inventory::ClientReason>()
            .is_err()
    );
    for value in CartMergePolicyName::VALUES {
        assert!(
            omnihub::commerce::carts::merge::MergePolicy::parse(value).is_ok(),
            "{value}"
        );
    }
    for value in WebhookStatusName::VALUES {
        assert!(
            omnihub::platform::webhooks::WebhookStatus::parse(value).is_some(),
            "{value}"
        );
    }
}

/// JSON Schema counts `60.0` as the integer 60; so does the hub (clients that
/// write every number as a float are understood); `60.5` is still refused.
async fn integral_floats_are_integers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .post_json(
            "/v1/locations",
            &serde_json::json!({"kind": "store", "name": "Float St", "pickup_enabled": true,
                                "pickup_lead_minutes": 60.0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pickup_lead_minutes"], 60);
    let (status, body) = app
        .post_json(
            "/v1/locations",
            &serde_json::json!({"kind": "store", "name": "Half St", "pickup_lead_minutes": 60.5}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "pickup_lead_minutes", "{body}");
    app.stop().await;
}

/// The document says a SKU is at most 64 characters; so does the hub, for
/// the SKU as sent (it used to count only after trimming and joining words).
async fn skus_are_at_most_64_characters_as_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let padded = format!("{}{}", "A".repeat(60), " ".repeat(10));
    let (status, body) = app
        .post_json(
            "/v1/products",
            &serde_json::json!({"titles": {"en": "Tee"}, "variants": [{"sku": padded}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "variants[0].sku", "{body}");
    let (status, body) = app
        .post_json(
            "/v1/products",
            &serde_json::json!({"titles": {"en": "Tee"}, "variants": [{"sku": "A".repeat(64)}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}

/// ARCHITECTURE.md's error table is the list clients read: every code the
/// hub can answer is in it once, with its status, and nothing else is.
#[test]
fn the_error_table_lists_every_code() {
    use omnihub::platform::http::problem::ErrorCode;
    let architecture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../ARCHITECTURE.md"
    ))
    .unwrap();
    let mut documented: Vec<(String, u16)> = Vec::new();
    for row in architecture.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(status) = cells[1].parse::<u16>() else {
            continue;
        };
        for code in cells[0].split('`').skip(1).step_by(2) {
            documented.push((code.to_string(), status));
        }
    }
    let mut in_code: Vec<(String, u16)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), c.status().as_u16()))
        .collect();
    documented.sort();
    in_code.sort();
    assert_eq!(
        documented, in_code,
        "ARCHITECTURE.md's error table (code, status) differs from http::problem::ErrorCode"
    );
}
