//! Compatibility with Bitnami: the real kubeseal seals for gitseal-controller, and a cluster
//! switches from Bitnami's controller to gitseal with nothing re-sealed.

use std::time::Duration;

use gitseal_shared::manifest::parse_documents;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::bitnami::{BitnamiController, BitnamiOptions};
use gitseal_tests::{ControlPlane, Peer, exec_binary, with_temp_ns};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

use crate::fixture::{Gitseal, secret_with, synced};

async fn kubeseal(cert_url: &str, secret: &Value, extra: &[&str]) -> anyhow::Result<Value> {
    let mut args = vec!["--cert", cert_url, "-o", "json"];
    args.extend_from_slice(extra);
    let input = serde_json::to_vec(secret)?;
    let out =
        exec_binary(Peer::Kubeseal.path()?, args, std::iter::empty::<(&str, &str)>(), &input, Duration::from_secs(60))
            .await?;
    Ok(parse_documents(&String::from_utf8(out)?)?.remove(0).value)
}

fn secret(ns: &str, name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": {"v": value}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeseal_sealed_secrets_in_every_scope_become_secrets() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--bitnami-compat"]).await?;
        g.ready().await?;
        let url = format!("{}/v1/cert.pem", g.api);
        let client = ns.client();
        for (scope, name) in [("strict", "s-strict"), ("namespace-wide", "s-ns"), ("cluster-wide", "s-cluster")] {
            let sealed = kubeseal(&url, &secret(ns.name(), name, scope), &["--scope", scope]).await?;
            assert_eq!(sealed["apiVersion"], "bitnami.com/v1alpha1");
            gitseal_tests::apply_json(&client, sealed.clone()).await?;
            secret_with(&ns, name, "v", scope).await?;
            // The same bytes under gitseal's own group.
            let mut ours = sealed;
            ours["apiVersion"] = "gitseal.dev/v1".into();
            ours["metadata"]["name"] = format!("{name}-g").into();
            if scope == "strict" {
                continue; // strict binds the name: a renamed copy must fail (checked below)
            }
            gitseal_tests::apply_json(&client, ours).await?;
            secret_with(&ns, &format!("{name}-g"), "v", scope).await?;
        }
        // A strict value copied under another name is refused.
        let sealed = kubeseal(&url, &secret(ns.name(), "pinned", "x"), &[]).await?;
        let mut renamed = sealed;
        renamed["apiVersion"] = "gitseal.dev/v1".into();
        renamed["metadata"]["name"] = "pinned-copy".into();
        gitseal_tests::apply_json(&client, renamed).await?;
        synced(&ns, ApiGroup::Gitseal, "pinned-copy", "False").await?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_switches_from_bitnami_to_gitseal_with_nothing_resealed() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let client = ns.client();
        gitseal_tests::install_crds_yaml(&client, &std::fs::read_to_string(Peer::BitnamiCrd.path()?)?).await?;
        let bitnami = BitnamiController::start(plane, BitnamiOptions::new(ns.name())).await?;
        let url = bitnami.cert_url();
        let sealed = kubeseal(&url, &secret(ns.name(), "legacy", "from-bitnami"), &[]).await?;
        gitseal_tests::apply_json(&client, sealed).await?;
        secret_with(&ns, "legacy", "v", "from-bitnami").await?;
        let bitnami_cert = bitnami.cert_pem().await?;
        drop(bitnami);

        // gitseal takes over: Bitnami's keys, Bitnami's SealedSecrets, Bitnami's Secrets.
        let mut g = Gitseal::start(plane, ns.name(), &["--bitnami-compat", "--key-renew-period=0"]).await?;
        g.ready().await?;
        assert_eq!(g.cert().await?.pem().trim(), bitnami_cert.trim(), "the sealing key stays Bitnami's");
        synced(&ns, ApiGroup::Bitnami, "legacy", "True").await?;

        // The Secret is gitseal's to keep now: deleted, it comes back.
        let secrets: Api<Secret> = ns.api();
        secrets.delete("legacy", &DeleteParams::default()).await?;
        secret_with(&ns, "legacy", "v", "from-bitnami").await?;

        // And what developers seal with the Bitnami certificate they already have still works.
        let sealed = kubeseal(&url, &secret(ns.name(), "after", "still-works"), &[]).await;
        // (Bitnami's URL is gone with its controller; seal offline with the same certificate.)
        let sealed = match sealed {
            Ok(s) => s,
            Err(_) => {
                let cert_file = plane.dir().join(format!("bitnami-{}.pem", ns.name()));
                std::fs::write(&cert_file, &bitnami_cert)?;
                kubeseal(&cert_file.display().to_string(), &secret(ns.name(), "after", "still-works"), &[]).await?
            }
        };
        gitseal_tests::apply_json(&client, sealed).await?;
        secret_with(&ns, "after", "v", "still-works").await?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
