//! The pure half of sharding: which shard an object belongs to, who is alive, and which shards
//! this replica should take or give up. No I/O; the manager feeds it what the Leases say.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

/// Most shards `--shards` accepts: one Lease read per shard per renew interval, and bounded
/// metric labels (`shard="0"` … `shard="63"`).
pub const MAX_SHARDS: u16 = 64;

/// The shard of the object `namespace/name` among `shards`:
/// `jump_hash(first 8 bytes of SHA-256("<namespace>/<name>") as big-endian u64, shards)`.
///
/// SHA-256 makes it stable across builds, platforms and languages (anyone can compute it), and
/// the jump consistent hash (Lamping & Veach 2014) moves only about 1/N of the objects when N
/// changes to N+1, instead of nearly all of them as `mod N` would.
pub fn shard_of(namespace: &str, name: &str, shards: u16) -> u16 {
    let digest = Sha256::new().chain_update(namespace).chain_update("/").chain_update(name).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    jump_hash(u64::from_be_bytes(first), shards)
}

/// Jump consistent hash: a bucket in `0..buckets` (0 when `buckets` is 0).
pub fn jump_hash(mut key: u64, buckets: u16) -> u16 {
    let (mut b, mut j) = (0u64, 0u64);
    while j < u64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // (b + 1) * 2^31 / ((key >> 33) + 1), as in the paper (floating point on purpose: it is
        // the reference definition, and the values stay far below 2^53).
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let next = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as u64;
        j = next;
    }
    u16::try_from(b).unwrap_or(0)
}

/// What a shard's Lease says, as the balance needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// No holder, or its holder stopped renewing a full lease duration ago.
    Free,
    /// Held (and renewed in time) by this identity.
    Held(String),
    /// Could not be read this round: neither taken nor counted.
    Unknown,
}

/// What to do this round. At most one kind of change per round keeps the replicas from
/// trading shards back and forth.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub take: Vec<u16>,
    pub release: Vec<u16>,
}

/// `(floor, ceil)` of `shards / live`: every replica aims for `ceil` shards and gives up any
/// beyond it; with fewer than `floor`, it is short.
pub fn targets(shards: u16, live: usize) -> (usize, usize) {
    let (n, live) = (usize::from(shards), live.max(1));
    (n / live, n.div_ceil(live))
}

/// The balance step of replica `me`, given the live members (heartbeats) and each shard's holder.
///
/// 1. Holding more than `ceil`: give up the excess (highest shard numbers first).
/// 2. Else, free shards: take the lowest ones, up to `ceil`.
/// 3. Else, when a live replica is short (below `floor`) and `me` holds the most (ties: the
///    smallest identity) and more than `floor`: give up one, which the short replica takes.
///
/// Live replicas are the members plus `me` plus every identity holding an unexpired Lease.
pub fn plan(me: &str, members: &BTreeSet<String>, holders: &[Holder]) -> Plan {
    let shards = u16::try_from(holders.len()).unwrap_or(MAX_SHARDS);
    let mut held: BTreeMap<&str, Vec<u16>> = members.iter().map(|m| (m.as_str(), Vec::new())).collect();
    held.entry(me).or_default();
    for (i, h) in (0..shards).zip(holders) {
        if let Holder::Held(who) = h {
            held.entry(who.as_str()).or_default().push(i);
        }
    }
    let (floor, ceil) = targets(shards, held.len());
    let mine = held.get(me).cloned().unwrap_or_default();
    if mine.len() > ceil {
        let excess = mine.len() - ceil;
        return Plan { release: mine.iter().rev().take(excess).copied().collect(), ..Plan::default() };
    }
    let free: Vec<u16> = (0..shards).zip(holders).filter(|(_, h)| **h == Holder::Free).map(|(i, _)| i).collect();
    if !free.is_empty() {
        return Plan { take: free.into_iter().take(ceil - mine.len()).collect(), ..Plan::default() };
    }
    let someone_short = held.values().any(|s| s.len() < floor);
    // BTreeMap order: among equals, the first (smallest identity) wins.
    let richest = held.iter().fold(None::<(&str, usize)>, |best, (who, s)| match best {
        Some((_, n)) if n >= s.len() => best,
        _ => Some((who, s.len())),
    });
    if someone_short && richest.is_some_and(|(who, _)| who == me) && mine.len() > floor {
        return Plan { release: mine.last().copied().into_iter().collect(), ..Plan::default() };
    }
    Plan::default()
}

