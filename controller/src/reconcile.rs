//! Reconcile: fetch the inputs, [`decide`](crate::decide::decide), apply the decision.
//!
//! One controller runs per API group (and per watched namespace): a compact cache of the
//! SealedSecrets, the Secrets it produced watched as metadata only (a direct edit or delete
//! triggers a repair), and every object looked at again when the key registry changes; see
//! `one_controller`.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use gitseal_shared::audit::Outcome as AuditOutcome;
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;

use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio_stream::wrappers::WatchStream;

use crate::Shared;
use crate::audit::{AuditLog, now_rfc3339, object_of};
use crate::backoff::Backoff;
use crate::budget::WorkClass;
use crate::cache::{Cache, Change};
use crate::decide::{Decision, FIELD_MANAGER, Inputs, MANAGED_LABEL, Outcome, Reason, decide};
use crate::lanes::{Key, Lane, Lanes};
use crate::trim::Cached;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read Secret {0}")]
    GetSecret(String, #[source] kube::Error),
    #[error("cannot apply Secret {0}")]
    Apply(String, #[source] kube::Error),
    #[error("cannot update status of {0}")]
    Status(String, #[source] kube::Error),
    #[error("deciding {0} failed in the private-key pool")]
    Decide(String),
    #[error("cannot read SealedSecret {0}")]
    GetObject(String, #[source] kube::Error),
    /// The decision was KeyUnavailable (a token gone) and is reported; the object is retried
    /// with the per-object backoff of `error_policy` like any transient failure.
    #[error("a sealing key of {0} is in a token that cannot be reached now")]
    KeyUnavailable(String),
}

impl Error {
    /// Bounded label of `gitseal_reconcile_errors_total` (one of `metrics::RECONCILE_ERRORS`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::GetSecret(..) => "get_secret",
            Error::Apply(..) => "apply",
            Error::Status(..) => "status",
            Error::Decide(..) => "decide",
            Error::GetObject(..) => "get_object",
            Error::KeyUnavailable(..) => "key_unavailable",
        }
    }
}

pub async fn reconcile(ss: Arc<SealedSecretObject>, shared: Arc<Shared>) -> Result<Action, Error> {
    Ok(reconcile_for(ss, shared).await?.map_or_else(Action::await_change, Action::requeue))
}

/// Asked just before a Secret is applied (with `--shards`: whether this replica still holds the
/// object's shard with time to spare, see [`crate::shard::Fence`]); kept alive until the apply's
/// audit record and status are written.
pub trait ApplyFence: Send + Sync {
    fn may_apply(&self) -> bool;
}

/// [`reconcile`], saying when to run again (`None`: on the next change). `ss` may be a trimmed
/// cached object ([`crate::trim`]): the whole object is read only when its values must be opened.
pub async fn reconcile_for(ss: Arc<SealedSecretObject>, shared: Arc<Shared>) -> Result<Option<Duration>, Error> {
    reconcile_fenced(ss, shared, None).await
}

/// [`reconcile_for`], applying a Secret only if `fence` allows it at that moment.
pub async fn reconcile_fenced(
    ss: Arc<SealedSecretObject>,
    shared: Arc<Shared>,
    fence: Option<Arc<dyn ApplyFence>>,
) -> Result<Option<Duration>, Error> {
    if ss.metadata.deletion_timestamp.is_some() {
        // The Secret goes with it through its owner reference.
        return Ok(None);
    }
    if let Err(why) = shared.audit.ready_for_work() {
        // Fail closed: nothing is produced or changed that the trail could not record.
        tracing::warn!(object = %format!("{}/{}", ss.namespace().unwrap_or_default(), ss.name_any()), why, "not unsealing");
        return Ok(Some(Duration::from_secs(2)));
    }
    let _timer = shared.metrics.reconcile_started();
    let group = ApiGroup::of(&ss).unwrap_or_default();
    let ns = ss.namespace().unwrap_or_default();
    let name = ss.name_any();
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    let existing = secrets.get_opt(&name).await.map_err(|e| Error::GetSecret(format!("{ns}/{name}"), e))?;

    let Some(digest_key) = shared.registry.digest_key() else {
        // The leader loads or makes it right after the key Secrets are listed.
        return Ok(Some(Duration::from_secs(1)));
    };
    let revoked = shared.registry.revoked_ids();
    let now = now_rfc3339();
    let inputs = Inputs {
        ss: &ss,
        group,
        keys: &[],
        revoked: &revoked,
        existing: existing.as_ref(),
        digest_key: &digest_key,
        now: &now,
    };
    if let Some(decision) = crate::decide::without_keys(&inputs) {
        // In sync, or not ours: no key, no ciphertext needed.
        return act_shielded(shared.clone(), ss, group, secrets, decision, fence).await;
    }
    let ss = match crate::trim::cached_digest(&ss) {
        None => ss,
        // The cache holds no ciphertext: read the whole object (one GET per unseal).
        Some(_) => {
            let api: Api<SealedSecretObject> = Api::namespaced_with(shared.client.clone(), &ns, &group.api_resource());
            match api.get_opt(&name).await.map_err(|e| Error::GetObject(format!("{ns}/{name}"), e))? {
                Some(mut full) => {
                    crate::trim::forget_cached_digest(&mut full);
                    Arc::new(full)
                }
                None => return Ok(None),
            }
        }
    };
    // Keys that opened objects recently first: kubeseal-made objects carry no key hint.
    let usable = shared.registry.usable_recent_first();
    // RSA private operations run in the one private-key pool, where reconciliation goes first
    // (API floods cannot delay it); the pool counts every operation, failed ones included.
    let (job_ss, job_existing) = (ss.clone(), existing.clone());
    let (decision, spent) = shared
        .limits
        .pool
        .run(WorkClass::Reconcile, move || {
            let keys: Vec<_> = usable.iter().map(|k| &k.decryption).collect();
            let inputs = Inputs {
                ss: &job_ss,
                group,
                keys: &keys,
                revoked: &revoked,
                existing: job_existing.as_ref(),
                digest_key: &digest_key,
                now: &now,
            };
            decide(&inputs)
        })
        .await
        .map_err(|_| Error::Decide(format!("{ns}/{name}")))?;
    shared.metrics.private_ops(WorkClass::Reconcile, !matches!(decision.outcome, Outcome::Failed(_)), spent);
    if spent > 0 && !decision.key_ids.is_empty() {
        shared.registry.note_opened(&decision.key_ids);
    }
    act_shielded(shared.clone(), ss, group, secrets, decision, fence).await
}

/// [`act`] on a task of its own: a reconcile abandoned mid-way (its shard lost, the leader Lease
/// lost) cannot cut "apply the Secret, audit it, report it" in two, so every Secret applied
/// has its audit record.
async fn act_shielded(
    shared: Arc<Shared>,
    ss: Arc<SealedSecretObject>,
    group: ApiGroup,
    secrets: Api<Secret>,
    decision: Decision,
    fence: Option<Arc<dyn ApplyFence>>,
) -> Result<Option<Duration>, Error> {
    let unit = tokio::spawn(async move { act(&shared, &ss, group, &secrets, decision, fence.as_deref()).await });
    match unit.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled with the runtime (shutdown): try again if there is an again.
        Err(_) => Ok(Some(Duration::from_secs(1))),
    }
}

