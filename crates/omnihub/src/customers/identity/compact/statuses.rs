//! Step 2 of [`resolve`]: the statuses (quarantined, shared) decided from
//! raw degrees, then from the distinct neighbours of the few candidates.

use super::*;

/// Sets the status bits: quarantined (not an account; pinned or more than
/// `max_fanout` distinct neighbours), shared (a device seen with two values
/// of one unique type). `degree` holds the raw link counts (saturated) and
/// the flags the raw count of unique-type neighbours of devices (one, two+).
/// Raw degrees first; distinct neighbours only for the candidates.
pub(super) fn statuses(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &mut [u8],
    ends: &[[u32; 2]],
    times: &[i64],
    degree: Vec<u16>,
) -> Result<(), CompactError> {
    let candidates = mark_candidates(rules, kinds, flags, degree);
    if candidates > 0 {
        let mut adjacency = Adjacency::new(flags, ends, candidates);
        let undecided = decide_by_type(rules, kinds, flags, ends, &mut adjacency);
        if !undecided.is_empty() {
            let persons = person_components(rules, kinds, flags, ends);
            for k in undecided {
                let node = adjacency.nodes[k];
                let links = Links { ends, of: node };
                let list = adjacency.links_of(k);
                if persons_on_device(rules, kinds, flags, &persons, &links, times, list) >= 2 {
                    flags[node as usize] |= F_SHARED;
                }
            }
        }
    }
    for f in flags.iter_mut() {
        *f &= !(F_UNIQUE_ONE | F_UNIQUE_TWO | F_CANDIDATE);
    }
    Ok(())
}

/// Quarantines the pinned identifiers and flags as candidates those whose
/// raw counts may break a rule; returns how many candidates there are.
fn mark_candidates(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &mut [u8],
    degree: Vec<u16>,
) -> usize {
    let mut candidates = 0usize;
    for (i, f) in flags.iter_mut().enumerate() {
        let class = rules.info(kinds[i]).class;
        if class != IdentifierClass::Account && *f & F_PINNED != 0 {
            *f |= F_QUARANTINED;
            continue;
        }
        let fanout = class != IdentifierClass::Account
            && (usize::from(degree[i]) > rules.max_fanout || degree[i] == u16::MAX);
        let shared = class == IdentifierClass::Device && *f & F_UNIQUE_TWO != 0;
        if fanout || shared {
            *f |= F_CANDIDATE;
            candidates += 1;
        }
    }
    candidates
}

/// The candidates' links: candidate `nodes[k]`'s link indexes are
/// `links[offsets[k]..offsets[k + 1]]` (the other end, the verified and claim
/// bits and the time are read from the link).
struct Adjacency {
    nodes: Vec<u32>,
    offsets: Vec<u32>,
    links: Vec<u32>,
}

impl Adjacency {
    /// Built for the candidates only, found through a bitset (small enough
    /// to stay in cache while scanning the links).
    fn new(flags: &[u8], ends: &[[u32; 2]], candidates: usize) -> Adjacency {
        let n = flags.len();
        let mut is_candidate = vec![0u64; n.div_ceil(64)];
        let mut nodes: Vec<u32> = Vec::with_capacity(candidates);
        for (i, f) in flags.iter().enumerate() {
            if f & F_CANDIDATE != 0 {
                is_candidate[i / 64] |= 1 << (i % 64);
                nodes.push(i as u32);
            }
        }
        // A candidate's slot: candidates in the words before, plus those
        // before it in its word (constant time, a small table).
        let mut before = Vec::with_capacity(is_candidate.len());
        let mut total = 0usize;
        for word in &is_candidate {
            before.push(total);
            total += word.count_ones() as usize;
        }
        let candidate = |x: u32| is_candidate[(x / 64) as usize] & (1 << (x % 64)) != 0;
        let slot = |x: u32| {
            let word = (x / 64) as usize;
            before[word] + (is_candidate[word] & ((1u64 << (x % 64)) - 1)).count_ones() as usize
        };
        let mut offsets = vec![0u32; nodes.len() + 1];
        for &[a, b] in ends {
            let (a, b) = (a & NODE_MASK, b & NODE_MASK);
            if a == b {
                continue;
            }
            for x in [a, b] {
                if candidate(x) {
                    offsets[slot(x) + 1] += 1;
                }
            }
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut links = vec![0u32; offsets[nodes.len()] as usize];
        let mut fill = offsets.clone();
        for (e, &[a, b]) in ends.iter().enumerate() {
            let (a, b) = (a & NODE_MASK, b & NODE_MASK);
            if a == b {
                continue;
            }
            for x in [a, b] {
                if candidate(x) {
                    let k = slot(x);
                    links[fill[k] as usize] = e as u32;
                    fill[k] += 1;
                }
            }
        }
        Adjacency {
            nodes,
            offsets,
            links,
        }
    }

    fn links_of(&self, k: usize) -> &[u32] {
        &self.links[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }
}

/// Decides each candidate by its distinct neighbours: quarantined (fan-out)
/// or shared (two values of one person type). Sorts each candidate's links
/// by other end. Returns the devices the per-type rule left undecided (by
/// candidate index): their persons are counted once every quarantine is
/// known.
fn decide_by_type(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &mut [u8],
    ends: &[[u32; 2]],
    adjacency: &mut Adjacency,
) -> Vec<usize> {
    let mut per_kind = vec![0u32; rules.info.len()];
    let mut undecided: Vec<usize> = Vec::new();
    for (k, &node) in adjacency.nodes.iter().enumerate() {
        let i = node as usize;
        let range = adjacency.offsets[k] as usize..adjacency.offsets[k + 1] as usize;
        let list = &mut adjacency.links[range];
        let links = Links { ends, of: node };
        list.sort_unstable_by_key(|&e| links.other(e));
        let mut distinct = 0usize;
        for (y, verified) in links.distinct(list) {
            distinct += 1;
            let k = usize::from(kinds[y as usize]).min(per_kind.len() - 1);
            let person = rules.info[k].unique
                || (verified && rules.info[k].class == IdentifierClass::Claimable);
            if person {
                per_kind[k] += 1;
            }
        }
        let class = rules.info(kinds[i]).class;
        if class != IdentifierClass::Account && distinct > rules.max_fanout {
            flags[i] |= F_QUARANTINED;
        } else if class == IdentifierClass::Device && per_kind.iter().any(|&c| c >= 2) {
            flags[i] |= F_SHARED;
        } else if class == IdentifierClass::Device {
            undecided.push(k);
        }
        per_kind.fill(0);
    }
    undecided
}

/// The links of one identifier (`of`), read by link index.
struct Links<'a> {
    ends: &'a [[u32; 2]],
    of: u32,
}

impl Links<'_> {
    /// The other end of link `e`.
    fn other(&self, e: u32) -> u32 {
        let [a, b] = self.ends[e as usize];
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        if a == self.of { b } else { a }
    }

