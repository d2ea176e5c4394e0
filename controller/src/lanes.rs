//! New objects first (issue #14, item 3): two lanes in front of reconcile.
//!
//! kube-runtime's scheduler is first in, first out: at start-up, and whenever the key registry
//! changes, every SealedSecret is queued, and an object created meanwhile waits behind all of
//! them (Bitnami users report 5–15 minutes at 4,000 objects). Here the controller's reconcile
//! only sorts: an object whose status says its current generation was already handled
//! ([`is_unchanged`]) goes to a per-controller *resync lane* and the call returns at once; every
//! other object (created, changed, never synced) is reconciled right away. The resync lane is
//! drained by its own task, at most `--workers` objects at a time and only while no new or
//! changed object is being reconciled, so a new object never waits for the resync.
//!
//! - The lane holds `namespace/name` once each (a few dozen bytes per object) and reads the
//!   object from the cache when it gets to it, so it always sees the latest version.
//! - An object is never reconciled twice at once: a lane entry whose object is in flight
//!   is skipped (the running reconcile covers it), and an urgent reconcile of an object the lane
//!   is working on is retried a moment later.
//! - Readiness does not wait for the lane: it is work the probes cannot see; its length is the
//!   `gitseal_resync_backlog` gauge.
//! - A drift trigger (the owned Secret edited or deleted) of an unchanged object also takes the
//!   resync lane: kube-runtime does not say why it runs reconcile.
//! - The lane is never starved: a tenant who keeps creating or changing objects holds it back
//!   for at most [`STARVATION_LIMIT`] per object taken, so drift repair and re-encryption for
//!   everyone else still progress (at least a few objects a second per worker under a flood).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use gitseal_shared::types::SealedSecretObject;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};

/// How long the resync lane yields to urgent work before it takes its next object anyway.
pub const STARVATION_LIMIT: std::time::Duration = std::time::Duration::from_millis(250);

/// A drained lane gives back its memory when it held more than this many objects.
const SHRINK_ABOVE: usize = 1024;

/// Whether the object's status says this generation was already reconciled (successfully or
/// not): a resync, not news.
pub fn is_unchanged(ss: &SealedSecretObject) -> bool {
    ss.status
        .as_ref()
        .is_some_and(|s| s.observed_generation.is_some() && s.observed_generation == ss.metadata.generation)
}

/// Where the controller's reconcile sends an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// With `--shards`: an object of a shard this replica does not hold. Its holder reconciles
    /// it; gaining the shard requeues it here.
    Elsewhere,
    /// Unchanged ([`is_unchanged`]): the resync lane.
    Resync,
    /// Created, changed, never synced or being deleted: now.
    Urgent,
}

/// The lane of `ss` on this replica (`shards`: the shards it holds, with `--shards`). Gaining a
/// shard requeues every cached object: those of other shards go nowhere, the unchanged ones of
/// the gained shard to the resync lane, so a rebalance does not hold up new objects.
pub fn lane_for(ss: &SealedSecretObject, shards: Option<&crate::shard::Shards>) -> Lane {
    use kube::ResourceExt as _;
    let settled = ss.metadata.deletion_timestamp.is_none() && is_unchanged(ss);
    lane_of(&ss.namespace().unwrap_or_default(), &ss.name_any(), settled, shards)
}

/// [`lane_for`] from the facts it uses: `settled` is "not being deleted, and the status covers
/// this generation" (the cache answers it without rebuilding the object).
pub fn lane_of(namespace: &str, name: &str, settled: bool, shards: Option<&crate::shard::Shards>) -> Lane {
    if shards.is_some_and(|s| !s.acts_on(namespace, name)) {
        return Lane::Elsewhere;
    }
    if settled {
        return Lane::Resync;
    }
    Lane::Urgent
}

/// `namespace/name` of an object in a lane.
pub type Key = (String, String);

#[derive(Default)]
struct Queue {
    order: VecDeque<Key>,
    queued: HashSet<Key>,
}

