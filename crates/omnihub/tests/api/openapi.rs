//! The OpenAPI document: 3.1, served, every route of the router with its
//! methods, the security scheme and the Problem schema; the committed copy in
//! `docs/openapi.json` must not drift. Also: the two migration sets match.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp, read};

backend_tests!(served_document_covers_every_route);

/// Every route the hub serves, public and under `/v1`.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/channels"),
    ("GET", "/v1/channels"),
    ("GET", "/v1/channels/{id}"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/keys/{id}"),
    ("POST", "/v1/keys/{id}/revoke"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/types"),
    ("GET", "/v1/stream"),
    ("POST", "/v1/stream/tokens"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("POST", "/v1/products"),
    ("GET", "/v1/products/{id}"),
    ("GET", "/v1/variants"),
    ("GET", "/v1/products"),
    ("PATCH", "/v1/products/{id}"),
    ("POST", "/v1/products/{id}/archive"),
    ("POST", "/v1/products/{id}/unarchive"),
    ("PATCH", "/v1/variants/{id}"),
    ("POST", "/v1/variants/{id}/archive"),
    ("POST", "/v1/variants/{id}/unarchive"),
    ("POST", "/v1/locations"),
    ("GET", "/v1/locations"),
    ("GET", "/v1/locations/{id}"),
    ("POST", "/v1/inventory/movements"),
    ("GET", "/v1/inventory/levels"),
    ("GET", "/v1/inventory/incidents"),
    ("POST", "/v1/inventory/verify"),
    ("POST", "/v1/inventory/rebuild"),
    ("GET", "/v1/availability"),
    ("GET", "/v1/availability/stores"),
    ("POST", "/v1/reservations"),
    ("GET", "/v1/reservations/{id}"),
    ("POST", "/v1/reservations/{id}/release"),
    ("POST", "/v1/reservations/{id}/allocate"),
    ("POST", "/v1/reservations/{id}/fulfil"),
    ("POST", "/v1/transfers"),
    ("GET", "/v1/transfers/{id}"),
    ("POST", "/v1/transfers/{id}/receive"),
    ("POST", "/v1/transfers/{id}/cancel"),
    ("POST", "/v1/sourcing/plan"),
    ("GET", "/v1/channels/{id}/inventory-policy"),
    ("PUT", "/v1/channels/{id}/inventory-policy"),
    ("POST", "/v1/carts"),
    ("GET", "/v1/carts/{id}"),
    ("POST", "/v1/carts/{id}/lines"),
    ("PATCH", "/v1/carts/{id}/lines/{line_id}"),
    ("DELETE", "/v1/carts/{id}/lines/{line_id}"),
    ("POST", "/v1/carts/merge"),
    ("POST", "/v1/carts/{id}/checkout"),
    ("GET", "/v1/customers/{id}/cart"),
    ("GET", "/v1/customers/{id}/orders"),
    ("POST", "/v1/orders"),
    ("POST", "/v1/orders/import"),
    ("GET", "/v1/orders/{id}"),
    ("POST", "/v1/orders/{id}/ready"),
    ("POST", "/v1/orders/{id}/picked-up"),
    ("POST", "/v1/orders/{id}/ship"),
    ("POST", "/v1/orders/{id}/deliver"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("POST", "/v1/identify"),
    ("POST", "/v1/track"),
    ("POST", "/v1/page"),
    ("POST", "/v1/screen"),
    ("POST", "/v1/alias"),
    ("POST", "/v1/group"),
    ("POST", "/v1/batch"),
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/{id}"),
    ("GET", "/v1/customers/{id}/timeline"),
    ("GET", "/v1/customers/{id}/merges"),
    ("POST", "/v1/customers/{id}/unmerge"),
    ("GET", "/v1/groups/{id}"),
    ("GET", "/v1/identity/rules"),
    ("PUT", "/v1/identity/rules"),
    ("GET", "/v1/identity/identifiers"),
    ("POST", "/v1/identity/rebuild"),
    ("POST", "/v1/identity/tokens"),
    ("POST", "/v1/privacy/requests"),
    ("GET", "/v1/privacy/requests"),
    ("GET", "/v1/privacy/requests/{id}"),
    ("GET", "/v1/privacy/requests/{id}/export"),
    ("GET", "/v1/customers/{id}/consents"),
    ("POST", "/v1/customers/{id}/consents"),
    ("POST", "/v1/consents"),
    ("GET", "/v1/customers/{id}/may-contact"),
    ("POST", "/v1/customers/{id}/unsubscribe-links"),
    ("GET", "/v1/consent/settings"),
    ("PUT", "/v1/consent/settings"),
    ("POST", "/v1/notices"),
    ("GET", "/v1/notices"),
    ("GET", "/v1/customers/{id}/preferences"),
    ("PUT", "/v1/customers/{id}/preferences"),
    ("GET", "/consent/confirm"),
    ("POST", "/consent/confirm"),
    ("GET", "/consent/unsubscribe"),
    ("POST", "/consent/unsubscribe"),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn documented_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let method = method.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                routes.insert((method, path.clone()));
            }
        }
    }
    routes
}