/// Apply a decision: the Secret (if `fence` allows), then metrics, audit, Event and status.
async fn act(
    shared: &Shared,
    ss: &SealedSecretObject,
    group: ApiGroup,
    secrets: &Api<Secret>,
    decision: Decision,
    fence: Option<&dyn ApplyFence>,
) -> Result<Option<Duration>, Error> {
    let (ns, name) = (ss.namespace().unwrap_or_default(), ss.name_any());
    shared.metrics.mark_revoked(format!("{ns}/{name}"), decision.outcome == Outcome::Failed(Reason::KeyRevoked));

    if decision.apply.is_some() && fence.is_some_and(|f| !f.may_apply()) {
        // Too late to write safely: the shard's next holder reconciles the object.
        tracing::warn!(object = %format!("{ns}/{name}"), "not applying the Secret: this replica's hold on its shard ends too soon");
        return Ok(Some(Duration::from_secs(1)));
    }
    let mut apply_error = None;
    if let Some(secret) = &decision.apply {
        // Before the request: a process killed between the apply and the record below would
        // otherwise leave a Secret made from opened values that the trail never mentions.
        audit_apply_started(shared, ss, &decision);
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = secrets.patch(&name, &pp, &Patch::Apply(secret)).await {
            apply_error = Some(e);
        }
    }
    match apply_error {
        None => {
            // Counted once the Secret is really applied: a failed apply is no unseal.
            shared.metrics.record(decision.outcome);
            audit(shared, ss, &decision);
            publish(shared, ss, group, &decision).await;
            if decision.data_changed && shared.config.rollout_restart {
                crate::rollout::restart_all(shared, ss, group).await;
            }
            write_status(shared, ss, group, &decision).await?;
        }
        Some(e) => {
            // The pool counted the keys' work already; the failure is counted by error_policy.
            let mut rec = AuditLog::record("Unseal", AuditOutcome::Failure);
            rec.object = Some(object_of(ss));
            rec.reason = Some("ApplyFailed".into());
            rec.message = Some(e.to_string());
            shared.audit.write(rec);
            return Err(Error::Apply(format!("{ns}/{name}"), e));
        }
    }
    Ok(match decision.outcome {
        // Transient: back off per object (error_policy), from about a second.
        Outcome::Failed(Reason::KeyUnavailable) => return Err(Error::KeyUnavailable(format!("{ns}/{name}"))),
        // Keys may arrive later (a restore); registry changes re-run everything anyway.
        Outcome::Failed(_) => Some(Duration::from_secs(600)),
        _ => None,
    })
}

