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

use super::resolver::{EdgeInput, Group, JoinReason, NodeInput, NodeStatus, Refusal, Resolution};
use super::rules::{IdentifierClass, IdentityRules};

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

/// Union-find whose root is the smallest member, with per-type counters.
struct Groups<'r> {
    rules: &'r CompactRules,
    kinds: &'r [u8],
    parent: Vec<u32>,
    /// Per root: its counter record, or `NONE` for a single identifier.
    record: Vec<u32>,
    pool: Vec<u16>,
    free: Vec<u32>,
    flags: Vec<u8>,
    joins: Vec<u32>,
    refused: Vec<(u32, CompactRefusal)>,
}

impl Groups<'_> {
    fn find(&mut self, x: u32) -> u32 {
        let mut x = x as usize;
        loop {
            let p = self.parent[x] as usize;
            if p == x {
                return x as u32;
            }
            let gp = self.parent[p];
            self.parent[x] = gp;
            x = gp as usize;
        }
    }

    /// The count of `slot` in a group given by its root and record.
    #[inline]
    fn count(&self, root: u32, record: u32, slot: u8) -> u32 {
        match record {
            NONE => u32::from(self.rules.info(self.kinds[root as usize]).slot == slot),
            r => u32::from(self.pool[r as usize * self.rules.slots + usize::from(slot)]),
        }
    }

    /// The first type (by name) among those of `a` whose limit the union of
    /// `a` and `b` breaks (the resolver's order).
    #[inline]
    fn over_limit(&self, a: u32, b: u32) -> Option<u8> {
        let (record_a, record_b) = (self.record[a as usize], self.record[b as usize]);
        let check = |kind: u8| {
            let info = self.rules.info(kind);
            let total = self.count(a, record_a, info.slot) + self.count(b, record_b, info.slot);
            total > u32::from(info.limit)
        };
        if record_a == NONE {
            // A single identifier: its type is its only count.
            let kind = self.kinds[a as usize];
            let info = self.rules.info(kind);
            return (info.slot != NO_SLOT && check(kind)).then_some(kind);
        }
        if record_b == NONE && !self.rules.zero_limit {
            // Every group keeps its limits (all are at least 1), so only the
            // type of the single identifier `b` can overflow.
            let kind = self.kinds[b as usize];
            let info = self.rules.info(kind);
            let in_a = info.slot != NO_SLOT && self.count(a, record_a, info.slot) > 0;
            return (in_a && check(kind)).then_some(kind);
        }
        self.rules
            .by_name
            .iter()
            .copied()
            .find(|&kind| self.count(a, record_a, self.rules.info(kind).slot) > 0 && check(kind))
    }

    fn record_of(&mut self, root: u32) -> usize {
        let slots = self.rules.slots;
        let existing = self.record[root as usize];
        if existing != NONE {
            return existing as usize;
        }
        let r = match self.free.pop() {
            Some(r) => {
                let start = r as usize * slots;
                self.pool[start..start + slots].fill(0);
                r as usize
            }
            None => {
                self.pool.resize(self.pool.len() + slots, 0);
                self.pool.len() / slots - 1
            }
        };
        let slot = self.rules.info(self.kinds[root as usize]).slot;
        if slot != NO_SLOT {
            self.pool[r * slots + usize::from(slot)] = 1;
        }
        self.record[root as usize] = u32::try_from(r).unwrap_or(NONE);
        r
    }

    /// Joins the groups of `a` and `b` unless that breaks a per-type limit.
    fn try_union(&mut self, e: u32, a: u32, b: u32, reason: JoinReason) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if let Some(kind) = self.over_limit(ra, rb) {
            self.refused
                .push((e, CompactRefusal::LimitExceeded { kind }));
            return;
        }
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[gone as usize] = keep;
        let slots = self.rules.slots;
        if slots > 0 {
            let k = self.record_of(keep) * slots;
            match self.record[gone as usize] {
                NONE => {
                    let slot = self.rules.info(self.kinds[gone as usize]).slot;
                    if slot != NO_SLOT {
                        self.pool[k + usize::from(slot)] += 1;
                    }
                }
                g => {
                    let start = g as usize * slots;
                    for s in 0..slots {
                        self.pool[k + s] += self.pool[start + s];
                    }
                    self.free.push(g);
                    self.record[gone as usize] = NONE;
                }
            }
        }
        self.flags[keep as usize] |= self.flags[gone as usize] & F_ACCOUNT;
        self.joins.push(e | (reason_code(reason) << REASON_SHIFT));
    }
}

