//! The resolver: a pure function from a set of identifiers and ledger links
//! to a grouping into profiles.
//!
//! Production code (incremental resolution, unmerge, rebuild) and the
//! property tests call this same function. It depends on the *set* of links
//! only, never on the order they arrived in: every collection is sorted before
//! use and links are applied in a deterministic order.
//!
//! Every link carries how much it is worth: **verified** (a trusted key's
//! login, or a trusted key saying `verified`), **trusted** (asserted by a
//! trusted, server-side key) or a **claim** (asserted by a public key that
//! anybody can read from a web page). Verified implies trusted.
//!
//! The algorithm, for one connected part of the identifier graph:
//! 1. **Quarantine**: an identifier that is not an account and is linked to
//!    more than `max_fanout` distinct identifiers links nothing.
//! 2. **Shared devices**: a device identifier is shared (it links nothing and
//!    stays context on both profiles) when the persons it names are two or
//!    more. The identifiers it names a person by are its neighbours of a
//!    unique type (limit 1), of class account or other, and of class
//!    claimable through a verified link. Persons = the connected components
//!    of those neighbours through *strong* links between non-device,
//!    non-quarantined identifiers (the links that could join them anyway),
//!    and through the device's own trusted links of one call (same time:
//!    one call names one person): one person signing in by email and
//!    another by user id on one tablet are two; a call naming an email and
//!    a loyalty id on a browser names one. Two values of one unique type are two persons even when
//!    linked to each other (that link is refused by the limit).
//! 3. **Strong links** are applied first, sorted by (verified first, type
//!    priority, time, id), each only when the union keeps every per-profile
//!    type limit; a refused link is a *conflict*. A link is strong when it is
//!    trusted and, if it names an email or phone, verified.
//! 4. **Unverified emails and phones** named by trusted keys, one at a time
//!    in a fixed order: an identifier already in a profile with an account
//!    joins nothing more (it is verified there; whoever else claims it must
//!    verify it); otherwise it joins the guest profiles (no account) it was
//!    seen with, merging them, or, seen with no guest, the single account it
//!    was seen with. It never joins a guest to an account.
//! 5. **Claims** (links of public keys that name a person: an account, an
//!    email, a phone, a loyalty id, …) join nothing: each one between two
//!    profiles is refused as needing verification. Links of public keys
//!    between devices only are strong links.
//! 6. Each group's profile id is the oldest (smallest UUIDv7) home profile id
//!    among its members that name a person (not devices), or among all its
//!    members when none does: deterministic, stable across merges, and a
//!    person keeps their id when a device they used turns out to be shared.

use std::collections::{BTreeMap, BTreeSet};

use super::rules::{IdentifierClass, IdentityRules};

mod statuses;
#[cfg(test)]
mod tests;

pub(crate) use statuses::names_person_on_device;
use statuses::node_statuses;

/// One identifier as the resolver sees it. `id` and `home` are opaque,
/// totally ordered strings (identifier id, home profile id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInput {
    pub id: String,
    pub kind: String,
    pub home: String,
    /// Stored as quarantined and its links not loaded: stays quarantined.
    pub pinned_quarantine: bool,
}

/// One active link of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeInput {
    pub id: String,
    pub from: String,
    pub to: String,
    /// Made by a trusted key's login or a trusted call that says `verified`.
    pub verified: bool,
    /// Asserted by a trusted (server-side) key; `false` for a public key's
    /// claim. Verified implies trusted.
    pub trusted: bool,
    pub observed_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeStatus {
    Member,
    Shared,
    Quarantined,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Member => "member",
            NodeStatus::Shared => "shared",
            NodeStatus::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(NodeStatus::Member),
            "shared" => Some(NodeStatus::Shared),
            "quarantined" => Some(NodeStatus::Quarantined),
            _ => None,
        }
    }
}

/// Why a link joined two groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum JoinReason {
    /// Account, device or other identifiers seen together.
    SameEvent,
    /// Through an email or phone verified by a trusted channel.
    VerifiedIdentifier,
    /// Through an unverified email or phone, between profiles without an account.
    UnverifiedBetweenGuests,
}

