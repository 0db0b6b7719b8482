//! Full identity rebuild benchmark.
//!
//! ```text
//! # the compact resolver alone, on a generated graph held in memory
//! /usr/bin/time -f "%e s %M KB" target/release/examples/identity_rebuild_bench memory 10000000 16000000
//! # the real rebuild (identity::rebuild) on a generated SQLite database
//! target/release/examples/identity_rebuild_bench db 1000000 1600000
//! ```
//!
//! The graph has a realistic shape: people with a few identifiers (anonymous
//! ids, often a user id and an email, sometimes a phone, a device id, a
//! loyalty id), links from each call's anchor to the other identifiers,
//! repeated and verified links, family devices shared by two or three
//! accounts (shared), and placeholder emails and phones typed by 60–400
//! guests (quarantined). Identifier ids are in an order unrelated to people
//! (ids are minted when first seen); link ids follow creation time and
//! `observed_at` follows them, 5 % back-dated. Every loop is bounded.

use std::time::Instant;

use omnihub::customers::identity::compact::{self, CompactGraph, CompactRules};
use omnihub::customers::identity::rules::IdentityRules;
use omnihub::platform::config::Settings;
use omnihub::platform::storage::{Store, StoreError, migrate};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A generated graph: identifier types (by name index) in id order, links
/// in id (= creation) order.
struct Generated {
    kinds: Vec<u8>,
    ends: Vec<(u32, u32)>,
    verified: Vec<bool>,
}

/// `observed_at` of the links, in link id (creation) order: one link per
/// millisecond, 5 % back-dated by up to a day. Made on the fly.
fn link_times(seed: u64) -> impl FnMut(usize) -> i64 {
    let mut rng = Rng(seed ^ 0x5EED);
    let start: i64 = 1_750_000_000_000_000;
    move |i| {
        let t = start + i as i64 * 1_000;
        if rng.chance(5) {
            t - rng.below(86_400_000_000) as i64
        } else {
            t
        }
    }
}

const KIND_NAMES: [&str; 7] = [
    "user_id",
    "anonymous_id",
    "device_id",
    "email",
    "phone",
    "loyalty_id",
    "marketplace_buyer_id",
];
const USER: u8 = 0;
const ANON: u8 = 1;
const DEVICE: u8 = 2;
const EMAIL: u8 = 3;
const PHONE: u8 = 4;
const LOYALTY: u8 = 5;

fn node(kinds: &mut Vec<u8>, kind: u8) -> u32 {
    kinds.push(kind);
    (kinds.len() - 1) as u32
}

