//! The full identity rebuild: every identifier regrouped under the rules in
//! force, with the compact resolver.
//!
//! 1. **Read** (read pool, pages of [`REBUILD_PAGE`] rows in id order):
//!    identifiers (id, type, value, profile, home, status, verified), the
//!    profile rows (merged or not) and the active links. Ids are held as
//!    16-byte integers (UUIDs), profiles and types as indexes. Identifiers
//!    whose value is blocked by the rules in force are marked.
//! 2. **Resolve** the whole graph in memory ([`compact::resolve`], the same
//!    result as the production resolver on each connected part). A blocked
//!    identifier is resolved without its links and pinned quarantined (an
//!    account stays a member, alone).
//! 3. **Write only the differences**: the groups with an identifier that
//!    moves, changes status or verification, loses its links (blocked), or
//!    whose profile row is missing or marked merged. They are written in
//!    operations of the group-commit writer of at most
//!    [`REBUILD_BATCH_IDENTIFIERS`] identifiers, so tracking goes on
//!    meanwhile, with the events of an incremental regrouping
//!    (`customer.created`, `customer.merged` with its link and reason,
//!    `customer.split`, `identity.quarantined`, `identity.shared`) plus
//!    `identity.blocked`.
//!
//! Concurrency: each write re-reads the group's identifiers and the active
//! links touching them; when a tracking call or an unmerge changed them
//! since the read (a row differs, or a link is not among those read), the
//! group is regrouped from the database by the incremental path instead
//! ([`super::recompute`], as the previous rebuild did for every part). A
//! change of the rules during the rebuild stops it
//! ([`IdentityError::RulesChanged`]); what was written is consistent.

mod plan;
mod snapshot;
mod write;

use plan::plan;
use snapshot::*;
use write::write_batch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::compact::{self, CompactGraph, CompactRules};
use super::events::{self, IdentifierValue, IdentityEvent, LinkBody};
use super::resolver::NodeStatus;
use super::rules::IdentityRules;
use super::store::{self, IdentifierRow, MergeRow};
use super::{Cause, IdentityError, LinkTrust, emit_status_change, load_rules, recompute};
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, MergeId};
use crate::platform::storage::{Store, Tx};
use crate::platform::time;

/// Rows read per page while loading the graph.
pub const REBUILD_PAGE: i64 = 5_000;
/// At most this many identifiers are written per writer operation (a larger
/// group is written alone).
pub const REBUILD_BATCH_IDENTIFIERS: usize = 500;
/// Progress is reported every this many rows read or identifiers written.
pub const REBUILD_PROGRESS_EVERY: usize = 100_000;
/// `retracted_by` of the links of an identifier whose value is blocked.
pub const BLOCKED_RETRACTION: &str = "rebuild:blocked_value";

/// What a rebuild did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Identifiers read.
    pub identifiers: usize,
    /// Active links read.
    pub links: usize,
    /// Connected parts of the graph (through active links).
    pub components: usize,
    /// Profiles after the rebuild.
    pub profiles: usize,
    /// Identifiers written (moved, status or verification changed, unlinked).
    pub changed_identifiers: usize,
    pub merges: usize,
    pub splits: usize,
    /// Identifiers that became (or stopped being) shared or quarantined.
    pub status_changes: usize,
    /// Identifiers whose value is blocked by the rules and had links.
    pub blocked: usize,
    pub retracted_links: usize,
    /// Groups changed concurrently, regrouped from the database instead.
    pub rechecked_groups: usize,
    /// Writer operations.
    pub batches: usize,
    /// Time spent in the in-memory resolution.
    pub resolve_ms: u64,
}

/// Where a rebuild is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebuildPhase {
    Identifiers,
    Profiles,
    Links,
    Resolved,
    Writing,
}

impl RebuildPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RebuildPhase::Identifiers => "reading identifiers",
            RebuildPhase::Profiles => "reading profiles",
            RebuildPhase::Links => "reading links",
            RebuildPhase::Resolved => "resolved",
            RebuildPhase::Writing => "writing",
        }
    }
}

/// Progress callback: phase and rows (or identifiers) done so far.
pub type Progress<'a> = &'a (dyn Fn(RebuildPhase, usize) + Send + Sync);