impl JoinReason {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinReason::SameEvent => "same_event",
            JoinReason::VerifiedIdentifier => "verified_identifier",
            JoinReason::UnverifiedBetweenGuests => "unverified_between_guests",
        }
    }
}

/// Why a link was not applied.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// The union would hold more identifiers of `kind` than the limit.
    LimitExceeded { kind: String, limit: usize },
    /// An unverified email or phone would join a profile holding an account,
    /// or a public key's claim would join two profiles.
    NeedsVerification,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The profile id: the smallest home id among the members.
    pub survivor: String,
    /// Member identifier ids, sorted.
    pub members: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Groups sorted by survivor.
    pub groups: Vec<Group>,
    pub status: BTreeMap<String, NodeStatus>,
    /// Claimable identifiers with at least one verified link.
    pub verified: BTreeSet<String>,
    /// Links that joined two groups, in the order applied.
    pub joins: Vec<(String, JoinReason)>,
    /// Links refused, with the reason.
    pub refused: Vec<(String, Refusal)>,
}

impl Resolution {
    /// The grouping as sets of member ids, for comparisons.
    pub fn partition(&self) -> BTreeSet<Vec<String>> {
        self.groups.iter().map(|g| g.members.clone()).collect()
    }

    pub fn group_of(&self, node: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.members.binary_search_by(|m| m.as_str().cmp(node)).is_ok())
    }
}

struct UnionFind {
    parent: Vec<usize>,
    counts: Vec<BTreeMap<String, usize>>,
    has_account: Vec<bool>,
}

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
}

/// A link with the indexes of its two ends.
type Link<'a> = (&'a EdgeInput, usize, usize);

/// Groups `nodes` by `edges` under `rules`. Edges naming unknown nodes are
/// ignored. The result depends only on the sets given, not their order.
pub fn resolve(rules: &IdentityRules, nodes: &[NodeInput], edges: &[EdgeInput]) -> Resolution {
    let (nodes, edges) = sorted_inputs(nodes, edges);
    let mut neighbours: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    let mut verified_neighbours: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    let mut verified = vec![false; nodes.len()];
    for (e, a, b) in &edges {
        neighbours[*a].insert(*b);
        neighbours[*b].insert(*a);
        if e.verified {
            verified[*a] = true;
            verified[*b] = true;
            verified_neighbours[*a].insert(*b);
            verified_neighbours[*b].insert(*a);
        }
    }
    let class = |i: usize| rules.class(&nodes[i].kind);
    let status = node_statuses(rules, &nodes, &edges, &neighbours, &verified_neighbours);
    let (strong, weak, claims) = classify_links(rules, &nodes, &edges, &status);

    let mut uf = UnionFind {
        parent: (0..nodes.len()).collect(),
        counts: nodes
            .iter()
            .map(|n| BTreeMap::from([(n.kind.clone(), 1)]))
            .collect(),
        has_account: (0..nodes.len())
            .map(|i| class(i) == IdentifierClass::Account)
            .collect(),
    };
    let mut resolution = Resolution::default();
    for (e, a, b) in strong {
        // A strong link naming an email or phone is a verified one.
        let reason =
            if class(a) == IdentifierClass::Claimable || class(b) == IdentifierClass::Claimable {
                JoinReason::VerifiedIdentifier
            } else {
                JoinReason::SameEvent
            };
        try_union(rules, &mut uf, &mut resolution, e, a, b, reason);
    }
    join_weak_links(rules, &nodes, &mut uf, &mut resolution, weak);
    // Public keys' claims join nothing: one between two profiles needs
    // verification (a trusted login, or a trusted key saying `verified`).
    for (e, a, b) in claims {
        if uf.find(a) != uf.find(b) {
            resolution
                .refused
                .push((e.id.clone(), Refusal::NeedsVerification));
        }
    }

    resolution.groups = final_groups(rules, &nodes, &mut uf);
    for (i, n) in nodes.iter().enumerate() {
        resolution.status.insert(n.id.clone(), status[i]);
        if class(i) == IdentifierClass::Claimable && verified[i] {
            resolution.verified.insert(n.id.clone());
        }
    }
    resolution
}

