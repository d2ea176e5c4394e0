//! Shards across replicas (`--shards N`, N > 1): every replica reconciles, but only the
//! SealedSecrets of the shards whose Lease it holds.
//!
//! - An object belongs to shard [`plan::shard_of`]`(namespace, name, N)` (SHA-256, then the jump
//!   consistent hash: stable, and a change of N moves few objects).
//! - Shard `i` is the Lease `<lease-name>-shard-<i>` in the controller namespace, under the rules
//!   of [`crate::leader`]: taken only when free or not renewed for a full lease duration,
//!   renewed every third of it, released on shutdown. Replicas beat in the Lease
//!   `<lease-name>-shard-members`, so each knows how many are live and aims for
//!   `ceil(N / live)` shards ([`plan::plan`]).
//! - A replica stops acting on a shard one renew interval before its Lease could expire: a
//!   reconcile that is still running then is abandoned. Before giving a shard up (rebalance,
//!   shutdown) it stops starting new reconciles of it and lets the running ones finish (at most
//!   one renew interval, then they are abandoned). So no object is reconciled by two replicas
//!   at once.
//! - Key renewal, the digest key and audit checkpoints stay with ONE replica: the holder of the
//!   leader Lease (`--lease-name`), independent of the shards it holds.
//! - Just before a Secret is applied, the replica checks again that it holds the shard with at
//!   least [`Shards::margin`] (half a renew interval) before its deadline, so an apply starts
//!   only with 1.5 renew intervals to spare before anyone else could take the shard; otherwise the
//!   Secret is left to the next holder ([`Fence`], `gitseal_shard_fenced_total`). A started apply
//!   runs to its audit record and status even if the shard is lost meanwhile (it is shielded
//!   from the abandonment), and the shard's Lease is not released before it ends.
//! - Gaining a shard requeues its objects (a scan of the local cache): those whose status covers
//!   their generation go to the resync lane ([`crate::lanes`]), behind new and changed objects,
//!   and objects of shards held elsewhere are dropped before any lane.
//!
//! `--shards 1` (the default) is today's single-leader mode, untouched.

#[cfg(test)]
mod fence_tests;
pub mod manager;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use gitseal_shared::types::SealedSecretObject;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedRwLockReadGuard, RwLock, watch};
use tokio::time::Instant;

use crate::Shared;
use crate::config::Config;

pub use manager::lead_and_work;

/// Label values `shard="0"` … `shard="63"` (bounded by [`plan::MAX_SHARDS`]).
const SHARD_LABELS: [&str; plan::MAX_SHARDS as usize] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20",
    "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37", "38", "39",
    "40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58",
    "59", "60", "61", "62", "63",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub shard: &'static str,
    /// `gained`, `released` (given up on purpose) or `lost` (renewal failed or taken over).
    pub change: &'static str,
}

/// The per-shard metric families (registered only with `--shards` > 1).
#[derive(Debug, Default)]
pub struct ShardMetrics {
    pub owned: Family<ShardLabels, Gauge>,
    pub reconciles: Family<ShardLabels, Counter>,
    pub transitions: Family<TransitionLabels, Counter>,
    /// Secret applies refused because the shard's hold ended too soon ([`Fence`]).
    pub fenced: Family<ShardLabels, Counter>,
}

fn label(shard: u16) -> &'static str {
    SHARD_LABELS.get(usize::from(shard)).copied().unwrap_or("overflow")
}

