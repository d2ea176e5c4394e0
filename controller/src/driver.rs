//! What drives reconcile: per API group (and watched namespace) a watch of the SealedSecrets
//! into the compact cache ([`crate::cache`]), a metadata watch of the Secrets they produced,
//! the two lanes ([`crate::lanes`]) and at most `--workers` reconciles
//! ([`crate::shard::reconcile_for`], which is [`crate::reconcile::reconcile_for`] without
//! shards).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use gitseal_shared::types::ApiGroup;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;
use tokio_stream::wrappers::WatchStream;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::Shared;
use crate::backoff::Backoff;
use crate::cache::{Cache, Change};
use crate::decide::MANAGED_LABEL;
use crate::lanes::{Key, Lane, Lanes};
use crate::reconcile::error_policy;
use crate::trim::Cached;

/// The controllers for every served group and namespace, merged into one stream to drive.
pub fn controllers(shared: Arc<Shared>) -> impl Stream<Item = ()> + Send {
    let mut groups = vec![ApiGroup::Gitseal];
    if shared.config.bitnami_compat {
        groups.push(ApiGroup::Bitnami);
    }
    let namespaces: Vec<Option<String>> = if shared.config.namespaces.is_empty() {
        vec![None]
    } else {
        shared.config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut streams = Vec::new();
    for group in groups {
        for ns in &namespaces {
            streams.push(one_controller(shared.clone(), group, ns.clone()).boxed());
        }
    }
    futures::stream::select_all(streams)
}

/// One controller: a watch of one group's SealedSecrets (in `ns`, or everywhere) kept in a
/// compact cache ([`crate::cache`]), a metadata watch of the Secrets it produced, and
/// the two lanes of [`crate::lanes`] worked through by at most `--workers` reconciles.
///
/// kube-runtime's `Controller` is not used: its scheduler queues every object of the initial
/// list (about 800 bytes each, 40 MiB for 50,000 objects) before the first reconcile, and again
/// on every key change. Here an object waits as one shared `namespace/name` in a lane.
fn one_controller(shared: Arc<Shared>, group: ApiGroup, ns: Option<String>) -> impl Stream<Item = ()> + Send {
    let client = shared.client.clone();
    let (ss_api, secret_api): (Api<Cached>, Api<PartialObjectMeta<Secret>>) = match ns.as_deref() {
        Some(ns) => (Api::namespaced_with(client.clone(), ns, &group), Api::namespaced(client, ns)),
        None => (Api::all_with(client.clone(), &group), Api::all(client)),
    };
    let cache = Arc::new(Cache::new(group));
    let lanes = Arc::new(Lanes::new(shared.standing.resync_backlog.clone()));
    let backoff = Arc::new(Backoff::default());
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    shared.standing.watches_pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);

    // The SealedSecrets: into the cache, and each applied one into its lane.
    let objects = {
        let (shared, lanes, cache, forget) = (shared.clone(), lanes.clone(), cache.clone(), backoff.clone());
        watcher(ss_api, watcher::Config::default().any_semantic()).default_backoff().map(move |ev| match ev {
            Ok(ev) => match cache.apply(ev.modify(|c| c.set_group(group))) {
                Change::Applied(key, settled) => route(key, settled, &shared, &lanes),
                Change::Deleted(key) => forget.succeeded(key.as_str()),
                Change::Listed => {
                    if !synced_tx.send_replace(true) {
                        shared.standing.watches_pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        tracing::debug!(group = %group, objects = cache.len(), "SealedSecret watch synced");
                    }
                }
                Change::None => {}
            },
            Err(e) => tracing::warn!(group = %group, error = %e, "SealedSecret watch failed; retrying"),
        })
    };
    // The Secrets it produced: an edit or deletion (drift) puts the owner in the resync lane.
    // The first list is skipped: every object is looked at after the start anyway.
    let secrets = {
        let lanes = lanes.clone();
        let mut listed = false;
        watcher(secret_api, watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"))).default_backoff().map(
            move |ev| match ev {
                Ok(watcher::Event::InitDone) => listed = true,
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) if !listed => {}
                Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s) | watcher::Event::InitApply(s)) => {
                    if let Some(key) = owner_of(&s, group) {
                        lanes.defer(key);
                    }
                }
                Ok(watcher::Event::Init) => {}
                Err(e) => tracing::warn!(group = %group, error = %e, "Secret watch failed; retrying"),
            },
        )
    };
    // A key change, and with shards a gained shard, looks at every cached object again.
    let key_changes = WatchStream::from_changes(shared.registry.subscribe()).map(|_| ());
    let everything: futures::stream::BoxStream<'static, ()> = match &shared.standing.shards {
        Some(shards) => futures::stream::select(key_changes, shards.gains()).boxed(),
        None => key_changes.boxed(),
    };
    let everything = {
        let (shared, lanes, cache) = (shared.clone(), lanes.clone(), cache.clone());
        everything.map(move |()| {
            for (key, settled) in cache.all() {
                route(key, settled, &shared, &lanes);
            }
        })
    };
    let work = futures::stream::once(drain(lanes, cache, synced_rx, shared, backoff));
    futures::stream::select_all([objects.boxed(), secrets.boxed(), everything.boxed(), work.boxed()])
}

/// The SealedSecret of `group` that controls Secret `s`, if any.
fn owner_of(s: &PartialObjectMeta<Secret>, group: ApiGroup) -> Option<Key> {
    let ns = s.metadata.namespace.as_deref()?;
    let owner = s.metadata.owner_references.as_ref()?.iter().find(|o| {
        o.controller == Some(true) && o.kind == gitseal_shared::types::KIND && o.api_version == group.api_version()
    })?;
    Some(Key::new(ns, &owner.name))
}