/// `ApplyStarted`: the values were opened (with these keys) and their Secret is being applied;
/// an `Unseal` or `DriftRepair` record (or an `ApplyFailed` one) follows unless the process
/// dies first. An `ApplyStarted` without a follower is the mark of such a death.
fn audit_apply_started(shared: &Shared, ss: &SealedSecretObject, d: &Decision) {
    if !matches!(d.outcome, Outcome::Unsealed | Outcome::DriftReverted) {
        return;
    }
    let mut rec = AuditLog::record("ApplyStarted", AuditOutcome::Success);
    rec.object = Some(object_of(ss));
    if !d.key_ids.is_empty() {
        rec.key_id = Some(gitseal_shared::KeyId::join(d.key_ids.iter().cloned()));
    }
    shared.audit.write(rec);
}

fn audit(shared: &Shared, ss: &SealedSecretObject, d: &Decision) {
    let (action, outcome) = match d.outcome {
        Outcome::InSync => return,
        Outcome::Unsealed => ("Unseal", AuditOutcome::Success),
        Outcome::DriftReverted => ("DriftRepair", AuditOutcome::Success),
        Outcome::Failed(_) => ("Unseal", AuditOutcome::Failure),
    };
    let mut rec = AuditLog::record(action, outcome);
    rec.object = Some(object_of(ss));
    if !d.key_ids.is_empty() {
        rec.key_id = Some(gitseal_shared::KeyId::join(d.key_ids.iter().cloned()));
    }
    if let Outcome::Failed(r) = d.outcome {
        rec.reason = Some(r.as_str().into());
        rec.message = Some(d.message.clone());
    }
    shared.audit.write(rec);
}

async fn publish(shared: &Shared, ss: &SealedSecretObject, group: ApiGroup, d: &Decision) {
    let Some(ev) = &d.event else { return };
    let note: String = ev.note.chars().take(1000).collect();
    let reference = ss.object_ref(&group.api_resource());
    // Not through the Recorder: it caches every event for six minutes (see object_events).
    let event =
        crate::object_events::event(&reference, &shared.config.identity, ev.warning, ev.reason, "Unseal", &note);
    if let Err(e) = crate::object_events::publish(&shared.client, &event).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

async fn write_status(shared: &Shared, ss: &SealedSecretObject, group: ApiGroup, d: &Decision) -> Result<(), Error> {
    let Some(status) = &d.status else { return Ok(()) };
    let ns = ss.namespace().unwrap_or_default();
    let name = ss.name_any();
    let api: Api<SealedSecretObject> = Api::namespaced_with(shared.client.clone(), &ns, &group.api_resource());
    // Server-side apply under gitseal's field manager: the status is gitseal's whole (a merge
    // patch could not drop a stale condition message).
    let patch = serde_json::json!({
        "apiVersion": group.api_version(),
        "kind": gitseal_shared::types::KIND,
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(&name, &pp, &Patch::Apply(&patch)).await {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(ae)) if ae.code == 404 => Ok(()),
        Err(e) => Err(Error::Status(format!("{ns}/{name}"), e)),
    }
}

pub fn error_policy(ss: Arc<SealedSecretObject>, error: &Error, shared: Arc<Shared>, backoff: &Backoff) -> Duration {
    shared.metrics.reconcile_errors.get_or_create(&crate::metrics::ErrorLabels { error: error.metric_label() }).inc();
    let object = format!("{}/{}", ss.namespace().unwrap_or_default(), ss.name_any());
    let after = backoff.failed(&object);
    tracing::warn!(object = %object, error = %crate::error::report(error), retry_in = ?after, "reconcile failed; retrying");
    after
}

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
/// compact cache ([`crate::trim::Cached`]), a metadata watch of the Secrets it produced, and
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
    let mut later = futures::stream::FuturesUnordered::new();
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
                    let (lanes, cache, shared) = (lanes.clone(), cache.clone(), shared.clone());
                    later.push(async move {
                        tokio::time::sleep(after).await;
                        if let Some(ss) = cache.get(&key) {
                            let settled = ss.metadata.deletion_timestamp.is_none() && crate::lanes::is_unchanged(&ss);
                            route(key, settled, &shared, &lanes);
                        }
                    });
                }
            }
            Some(()) = later.next(), if !later.is_empty() => {}
        }
    }
}