    fn verified(&self, e: u32) -> bool {
        self.ends[e as usize][0] & VERIFIED_BIT != 0
    }

    fn trusted(&self, e: u32) -> bool {
        self.ends[e as usize][1] & CLAIM_BIT == 0
    }

    /// The distinct neighbours of a list of links sorted by other end,
    /// each with whether any of its links is verified.
    fn distinct<'s>(&'s self, list: &'s [u32]) -> impl Iterator<Item = (u32, bool)> + 's {
        let mut run = 0usize;
        std::iter::from_fn(move || {
            let y = self.other(*list.get(run)?);
            let mut verified = false;
            while run < list.len() && self.other(list[run]) == y {
                verified |= self.verified(list[run]);
                run += 1;
            }
            Some((y, verified))
        })
    }
}

/// How many persons a device names (the resolver's rule): its person
/// identifiers, grouped by `persons` and by the device's trusted links of
/// one call (same time).
fn persons_on_device(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &[u8],
    persons: &Persons,
    links: &Links<'_>,
    times: &[i64],
    list: &[u32],
) -> usize {
    let info = |i: u32| rules.info(kinds[i as usize]);
    let free = |y: u32| flags[y as usize] & F_QUARANTINED == 0;
    let mut calls: Vec<(i64, u32)> = list
        .iter()
        .filter(|&&e| {
            let y = links.other(e);
            links.trusted(e)
                && free(y)
                && resolver::names_person_on_device(info(y).class, links.verified(e))
        })
        .map(|&e| (times[e as usize], links.other(e)))
        .collect();
    calls.sort_unstable();
    let mut local: BTreeMap<u32, u32> = BTreeMap::new();
    let local_root = |local: &BTreeMap<u32, u32>, mut x: u32| {
        while let Some(&up) = local.get(&x) {
            x = up;
        }
        x
    };
    for pair in calls.windows(2) {
        if pair[0].0 == pair[1].0 {
            let (ra, rb) = (persons.root(pair[0].1), persons.root(pair[1].1));
            let (la, lb) = (local_root(&local, ra), local_root(&local, rb));
            if la != lb {
                local.insert(la.max(lb), la.min(lb));
            }
        }
    }
    let mut roots: Vec<u32> = links
        .distinct(list)
        .filter(|&(y, verified)| {
            free(y) && resolver::names_person_on_device(info(y).class, verified)
        })
        .map(|(y, _)| local_root(&local, persons.root(y)))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    roots.len()
}

/// Person identifiers tied together by strong links (as in the resolver's
/// shared-device rule): both ends neither devices nor quarantined, the link
/// trusted, and verified when it names an email or phone. Roots are found
/// with path halving on a frozen copy (read-only after building).
struct Persons {
    parent: Vec<u32>,
}

impl Persons {
    fn root(&self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            x = self.parent[x as usize];
        }
        x
    }
}

fn person_components(
    rules: &CompactRules,
    kinds: &[u8],
    flags: &[u8],
    ends: &[[u32; 2]],
) -> Persons {
    let n = kinds.len();
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let find = |parent: &mut Vec<u32>, mut x: u32| {
        while parent[x as usize] != x {
            let up = parent[parent[x as usize] as usize];
            parent[x as usize] = up;
            x = up;
        }
        x
    };
    for &[a, b] in ends {
        let verified = a & VERIFIED_BIT != 0;
        let trusted = b & CLAIM_BIT == 0;
        let (a, b) = (a & NODE_MASK, b & NODE_MASK);
        if a == b || !trusted {
            continue;
        }
        let (ca, cb) = (
            rules.info(kinds[a as usize]).class,
            rules.info(kinds[b as usize]).class,
        );
        let device = ca == IdentifierClass::Device || cb == IdentifierClass::Device;
        let claimable = ca == IdentifierClass::Claimable || cb == IdentifierClass::Claimable;
        let quarantined = (flags[a as usize] | flags[b as usize]) & F_QUARANTINED != 0;
        if device || quarantined || (claimable && !verified) {
            continue;
        }
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb) as usize] = ra.min(rb);
        }
    }
    Persons { parent }
}