async fn served_document_covers_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Public: no key needed.
    let response = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let (status, served) = read(response).await;
    assert_eq!(status, 200);
    let generated: Value = serde_json::from_str(&omnihub::app::openapi::document_json()).unwrap();
    assert_eq!(served, generated, "the hub serves the generated document");
    assert!(
        served["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        served["openapi"]
    );

    let documented = documented_routes(&served);
    let known: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, known, "the document lists exactly the routes");

    // Every documented route exists on the router with exactly those methods.
    let channel = app.new_channel().await;
    let (_, key) = app
        .post_json(
            "/v1/keys",
            &json!({"channel_id": channel, "name": "k", "scopes": ["events:read"]}),
        )
        .await;
    let hook = app.webhook("http://127.0.0.1:9/", &["x.y"]).await;
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let id = if path.starts_with("/v1/channels") {
            channel.as_str()
        } else if path.starts_with("/v1/keys") {
            key["id"].as_str().unwrap()
        } else {
            hook["id"].as_str().unwrap()
        };
        let concrete = path.replace("{id}", id);
        for method in METHODS {
            let listed = documented.contains(&(method.to_string(), path.clone()));
            // Every documented API operation needs a key, whoever added it.
            let public = !path.starts_with("/v1/") || path.as_str() == "/v1/openapi.json";
            if listed && !public {
                let anonymous = app
                    .client
                    .request(
                        Method::from_bytes(method.as_bytes()).unwrap(),
                        app.url(&concrete),
                    )
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(anonymous.status(), 401, "{method} {path} without a key");
            }
            let mut request =
                app.request(Method::from_bytes(method.as_bytes()).unwrap(), &concrete);
            if method != "GET" && method != "DELETE" {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            if content_type.as_deref() == Some("text/event-stream") {
                assert!(listed);
                continue;
            }
            let (_, body) = read(response).await;
            if listed && status >= 400 {
                let documented = &served["paths"][path][method.to_ascii_lowercase()]["responses"];
                assert!(
                    documented.get(status.to_string()).is_some(),
                    "{method} {path} answered {status}, which the document does not list: {body}"
                );
                assert_eq!(content_type.as_deref(), Some("application/problem+json"));
            }
            if listed {
                assert_ne!(status, 405, "{method} {concrete}: {body}");
                let no_endpoint = status == 404
                    && body["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("no such endpoint"));
                assert!(!no_endpoint, "{method} {concrete} is routed");
            } else {
                assert_eq!(status, 405, "{method} {concrete} is not routed: {body}");
            }
        }
    }

    // Security: one bearer scheme, required by default, waived for the
    // operational endpoints.
    let scheme = &served["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(served["security"], json!([{"api_key": []}]));
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert_eq!(
            served["paths"][path]["get"]["security"],
            json!([{}]),
            "{path}"
        );
    }
    // The Problem schema; every error answer is a problem+json Problem, and
    // every API operation lists the errors of authentication and storage.
    let problem = &served["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail", "code", "errors"] {
        assert!(
            problem["properties"].get(field).is_some(),
            "Problem.{field}"
        );
    }
    assert!(served["components"]["schemas"].get("FieldError").is_some());
    for (path, item) in served["paths"].as_object().unwrap() {
        let public = !path.starts_with("/v1/") || path == "/v1/openapi.json";
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for (status, answer) in responses {
                if status.starts_with('4') || status.starts_with('5') && !public {
                    let schema = &answer["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
            }
            if !public {
                for status in ["401", "403", "500", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
    app.stop().await;
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `docs/openapi.json` is the generated document; set
/// `OMNIHUB_UPDATE_OPENAPI=1` to rewrite it after changing the API.
#[test]
fn committed_document_matches_the_code() {
    let path = repo_root().join("docs/openapi.json");
    let generated = format!("{}\n", omnihub::app::openapi::document_json());
    if std::env::var("OMNIHUB_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date; run OMNIHUB_UPDATE_OPENAPI=1 cargo test --test api openapi:: and commit it"
    );
}

fn migration_files(dialect: &str) -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn migration_sets_match_and_are_registered() {
    let sqlite = migration_files("sqlite");
    let postgres = migration_files("postgres");
    assert_eq!(sqlite, postgres, "the same migrations for both backends");
    let registered: BTreeSet<String> = omnihub::platform::storage::migrate::MIGRATIONS
        .iter()
        .map(|m| format!("{:04}_{}.sql", m.version, m.name))
        .collect();
    assert_eq!(registered, sqlite, "every file is registered in MIGRATIONS");
    let versions: Vec<i64> = omnihub::platform::storage::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "registered in order: {versions:?}"
    );
    for migration in omnihub::platform::storage::migrate::MIGRATIONS {
        assert!(!migration.sqlite.trim().is_empty());
        assert!(!migration.postgres.trim().is_empty());
    }
}
