//! The compact resolver: the same grouping as [`resolver::resolve`], for the
//! whole identifier graph at once, in a few bytes per identifier.
//!
//! [`resolver::resolve`] works on `String` ids in `BTreeMap`s (≈ 1 KB per
//! identifier); it is the reference, used for every incremental regrouping.
//! This module gives *exactly* the same groups, survivors, statuses,
//! verification flags, joins and refusals (a property test compares both on
//! random graphs and rules) with flat arrays:
//!
//! * identifiers are `u32` indexes **in id order** (the caller pushes them
//!   sorted by id), their types `u8` indexes into [`CompactRules`] (every type
//!   the rules do not name shares one "unknown" index: such types have no
//!   limit and the lowest priority, so they behave alike), their home
//!   profile ids `u32` ranks (smaller rank = smaller id);
//! * links are `[u32; 2]` (the verified flag in the top bit of the first
//!   end, "asserted by a public key" in the top bit of the second) plus their time,
//!   pushed **in link id order**; they are sorted once by the resolver's
//!   precedence (verified first, type priority, time, id) with a counting
//!   sort on (verified, priority) and a stable sort by time inside each
//!   bucket, then the times are dropped;
//! * fan-out and shared-device checks count raw degrees first and build an
//!   adjacency list only for the few candidates (non-accounts above
//!   `max_fanout` links, devices with two links to identifiers that may name
//!   people); a device the per-type rule leaves undecided counts its persons
//!   with a union-find over the strong links between person identifiers
//!   (4 bytes per identifier, built only when such a device exists) and its
//!   own links of one call (same time). The statuses are decided before the
//!   links' sort order is allocated, while the times are still held;
//! * union-find with path halving, whose root is always the smallest member
//!   index — as in the resolver, where the order of neighbouring groups of an
//!   unverified email is the order of their roots; per-group per-type counters
//!   (`u16`) live in a pool of records allocated only for groups of two or
//!   more identifiers (a single identifier's counts are its type) and
//!   recycled when groups merge.
//!
//! Memory: 14 bytes per identifier (type, flags, parent, home rank, counter
//! record) plus 12 bytes per link (endpoints and the sorted order) after the
//! sort (8 more per link while sorting), plus the joins (4 bytes each, at most
//! one per identifier). See `docs/benchmarks-identity.md`.

use std::collections::BTreeMap;

use super::resolver::{
    self, EdgeInput, Group, JoinReason, NodeInput, NodeStatus, Refusal, Resolution,
};
use super::rules::{IdentifierClass, IdentityRules};

mod resolve;
mod statuses;
#[cfg(test)]
mod tests;

pub use resolve::resolve;

/// Most identifiers one compact resolution takes (indexes are `u32`, the top
/// bit of a link's first end is its verified flag).
pub const MAX_NODES: usize = (1 << 31) - 1;
/// Most links (a join packs the link index with its reason in a `u32`).
pub const MAX_EDGES: usize = (1 << 30) - 1;
/// Most identifier types in the rules (type indexes are `u8`, one is "unknown").
pub const MAX_TYPES: usize = 254;
/// Largest finite per-profile limit (group counters are `u16`). Stored rules
/// allow at most [`super::rules::MAX_PER_PROFILE_LIMIT`].
pub const MAX_COUNTED_LIMIT: usize = u16::MAX as usize - 1;

const VERIFIED_BIT: u32 = 1 << 31;
/// In the second end of a link: a public key's claim (not trusted).
const CLAIM_BIT: u32 = 1 << 31;
const NODE_MASK: u32 = !VERIFIED_BIT;
const NONE: u32 = u32::MAX;
/// While survivors are chosen: the group's rank so far is a device's.
const DEVICES_ONLY: u32 = 1 << 31;
const NO_SLOT: u8 = u8::MAX;

// Per-identifier flags.
const F_VERIFIED: u8 = 1;
const F_PINNED: u8 = 2;
/// On a root: the group holds an account.
const F_ACCOUNT: u8 = 4;
const F_UNIQUE_ONE: u8 = 8;
const F_UNIQUE_TWO: u8 = 16;
const F_CANDIDATE: u8 = 32;
const F_SHARED: u8 = 64;
const F_QUARANTINED: u8 = 128;

const REASON_SHIFT: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    #[error("more than {MAX_NODES} identifiers")]
    TooManyNodes,
    #[error("more than {MAX_EDGES} links")]
    TooManyEdges,
    #[error("more than {MAX_TYPES} identifier types")]
    TooManyTypes,
    #[error("type {0}: a per-profile limit above {MAX_COUNTED_LIMIT}")]
    LimitTooLarge(String),
    #[error("a link names identifier {0}, which was not pushed")]
    UnknownNode(u32),
    #[error("home rank {0} is reserved")]
    BadHome(u32),
}

