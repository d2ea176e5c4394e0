//! Scale (issue #14): kubeseal-made objects cost one key search per object, not per value, and
//! a changed object goes straight to the key that opened it last time.

use std::time::Duration;

use gitseal_keys::generate::{KeyPair, generate_key_pair};
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, Peer, exec_binary, with_temp_ns};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::fixture::{Gitseal, secret_with, synced};

const RECONCILE_OPS: &str = "gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}";

/// `count` RSA-2048 keys with NotBefore a month apart (index 0 oldest), stored as key Secrets
/// in `ns` with both labels, as after a year of monthly renewals under Bitnami.
pub async fn key_secrets(client: &kube::Client, ns: &str, count: usize) -> anyhow::Result<Vec<KeyPair>> {
    let now = time::OffsetDateTime::now_utc();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut pairs = Vec::new();
    for i in 0..count {
        let age = time::Duration::days(30 * (count - i) as i64);
        let pair = generate_key_pair(gitseal_keys::RsaBits::Rsa2048, "", now - age, time::Duration::days(3650))?;
        let data = pair.secret_data()?.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
        let labels = [("gitseal.dev/key", "active"), ("sealedsecrets.bitnami.com/sealed-secrets-key", "active")];
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("sealed-secrets-key{i:02}")),
                labels: Some(labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &secret).await?;
        pairs.push(pair);
    }
    Ok(pairs)
}