/// The nodes sorted by id without duplicates, and the links between two of
/// them (not loops) sorted by id without duplicates.
fn sorted_inputs<'a>(
    nodes: &'a [NodeInput],
    edges: &'a [EdgeInput],
) -> (Vec<&'a NodeInput>, Vec<Link<'a>>) {
    let mut nodes: Vec<&NodeInput> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes.dedup_by(|a, b| a.id == b.id);
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut edges: Vec<Link<'a>> = edges
        .iter()
        .filter_map(|e| Some((e, *index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
        .filter(|(_, a, b)| a != b)
        .collect();
    edges.sort_by(|x, y| x.0.id.cmp(&y.0.id));
    edges.dedup_by(|x, y| x.0.id == y.0.id);
    (nodes, edges)
}

/// The links between two members, split into strong links, trusted
/// unverified emails and phones (weak), and public keys' claims; each sorted
/// deterministically by (verified first, type priority, time, id).
fn classify_links<'a>(
    rules: &IdentityRules,
    nodes: &[&NodeInput],
    edges: &[Link<'a>],
    status: &[NodeStatus],
) -> (Vec<Link<'a>>, Vec<Link<'a>>, Vec<Link<'a>>) {
    let class = |i: usize| rules.class(&nodes[i].kind);
    let names_person = |i: usize| class(i) != IdentifierClass::Device;
    let mut strong = Vec::new();
    let mut weak = Vec::new();
    let mut claims = Vec::new();
    for (e, a, b) in edges {
        if status[*a] != NodeStatus::Member || status[*b] != NodeStatus::Member {
            continue;
        }
        let trusted = e.trusted || e.verified;
        let claimable =
            class(*a) == IdentifierClass::Claimable || class(*b) == IdentifierClass::Claimable;
        if !trusted && (names_person(*a) || names_person(*b)) {
            claims.push((*e, *a, *b));
        } else if claimable && !e.verified {
            weak.push((*e, *a, *b));
        } else {
            strong.push((*e, *a, *b));
        }
    }
    let order = |x: &Link<'_>| {
        let priority = rules
            .priority(&nodes[x.1].kind)
            .min(rules.priority(&nodes[x.2].kind));
        (!x.0.verified, priority, x.0.observed_at, x.0.id.clone())
    };
    strong.sort_by_key(order);
    weak.sort_by_key(order);
    claims.sort_by_key(order);
    (strong, weak, claims)
}

/// Unverified claimable identifiers, one at a time in a fixed order. One
/// already in a profile with an account joins nothing more; otherwise it
/// joins the guest profiles it was seen with (merging them), or else the
/// one account it was seen with; it never joins a guest to an account.
fn join_weak_links(
    rules: &IdentityRules,
    nodes: &[&NodeInput],
    uf: &mut UnionFind,
    resolution: &mut Resolution,
    weak: Vec<Link<'_>>,
) {
    let class = |i: usize| rules.class(&nodes[i].kind);
    let mut by_claim: BTreeMap<usize, Vec<(&EdgeInput, usize)>> = BTreeMap::new();
    for (e, a, b) in weak {
        let (claim, other) = if class(a) == IdentifierClass::Claimable {
            (a, b)
        } else {
            (b, a)
        };
        by_claim.entry(claim).or_default().push((e, other));
    }
    let mut claim_order: Vec<usize> = by_claim.keys().copied().collect();
    claim_order.sort_by_key(|&i| (rules.priority(&nodes[i].kind), nodes[i].id.clone()));
    for claim in claim_order {
        let edges = by_claim.remove(&claim).unwrap_or_default();
        // The first edge (in link order) to each neighbouring group.
        let mut by_root: BTreeMap<usize, &EdgeInput> = BTreeMap::new();
        for (e, other) in &edges {
            let root = uf.find(*other);
            by_root.entry(root).or_insert(e);
        }
        join_claim(rules, uf, resolution, claim, &by_root);
    }
}

/// One unverified claimable identifier, with its first link to each
/// neighbouring group (by root): the rule of [`join_weak_links`].
fn join_claim(
    rules: &IdentityRules,
    uf: &mut UnionFind,
    resolution: &mut Resolution,
    claim: usize,
    by_root: &BTreeMap<usize, &EdgeInput>,
) {
    let own = uf.find(claim);
    if uf.has_account[own] {
        for (root, e) in by_root {
            if *root != own {
                resolution
                    .refused
                    .push((e.id.clone(), Refusal::NeedsVerification));
            }
        }
        return;
    }
    let guests: Vec<usize> = by_root
        .keys()
        .copied()
        .filter(|r| !uf.has_account[*r])
        .collect();
    let accounts: Vec<usize> = by_root
        .keys()
        .copied()
        .filter(|r| uf.has_account[*r])
        .collect();
    let join: Vec<usize> = if !guests.is_empty() {
        guests
    } else if accounts.len() == 1 {
        accounts.clone()
    } else {
        Vec::new()
    };
    for root in by_root.keys() {
        let Some(e) = by_root.get(root) else { continue };
        if join.contains(root) {
            let reason = if uf.has_account[*root] {
                JoinReason::SameEvent
            } else {
                JoinReason::UnverifiedBetweenGuests
            };
            let other = uf.find(*root);
            try_union(rules, uf, resolution, e, claim, other, reason);
        } else {
            resolution
                .refused
                .push((e.id.clone(), Refusal::NeedsVerification));
        }
    }
}

/// The groups of the union-find, each with its profile id: the smallest home
/// of the members naming a person, else of all members; sorted.
fn final_groups(rules: &IdentityRules, nodes: &[&NodeInput], uf: &mut UnionFind) -> Vec<Group> {
    let names_person = |i: usize| rules.class(&nodes[i].kind) != IdentifierClass::Device;
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..nodes.len() {
        let root = uf.find(i);
        groups.entry(root).or_default().push(i);
    }
    let mut out: Vec<Group> = groups
        .into_values()
        .map(|members| {
            // Homes of the members naming a person, else of all members.
            let person_home = members
                .iter()
                .filter(|&&i| names_person(i))
                .map(|&i| nodes[i].home.clone())
                .min();
            let survivor = person_home
                .or_else(|| members.iter().map(|&i| nodes[i].home.clone()).min())
                .unwrap_or_default();
            let mut members: Vec<String> = members.iter().map(|&i| nodes[i].id.clone()).collect();
            members.sort();
            Group { survivor, members }
        })
        .collect();
    out.sort_by(|a, b| (&a.survivor, &a.members).cmp(&(&b.survivor, &b.members)));
    out
}

/// Joins the groups of `a` and `b` unless that breaks a per-type limit.
fn try_union(
    rules: &IdentityRules,
    uf: &mut UnionFind,
    resolution: &mut Resolution,
    e: &EdgeInput,
    a: usize,
    b: usize,
    reason: JoinReason,
) {
    let (ra, rb) = (uf.find(a), uf.find(b));
    if ra == rb {
        return;
    }
    if let Some(refusal) = over_limit(rules, &uf.counts[ra], &uf.counts[rb]) {
        resolution.refused.push((e.id.clone(), refusal));
        return;
    }
    let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
    uf.parent[gone] = keep;
    let moved = std::mem::take(&mut uf.counts[gone]);
    for (kind, n) in moved {
        *uf.counts[keep].entry(kind).or_default() += n;
    }
    uf.has_account[keep] |= uf.has_account[gone];
    resolution.joins.push((e.id.clone(), reason));
}

fn over_limit(
    rules: &IdentityRules,
    a: &BTreeMap<String, usize>,
    b: &BTreeMap<String, usize>,
) -> Option<Refusal> {
    for (kind, n) in a {
        let total = n + b.get(kind).copied().unwrap_or(0);
        let limit = rules.max_per_profile(kind);
        if total > limit {
            return Some(Refusal::LimitExceeded {
                kind: kind.clone(),
                limit,
            });
        }
    }
    None
}
