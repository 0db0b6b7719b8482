//! Steps 1 and 2 of the resolver: quarantined identifiers and shared devices.

use super::*;

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

pub(super) fn node_statuses(
    rules: &IdentityRules,
    nodes: &[&NodeInput],
    edges: &[Link<'_>],
    neighbours: &[BTreeSet<usize>],
    verified_neighbours: &[BTreeSet<usize>],
) -> Vec<NodeStatus> {
    let n = nodes.len();
    let quarantine: Vec<bool> = (0..n)
        .map(|i| quarantined(rules, nodes[i], neighbours[i].len()))
        .collect();
    // Persons: person identifiers tied by strong links (not through devices).
    let mut persons: Vec<usize> = (0..n).collect();
    // Each device's trusted links to identifiers that name a person on it,
    // with their time: links of one call share it (and name one person).
    let mut calls: Vec<Vec<(i64, usize)>> = vec![Vec::new(); n];
    for (e, a, b) in edges {
        if !quarantine[*a] && !quarantine[*b] && ties_persons(rules, nodes[*a], nodes[*b], e) {
            let (ra, rb) = (person_root(&mut persons, *a), person_root(&mut persons, *b));
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
                NodeStatus::Quarantined
            } else if rules.class(&nodes[i].kind) != IdentifierClass::Device {
                NodeStatus::Member
            } else {
                let device = Device {
                    neighbours: &neighbours[i],
                    verified_neighbours: &verified_neighbours[i],
                    calls: &mut calls[i],
                };
                device_status(rules, nodes, &quarantine, &mut persons, device)
            }
        })
        .collect()
}

/// Union-find root with path halving.
fn person_root(p: &mut [usize], mut x: usize) -> usize {
    while p[x] != x {
        p[x] = p[p[x]];
        x = p[x];
    }
    x
}

/// What [`device_status`] reads of one device.
struct Device<'a> {
    neighbours: &'a BTreeSet<usize>,
    verified_neighbours: &'a BTreeSet<usize>,
    /// Its trusted links to identifiers naming a person, with their time.
    calls: &'a mut Vec<(i64, usize)>,
}

/// A device not quarantined: shared when it names two persons, or two
/// values of a unique type (or two verified emails, phones).
fn device_status(
    rules: &IdentityRules,
    nodes: &[&NodeInput],
    quarantine: &[bool],
    persons: &mut [usize],
    device: Device<'_>,
) -> NodeStatus {
    let mut unique_values: BTreeMap<&str, usize> = BTreeMap::new();
    let mut components: BTreeSet<usize> = BTreeSet::new();
    for &m in device.neighbours {
        let kind = nodes[m].kind.as_str();
        let class = rules.class(kind);
        let verified = device.verified_neighbours.contains(&m);
        // Two values of a unique type, or two verified emails (phones).
        if rules.max_per_profile(kind) == 1 || (verified && class == IdentifierClass::Claimable) {
            *unique_values.entry(kind).or_default() += 1;
        }
        if names_person_on_device(class, verified) && !quarantine[m] {
            components.insert(person_root(persons, m));
        }
    }
    // Identifiers one call named together on the device are one person.
    device.calls.sort_unstable();
    let mut local: BTreeMap<usize, usize> = BTreeMap::new();
    for pair in device.calls.windows(2) {
        if pair[0].0 == pair[1].0 {
            let (ra, rb) = (
                person_root(persons, pair[0].1),
                person_root(persons, pair[1].1),
            );
            let (la, lb) = (local_root(&local, ra), local_root(&local, rb));
            if la != lb {
                local.insert(la.max(lb), la.min(lb));
            }
        }
    }
    let persons_here: BTreeSet<usize> = components.iter().map(|&r| local_root(&local, r)).collect();
    if persons_here.len() >= 2 || unique_values.values().any(|&count| count >= 2) {
        NodeStatus::Shared
    } else {
        NodeStatus::Member
    }
}

/// The representative of `x` among roots joined on one device.
fn local_root(local: &BTreeMap<usize, usize>, mut x: usize) -> usize {
    while let Some(&up) = local.get(&x) {
        x = up;
    }
    x
}
