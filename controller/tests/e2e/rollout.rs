//! `gitseal.dev/restart-on-change` (issue 12): a change of the unsealed data restarts the named
//! workloads once; a re-encryption, a resync or a controller restart never does; a workload the
//! controller may not patch is reported, not retried; a workload whose pod template does not use
//! the Secret is never restarted (the annotation is no way around RBAC on workloads). The restart is counted by the
//! Deployment's generation (each pod-template change moves it by one).

use std::time::Duration;

use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, apply_json, wait_for, with_temp_ns};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde_json::{Value, json};

use crate::fixture::{Gitseal, TIMEOUT, event_reasons, seal, secret_with, synced};

const RESTARTED_AT: &str = "gitseal.dev/restartedAt";

fn annotated(mut ss: Value) -> Value {
    ss["metadata"]["annotations"]["gitseal.dev/restart-on-change"] =
        json!("deployment/api, statefulset/db, deployment/other");
    ss
}

async fn restarted_at(api: &Api<Deployment>) -> anyhow::Result<Option<String>> {
    restarted_at_of(api, "api").await
}

async fn restarted_at_of(api: &Api<Deployment>, name: &str) -> anyhow::Result<Option<String>> {
    let d = api.get(name).await?;
    Ok(d.spec.and_then(|s| s.template.metadata).and_then(|m| m.annotations).and_then(|a| a.get(RESTARTED_AT).cloned()))
}

async fn generation(api: &Api<Deployment>) -> anyhow::Result<i64> {
    Ok(api.get("api").await?.metadata.generation.unwrap_or_default())
}

fn restarts_in(audit: &[String]) -> usize {
    audit
        .iter()
        .filter(|l| l.contains("\"action\":\"RolloutRestart\"") && l.contains("\"outcome\":\"success\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_change_restarts_named_workloads_once_and_a_reseal_resync_or_restart_never_does() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let client = ns.client();
        let n = ns.name();
        // What the chart's rolloutRestart.enabled grants, for Deployments only: the StatefulSet
        // target shows what a missing grant looks like.
        apply_json(
            &client,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "rollout-restart", "namespace": n},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}]}),
        )
        .await?;
        apply_json(
            &client,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "rollout-restart", "namespace": n},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-restart"},
            "subjects": [{"kind": "ServiceAccount", "name": "gitseal-controller", "namespace": n}]}),
        )
        .await?;
        apply_json(
            &client,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": n},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "registry.invalid/api:1",
                        "envFrom": [{"secretRef": {"name": "db"}}]}]}}}}),
        )
        .await?;
        // Named in the annotation, patchable, but its pod template does not use the Secret: a
        // tenant who may create SealedSecrets must not restart it.
        apply_json(
            &client,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "other", "namespace": n},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
                "template": {"metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "other", "image": "registry.invalid/other:1",
                        "envFrom": [{"configMapRef": {"name": "db"}}]}],
                        "volumes": [{"name": "s", "secret": {"secretName": "db-other"}}]}}}}),
        )
        .await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), n);

        let mut g = Gitseal::start(plane, n, &["--rollout-restart"]).await?;
        g.ready().await?;
        let cert = g.cert().await?;

        // First creation: nothing used the Secret yet, nothing restarts.
        apply_json(&client, annotated(seal(&cert, n, "db", &[("password", "one")], ApiGroup::Gitseal))).await?;
        secret_with(&ns, "db", "password", "one").await?;
        synced(&ns, ApiGroup::Gitseal, "db", "True").await?;
        assert_eq!(restarted_at(&deployments).await?, None);
        assert_eq!(generation(&deployments).await?, 1);

        // A new value from Git: one restart, and the Deployment rolls (a second ReplicaSet).
        apply_json(&client, annotated(seal(&cert, n, "db", &[("password", "two")], ApiGroup::Gitseal))).await?;
        secret_with(&ns, "db", "password", "two").await?;
        let first = wait_for("the Deployment's restartedAt", TIMEOUT, || restarted_at(&deployments)).await?;
        // The pod template changed once: the Deployment's generation moved by exactly one (the
        // harness runs no deployment controller, so no ReplicaSet rolls; the API server counts).
        assert_eq!(generation(&deployments).await?, 2);
        // The three targets are handled in order; the last one's audit record ends the round.
        let audit = wait_for("the audit record for deployment/other", TIMEOUT, || async {
            let audit = g.audit_lines();
            anyhow::Ok(audit.iter().any(|l| l.contains("NotUsingSecret")).then_some(audit))
        })
        .await?;
        let reasons = event_reasons(&ns, "db").await?;
        assert!(reasons.iter().any(|r| r == "RolloutRestarted"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r == "RolloutRestartFailed"), "statefulset/db is not patchable: {reasons:?}");
        assert_eq!(restarts_in(&audit), 1, "{audit:#?}");
        assert!(audit.iter().any(|l| l.contains("\"action\":\"RolloutRestart\"") && l.contains("Forbidden")));
        // deployment/other does not use Secret db: refused, reported, never patched.
        assert!(reasons.iter().any(|r| r == "RolloutRestartRefused"), "{reasons:?}");
        assert!(
            audit.iter().any(|l| l.contains("NotUsingSecret")
                && l.contains("deployment/other not restarted: does not use Secret db")),
            "{audit:#?}"
        );
        assert_eq!(restarted_at_of(&deployments, "other").await?, None);
        assert_eq!(deployments.get("other").await?.metadata.generation, Some(1));

        // The same value sealed again (new ciphertext, as a re-encryption for a new key gives).
        apply_json(&client, annotated(seal(&cert, n, "db", &[("password", "two")], ApiGroup::Gitseal))).await?;
        let ss = synced(&ns, ApiGroup::Gitseal, "db", "True").await?;
        assert!(ss.pointer("/metadata/generation").and_then(Value::as_i64) >= Some(3));
        assert_eq!(restarts_in(&g.audit_lines()), 1, "a re-encryption restarted");
        // A controller restart: it re-reads every SealedSecret.
        drop(g);
        let mut again = Gitseal::start_named(plane, n, "again", &["--rollout-restart"]).await?;
        again.ready().await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(restarted_at(&deployments).await?, Some(first), "restarted again without a data change");
        assert_eq!(generation(&deployments).await?, 2, "the pod template changed again");
        assert_eq!(restarts_in(&again.audit_lines()), 0);
        again.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