/// Resolves the whole graph: the same result as [`resolver::resolve`] on
/// the same identifiers and links (see [`resolve_inputs`]).
///
/// Long on purpose: one pass over flat arrays of tens of millions of
/// entries whose phases share and free those arrays in a set order (the
/// memory figure in the module comment depends on it); split into
/// functions, each would take half a dozen `&mut` slices and the drops
/// between phases would be harder to see.
pub fn resolve(
    rules: &CompactRules,
    graph: CompactGraph,
) -> Result<CompactResolution, CompactError> {
    let CompactGraph {
        kinds,
        homes,
        mut flags,
        ends,
        times,
    } = graph;
    let n = kinds.len();
    if n > MAX_NODES {
        return Err(CompactError::TooManyNodes);
    }
    if ends.len() > MAX_EDGES {
        return Err(CompactError::TooManyEdges);
    }
    if let Some(&bad) = homes.iter().find(|&&h| h >= DEVICES_ONLY) {
        return Err(CompactError::BadHome(bad));
    }
    let info = |i: u32| rules.info(kinds[i as usize]);

    // 1. Verified identifiers, and the links in the resolver's order:
    //    counting sort by (unverified, priority), then by time in each bucket
    //    (stable, so equal times keep link id order).
    let priorities = rules.priorities();
    let mut starts = vec![0usize; 2 * priorities + 1];
    let bucket_of = |ia: &KindInfo, ib: &KindInfo, verified: bool| {
        let priority = ia.priority.min(ib.priority);
        usize::from(!verified) * priorities + usize::from(priority)
    };
    let bucket = |a: u32, b: u32, verified: bool| bucket_of(info(a), info(b), verified);
    // One pass: verified flags, bucket sizes, raw degrees and the raw count
    // of unique-type neighbours of devices (for step 2).
    let mut degree = vec![0u16; n];
    for &[a, b] in &ends {
        let verified = a & VERIFIED_BIT != 0;
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        for end in [a, b] {
            if end as usize >= n {
                return Err(CompactError::UnknownNode(end));
            }
        }
        if a == b {
            continue;
        }
        let (ia, ib) = (info(a), info(b));
        starts[bucket_of(ia, ib, verified) + 1] += 1;
        for (x, ix, iy) in [(a, ia, ib), (b, ib, ia)] {
            let d = &mut degree[x as usize];
            *d = d.saturating_add(1);
            let f = &mut flags[x as usize];
            if verified {
                *f |= F_VERIFIED;
            }
            // Candidates for a shared device: two links to identifiers that
            // may name people (unique types, accounts and other identifiers,
            // emails/phones through verified links).
            let person = iy.unique || super::resolver::names_person_on_device(iy.class, verified);
            if ix.class == IdentifierClass::Device && person {
                *f |= if *f & F_UNIQUE_ONE != 0 {
                    F_UNIQUE_TWO
                } else {
                    F_UNIQUE_ONE
                };
            }
        }
    }
    // 2. Statuses: quarantine (fan-out) and shared devices. Raw degrees first;
    //    distinct neighbours only for the candidates. Before the links'
    //    sort order is allocated: the shared-device rule reads link times.
    statuses(rules, &kinds, &mut flags, &ends, &times, degree)?;

    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut order = vec![0u32; starts[starts.len() - 1]];
    {
        let mut cursor = starts.clone();
        for (e, &[a, b]) in ends.iter().enumerate() {
            let verified = a & VERIFIED_BIT != 0;
            let (a, b) = (a & NODE_MASK, b & NODE_MASK);
            if a == b {
                continue;
            }
            let slot = &mut cursor[bucket(a, b, verified)];
            order[*slot] = e as u32;
            *slot += 1;
        }
    }
    let mut displaced: Vec<u32> = Vec::new();
    let mut merged: Vec<u32> = Vec::new();
    for w in starts.windows(2) {
        sort_by_time(&mut order[w[0]..w[1]], &times, &mut displaced, &mut merged);
    }
    drop((times, displaced, merged));

    // 3. Strong links in order; trusted unverified emails and phones kept
    //    for step 4, public keys' claims for step 5.
    for (i, f) in flags.iter_mut().enumerate() {
        if rules.info(kinds[i]).class == IdentifierClass::Account {
            *f |= F_ACCOUNT;
        }
    }
    let mut groups = Groups {
        rules,
        parent: (0..n as u32).collect(),
        record: vec![NONE; n],
        pool: Vec::new(),
        free: Vec::new(),
        kinds: &kinds,
        flags,
        joins: Vec::new(),
        refused: Vec::new(),
    };
    // Two bits per identifier for this loop (a quarter of the flags, so the
    // random reads mostly hit the cache): 0 device, 1 claimable, 2 another
    // identifier naming a person, 3 links nothing (shared or quarantined).
    let mut link_class = vec![0u8; n.div_ceil(4)];
    for (i, &f) in groups.flags.iter().enumerate() {
        let code = if f & (F_SHARED | F_QUARANTINED) != 0 {
            3
        } else {
            match rules.info(kinds[i]).class {
                IdentifierClass::Device => 0,
                IdentifierClass::Claimable => 1,
                IdentifierClass::Account | IdentifierClass::Other => 2,
            }
        };
        link_class[i / 4] |= code << ((i % 4) * 2);
    }
    let class_of = |i: u32| (link_class[(i / 4) as usize] >> ((i % 4) * 2)) & 3;
    let mut weak: Vec<u32> = Vec::new();
    let mut claims: Vec<u32> = Vec::new();
    for &e in &order {
        let [a, b] = ends[e as usize];
        let verified = a & VERIFIED_BIT != 0;
        let trusted = b & CLAIM_BIT == 0;
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        let (ca, cb) = (class_of(a), class_of(b));
        if ca == 3 || cb == 3 {
            continue;
        }
        let claimable = ca == 1 || cb == 1;
        if !trusted && (ca != 0 || cb != 0) {
            claims.push(e);
            continue;
        }
        if claimable && !verified {
            weak.push(e);
            continue;
        }
        let reason = if claimable {
            JoinReason::VerifiedIdentifier
        } else {
            JoinReason::SameEvent
        };
        groups.try_union(e, a, b, reason);
    }
    drop(order);

    // 4. Unverified claimable identifiers, one at a time by (priority, id):
    //    one already in a group with an account joins nothing more; others
    //    join the guest groups they were seen with, else the one account.
    let claim_and_other = |e: u32| {
        let [a, b] = ends[e as usize];
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        if class_of(a) == 1 { (a, b) } else { (b, a) }
    };
    weak.sort_by_cached_key(|&e| {
        let (claim, _) = claim_and_other(e);
        (info(claim).priority, claim)
    });
    let mut by_root: Vec<(u32, u32)> = Vec::new();
    let mut start = 0;
    while start < weak.len() {
        let (claim, _) = claim_and_other(weak[start]);
        let mut end = start;
        by_root.clear();
        while end < weak.len() {
            let (c, other) = claim_and_other(weak[end]);
            if c != claim {
                break;
            }
            let root = groups.find(other);
            by_root.push((root, weak[end]));
            end += 1;
        }
        // The first link (in link order) to each neighbouring group, by root.
        by_root.sort_by_key(|&(root, _)| root);
        by_root.dedup_by_key(|&mut (root, _)| root);
        start = end;
        let own = groups.find(claim);
        if groups.flags[own as usize] & F_ACCOUNT != 0 {
            for &(root, e) in &by_root {
                if root != own {
                    groups.refused.push((e, CompactRefusal::NeedsVerification));
                }
            }
            continue;
        }
        let guests = by_root
            .iter()
            .filter(|(r, _)| groups.flags[*r as usize] & F_ACCOUNT == 0)
            .count();
        let accounts = by_root.len() - guests;
        let joining: Vec<bool> = by_root
            .iter()
            .map(|(r, _)| {
                let account = groups.flags[*r as usize] & F_ACCOUNT != 0;
                if guests > 0 { !account } else { accounts == 1 }
            })
            .collect();
        for (&(root, e), join) in by_root.iter().zip(joining) {
            if join {
                let reason = if groups.flags[root as usize] & F_ACCOUNT != 0 {
                    JoinReason::SameEvent
                } else {
                    JoinReason::UnverifiedBetweenGuests
                };
                let other = groups.find(root);
                groups.try_union(e, claim, other, reason);
            } else {
                groups.refused.push((e, CompactRefusal::NeedsVerification));
            }
        }
    }
    drop(weak);

    // 5. Public keys' claims join nothing: one between two groups needs
    //    verification.
    for e in claims {
        let [a, b] = ends[e as usize];
        if groups.find(a & NODE_MASK) != groups.find(b & NODE_MASK) {
            groups.refused.push((e, CompactRefusal::NeedsVerification));
        }
    }
    drop(link_class);

    // 6. Every identifier points at its root; each root holds its group's
    //    smallest home rank among the members naming a person (not devices),
    //    else among all members (the profile id).
    let Groups {
        mut parent,
        mut record,
        flags,
        joins,
        refused,
        ..
    } = groups;
    for i in 0..n {
        let p = parent[i] as usize;
        // Roots are the smallest members, so the parent's root is final.
        parent[i] = parent[p];
    }
    record.fill(NONE);
    for (i, &home) in homes.iter().enumerate() {
        if rules.info(kinds[i]).class != IdentifierClass::Device {
            let root = parent[i] as usize;
            record[root] = record[root].min(home);
        }
    }
    for (i, &home) in homes.iter().enumerate() {
        let root = parent[i] as usize;
        // A group of devices only: `record` holds no person's home; the
        // first device reached marks it with its rank plus a flag bit.
        if record[root] == NONE || record[root] & DEVICES_ONLY != 0 {
            record[root] = DEVICES_ONLY | (record[root] & !DEVICES_ONLY).min(home);
        }
    }
    for r in record.iter_mut() {
        if *r != NONE {
            *r &= !DEVICES_ONLY;
        }
    }
    Ok(CompactResolution {
        group: parent,
        survivor: record,
        flags,
        kinds,
        ends,
        joins,
        refused,
    })
}