/// Whether this replica may act on a shard: `accept` — start new reconciles; `deadline` — until
/// when running ones may continue (one renew interval before the Lease could expire).
#[derive(Debug, Clone, Copy, Default)]
struct Own {
    accept: bool,
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Slot {
    own: watch::Sender<Own>,
    /// Held (shared) by every running reconcile of the shard; taken (exclusive) before the
    /// shard's Lease is released.
    in_flight: Arc<RwLock<()>>,
}

/// This replica's view of the shards it holds, shared by the reconciles and the manager.
#[derive(Debug)]
pub struct Shards {
    pub count: u16,
    slots: Vec<Slot>,
    pub metrics: ShardMetrics,
    /// Bumped whenever a shard is gained: the controllers requeue their cached objects.
    gained: watch::Sender<u64>,
    /// How long before its deadline a held shard stops taking Secret applies.
    pub margin: Duration,
}

impl Shards {
    /// `Some` with `--shards` > 1, with its metric families registered on `registry`.
    pub fn for_config(config: &Config, registry: &mut prometheus_client::registry::Registry) -> Option<Arc<Shards>> {
        (config.shards > 1).then(|| {
            let shards = Shards::new(config.shards);
            registry.register(
                "shard_owned",
                "1 for each shard whose Lease this replica holds",
                shards.metrics.owned.clone(),
            );
            registry.register(
                "shard_reconciles",
                "Reconciles started by this replica, by shard",
                shards.metrics.reconciles.clone(),
            );
            registry.register(
                "shard_transitions",
                "Shards gained, released or lost by this replica",
                shards.metrics.transitions.clone(),
            );
            registry.register(
                "shard_fenced",
                "Secret applies not made because this replica's hold on the shard ended too soon",
                shards.metrics.fenced.clone(),
            );
            // Half a renew interval: a renewal that lands a little late (a round of 64 Leases
            // takes a while) does not stop applies, and an apply still starts one and a half
            // renew intervals before anyone else could take the shard.
            Arc::new(shards.with_margin(config.lease_duration / 6))
        })
    }

    pub fn new(count: u16) -> Shards {
        let count = count.clamp(1, plan::MAX_SHARDS);
        let metrics = ShardMetrics::default();
        for i in 0..count {
            metrics.owned.get_or_create(&ShardLabels { shard: label(i) }).set(0);
            let _ = metrics.reconciles.get_or_create(&ShardLabels { shard: label(i) });
            let _ = metrics.fenced.get_or_create(&ShardLabels { shard: label(i) });
        }
        let slots = (0..count)
            .map(|_| Slot { own: watch::channel(Own::default()).0, in_flight: Arc::new(RwLock::new(())) })
            .collect();
        Shards { count, slots, metrics, gained: watch::channel(0).0, margin: Duration::ZERO }
    }

    /// Secret applies need `margin` left before a shard's deadline (the manager's renew interval).
    pub fn with_margin(mut self, margin: Duration) -> Shards {
        self.margin = margin;
        self
    }

    /// A stream that ticks whenever a shard is gained (for `reconcile_all_on`).
    pub fn gains(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        use futures::StreamExt as _;
        tokio_stream::wrappers::WatchStream::from_changes(self.gained.subscribe()).map(|_| ())
    }

    /// Start a reconcile of `shard` if this replica may: `None` when it does not hold it, is
    /// giving it up, or is past its deadline.
    async fn begin(&self, shard: u16) -> Option<Running> {
        let slot = self.slots.get(usize::from(shard))?;
        let guard = slot.in_flight.clone().read_owned().await;
        let own = *slot.own.borrow();
        let live = own.accept && own.deadline.is_some_and(|d| d > Instant::now());
        live.then(|| Running { guard: Arc::new(guard), own: slot.own.subscribe() })
    }

    /// Now acting on `shard` until `deadline`, or extended to it. A renewal after the deadline
    /// had passed (work was skipped or abandoned meanwhile) counts as a gain, so the shard's
    /// objects are requeued.
    pub(crate) fn hold(&self, shard: u16, deadline: Instant) -> bool {
        let Some(slot) = self.slots.get(usize::from(shard)) else { return false };
        let before = *slot.own.borrow();
        let was = before.accept && before.deadline.is_some_and(|d| d > Instant::now());
        slot.own.send_replace(Own { accept: true, deadline: Some(deadline) });
        if !was {
            self.metrics.owned.get_or_create(&ShardLabels { shard: label(shard) }).set(1);
            self.transition(shard, "gained");
            self.gained.send_modify(|n| *n = n.wrapping_add(1));
        }
        !was
    }

    /// Stop at once: running reconciles of `shard` are abandoned.
    fn drop_now(&self, shard: u16, change: &'static str) {
        let Some(slot) = self.slots.get(usize::from(shard)) else { return };
        let was = slot.own.borrow().accept || slot.own.borrow().deadline.is_some();
        slot.own.send_replace(Own::default());
        if was {
            self.metrics.owned.get_or_create(&ShardLabels { shard: label(shard) }).set(0);
            self.transition(shard, change);
        }
    }

