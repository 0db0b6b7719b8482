//! Safe upgrades: a database left at every earlier schema version, with data
//! in it, migrates to the latest and serves that data; `migrate --check`
//! says what would run and changes nothing; a binary facing a schema newer
//! than it knows refuses to start, and a running one reports not ready.

use std::process::Output;

use omnihub::app::server::Hub;
use omnihub::platform::channels::{self, ChannelKind, ChannelName};
use omnihub::platform::keys::{self, Scopes};
use omnihub::platform::storage::{Store, migrate};
use serde_json::Value;
use sqlx::Row;

use crate::backend_tests;
use crate::node::Node;
use crate::support::{Backend, TestDatabase, read};

backend_tests!(
    every_earlier_version_migrates_with_its_data,
    migrate_check_says_what_would_run,
    an_older_binary_refuses_a_newer_schema,
);

const CHANNEL: &str = "0190a000-0000-7000-8000-000000000001";
const CUSTOMER: &str = "0190a000-0000-7000-8000-0000000000c1";
const IDENTIFIER: &str = "0190a000-0000-7000-8000-0000000000a1";
const EVENT: &str = "0190a000-0000-7000-8000-0000000000e1";
const PRODUCT: &str = "0190a000-0000-7000-8000-0000000000b1";
const LOCATION: &str = "0190a000-0000-7000-8000-0000000000d1";
const CART: &str = "0190a000-0000-7000-8000-0000000000f1";
const ORDER: &str = "0190a000-0000-7000-8000-0000000000f2";

/// Rows as the hub of `version` wrote them, in SQL both dialects accept,
/// naming only the columns the table had then (columns added later have
/// defaults or are filled by their migration's backfill).
fn fixture(version: i64) -> Vec<String> {
    let t = 1_700_000_000_000_000i64;
    match version {
        1 => vec![
            format!(
                "INSERT INTO channels (id, kind, name, location_id, created_at) VALUES ('{CHANNEL}', 'web', 'Fixture web', NULL, {t})"
            ),
            format!(
                "INSERT INTO events (id, type, schema_version, occurred_at, channel_id, subjects, payload) VALUES ('{EVENT}', 'channel.created', 1, {t}, '{CHANNEL}', '{{\"channel\":\"{CHANNEL}\"}}', '{{\"id\":\"{CHANNEL}\"}}')"
            ),
        ],
        2 => vec![
            format!(
                "INSERT INTO customers (id, merged_into, created_at, updated_at) VALUES ('{CUSTOMER}', NULL, {t}, {t})"
            ),
            format!(
                "INSERT INTO identifiers (id, kind, value, customer_id, home_customer_id, status, verified, first_seen_at, updated_at) VALUES ('{IDENTIFIER}', 'email', 'fixture@example.com', '{CUSTOMER}', '{CUSTOMER}', 'member', 1, {t}, {t})"
            ),
            format!(
                "INSERT INTO tracking_events (id, channel_id, message_id, type, anchor_id, timestamp, received_at, properties, traits, has_traits, context) VALUES ('0190a000-0000-7000-8000-0000000000a2', '{CHANNEL}', 'm-1', 'identify', '{IDENTIFIER}', {t}, {t}, '{{}}', '{{\"plan\":\"gold\"}}', 1, '{{}}')"
            ),
        ],
        3 => vec![
            format!(
                "INSERT INTO products (id, titles, created_at) VALUES ('{PRODUCT}', '{{\"en\":\"Fixture Thing\"}}', {t})"
            ),
            format!(
                "INSERT INTO variants (id, product_id, sku, barcode, titles, prices, components, created_at) VALUES ('0190a000-0000-7000-8000-0000000000b2', '{PRODUCT}', 'FX-1', NULL, '{{\"en\":\"Fixture Thing\"}}', '{{\"USD\":2500}}', '[]', {t})"
            ),
            format!(
                "INSERT INTO locations (id, kind, name, address, latitude, longitude, time_zone, pickup_enabled, pickup_lead_minutes, ship_from_store, fulfilment_lead_minutes, created_at) VALUES ('{LOCATION}', 'warehouse', 'Fixture warehouse', '{{}}', 40.0, -74.0, 'UTC', 0, 0, 0, 0, {t})"
            ),
            format!(
                "INSERT INTO stock_movements (id, sku, location_id, quantity, delta, reason, reference, channel_id, occurred_at, recorded_at) VALUES ('0190a000-0000-7000-8000-0000000000b3', 'FX-1', '{LOCATION}', 'on_hand', 5, 'receipt', NULL, '{CHANNEL}', {t}, {t})"
            ),
            format!(
                "INSERT INTO stock_levels (sku, location_id, on_hand, updated_at) VALUES ('FX-1', '{LOCATION}', 5, {t})"
            ),
        ],
        4 => vec![
            format!(
                "INSERT INTO carts (id, owner_kind, owner_id, currency, status, version, created_at, updated_at) VALUES ('{CART}', 'customer', '{CUSTOMER}', 'USD', 'active', 1, {t}, {t})"
            ),
            format!(
                "INSERT INTO cart_lines (id, cart_id, sku, quantity, unit_price_minor, channel_id, added_at, updated_at) VALUES ('0190a000-0000-7000-8000-0000000000f3', '{CART}', 'FX-1', 2, 2500, '{CHANNEL}', {t}, {t})"
            ),
            format!(
                "INSERT INTO orders (id, channel_id, source, customer_id, currency, status, fulfilment, total_minor, tendered_minor, tenders, groups, created_at, updated_at) VALUES ('{ORDER}', '{CHANNEL}', 'checkout', '{CUSTOMER}', 'USD', 'placed', 'ship', 2500, 0, '[]', '[]', {t}, {t})"
            ),
            format!(
                "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor, total_minor) VALUES ('{ORDER}', 1, 'FX-1', 1, 2500, 2500)"
            ),
        ],
        _ => vec![],
    }
}