/// Heartbeats of the replicas, kept in one annotation of the members Lease as JSON
/// `{"<identity>": <unix milliseconds>}`.
pub const MEMBERS_ANNOTATION: &str = "gitseal.dev/shard-members";
/// Most members remembered (the newest win): whoever can edit the controller namespace cannot
/// make the controller keep an unbounded map.
pub const MAX_MEMBERS: usize = 256;
/// An annotation larger than this is ignored and rewritten.
pub const MAX_MEMBERS_BYTES: usize = 64 * 1024;

/// The members map after `me` beats at `now_ms` (or leaves, when `join` is false): entries older
/// than `ttl_ms` are dropped. Returns the new annotation value and the live identities.
pub fn heartbeat(current: Option<&str>, me: &str, now_ms: i64, ttl_ms: i64, join: bool) -> (String, BTreeSet<String>) {
    let mut map: BTreeMap<String, i64> =
        current.filter(|s| s.len() <= MAX_MEMBERS_BYTES).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    map.retain(|_, at| now_ms.saturating_sub(*at) <= ttl_ms);
    if join {
        map.insert(me.to_string(), now_ms);
    } else {
        map.remove(me);
    }
    if map.len() > MAX_MEMBERS {
        let mut by_age: Vec<(String, i64)> = map.into_iter().collect();
        by_age.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_age.truncate(MAX_MEMBERS);
        map = by_age.into_iter().collect();
    }
    let live = map.keys().cloned().collect();
    (serde_json::to_string(&map).unwrap_or_else(|_| "{}".into()), live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    fn held(who: &str) -> Holder {
        Holder::Held(who.into())
    }

    /// Run the balance of every replica, one after another, until nothing changes.
    fn settle(replicas: &[&str], holders: &mut [Holder]) -> usize {
        let members = set(replicas);
        for round in 0..50 {
            let mut changed = false;
            for me in replicas {
                let p = plan(me, &members, holders);
                for i in &p.release {
                    holders[usize::from(*i)] = Holder::Free;
                }
                for i in &p.take {
                    holders[usize::from(*i)] = held(me);
                }
                changed |= p != Plan::default();
            }
            if !changed {
                return round;
            }
        }
        panic!("no stable balance after 50 rounds: {holders:?}");
    }

    fn counts(replicas: &[&str], holders: &[Holder]) -> Vec<usize> {
        replicas.iter().map(|r| holders.iter().filter(|h| **h == held(r)).count()).collect()
    }

    #[test]
    fn the_reference_vectors_of_the_jump_hash_hold() {
        // The test vectors of github.com/dgryski/go-jump (jump_test.go).
        assert_eq!(jump_hash(1, 1), 0);
        assert_eq!(jump_hash(42, 57), 43);
        assert_eq!(jump_hash(0xDEAD_10CC, 1), 0);
        assert_eq!(jump_hash(0xDEAD_10CC, 666), 361);
        assert_eq!(jump_hash(256, 1024), 520);
        assert_eq!(jump_hash(5, 0), 0);
    }

    #[test]
    fn an_object_always_lands_in_the_same_shard_and_shards_fill_evenly() {
        assert_eq!(shard_of("team-a", "db", 8), shard_of("team-a", "db", 8));
        // The separator is part of the input: "a/bc" and "ab/c" are different objects.
        let mut per = [0usize; 8];
        for i in 0..8000 {
            per[usize::from(shard_of("ns", &format!("s{i}"), 8))] += 1;
        }
        assert!(per.iter().all(|&n| (800..1200).contains(&n)), "{per:?}");
        assert_eq!(shard_of("ns", "anything", 1), 0);
    }

    #[test]
    fn going_from_n_to_n_plus_one_shards_moves_about_one_object_in_n_plus_one() {
        let moved = (0..10_000).filter(|i| shard_of("ns", &format!("s{i}"), 4) != shard_of("ns", &format!("s{i}"), 5));
        let moved = moved.count();
        // Ideal 1/5 = 2000; `mod N` would move 80 %.
        assert!((1700..2300).contains(&moved), "{moved}");
    }

    #[test]
    fn targets_are_floor_and_ceiling_of_shards_per_live_replica() {
        assert_eq!(targets(6, 3), (2, 2));
        assert_eq!(targets(4, 3), (1, 2));
        assert_eq!(targets(3, 5), (0, 1));
        assert_eq!(targets(8, 0), (8, 8));
    }

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let mut h = vec![Holder::Free; 6];
        settle(&["a"], &mut h);
        assert_eq!(counts(&["a"], &h), [6]);
    }

    #[test]
    fn replicas_that_join_get_an_even_share_from_those_holding_more() {
        let mut h = vec![held("a"); 6];
        settle(&["a", "b", "c"], &mut h);
        assert_eq!(counts(&["a", "b", "c"], &h), [2, 2, 2]);
        let mut h = vec![held("a"), held("a"), held("b"), held("b")];
        settle(&["a", "b", "c"], &mut h);
        let c = counts(&["a", "b", "c"], &h);
        assert_eq!(c.iter().sum::<usize>(), 4);
        assert!(c.iter().all(|&n| (1..=2).contains(&n)), "{c:?}");
    }

    #[test]
    fn the_shards_of_a_replica_that_went_are_taken_by_the_others() {
        // c died: its Leases expired (Free) and its heartbeat is gone.
        let mut h = vec![held("a"), held("a"), held("b"), held("b"), Holder::Free, Holder::Free];
        settle(&["a", "b"], &mut h);
        assert_eq!(counts(&["a", "b"], &h), [3, 3]);
    }

    #[test]
    fn a_holder_without_a_heartbeat_still_counts_as_live_and_unknown_shards_are_left_alone() {
        // b holds 3 unexpired Leases but its heartbeat is not seen: a still aims for ceil(6/2).
        let h = vec![Holder::Free, Holder::Free, Holder::Free, held("b"), held("b"), held("b")];
        assert_eq!(plan("a", &set(&["a"]), &h).take, [0, 1, 2]);
        let h = vec![Holder::Unknown, Holder::Free];
        assert_eq!(plan("a", &set(&["a"]), &h).take, [1]);
    }

    #[test]
    fn a_balanced_set_makes_no_change() {
        let h = vec![held("a"), held("b"), held("c"), held("a"), held("b"), held("c")];
        for me in ["a", "b", "c"] {
            assert_eq!(plan(me, &set(&["a", "b", "c"]), &h), Plan::default());
        }
    }

    #[test]
    fn heartbeats_expire_members_leave_and_the_map_is_capped() {
        let (json, live) = heartbeat(None, "a", 1000, 500, true);
        assert_eq!(live, set(&["a"]));
        let (json, live) = heartbeat(Some(&json), "b", 1400, 500, true);
        assert_eq!(live, set(&["a", "b"]));
        let (json, live) = heartbeat(Some(&json), "b", 1600, 500, true);
        assert_eq!(live, set(&["b"]), "a last beat 600 ms ago");
        let (_, live) = heartbeat(Some(&json), "b", 1700, 500, false);
        assert!(live.is_empty());
        let (_, live) = heartbeat(Some("not json"), "a", 1, 500, true);
        assert_eq!(live, set(&["a"]));
        let many: BTreeMap<String, i64> = (0..1000).map(|i| (format!("r{i:04}"), 1000 + i)).collect();
        let (json, live) = heartbeat(Some(&serde_json::to_string(&many).unwrap()), "me", 2000, 5000, true);
        assert_eq!(live.len(), MAX_MEMBERS);
        assert!(live.contains("me") && live.contains("r0999") && !live.contains("r0000"));
        assert!(json.len() <= MAX_MEMBERS_BYTES);
    }
}
