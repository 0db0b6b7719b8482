//! `may_contact` from memory: the node's view of each person's consent
//! ledger and suppression flag, kept current by the event tail.
//!
//! * A person is loaded on first use (their records over every anchor, and
//!   their preferences' suppression flag) and kept under their surviving
//!   profile id.
//! * Every event that may change what a person's answer is drops them:
//!   `consent.*` and `preferences.*` (the person), and the identity changes
//!   that move anchors between people (`customer.merged`, `customer.split`,
//!   `customer.unmerged`, `identity.blocked`/`quarantined`/`shared`: every
//!   profile they name). The next check loads them again.
//! * Several hub processes on one database: each follows the others' commits
//!   through its tail (PostgreSQL `NOTIFY`, else the tail's 200 ms poll), so a
//!   node answers from a decision at most that old; on the node that wrote
//!   it, [`ConsentView::sync`] waits for it (read-your-writes).
//! * A load that raced with an invalidation answers but is not kept.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CELLS, ConsentState, ContactChannel, Purpose, Record, cell};
use crate::platform::events::tail::{Tail, TailRead};
use crate::platform::events::{Event, TypeFilter};
use crate::platform::storage::{Store, StoreError};

/// Longest wait for the view to catch up with this node's writes.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// People kept; past this the view starts over (they load again on use).
pub const MAX_CACHED_PERSONS: usize = 1_000_000;

/// What a message is for: a consent purpose, or a transactional message
/// (an order confirmation), which needs no consent but respects suppression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    Consent(Purpose),
    Transactional,
}

/// Why a contact is allowed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The latest decision is a grant.
    Granted,
    /// The latest decision is a denial.
    Denied,
    /// Granted, but the double opt-in is not confirmed yet.
    PendingConfirmation,
    /// No decision recorded (unknown is not granted).
    NoDecision,
    /// The person is suppressed: no message at all.
    Suppressed,
    /// A transactional message: not consent-based.
    Transactional,
}

/// The answer of `may_contact`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
    /// The ledger record the answer rests on.
    pub evidence_id: Option<Uuid>,
}

/// A decision as the view holds it: plain values, no pointer to follow.
#[derive(Clone, Copy, Debug)]
struct Entry {
    decided_at: i64,
    priority: i64,
    record_id: Uuid,
    state: ConsentState,
}

/// One person's decisions over time, per purpose × channel, and their
/// suppression flag. One allocation per person: the entries of every cell
/// in one slice, cell by cell (a check touches the map's slot and this
/// slice, and little else).
#[derive(Clone, Debug)]
pub struct PersonConsent {
    /// The entries of cell `c` are `entries[starts[c]..starts[c + 1]]`,
    /// in the order they rank (oldest first).
    starts: [u32; CELLS + 1],
    entries: Box<[Entry]>,
    suppressed: bool,
}

impl PersonConsent {
    /// The person of `records` (any order).
    pub fn of(records: &[Record], suppressed: bool) -> PersonConsent {
        let mut entries: Vec<(usize, Entry)> = records
            .iter()
            .map(|r| {
                let entry = Entry {
                    decided_at: r.decided_at,
                    priority: r.state.priority(),
                    record_id: r.id.parse().unwrap_or_default(),
                    state: r.state,
                };
                (cell(r.purpose, r.channel), entry)
            })
            .collect();
        entries.sort_by_key(|(c, e)| (*c, e.decided_at, e.priority, e.record_id));
        let mut starts = [0u32; CELLS + 1];
        for (c, _) in &entries {
            starts[c + 1] += 1;
        }
        for c in 0..CELLS {
            starts[c + 1] += starts[c];
        }
        PersonConsent {
            starts,
            entries: entries.into_iter().map(|(_, e)| e).collect(),
            suppressed,
        }
    }

    /// May this person be contacted for `asked` on `channel` at `at` (unix
    /// microseconds)? The decision in force then: the latest one decided
    /// at or before `at`.
    pub fn decide(&self, asked: Asked, channel: ContactChannel, at: i64) -> Decision {
        if self.suppressed {
            return Decision {
                allowed: false,
                reason: Reason::Suppressed,
                evidence_id: None,
            };
        }
        let purpose = match asked {
            Asked::Transactional => {
                return Decision {
                    allowed: true,
                    reason: Reason::Transactional,
                    evidence_id: None,
                };
            }
            Asked::Consent(purpose) => purpose,
        };
        let c = cell(purpose, channel);
        let entries = &self.entries[self.starts[c] as usize..self.starts[c + 1] as usize];
        let in_force = entries.partition_point(|e| e.decided_at <= at);
        let Some(entry) = in_force.checked_sub(1).map(|i| &entries[i]) else {
            return Decision {
                allowed: false,
                reason: Reason::NoDecision,
                evidence_id: None,
            };
        };
        let (allowed, reason) = match entry.state {
            ConsentState::Granted => (true, Reason::Granted),
            ConsentState::Denied => (false, Reason::Denied),
            ConsentState::Pending => (false, Reason::PendingConfirmation),
        };
        Decision {
            allowed,
            reason,
            evidence_id: Some(entry.record_id),
        }
    }
}

/// Profile ids are UUIDs (v7: the low bits are random), so the map hashes
/// them with a multiply, not SipHash over 36 characters.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, value: u128) {
        let folded = (value as u64) ^ ((value >> 64) as u64);
        self.0 = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Persons = HashMap<u128, PersonConsent, BuildHasherDefault<IdHasher>>;

