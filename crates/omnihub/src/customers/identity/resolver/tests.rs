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