async fn scalar(store: &Store, sql: &str) -> Option<String> {
    sqlx::query(sql)
        .fetch_optional(store.reader())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .map(|row| {
            row.try_get::<Option<String>, _>(0)
                .unwrap()
                .unwrap_or_default()
        })
}

/// For each earlier version k: migrate to k, load the fixtures of versions
/// up to k, migrate the rest, then check the backfills, the ledger and that
/// a hub serves the data.
async fn every_earlier_version_migrates_with_its_data(backend: Backend) {
    let latest = migrate::latest_version();
    // Every known version (numbers are reserved per branch, so there may be gaps).
    let versions: Vec<i64> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    for k in versions.iter().copied().filter(|v| *v < latest) {
        let db = TestDatabase::new(backend);
        let store = Store::connect(&db.settings().store_options())
            .await
            .unwrap();
        migrate::run_to(&store, k).await.unwrap();
        for version in 1..=k {
            for statement in fixture(version) {
                write_raw(&db, &statement).await;
            }
        }
        let applied = migrate::run(&store).await.unwrap();
        let later: Vec<i64> = versions.iter().copied().filter(|v| *v > k).collect();
        assert_eq!(applied, later, "from {k}");
        let status = migrate::status(&store).await.unwrap();
        assert!(status.pending.is_empty() && status.unknown.is_empty());
        let one = |sql: &'static str| scalar(&store, sql);
        assert_eq!(
            one("SELECT name FROM channels").await.as_deref(),
            Some("Fixture web")
        );
        // Each backfill is checked from the versions before its migration
        // (later fixtures lack what the hub of their time wrote itself).
        if (2..9).contains(&k) {
            // 0009 materialized the traits of the stored calls.
            assert_eq!(
                one("SELECT value FROM identifier_traits WHERE name = 'plan'")
                    .await
                    .as_deref(),
                Some("\"gold\""),
                "from {k}"
            );
        }
        if (3..10).contains(&k) {
            // 0010 stamped and indexed the products.
            assert_eq!(
                one("SELECT search_text FROM products").await.as_deref(),
                Some("fixture thing"),
                "from {k}"
            );
        }
        if k >= 3 {
            let drifts = omnihub::commerce::inventory::ledger::verify(&store)
                .await
                .unwrap();
            assert!(drifts.is_empty(), "from {k}: {drifts:?}");
        }
        if (4..7).contains(&k) {
            // 0007 gave carts the channel of their first line.
            let channel = one("SELECT channel_id FROM carts").await;
            assert_eq!(channel.as_deref(), Some(CHANNEL), "from {k}");
        }
        if (4..8).contains(&k) {
            // 0008 gave carts, their lines and orders their origin.
            let carts = one("SELECT origin_kind FROM carts").await;
            assert_eq!(carts.as_deref(), Some("customer"), "from {k}");
            let lines = one("SELECT origin_id FROM cart_lines").await;
            assert_eq!(lines.as_deref(), Some(CUSTOMER), "from {k}");
            let orders = one("SELECT origin_kind FROM orders").await;
            assert_eq!(orders.as_deref(), Some("customer"), "from {k}");
        }
        store.close().await;
        serves_the_fixtures(&db, k).await;
    }
}

/// Writes one fixture row on a connection of its own (the store's reader is
/// read-only on SQLite).
async fn write_raw(db: &TestDatabase, statement: &str) {
    use sqlx::Connection;
    // A test that started no hub in this process has no driver installed yet.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    if let Some(schema) = &db.schema {
        sqlx::query(&format!("SET search_path TO \"{schema}\""))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    conn.close().await.unwrap();
}