#[derive(Clone, Copy, Debug)]
struct KindInfo {
    class: IdentifierClass,
    priority: u8,
    /// Per-profile limit when counted.
    limit: u16,
    /// Counter slot, or `NO_SLOT` when the type has no limit.
    slot: u8,
    /// Limit 1: two values never share a profile.
    unique: bool,
}

/// The rules, indexed by type: built once per resolution.
#[derive(Clone, Debug)]
pub struct CompactRules {
    names: Vec<String>,
    info: Vec<KindInfo>,
    /// Counted types, in the order of their names (the resolver checks
    /// limits in that order and reports the first one exceeded).
    by_name: Vec<u8>,
    slots: usize,
    max_fanout: usize,
    limits: Vec<usize>,
    /// Some type has a limit of 0 (not accepted by stored rules): a single
    /// identifier of that type already breaks it.
    zero_limit: bool,
}

impl CompactRules {
    pub fn new(rules: &IdentityRules) -> Result<CompactRules, CompactError> {
        let mut names: Vec<String> = Vec::new();
        for t in &rules.types {
            if !names.contains(&t.kind) {
                names.push(t.kind.clone());
            }
        }
        if rules.types.len() > MAX_TYPES {
            return Err(CompactError::TooManyTypes);
        }
        let mut info = Vec::with_capacity(names.len() + 1);
        let mut limits = Vec::with_capacity(names.len() + 1);
        let mut slots = 0usize;
        for name in &names {
            let limit = rules.max_per_profile(name);
            let slot = if limit == usize::MAX {
                NO_SLOT
            } else if limit > MAX_COUNTED_LIMIT {
                return Err(CompactError::LimitTooLarge(name.clone()));
            } else {
                slots += 1;
                u8::try_from(slots - 1).map_err(|_| CompactError::TooManyTypes)?
            };
            info.push(KindInfo {
                class: rules.class(name),
                priority: u8::try_from(rules.priority(name))
                    .map_err(|_| CompactError::TooManyTypes)?,
                limit: u16::try_from(limit.min(MAX_COUNTED_LIMIT)).unwrap_or(u16::MAX),
                slot,
                unique: limit == 1,
            });
            limits.push(limit);
        }
        // Every type the rules do not name: class other, lowest priority, no limit.
        info.push(KindInfo {
            class: IdentifierClass::Other,
            priority: u8::try_from(rules.types.len().min(usize::from(u8::MAX))).unwrap_or(u8::MAX),
            limit: u16::MAX,
            slot: NO_SLOT,
            unique: false,
        });
        limits.push(usize::MAX);
        let mut by_name: Vec<u8> = (0..names.len())
            .filter(|&k| info[k].slot != NO_SLOT)
            .filter_map(|k| u8::try_from(k).ok())
            .collect();
        by_name.sort_by(|a, b| names[usize::from(*a)].cmp(&names[usize::from(*b)]));
        let zero_limit = limits.contains(&0);
        Ok(CompactRules {
            names,
            info,
            by_name,
            slots,
            max_fanout: rules.max_fanout,
            limits,
            zero_limit,
        })
    }

    /// The index of a type (types the rules do not name share one index).
    pub fn kind(&self, name: &str) -> u8 {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or(self.names.len());
        u8::try_from(i).unwrap_or(u8::MAX)
    }

    /// The name of a type index; `None` for the "unknown" index.
    pub fn kind_name(&self, kind: u8) -> Option<&str> {
        self.names.get(usize::from(kind)).map(String::as_str)
    }

    /// The per-profile limit of a type index, as the resolver reports it.
    pub fn limit(&self, kind: u8) -> usize {
        self.limits
            .get(usize::from(kind))
            .copied()
            .unwrap_or(usize::MAX)
    }

    fn info(&self, kind: u8) -> &KindInfo {
        let last = self.info.len() - 1;
        &self.info[usize::from(kind).min(last)]
    }

    fn priorities(&self) -> usize {
        self.info
            .iter()
            .map(|i| usize::from(i.priority) + 1)
            .max()
            .unwrap_or(1)
    }
}

/// The input: identifiers pushed in id order, links in link id order.
#[derive(Clone, Debug, Default)]
pub struct CompactGraph {
    kinds: Vec<u8>,
    homes: Vec<u32>,
    flags: Vec<u8>,
    ends: Vec<[u32; 2]>,
    times: Vec<i64>,
}

