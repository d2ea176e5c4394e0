//! Reconcile: fetch the inputs, [`decide`](crate::decide::decide), apply the decision.
//!
//! What drives it (watches, cache, lanes, workers) is [`crate::driver`].

use std::sync::Arc;
use std::time::Duration;

use gitseal_shared::audit::Outcome as AuditOutcome;
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;

use kube::{Resource, ResourceExt};

use crate::Shared;
use crate::audit::{AuditLog, now_rfc3339, object_of};
use crate::backoff::Backoff;
use crate::budget::WorkClass;
use crate::decide::{Decision, FIELD_MANAGER, Inputs, Outcome, Reason, decide};

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