/// The two lanes of one controller.
pub struct Lanes {
    queue: Mutex<Queue>,
    /// Objects being reconciled now, by either lane.
    in_flight: Mutex<HashSet<Key>>,
    /// Urgent reconciles running now; the resync lane waits for zero.
    urgent: watch::Sender<usize>,
    more: Notify,
    backlog: Gauge,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("backlog", &self.backlog.get()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds an object's place in `in_flight` (and the urgent count) until dropped.
#[derive(Debug)]
pub struct InFlight {
    lanes: Arc<Lanes>,
    key: Key,
    urgent: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.lanes.in_flight).remove(&self.key);
        if self.urgent {
            self.lanes.urgent.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

impl Lanes {
    /// Lanes whose resync backlog is added to `backlog` (shared by every controller).
    pub fn new(backlog: Gauge) -> Lanes {
        Lanes {
            queue: Mutex::new(Queue::default()),
            in_flight: Mutex::new(HashSet::new()),
            urgent: watch::channel(0).0,
            more: Notify::new(),
            backlog,
        }
    }

    /// Put an unchanged object in the resync lane (once).
    pub fn defer(&self, key: Key) {
        let mut q = lock(&self.queue);
        if q.queued.insert(key.clone()) {
            q.order.push_back(key);
            self.backlog.inc();
        }
        drop(q);
        self.more.notify_one();
    }

    /// Start an urgent reconcile of `key`; `None` while the resync lane is working on it.
    pub fn start_urgent(self: &Arc<Self>, key: Key) -> Option<InFlight> {
        if !lock(&self.in_flight).insert(key.clone()) {
            return None;
        }
        self.urgent.send_modify(|n| *n += 1);
        Some(InFlight { lanes: self.clone(), key, urgent: true })
    }

    /// The next object of the resync lane, once no urgent reconcile runs; objects in flight
    /// are skipped.
    pub async fn next_resync(self: &Arc<Self>) -> InFlight {
        loop {
            let mut idle = self.urgent.subscribe();
            // Urgent work first, but not forever (a flood of new objects must not stop repairs).
            let _ = tokio::time::timeout(STARVATION_LIMIT, idle.wait_for(|n| *n == 0)).await;
            let next = {
                let mut q = lock(&self.queue);
                let k = q.order.pop_front();
                if let Some(k) = &k {
                    q.queued.remove(k);
                    self.backlog.dec();
                }
                if q.order.is_empty() && q.order.capacity() > SHRINK_ABOVE {
                    // A start-up resync of 50,000 objects leaves a few MiB of empty table behind.
                    q.order.shrink_to_fit();
                    q.queued.shrink_to_fit();
                }
                k
            };
            match next {
                Some(key) => {
                    if lock(&self.in_flight).insert(key.clone()) {
                        return InFlight { lanes: self.clone(), key, urgent: false };
                    }
                }
                None => self.more.notified().await,
            }
        }
    }

    /// Objects waiting in the resync lane.
    pub fn backlog(&self) -> usize {
        lock(&self.queue).order.len()
    }
}

impl InFlight {
    pub fn key(&self) -> &Key {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    #[test]
    fn only_a_status_for_the_current_generation_makes_an_object_unchanged() {
        let mut ss: SealedSecretObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
            "metadata": {"name": "a", "namespace": "ns", "generation": 2}, "spec": {"encryptedData": {}}
        }))
        .unwrap();
        assert!(!is_unchanged(&ss), "never reconciled");
        ss.status = Some(Default::default());
        assert!(!is_unchanged(&ss), "no observed generation");
        ss.status.as_mut().unwrap().observed_generation = Some(1);
        assert!(!is_unchanged(&ss), "changed since");
        ss.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(is_unchanged(&ss));
    }

    #[test]
    fn after_a_gain_only_the_held_shards_objects_enter_a_lane_and_unchanged_ones_wait_in_the_resync_lane() {
        use crate::shard::{Shards, plan};
        let shards = Shards::new(6);
        assert!(shards.hold(2, tokio::time::Instant::now() + Duration::from_secs(60)));
        let object = |i: usize, synced: bool| -> SealedSecretObject {
            let mut v = serde_json::json!({
                "apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
                "metadata": {"name": format!("o{i}"), "namespace": "ns", "generation": 3},
                "spec": {"encryptedData": {}}
            });
            if synced {
                v["status"] = serde_json::json!({"observedGeneration": 3});
            }
            serde_json::from_value(v).unwrap()
        };
        // 600 cached objects, all synced before the gain, and 60 new ones.
        let (mut lanes, mut ours) = ([0usize; 3], 0);
        for i in 0..660 {
            let ss = object(i, i < 600);
            let mine = plan::shard_of("ns", &format!("o{i}"), 6) == 2;
            ours += usize::from(mine);
            let lane = lane_for(&ss, Some(&shards));
            let want = match (mine, i < 600) {
                (false, _) => Lane::Elsewhere,
                (true, true) => Lane::Resync,
                (true, false) => Lane::Urgent,
            };
            assert_eq!(lane, want, "o{i}");
            lanes[lane as usize] += 1;
        }
        println!("lanes after gaining 1 of 6 shards: elsewhere/resync/urgent = {lanes:?}");
        assert!((70..=150).contains(&ours), "about a sixth: {ours}");
        assert_eq!(lanes[1] + lanes[2], ours);
        // Without shards nothing is elsewhere; a changed object is urgent.
        assert_eq!(lane_for(&object(0, true), None), Lane::Resync);
        assert_eq!(lane_for(&object(0, false), None), Lane::Urgent);
    }

    #[tokio::test]
    async fn a_flood_of_urgent_work_delays_the_resync_lane_but_never_stops_it() {
        let lanes = Arc::new(Lanes::new(Gauge::default()));
        for n in ["a", "b", "c"] {
            lanes.defer(key(n));
        }
        // Urgent work that never ends (a tenant creating objects without pause).
        let _flood = lanes.start_urgent(key("flood")).unwrap();
        let started = tokio::time::Instant::now();
        for n in ["a", "b", "c"] {
            let next = tokio::time::timeout(STARVATION_LIMIT * 4, lanes.next_resync()).await;
            assert_eq!(next.expect("the lane makes progress under a flood").key(), &key(n));
        }
        assert!(started.elapsed() >= STARVATION_LIMIT * 3, "but each object yields to the flood first");
    }

    #[tokio::test]
    async fn the_resync_lane_waits_for_urgent_work_and_never_runs_an_object_twice() {
        let lanes = Arc::new(Lanes::new(Gauge::default()));
        lanes.defer(key("a"));
        lanes.defer(key("a"));
        lanes.defer(key("b"));
        assert_eq!(lanes.backlog(), 2, "queued once each");
        let urgent = lanes.start_urgent(key("a")).unwrap();
        assert!(lanes.start_urgent(key("a")).is_none(), "already in flight");
        let waiting = tokio::time::timeout(Duration::from_millis(50), lanes.next_resync()).await;
        assert!(waiting.is_err(), "the resync lane waits while urgent work runs");
        drop(urgent);
        let next = lanes.next_resync().await;
        assert_eq!(next.key(), &key("a"));
        assert!(lanes.start_urgent(key("a")).is_none(), "the lane holds it");
        let b = lanes.next_resync().await;
        assert_eq!(b.key(), &key("b"));
        drop(next);
        assert!(lanes.start_urgent(key("a")).is_some());
        assert_eq!((lanes.backlog(), lanes.backlog.get()), (0, 0));
    }

    #[tokio::test]
    async fn a_drained_start_up_resync_gives_its_tables_back() {
        let lanes = Arc::new(Lanes::new(Gauge::default()));
        for n in 0..3000 {
            lanes.defer(key(&n.to_string()));
        }
        for _ in 0..3000 {
            drop(lanes.next_resync().await);
        }
        let q = lock(&lanes.queue);
        assert!(q.order.capacity() <= SHRINK_ABOVE && q.queued.capacity() <= SHRINK_ABOVE);
    }
}
