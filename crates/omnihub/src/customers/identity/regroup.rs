//! Regrouping the part of the graph around a change: load the connected
//! component, resolve it again, write the differences (identifiers that move,
//! profiles that merge or split) and emit an event for each.

use super::*;

/// What triggered a recomputation (it names the domain events).
#[derive(Clone, Debug)]
pub enum Cause {
    Event {
        message_id: String,
        channel_id: Option<ChannelId>,
        new_links: BTreeSet<String>,
    },
    Unmerge {
        merge_id: String,
        channel_id: Option<ChannelId>,
    },
    /// A rebuild under the rules in force: quarantines are re-evaluated too.
    Rebuild { channel_id: Option<ChannelId> },
}

impl Cause {
    pub(super) fn channel(&self) -> Option<ChannelId> {
        match self {
            Cause::Event { channel_id, .. }
            | Cause::Unmerge { channel_id, .. }
            | Cause::Rebuild { channel_id } => *channel_id,
        }
    }

    pub(super) fn is_new(&self, link_id: &str) -> bool {
        match self {
            Cause::Event { new_links, .. } => new_links.contains(link_id),
            Cause::Unmerge { .. } | Cause::Rebuild { .. } => false,
        }
    }

    pub(super) fn describe(&self) -> events::CauseBody {
        events::CauseBody::of(self)
    }
}

/// The result of regrouping one part of the graph.
#[derive(Clone, Debug, Default)]
pub struct Recomputed {
    /// Identifier id → its profile after the recomputation.
    pub customer_of: BTreeMap<String, String>,
    pub resolution: Resolution,
    pub rows: BTreeMap<String, IdentifierRow>,
    pub links: BTreeMap<String, LinkRow>,
    /// Merge records written.
    pub merges: Vec<String>,
    /// The profiles that profiles split into here (`customer.split`).
    pub split_into: BTreeSet<String>,
}

/// Loads the connected part of the identifier graph around `seeds` (through
/// active links and current profile membership; quarantined identifiers are
/// not crossed).
pub(super) async fn load_component(
    tx: &mut Tx,
    seeds: &[String],
    cross_quarantine: bool,
) -> Result<(BTreeMap<String, IdentifierRow>, BTreeMap<String, LinkRow>), IdentityError> {
    let mut rows: BTreeMap<String, IdentifierRow> = BTreeMap::new();
    let mut links: BTreeMap<String, LinkRow> = BTreeMap::new();
    let mut expanded: BTreeSet<String> = BTreeSet::new();
    let mut customers_loaded: BTreeSet<String> = BTreeSet::new();
    for row in store::identifiers_by_ids(tx.conn(), seeds).await? {
        rows.insert(row.id.clone(), row);
    }
    loop {
        let frontier: Vec<String> = rows
            .keys()
            .filter(|id| !expanded.contains(*id))
            .cloned()
            .collect();
        if frontier.is_empty() {
            break;
        }
        expanded.extend(frontier.iter().cloned());
        let crossable: Vec<String> = frontier
            .iter()
            .filter(|id| {
                rows.get(*id)
                    .is_some_and(|r| cross_quarantine || r.status != NodeStatus::Quarantined)
            })
            .cloned()
            .collect();
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for link in store::active_links_touching(tx.conn(), &crossable).await? {
            for end in [&link.from_id, &link.to_id] {
                if !rows.contains_key(end) {
                    missing.insert(end.clone());
                }
            }
            links.insert(link.id.clone(), link);
        }
        let customers: Vec<String> = frontier
            .iter()
            .filter_map(|id| rows.get(id).map(|r| r.customer_id.clone()))
            .filter(|c| customers_loaded.insert(c.clone()))
            .collect();
        for row in store::identifiers_of_customers(tx.conn(), &customers).await? {
            missing.remove(&row.id);
            rows.entry(row.id.clone()).or_insert(row);
        }
        let missing: Vec<String> = missing.into_iter().collect();
        for row in store::identifiers_by_ids(tx.conn(), &missing).await? {
            rows.entry(row.id.clone()).or_insert(row);
        }
        if rows.len() > MAX_COMPONENT_NODES {
            return Err(IdentityError::ComponentTooLarge);
        }
    }
    Ok((rows, links))
}

/// Regroups the part of the graph around `seeds` and writes the differences:
/// identifiers' profiles and statuses, profile rows, merge records, events.
pub async fn recompute(
    tx: &mut Tx,
    rules: &IdentityRules,
    seeds: &[String],
    cause: &Cause,
) -> Result<Recomputed, IdentityError> {
    let rebuild = matches!(cause, Cause::Rebuild { .. });
    let (rows, links) = load_component(tx, seeds, rebuild).await?;
    let nodes: Vec<NodeInput> = rows
        .values()
        .map(|r| NodeInput {
            id: r.id.clone(),
            kind: r.kind.clone(),
            home: r.home_customer_id.clone(),
            pinned_quarantine: !rebuild && r.status == NodeStatus::Quarantined,
        })
        .collect();
    let edges: Vec<EdgeInput> = links
        .values()
        .map(|l| EdgeInput {
            id: l.id.clone(),
            from: l.from_id.clone(),
            to: l.to_id.clone(),
            verified: l.verified,
            trusted: l.trusted,
            observed_at: l.observed_at,
        })
        .collect();
    let resolution = resolver::resolve(rules, &nodes, &edges);
    let mut out = Recomputed {
        resolution,
        rows,
        links,
        ..Default::default()
    };
    apply_resolution(tx, cause, &mut out).await?;
    Ok(out)
}

