//! The I/O half of sharding: heartbeats, the shard Leases and the one leader Lease of the
//! singleton work, driven on a renew interval (a third of the lease duration).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use gitseal_shared::audit::Outcome as AuditOutcome;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use tokio::time::Instant;

use super::Shards;
use super::plan::{self, Holder, MEMBERS_ANNOTATION};
use crate::Shared;
use crate::audit::AuditLog;
use crate::leader::{LeaseLock, expired};

/// Name of shard `i`'s Lease.
pub fn shard_lease_name(lease_name: &str, i: u16) -> String {
    format!("{lease_name}-shard-{i}")
}

/// Name of the Lease that carries the replicas' heartbeats.
pub fn members_lease_name(lease_name: &str) -> String {
    format!("{lease_name}-shard-members")
}

/// Aborts the tasks it holds when dropped.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Run with shards until SIGTERM (`shutdown`), losing the leader Lease, or the watches ending;
/// then give every held shard up cleanly.
pub async fn lead_and_work(
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) -> crate::error::Result<()> {
    let Some(shards) = shared.standing.shards.clone() else { return Ok(()) };
    tokio::pin!(shutdown);
    let c = &shared.config;
    let leader = LeaseLock::new(shared.client.clone(), &c.namespace, &c.lease_name, &c.identity, c.lease_duration);
    let balancer = Balancer::new(shared.clone(), shards);
    tracing::info!(shards = balancer.shards.count, "sharded: reconciling the objects of the shards this replica holds");
    let work = reconcile_streams(shared.clone());
    let result = tokio::select! {
        () = work => Err(crate::error::Error::StreamsEnded),
        () = singleton(shared.clone(), &leader) => Err(crate::error::Error::LostLease),
        () = balancer.run() => Err(crate::error::Error::StreamsEnded),
        () = &mut shutdown => Ok(()),
    };
    balancer.leave().await;
    if shared.standing.leading.swap(false, Ordering::SeqCst) {
        if let Err(e) = crate::audit::cluster::write_checkpoint(&shared).await {
            tracing::warn!(error = %crate::error::report(&e), "cannot write the last audit checkpoint");
        }
        shared.metrics.leader.set(0);
        leader.release().await;
    }
    result
}

async fn reconcile_streams(shared: Arc<Shared>) {
    crate::driver::controllers(shared).for_each(|()| async {}).await;
}

/// The work only one replica does (key renewal, the digest key, audit checkpoints), under the
/// leader Lease. Returns when a held Lease is lost.
async fn singleton(shared: Arc<Shared>, lock: &LeaseLock) {
    lock.acquire().await;
    tracing::info!("holding the leader Lease: key renewal and audit checkpoints run here");
    shared.standing.leading.store(true, Ordering::SeqCst);
    shared.metrics.leader.set(1);
    let mut rec = AuditLog::record("LeadershipAcquired", AuditOutcome::Success);
    rec.message = Some(shared.config.identity.clone());
    shared.audit.write(rec);
    let _tasks = Tasks(vec![
        tokio::spawn(crate::keys::renewal_loop(shared.clone())),
        tokio::spawn(crate::audit::cluster::checkpoint_loop(shared.clone())),
    ]);
    lock.keep().await;
}

struct Balancer {
    shared: Arc<Shared>,
    shards: Arc<Shards>,
    locks: Vec<LeaseLock>,
    members: Api<Lease>,
    period: Duration,
    /// Shards whose Lease this replica believes it holds.
    mine: tokio::sync::Mutex<Vec<bool>>,
}

impl Balancer {
    fn new(shared: Arc<Shared>, shards: Arc<Shards>) -> Balancer {
        let c = &shared.config;
        let locks = (0..shards.count)
            .map(|i| {
                let name = shard_lease_name(&c.lease_name, i);
                LeaseLock::new(shared.client.clone(), &c.namespace, &name, &c.identity, c.lease_duration)
            })
            .collect();
        let members = Api::namespaced(shared.client.clone(), &c.namespace);
        let period = (c.lease_duration / 3).max(Duration::from_millis(300));
        let mine = tokio::sync::Mutex::new(vec![false; usize::from(shards.count)]);
        Balancer { shared, shards, locks, members, period, mine }
    }