/// Sorts links (given in increasing index order) by (time, index). Links
/// mostly arrive in time order (link ids are minted when links are made), so
/// the ones out of order (earlier than a link before them) are taken out,
/// sorted alone and merged back: linear plus the sort of the displaced ones.
fn sort_by_time(part: &mut [u32], times: &[i64], displaced: &mut Vec<u32>, merged: &mut Vec<u32>) {
    let time = |e: u32| times[e as usize];
    if part.windows(2).all(|p| time(p[0]) <= time(p[1])) {
        return;
    }
    displaced.clear();
    let mut kept = 0usize;
    for i in 0..part.len() {
        let e = part[i];
        if kept == 0 || time(part[kept - 1]) <= time(e) {
            part[kept] = e;
            kept += 1;
        } else {
            displaced.push(e);
        }
    }
    // Stable: equal times keep index order.
    displaced.sort_by_key(|&e| time(e));
    merged.clear();
    let (mut i, mut j) = (0usize, 0usize);
    while i < kept || j < displaced.len() {
        let take_kept = j == displaced.len()
            || (i < kept && (time(part[i]), part[i]) <= (time(displaced[j]), displaced[j]));
        if take_kept {
            merged.push(part[i]);
            i += 1;
        } else {
            merged.push(displaced[j]);
            j += 1;
        }
    }
    part.copy_from_slice(merged);
}