pub(super) async fn apply_resolution(
    tx: &mut Tx,
    cause: &Cause,
    out: &mut Recomputed,
) -> Result<(), IdentityError> {
    let resolution = out.resolution.clone();
    let old_active = active_profiles(tx, out).await?;
    let survivors: BTreeSet<&String> = resolution.groups.iter().map(|g| &g.survivor).collect();
    for group in &resolution.groups {
        let survivor = &group.survivor;
        place_members(tx, cause, out, &resolution, group).await?;
        // Every profile that was active and is not the survivor merged into it.
        let merged_here: BTreeSet<String> = group
            .members
            .iter()
            .filter_map(|m| out.rows.get(m).map(|r| r.customer_id.clone()))
            .filter(|c| c != survivor && old_active.contains(c) && !survivors.contains(c))
            .collect();
        for merged in merged_here {
            let side: Vec<String> = group
                .members
                .iter()
                .filter(|m| out.rows.get(*m).is_some_and(|r| r.customer_id == merged))
                .cloned()
                .collect();
            let merge_id = record_merge(tx, cause, out, survivor, merged, side).await?;
            out.merges.push(merge_id);
        }
    }
    out.split_into = emit_splits(tx, cause, out, &old_active);
    emit_refusals(tx, cause, out);
    Ok(())
}

/// The profiles active (not merged) before, among the old profiles here.
async fn active_profiles(tx: &mut Tx, out: &Recomputed) -> Result<BTreeSet<String>, IdentityError> {
    let mut old_active: BTreeSet<String> = BTreeSet::new();
    let old_ids: BTreeSet<String> = out.rows.values().map(|r| r.customer_id.clone()).collect();
    for id in &old_ids {
        if let Some(row) = store::get_customer(&mut *tx.conn(), id).await? {
            if row.merged_into.is_none() {
                old_active.insert(id.clone());
            }
        }
    }
    Ok(old_active)
}

