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

/// Groups `nodes` by `edges` under `rules`. Edges naming unknown nodes are
/// ignored. The result depends only on the sets given, not their order.
pub fn resolve(rules: &IdentityRules, nodes: &[NodeInput], edges: &[EdgeInput]) -> Resolution {
    let mut nodes: Vec<&NodeInput> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes.dedup_by(|a, b| a.id == b.id);
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut edges: Vec<(&EdgeInput, usize, usize)> = edges
        .iter()
        .filter_map(|e| Some((e, *index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
        .filter(|(_, a, b)| a != b)
        .collect();
    edges.sort_by(|x, y| x.0.id.cmp(&y.0.id));
    edges.dedup_by(|x, y| x.0.id == y.0.id);

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
    let names_person = |i: usize| class(i) != IdentifierClass::Device;
    let status = node_statuses(rules, &nodes, &edges, &neighbours, &verified_neighbours);

    // Strong links first, then trusted unverified emails and phones, then
    // public keys' claims; each sorted deterministically.
    let mut strong = Vec::new();
    let mut weak = Vec::new();
    let mut claims = Vec::new();
    for (e, a, b) in &edges {
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
    let order = |x: &(&EdgeInput, usize, usize)| {
        let priority = rules
            .priority(&nodes[x.1].kind)
            .min(rules.priority(&nodes[x.2].kind));
        (!x.0.verified, priority, x.0.observed_at, x.0.id.clone())
    };
    strong.sort_by_key(order);
    weak.sort_by_key(order);
    claims.sort_by_key(order);

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
    // Unverified claimable identifiers, one at a time in a fixed order. One
    // already in a profile with an account joins nothing more; otherwise it
    // joins the guest profiles it was seen with (merging them), or else the
    // one account it was seen with; it never joins a guest to an account.
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
        let own = uf.find(claim);
        if uf.has_account[own] {
            for (root, e) in &by_root {
                if *root != own {
                    resolution
                        .refused
                        .push((e.id.clone(), Refusal::NeedsVerification));
                }
            }
            continue;
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
                try_union(rules, &mut uf, &mut resolution, e, claim, other, reason);
            } else {
                resolution
                    .refused
                    .push((e.id.clone(), Refusal::NeedsVerification));
            }
        }
    }
    // Public keys' claims join nothing: one between two profiles needs
    // verification (a trusted login, or a trusted key saying `verified`).
    for (e, a, b) in claims {
        if uf.find(a) != uf.find(b) {
            resolution
                .refused
                .push((e.id.clone(), Refusal::NeedsVerification));
        }
    }

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
    resolution.groups = out;
    for (i, n) in nodes.iter().enumerate() {
        resolution.status.insert(n.id.clone(), status[i]);
        if class(i) == IdentifierClass::Claimable && verified[i] {
            resolution.verified.insert(n.id.clone());
        }
    }
    resolution
}

/// Quarantined: not an account, and pinned or linked to more than
/// `max_fanout` distinct identifiers.
fn quarantined(rules: &IdentityRules, node: &NodeInput, neighbours: usize) -> bool {
    rules.class(&node.kind) != IdentifierClass::Account
        && (node.pinned_quarantine || neighbours > rules.max_fanout)
}

/// Whether a device's neighbour of class `class` names a person: an account
/// or other identifier, or an email/phone through a verified link.
pub(crate) fn names_person_on_device(class: IdentifierClass, verified: bool) -> bool {
    match class {
        IdentifierClass::Account | IdentifierClass::Other => true,
        IdentifierClass::Claimable => verified,
        IdentifierClass::Device => false,
    }
}

/// Whether a link may tie two person identifiers together for the shared
/// device rule: trusted, verified when it names an email or phone, between
/// two identifiers that are neither devices nor quarantined.
fn ties_persons(rules: &IdentityRules, a: &NodeInput, b: &NodeInput, e: &EdgeInput) -> bool {
    let (ca, cb) = (rules.class(&a.kind), rules.class(&b.kind));
    ca != IdentifierClass::Device
        && cb != IdentifierClass::Device
        && (e.trusted || e.verified)
        && (e.verified || (ca != IdentifierClass::Claimable && cb != IdentifierClass::Claimable))
}

fn node_statuses(
    rules: &IdentityRules,
    nodes: &[&NodeInput],
    edges: &[(&EdgeInput, usize, usize)],
    neighbours: &[BTreeSet<usize>],
    verified_neighbours: &[BTreeSet<usize>],
) -> Vec<NodeStatus> {
    let n = nodes.len();
    let quarantine: Vec<bool> = (0..n)
        .map(|i| quarantined(rules, nodes[i], neighbours[i].len()))
        .collect();
    // Persons: person identifiers tied by strong links (not through devices).
    let mut persons: Vec<usize> = (0..n).collect();
    fn root(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    // Each device's trusted links to identifiers that name a person on it,
    // with their time: links of one call share it (and name one person).
    let mut calls: Vec<Vec<(i64, usize)>> = vec![Vec::new(); n];
    for (e, a, b) in edges {
        if !quarantine[*a] && !quarantine[*b] && ties_persons(rules, nodes[*a], nodes[*b], e) {
            let (ra, rb) = (root(&mut persons, *a), root(&mut persons, *b));
            if ra != rb {
                persons[ra.max(rb)] = ra.min(rb);
            }
        }
        for (d, m) in [(*a, *b), (*b, *a)] {
            let class = rules.class(&nodes[m].kind);
            if rules.class(&nodes[d].kind) == IdentifierClass::Device
                && (e.trusted || e.verified)
                && !quarantine[m]
                && names_person_on_device(class, e.verified)
            {
                calls[d].push((e.observed_at, m));
            }
        }
    }
    (0..n)
        .map(|i| {
            if quarantine[i] {
                return NodeStatus::Quarantined;
            }
            if rules.class(&nodes[i].kind) != IdentifierClass::Device {
                return NodeStatus::Member;
            }
            let mut unique_values: BTreeMap<&str, usize> = BTreeMap::new();
            let mut components: BTreeSet<usize> = BTreeSet::new();
            for &m in &neighbours[i] {
                let kind = nodes[m].kind.as_str();
                let class = rules.class(kind);
                let verified = verified_neighbours[i].contains(&m);
                // Two values of a unique type, or two verified emails (phones).
                if rules.max_per_profile(kind) == 1
                    || (verified && class == IdentifierClass::Claimable)
                {
                    *unique_values.entry(kind).or_default() += 1;
                }
                if names_person_on_device(class, verified) && !quarantine[m] {
                    components.insert(root(&mut persons, m));
                }
            }
            // Identifiers one call named together on the device are one person.
            calls[i].sort_unstable();
            let mut local: BTreeMap<usize, usize> = BTreeMap::new();
            for pair in calls[i].windows(2) {
                if pair[0].0 == pair[1].0 {
                    let (ra, rb) = (root(&mut persons, pair[0].1), root(&mut persons, pair[1].1));
                    let (la, lb) = (local_root(&local, ra), local_root(&local, rb));
                    if la != lb {
                        local.insert(la.max(lb), la.min(lb));
                    }
                }
            }
            let persons_here: BTreeSet<usize> =
                components.iter().map(|&r| local_root(&local, r)).collect();
            if persons_here.len() >= 2 || unique_values.values().any(|&count| count >= 2) {
                NodeStatus::Shared
            } else {
                NodeStatus::Member
            }
        })
        .collect()
}

/// The representative of `x` among roots joined on one device.
fn local_root(local: &BTreeMap<usize, usize>, mut x: usize) -> usize {
    while let Some(&up) = local.get(&x) {
        x = up;
    }
    x
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(id: &str, kind: &str) -> NodeInput {
        NodeInput {
            id: id.into(),
            kind: kind.into(),
            home: format!("h-{id}"),
            pinned_quarantine: false,
        }
    }

    fn edge(id: &str, from: &str, to: &str, verified: bool) -> EdgeInput {
        EdgeInput {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            verified,
            trusted: true,
            observed_at: 0,
        }
    }

    fn claim(id: &str, from: &str, to: &str) -> EdgeInput {
        EdgeInput {
            trusted: false,
            ..edge(id, from, to, false)
        }
    }

    fn check(nodes: &[NodeInput], edges: &[EdgeInput], expected: &[&[&str]]) {
        let resolution = resolve(&IdentityRules::default(), nodes, edges);
        let expected: BTreeSet<Vec<String>> = expected
            .iter()
            .map(|g| {
                let mut g: Vec<String> = g.iter().map(|s| s.to_string()).collect();
                g.sort();
                g
            })
            .collect();
        assert_eq!(resolution.partition(), expected, "{resolution:?}");
    }

    #[test]
    fn anonymous_then_login_merges() {
        check(
            &[node("a", "anonymous_id"), node("u", "user_id")],
            &[edge("1", "u", "a", false)],
            &[&["a", "u"]],
        );
    }

    #[test]
    fn shared_device_links_nobody() {
        check(
            &[
                node("a", "anonymous_id"),
                node("u1", "user_id"),
                node("u2", "user_id"),
            ],
            &[edge("1", "u1", "a", false), edge("2", "u2", "a", false)],
            &[&["a"], &["u1"], &["u2"]],
        );
    }

    #[test]
    fn unverified_email_never_joins_an_account() {
        let nodes = [
            node("g", "anonymous_id"),
            node("e", "email"),
            node("u", "user_id"),
        ];
        check(
            &nodes,
            &[edge("1", "g", "e", false), edge("2", "u", "e", false)],
            &[&["g", "e"], &["u"]],
        );
        // Verified on the account, the email is the account's: a guest who
        // names it without verification stays a guest.
        check(
            &nodes,
            &[
                edge("1", "g", "e", false),
                edge("2", "u", "e", false),
                edge("3", "u", "e", true),
            ],
            &[&["g"], &["e", "u"]],
        );
        // Verified for the guest too: one person.
        check(
            &nodes,
            &[
                edge("1", "g", "e", true),
                edge("2", "u", "e", false),
                edge("3", "u", "e", true),
            ],
            &[&["g", "e", "u"]],
        );
    }

    #[test]
    fn public_claims_join_nobody() {
        let nodes = [
            node("a", "anonymous_id"),
            node("d", "device_id"),
            node("e", "email"),
            node("u", "user_id"),
        ];
        // A public key says: anonymous a is user u with email e, on device d.
        let edges = [
            claim("1", "u", "a"),
            claim("2", "u", "e"),
            claim("3", "a", "d"),
        ];
        check(&nodes, &edges, &[&["a", "d"], &["e"], &["u"]]);
        let resolution = resolve(&IdentityRules::default(), &nodes, &edges);
        assert_eq!(
            resolution.refused,
            vec![
                ("1".to_string(), Refusal::NeedsVerification),
                ("2".to_string(), Refusal::NeedsVerification),
            ]
        );
        // Once the same links are made by a trusted login, they join.
        check(
            &nodes,
            &[edges[0].clone(), edge("4", "u", "a", true)],
            &[&["a", "u"], &["d"], &["e"]],
        );
    }

    #[test]
    fn shared_by_two_verified_emails() {
        check(
            &[
                node("t", "anonymous_id"),
                node("e1", "email"),
                node("e2", "email"),
            ],
            &[edge("1", "t", "e1", true), edge("2", "t", "e2", true)],
            &[&["t"], &["e1"], &["e2"]],
        );
    }

    /// One person signs in by email only, another by user id only, on one
    /// tablet: two persons, so the tablet is shared. Once the account
    /// verifies that email, they are one person and the tablet joins them.
    #[test]
    fn shared_across_identifier_types() {
        let nodes = [
            node("t", "anonymous_id"),
            node("e", "email"),
            node("u", "user_id"),
        ];
        // Two sign-ins: two calls, at two times.
        let family = [
            edge("1", "t", "e", true),
            EdgeInput {
                observed_at: 1,
                ..edge("2", "u", "t", true)
            },
        ];
        check(&nodes, &family, &[&["e"], &["t"], &["u"]]);
        let compact = crate::customers::identity::compact::resolve_inputs(
            &IdentityRules::default(),
            &nodes,
            &family,
        )
        .unwrap();
        assert_eq!(compact, resolve(&IdentityRules::default(), &nodes, &family));
        // An unverified email names nobody yet: one person, no sharing.
        check(
            &nodes,
            &[edge("1", "t", "e", false), edge("2", "u", "t", true)],
            &[&["e", "t", "u"]],
        );
        // The same person: the account verified the email.
        check(
            &nodes,
            &[
                family[0].clone(),
                family[1].clone(),
                edge("3", "u", "e", true),
            ],
            &[&["e", "t", "u"]],
        );
        // A public key's claim never ties two persons together.
        check(
            &nodes,
            &[family[0].clone(), family[1].clone(), claim("3", "u", "e")],
            &[&["e"], &["t"], &["u"]],
        );
        // One call naming an email and a loyalty id on a browser names one
        // person (its links share the call's time); two calls, two persons.
        let nodes = [
            node("b", "anonymous_id"),
            node("e", "email"),
            node("l", "loyalty_id"),
        ];
        let at = |id: &str, to: &str, time: i64| EdgeInput {
            observed_at: time,
            ..edge(id, "b", to, true)
        };
        let one_call = [at("1", "e", 7), at("2", "l", 7)];
        check(&nodes, &one_call, &[&["b", "e", "l"]]);
        let two_calls = [at("1", "e", 7), at("2", "l", 8)];
        check(&nodes, &two_calls, &[&["b"], &["e"], &["l"]]);
        for edges in [&one_call[..], &two_calls[..]] {
            let rules = IdentityRules::default();
            let compact =
                crate::customers::identity::compact::resolve_inputs(&rules, &nodes, edges).unwrap();
            assert_eq!(compact, resolve(&rules, &nodes, edges));
        }
    }

    #[test]
    fn a_person_keeps_their_profile_id_when_the_device_turns_shared() {
        let nodes = [
            node("t", "anonymous_id"),
            node("u1", "user_id"),
            node("u2", "user_id"),
        ];
        let rules = IdentityRules::default();
        let before = resolve(&rules, &nodes, &[edge("1", "u1", "t", true)]);
        assert_eq!(before.groups[0].survivor, "h-u1");
        let after = resolve(
            &rules,
            &nodes,
            &[edge("1", "u1", "t", true), edge("2", "u2", "t", true)],
        );
        assert_eq!(after.group_of("u1").unwrap().survivor, "h-u1");
        assert_eq!(after.group_of("t").unwrap().survivor, "h-t");
    }

    #[test]
    fn two_accounts_never_merge() {
        check(
            &[
                node("e", "email"),
                node("u1", "user_id"),
                node("u2", "user_id"),
            ],
            &[edge("1", "u1", "e", true), edge("2", "u2", "e", true)],
            &[&["e", "u1"], &["u2"]],
        );
    }

    /// A random stream: nodes of a few kinds, edges between them.
    fn stream() -> impl Strategy<Value = (Vec<NodeInput>, Vec<EdgeInput>)> {
        let kinds = [
            "user_id",
            "anonymous_id",
            "email",
            "device_id",
            "loyalty_id",
        ];
        (3usize..14).prop_flat_map(move |n| {
            let nodes = proptest::collection::vec(0usize..kinds.len(), n);
            let edges = proptest::collection::vec((0..n, 0..n, 0u8..3, 0i64..5), 0..24);
            (nodes, edges).prop_map(move |(node_kinds, raw_edges)| {
                let nodes: Vec<NodeInput> = node_kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| node(&format!("n{i:02}"), kinds[*k]))
                    .collect();
                let edges = raw_edges
                    .iter()
                    .enumerate()
                    .map(|(i, (a, b, level, t))| EdgeInput {
                        id: format!("e{i:02}"),
                        from: format!("n{a:02}"),
                        to: format!("n{b:02}"),
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
        /// The grouping depends on the set of links, not on arrival order.
        #[test]
        fn grouping_is_order_independent(
            (nodes, edges) in stream(),
            seed in any::<u64>(),
        ) {
            let rules = IdentityRules::default();
            let base = resolve(&rules, &nodes, &edges);
            let mut shuffled_edges = edges.clone();
            let mut shuffled_nodes = nodes.clone();
            shuffle(&mut shuffled_edges, seed);
            shuffle(&mut shuffled_nodes, seed.rotate_left(17));
            let again = resolve(&rules, &shuffled_nodes, &shuffled_edges);
            prop_assert_eq!(base.partition(), again.partition());
            prop_assert_eq!(&base, &again);
        }
    }

    fn shuffle<T>(items: &mut [T], mut seed: u64) {
        for i in (1..items.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            items.swap(i, j);
        }
    }
}
