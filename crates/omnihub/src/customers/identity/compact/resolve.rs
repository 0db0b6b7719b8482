//! [`resolve`] in phases. Each phase takes the flat arrays it needs and
//! consumes (drops) the ones nothing after it reads, so the order in which
//! memory is freed — on which the figure in the module comment depends —
//! shows in the signatures.

use super::statuses::statuses;
use super::*;

/// Resolves the whole graph: the same result as [`resolver::resolve`] on
/// the same identifiers and links (see [`resolve_inputs`]).
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
    if kinds.len() > MAX_NODES {
        return Err(CompactError::TooManyNodes);
    }
    if ends.len() > MAX_EDGES {
        return Err(CompactError::TooManyEdges);
    }
    if let Some(&bad) = homes.iter().find(|&&h| h >= DEVICES_ONLY) {
        return Err(CompactError::BadHome(bad));
    }
    // 1. Verified identifiers, bucket sizes and raw degrees.
    let (starts, degree) = scan_links(rules, &kinds, &mut flags, &ends)?;
    // 2. Statuses: quarantine (fan-out) and shared devices. Before the links'
    //    sort order is allocated: the shared-device rule reads link times.
    statuses(rules, &kinds, &mut flags, &ends, &times, degree)?;
    let order = sort_links(rules, &kinds, &ends, starts, times);

    // 3. Strong links in order; trusted unverified emails and phones kept
    //    for step 4, public keys' claims for step 5.
    let mut groups = Groups::new(rules, &kinds, flags);
    let classes = LinkClasses::new(rules, &kinds, &groups.flags);
    let (weak, claims) = join_strong_links(&mut groups, &ends, &classes, order);
    // 4. Unverified claimable identifiers.
    join_weak_links(&mut groups, &ends, &classes, weak);
    // 5. Public keys' claims join nothing: one between two groups needs
    //    verification.
    for e in claims {
        let [a, b] = ends[e as usize];
        if groups.find(a & NODE_MASK) != groups.find(b & NODE_MASK) {
            groups.refused.push((e, CompactRefusal::NeedsVerification));
        }
    }
    drop(classes);

    // 6. Every identifier points at its root, each root at its survivor.
    let Groups {
        mut parent,
        record,
        flags,
        joins,
        refused,
        ..
    } = groups;
    let survivor = survivors(rules, &kinds, &homes, &mut parent, record);
    Ok(CompactResolution {
        group: parent,
        survivor,
        flags,
        kinds,
        ends,
        joins,
        refused,
    })
}

/// A link's bucket in the resolver's order: verified links first, then by
/// the smaller priority of its two types.
#[inline]
fn bucket_of(priorities: usize, ia: &KindInfo, ib: &KindInfo, verified: bool) -> usize {
    let priority = ia.priority.min(ib.priority);
    usize::from(!verified) * priorities + usize::from(priority)
}

/// Step 1, one pass over the links: verified flags, the size of each bucket
/// of the resolver's order (in `starts[bucket + 1]`), raw degrees and the
/// raw count of person neighbours of devices (for step 2).
fn scan_links(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &mut [u8],
    ends: &[[u32; 2]],
) -> Result<(Vec<usize>, Vec<u16>), CompactError> {
    let n = kinds.len();
    let info = |i: u32| rules.info(kinds[i as usize]);
    let priorities = rules.priorities();
    let mut starts = vec![0usize; 2 * priorities + 1];
    let mut degree = vec![0u16; n];
    for &[a, b] in ends {
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
        starts[bucket_of(priorities, ia, ib, verified) + 1] += 1;
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
            let person = iy.unique || resolver::names_person_on_device(iy.class, verified);
            if ix.class == IdentifierClass::Device && person {
                *f |= if *f & F_UNIQUE_ONE != 0 {
                    F_UNIQUE_TWO
                } else {
                    F_UNIQUE_ONE
                };
            }
        }
    }
    Ok((starts, degree))
}

/// The links in the resolver's order: counting sort by (unverified,
/// priority) into the buckets sized by [`scan_links`], then by time in each
/// bucket (stable, so equal times keep link id order). The times are
/// dropped here: nothing after reads them.
fn sort_links(
    rules: &CompactRules,
    kinds: &[u8],
    ends: &[[u32; 2]],
    mut starts: Vec<usize>,
    times: Vec<i64>,
) -> Vec<u32> {
    let info = |i: u32| rules.info(kinds[i as usize]);
    let priorities = rules.priorities();
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
            let slot = &mut cursor[bucket_of(priorities, info(a), info(b), verified)];
            order[*slot] = e as u32;
            *slot += 1;
        }
    }
    let mut displaced: Vec<u32> = Vec::new();
    let mut merged: Vec<u32> = Vec::new();
    for w in starts.windows(2) {
        sort_by_time(&mut order[w[0]..w[1]], &times, &mut displaced, &mut merged);
    }
    order
}