/// Sets the status bits: quarantined (not an account; pinned or more than
/// `max_fanout` distinct neighbours), shared (a device seen with two values
/// of one unique type). `degree` holds the raw link counts (saturated) and
/// the flags the raw count of unique-type neighbours of devices (one, two+).
/// Long for the same reason as [`resolve`]: phases over shared flat arrays.
fn statuses(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &mut [u8],
    ends: &[[u32; 2]],
    times: &[i64],
    degree: Vec<u16>,
) -> Result<(), CompactError> {
    let n = kinds.len();
    let info = |i: u32| rules.info(kinds[i as usize]);
    let mut candidates = 0usize;
    for i in 0..n {
        let class = info(i as u32).class;
        let f = &mut flags[i];
        if class != IdentifierClass::Account && *f & F_PINNED != 0 {
            *f |= F_QUARANTINED;
            continue;
        }
        let fanout = class != IdentifierClass::Account
            && (usize::from(degree[i]) > rules.max_fanout || degree[i] == u16::MAX);
        let shared = class == IdentifierClass::Device && *f & F_UNIQUE_TWO != 0;
        if fanout || shared {
            *f |= F_CANDIDATE;
            candidates += 1;
        }
    }
    drop(degree);
    if candidates > 0 {
        // Adjacency lists of the candidates only, found through a bitset
        // (small enough to stay in cache while scanning the links).
        let mut is_candidate = vec![0u64; n.div_ceil(64)];
        let mut slots: Vec<u32> = Vec::with_capacity(candidates);
        for (i, f) in flags.iter().enumerate() {
            if f & F_CANDIDATE != 0 {
                is_candidate[i / 64] |= 1 << (i % 64);
                slots.push(i as u32);
            }
        }
        // A candidate's slot: candidates in the words before, plus those
        // before it in its word (constant time, a small table).
        let mut before = Vec::with_capacity(is_candidate.len());
        let mut total = 0usize;
        for word in &is_candidate {
            before.push(total);
            total += word.count_ones() as usize;
        }
        let candidate = |x: u32| is_candidate[(x / 64) as usize] & (1 << (x % 64)) != 0;
        let slot = |x: u32| {
            let word = (x / 64) as usize;
            before[word] + (is_candidate[word] & ((1u64 << (x % 64)) - 1)).count_ones() as usize
        };
        let mut offsets = vec![0u32; slots.len() + 1];
        for &[a, b] in ends {
            let (a, b) = (a & NODE_MASK, b & NODE_MASK);
            if a == b {
                continue;
            }
            for x in [a, b] {
                if candidate(x) {
                    offsets[slot(x) + 1] += 1;
                }
            }
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        // Each candidate's links, by index (the other end, the verified and
        // claim bits and the time are read from the link).
        let mut adjacency = vec![0u32; offsets[slots.len()] as usize];
        let mut fill = offsets.clone();
        for (e, &[a, b]) in ends.iter().enumerate() {
            let (a, b) = (a & NODE_MASK, b & NODE_MASK);
            if a == b {
                continue;
            }
            for x in [a, b] {
                if candidate(x) {
                    let k = slot(x);
                    adjacency[fill[k] as usize] = e as u32;
                    fill[k] += 1;
                }
            }
        }
        drop(fill);
        let mut per_kind = vec![0u32; rules.info.len()];
        // Devices the per-type rule left undecided: their persons are
        // counted once every quarantine is known.
        let mut undecided: Vec<usize> = Vec::new();
        for (k, &node) in slots.iter().enumerate() {
            let i = node as usize;
            let list = &mut adjacency[offsets[k] as usize..offsets[k + 1] as usize];
            let links = Links { ends, of: node };
            list.sort_unstable_by_key(|&e| links.other(e));
            let mut distinct = 0usize;
            for (y, verified) in links.distinct(list) {
                distinct += 1;
                let k = usize::from(kinds[y as usize]).min(per_kind.len() - 1);
                let person = rules.info[k].unique
                    || (verified && rules.info[k].class == IdentifierClass::Claimable);
                if person {
                    per_kind[k] += 1;
                }
            }
            let class = info(i as u32).class;
            if class != IdentifierClass::Account && distinct > rules.max_fanout {
                flags[i] |= F_QUARANTINED;
            } else if class == IdentifierClass::Device && per_kind.iter().any(|&c| c >= 2) {
                flags[i] |= F_SHARED;
            } else if class == IdentifierClass::Device {
                undecided.push(k);
            }
            per_kind.fill(0);
        }
        if !undecided.is_empty() {
            let persons = person_components(rules, kinds, flags, ends);
            for k in undecided {
                let list = &adjacency[offsets[k] as usize..offsets[k + 1] as usize];
                let links = Links { ends, of: slots[k] };
                if persons_on_device(rules, kinds, flags, &persons, &links, times, list) >= 2 {
                    flags[slots[k] as usize] |= F_SHARED;
                }
            }
        }
    }
    for f in flags.iter_mut() {
        *f &= !(F_UNIQUE_ONE | F_UNIQUE_TWO | F_CANDIDATE);
    }
    Ok(())
}

/// The links of one identifier (`of`), read by link index.
struct Links<'a> {
    ends: &'a [[u32; 2]],
    of: u32,
}

