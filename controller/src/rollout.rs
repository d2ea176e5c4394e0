//! Restart what uses a Secret when its unsealed data changes (opt-in, issue 12).
//!
//! A SealedSecret annotated `gitseal.dev/restart-on-change: deployment/api, statefulset/db`
//! names workloads in its own namespace. When the controller is run with `--rollout-restart`
//! and a reconcile *changes the data* of the Secret it produces (the keyed data digest of the
//! new data differs from the existing Secret's: not a resync, not a re-encryption for a new key,
//! not a controller restart, not the first creation, not a drift repair), each named workload
//! gets `spec.template.metadata.annotations["gitseal.dev/restartedAt"]` set to now, as
//! `kubectl rollout restart` does with its own annotation; the workload controller rolls it.
//!
//! # Flow
//!
//! [`parse_targets`] reads the annotation (pure); [`restart_all`] reads each target, checks with
//! [`template_uses_secret`] (pure) that its pod template references the produced Secret, patches
//! it once (with the resourceVersion it checked, so a template changed in between is not
//! restarted), after the Secret was applied, and records an Event on the SealedSecret (and on
//! the workload when it was restarted) and an audit record per target.
//!
//! # Guarantees
//!
//! Whoever may create a SealedSecret can write the annotation, so it must not be a way to restart
//! workloads they could not restart themselves: a workload whose pod template does not reference
//! the Secret (a `secret` volume, a projected `secret` source, `env[].valueFrom.secretKeyRef` or
//! `envFrom[].secretRef` of a container or init container) is never patched, only reported
//! (`RolloutRestartRefused`, audit reason `NotUsingSecret`).
//!
//! # Errors
//!
//! Nothing here fails the reconcile or retries: a bad annotation, a missing workload or a
//! refused patch (the chart's `rolloutRestart.enabled` grants `patch` on the three kinds) is a
//! warning Event naming the target and why, and an audit record. Retrying could restart twice.

use gitseal_shared::audit::Outcome as AuditOutcome;
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use k8s_openapi::api::core::v1::{Container, ObjectReference, PodSpec, PodTemplateSpec};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::Shared;
use crate::audit::{AuditLog, now_rfc3339, object_of};

/// The opt-in annotation on a SealedSecret.
pub const RESTART_ON_CHANGE_ANNOTATION: &str = "gitseal.dev/restart-on-change";
/// The pod-template annotation a restart sets (the value is the time).
pub const RESTARTED_AT_ANNOTATION: &str = "gitseal.dev/restartedAt";
/// Most workloads one SealedSecret may restart.
pub const MAX_TARGETS: usize = 8;

/// A workload kind that has a pod template and rolls on its change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" | "deployment.apps" | "deployments.apps" => Some(Kind::Deployment),
            "statefulset" | "statefulsets" | "sts" | "statefulset.apps" | "statefulsets.apps" => {
                Some(Kind::StatefulSet)
            }
            "daemonset" | "daemonsets" | "ds" | "daemonset.apps" | "daemonsets.apps" => Some(Kind::DaemonSet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }

    fn api_resource(self) -> ApiResource {
        let plural = match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", self.as_str()), plural)
    }
}

/// One workload to restart, in the SealedSecret's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str().to_ascii_lowercase(), self.name)
    }
}

/// A DNS-1123 subdomain, as workload names are.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `deployment/api, statefulset/db` → targets (duplicates dropped). Same namespace only, at most
/// [`MAX_TARGETS`]; the error is one line naming the bad entry.
pub fn parse_targets(value: &str) -> Result<Vec<Target>, String> {
    let mut out: Vec<Target> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let shown: String = entry.chars().take(80).collect();
        let mut parts = entry.split('/');
        let (Some(kind), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{shown:?} is not KIND/NAME (a workload in the SealedSecret's own namespace, e.g. deployment/api)"
            ));
        };
        let kind = Kind::parse(kind.trim())
            .ok_or_else(|| format!("{shown:?}: only deployment, statefulset and daemonset can be restarted"))?;
        let name = name.trim();
        if !valid_name(name) {
            return Err(format!("{shown:?}: {name:?} is not a valid workload name"));
        }
        let t = Target { kind, name: name.to_string() };
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() > MAX_TARGETS {
            return Err(format!("more than {MAX_TARGETS} workloads to restart"));
        }
    }
    Ok(out)
}

/// The merge patch `kubectl rollout restart` would send, under gitseal's annotation. With the
/// resourceVersion the template was checked at, the API server refuses it (409) when the
/// workload changed since.
pub fn restart_patch(now: &str, resource_version: Option<&str>) -> serde_json::Value {
    let mut patch =
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}});
    if let Some(rv) = resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": rv});
    }
    patch
}