    /// Stop starting reconciles of `shard`, let the running ones finish within `grace` (then
    /// abandon them), and return once none runs: the Lease may then be released.
    async fn drain(&self, shard: u16, grace: Duration) {
        let Some(slot) = self.slots.get(usize::from(shard)) else { return };
        slot.own.send_modify(|o| o.accept = false);
        let lock = slot.in_flight.clone();
        let exclusive = match tokio::time::timeout(grace, lock.clone().write_owned()).await {
            Ok(g) => g,
            Err(_) => {
                tracing::warn!(shard, "reconciles still running when the shard is given up: abandoning them");
                slot.own.send_modify(|o| o.deadline = None);
                lock.write_owned().await
            }
        };
        self.drop_now(shard, "released");
        drop(exclusive);
    }

    fn transition(&self, shard: u16, change: &'static str) {
        self.metrics.transitions.get_or_create(&TransitionLabels { shard: label(shard), change }).inc();
    }

    /// Whether this replica may start reconciling `namespace/name` now (it holds its shard).
    pub fn acts_on(&self, namespace: &str, name: &str) -> bool {
        let Some(slot) = self.slots.get(usize::from(plan::shard_of(namespace, name, self.count))) else { return false };
        let own = *slot.own.borrow();
        own.accept && own.deadline.is_some_and(|d| d > Instant::now())
    }

    /// Shards whose slot says this replica acts on them now.
    pub fn owned(&self) -> Vec<u16> {
        (0..self.count).filter(|i| self.slots[usize::from(*i)].own.borrow().deadline.is_some()).collect()
    }
}

/// A reconcile in progress on a held shard.
struct Running {
    /// Shared with the [`Fence`] of its Secret apply, which may outlive the reconcile.
    guard: Arc<OwnedRwLockReadGuard<()>>,
    own: watch::Receiver<Own>,
}

/// The last check before a Secret is applied for an object of `shard`: this replica still acts
/// on the shard until at least [`Shards::margin`] from now. While an apply (and its audit record
/// and status) runs, the fence holds the shard's in-flight guard, so the shard is not released
/// under it.
#[derive(Debug)]
pub struct Fence {
    shards: Arc<Shards>,
    shard: u16,
    _guard: Arc<OwnedRwLockReadGuard<()>>,
}

impl crate::reconcile::ApplyFence for Fence {
    fn may_apply(&self) -> bool {
        let Some(slot) = self.shards.slots.get(usize::from(self.shard)) else { return false };
        let deadline = slot.own.borrow().deadline;
        let ok = deadline.is_some_and(|d| d > Instant::now() + self.shards.margin);
        if !ok {
            self.shards.metrics.fenced.get_or_create(&ShardLabels { shard: label(self.shard) }).inc();
        }
        ok
    }
}

impl Running {
    fn fence(&self, shards: Arc<Shards>, shard: u16) -> Arc<dyn crate::reconcile::ApplyFence> {
        Arc::new(Fence { shards, shard, _guard: self.guard.clone() })
    }