impl CompactGraph {
    pub fn with_capacity(nodes: usize, edges: usize) -> CompactGraph {
        CompactGraph {
            kinds: Vec::with_capacity(nodes),
            homes: Vec::with_capacity(nodes),
            flags: Vec::with_capacity(nodes),
            ends: Vec::with_capacity(edges),
            times: Vec::with_capacity(edges),
        }
    }

    /// Adds the next identifier (ids must come in increasing order); `home`
    /// is the rank of its home profile id among all home ids. `pinned`: kept
    /// quarantined whatever its links (as [`NodeInput::pinned_quarantine`]).
    pub fn push_node(&mut self, kind: u8, home: u32, pinned: bool) -> u32 {
        let index = u32::try_from(self.kinds.len()).unwrap_or(u32::MAX);
        self.kinds.push(kind);
        self.homes.push(home);
        self.flags.push(if pinned { F_PINNED } else { 0 });
        index
    }

    /// Adds the next link (link ids must come in increasing order).
    /// `trusted`: asserted by a trusted key (verified implies it).
    pub fn push_edge(
        &mut self,
        from: u32,
        to: u32,
        verified: bool,
        trusted: bool,
        observed_at: i64,
    ) {
        let from = (from & NODE_MASK) | if verified { VERIFIED_BIT } else { 0 };
        let to = (to & NODE_MASK) | if trusted || verified { 0 } else { CLAIM_BIT };
        self.ends.push([from, to]);
        self.times.push(observed_at);
    }

    pub fn node_count(&self) -> usize {
        self.kinds.len()
    }

    pub fn edge_count(&self) -> usize {
        self.ends.len()
    }

    /// Heap bytes held (capacity), for the benchmark's bytes per identifier.
    pub fn heap_bytes(&self) -> usize {
        self.kinds.capacity()
            + self.homes.capacity() * 4
            + self.flags.capacity()
            + self.ends.capacity() * 8
            + self.times.capacity() * 8
    }
}

/// Why a link was refused, by type index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactRefusal {
    LimitExceeded { kind: u8 },
    NeedsVerification,
}

/// The result, indexed like the input.
#[derive(Debug)]
pub struct CompactResolution {
    /// Per identifier: its group's root (the smallest member index).
    group: Vec<u32>,
    /// Per root: the smallest home rank of the group.
    survivor: Vec<u32>,
    flags: Vec<u8>,
    kinds: Vec<u8>,
    ends: Vec<[u32; 2]>,
    /// Links that joined two groups, in the order applied (reason in the top bits).
    joins: Vec<u32>,
    pub refused: Vec<(u32, CompactRefusal)>,
}

impl CompactResolution {
    pub fn node_count(&self) -> usize {
        self.group.len()
    }

    /// The group of identifier `i`: the smallest member index.
    pub fn group_of(&self, i: u32) -> u32 {
        self.group[i as usize]
    }

    /// The home rank of the profile id of `i`'s group.
    pub fn survivor_of(&self, i: u32) -> u32 {
        self.survivor[self.group[i as usize] as usize]
    }

    pub fn status(&self, i: u32) -> NodeStatus {
        status_of(self.flags[i as usize])
    }

    /// Has a verified link (meaningful for claimable types, as the resolver's
    /// `verified` set, which [`Self::verified`] gives).
    fn has_verified_link(&self, i: u32) -> bool {
        self.flags[i as usize] & F_VERIFIED != 0
    }

    /// Claimable and with at least one verified link.
    pub fn verified(&self, rules: &CompactRules, i: u32) -> bool {
        rules.info(self.kinds[i as usize]).class == IdentifierClass::Claimable
            && self.has_verified_link(i)
    }

    pub fn kind(&self, i: u32) -> u8 {
        self.kinds[i as usize]
    }

    /// The ends of link `e` (as pushed).
    pub fn edge(&self, e: u32) -> (u32, u32) {
        let [a, b] = self.ends[e as usize];
        (a & NODE_MASK, b & NODE_MASK)
    }

