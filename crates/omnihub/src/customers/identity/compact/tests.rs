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
