//! Catalog upkeep over HTTP: the product list (cursor pages, search by title
//! and SKU, status), PATCH of products and variants, archiving instead of
//! deleting, with events; archived SKUs are not for sale.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{CART_SCOPES, add, open_cart, send};
use crate::inventory::{receive, store};
use crate::support::{Backend, TestApp, assert_problem};

backend_tests!(
    products_are_listed_in_pages_and_searched,
    products_and_variants_are_updated_with_events,
    archived_products_are_not_for_sale,
    archived_variant_alone_is_not_for_sale,
);

async fn product(app: &TestApp, title: &str, skus: &[&str]) -> Value {
    let variants: Vec<Value> = skus
        .iter()
        .map(|sku| json!({ "sku": sku, "prices": { "USD": 2500 } }))
        .collect();
    let (status, body) = app
        .post_json(
            "/v1/products",
            &json!({ "titles": { "en": title }, "variants": variants }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {page}"))
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, page) = app.get_json(&format!("/v1/products?{query}")).await;
    assert_eq!(status, 200, "{page}");
    page
}

async fn products_are_listed_in_pages_and_searched(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shirt = product(&app, "Oxford Shirt", &["OX-1", "OX-2"]).await;
    let mug = product(&app, "Coffee mug", &["MUG-100"]).await;
    let socks = product(&app, "Wool socks", &["SOCK_1"]).await;
    let id = |p: &Value| p["id"].as_str().unwrap().to_string();

    // Creation order, two per page, variants with each product.
    let first = list(&app, "limit=2").await;
    assert_eq!(ids(&first), vec![id(&shirt), id(&mug)]);
    assert_eq!(first["items"][0]["variants"].as_array().unwrap().len(), 2);
    assert_eq!(first["items"][0]["status"], "active");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = list(&app, &format!("limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), vec![id(&socks)]);
    assert!(second["next_cursor"].is_null(), "{second}");

    // `q`: case-insensitive, in a title or a SKU; LIKE's wildcards are literal.
    assert_eq!(ids(&list(&app, "q=shirt").await), vec![id(&shirt)]);
    assert_eq!(ids(&list(&app, "q=mug-1").await), vec![id(&mug)]);
    assert_eq!(ids(&list(&app, "q=%20OXFORD%20").await), vec![id(&shirt)]);
    assert_eq!(ids(&list(&app, "q=sock_").await), vec![id(&socks)]);
    assert!(ids(&list(&app, "q=%25").await).is_empty());
    assert!(
        ids(&list(&app, "q=_").await).len() == 1,
        "only SOCK_1 has _"
    );
    assert!(ids(&list(&app, "q=teapot").await).is_empty());

    // Bad queries name the parameter.
    let response = app.get("/v1/products?q=%20%20").send().await.unwrap();
    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "q", "{problem}");
    let response = app.get("/v1/products?status=gone").send().await.unwrap();
    assert_problem(response, 400, "invalid_query").await;
    app.stop().await;
}

async fn products_and_variants_are_updated_with_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = product(&app, "Tee", &["TEE-1"]).await;
    let id = created["id"].as_str().unwrap();
    let variant = created["variants"][0]["id"].as_str().unwrap();
    let head = app.head().await;

    let patch = |path: String, body: Value| {
        let app = &app;
        async move {
            let response = app.patch(&path).json(&body).send().await.unwrap();
            crate::support::read(response).await
        }
    };
    let (status, updated) = patch(
        format!("/v1/products/{id}"),
        json!({ "titles": { "en": "Linen tee", "fr": "T-shirt en lin" } }),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["titles"]["fr"], "T-shirt en lin");
    assert_ne!(updated["updated_at"], created["updated_at"]);
    // The same titles again change nothing and emit nothing.
    let (status, _) = patch(
        format!("/v1/products/{id}"),
        json!({ "titles": { "en": "Linen tee", "fr": "T-shirt en lin" } }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list(&app, "q=lin").await), vec![id.to_string()]);

    let (status, changed) = patch(
        format!("/v1/variants/{variant}"),
        json!({ "prices": { "usd": 1900, "EUR": 1800 }, "barcode": "4006381333931" }),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["prices"], json!({ "EUR": 1800, "USD": 1900 }));
    assert_eq!(changed["barcode"], "4006381333931");
    assert_eq!(changed["sku"], "TEE-1", "the SKU never changes");

    // Errors: a bad title, a taken barcode, unknown ids, no SKU field.
    let (status, problem) = patch(
        format!("/v1/products/{id}"),
        json!({ "titles": { "en": " " } }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "titles");
    let other = product(&app, "Other", &["OTHER-1"]).await;
    let other_variant = other["variants"][0]["id"].as_str().unwrap();
    let (status, problem) = patch(
        format!("/v1/variants/{other_variant}"),
        json!({ "barcode": "4006381333931" }),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "already_exists");
    let missing = uuid::Uuid::now_v7();
    let (status, _) = patch(format!("/v1/products/{missing}"), json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = patch(format!("/v1/variants/{missing}"), json!({})).await;
    assert_eq!(status, 404);
    let (status, problem) = patch(format!("/v1/variants/{variant}"), json!({ "sku": "NEW" })).await;
    assert_eq!(status, 422, "{problem}");

    let events = app
        .events_after(head, "product.*,variant.*")
        .await
        .into_iter()
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["data"].clone()))
        .collect::<Vec<_>>();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["product.updated", "product.updated", "product.created"],
        "{events:?}"
    );
    assert_eq!(events[0].1["changed"], json!(["titles"]));
    assert_eq!(events[1].1["variant_id"], variant);
    assert_eq!(events[1].1["changed"], json!(["barcode", "prices"]));
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// A cart with the admin-made catalog and a web key's cart: (key, cart id).
async fn web_cart(app: &TestApp) -> (String, String) {
    let key = app.key("web", CART_SCOPES).await;
    let cart = open_cart(
        app,
        &key,
        json!({ "anonymous_id": "anon-archive", "currency": "USD" }),
    )
    .await;
    (key, cart["id"].as_str().unwrap().to_string())
}

async fn archived_products_are_not_for_sale(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = product(&app, "Old shirt", &["OLD-1"]).await;
    let id = created["id"].as_str().unwrap();
    let shop = store(&app, "Shop", 40.7, -74.0).await;
    receive(&app, "OLD-1", &shop, 5).await;
    let (key, cart) = web_cart(&app).await;
    let (status, body) = add(&app, &key, &cart, "OLD-1", 1).await;
    assert_eq!(status, 200, "{body}");
    let head = app.head().await;

    let (status, archived) = app
        .post_json(&format!("/v1/products/{id}/archive"), &json!({}))
        .await;
    assert_eq!(status, 200, "{archived}");
    assert_eq!(archived["status"], "archived");
    assert_eq!(archived["variants"][0]["status"], "archived");
    assert!(archived["archived_at"].is_string());
    // Twice: the same answer, one event.
    let (status, again) = app
        .post_json(&format!("/v1/products/{id}/archive"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["archived_at"], archived["archived_at"]);

    // Not addable, and the line already in the cart does not check out.
    let (status, problem) = add(&app, &key, &cart, "OLD-1", 1).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "sku_archived", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("OLD-1"));
    let (status, problem, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart}/checkout")))
            .bearer_auth(&key)
            .json(
                &json!({ "fulfilment": { "type": "pickup", "location_id": shop },
                "tenders": [{ "method": "card", "reference": "psp_1", "amount_minor": 2500 }] }),
            ),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "sku_archived", "{problem}");

    // Still readable and listed by status; its stock stays.
    assert_eq!(ids(&list(&app, "status=archived").await), vec![id]);
    assert!(ids(&list(&app, "status=active").await).is_empty());
    let (status, read) = app.get_json(&format!("/v1/products/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read["status"], "archived");

    // Back on sale.
    let (status, restored) = app
        .post_json(&format!("/v1/products/{id}/unarchive"), &json!({}))
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["status"], "active");
    assert!(restored["archived_at"].is_null());
    let (status, body) = add(&app, &key, &cart, "OLD-1", 1).await;
    assert_eq!(status, 200, "{body}");

    let kinds: Vec<String> = app
        .events_after(head, "product.*")
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, vec!["product.archived", "product.unarchived"]);
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn archived_variant_alone_is_not_for_sale(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = product(&app, "Mugs", &["MUG-RED", "MUG-BLUE"]).await;
    let red = created["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["sku"] == "MUG-RED")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .post(&format!("/v1/variants/{red}/archive"))
        .send()
        .await
        .unwrap();
    let (status, variant) = crate::support::read(response).await;
    assert_eq!(status, 200, "{variant}");
    assert_eq!(variant["status"], "archived");
    let (key, cart) = web_cart(&app).await;
    let (status, problem) = add(&app, &key, &cart, "MUG-RED", 1).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "sku_archived");
    let (status, body) = add(&app, &key, &cart, "MUG-BLUE", 1).await;
    assert_eq!(status, 200, "{body}");
    let (_, read) = app
        .get_json(&format!("/v1/products/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(read["status"], "active", "the product stays on sale");
    let events = app.events_after(0, "variant.*").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "variant.archived");
    assert_eq!(events[0]["data"]["sku"], "MUG-RED");
    app.stop().await;
}
