//! An operator's unmerge: retract the links a merge rests on and regroup.

use super::*;

/// The profiles an unmerge leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmergeReport {
    pub merge_id: String,
    pub survivor_id: String,
    pub merged_id: String,
    pub retracted_links: Vec<String>,
    /// Profile id → its identifiers ("type:value"), after the unmerge.
    pub profiles: BTreeMap<String, Vec<String>>,
}

/// Undoes a merge: retracts every active link between the merged side and
/// the rest of the survivor, regroups, marks the merge undone and runs
/// `follow_up` (commerce gives orders and cart lines back to their owners).
/// With `preview`, computes the regrouping and rolls it back
/// ([`IdentityError::Preview`] carries the report).
pub async fn unmerge(
    tx: &mut Tx,
    rules: &IdentityRules,
    merge_id: &str,
    channel_id: Option<ChannelId>,
    preview: bool,
    follow_up: SeparationFollowUp,
) -> Result<UnmergeReport, IdentityError> {
    let now = tx.now();
    let merge = store::get_merge(&mut *tx.conn(), merge_id)
        .await?
        .ok_or(IdentityError::MergeNotFound)?;
    if merge.undone_at.is_some() {
        return Err(IdentityError::AlreadyUndone(merge.id));
    }
    let (group_ids, cut) = links_to_cut(tx, &merge).await?;
    store::retract_links(tx.conn(), &cut, &format!("unmerge:{}", merge.id), now).await?;
    store::mark_merge_undone(tx.conn(), &merge.id, &format!("unmerge:{}", merge.id), now).await?;
    let cause = Cause::Unmerge {
        merge_id: merge.id.clone(),
        channel_id,
    };
    let recomputed = recompute(tx, rules, &group_ids, &cause).await?;
    let profiles = identifiers_by_profile(&recomputed);
    let report = UnmergeReport {
        merge_id: merge.id.clone(),
        survivor_id: merge.survivor_id.clone(),
        merged_id: merge.merged_id.clone(),
        retracted_links: cut,
        profiles,
    };
    if preview {
        return Err(IdentityError::Preview(Box::new(report)));
    }
    tx.emit(
        NewEvent::of(
            &IdentityEvent::CustomerUnmerged(events::CustomerUnmerged {
                merge_id: report.merge_id.clone(),
                customer_id: report.survivor_id.clone(),
                unmerged_customer_id: report.merged_id.clone(),
                retracted_links: report.retracted_links.clone(),
                profiles: report.profiles.clone(),
            }),
            now,
        )
        .channel(channel_id)
        .subject("customer_id", &report.survivor_id)
        .subject("unmerged_customer_id", &report.merged_id),
    );
    let separation = Separation {
        merge_id: Some(report.merge_id.clone()),
        profiles: report.profiles.keys().cloned().collect(),
        channel_id,
    };
    follow_up(tx, rules, &separation).await?;
    Ok(report)
}

/// The identifiers of the profiles the merged side is in now, and the
/// active links between the merged side and the rest of them.
async fn links_to_cut(
    tx: &mut Tx,
    merge: &store::MergeRow,
) -> Result<(Vec<String>, Vec<String>), IdentityError> {
    let side_rows = store::identifiers_by_ids(tx.conn(), &merge.merged_side).await?;
    let current: BTreeSet<String> = side_rows.iter().map(|r| r.customer_id.clone()).collect();
    let customers: Vec<String> = current.into_iter().collect();
    let group = store::identifiers_of_customers(tx.conn(), &customers).await?;
    let side: BTreeSet<&str> = merge.merged_side.iter().map(String::as_str).collect();
    let group_ids: Vec<String> = group.iter().map(|r| r.id.clone()).collect();
    let links = store::active_links_touching(tx.conn(), &group_ids).await?;
    let cut: Vec<String> = links
        .iter()
        .filter(|l| side.contains(l.from_id.as_str()) != side.contains(l.to_id.as_str()))
        .map(|l| l.id.clone())
        .collect();
    Ok((group_ids, cut))
}

/// Profile id → its identifiers ("type:value", sorted) after a regrouping.
fn identifiers_by_profile(recomputed: &Recomputed) -> BTreeMap<String, Vec<String>> {
    let mut profiles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, customer) in &recomputed.customer_of {
        if let Some(row) = recomputed.rows.get(id) {
            profiles
                .entry(customer.clone())
                .or_default()
                .push(format!("{}:{}", row.kind, row.value));
        }
    }
    for list in profiles.values_mut() {
        list.sort();
    }
    profiles
}
