//! `omnihub-bench`: benchmarks of the omnihub foundation.
//!
//! These are measurements, not tests: they print figures and never fail on a
//! number. `docs/benchmarks.md` records the results with the exact commands.
//!
//! * `bare-server`: a bare axum handler, the baseline that the authenticated
//!   read of the hub is compared with (`bench/auth-read.sh` drives both with wrk).
//! * `live-availability`: POS sale → another client's live stream, on one node.
//! * `cart-sync`: cart change on one `omnihub` process → another client's live
//!   stream on a second process sharing one PostgreSQL database.
//! * `webhook-throughput`: outbox-to-webhook delivery on SQLite, from the first
//!   event written to the last one received by a local endpoint.
//! * `profile-read`: the 360° view of a profile with many calls (materialized
//!   traits against the fold of every call) and the trait upsert's cost.
//! * `stream-catch-up`: a live stream whose filter matches nothing, opened at
//!   the start of a large feed.
//! * `may-contact`: consent checks per second from a node's memory, one thread.

mod bare;
mod cart_sync;
mod catch_up;
mod live;
mod may_contact;
mod privacy;
mod profile;
mod sse;
mod webhooks;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "omnihub-bench", about = "Benchmarks of the omnihub foundation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `GET /v1/channels/{id}` from a bare axum handler (no auth, no
    /// database, no middleware) until Ctrl-C or SIGTERM.
    BareServer {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
    /// Measure outbox-to-webhook delivery on SQLite with an in-process hub and
    /// a local receiver.
    WebhookThroughput(webhooks::Options),
    /// Measure how long a POS sale takes to reach another client's open live
    /// stream on one node (SQLite).
    LiveAvailability(live::Options),
    /// Measure how long a cart change made on one `omnihub serve` process
    /// takes to reach a live stream open on another (PostgreSQL).
    CartSync(cart_sync::Options),
    /// Measure the 360° view of a profile with many calls, and the cost of
    /// the trait upsert at ingest (SQLite).
    ProfileRead(profile::Options),
    /// Measure the catch-up of a live stream whose filter matches nothing,
    /// opened at the start of a large feed (SQLite).
    StreamCatchUp(catch_up::Options),
    /// Measure an access export and an erasure of a person with a long
    /// history, and what the erasure costs a concurrent writer (SQLite).
    Privacy(privacy::Options),
    /// Measure `may_contact` checks per second from a node's consent view,
    /// on one thread.
    MayContact(may_contact::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::BareServer { listen } => bare::serve(listen).await,
            Command::WebhookThroughput(options) => webhooks::run(options).await,
            Command::LiveAvailability(options) => live::run(options).await,
            Command::CartSync(options) => cart_sync::run(options).await,
            Command::ProfileRead(options) => profile::run(options).await,
            Command::StreamCatchUp(options) => catch_up::run(options).await,
            Command::Privacy(options) => privacy::run(options).await,
            Command::MayContact(options) => may_contact::run(options).await,
        }
    })
}
