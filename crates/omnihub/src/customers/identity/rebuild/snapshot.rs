//! What a rebuild reads: the whole identity graph, page by page, into flat
//! columns (ids as `u128`, sorted) for the compact resolver.

use super::*;

/// A column of ids: 16 bytes each while every id is a canonical UUID in
/// lower case (whose numeric order is the text order), text otherwise.
#[derive(Clone, Debug)]
pub(super) enum IdColumn {
    Uuids(Vec<u128>),
    Text(Vec<String>),
}

pub(super) fn parse_uuid(s: &str) -> Option<u128> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

pub(super) fn format_uuid(value: u128) -> String {
    let s = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

impl IdColumn {
    pub(super) fn new() -> IdColumn {
        IdColumn::Uuids(Vec::new())
    }

    pub(super) fn push(&mut self, s: &str) {
        if let IdColumn::Uuids(values) = self {
            if let Some(u) = parse_uuid(s) {
                values.push(u);
                return;
            }
            let text = values.iter().map(|&u| format_uuid(u)).collect();
            *self = IdColumn::Text(text);
        }
        if let IdColumn::Text(values) = self {
            values.push(s.to_string());
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            IdColumn::Uuids(v) => v.len(),
            IdColumn::Text(v) => v.len(),
        }
    }

    pub(super) fn get(&self, i: u32) -> String {
        match self {
            IdColumn::Uuids(v) => format_uuid(v[i as usize]),
            IdColumn::Text(v) => v[i as usize].clone(),
        }
    }

    pub(super) fn strictly_sorted(&self) -> bool {
        match self {
            IdColumn::Uuids(v) => v.windows(2).all(|w| w[0] < w[1]),
            IdColumn::Text(v) => v.windows(2).all(|w| w[0] < w[1]),
        }
    }

    /// The order that sorts the column (byte order of the text).
    pub(super) fn sorting_permutation(&self) -> Vec<u32> {
        let mut perm: Vec<u32> = (0..self.len() as u32).collect();
        match self {
            IdColumn::Uuids(v) => perm.sort_by_key(|&i| v[i as usize]),
            IdColumn::Text(v) => perm.sort_by(|&a, &b| v[a as usize].cmp(&v[b as usize])),
        }
        perm
    }

    pub(super) fn permute(&mut self, perm: &[u32]) {
        match self {
            IdColumn::Uuids(v) => *v = permute(v, perm),
            IdColumn::Text(v) => *v = permute(v, perm),
        }
    }

    pub(super) fn sort_dedup(&mut self) {
        match self {
            IdColumn::Uuids(v) => {
                v.sort_unstable();
                v.dedup();
            }
            IdColumn::Text(v) => {
                v.sort_unstable();
                v.dedup();
            }
        }
    }

    pub(super) fn append(&mut self, other: &IdColumn) {
        for i in 0..other.len() as u32 {
            match other {
                IdColumn::Uuids(v) => match self {
                    IdColumn::Uuids(mine) => mine.push(v[i as usize]),
                    IdColumn::Text(_) => self.push(&format_uuid(v[i as usize])),
                },
                IdColumn::Text(v) => self.push(&v[i as usize]),
            }
        }
    }

    /// The index of `s` in a sorted column.
    pub(super) fn position(&self, s: &str) -> Option<u32> {
        let found = match self {
            IdColumn::Uuids(v) => v.binary_search(&parse_uuid(s)?).ok()?,
            IdColumn::Text(v) => v.binary_search_by(|x| x.as_str().cmp(s)).ok()?,
        };
        u32::try_from(found).ok()
    }

    /// The index in this sorted column of entry `i` of `other`.
    pub(super) fn position_of(&self, other: &IdColumn, i: u32) -> Option<u32> {
        let found = match (self, other) {
            (IdColumn::Uuids(mine), IdColumn::Uuids(theirs)) => {
                mine.binary_search(&theirs[i as usize]).ok()?
            }
            _ => return self.position(&other.get(i)),
        };
        u32::try_from(found).ok()
    }

    pub(super) fn contains(&self, s: &str) -> bool {
        self.position(s).is_some()
    }
}

pub(super) fn permute<T: Clone>(values: &[T], perm: &[u32]) -> Vec<T> {
    perm.iter().map(|&i| values[i as usize].clone()).collect()
}

/// The graph as read, indexed by identifier (id order) and link (id order).
pub(super) struct Snapshot {
    pub(super) ids: IdColumn,
    pub(super) kinds: Vec<u8>,
    /// Profile rank of the current profile and of the home profile.
    pub(super) customer: Vec<u32>,
    pub(super) home: Vec<u32>,
    pub(super) status: Vec<NodeStatus>,
    pub(super) verified: Vec<bool>,
    pub(super) blocked: Vec<bool>,
    /// Every profile id named as current or home profile, sorted.
    pub(super) profiles: IdColumn,
    /// The profile row exists and is not merged.
    pub(super) profile_active: Vec<bool>,
    pub(super) links: IdColumn,
    pub(super) ends: Vec<(u32, u32)>,
    pub(super) link_verified: Vec<super::LinkTrust>,
    pub(super) link_times: Vec<i64>,
}

pub(super) async fn read_snapshot(
    store: &Store,
    rules: &IdentityRules,
    crules: &CompactRules,
    progress: Progress<'_>,
) -> Result<Snapshot, IdentityError> {
    let IdentifierColumns {
        ids,
        homes,
        customers,
        kinds,
        status,
        verified,
        blocked,
    } = read_identifiers(store, rules, crules, progress).await?;
    let mut profiles = homes.clone();
    profiles.append(&customers);
    profiles.sort_dedup();
    let rank = |column: &IdColumn, i: u32| -> Result<u32, IdentityError> {
        profiles.position_of(column, i).ok_or_else(|| {
            crate::platform::storage::StoreError::Corrupt("profile rank".into()).into()
        })
    };
    let n = ids.len() as u32;
    let home: Vec<u32> = (0..n).map(|i| rank(&homes, i)).collect::<Result<_, _>>()?;
    let customer: Vec<u32> = (0..n)
        .map(|i| rank(&customers, i))
        .collect::<Result<_, _>>()?;
    drop((homes, customers));
    let profile_active = read_profile_activity(store, &profiles, progress).await?;
    let links = read_links(store, &ids, progress).await?;
    Ok(Snapshot {
        ids,
        kinds,
        customer,
        home,
        status,
        verified,
        blocked,
        profiles,
        profile_active,
        links: links.ids,
        ends: links.ends,
        link_verified: links.verified,
        link_times: links.times,
    })
}

/// The identifiers' columns as read, in id order.
struct IdentifierColumns {
    ids: IdColumn,
    homes: IdColumn,
    customers: IdColumn,
    kinds: Vec<u8>,
    status: Vec<NodeStatus>,
    verified: Vec<bool>,
    blocked: Vec<bool>,
}

async fn read_identifiers(
    store: &Store,
    rules: &IdentityRules,
    crules: &CompactRules,
    progress: Progress<'_>,
) -> Result<IdentifierColumns, IdentityError> {
    let mut ids = IdColumn::new();
    let mut homes = IdColumn::new();
    let mut customers = IdColumn::new();
    let (mut kinds, mut status, mut verified, mut blocked) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut after = String::new();
    loop {
        let page = store::rebuild_identifiers_page(store.reader(), &after, REBUILD_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for row in &page {
            ids.push(&row.id);
            homes.push(&row.home_customer_id);
            customers.push(&row.customer_id);
            kinds.push(crules.kind(&row.kind));
            status.push(row.status);
            verified.push(row.verified);
            blocked.push(rules.is_blocked(&row.value));
        }
        if ids.len() % REBUILD_PROGRESS_EVERY < page.len() {
            progress(RebuildPhase::Identifiers, ids.len());
        }
    }
    // The database's text order is byte order for our ids; if it was not,
    // sort here (indexes must follow id order).
    if !ids.strictly_sorted() {
        let perm = ids.sorting_permutation();
        ids.permute(&perm);
        homes.permute(&perm);
        customers.permute(&perm);
        kinds = permute(&kinds, &perm);
        status = permute(&status, &perm);
        verified = permute(&verified, &perm);
        blocked = permute(&blocked, &perm);
    }
    Ok(IdentifierColumns {
        ids,
        homes,
        customers,
        kinds,
        status,
        verified,
        blocked,
    })
}

/// Per profile (by rank): the row exists and is not merged.
async fn read_profile_activity(
    store: &Store,
    profiles: &IdColumn,
    progress: Progress<'_>,
) -> Result<Vec<bool>, IdentityError> {
    let mut profile_active = vec![false; profiles.len()];
    let mut after = String::new();
    let mut read = 0usize;
    loop {
        let page = store::rebuild_customers_page(store.reader(), &after, REBUILD_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0.clone();
        for (id, active) in &page {
            if let Some(r) = profiles.position(id) {
                profile_active[r as usize] = *active;
            }
        }
        read += page.len();
        if read % REBUILD_PROGRESS_EVERY < page.len() {
            progress(RebuildPhase::Profiles, read);
        }
    }
    Ok(profile_active)
}

/// The active links' columns, in link id order.
struct LinkColumns {
    ids: IdColumn,
    ends: Vec<(u32, u32)>,
    verified: Vec<super::LinkTrust>,
    times: Vec<i64>,
}

async fn read_links(
    store: &Store,
    ids: &IdColumn,
    progress: Progress<'_>,
) -> Result<LinkColumns, IdentityError> {
    let mut links = IdColumn::new();
    let (mut ends, mut link_verified, mut link_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut after = String::new();
    loop {
        let page = store::rebuild_links_page(store.reader(), &after, REBUILD_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for link in &page {
            // A link to an identifier created after the identifiers were
            // read is left out: its group is re-checked when written.
            let (Some(a), Some(b)) = (ids.position(&link.from_id), ids.position(&link.to_id))
            else {
                continue;
            };
            links.push(&link.id);
            ends.push((a, b));
            link_verified.push(LinkTrust::of(link.verified, link.trusted));
            link_times.push(link.observed_at);
        }
        if links.len() % REBUILD_PROGRESS_EVERY < page.len() {
            progress(RebuildPhase::Links, links.len());
        }
    }
    if !links.strictly_sorted() {
        let perm = links.sorting_permutation();
        links.permute(&perm);
        ends = permute(&ends, &perm);
        link_verified = permute(&link_verified, &perm);
        link_times = permute(&link_times, &perm);
    }
    Ok(LinkColumns {
        ids: links,
        ends,
        verified: link_verified,
        times: link_times,
    })
}
