//! New objects first (issue #14, item 3): two lanes in front of reconcile.
//!
//! At start-up, and whenever the key registry changes or a shard is gained, every SealedSecret
//! has to be looked at again; in a first-in-first-out queue an object created meanwhile waits
//! behind all of them (Bitnami users report 5–15 minutes at 4,000 objects). Here each object
//! goes to one of two lanes: one whose status says its current generation was already handled
//! ([`is_unchanged`]) to the *resync lane*, every other (created, changed, never synced, being
//! deleted) to the *urgent lane*. [`Lanes::next`] hands out urgent objects first; the resync
//! lane's only while no urgent reconcile runs, so a new object never waits for the resync.
//!
//! - A lane holds `namespace/name` once each ([`Key`]: one shared allocation, about 50 bytes
//!   per queued object) and the object is read from the cache when it is handed out, so it is
//!   always the latest version.
//! - An object is never reconciled twice at once: a resync entry whose object is in flight is
//!   dropped (the running reconcile covers it), and an object changed while it is being
//!   reconciled is reconciled once more, urgently, when that run ends.
//! - Readiness does not wait for the lanes: it is work the probes cannot see; the resync lane's
//!   length is the `gitseal_resync_backlog` gauge.
//! - A drift trigger (the owned Secret edited or deleted) takes the resync lane.
//! - The resync lane is never starved: a tenant who keeps creating or changing objects holds it
//!   back for at most [`STARVATION_LIMIT`] per object taken, so drift repair and re-encryption
//!   for everyone else still progress (at least a few objects a second under a flood).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use gitseal_shared::types::SealedSecretObject;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// How long the resync lane yields to urgent work before it takes its next object anyway.
pub const STARVATION_LIMIT: std::time::Duration = std::time::Duration::from_millis(250);

/// A drained lane gives back its memory when it held more than this many objects.
const SHRINK_ABOVE: usize = 1024;

/// Whether the object's status says this generation was already reconciled (successfully or
/// not): a resync, not news.
pub fn is_unchanged(ss: &SealedSecretObject) -> bool {
    covers(ss.status.as_ref().and_then(|s| s.observed_generation), ss.metadata.generation)
}