    /// Until when work on a shard renewed at `sent` may go on: one renew interval before
    /// anyone else could see its Lease expired.
    fn deadline(&self, sent: Instant) -> Instant {
        sent + self.shared.config.lease_duration.saturating_sub(self.period)
    }

    async fn run(&self) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut live = BTreeSet::from([self.shared.config.identity.clone()]);
        loop {
            tick.tick().await;
            if let Some(now_live) = self.beat(true).await {
                live = now_live;
            }
            self.round(&live).await;
        }
    }

    /// One pass: renew held shards, read the others, then take or give up per [`plan::plan`].
    async fn round(&self, live: &BTreeSet<String>) {
        let me = self.shared.config.identity.as_str();
        let mut mine = self.mine.lock().await;
        let mut holders = Vec::with_capacity(self.locks.len());
        let mut current = Vec::with_capacity(self.locks.len());
        for (i, lock) in (0u16..).zip(&self.locks) {
            let idx = usize::from(i);
            let sent = Instant::now();
            let lease = match lock.read().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(shard = i, error = %e, "cannot read the shard Lease");
                    self.check_deadline(i, &mut mine);
                    holders.push(if mine[idx] { Holder::Held(me.to_string()) } else { Holder::Unknown });
                    current.push(None);
                    continue;
                }
            };
            let spec = lease.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
            let holder = match spec.holder_identity.as_deref() {
                Some(h) if h == me => Holder::Held(h.to_string()),
                Some(h) if !h.is_empty() && !expired(&spec, jiff::Timestamp::now()) => Holder::Held(h.to_string()),
                _ => Holder::Free,
            };
            if holder == Holder::Held(me.to_string()) && mine[idx] {
                match lock.take_or_renew(lease).await {
                    Ok(true) => {
                        self.shards.hold(i, self.deadline(sent));
                        holders.push(holder);
                    }
                    Ok(false) => {
                        self.lost(i, &mut mine, "its Lease was written by another replica").await;
                        holders.push(Holder::Unknown);
                    }
                    Err(e) => {
                        tracing::warn!(shard = i, error = %e, "cannot renew the shard Lease");
                        self.check_deadline(i, &mut mine);
                        holders.push(if mine[idx] { holder } else { Holder::Unknown });
                    }
                }
                current.push(None);
                continue;
            }
            if mine[idx] {
                self.lost(i, &mut mine, "its Lease names another holder").await;
            }
            // Ours by name but not in our books (a restart with the same identity): free.
            holders.push(if holder == Holder::Held(me.to_string()) { Holder::Free } else { holder });
            current.push(Some(lease));
        }
        let step = plan::plan(me, live, &holders);
        for i in step.release {
            self.give_up(i, &mut mine).await;
        }
        for i in step.take {
            let sent = Instant::now();
            let Some(Some(lease)) = current.get_mut(usize::from(i)).map(Option::take) else { continue };
            match self.locks[usize::from(i)].take_or_renew(lease).await {
                Ok(true) => {
                    mine[usize::from(i)] = true;
                    self.shards.hold(i, self.deadline(sent));
                    self.announce(i, "ShardAcquired", "took the Lease of shard").await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(shard = i, error = %e, "cannot take the shard Lease"),
            }
        }
    }

    /// Renewal keeps failing: stop acting once the deadline has passed.
    fn check_deadline(&self, i: u16, mine: &mut [bool]) {
        let idx = usize::from(i);
        if mine[idx] && !self.shards.owned().contains(&i) {
            mine[idx] = false;
        }
        if mine[idx]
            && let Some(slot) = self.shards.slots.get(idx)
            && slot.own.borrow().deadline.is_none_or(|d| d <= Instant::now())
        {
            self.shards.drop_now(i, "lost");
            mine[idx] = false;
            tracing::warn!(shard = i, "shard lost: its Lease could not be renewed in time");
        }
    }

    async fn lost(&self, i: u16, mine: &mut [bool], why: &str) {
        self.shards.drop_now(i, "lost");
        mine[usize::from(i)] = false;
        tracing::warn!(shard = i, why, "shard lost");
        self.announce(i, "ShardLost", "lost shard").await;
    }

    /// Stop work on shard `i` (running reconciles finish within one renew interval), then free
    /// its Lease so another replica takes it at once.
    async fn give_up(&self, i: u16, mine: &mut [bool]) {
        self.shards.drain(i, self.period).await;
        self.locks[usize::from(i)].release().await;
        mine[usize::from(i)] = false;
        self.announce(i, "ShardReleased", "released the Lease of shard").await;
    }

    /// On shutdown: give every held shard up and leave the members.
    async fn leave(&self) {
        let held: Vec<u16> = {
            let mine = self.mine.lock().await;
            (0u16..).zip(mine.iter()).filter(|(_, m)| **m).map(|(i, _)| i).collect()
        };
        for i in held {
            let mut mine = self.mine.lock().await;
            self.give_up(i, &mut mine).await;
        }
        self.beat(false).await;
    }

    /// Write this replica's heartbeat (or remove it); the live members, `None` on failure.
    async fn beat(&self, join: bool) -> Option<BTreeSet<String>> {
        let c = &self.shared.config;
        let name = members_lease_name(&c.lease_name);
        // Two renew intervals: a replica that missed one beat still counts, a dead one drops out
        // before its shard Leases expire, so the survivors aim for more shards by then.
        let ttl = i64::try_from((self.period * 2).as_millis()).unwrap_or(i64::MAX);
        for _ in 0..3 {
            let now = jiff::Timestamp::now().as_millisecond();
            let current = match self.members.get_opt(&name).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the shard members Lease");
                    return None;
                }
            };
            let before =
                current.as_ref().and_then(|l| l.metadata.annotations.as_ref()?.get(MEMBERS_ANNOTATION).cloned());
            let (value, live) = plan::heartbeat(before.as_deref(), &c.identity, now, ttl, join);
            let written = match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            annotations: Some([(MEMBERS_ANNOTATION.to_string(), value)].into()),
                            ..Default::default()
                        },
                        spec: None,
                    };
                    self.members.create(&PostParams::default(), &lease).await.map(|_| ())
                }
                Some(mut lease) => {
                    lease.metadata.annotations.get_or_insert_default().insert(MEMBERS_ANNOTATION.to_string(), value);
                    self.members.replace(&name, &PostParams::default(), &lease).await.map(|_| ())
                }
            };
            match written {
                Ok(()) => return Some(live),
                // Another replica beat at the same moment: read again.
                Err(kube::Error::Api(ae)) if ae.code == 409 => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the shard members Lease");
                    return None;
                }
            }
        }
        None
    }

    /// Log line and Event (on the shard's Lease) for a gain or loss.
    async fn announce(&self, i: u16, reason: &str, what: &str) {
        let c = &self.shared.config;
        let name = shard_lease_name(&c.lease_name, i);
        tracing::info!(shard = i, lease = %name, reason, "{what} {i}");
        let event = Event {
            type_: if reason == "ShardLost" { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(format!("{} {what} {i} of {}", c.identity, self.shards.count)),
            action: "Shard".into(),
            secondary: None,
        };
        let reference = ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            name: Some(name),
            namespace: Some(c.namespace.clone()),
            ..Default::default()
        };
        if let Err(e) = self.shared.recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "cannot publish the shard event");
        }
    }
}