/// Whether a pod template references the Secret `secret` (of its own namespace): a `secret`
/// volume, a `secret` source of a projected volume, or `env[].valueFrom.secretKeyRef` /
/// `envFrom[].secretRef` of a container or init container. `imagePullSecrets` do not count: the
/// kubelet reads them at pull time, a restart changes nothing.
pub fn template_uses_secret(template: &PodTemplateSpec, secret: &str) -> bool {
    template.spec.as_ref().is_some_and(|spec| spec_uses_secret(spec, secret))
}

fn spec_uses_secret(spec: &PodSpec, secret: &str) -> bool {
    let volumes = spec.volumes.iter().flatten().any(|v| {
        v.secret.as_ref().is_some_and(|s| s.secret_name.as_deref() == Some(secret))
            || v.projected.as_ref().is_some_and(|p| {
                p.sources.iter().flatten().any(|src| src.secret.as_ref().is_some_and(|s| s.name == secret))
            })
    });
    volumes
        || spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| container_uses_secret(c, secret))
}

fn container_uses_secret(c: &Container, secret: &str) -> bool {
    let env = c
        .env
        .iter()
        .flatten()
        .any(|e| e.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref()).is_some_and(|r| r.name == secret));
    env || c.env_from.iter().flatten().any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == secret))
}

/// Why a target was not restarted: audit reason and the Event's words.
fn refusal(e: &kube::Error, verb: &str) -> (&'static str, String) {
    match e {
        kube::Error::Api(ae) if ae.code == 403 => (
            "Forbidden",
            format!(
                "the controller may not {verb} it: enable the chart's rolloutRestart.enabled (or grant get and patch on deployments, statefulsets, daemonsets)"
            ),
        ),
        kube::Error::Api(ae) if ae.code == 404 => ("NotFound", "it does not exist in this namespace".to_string()),
        kube::Error::Api(ae) if ae.code == 409 => {
            ("Conflict", "it changed while it was being checked; not restarted".to_string())
        }
        other => ("Failed", other.to_string()),
    }
}

/// Restart every workload the SealedSecret names (called once its changed Secret is applied).
pub async fn restart_all(shared: &Shared, ss: &SealedSecretObject, group: ApiGroup) {
    let Some(value) = ss.metadata.annotations.as_ref().and_then(|a| a.get(RESTART_ON_CHANGE_ANNOTATION)) else {
        return;
    };
    let ns = ss.namespace().unwrap_or_default();
    let reference = ss.object_ref(&group.api_resource());
    let targets = match parse_targets(value) {
        Ok(t) => t,
        Err(why) => {
            let note = format!("{RESTART_ON_CHANGE_ANNOTATION}: {why}; nothing restarted");
            event(shared, &reference, true, "RolloutRestartInvalid", note).await;
            audit_invalid(shared, ss);
            return;
        }
    };
    let now = now_rfc3339();
    let secret = ss.name_any();
    for target in targets {
        let api: Api<DynamicObject> = Api::namespaced_with(shared.client.clone(), &ns, &target.kind.api_resource());
        let current = match api.get(&target.name).await {
            Ok(obj) => obj,
            Err(e) => {
                let (reason, why) = refusal(&e, "read");
                let note = format!("cannot restart {target}: {why}");
                event(shared, &reference, true, "RolloutRestartFailed", note).await;
                audit(shared, ss, &target, AuditOutcome::Failure, Some(reason), None);
                continue;
            }
        };
        let template = current
            .data
            .pointer("/spec/template")
            .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t.clone()).ok());
        if !template.is_some_and(|t| template_uses_secret(&t, &secret)) {
            let why = format!("not restarted: does not use Secret {secret}");
            let note = format!("{target} is {why} (only workloads whose pod template references it are restarted)");
            event(shared, &reference, true, "RolloutRestartRefused", note).await;
            audit(shared, ss, &target, AuditOutcome::Failure, Some("NotUsingSecret"), Some(why));
            continue;
        }
        let patch = restart_patch(&now, current.metadata.resource_version.as_deref());
        match api.patch(&target.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(obj) => {
                let note = format!("the data of Secret {secret} changed: restarted {target}");
                event(shared, &reference, false, "RolloutRestarted", note.clone()).await;
                let workload = ObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: Some(target.kind.as_str().into()),
                    name: Some(target.name.clone()),
                    namespace: Some(ns.clone()),
                    uid: obj.metadata.uid.clone(),
                    ..Default::default()
                };
                event(shared, &workload, false, "RolloutRestarted", note).await;
                audit(shared, ss, &target, AuditOutcome::Success, None, None);
            }
            Err(e) => {
                let (reason, why) = refusal(&e, "patch");
                let note = format!("cannot restart {target}: {why}");
                event(shared, &reference, true, "RolloutRestartFailed", note).await;
                audit(shared, ss, &target, AuditOutcome::Failure, Some(reason), None);
            }
        }
    }
}