impl Links<'_> {
    /// The other end of link `e`.
    fn other(&self, e: u32) -> u32 {
        let [a, b] = self.ends[e as usize];
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        if a == self.of { b } else { a }
    }

    fn verified(&self, e: u32) -> bool {
        self.ends[e as usize][0] & VERIFIED_BIT != 0
    }

    fn trusted(&self, e: u32) -> bool {
        self.ends[e as usize][1] & CLAIM_BIT == 0
    }

    /// The distinct neighbours of a list of links sorted by other end,
    /// each with whether any of its links is verified.
    fn distinct<'s>(&'s self, list: &'s [u32]) -> impl Iterator<Item = (u32, bool)> + 's {
        let mut run = 0usize;
        std::iter::from_fn(move || {
            let y = self.other(*list.get(run)?);
            let mut verified = false;
            while run < list.len() && self.other(list[run]) == y {
                verified |= self.verified(list[run]);
                run += 1;
            }
            Some((y, verified))
        })
    }
}

/// How many persons a device names (the resolver's rule): its person
/// identifiers, grouped by `persons` and by the device's trusted links of
/// one call (same time).
fn persons_on_device(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &[u8],
    persons: &Persons,
    links: &Links<'_>,
    times: &[i64],
    list: &[u32],
) -> usize {
    let info = |i: u32| rules.info(kinds[i as usize]);
    let free = |y: u32| flags[y as usize] & F_QUARANTINED == 0;
    let mut calls: Vec<(i64, u32)> = list
        .iter()
        .filter(|&&e| {
            let y = links.other(e);
            links.trusted(e)
                && free(y)
                && super::resolver::names_person_on_device(info(y).class, links.verified(e))
        })
        .map(|&e| (times[e as usize], links.other(e)))
        .collect();
    calls.sort_unstable();
    let mut local: BTreeMap<u32, u32> = BTreeMap::new();
    let local_root = |local: &BTreeMap<u32, u32>, mut x: u32| {
        while let Some(&up) = local.get(&x) {
            x = up;
        }
        x
    };
    for pair in calls.windows(2) {
        if pair[0].0 == pair[1].0 {
            let (ra, rb) = (persons.root(pair[0].1), persons.root(pair[1].1));
            let (la, lb) = (local_root(&local, ra), local_root(&local, rb));
            if la != lb {
                local.insert(la.max(lb), la.min(lb));
            }
        }
    }
    let mut roots: Vec<u32> = links
        .distinct(list)
        .filter(|&(y, verified)| {
            free(y) && super::resolver::names_person_on_device(info(y).class, verified)
        })
        .map(|(y, _)| local_root(&local, persons.root(y)))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    roots.len()
}

