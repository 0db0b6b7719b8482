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

mod snapshot;

use snapshot::*;

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

    // Resolve: blocked identifiers pinned, their links left out (pushed as
    // self-links, which resolution ignores, so link indexes stay aligned).
    let started = std::time::Instant::now();
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
    report.components = (0..n as u32)
        .filter(|&i| find(&mut components, i) == i)
        .count();
    drop(components);
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
    let mut written = 0usize;
    let mut split_into: BTreeSet<String> = BTreeSet::new();
    for batch in batches {
        let size: usize = batch.iter().map(|g| g.members.len()).sum();
        let rules = Arc::clone(&rules);
        let links = Arc::clone(&links);
        let outcome = store
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
            progress(RebuildPhase::Writing, written);
        }
    }
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

/// The groups to write, in batches, with their merges and splits.
fn plan(
    snapshot: &Snapshot,
    crules: &CompactRules,
    resolution: &compact::CompactResolution,
    retract: &[(u32, u32)],
    report: &mut RebuildReport,
) -> Vec<Vec<PlannedGroup>> {
    let n = snapshot.ids.len();
    let p = snapshot.profiles.len();
    let mut has_links_to_retract = vec![false; n];
    let mut retract_of: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(node, e) in retract {
        has_links_to_retract[node as usize] = true;
        retract_of.entry(node).or_default().push(e);
    }
    let mut is_survivor = vec![false; p];
    let mut changed_group = vec![false; n];
    for i in 0..n as u32 {
        let survivor = resolution.survivor_of(i);
        let root = resolution.group_of(i);
        if root == i {
            report.profiles += 1;
            is_survivor[survivor as usize] = true;
            if !snapshot.profile_active[survivor as usize] {
                changed_group[i as usize] = true;
            }
        }
        let x = i as usize;
        if snapshot.customer[x] != survivor
            || snapshot.status[x] != resolution.status(i)
            || snapshot.verified[x] != resolution.verified(crules, i)
            || has_links_to_retract[x]
        {
            changed_group[root as usize] = true;
        }
    }
    // Splits: previously active profiles whose identifiers now sit in
    // several profiles.
    let mut first_new = vec![u32::MAX; p];
    let mut split = vec![false; p];
    for i in 0..n as u32 {
        let c = snapshot.customer[i as usize] as usize;
        if !snapshot.profile_active[c] {
            continue;
        }
        let s = resolution.survivor_of(i);
        if first_new[c] == u32::MAX {
            first_new[c] = s;
        } else if first_new[c] != s {
            split[c] = true;
        }
    }
    drop(first_new);
    let mut split_into: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for i in 0..n as u32 {
        let c = snapshot.customer[i as usize];
        if split[c as usize] {
            split_into
                .entry(c)
                .or_default()
                .insert(resolution.survivor_of(i));
        }
    }

    // Members of the changed groups, group by group (roots ascending).
    let mut members: Vec<(u32, u32)> = (0..n as u32)
        .filter(|&i| changed_group[resolution.group_of(i) as usize])
        .map(|i| (resolution.group_of(i), i))
        .collect();
    members.sort_by_key(|&(root, _)| root);
    drop(changed_group);

    // Merges: per (group, previous active profile that survives nowhere),
    // the first applied link with exactly one end on that side.
    let mut merge_links: HashMap<(u32, u32), Option<(u32, &'static str)>> = HashMap::new();
    for &(root, i) in &members {
        let c = snapshot.customer[i as usize];
        if c != resolution.survivor_of(i)
            && snapshot.profile_active[c as usize]
            && !is_survivor[c as usize]
        {
            merge_links.insert((root, c), None);
        }
    }
    if !merge_links.is_empty() {
        for (e, reason) in resolution.joins() {
            let (a, b) = resolution.edge(e);
            let (ca, cb) = (snapshot.customer[a as usize], snapshot.customer[b as usize]);
            if ca == cb {
                continue;
            }
            let root = resolution.group_of(a);
            for c in [ca, cb] {
                if let Some(slot @ None) = merge_links.get_mut(&(root, c)) {
                    *slot = Some((e, reason.as_str()));
                }
            }
        }
    }

    let mut batches: Vec<Vec<PlannedGroup>> = Vec::new();
    let mut batch: Vec<PlannedGroup> = Vec::new();
    let mut batch_size = 0usize;
    let mut splits_done: BTreeSet<u32> = BTreeSet::new();
    let profile = |r: u32| snapshot.profiles.get(r);
    for run in members.chunk_by(|x, y| x.0 == y.0) {
        let root = run[0].0;
        let survivor = resolution.survivor_of(root);
        let mut group = PlannedGroup {
            survivor: profile(survivor),
            members: Vec::with_capacity(run.len()),
            merges: Vec::new(),
            splits: Vec::new(),
            retract: Vec::new(),
        };
        let mut sides: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for &(_, i) in run {
            let x = i as usize;
            let id = snapshot.ids.get(i);
            let c = snapshot.customer[x];
            if merge_links.contains_key(&(root, c)) {
                sides.entry(c).or_default().push(id.clone());
            }
            if split[c as usize] && splits_done.insert(c) {
                let into = split_into
                    .get(&c)
                    .map(|s| s.iter().map(|&r| profile(r)).collect())
                    .unwrap_or_default();
                group.splits.push((profile(c), into));
            }
            if let Some(edges) = retract_of.get(&i) {
                group
                    .retract
                    .extend(edges.iter().map(|&e| snapshot.links.get(e)));
            }
            group.members.push(PlannedMember {
                id,
                old_customer: profile(c),
                old_status: snapshot.status[x],
                old_verified: snapshot.verified[x],
                status: resolution.status(i),
                verified: resolution.verified(crules, i),
                blocked: has_links_to_retract[x],
            });
        }
        for (c, side) in sides {
            let (link, reason) = match merge_links.get(&(root, c)).copied().flatten() {
                Some((e, reason)) => (Some(snapshot.links.get(e)), reason),
                None => (None, "regrouped"),
            };
            group.merges.push(PlannedMerge {
                merged: profile(c),
                side,
                link,
                reason,
            });
        }
        if batch_size > 0 && batch_size + group.members.len() > REBUILD_BATCH_IDENTIFIERS {
            batches.push(std::mem::take(&mut batch));
            batch_size = 0;
        }
        batch_size += group.members.len();
        batch.push(group);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Writes one batch of groups (one writer operation).
async fn write_batch(
    tx: &mut Tx,
    rules: &IdentityRules,
    links: &IdColumn,
    batch: Vec<PlannedGroup>,
    channel_id: Option<ChannelId>,
) -> Result<BatchOutcome, IdentityError> {
    let dialect = tx.dialect();
    store::lock_identity(tx.conn(), dialect).await?;
    if load_rules(tx.conn()).await? != *rules {
        return Err(IdentityError::RulesChanged);
    }
    let mut outcome = BatchOutcome::default();
    for group in batch {
        write_group(tx, rules, links, group, channel_id, &mut outcome).await?;
    }
    Ok(outcome)
}

async fn write_group(
    tx: &mut Tx,
    rules: &IdentityRules,
    links: &IdColumn,
    group: PlannedGroup,
    channel_id: Option<ChannelId>,
    outcome: &mut BatchOutcome,
) -> Result<(), IdentityError> {
    let cause = Cause::Rebuild { channel_id };
    let now = tx.now();
    let ids: Vec<String> = group.members.iter().map(|m| m.id.clone()).collect();
    let rows: BTreeMap<String, IdentifierRow> = store::identifiers_by_ids(tx.conn(), &ids)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    // Changed since the read (a tracking call, an unmerge)? Then regroup
    // this part from the database instead.
    let unchanged = rows.len() == group.members.len()
        && group.members.iter().all(|m| {
            rows.get(&m.id).is_some_and(|r| {
                r.customer_id == m.old_customer
                    && r.status == m.old_status
                    && r.verified == m.old_verified
            })
        })
        && store::active_links_touching(tx.conn(), &ids)
            .await?
            .iter()
            .all(|l| links.contains(&l.id));
    if !unchanged {
        let out = recompute(tx, rules, &ids, &cause).await?;
        outcome.rechecked += 1;
        outcome.merges += out.merges.len();
        outcome.split_into.extend(out.split_into.iter().cloned());
        if !out.merges.is_empty() {
            let survivors = out.resolution.groups.iter().map(|g| g.survivor.clone());
            outcome.merged_into.extend(survivors);
        }
        return Ok(());
    }
    if !group.retract.is_empty() {
        store::retract_links(tx.conn(), &group.retract, BLOCKED_RETRACTION, now).await?;
        outcome.retracted += group.retract.len();
    }
    let survivor = &group.survivor;
    let created = super::activate_profile(tx, survivor).await?;
    let channel = cause.channel();
    for m in &group.members {
        let Some(row) = rows.get(&m.id) else { continue };
        if row.customer_id != *survivor || row.status != m.status || row.verified != m.verified {
            store::update_identifier(tx.conn(), &m.id, survivor, m.status, m.verified, now).await?;
            outcome.changed += 1;
        }
        if row.status != m.status {
            outcome.status_changes += 1;
            if m.status != NodeStatus::Member {
                emit_status_change(tx, row, m.status, survivor, channel, &cause);
            }
        }
        if m.blocked {
            outcome.blocked += 1;
            tx.emit(
                NewEvent::of(
                    &IdentityEvent::Blocked(events::IdentifierBlocked {
                        identifier: IdentifierValue::of(row),
                        customer_id: survivor.clone(),
                        status: m.status.as_str(),
                        retracted_links: group.retract.clone(),
                        cause: cause.describe(),
                    }),
                    now,
                )
                .channel(channel)
                .subject("customer_id", survivor),
            );
        }
    }
    if created {
        tx.emit(
            NewEvent::of(
                &IdentityEvent::CustomerCreated(events::CustomerCreated {
                    customer_id: survivor.clone(),
                    identifiers: group
                        .members
                        .iter()
                        .filter_map(|m| rows.get(&m.id))
                        .map(IdentifierValue::of)
                        .collect(),
                    cause: cause.describe(),
                }),
                now,
            )
            .channel(channel)
            .subject("customer_id", survivor),
        );
    }
    if !group.merges.is_empty() {
        outcome.merged_into.push(survivor.clone());
    }
    for merge in group.merges {
        let record = MergeRow {
            id: MergeId::new().to_string(),
            survivor_id: survivor.clone(),
            merged_id: merge.merged.clone(),
            link_id: merge.link.clone(),
            reason: merge.reason.to_string(),
            merged_side: merge.side,
            created_at: time::to_micros(now),
            undone_at: None,
            undone_by: None,
        };
        store::insert_merge(tx.conn(), &record).await?;
        store::set_merged_into(tx.conn(), &merge.merged, Some(survivor), now).await?;
        let link = match &merge.link {
            Some(id) => store::get_link(&mut *tx.conn(), id).await?,
            None => None,
        };
        tx.emit(
            NewEvent::of(
                &IdentityEvent::CustomerMerged(events::CustomerMerged {
                    merge_id: record.id.clone(),
                    customer_id: survivor.clone(),
                    merged_customer_id: merge.merged.clone(),
                    reason: merge.reason.to_string(),
                    link: link.as_ref().map(|l| LinkBody::of(l, &rows)),
                    cause: cause.describe(),
                }),
                now,
            )
            .channel(channel)
            .subject("customer_id", survivor)
            .subject("merged_customer_id", &merge.merged),
        );
        outcome.merges += 1;
    }
    for (old, into) in group.splits {
        outcome.split_into.extend(into.iter().cloned());
        tx.emit(
            NewEvent::of(
                &IdentityEvent::CustomerSplit(events::CustomerSplit {
                    customer_id: old.clone(),
                    into,
                    reason: "regrouped under the rules in force",
                    cause: cause.describe(),
                }),
                now,
            )
            .channel(channel)
            .subject("customer_id", &old),
        );
        outcome.splits += 1;
    }
    Ok(())
}