async fn event(shared: &Shared, reference: &ObjectReference, warning: bool, reason: &str, note: String) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "RolloutRestart".into(),
        secondary: None,
    };
    if let Err(e) = shared.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

fn audit(
    shared: &Shared,
    ss: &SealedSecretObject,
    target: &Target,
    outcome: AuditOutcome,
    reason: Option<&str>,
    why: Option<String>,
) {
    let mut rec = AuditLog::record("RolloutRestart", outcome);
    rec.object = Some(object_of(ss));
    rec.reason = reason.map(str::to_string);
    rec.message = Some(match why {
        Some(why) => format!("{target} {why}"),
        None => format!("restart {target}"),
    });
    shared.audit.write(rec);
}

fn audit_invalid(shared: &Shared, ss: &SealedSecretObject) {
    let mut rec = AuditLog::record("RolloutRestart", AuditOutcome::Failure);
    rec.object = Some(object_of(ss));
    rec.reason = Some("InvalidAnnotation".into());
    shared.audit.write(rec);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_kind_slash_name_in_the_same_namespace() {
        let t = parse_targets("deployment/api, statefulset/db ,ds/agent,deploy/api").unwrap();
        assert_eq!(
            t,
            [
                Target { kind: Kind::Deployment, name: "api".into() },
                Target { kind: Kind::StatefulSet, name: "db".into() },
                Target { kind: Kind::DaemonSet, name: "agent".into() },
            ]
        );
        assert_eq!(t[0].to_string(), "deployment/api");
        assert!(parse_targets("").unwrap().is_empty());
    }

    #[test]
    fn anything_else_is_refused_with_the_entry_named() {
        for (value, says) in [
            ("other-ns/deployment/api", "not KIND/NAME"),
            ("api", "not KIND/NAME"),
            ("pod/api", "only deployment"),
            ("cronjob/x", "only deployment"),
            ("deployment/API", "not a valid workload name"),
            ("deployment/", "not a valid workload name"),
        ] {
            let e = parse_targets(value).unwrap_err();
            assert!(e.contains(says), "{value}: {e}");
        }
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("deployment/d{i}")).collect();
        assert!(parse_targets(&many.join(",")).unwrap_err().contains("more than"));
    }

    #[test]
    fn the_patch_sets_the_pod_template_annotation_like_kubectl_rollout_restart() {
        let p = restart_patch("2026-01-01T00:00:00Z", Some("42"));
        assert_eq!(p["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION], "2026-01-01T00:00:00Z");
        assert_eq!(p["metadata"]["resourceVersion"], "42", "the patch is refused when the template changed since");
        assert!(restart_patch("t", None).get("metadata").is_none());
    }

    fn template(spec: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({"spec": spec})).unwrap()
    }

    #[test]
    fn every_way_a_pod_template_can_reference_a_secret_counts() {
        let container = |c: serde_json::Value| {
            let mut c = c;
            c["name"] = "c".into();
            c
        };
        for spec in [
            serde_json::json!({"containers": [{"name": "c"}], "volumes": [{"name": "v", "secret": {"secretName": "db"}}]}),
            serde_json::json!({"containers": [{"name": "c"}], "volumes": [{"name": "v", "projected": {"sources": [
                {"configMap": {"name": "cm"}}, {"secret": {"name": "db"}}]}}]}),
            serde_json::json!({"containers": [container(serde_json::json!({"env": [
                {"name": "A", "value": "x"}, {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}))]}),
            serde_json::json!({"containers": [container(serde_json::json!({"envFrom": [{"secretRef": {"name": "db"}}]}))]}),
            serde_json::json!({"containers": [{"name": "c"}], "initContainers": [container(serde_json::json!({"envFrom": [{"secretRef": {"name": "db"}}]}))]}),
            serde_json::json!({"containers": [{"name": "c"}], "initContainers": [container(serde_json::json!({"env": [
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}))]}),
        ] {
            assert!(template_uses_secret(&template(spec.clone()), "db"), "{spec}");
            assert!(!template_uses_secret(&template(spec.clone()), "other"), "{spec}");
        }
    }

    #[test]
    fn a_template_that_does_not_reference_the_secret_does_not_count() {
        for spec in [
            serde_json::json!({"containers": [{"name": "c"}]}),
            // Same name, other kinds of object: not the Secret.
            serde_json::json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "db"}}],
                "env": [{"name": "P", "valueFrom": {"configMapKeyRef": {"name": "db", "key": "k"}}}]}],
                "volumes": [{"name": "v", "configMap": {"name": "db"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "db"}}]}}]}),
            // A pull secret is read at pull time; a restart would change nothing.
            serde_json::json!({"containers": [{"name": "c"}], "imagePullSecrets": [{"name": "db"}]}),
        ] {
            assert!(!template_uses_secret(&template(spec.clone()), "db"), "{spec}");
        }
        assert!(!template_uses_secret(&PodTemplateSpec::default(), "db"));
    }
}