/// Person identifiers tied together by strong links (as in the resolver's
/// shared-device rule): both ends neither devices nor quarantined, the link
/// trusted, and verified when it names an email or phone. Roots are found
/// with path halving on a frozen copy (read-only after building).
struct Persons {
    parent: Vec<u32>,
}

impl Persons {
    fn root(&self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            x = self.parent[x as usize];
        }
        x
    }
}

fn person_components(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &[u8],
    ends: &[[u32; 2]],
) -> Persons {
    let n = kinds.len();
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let find = |parent: &mut Vec<u32>, mut x: u32| {
        while parent[x as usize] != x {
            let up = parent[parent[x as usize] as usize];
            parent[x as usize] = up;
            x = up;
        }
        x
    };
    for &[a, b] in ends {
        let verified = a & VERIFIED_BIT != 0;
        let trusted = b & CLAIM_BIT == 0;
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        if a == b || !trusted {
            continue;
        }
        let (ca, cb) = (
            rules.info(kinds[a as usize]).class,
            rules.info(kinds[b as usize]).class,
        );
        let device = ca == IdentifierClass::Device || cb == IdentifierClass::Device;
        let claimable = ca == IdentifierClass::Claimable || cb == IdentifierClass::Claimable;
        let quarantined = (flags[a as usize] | flags[b as usize]) & F_QUARANTINED != 0;
        if device || quarantined || (claimable && !verified) {
            continue;
        }
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb) as usize] = ra.min(rb);
        }
    }
    Persons { parent }
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
        if out.verified(&compact, i as u32) {
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
    Ok(resolution)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customers::identity::resolver;
    use crate::customers::identity::rules::TypeRule;
    use proptest::prelude::*;

    const KINDS: &[&str] = &[
        "user_id",
        "anonymous_id",
        "device_id",
        "email",
        "phone",
        "loyalty_id",
        "marketplace_buyer_id",
        "custom_a",
        "gone_type",
    ];

    /// Random rules: the types in a random priority order (some left out, so
    /// some identifiers have a type the rules do not name), random classes and
    /// limits, a small fan-out.
    fn rules() -> impl Strategy<Value = IdentityRules> {
        let classes = [
            IdentifierClass::Account,
            IdentifierClass::Device,
            IdentifierClass::Claimable,
            IdentifierClass::Other,
        ];
        (
            Just(KINDS.to_vec()).prop_shuffle(),
            3..=KINDS.len(),
            proptest::collection::vec((0usize..4, 0usize..6), KINDS.len()),
            1usize..6,
            any::<bool>(),
        )
            .prop_map(move |(mut kinds, keep, params, max_fanout, defaults)| {
                kinds.truncate(keep);
                if defaults {
                    return IdentityRules {
                        max_fanout,
                        ..IdentityRules::default()
                    };
                }
                let types = kinds
                    .iter()
                    .zip(params)
                    .map(|(kind, (class, limit))| TypeRule {
                        kind: kind.to_string(),
                        class: classes[class],
                        max_per_profile: [1, 1, 2, 3, 1_000, 0][limit],
                        traits: Vec::new(),
                    })
                    .collect();
                IdentityRules {
                    types,
                    max_fanout,
                    ..IdentityRules::default()
                }
            })
    }

    /// A random graph: ids in an order unrelated to creation, shared homes
    /// now and then, few distinct times (ties), parallel links.
    fn graph() -> impl Strategy<Value = (Vec<NodeInput>, Vec<EdgeInput>)> {
        (2usize..16).prop_flat_map(|n| {
            let nodes = proptest::collection::vec(
                (
                    0..KINDS.len(),
                    0u32..1000,
                    0..n + 3,
                    proptest::bool::weighted(0.1),
                ),
                n,
            );
            let edges = proptest::collection::vec((0..n, 0..n, 0u8..3, 0i64..4, 0u32..1000), 0..30);
            (nodes, edges).prop_map(move |(raw_nodes, raw_edges)| {
                let nodes: Vec<NodeInput> = raw_nodes
                    .iter()
                    .enumerate()
                    .map(|(i, (k, id, home, pinned))| NodeInput {
                        id: format!("n{id:03}-{i:02}"),
                        kind: KINDS[*k].to_string(),
                        home: format!("h{home:02}"),
                        pinned_quarantine: *pinned,
                    })
                    .collect();
                let edges = raw_edges
                    .iter()
                    .enumerate()
                    .map(|(i, (a, b, level, t, id))| EdgeInput {
                        id: format!("e{id:03}-{i:02}"),
                        from: nodes[*a].id.clone(),
                        to: nodes[*b].id.clone(),
                        verified: *level == 2,
                        trusted: *level >= 1,
                        observed_at: *t,
                    })
                    .collect();
                (nodes, edges)
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// The compact resolver answers exactly as the reference resolver:
        /// groups, survivors, statuses, verified identifiers, joins (in order,
        /// with reasons) and refusals (in order, with reasons).
        #[test]
        fn compact_equals_reference(rules in rules(), (nodes, edges) in graph()) {
            let reference = resolver::resolve(&rules, &nodes, &edges);
            let compact = resolve_inputs(&rules, &nodes, &edges).unwrap();
            prop_assert_eq!(compact, reference);
        }
    }

    #[test]
    fn hub_quarantined_and_shared_device() {
        let rules = IdentityRules {
            max_fanout: 2,
            ..IdentityRules::default()
        };
        let node = |id: &str, kind: &str| NodeInput {
            id: id.into(),
            kind: kind.into(),
            home: format!("h-{id}"),
            pinned_quarantine: false,
        };
        let edge = |id: &str, from: &str, to: &str| EdgeInput {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            verified: false,
            trusted: true,
            observed_at: 0,
        };
        let nodes = [
            node("a", "anonymous_id"),
            node("b", "anonymous_id"),
            node("c", "anonymous_id"),
            node("m", "email"),
            node("u1", "user_id"),
            node("u2", "user_id"),
            node("d", "device_id"),
        ];
        let edges = [
            edge("1", "a", "m"),
            edge("2", "b", "m"),
            edge("3", "c", "m"),
            edge("4", "u1", "d"),
            edge("5", "u2", "d"),
            edge("6", "u1", "a"),
        ];
        let reference = resolver::resolve(&rules, &nodes, &edges);
        let compact = resolve_inputs(&rules, &nodes, &edges).unwrap();
        assert_eq!(compact, reference);
        assert_eq!(compact.status["m"], NodeStatus::Quarantined);
        assert_eq!(compact.status["d"], NodeStatus::Shared);
    }
}