/// One identifier of a group to write.
#[derive(Clone, Debug)]
struct PlannedMember {
    id: String,
    old_customer: String,
    old_status: NodeStatus,
    old_verified: bool,
    status: NodeStatus,
    verified: bool,
    blocked: bool,
}

#[derive(Clone, Debug)]
struct PlannedMerge {
    merged: String,
    side: Vec<String>,
    link: Option<String>,
    reason: &'static str,
}

/// One group (a profile after the rebuild) whose rows change.
#[derive(Clone, Debug)]
struct PlannedGroup {
    survivor: String,
    members: Vec<PlannedMember>,
    merges: Vec<PlannedMerge>,
    /// Previously active profiles now spread over several profiles.
    splits: Vec<(String, Vec<String>)>,
    /// Active links of blocked members, to retract.
    retract: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct BatchOutcome {
    changed: usize,
    merges: usize,
    splits: usize,
    status_changes: usize,
    blocked: usize,
    retracted: usize,
    rechecked: usize,
    /// Profiles that gained a merge in this batch.
    merged_into: Vec<String>,
    /// Profiles that profiles split into in this batch.
    split_into: Vec<String>,
}

/// Regroups every identifier under the rules in force (after a rules
/// change, or to repair groupings): reads the graph, resolves it in memory
/// with the compact resolver and writes only the differences, in bounded
/// operations of the group-commit writer (tracking goes on meanwhile).
/// Quarantines and shared devices are re-evaluated, and identifiers whose
/// value the rules now block lose their links (retracted, kept in the
/// ledger) and stay alone, quarantined unless they are accounts.
pub async fn rebuild(
    store: &Store,
    channel_id: Option<ChannelId>,
    progress: Progress<'_>,
    follow_up: Option<(super::FollowUps, ChannelId)>,
) -> Result<RebuildReport, IdentityError> {
    let rules = super::load_rules_from(store.reader()).await?;
    let crules = CompactRules::new(&rules)?;
    let snapshot = read_snapshot(store, &rules, &crules, progress).await?;
    let mut report = RebuildReport {
        identifiers: snapshot.ids.len(),
        links: snapshot.links.len(),
        ..Default::default()
    };

    let started = std::time::Instant::now();
    let n = snapshot.ids.len();
    let (graph, retract, components) = graph_of(&snapshot);
    report.components = components;
    // Seconds of CPU at millions of identifiers: off the async runtime, so
    // the node's requests and streams go on meanwhile.
    let resolving_rules = crules.clone();
    let resolution = tokio::task::spawn_blocking(move || compact::resolve(&resolving_rules, graph))
        .await
        .map_err(|_| {
            IdentityError::Store(crate::platform::storage::StoreError::Corrupt(
                "the identity resolution panicked".into(),
            ))
        })??;
    report.resolve_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    progress(RebuildPhase::Resolved, n);

    let batches = plan(&snapshot, &crules, &resolution, &retract, &mut report);
    drop(resolution);
    let rules = Arc::new(rules);
    let links = Arc::new(snapshot.links);
    let writes = Writes {
        store,
        rules: &rules,
        links: &links,
        channel_id,
        follow_up,
        progress,
    };
    let split_into = writes.run(batches, &mut report).await?;
    if let Some((follow, channel)) = follow_up {
        separate(store, &rules, split_into, follow, channel).await?;
    }
    Ok(report)
}

/// The follow-up of the rebuild's splits (orders and cart lines go back to
/// whom they were made for), once every group is written: a split profile's
/// parts may be written by different batches.
async fn separate(
    store: &Store,
    rules: &Arc<IdentityRules>,
    split_into: BTreeSet<String>,
    follow: super::FollowUps,
    channel: ChannelId,
) -> Result<(), IdentityError> {
    let profiles: Vec<String> = split_into.into_iter().collect();
    for chunk in profiles.chunks(REBUILD_BATCH_IDENTIFIERS) {
        let separation = super::Separation {
            merge_id: None,
            profiles: chunk.to_vec(),
            channel_id: Some(channel),
        };
        let rules = Arc::clone(rules);
        store
            .write(move |tx| {
                let (rules, separation) = (rules.clone(), separation.clone());
                Box::pin(async move {
                    let dialect = tx.dialect();
                    store::lock_identity(tx.conn(), dialect).await?;
                    (follow.separated)(tx, &rules, &separation).await?;
                    Ok::<_, IdentityError>(())
                })
            })
            .await?;
    }
    Ok(())
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let gp = parent[parent[x as usize] as usize];
        parent[x as usize] = gp;
        x = gp;
    }
    x
}