    /// Drive `work` while the shard is ours; `None` when it had to be abandoned (deadline
    /// passed, or the shard was lost).
    async fn guard<F: std::future::Future>(mut self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            let deadline = match self.own.borrow_and_update().deadline {
                Some(d) if d > Instant::now() => d,
                _ => return None,
            };
            tokio::select! {
                out = &mut work => return Some(out),
                () = tokio::time::sleep_until(deadline) => {}
                changed = self.own.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// The reconcile every controller runs: the plain [`crate::reconcile::reconcile`] without
/// shards; with shards, only for objects of a shard this replica holds, and abandoned if the
/// shard is lost meanwhile.
pub async fn reconcile(ss: Arc<SealedSecretObject>, shared: Arc<Shared>) -> Result<Action, crate::reconcile::Error> {
    Ok(reconcile_for(ss, shared).await?.map_or_else(Action::await_change, Action::requeue))
}

/// [`reconcile`], saying when to run again (`None`: on the next change), for the resync lane.
pub async fn reconcile_for(
    ss: Arc<SealedSecretObject>,
    shared: Arc<Shared>,
) -> Result<Option<Duration>, crate::reconcile::Error> {
    let Some(shards) = shared.standing.shards.clone() else { return crate::reconcile::reconcile_for(ss, shared).await };
    let shard = plan::shard_of(&ss.namespace().unwrap_or_default(), &ss.name_any(), shards.count);
    let Some(running) = shards.begin(shard).await else {
        // Another replica's (or nobody's until a Lease is taken, which requeues it).
        return Ok(None);
    };
    shards.metrics.reconciles.get_or_create(&ShardLabels { shard: label(shard) }).inc();
    let object = format!("{}/{}", ss.namespace().unwrap_or_default(), ss.name_any());
    let fence = running.fence(shards.clone(), shard);
    match running.guard(crate::reconcile::reconcile_fenced(ss, shared, Some(fence))).await {
        Some(result) => result,
        None => {
            tracing::warn!(object, shard, "shard lost while reconciling: abandoned (its holder reconciles it again)");
            // Skipped at once unless this replica still (or again) holds the shard.
            Ok(Some(Duration::from_secs(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_held_shards_start_work_and_work_past_the_deadline_is_abandoned() {
        let s = Shards::new(4);
        assert!(s.begin(1).await.is_none(), "nothing is held at first");
        assert!(s.hold(1, Instant::now() + Duration::from_millis(200)));
        assert_eq!(s.owned(), [1]);
        assert!(s.begin(2).await.is_none());
        let run = s.begin(1).await.unwrap();
        let slow = tokio::time::sleep(Duration::from_millis(500));
        assert!(run.guard(slow).await.is_none(), "not renewed: abandoned at the deadline");
        // Renewal moves the deadline, and work that ends before it completes.
        assert!(s.begin(1).await.is_none(), "past the deadline, nothing starts");
        let mut gains = Box::pin(s.gains());
        assert!(s.hold(1, Instant::now() + Duration::from_millis(300)), "a late renewal requeues like a gain");
        assert!(tokio::time::timeout(Duration::from_millis(100), futures::StreamExt::next(&mut gains)).await.is_ok());
        let run = s.begin(1).await.unwrap();
        assert!(!s.hold(1, Instant::now() + Duration::from_millis(1000)), "a renewal in time is no gain");
        assert_eq!(run.guard(tokio::time::sleep(Duration::from_millis(500))).await, Some(()));
    }

    #[tokio::test]
    async fn giving_a_shard_up_waits_for_running_work_and_refuses_new_work() {
        let s = Arc::new(Shards::new(2));
        s.hold(0, Instant::now() + Duration::from_millis(6000));
        let run = s.begin(0).await.unwrap();
        let worker = tokio::spawn(run.guard(tokio::time::sleep(Duration::from_millis(100))));
        let drainer = {
            let s = s.clone();
            tokio::spawn(async move { s.drain(0, Duration::from_millis(500)).await })
        };
        tokio::task::yield_now().await;
        assert!(s.begin(0).await.is_none(), "no new work while draining");
        assert_eq!(worker.await.unwrap(), Some(()), "running work finished");
        drainer.await.unwrap();
        assert!(s.owned().is_empty());
        // Work that outlasts the grace is abandoned.
        s.hold(1, Instant::now() + Duration::from_millis(6000));
        let run = s.begin(1).await.unwrap();
        let worker = tokio::spawn(run.guard(tokio::time::sleep(Duration::from_millis(3000))));
        s.drain(1, Duration::from_millis(200)).await;
        assert_eq!(worker.await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_lost_shard_abandons_its_work_at_once_and_gains_are_signalled() {
        use futures::StreamExt as _;
        let s = Shards::new(2);
        let mut gains = Box::pin(s.gains());
        s.hold(0, Instant::now() + Duration::from_millis(6000));
        assert!(tokio::time::timeout(Duration::from_millis(100), gains.next()).await.is_ok());
        let run = s.begin(0).await.unwrap();
        let work = run.guard(tokio::time::sleep(Duration::from_millis(3000)));
        let (out, ()) = tokio::join!(work, async { s.drop_now(0, "lost") });
        assert_eq!(out, None);
        let m = s.metrics.transitions.get_or_create(&TransitionLabels { shard: "0", change: "lost" }).get();
        assert_eq!(m, 1);
    }
}