/// The one rule behind [`is_unchanged`] and the cache's entries: a status that observed this
/// generation.
pub fn covers(observed_generation: Option<i64>, generation: Option<i64>) -> bool {
    observed_generation.is_some() && observed_generation == generation
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

/// `namespace/name` of an object in a lane: one shared allocation, however many queues hold it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(Arc<str>);

impl Key {
    pub fn new(namespace: &str, name: &str) -> Key {
        Key(format!("{namespace}/{name}").into())
    }

    /// Namespaces and names cannot contain `/`, so the first one separates them.
    fn split(&self) -> (&str, &str) {
        self.0.split_once('/').unwrap_or(("", &self.0))
    }

    pub fn namespace(&self) -> &str {
        self.split().0
    }

    pub fn name(&self) -> &str {
        self.split().1
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// First in, first out, each key once.
#[derive(Default)]
struct Fifo {
    order: VecDeque<Key>,
    queued: HashSet<Key>,
}

impl Fifo {
    fn push(&mut self, key: Key) -> bool {
        let new = self.queued.insert(key.clone());
        if new {
            self.order.push_back(key);
        }
        new
    }

    fn pop(&mut self) -> Option<Key> {
        let k = self.order.pop_front()?;
        self.queued.remove(&k);
        if self.order.is_empty() && self.order.capacity() > SHRINK_ABOVE {
            // A start-up resync of 50,000 objects leaves a few MiB of empty table behind.
            self.order.shrink_to_fit();
            self.queued.shrink_to_fit();
        }
        Some(k)
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

#[derive(Default)]
struct Queues {
    urgent: Fifo,
    resync: Fifo,
    /// Objects being reconciled now, by either lane.
    in_flight: HashSet<Key>,
    /// In flight and asked for urgently again meanwhile: urgent once more when done.
    rerun: HashSet<Key>,
    /// Urgent reconciles running now; the resync lane waits for zero.
    urgent_running: usize,
    /// When the resync lane last yielded to urgent work without taking an object.
    resync_waiting_since: Option<Instant>,
}

/// The two lanes of one controller, and which objects are being reconciled.
pub struct Lanes {
    queues: Mutex<Queues>,
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

/// Holds an object's place in flight (and in the urgent count) until dropped.
#[derive(Debug)]
pub struct InFlight {
    lanes: Arc<Lanes>,
    key: Key,
    urgent: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut q = lock(&self.lanes.queues);
        q.in_flight.remove(&self.key);
        if self.urgent {
            q.urgent_running = q.urgent_running.saturating_sub(1);
        }
        if q.rerun.remove(&self.key) {
            q.urgent.push(self.key.clone());
        }
        drop(q);
        self.lanes.more.notify_one();
    }
}

/// What the next call of [`Lanes::next`] finds.
enum Next {
    Run(Key, bool),
    /// Only resync work, held back by urgent work until then.
    Wait(Instant),
    Empty,
}

impl Lanes {
    /// Lanes whose resync backlog is added to `backlog` (shared by every controller).
    pub fn new(backlog: Gauge) -> Lanes {
        Lanes { queues: Mutex::new(Queues::default()), more: Notify::new(), backlog }
    }

    /// Put an unchanged object in the resync lane (once).
    pub fn defer(&self, key: Key) {
        if lock(&self.queues).resync.push(key) {
            self.backlog.inc();
        }
        self.more.notify_one();
    }

    /// Put a created or changed object in the urgent lane (once); one being reconciled now is
    /// reconciled again when that run ends.
    pub fn urgent(&self, key: Key) {
        let mut q = lock(&self.queues);
        if q.in_flight.contains(&key) {
            q.rerun.insert(key);
        } else {
            q.urgent.push(key);
        }
        drop(q);
        self.more.notify_one();
    }

    /// The next object to reconcile: urgent ones first; the resync lane's only while no urgent
    /// reconcile runs, or once it has yielded for [`STARVATION_LIMIT`]. An object is never
    /// handed out twice at once. With `resync: false` only urgent objects are taken (the
    /// caller keeps a slot free for them).
    pub async fn next(self: &Arc<Self>, resync: bool) -> InFlight {
        loop {
            let more = self.more.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            match self.take(resync) {
                Next::Run(key, urgent) => return InFlight { lanes: self.clone(), key, urgent },
                Next::Wait(until) => {
                    tokio::select! {
                        () = &mut more => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
                Next::Empty => more.await,
            }
        }
    }

    fn take(&self, resync: bool) -> Next {
        let mut q = lock(&self.queues);
        while let Some(key) = q.urgent.pop() {
            if q.in_flight.contains(&key) {
                q.rerun.insert(key);
                continue;
            }
            q.in_flight.insert(key.clone());
            q.urgent_running += 1;
            return Next::Run(key, true);
        }
        if !resync || q.resync.len() == 0 {
            q.resync_waiting_since = None;
            return Next::Empty;
        }
        let now = Instant::now();
        if q.urgent_running > 0 {
            let since = *q.resync_waiting_since.get_or_insert(now);
            if now < since + STARVATION_LIMIT {
                return Next::Wait(since + STARVATION_LIMIT);
            }
        }
        q.resync_waiting_since = None;
        while let Some(key) = q.resync.pop() {
            self.backlog.dec();
            // One in flight now covers it: it reads the object when it runs.
            if q.in_flight.insert(key.clone()) {
                return Next::Run(key, false);
            }
        }
        Next::Empty
    }

    /// Objects waiting in the resync lane.
    pub fn backlog(&self) -> usize {
        lock(&self.queues).resync.len()
    }
}

impl InFlight {
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Whether it came from the urgent lane.
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: &str) -> Key {
        Key::new("ns", n)
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
        // Urgent work that never ends (a tenant creating objects without pause).
        lanes.urgent(key("flood"));
        let flood = lanes.next(true).await;
        assert!(flood.is_urgent());
        for n in ["a", "b", "c"] {
            lanes.defer(key(n));
        }
        let started = Instant::now();
        for n in ["a", "b", "c"] {
            let next = tokio::time::timeout(STARVATION_LIMIT * 4, lanes.next(true)).await;
            let next = next.expect("the lane makes progress under a flood");
            assert_eq!((next.key(), next.is_urgent()), (&key(n), false));
        }
        assert!(started.elapsed() >= STARVATION_LIMIT * 3, "but each object yields to the flood first");
    }

    #[tokio::test]
    async fn urgent_work_goes_first_and_no_object_is_handed_out_twice_at_once() {
        let lanes = Arc::new(Lanes::new(Gauge::default()));
        lanes.defer(key("a"));
        lanes.defer(key("a"));
        lanes.defer(key("b"));
        assert_eq!(lanes.backlog(), 2, "queued once each");
        lanes.urgent(key("a"));
        let first = lanes.next(true).await;
        assert_eq!((first.key(), first.is_urgent()), (&key("a"), true), "urgent before the resync lane");
        lanes.urgent(key("a"));
        let waiting = tokio::time::timeout(Duration::from_millis(50), lanes.next(true)).await;
        assert!(waiting.is_err(), "a is in flight, and the resync lane waits while urgent work runs");
        drop(first);
        let again = lanes.next(true).await;
        assert_eq!((again.key(), again.is_urgent()), (&key("a"), true), "changed while running: once more");
        drop(again);
        let r = lanes.next(true).await;
        assert_eq!((r.key(), r.is_urgent()), (&key("a"), false));
        lanes.urgent(key("a"));
        let b = lanes.next(true).await;
        assert_eq!((b.key(), b.is_urgent()), (&key("b"), false), "a waits for its resync to end");
        drop(r);
        let a = lanes.next(true).await;
        assert_eq!((a.key(), a.is_urgent()), (&key("a"), true));
        assert_eq!((lanes.backlog(), lanes.backlog.get()), (0, 0));
    }

    #[tokio::test]
    async fn a_caller_keeping_a_slot_for_urgent_work_gets_no_resync_work() {
        let lanes = Arc::new(Lanes::new(Gauge::default()));
        lanes.defer(key("old"));
        let waiting = tokio::time::timeout(Duration::from_millis(50), lanes.next(false)).await;
        assert!(waiting.is_err());
        let (l, wake) = (lanes.clone(), tokio::time::sleep(Duration::from_millis(20)));
        let taken = tokio::spawn(async move { l.next(false).await.key().clone() });
        wake.await;
        lanes.urgent(key("new"));
        assert_eq!(taken.await.unwrap(), key("new"));
        assert_eq!(lanes.backlog(), 1);
    }

    #[test]
    fn a_key_is_namespace_and_name() {
        let k = Key::new("team-a", "db.creds");
        assert_eq!((k.namespace(), k.name(), k.as_str()), ("team-a", "db.creds", "team-a/db.creds"));
    }

    #[tokio::test]
    async fn a_drained_start_up_resync_gives_its_tables_back() {
        let lanes = Arc::new(Lanes::new(Gauge::default()));
        for n in 0..3000 {
            lanes.defer(key(&n.to_string()));
        }
        for _ in 0..3000 {
            drop(lanes.next(true).await);
        }
        let q = lock(&lanes.queues);
        assert!(q.resync.order.capacity() <= SHRINK_ABOVE && q.resync.queued.capacity() <= SHRINK_ABOVE);
    }
}