/// The compact graph of the snapshot: blocked identifiers pinned, their
/// links left out (pushed as self-links, which resolution ignores, so link
/// indexes stay aligned) and returned as (identifier, link) to retract;
/// with the count of connected parts.
fn graph_of(snapshot: &Snapshot) -> (CompactGraph, Vec<(u32, u32)>, usize) {
    let n = snapshot.ids.len();
    let mut graph = CompactGraph::with_capacity(n, snapshot.ends.len());
    for i in 0..n {
        graph.push_node(snapshot.kinds[i], snapshot.home[i], snapshot.blocked[i]);
    }
    let mut retract: Vec<(u32, u32)> = Vec::new();
    let mut components: Vec<u32> = (0..n as u32).collect();
    for (e, &(a, b)) in snapshot.ends.iter().enumerate() {
        let (trust, at) = (snapshot.link_verified[e], snapshot.link_times[e]);
        let (verified, trusted) = (trust.verified(), trust.trusted());
        if snapshot.blocked[a as usize] || snapshot.blocked[b as usize] {
            for end in [a, b] {
                if snapshot.blocked[end as usize] {
                    retract.push((end, e as u32));
                }
            }
            graph.push_edge(a, a, verified, trusted, at);
            continue;
        }
        graph.push_edge(a, b, verified, trusted, at);
        let (ra, rb) = (find(&mut components, a), find(&mut components, b));
        if ra != rb {
            components[ra.max(rb) as usize] = ra.min(rb);
        }
    }
    let count = (0..n as u32)
        .filter(|&i| find(&mut components, i) == i)
        .count();
    (graph, retract, count)
}

/// What writing the planned batches needs.
struct Writes<'a> {
    store: &'a Store,
    rules: &'a Arc<IdentityRules>,
    links: &'a Arc<IdColumn>,
    channel_id: Option<ChannelId>,
    follow_up: Option<(super::FollowUps, ChannelId)>,
    progress: Progress<'a>,
}

impl Writes<'_> {
    /// Writes each batch in one writer operation, with the same follow-ups
    /// as a live merge; returns the profiles the splits made.
    async fn run(
        &self,
        batches: Vec<Vec<PlannedGroup>>,
        report: &mut RebuildReport,
    ) -> Result<BTreeSet<String>, IdentityError> {
        let (channel_id, follow_up) = (self.channel_id, self.follow_up);
        let mut written = 0usize;
        let mut split_into: BTreeSet<String> = BTreeSet::new();
        for batch in batches {
            let size: usize = batch.iter().map(|g| g.members.len()).sum();
            let rules = Arc::clone(self.rules);
            let links = Arc::clone(self.links);
            let outcome = self
                .store
                .write(move |tx| {
                    let (batch, links, rules) = (batch.clone(), links.clone(), rules.clone());
                    Box::pin(async move {
                        let outcome = write_batch(tx, &rules, &links, batch, channel_id).await?;
                        // The same follow-ups as a live merge (the guest's
                        // carts join the customer's), in the same transaction.
                        if let Some((follow, channel)) = follow_up {
                            let context = super::MergeContext {
                                channel,
                                channel_kind: None,
                            };
                            for survivor in &outcome.merged_into {
                                (follow.merged)(tx, &rules, survivor, context).await?;
                            }
                        }
                        Ok::<_, IdentityError>(outcome)
                    })
                })
                .await?;
            report.batches += 1;
            report.changed_identifiers += outcome.changed;
            report.merges += outcome.merges;
            report.splits += outcome.splits;
            report.status_changes += outcome.status_changes;
            report.blocked += outcome.blocked;
            report.retracted_links += outcome.retracted;
            report.rechecked_groups += outcome.rechecked;
            split_into.extend(outcome.split_into);
            let before = written;
            written += size;
            if written / REBUILD_PROGRESS_EVERY > before / REBUILD_PROGRESS_EVERY {
                (self.progress)(RebuildPhase::Writing, written);
            }
        }
        Ok(split_into)
    }
}