pub struct ConsentView {
    store: Option<Store>,
    persons: RwLock<Persons>,
    /// Bumped by every invalidation: a load that saw it move is not kept.
    generation: AtomicU64,
    applied: watch::Sender<i64>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn relevant() -> TypeFilter {
    TypeFilter::parse(
        "consent.*,preferences.*,customer.merged,customer.split,customer.unmerged,\
         identity.blocked,identity.quarantined,identity.shared",
    )
    .unwrap_or_default()
}

/// Every profile id an event names (subjects and payload members).
fn profiles_named(event: &Event) -> Vec<String> {
    let mut ids: Vec<String> = event
        .subjects
        .get("customer_id")
        .into_iter()
        .cloned()
        .collect();
    let p = &event.payload;
    for field in ["customer_id", "merged_customer_id", "unmerged_customer_id"] {
        if let Some(id) = p[field].as_str() {
            ids.push(id.to_string());
        }
    }
    for field in ["into", "customer_ids"] {
        if let Some(list) = p[field].as_array() {
            ids.extend(list.iter().filter_map(|v| v.as_str()).map(str::to_string));
        }
    }
    if let Some(profiles) = p["profiles"].as_object() {
        ids.extend(profiles.keys().cloned());
    }
    ids
}

impl ConsentView {
    /// Creates the view and starts following the tail.
    pub fn start(store: Store, tail: Tail, shutdown: CancellationToken) -> Arc<ConsentView> {
        let (applied, _) = watch::channel(tail.head());
        let view = Arc::new(ConsentView {
            store: Some(store),
            persons: RwLock::default(),
            generation: AtomicU64::new(0),
            applied,
        });
        let follower = view.clone();
        tokio::spawn(async move { follower.follow(tail, shutdown).await });
        view
    }

    /// A view with no database behind it, holding only what
    /// [`ConsentView::remember`] gives it (benchmarks, tools).
    pub fn detached() -> ConsentView {
        ConsentView {
            store: None,
            persons: RwLock::default(),
            generation: AtomicU64::new(0),
            applied: watch::channel(0).0,
        }
    }

    /// Holds `person` under profile `customer_id` (a UUID; anything else is
    /// not held).
    pub fn remember(&self, customer_id: &str, person: PersonConsent) {
        let Ok(id) = customer_id.parse::<Uuid>() else {
            return;
        };
        let mut persons = write(&self.persons);
        if persons.len() >= MAX_CACHED_PERSONS {
            persons.clear();
        }
        persons.insert(id.as_u128(), person);
    }

    /// The answer from memory alone, for a surviving profile id; `None`
    /// when the person is not loaded.
    pub fn check(
        &self,
        customer_id: &str,
        asked: Asked,
        channel: ContactChannel,
        at: i64,
    ) -> Option<Decision> {
        let id = customer_id.parse::<Uuid>().ok()?;
        read(&self.persons)
            .get(&id.as_u128())
            .map(|person| person.decide(asked, channel, at))
    }

    /// The answer for the person `id` (any profile id ever issued) and their
    /// surviving profile id, loading them on first use; `None` for an id
    /// that was never a profile.
    pub async fn may_contact(
        &self,
        id: &str,
        asked: Asked,
        channel: ContactChannel,
        at: i64,
    ) -> Result<Option<(String, Decision)>, StoreError> {
        if let Some(decision) = self.check(id, asked, channel, at) {
            return Ok(Some((id.to_string(), decision)));
        }
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let generation = self.generation.load(Ordering::Acquire);
        let mut conn = store.reader().acquire().await?;
        let Some(person) = super::person(&mut conn, id).await? else {
            return Ok(None);
        };
        if let Some(decision) = self.check(&person.customer_id, asked, channel, at) {
            return Ok(Some((person.customer_id, decision)));
        }
        let records = super::store::records_of(&mut conn, &person.anchors(), i64::MAX).await?;
        let suppressed = crate::engagement::preferences::of_person(&mut conn, &person.customer_ids)
            .await?
            .is_some_and(|(p, _)| p.suppressed);
        let loaded = PersonConsent::of(&records, suppressed);
        let decision = loaded.decide(asked, channel, at);
        if self.generation.load(Ordering::Acquire) == generation {
            self.remember(&person.customer_id, loaded);
        }
        Ok(Some((person.customer_id, decision)))
    }

    /// Waits until the view includes every write this node acknowledged.
    pub async fn sync(&self) {
        let Some(store) = &self.store else { return };
        let target = store.committed_position();
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(SYNC_TIMEOUT, applied.wait_for(|p| *p >= target)).await;
    }

    fn forget(&self, ids: &[String]) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut persons = write(&self.persons);
        for id in ids.iter().filter_map(|id| id.parse::<Uuid>().ok()) {
            persons.remove(&id.as_u128());
        }
    }

    async fn follow(self: Arc<Self>, tail: Tail, shutdown: CancellationToken) {
        let filter = relevant();
        let mut head = tail.subscribe();
        let mut cursor = *self.applied.borrow();
        loop {
            head.borrow_and_update();
            match tail.read_after(cursor, &filter, 1024) {
                TailRead::Events(events, next) => {
                    let named: Vec<String> =
                        events.iter().flat_map(|e| profiles_named(e)).collect();
                    if !named.is_empty() {
                        self.forget(&named);
                    }
                    let idle = next == cursor;
                    cursor = next;
                    self.applied.send_replace(cursor);
                    if idle {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            changed = head.changed() => if changed.is_err() { return },
                        }
                    }
                }
                TailRead::Behind { .. } => {
                    // Fell out of the tail's memory: forget everyone.
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    write(&self.persons).clear();
                    cursor = tail.head();
                    self.applied.send_replace(cursor);
                }
            }
        }
    }
}
