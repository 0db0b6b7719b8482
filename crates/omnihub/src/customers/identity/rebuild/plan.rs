//! Step 3's plan: the groups whose rows change, with their merges and
//! splits, cut into writer operations.

use super::*;

/// The groups to write, in batches, with their merges and splits.
pub(super) fn plan(
    snapshot: &Snapshot,
    crules: &CompactRules,
    resolution: &compact::CompactResolution,
    retract: &[(u32, u32)],
    report: &mut RebuildReport,
) -> Vec<Vec<PlannedGroup>> {
    let n = snapshot.ids.len();
    let mut has_links_to_retract = vec![false; n];
    let mut retract_of: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(node, e) in retract {
        has_links_to_retract[node as usize] = true;
        retract_of.entry(node).or_default().push(e);
    }
    let (changed_group, is_survivor) =
        changed_groups(snapshot, crules, resolution, &has_links_to_retract, report);
    let splits = Splits::find(snapshot, resolution);

    // Members of the changed groups, group by group (roots ascending).
    let mut members: Vec<(u32, u32)> = (0..n as u32)
        .filter(|&i| changed_group[resolution.group_of(i) as usize])
        .map(|i| (resolution.group_of(i), i))
        .collect();
    members.sort_by_key(|&(root, _)| root);
    drop(changed_group);
    let merge_links = merge_links(snapshot, resolution, &is_survivor, &members);

    let context = Planning {
        snapshot,
        crules,
        resolution,
        retract_of: &retract_of,
        has_links_to_retract: &has_links_to_retract,
        splits: &splits,
        merge_links: &merge_links,
    };
    let mut batches: Vec<Vec<PlannedGroup>> = Vec::new();
    let mut batch: Vec<PlannedGroup> = Vec::new();
    let mut batch_size = 0usize;
    let mut splits_done: BTreeSet<u32> = BTreeSet::new();
    for run in members.chunk_by(|x, y| x.0 == y.0) {
        let group = context.group(run, &mut splits_done);
        if batch_size > 0 && batch_size + group.members.len() > REBUILD_BATCH_IDENTIFIERS {
            batches.push(std::mem::take(&mut batch));
            batch_size = 0;
        }
        batch_size += group.members.len();
        batch.push(group);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Per root: whether its group changes (an identifier moves, changes status
/// or verification, or loses links; or its profile row is not active); per
/// profile: whether it survives. Counts the profiles in `report`.
fn changed_groups(
    snapshot: &Snapshot,
    crules: &CompactRules,
    resolution: &compact::CompactResolution,
    has_links_to_retract: &[bool],
    report: &mut RebuildReport,
) -> (Vec<bool>, Vec<bool>) {
    let n = snapshot.ids.len();
    let mut is_survivor = vec![false; snapshot.profiles.len()];
    let mut changed_group = vec![false; n];
    for i in 0..n as u32 {
        let survivor = resolution.survivor_of(i);
        let root = resolution.group_of(i);
        if root == i {
            report.profiles += 1;
            is_survivor[survivor as usize] = true;
            if !snapshot.profile_active[survivor as usize] {
                changed_group[i as usize] = true;
            }
        }
        let x = i as usize;
        if snapshot.customer[x] != survivor
            || snapshot.status[x] != resolution.status(i)
            || snapshot.verified[x] != resolution.verified(crules, i)
            || has_links_to_retract[x]
        {
            changed_group[root as usize] = true;
        }
    }
    (changed_group, is_survivor)
}

/// Previously active profiles whose identifiers now sit in several
/// profiles, and the profiles each splits into.
struct Splits {
    split: Vec<bool>,
    into: BTreeMap<u32, BTreeSet<u32>>,
}

impl Splits {
    fn find(snapshot: &Snapshot, resolution: &compact::CompactResolution) -> Splits {
        let n = snapshot.ids.len();
        let p = snapshot.profiles.len();
        let mut first_new = vec![u32::MAX; p];
        let mut split = vec![false; p];
        for i in 0..n as u32 {
            let c = snapshot.customer[i as usize] as usize;
            if !snapshot.profile_active[c] {
                continue;
            }
            let s = resolution.survivor_of(i);
            if first_new[c] == u32::MAX {
                first_new[c] = s;
            } else if first_new[c] != s {
                split[c] = true;
            }
        }
        drop(first_new);
        let mut into: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for i in 0..n as u32 {
            let c = snapshot.customer[i as usize];
            if split[c as usize] {
                into.entry(c).or_default().insert(resolution.survivor_of(i));
            }
        }
        Splits { split, into }
    }
}

/// The link (and reason) of each merge.
type MergeLinks = HashMap<(u32, u32), Option<(u32, &'static str)>>;

/// Merges: per (group, previous active profile that survives nowhere), the
/// first applied link with exactly one end on that side.
fn merge_links(
    snapshot: &Snapshot,
    resolution: &compact::CompactResolution,
    is_survivor: &[bool],
    members: &[(u32, u32)],
) -> MergeLinks {
    let mut merge_links: MergeLinks = HashMap::new();
    for &(root, i) in members {
        let c = snapshot.customer[i as usize];
        if c != resolution.survivor_of(i)
            && snapshot.profile_active[c as usize]
            && !is_survivor[c as usize]
        {
            merge_links.insert((root, c), None);
        }
    }
    if !merge_links.is_empty() {
        for (e, reason) in resolution.joins() {
            let (a, b) = resolution.edge(e);
            let (ca, cb) = (snapshot.customer[a as usize], snapshot.customer[b as usize]);
            if ca == cb {
                continue;
            }
            let root = resolution.group_of(a);
            for c in [ca, cb] {
                if let Some(slot @ None) = merge_links.get_mut(&(root, c)) {
                    *slot = Some((e, reason.as_str()));
                }
            }
        }
    }
    merge_links
}

/// What planning one group reads.
struct Planning<'a> {
    snapshot: &'a Snapshot,
    crules: &'a CompactRules,
    resolution: &'a compact::CompactResolution,
    retract_of: &'a BTreeMap<u32, Vec<u32>>,
    has_links_to_retract: &'a [bool],
    splits: &'a Splits,
    merge_links: &'a MergeLinks,
}

impl Planning<'_> {
    /// The plan of one changed group, from its members `(root, identifier)`;
    /// each split is reported once, by the first group that meets it.
    fn group(&self, run: &[(u32, u32)], splits_done: &mut BTreeSet<u32>) -> PlannedGroup {
        let (snapshot, resolution) = (self.snapshot, self.resolution);
        let profile = |r: u32| snapshot.profiles.get(r);
        let root = run[0].0;
        let mut group = PlannedGroup {
            survivor: profile(resolution.survivor_of(root)),
            members: Vec::with_capacity(run.len()),
            merges: Vec::new(),
            splits: Vec::new(),
            retract: Vec::new(),
        };
        let mut sides: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for &(_, i) in run {
            let x = i as usize;
            let id = snapshot.ids.get(i);
            let c = snapshot.customer[x];
            if self.merge_links.contains_key(&(root, c)) {
                sides.entry(c).or_default().push(id.clone());
            }
            if self.splits.split[c as usize] && splits_done.insert(c) {
                let into = self
                    .splits
                    .into
                    .get(&c)
                    .map(|s| s.iter().map(|&r| profile(r)).collect())
                    .unwrap_or_default();
                group.splits.push((profile(c), into));
            }
            if let Some(edges) = self.retract_of.get(&i) {
                group
                    .retract
                    .extend(edges.iter().map(|&e| snapshot.links.get(e)));
            }
            group.members.push(PlannedMember {
                id,
                old_customer: profile(c),
                old_status: snapshot.status[x],
                old_verified: snapshot.verified[x],
                status: resolution.status(i),
                verified: resolution.verified(self.crules, i),
                blocked: self.has_links_to_retract[x],
            });
        }
        for (c, side) in sides {
            let (link, reason) = match self.merge_links.get(&(root, c)).copied().flatten() {
                Some((e, reason)) => (Some(snapshot.links.get(e)), reason),
                None => (None, "regrouped"),
            };
            group.merges.push(PlannedMerge {
                merged: profile(c),
                side,
                link,
                reason,
            });
        }
        group
    }
}