/// Put a cached object in its lane (see [`crate::lanes::lane_of`]).
fn route(key: Key, settled: bool, shared: &Shared, lanes: &Lanes) {
    match crate::lanes::lane_of(key.namespace(), key.name(), settled, shared.standing.shards.as_deref()) {
        // Another replica's shard (a gain routes it again).
        Lane::Elsewhere => {}
        Lane::Resync => lanes.defer(key),
        Lane::Urgent => lanes.urgent(key),
    }
}

/// Objects to look at again after a delay (a failed reconcile's backoff, a wait for keys): at
/// most one timer per object, the earlier one winning, so retries cannot pile up however
/// often an object fails.
#[derive(Default)]
struct Retries {
    queue: DelayQueue<Key>,
    at: HashMap<Key, (delay_queue::Key, Instant)>,
}

impl Retries {
    fn schedule(&mut self, key: Key, after: Duration) {
        let when = Instant::now() + after;
        match self.at.get_mut(&key) {
            Some((_, at)) if *at <= when => {}
            Some((slot, at)) => {
                self.queue.reset_at(slot, when);
                *at = when;
            }
            None => {
                let slot = self.queue.insert_at(key.clone(), when);
                self.at.insert(key, (slot, when));
            }
        }
    }

    /// The next object whose delay is over.
    async fn next(&mut self) -> Option<Key> {
        let key = self.queue.next().await?.into_inner();
        self.at.remove(&key);
        Some(key)
    }

    fn len(&self) -> usize {
        self.at.len()
    }
}

/// Reconcile what the lanes hand out, at most `--workers` at a time, once the watch has listed
/// every object; one slot is kept for urgent work. A retry goes back into its lane after its
/// delay (an object that failed is usually unchanged: the resync lane).
async fn drain(
    lanes: Arc<Lanes>,
    cache: Arc<Cache>,
    mut synced: tokio::sync::watch::Receiver<bool>,
    shared: Arc<Shared>,
    backoff: Arc<Backoff>,
) {
    if synced.wait_for(|s| *s).await.is_err() {
        return;
    }
    let mut running = futures::stream::FuturesUnordered::new();
    let mut retries = Retries::default();
    let workers = usize::from(shared.config.workers).max(1);
    let resync_slots = workers.saturating_sub(1).max(1);
    let mut resyncing = 0usize;
    loop {
        tokio::select! {
            slot = lanes.next(resyncing < resync_slots), if running.len() < workers => {
                let key = slot.key().clone();
                let cached = cache.get(&key);
                let urgent = slot.is_urgent();
                resyncing += usize::from(!urgent);
                let shared = shared.clone();
                let backoff = backoff.clone();
                running.push(async move {
                    let again = match cached {
                        // Deleted meanwhile: its Secret goes through the owner reference.
                        None => {
                            backoff.succeeded(key.as_str());
                            None
                        }
                        Some(ss) => {
                            let ss = Arc::new(ss);
                            match crate::shard::reconcile_for(ss.clone(), shared.clone()).await {
                                Ok(again) => {
                                    backoff.succeeded(key.as_str());
                                    again
                                }
                                Err(e) => Some(error_policy(ss, &e, shared, &backoff)),
                            }
                        }
                    };
                    drop(slot);
                    (key, urgent, again)
                });
            }
            Some((key, urgent, again)) = running.next(), if !running.is_empty() => {
                resyncing -= usize::from(!urgent);
                if let Some(after) = again {
                    retries.schedule(key, after);
                }
            }
            Some(key) = retries.next(), if retries.len() > 0 => {
                if let Some(settled) = cache.settled(&key) {
                    route(key, settled, &shared, &lanes);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_is_kept_once_per_object_and_the_earlier_one_wins() {
        let mut r = Retries::default();
        let (a, b) = (Key::new("ns", "a"), Key::new("ns", "b"));
        r.schedule(a.clone(), Duration::from_secs(600));
        r.schedule(a.clone(), Duration::from_millis(20));
        r.schedule(a.clone(), Duration::from_secs(600));
        r.schedule(b.clone(), Duration::from_millis(60));
        assert_eq!(r.len(), 2);
        let started = Instant::now();
        assert_eq!(r.next().await, Some(a));
        assert_eq!(r.next().await, Some(b));
        assert!(started.elapsed() < Duration::from_secs(5), "the 600 s retries were replaced");
        assert_eq!((r.len(), r.queue.len()), (0, 0));
        // An object failing over and over (its Secret edited in a loop) holds one timer.
        for _ in 0..10_000 {
            r.schedule(Key::new("ns", "c"), Duration::from_secs(600));
        }
        assert_eq!((r.len(), r.queue.len()), (1, 1));
    }

    #[test]
    fn a_secret_triggers_only_the_sealed_secret_of_its_own_namespace_that_controls_it() {
        let secret = |owners: serde_json::Value| -> PartialObjectMeta<Secret> {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db", "namespace": "team-a", "ownerReferences": owners}
            }))
            .unwrap()
        };
        let owner = |api_version: &str, controller: bool| {
            serde_json::json!([{"apiVersion": api_version, "kind": "SealedSecret", "name": "db", "uid": "u",
                                "controller": controller}])
        };
        let ours = secret(owner(ApiGroup::Gitseal.api_version(), true));
        assert_eq!(owner_of(&ours, ApiGroup::Gitseal), Some(Key::new("team-a", "db")));
        // Another group's object, or a reference that does not control the Secret: nothing.
        assert_eq!(owner_of(&ours, ApiGroup::Bitnami), None);
        assert_eq!(owner_of(&secret(owner(ApiGroup::Gitseal.api_version(), false)), ApiGroup::Gitseal), None);
        assert_eq!(owner_of(&secret(serde_json::json!([])), ApiGroup::Gitseal), None);
    }
}