/// A hub starts on the upgraded database and answers with the old data.
async fn serves_the_fixtures(db: &TestDatabase, k: i64) {
    let hub = Hub::start(db.settings()).await.expect("hub starts");
    let store = &hub.state.store;
    let name = ChannelName::parse("Back office").unwrap();
    let admin = channels::create(store, ChannelKind::Backoffice, name, None, None)
        .await
        .unwrap();
    let (_, key) = keys::create(
        store,
        admin.id,
        "upgrade".into(),
        Scopes::parse(["admin"]).unwrap(),
        None,
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("http://{}{path}", hub.addr))
            .bearer_auth(&key)
            .send()
    };
    let (status, ready) = read(get("/readyz").await.unwrap()).await;
    assert_eq!(status, 200, "from {k}: {ready}");
    let (status, feed) = read(get("/v1/events?limit=10").await.unwrap()).await;
    assert_eq!(status, 200, "from {k}: {feed}");
    assert_eq!(feed["items"][0]["id"], EVENT, "from {k}: {feed}");
    let (status, channel) = read(get(&format!("/v1/channels/{CHANNEL}")).await.unwrap()).await;
    assert_eq!(
        (status, &channel["name"]),
        (200, &Value::from("Fixture web")),
        "from {k}"
    );
    // Products written after 0010 are indexed by the hub that writes them.
    if (3..10).contains(&k) {
        let (status, products) = read(get("/v1/products?q=fixture").await.unwrap()).await;
        assert_eq!(status, 200, "from {k}: {products}");
        assert_eq!(products["items"][0]["id"], PRODUCT, "from {k}: {products}");
    }
    hub.shutdown().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_omnihub");

async fn omnihub(db: &TestDatabase, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_remove("OMNIHUB_CONFIG")
        .env_remove("OMNIHUB_DATA_DIR")
        .env("OMNIHUB_LOG_LEVEL", "warn")
        .env("OMNIHUB_LISTEN", "127.0.0.1:0")
        .kill_on_drop(true)
        .args(["--database-url", &db.url]);
    if let Some(schema) = &db.schema {
        command.args(["--database-schema", schema]);
    }
    command.args(args).output().await.expect("run omnihub")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn migrate_check_says_what_would_run(backend: Backend) {
    let db = TestDatabase::new(backend);
    if backend == Backend::Sqlite {
        let missing = omnihub(&db, &["migrate", "--check"]).await;
        assert_eq!(missing.status.code(), Some(1));
        assert!(text(&missing.stdout).contains("a start would create it"));
        let file = omnihub::platform::storage::sqlite_file(&db.url).unwrap();
        assert!(!file.exists(), "--check created no database");
    }
    let store = Store::connect(&db.settings().store_options())
        .await
        .unwrap();
    migrate::run_to(&store, 5).await.unwrap();
    store.close().await;
    let pending = omnihub(&db, &["migrate", "--check"]).await;
    assert_eq!(pending.status.code(), Some(1), "{}", text(&pending.stderr));
    let stdout = text(&pending.stdout);
    let would: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("would apply"))
        .collect();
    let expected: Vec<String> = migrate::MIGRATIONS
        .iter()
        .filter(|m| m.version > 5)
        .map(|m| format!("would apply\t{:04}\t{}", m.version, m.name))
        .collect();
    assert_eq!(would, expected, "{stdout}");
    // Nothing ran: the check again says the same.
    let again = omnihub(&db, &["migrate", "--check"]).await;
    assert_eq!(text(&again.stdout), stdout);
    let migrated = omnihub(&db, &["migrate"]).await;
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let current = omnihub(&db, &["migrate", "--check"]).await;
    assert!(current.status.success());
    assert!(
        text(&current.stdout).contains("up to date"),
        "{}",
        text(&current.stdout)
    );
}

/// A newer omnihub migrated the database (here: a version this binary does
/// not know is recorded). A node that was already serving reports not ready;
/// one that starts, `migrate` and `migrate --check` refuse and say why.
async fn an_older_binary_refuses_a_newer_schema(backend: Backend) {
    let db = TestDatabase::new(backend);
    let data_dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(format!("node-{}", uuid::Uuid::now_v7().simple()));
    let running = Node::start(&db, &data_dir).await;
    let client = reqwest::Client::new();
    let ready = client.get(running.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    write_raw(
        &db,
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from_the_future', 0)",
    )
    .await;
    let (status, body) = read(client.get(running.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["schema_version"], 9999, "{body}");
    for args in [&["serve"][..], &["migrate"], &["migrate", "--check"]] {
        let output = tokio::time::timeout(crate::support::WAIT_DEADLINE, omnihub(&db, args))
            .await
            .expect("refuses at once");
        assert!(!output.status.success(), "{args:?}");
        let error = text(&output.stderr);
        assert!(
            error.contains("versions [9999]") && error.contains("a newer omnihub migrated it"),
            "{args:?}: {error}"
        );
    }
    running.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