/// What a link end does in step 3, two bits per identifier (a quarter of
/// the flags, so the random reads mostly hit the cache).
struct LinkClasses(Vec<u8>);

const END_DEVICE: u8 = 0;
const END_CLAIMABLE: u8 = 1;
/// An account or another identifier naming a person.
const END_PERSON: u8 = 2;
/// Shared or quarantined: links nothing.
const END_INERT: u8 = 3;

impl LinkClasses {
    fn new(rules: &CompactRules, kinds: &[u8], flags: &[u8]) -> LinkClasses {
        let mut packed = vec![0u8; kinds.len().div_ceil(4)];
        for (i, &f) in flags.iter().enumerate() {
            let code = if f & (F_SHARED | F_QUARANTINED) != 0 {
                END_INERT
            } else {
                match rules.info(kinds[i]).class {
                    IdentifierClass::Device => END_DEVICE,
                    IdentifierClass::Claimable => END_CLAIMABLE,
                    IdentifierClass::Account | IdentifierClass::Other => END_PERSON,
                }
            };
            packed[i / 4] |= code << ((i % 4) * 2);
        }
        LinkClasses(packed)
    }

    #[inline]
    fn of(&self, i: u32) -> u8 {
        (self.0[(i / 4) as usize] >> ((i % 4) * 2)) & 3
    }
}

/// Step 3: the strong links join groups in the resolver's order. Returns the
/// trusted unverified links of claimable identifiers (for step 4) and the
/// public keys' claims (step 5); the order is dropped here.
fn join_strong_links(
    groups: &mut Groups<'_>,
    ends: &[[u32; 2]],
    classes: &LinkClasses,
    order: Vec<u32>,
) -> (Vec<u32>, Vec<u32>) {
    let mut weak: Vec<u32> = Vec::new();
    let mut claims: Vec<u32> = Vec::new();
    for &e in &order {
        let [a, b] = ends[e as usize];
        let verified = a & VERIFIED_BIT != 0;
        let trusted = b & CLAIM_BIT == 0;
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        let (ca, cb) = (classes.of(a), classes.of(b));
        if ca == END_INERT || cb == END_INERT {
            continue;
        }
        let claimable = ca == END_CLAIMABLE || cb == END_CLAIMABLE;
        if !trusted && (ca != END_DEVICE || cb != END_DEVICE) {
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
    (weak, claims)
}

/// Step 4: unverified claimable identifiers, one at a time by (priority,
/// id), each with the first link (in link order) to each neighbouring group.
fn join_weak_links(
    groups: &mut Groups<'_>,
    ends: &[[u32; 2]],
    classes: &LinkClasses,
    mut weak: Vec<u32>,
) {
    let claim_and_other = |e: u32| {
        let [a, b] = ends[e as usize];
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        if classes.of(a) == END_CLAIMABLE {
            (a, b)
        } else {
            (b, a)
        }
    };
    let (rules, kinds) = (groups.rules, groups.kinds);
    weak.sort_by_cached_key(|&e| {
        let (claim, _) = claim_and_other(e);
        (rules.info(kinds[claim as usize]).priority, claim)
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
        join_claim(groups, claim, &by_root);
    }
}

/// One unverified claimable identifier: one already in a group with an
/// account joins nothing more; others join the guest groups they were seen
/// with, else the one account. `by_root`: its first link to each
/// neighbouring group, by the group's root.
fn join_claim(groups: &mut Groups<'_>, claim: u32, by_root: &[(u32, u32)]) {
    let own = groups.find(claim);
    if groups.flags[own as usize] & F_ACCOUNT != 0 {
        for &(root, e) in by_root {
            if root != own {
                groups.refused.push((e, CompactRefusal::NeedsVerification));
            }
        }
        return;
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

/// Step 6: points every identifier at its root and returns, per root, its
/// group's smallest home rank among the members naming a person (not
/// devices), else among all members (the profile id). Reuses the counter
/// records' array.
fn survivors(
    rules: &CompactRules,
    kinds: &[u8],
    homes: &[u32],
    parent: &mut [u32],
    mut record: Vec<u32>,
) -> Vec<u32> {
    for i in 0..parent.len() {
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
    record
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

impl<'r> Groups<'r> {
    /// Every identifier alone; accounts flagged.
    fn new(rules: &'r CompactRules, kinds: &'r [u8], mut flags: Vec<u8>) -> Groups<'r> {
        for (i, f) in flags.iter_mut().enumerate() {
            if rules.info(kinds[i]).class == IdentifierClass::Account {
                *f |= F_ACCOUNT;
            }
        }
        Groups {
            rules,
            parent: (0..kinds.len() as u32).collect(),
            record: vec![NONE; kinds.len()],
            pool: Vec::new(),
            free: Vec::new(),
            kinds,
            flags,
            joins: Vec::new(),
            refused: Vec::new(),
        }
    }

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