    /// Joins in the order applied: (link index, reason).
    pub fn joins(&self) -> impl Iterator<Item = (u32, JoinReason)> + '_ {
        self.joins.iter().map(|&j| {
            let reason = match j >> REASON_SHIFT {
                0 => JoinReason::SameEvent,
                1 => JoinReason::VerifiedIdentifier,
                _ => JoinReason::UnverifiedBetweenGuests,
            };
            (j & ((1 << REASON_SHIFT) - 1), reason)
        })
    }

    pub fn join_count(&self) -> usize {
        self.joins.len()
    }

    /// Heap bytes held (capacity), for the benchmark's bytes per identifier.
    pub fn heap_bytes(&self) -> usize {
        self.group.capacity() * 4
            + self.survivor.capacity() * 4
            + self.flags.capacity()
            + self.kinds.capacity()
            + self.ends.capacity() * 8
            + self.joins.capacity() * 4
            + self.refused.capacity() * 8
    }
}

fn status_of(flags: u8) -> NodeStatus {
    if flags & F_QUARANTINED != 0 {
        NodeStatus::Quarantined
    } else if flags & F_SHARED != 0 {
        NodeStatus::Shared
    } else {
        NodeStatus::Member
    }
}

fn reason_code(reason: JoinReason) -> u32 {
    match reason {
        JoinReason::SameEvent => 0,
        JoinReason::VerifiedIdentifier => 1,
        JoinReason::UnverifiedBetweenGuests => 2,
    }
}

/// Runs the compact resolver on the resolver's own inputs and answers in the
/// resolver's terms: `resolve_inputs(r, n, e) == resolver::resolve(r, n, e)`.
/// (Used by the property test and for small graphs; the rebuild builds a
/// [`CompactGraph`] directly.)
pub fn resolve_inputs(
    rules: &IdentityRules,
    nodes: &[NodeInput],
    edges: &[EdgeInput],
) -> Result<Resolution, CompactError> {
    let compact = CompactRules::new(rules)?;
    let mut nodes: Vec<&NodeInput> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes.dedup_by(|a, b| a.id == b.id);
    let index: BTreeMap<&str, u32> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i as u32))
        .collect();
    let mut homes: Vec<&str> = nodes.iter().map(|n| n.home.as_str()).collect();
    homes.sort_unstable();
    homes.dedup();
    let mut edges: Vec<(&EdgeInput, u32, u32)> = edges
        .iter()
        .filter_map(|e| Some((e, *index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
        .filter(|(_, a, b)| a != b)
        .collect();
    edges.sort_by(|x, y| x.0.id.cmp(&y.0.id));
    edges.dedup_by(|x, y| x.0.id == y.0.id);
    let mut graph = CompactGraph::with_capacity(nodes.len(), edges.len());
    for n in &nodes {
        let home = homes.binary_search(&n.home.as_str()).unwrap_or(0) as u32;
        graph.push_node(compact.kind(&n.kind), home, n.pinned_quarantine);
    }
    for (e, a, b) in &edges {
        graph.push_edge(*a, *b, e.verified, e.trusted, e.observed_at);
    }
    let out = resolve(&compact, graph)?;
    Ok(to_resolution(&compact, &out, &nodes, &homes, &edges))
}

/// The compact result in the resolver's terms (ids for indexes).
fn to_resolution(
    compact: &CompactRules,
    out: &CompactResolution,
    nodes: &[&NodeInput],
    homes: &[&str],
    edges: &[(&EdgeInput, u32, u32)],
) -> Resolution {
    let mut members: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        members
            .entry(out.group_of(i as u32))
            .or_default()
            .push(n.id.clone());
    }
    let mut groups: Vec<Group> = members
        .into_iter()
        .map(|(root, members)| Group {
            survivor: homes[out.survivor_of(root) as usize].to_string(),
            members,
        })
        .collect();
    groups.sort_by(|a, b| (&a.survivor, &a.members).cmp(&(&b.survivor, &b.members)));
    let mut resolution = Resolution {
        groups,
        ..Default::default()
    };
    for (i, n) in nodes.iter().enumerate() {
        resolution.status.insert(n.id.clone(), out.status(i as u32));
        if out.verified(compact, i as u32) {
            resolution.verified.insert(n.id.clone());
        }
    }
    let edge_id = |e: u32| edges[e as usize].0.id.clone();
    resolution.joins = out.joins().map(|(e, r)| (edge_id(e), r)).collect();
    resolution.refused = out
        .refused
        .iter()
        .map(|&(e, refusal)| {
            let refusal = match refusal {
                CompactRefusal::NeedsVerification => Refusal::NeedsVerification,
                CompactRefusal::LimitExceeded { kind } => Refusal::LimitExceeded {
                    kind: compact.kind_name(kind).unwrap_or_default().to_string(),
                    limit: compact.limit(kind),
                },
            };
            (edge_id(e), refusal)
        })
        .collect();
    resolution
}