fn generate(identifiers: usize, links: usize, seed: u64) -> Generated {
    let mut rng = Rng(seed);
    let mut kinds: Vec<u8> = Vec::with_capacity(identifiers);
    let mut ends: Vec<(u32, u32)> = Vec::with_capacity(links);
    let mut verified: Vec<bool> = Vec::with_capacity(links);
    let mut user_ids: Vec<u32> = Vec::new();
    let mut guests: Vec<u32> = Vec::new();
    // Room for the family devices (1 % of accounts) and the placeholder hubs.
    let hubs = (identifiers / 20_000).max(1);
    let people_budget = identifiers.saturating_sub(hubs + identifiers / 300);
    let link = |ends: &mut Vec<(u32, u32)>, verified: &mut Vec<bool>, a: u32, b: u32, v: bool| {
        ends.push((a, b));
        verified.push(v);
    };
    while kinds.len() + 8 < people_budget {
        // One person: a browser or two, often an account, some traits.
        let anon = node(&mut kinds, ANON);
        let anon2 = rng.chance(40).then(|| node(&mut kinds, ANON));
        let user = rng.chance(50).then(|| node(&mut kinds, USER));
        let mut traits: Vec<u32> = Vec::new();
        for (kind, percent) in [(EMAIL, 60), (PHONE, 15), (DEVICE, 20), (LOYALTY, 10)] {
            if rng.chance(percent) {
                traits.push(node(&mut kinds, kind));
            }
        }
        match user {
            Some(u) => {
                // Logins (trusted, so verified now and then) from each browser.
                link(&mut ends, &mut verified, u, anon, rng.chance(30));
                if let Some(a2) = anon2 {
                    link(&mut ends, &mut verified, u, a2, rng.chance(30));
                }
                user_ids.push(u);
            }
            None => guests.push(anon),
        }
        for &t in &traits {
            let anchor = user.unwrap_or(anon);
            link(
                &mut ends,
                &mut verified,
                anchor,
                t,
                user.is_some() && rng.chance(30),
            );
            // The same trait sent again by the anonymous browsers.
            if user.is_some() && rng.chance(60) {
                link(&mut ends, &mut verified, anon, t, false);
            }
            if let Some(a2) = anon2 {
                if rng.chance(50) {
                    link(&mut ends, &mut verified, a2, t, false);
                }
            }
        }
    }
    // Family devices: a device seen with two or three accounts.
    let shared = (user_ids.len() / 100).max(1);
    for _ in 0..shared {
        if user_ids.len() < 3 || kinds.len() + hubs >= identifiers {
            break;
        }
        let device = node(&mut kinds, DEVICE);
        for _ in 0..2 + rng.below(2) {
            let u = user_ids[rng.below(user_ids.len() as u64) as usize];
            link(&mut ends, &mut verified, u, device, false);
        }
    }
    // Placeholder emails and phones typed at 60 to 400 guest checkouts.
    for _ in 0..hubs {
        if guests.is_empty() || kinds.len() >= identifiers {
            break;
        }
        let hub = node(&mut kinds, if rng.chance(50) { EMAIL } else { PHONE });
        for _ in 0..60 + rng.below(340) {
            let g = guests[rng.below(guests.len() as u64) as usize];
            link(&mut ends, &mut verified, g, hub, false);
        }
    }
    // Visitors who never identified: anonymous ids without links.
    while kinds.len() < identifiers {
        node(&mut kinds, ANON);
    }
    // Up to the count: links seen again, verified (a trusted login later).
    let distinct = ends.len();
    eprintln!(
        "generator: {distinct} distinct-call links, {} repeated (verified) links added, {} accounts, {} guests, {shared} family devices, {hubs} placeholder hubs",
        links.saturating_sub(distinct),
        user_ids.len(),
        guests.len()
    );
    while ends.len() < links && distinct > 0 {
        let (a, b) = ends[rng.below(distinct as u64) as usize];
        link(&mut ends, &mut verified, a, b, true);
    }
    ends.truncate(links);
    verified.truncate(links);
    drop(user_ids);
    drop(guests);

    // Identifier ids in an order unrelated to people.
    let n = kinds.len();
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut shuffled = vec![0u8; n];
    for (i, &k) in kinds.iter().enumerate() {
        shuffled[perm[i] as usize] = k;
    }
    for e in ends.iter_mut() {
        *e = (perm[e.0 as usize], perm[e.1 as usize]);
    }
    drop(perm);
    // Links of one person are created at different times: shuffle them
    // (link id order = creation order); observed_at follows, 5 % back-dated.
    for i in (1..ends.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        ends.swap(i, j);
        verified.swap(i, j);
    }
    Generated {
        kinds: shuffled,
        ends,
        verified,
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn build_graph(rules: &CompactRules, g: Generated, seed: u64) -> CompactGraph {
    let Generated {
        kinds,
        ends,
        verified,
    } = g;
    let mut time = link_times(seed);
    let map: Vec<u8> = KIND_NAMES.iter().map(|k| rules.kind(k)).collect();
    let mut graph = CompactGraph::with_capacity(kinds.len(), ends.len());
    for (i, &k) in kinds.iter().enumerate() {
        // Every identifier has a home profile id of its own, minted with it.
        graph.push_node(map[usize::from(k)], i as u32, false);
    }
    drop(kinds);
    // Move the links over from the end of reversed vectors, shrinking them as
    // they empty, so the two copies never coexist in full.
    let (mut ends, mut verified) = (ends, verified);
    ends.reverse();
    verified.reverse();
    let mut e = 0usize;
    while let (Some((a, b)), Some(v)) = (ends.pop(), verified.pop()) {
        graph.push_edge(a, b, v, true, time(e));
        e += 1;
        if e % (1 << 20) == 0 {
            ends.shrink_to_fit();
            verified.shrink_to_fit();
        }
    }
    graph
}

fn memory(identifiers: usize, links: usize) -> anyhow::Result<()> {
    let rules = CompactRules::new(&IdentityRules::default())?;
    let started = Instant::now();
    let generated = generate(identifiers, links, 42);
    let graph = build_graph(&rules, generated, 42);
    let (n, m) = (graph.node_count(), graph.edge_count());
    let input_bytes = graph.heap_bytes();
    eprintln!(
        "generated {n} identifiers, {m} links in {:.2} s (input {:.1} B/identifier, peak RSS so far {} KB)",
        started.elapsed().as_secs_f64(),
        input_bytes as f64 / n as f64,
        peak_rss_kb()
    );
    let rss_before = peak_rss_kb();
    let started = Instant::now();
    let out = compact::resolve(&rules, graph)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut profiles = 0usize;
    let (mut shared, mut quarantined) = (0usize, 0usize);
    for i in 0..n as u32 {
        if out.group_of(i) == i {
            profiles += 1;
        }
        match out.status(i) {
            omnihub::customers::identity::resolver::NodeStatus::Shared => shared += 1,
            omnihub::customers::identity::resolver::NodeStatus::Quarantined => quarantined += 1,
            omnihub::customers::identity::resolver::NodeStatus::Member => {}
        }
    }
    let peak = peak_rss_kb();
    println!(
        "resolve: {n} identifiers, {m} links in {seconds:.2} s; {profiles} profiles, {} joins, {} refused, {shared} shared, {quarantined} quarantined",
        out.join_count(),
        out.refused.len()
    );
    println!(
        "memory: input {:.1} B/identifier, result {:.1} B/identifier; peak RSS {} KB before resolve, {} KB after = {:.1} B/identifier",
        input_bytes as f64 / n as f64,
        out.heap_bytes() as f64 / n as f64,
        rss_before,
        peak,
        peak as f64 * 1024.0 / n as f64
    );
    Ok(())
}

fn uuid_text(prefix: u32, i: u64) -> String {
    format!("{prefix:08x}-0000-7000-8000-{i:012x}")
}

const IDS: u32 = 0x0190_a000;
const HOMES: u32 = 0x0190_b000;
const LINKS: u32 = 0x0190_c000;
/// Rows per INSERT statement (≤ 200 parameters) and statements per write.
const ROWS_PER_INSERT: usize = 20;
const INSERTS_PER_WRITE: usize = 200;

enum Cell {
    Text(String),
    Int(i64),
}

/// Inserts `count` rows made by `row`, 20 per statement, 200 statements per
/// writer operation (rows are made chunk by chunk, never all at once).
async fn insert_rows(
    store: &Store,
    table: &'static str,
    columns: &'static str,
    count: usize,
    row: impl Fn(usize) -> Vec<Cell>,
) -> anyhow::Result<()> {
    let per_write = ROWS_PER_INSERT * INSERTS_PER_WRITE;
    for start in (0..count).step_by(per_write) {
        let chunk: Vec<Vec<Cell>> = (start..(start + per_write).min(count)).map(&row).collect();
        let chunk = std::sync::Arc::new(chunk);
        store
            .write(move |tx| {
                let chunk = chunk.clone();
                Box::pin(async move {
                    for rows in chunk.chunks(ROWS_PER_INSERT) {
                        let width = rows[0].len();
                        let values = (0..rows.len())
                            .map(|r| {
                                let cells = (0..width)
                                    .map(|c| format!("${}", r * width + c + 1))
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                format!("({cells})")
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        let sql = format!("INSERT INTO {table} ({columns}) VALUES {values}");
                        let mut query = sqlx::query(&sql);
                        for row in rows {
                            for cell in row {
                                query = match cell {
                                    Cell::Int(v) => query.bind(*v),
                                    Cell::Text(v) => query.bind(v.clone()),
                                };
                            }
                        }
                        query.execute(tx.conn()).await?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .await?;
    }
    Ok(())
}

async fn db(identifiers: usize, links: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("omnihub-rebuild-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let settings = Settings::for_database(&format!("sqlite://{}", dir.join("bench.db").display()));
    let store = Store::connect(&settings.store_options()).await?;
    migrate::run(&store).await?;

    // The stored state: resolved under the old rules (max_fanout 1000, so
    // the placeholder emails merged their guests); the rules in force are
    // the defaults (max_fanout 50): the rebuild must quarantine and split.
    let old_rules = IdentityRules {
        max_fanout: 1_000,
        ..IdentityRules::default()
    };
    let crules = CompactRules::new(&old_rules)?;
    let generated = generate(identifiers, links, 7);
    let kinds = generated.kinds.clone();
    let ends = generated.ends.clone();
    let verified = generated.verified.clone();
    let mut time = link_times(7);
    let times: Vec<i64> = (0..ends.len()).map(&mut time).collect();
    let old = compact::resolve(&crules, build_graph(&crules, generated, 7))?;
    let n = kinds.len();
    let started = Instant::now();
    let text = |s: String| Cell::Text(s);
    insert_rows(
        &store,
        "identifiers",
        "id, kind, value, customer_id, home_customer_id, status, verified, first_seen_at, updated_at",
        n,
        |i| {
            let k = KIND_NAMES[usize::from(kinds[i])];
            let i = i as u32;
            vec![
                text(uuid_text(IDS, u64::from(i))),
                text(k.to_string()),
                text(if k == "email" {
                    format!("p{i}@example.com")
                } else {
                    format!("{k}-{i}")
                }),
                text(uuid_text(HOMES, u64::from(old.survivor_of(i)))),
                text(uuid_text(HOMES, u64::from(i))),
                text(old.status(i).as_str().to_string()),
                Cell::Int(i64::from(old.verified(&crules, i))),
                Cell::Int(0),
                Cell::Int(0),
            ]
        },
    )
    .await?;
    let survivors: Vec<u32> = (0..n as u32)
        .filter(|&i| old.group_of(i) == i)
        .map(|i| old.survivor_of(i))
        .collect();
    insert_rows(
        &store,
        "customers",
        "id, created_at, updated_at",
        survivors.len(),
        |i| {
            vec![
                text(uuid_text(HOMES, u64::from(survivors[i]))),
                Cell::Int(0),
                Cell::Int(0),
            ]
        },
    )
    .await?;
    insert_rows(
        &store,
        "identity_links",
        "id, from_id, to_id, rule, verified, tracking_event_id, message_id, observed_at, created_at",
        ends.len(),
        |e| {
            let (a, b) = ends[e];
            vec![
                text(uuid_text(LINKS, e as u64)),
                text(uuid_text(IDS, u64::from(a))),
                text(uuid_text(IDS, u64::from(b))),
                text("anonymousId".into()),
                Cell::Int(i64::from(verified[e])),
                text("t".into()),
                text(format!("m-{e}")),
                Cell::Int(times[e]),
                Cell::Int(times[e]),
            ]
        },
    )
    .await?;
    drop(old);
    eprintln!(
        "loaded {n} identifiers, {} links into SQLite in {:.1} s",
        ends.len(),
        started.elapsed().as_secs_f64()
    );

    let progress_started = Instant::now();
    let progress = |phase: omnihub::customers::identity::rebuild::RebuildPhase, done: usize| {
        eprintln!(
            "{:>8.1} s  {}: {done}",
            progress_started.elapsed().as_secs_f64(),
            phase.as_str()
        );
    };
    for run in [
        "rebuild after the rules change",
        "rebuild again (nothing to do)",
    ] {
        let started = Instant::now();
        let report = omnihub::customers::identity::rebuild(&store, None, &progress, None).await?;
        println!(
            "{run}: {:.2} s — {report:?}",
            started.elapsed().as_secs_f64()
        );
    }
    store.close().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "memory".into());
    match mode.as_str() {
        "memory" => memory(arg(2, 10_000_000), arg(3, 16_000_000)),
        "db" => db(arg(2, 1_000_000), arg(3, 1_600_000)).await,
        other => anyhow::bail!("unknown mode {other}; use memory or db"),
    }
}