/// The real kubeseal seals a Secret of `values` items for `pair`'s certificate.
pub async fn kubeseal(pair: &KeyPair, ns: &str, name: &str, values: usize, tag: &str) -> anyhow::Result<Value> {
    let cert = tempfile::NamedTempFile::new()?;
    std::fs::write(cert.path(), pair.cert.pem())?;
    let data: serde_json::Map<String, Value> =
        (0..values).map(|v| (format!("k{v}"), json!(format!("{tag}-{v}")))).collect();
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data});
    let cert_path = cert.path().display().to_string();
    let args = ["--cert", cert_path.as_str(), "-o", "json"];
    let input = serde_json::to_vec(&secret)?;
    let out =
        exec_binary(Peer::Kubeseal.path()?, args, std::iter::empty::<(&str, &str)>(), &input, Duration::from_secs(60))
            .await?;
    Ok(parse_documents(&String::from_utf8(out)?)?.remove(0).value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_kubeseal_made_objects_cost_one_key_search_per_object_and_changes_go_straight_to_their_key()
-> anyhow::Result<()> {
    const KEYS: usize = 13;
    const OBJECTS: usize = 12;
    const VALUES: usize = 3;
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let client = ns.client();
        gitseal_tests::install_crds_yaml(&client, &std::fs::read_to_string(Peer::BitnamiCrd.path()?)?).await?;
        let pairs = key_secrets(&client, ns.name(), KEYS).await?;
        // Two old keys, alternating: newest-first order puts them 5th and 10th of 13, and no
        // object says which (kubeseal writes no key id).
        let key_of = |i: usize| if i.is_multiple_of(2) { &pairs[3] } else { &pairs[8] };
        for i in 0..OBJECTS {
            let sealed = kubeseal(key_of(i), ns.name(), &format!("s{i:02}"), VALUES, "v1").await?;
            assert_eq!(sealed["apiVersion"], "bitnami.com/v1alpha1");
            assert!(sealed.pointer("/metadata/annotations/gitseal.dev~1key-id").is_none());
            gitseal_tests::apply_json(&client, sealed).await?;
        }
        let mut g = Gitseal::start(plane, ns.name(), &["--bitnami-compat", "--key-renew-period=0"]).await?;
        g.ready().await?;
        for i in 0..OBJECTS {
            secret_with(&ns, &format!("s{i:02}"), "k2", "v1-2").await?;
        }
        let cold = g.metric(RECONCILE_OPS).await?;
        println!("cold start: {cold} private operations for {OBJECTS} objects × {VALUES} values, {KEYS} keys");
        let bound = (KEYS as f64 + 1.0) / 2.0 + (VALUES - 1) as f64;
        assert!(
            cold / OBJECTS as f64 <= bound,
            "{cold} private operations for {OBJECTS} objects: more than (keys + 1)/2 + (values - 1) = {bound} each"
        );
        for i in 0..OBJECTS {
            synced(&ns, ApiGroup::Bitnami, &format!("s{i:02}"), "True").await?;
        }

        // Every object changes: its status names the key that opened it, so each value costs one
        // private operation although the two keys alternate.
        for i in 0..OBJECTS {
            let sealed = kubeseal(key_of(i), ns.name(), &format!("s{i:02}"), VALUES, "v2").await?;
            gitseal_tests::apply_json(&client, sealed).await?;
        }
        for i in 0..OBJECTS {
            secret_with(&ns, &format!("s{i:02}"), "k2", "v2-2").await?;
        }
        let changed = g.metric(RECONCILE_OPS).await? - cold;
        assert_eq!(changed, (OBJECTS * VALUES) as f64, "one private operation per value of a changed object");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// Apply `objects`, 16 at a time.
async fn apply_all(client: &kube::Client, objects: Vec<Value>) -> anyhow::Result<()> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for o in objects {
        let (client, sem) = (client.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await?;
            gitseal_tests::apply_json(&client, o).await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_a_new_object_converges_before_the_start_up_resync_of_unchanged_ones_finishes() -> anyhow::Result<()> {
    const OBJECTS: usize = 400;
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let client = ns.client();
        let mut g = Gitseal::start(plane, ns.name(), &["--key-renew-period=0"]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let objects = (0..OBJECTS)
            .map(|i| crate::fixture::seal(&cert, ns.name(), &format!("old{i:03}"), &[("v", "x")], ApiGroup::Gitseal))
            .collect();
        apply_all(&client, objects).await?;
        gitseal_tests::wait_for("every object synced", Duration::from_secs(120), || async {
            let n = g.metric("gitseal_reconciles_total{outcome=\"unsealed\"}").await?;
            Ok::<_, anyhow::Error>((n >= OBJECTS as f64).then_some(()))
        })
        .await?;
        synced(&ns, ApiGroup::Gitseal, &format!("old{:03}", OBJECTS - 1), "True").await?;
        drop(g);

        // Restart with one worker: the start-up resync re-checks every unchanged object.
        let mut g =
            Gitseal::start_named(plane, ns.name(), "gitseal-restarted", &["--key-renew-period=0", "--workers=1"])
                .await?;
        g.ready().await?;
        let started = std::time::Instant::now();
        gitseal_tests::apply_json(
            &client,
            crate::fixture::seal(&cert, ns.name(), "new", &[("v", "fresh")], ApiGroup::Gitseal),
        )
        .await?;
        secret_with(&ns, "new", "v", "fresh").await?;
        let took = started.elapsed();
        let backlog = g.metric("gitseal_resync_backlog").await?;
        let checked = g.metric("gitseal_reconciles_total{outcome=\"in_sync\"}").await?;
        println!(
            "new object converged in {took:?}; {checked} of {OBJECTS} unchanged objects re-checked, {backlog} waiting"
        );
        assert!(
            checked < OBJECTS as f64 && backlog > 0.0,
            "the new object waited for the resync ({checked} re-checked, {backlog} waiting)"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
        // The resync still finishes.
        gitseal_tests::wait_for("the resync", Duration::from_secs(120), || async {
            let n = g.metric("gitseal_reconciles_total{outcome=\"in_sync\"}").await?;
            Ok::<_, anyhow::Error>((n >= OBJECTS as f64).then_some(()))
        })
        .await?;
        assert_eq!(g.metric("gitseal_resync_backlog").await?, 0.0);
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
