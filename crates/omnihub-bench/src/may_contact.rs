//! `may_contact` from memory: checks per second on one thread against a
//! node's consent view holding `--people` people, each with a few decisions
//! (grants, denials, a pending double opt-in, a decision replaced later).
//!
//! The view is the hub's own (`engagement::consent::view::ConsentView`),
//! detached from a database and filled through its public API; every check
//! is a lookup by profile id and the decision in force at a moment, as the
//! HTTP endpoint and a sender ask it.

use std::time::Instant;

use omnihub::engagement::consent::view::{Asked, ConsentView, PersonConsent};
use omnihub::engagement::consent::{ConsentState, ContactChannel, Method, Purpose, Record};
use serde_json::Map;

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// People held by the view.
    #[arg(long, default_value_t = 100_000)]
    people: usize,
    /// Checks to time.
    #[arg(long, default_value_t = 10_000_000)]
    checks: usize,
}

fn record(
    id: usize,
    purpose: Purpose,
    channel: ContactChannel,
    state: ConsentState,
    at: i64,
) -> Record {
    Record {
        id: format!("0190a000-0000-7000-8000-{id:012}"),
        anchor_kind: "profile".into(),
        anchor_id: String::new(),
        purpose,
        channel,
        state,
        decided_at: at,
        recorded_at: at,
        method: Method::Checkbox,
        source_channel_id: String::new(),
        source_key_id: None,
        notice_id: None,
        notice_version: None,
        language: None,
        user_agent: None,
        ip: None,
        detail: Map::new(),
    }
}

/// A person's ledger: five records over four cells.
fn ledger(n: usize) -> Vec<Record> {
    let t = 1_760_000_000_000_000i64;
    vec![
        record(
            n * 8,
            Purpose::Marketing,
            ContactChannel::Email,
            ConsentState::Granted,
            t,
        ),
        record(
            n * 8 + 1,
            Purpose::Marketing,
            ContactChannel::Sms,
            ConsentState::Denied,
            t,
        ),
        record(
            n * 8 + 2,
            Purpose::Advertising,
            ContactChannel::Ads,
            ConsentState::Granted,
            t,
        ),
        record(
            n * 8 + 3,
            Purpose::Advertising,
            ContactChannel::Ads,
            ConsentState::Denied,
            t + 1_000_000,
        ),
        record(
            n * 8 + 4,
            Purpose::Marketing,
            ContactChannel::Push,
            ConsentState::Pending,
            t,
        ),
    ]
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let view = ConsentView::detached();
    let ids: Vec<String> = (0..options.people)
        .map(|n| format!("0190b000-0000-7000-8000-{n:012}"))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        view.remember(id, PersonConsent::of(&ledger(n), false));
    }
    let asks = [
        (Asked::Consent(Purpose::Marketing), ContactChannel::Email),
        (Asked::Consent(Purpose::Marketing), ContactChannel::Sms),
        (Asked::Consent(Purpose::Advertising), ContactChannel::Ads),
        (Asked::Consent(Purpose::Analytics), ContactChannel::Email),
        (Asked::Transactional, ContactChannel::Sms),
    ];
    let checks = options.checks;
    // One thread: the figure is per core.
    let (allowed, seconds, cpu) = std::thread::spawn(move || {
        let at = 1_770_000_000_000_000i64;
        let cpu_before = crate::profile::cpu_seconds();
        let started = Instant::now();
        let mut allowed = 0usize;
        for i in 0..checks {
            let (asked, channel) = asks[i % asks.len()];
            let id = &ids[(i.wrapping_mul(7919)) % ids.len()];
            if let Some(decision) = view.check(id, asked, channel, at) {
                allowed += usize::from(decision.allowed);
            }
        }
        (
            allowed,
            started.elapsed().as_secs_f64(),
            crate::profile::cpu_seconds() - cpu_before,
        )
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the checking thread panicked"))?;
    println!("people held:        {}", options.people);
    println!("checks:             {checks} ({allowed} allowed)");
    println!("wall time:          {seconds:.3} s");
    println!("process CPU time:   {cpu:.3} s");
    println!("checks per second:  {:.0} (wall)", checks as f64 / seconds);
    println!(
        "per check:          {:.0} ns (wall)",
        seconds * 1e9 / checks as f64
    );
    Ok(())
}