/// Activates the group's profile (`customer.created` when new) and moves
/// its members there with their new status and verification.
async fn place_members(
    tx: &mut Tx,
    cause: &Cause,
    out: &mut Recomputed,
    resolution: &Resolution,
    group: &resolver::Group,
) -> Result<(), IdentityError> {
    let now = tx.now();
    let channel = cause.channel();
    let survivor = &group.survivor;
    let created = activate_profile(tx, survivor).await?;
    for member in &group.members {
        out.customer_of.insert(member.clone(), survivor.clone());
        let Some(row) = out.rows.get(member) else {
            continue;
        };
        let status = resolution
            .status
            .get(member)
            .copied()
            .unwrap_or(NodeStatus::Member);
        let verified = resolution.verified.contains(member);
        if row.customer_id != *survivor || row.status != status || row.verified != verified {
            store::update_identifier(tx.conn(), member, survivor, status, verified, now).await?;
        }
        if row.status != status && status != NodeStatus::Member {
            emit_status_change(tx, row, status, survivor, channel, cause);
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
                        .filter_map(|m| out.rows.get(m))
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
    Ok(())
}

/// Records that `merged` (whose identifiers here are `side`) merged into
/// `survivor`, with the link that caused it, and emits `customer.merged`.
async fn record_merge(
    tx: &mut Tx,
    cause: &Cause,
    out: &Recomputed,
    survivor: &String,
    merged: String,
    side: Vec<String>,
) -> Result<String, IdentityError> {
    let now = tx.now();
    let (link_id, reason) = cause_link(&out.resolution, &out.links, &side);
    let merge = store::MergeRow {
        id: MergeId::new().to_string(),
        survivor_id: survivor.clone(),
        merged_id: merged.clone(),
        link_id: link_id.clone(),
        reason: reason.to_string(),
        merged_side: side,
        created_at: time::to_micros(now),
        undone_at: None,
        undone_by: None,
    };
    store::insert_merge(tx.conn(), &merge).await?;
    store::set_merged_into(tx.conn(), &merged, Some(survivor), now).await?;
    let link = link_id.as_ref().and_then(|l| out.links.get(l));
    tx.emit(
        NewEvent::of(
            &IdentityEvent::CustomerMerged(events::CustomerMerged {
                merge_id: merge.id.clone(),
                customer_id: survivor.clone(),
                merged_customer_id: merged.clone(),
                reason: reason.to_string(),
                link: link.map(|l| LinkBody::of(l, &out.rows)),
                cause: cause.describe(),
            }),
            now,
        )
        .channel(cause.channel())
        .subject("customer_id", survivor)
        .subject("merged_customer_id", &merged),
    );
    Ok(merge.id)
}

/// Makes `id` an active profile that survives a regrouping: created when
/// new (returns true), un-merged when it was merged, touched otherwise.
pub(crate) async fn activate_profile(tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
    let now = tx.now();
    match store::get_customer(&mut *tx.conn(), id).await? {
        None => {
            store::insert_customer(tx.conn(), id, now).await?;
            Ok(true)
        }
        Some(row) => {
            if row.merged_into.is_some() {
                store::set_merged_into(tx.conn(), id, None, now).await?;
            } else {
                store::touch_customer(tx.conn(), id, now).await?;
            }
            Ok(false)
        }
    }
}

/// The link that joined `side` to the rest of its new group, and why.
pub(super) fn cause_link(
    resolution: &Resolution,
    links: &BTreeMap<String, LinkRow>,
    side: &[String],
) -> (Option<String>, &'static str) {
    let inside = |id: &str| side.iter().any(|s| s == id);
    for (link_id, reason) in &resolution.joins {
        if let Some(link) = links.get(link_id) {
            if inside(&link.from_id) != inside(&link.to_id) {
                return (Some(link_id.clone()), reason.as_str());
            }
        }
    }
    (None, "regrouped")
}

pub(super) fn emit_status_change(
    tx: &mut Tx,
    row: &IdentifierRow,
    status: NodeStatus,
    customer: &str,
    channel: Option<ChannelId>,
    cause: &Cause,
) {
    let kind = match status {
        NodeStatus::Quarantined => IdentityEvent::Quarantined,
        NodeStatus::Shared => IdentityEvent::Shared,
        NodeStatus::Member => return,
    };
    let now = tx.now();
    tx.emit(
        NewEvent::of(
            &kind(events::IdentifierStatusChanged {
                identifier: IdentifierValue::of(row),
                customer_id: customer.to_string(),
                cause: cause.describe(),
            }),
            now,
        )
        .channel(channel)
        .subject("customer_id", customer),
    );
}

/// `customer.split` for every previously active profile whose identifiers
/// now sit in more than one profile (not for unmerges: they emit their own).
/// Returns the profiles they split into.
pub(super) fn emit_splits(
    tx: &mut Tx,
    cause: &Cause,
    out: &Recomputed,
    old_active: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut split_into = BTreeSet::new();
    if matches!(cause, Cause::Unmerge { .. }) {
        return split_into;
    }
    let now = tx.now();
    for old in old_active {
        let now_in: BTreeSet<&String> = out
            .rows
            .values()
            .filter(|r| &r.customer_id == old)
            .filter_map(|r| out.customer_of.get(&r.id))
            .collect();
        if now_in.len() > 1 {
            split_into.extend(now_in.iter().map(|c| (*c).clone()));
            tx.emit(
                NewEvent::of(
                    &IdentityEvent::CustomerSplit(events::CustomerSplit {
                        customer_id: old.clone(),
                        into: now_in.iter().map(|c| (*c).clone()).collect(),
                        reason: match cause {
                            Cause::Rebuild { .. } => "regrouped under the rules in force",
                            _ => "an identifier became shared or quarantined",
                        },
                        cause: cause.describe(),
                    }),
                    now,
                )
                .channel(cause.channel())
                .subject("customer_id", old),
            );
        }
    }
    split_into
}

/// `identity.conflict` / `identity.verification_required` for the links
/// this cause added that the rules refused.
pub(super) fn emit_refusals(tx: &mut Tx, cause: &Cause, out: &Recomputed) {
    let now = tx.now();
    for (link_id, refusal) in &out.resolution.refused {
        if !cause.is_new(link_id) {
            continue;
        }
        let Some(link) = out.links.get(link_id) else {
            continue;
        };
        let customers: BTreeSet<&String> = [&link.from_id, &link.to_id]
            .into_iter()
            .filter_map(|id| out.customer_of.get(id))
            .collect();
        let (kind, refused) = match refusal {
            Refusal::LimitExceeded { kind, limit } => (
                IdentityEvent::Conflict as fn(_) -> _,
                events::Refused {
                    rule: "max_per_profile",
                    kind: Some(kind.clone()),
                    limit: Some(*limit),
                },
            ),
            Refusal::NeedsVerification => (
                IdentityEvent::VerificationRequired as fn(_) -> _,
                events::Refused {
                    rule: "verified_identifier_required",
                    kind: None,
                    limit: None,
                },
            ),
        };
        let mut event = NewEvent::of(
            &kind(events::LinkRefused {
                link: LinkBody::of(link, &out.rows),
                customer_ids: customers.iter().map(|c| (*c).clone()).collect(),
                refused,
                cause: cause.describe(),
            }),
            now,
        )
        .channel(cause.channel());
        if let Some(first) = customers.iter().next() {
            event = event.subject("customer_id", first);
        }
        tx.emit(event);
    }
}
