//! Step 3's writes: each planned group, checked against the database first.

use super::*;

/// Writes one batch of groups (one writer operation).
pub(super) async fn write_batch(
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
    if !unchanged_since_read(tx, links, &group, &rows, &ids).await? {
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
    let created = super::super::activate_profile(tx, survivor).await?;
    write_members(tx, &group, &rows, &cause, outcome).await?;
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
            .channel(cause.channel())
            .subject("customer_id", survivor),
        );
    }
    if !group.merges.is_empty() {
        outcome.merged_into.push(survivor.clone());
    }
    for merge in group.merges {
        write_merge(tx, survivor, merge, &rows, &cause).await?;
        outcome.merges += 1;
    }
    emit_splits(tx, group.splits, &cause, outcome);
    Ok(())
}

/// Whether the group's rows are as read (same profile, status and
/// verification) and no active link touching them is new.
async fn unchanged_since_read(
    tx: &mut Tx,
    links: &IdColumn,
    group: &PlannedGroup,
    rows: &BTreeMap<String, IdentifierRow>,
    ids: &[String],
) -> Result<bool, IdentityError> {
    let rows_unchanged = rows.len() == group.members.len()
        && group.members.iter().all(|m| {
            rows.get(&m.id).is_some_and(|r| {
                r.customer_id == m.old_customer
                    && r.status == m.old_status
                    && r.verified == m.old_verified
            })
        });
    Ok(rows_unchanged
        && store::active_links_touching(tx.conn(), ids)
            .await?
            .iter()
            .all(|l| links.contains(&l.id)))
}

/// The members' rows that change, with their status and blocked events.
async fn write_members(
    tx: &mut Tx,
    group: &PlannedGroup,
    rows: &BTreeMap<String, IdentifierRow>,
    cause: &Cause,
    outcome: &mut BatchOutcome,
) -> Result<(), IdentityError> {
    let now = tx.now();
    let survivor = &group.survivor;
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
                emit_status_change(tx, row, m.status, survivor, channel, cause);
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
    Ok(())
}

/// One merge into `survivor`: its record, the merged profile marked, the event.
async fn write_merge(
    tx: &mut Tx,
    survivor: &str,
    merge: PlannedMerge,
    rows: &BTreeMap<String, IdentifierRow>,
    cause: &Cause,
) -> Result<(), IdentityError> {
    let now = tx.now();
    let record = MergeRow {
        id: MergeId::new().to_string(),
        survivor_id: survivor.to_string(),
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
                customer_id: survivor.to_string(),
                merged_customer_id: merge.merged.clone(),
                reason: merge.reason.to_string(),
                link: link.as_ref().map(|l| LinkBody::of(l, rows)),
                cause: cause.describe(),
            }),
            now,
        )
        .channel(cause.channel())
        .subject("customer_id", survivor)
        .subject("merged_customer_id", &merge.merged),
    );
    Ok(())
}

/// `customer.split` for each previously active profile now spread over
/// several profiles.
fn emit_splits(
    tx: &mut Tx,
    splits: Vec<(String, Vec<String>)>,
    cause: &Cause,
    outcome: &mut BatchOutcome,
) {
    let now = tx.now();
    for (old, into) in splits {
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
            .channel(cause.channel())
            .subject("customer_id", &old),
        );
        outcome.splits += 1;
    }
}
