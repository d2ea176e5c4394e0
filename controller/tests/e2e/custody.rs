//! Who owns a Secret, and which keys the controller trusts: a SealedSecret of the other API
//! group cannot take over a Secret, an edit that recomputes an unkeyed digest is still drift,
//! a revoked key stays revoked after its Secret is deleted and restored, a key planted with
//! a future NotBefore is never served, and a key Secret replaced in place keeps its key.

use std::collections::BTreeMap;

use gitseal_keys::KeyPair;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, TestNamespace, wait_for, with_temp_ns};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::fixture::{Gitseal, TIMEOUT, event_reasons, seal, secret_with, synced};

fn key_secret(name: &str, pair: &KeyPair, labels: &[(&str, &str)]) -> Secret {
    let data = pair.secret_data().unwrap().into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

async fn audited(g: &Gitseal, action: &str) -> anyhow::Result<String> {
    Ok(wait_for(&format!("an audit record {action}"), TIMEOUT, || async {
        let needle = format!("\"action\":\"{action}\"");
        Ok::<_, anyhow::Error>(g.audit_lines().into_iter().find(|l| l.contains(&needle)))
    })
    .await?)
}

async fn data_of(ns: &TestNamespace, name: &str) -> anyhow::Result<BTreeMap<String, ByteString>> {
    let api: Api<Secret> = ns.api();
    Ok(api.get(name).await?.data.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sealed_secret_of_the_other_group_cannot_take_over_the_platform_secret() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--bitnami-compat", "--key-renew-period=0"]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let client = ns.client();
        // The platform's bitnami.com A/db.
        gitseal_tests::apply_json(
            &client,
            seal(&cert, ns.name(), "db", &[("password", "platform")], ApiGroup::Bitnami),
        )
        .await?;
        let before = secret_with(&ns, "db", "password", "platform").await?;
        let owner = before.metadata.owner_references.clone().unwrap();
        assert_eq!(owner[0].api_version, "bitnami.com/v1alpha1");
        synced(&ns, ApiGroup::Bitnami, "db", "True").await?;

        // The tenant's gitseal.dev A/db, same name, another value: refused.
        gitseal_tests::apply_json(&client, seal(&cert, ns.name(), "db", &[("password", "tenant")], ApiGroup::Gitseal))
            .await?;
        let s = synced(&ns, ApiGroup::Gitseal, "db", "False").await?;
        assert_eq!(s.pointer("/status/conditions/0/reason").and_then(Value::as_str), Some("SecretNotOwned"));
        wait_for("a SecretNotOwned event", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(event_reasons(&ns, "db").await?.iter().any(|r| r == "SecretNotOwned").then_some(()))
        })
        .await?;
        let api: Api<Secret> = ns.api();
        let after = api.get("db").await?;
        assert_eq!(after.data.as_ref().unwrap()["password"].0, b"platform");
        assert_eq!(after.metadata.owner_references, Some(owner));
        synced(&ns, ApiGroup::Bitnami, "db", "True").await?;
        g.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_that_recomputes_the_unkeyed_digest_is_still_reverted() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--key-renew-period=0"]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let client = ns.client();
        gitseal_tests::apply_json(&client, seal(&cert, ns.name(), "db", &[("password", "hunter2")], ApiGroup::Gitseal))
            .await?;
        let secret = secret_with(&ns, "db", "password", "hunter2").await?;
        synced(&ns, ApiGroup::Gitseal, "db", "True").await?;
        let ann = secret.metadata.annotations.clone().unwrap();
        assert!(ann["gitseal.dev/data-digest"].starts_with("hmac-sha256:"), "{ann:?}");
        let digest_key: Api<Secret> = ns.api();
        assert!(digest_key.get_opt("gitseal-digest-key").await?.is_some(), "made at first start");

        // Rewrite the value and the digest as the old unkeyed SHA-256 of type and items.
        let mut h = Sha256::new();
        h.update(b"Opaque");
        h.update([0]);
        h.update(8u64.to_be_bytes());
        h.update(b"password");
        h.update([1]);
        h.update(6u64.to_be_bytes());
        h.update(b"edited");
        let forged = gitseal_shared::hex::encode(&h.finalize());
        let patch = json!({"metadata": {"annotations": {"gitseal.dev/data-digest": forged}},
                           "data": {"password": gitseal_shared::value::encode_base64(b"edited")}});
        let api: Api<Secret> = ns.api();
        api.patch("db", &PatchParams::default(), &Patch::Merge(&patch)).await?;
        secret_with(&ns, "db", "password", "hunter2").await?;
        wait_for("a DriftReverted event", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(event_reasons(&ns, "db").await?.iter().any(|r| r == "DriftReverted").then_some(()))
        })
        .await?;
        assert!(g.metric("gitseal_reconciles_total{outcome=\"drift_reverted\"}").await? >= 1.0);
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stays_revoked_after_its_secret_is_deleted_and_restored() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--key-renew-period=0"]).await?;
        g.ready().await?;
        let first = g.cert().await?;
        let client = ns.client();
        let secrets: Api<Secret> = ns.api();
        gitseal_tests::apply_json(&client, seal(&first, ns.name(), "old", &[("k", "v")], ApiGroup::Gitseal)).await?;
        secret_with(&ns, "old", "k", "v").await?;

        // A second, newer key takes over sealing.
        let now = time::OffsetDateTime::now_utc();
        let second = gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            now + time::Duration::seconds(5),
            time::Duration::days(30),
        )?;
        secrets
            .create(&PostParams::default(), &key_secret("second", &second, &[("gitseal.dev/key", "active")]))
            .await?;
        wait_for("the second key to seal", TIMEOUT, || async {
            Ok::<_, anyhow::Error>((g.cert().await?.key_id() == second.cert.key_id()).then_some(()))
        })
        .await?;

        // What an old backup holds: the first key, active.
        let labelled = |v: &str| format!("gitseal.dev/key={v}");
        let list = secrets.list(&kube::api::ListParams::default().labels(&labelled("active"))).await?;
        let original = list
            .items
            .into_iter()
            .find(|s| s.metadata.name.as_deref() != Some("second"))
            .expect("the first key Secret");
        let original_name = original.metadata.name.clone().unwrap();

        // Revoke it (here by its label, as an older controller or a hand edit does).
        let patch = json!({"metadata": {"labels": {"gitseal.dev/key": "revoked"}}});
        secrets.patch(&original_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let first_id = first.key_id().to_string();
        let listed = wait_for("the revocation list to name the key", TIMEOUT, || {
            let (secrets, first_id) = (secrets.clone(), first_id.clone());
            async move {
                let s = secrets.get_opt("gitseal-revoked-keys").await?;
                let text = s
                    .and_then(|s| s.data?.get("key-ids").map(|b| String::from_utf8_lossy(&b.0).to_string()))
                    .unwrap_or_default();
                Ok::<_, kube::Error>(text.contains(&first_id).then_some(text))
            }
        })
        .await?;
        // The RSA id and, for keys with an age identity, its recipient's id: nothing else.
        assert!(
            (1..=2).contains(&listed.lines().count()) && listed.lines().all(|l| l.starts_with("SHA256:")),
            "{listed}"
        );

        // Delete the revoked Secret, then restore the old backup's copy, active.
        secrets.delete(&original_name, &DeleteParams::default()).await?;
        let mut restored = original.clone();
        restored.metadata = kube::api::ObjectMeta {
            name: Some("restored-first".into()),
            labels: original.metadata.labels.clone(),
            annotations: Some([("gitseal.dev/restored-by".to_string(), "someone".to_string())].into()),
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &restored).await?;
        audited(&g, "KeyRestored").await?;
        // A change to the old SealedSecret makes it decrypt again: the restored key is not used.
        let mut touched = seal(&first, ns.name(), "old", &[("k", "v2")], ApiGroup::Gitseal);
        touched["metadata"]["labels"] = json!({"touch": "1"});
        gitseal_tests::apply_json(&client, touched).await?;
        let s = synced(&ns, ApiGroup::Gitseal, "old", "False").await?;
        assert_eq!(s.pointer("/status/conditions/0/reason").and_then(Value::as_str), Some("KeyRevoked"));
        assert_eq!(g.metric("gitseal_keys{state=\"revoked\"}").await?, 1.0);
        assert_eq!(g.cert().await?.key_id(), second.cert.key_id());
        assert_eq!(data_of(&ns, "old").await?["k"].0, b"v", "the Secret keeps its last good value");

        // A restarted controller reads the list at start: still revoked.
        drop(g);
        let mut g = Gitseal::start_named(plane, ns.name(), "gitseal-restarted", &["--key-renew-period=0"]).await?;
        g.ready().await?;
        assert_eq!(g.metric("gitseal_keys{state=\"revoked\"}").await?, 1.0);
        assert_eq!(g.metric("gitseal_keys{state=\"active\"}").await?, 1.0);
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_dated_key_is_refused_and_a_gitseal_labelled_key_loads_in_compat_mode() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--bitnami-compat", "--key-renew-period=0"]).await?;
        g.ready().await?;
        let secrets: Api<Secret> = ns.api();
        let now = time::OffsetDateTime::now_utc();

        // With --bitnami-compat, a key carrying only gitseal's label is loaded (and, newest, seals).
        let ours = gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            now + time::Duration::seconds(5),
            time::Duration::days(30),
        )?;
        secrets
            .create(&PostParams::default(), &key_secret("gitseal-only", &ours, &[("gitseal.dev/key", "active")]))
            .await?;
        wait_for("the gitseal-labelled key to seal", TIMEOUT, || async {
            Ok::<_, anyhow::Error>((g.cert().await?.key_id() == ours.cert.key_id()).then_some(()))
        })
        .await?;

        // A key planted with NotBefore a year ahead, with both labels: refused, reported, not served.
        let planted = gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            now + time::Duration::days(365),
            time::Duration::days(30),
        )?;
        let labels = [("gitseal.dev/key", "active"), ("sealedsecrets.bitnami.com/sealed-secrets-key", "active")];
        secrets.create(&PostParams::default(), &key_secret("planted", &planted, &labels)).await?;
        let record = audited(&g, "KeyRefused").await?;
        assert!(record.contains(planted.cert.key_id().as_str()) && record.contains("NotYetValid"), "{record}");
        assert_eq!(g.metric("gitseal_keys{state=\"refused\"}").await?, 1.0);
        wait_for("a KeyRefused event", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(event_reasons(&ns, "planted").await?.iter().any(|r| r == "KeyRefused").then_some(()))
        })
        .await?;
        for _ in 0..3 {
            assert_eq!(g.cert().await?.key_id(), ours.cert.key_id(), "/v1/cert.pem never serves the planted key");
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        g.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_secret_replaced_in_place_keeps_its_key_and_is_written_back() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--key-renew-period=0"]).await?;
        g.ready().await?;
        let first = g.cert().await?;
        let client = ns.client();
        let secrets: Api<Secret> = ns.api();
        let list = secrets.list(&kube::api::ListParams::default().labels("gitseal.dev/key=active")).await?;
        let original = list.items.into_iter().next().expect("the key Secret");
        let name = original.metadata.name.clone().unwrap();
        let original_data = original.data.clone().unwrap();

        // Someone who can write Secrets in the controller namespace swaps in their own key.
        let theirs = gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            time::OffsetDateTime::now_utc(),
            time::Duration::days(30),
        )?;
        let mut swapped = secrets.get(&name).await?;
        swapped.data = key_secret(&name, &theirs, &[]).data;
        secrets.replace(&name, &PostParams::default(), &swapped).await?;
        let line = audited(&g, "KeySecretReplaced").await?;
        assert!(line.contains("\"reason\":\"OtherKey\"") && line.contains(&first.key_id().to_string()), "{line}");
        wait_for("the key Secret written back", TIMEOUT, || async {
            Ok::<_, anyhow::Error>((data_of(&ns, &name).await? == original_data).then_some(()))
        })
        .await?;
        audited(&g, "KeyRestored").await?;
        // The old key still seals and unseals; the planted one was never loaded.
        assert_eq!(g.cert().await?.key_id(), first.key_id());
        gitseal_tests::apply_json(&client, seal(&first, ns.name(), "after", &[("k", "v")], ApiGroup::Gitseal)).await?;
        secret_with(&ns, "after", "k", "v").await?;
        assert_eq!(g.metric("gitseal_keys{state=\"active\"}").await?, 1.0);

        // Garbage in place of the key: not a key any more, written back the same way.
        let garbage = json!({"data": {"tls.key": gitseal_shared::value::encode_base64(b"not a key")}});
        secrets.patch(&name, &PatchParams::default(), &Patch::Merge(&garbage)).await?;
        let refused = wait_for("a second KeySecretReplaced", TIMEOUT, || async {
            let lines = g.audit_lines();
            Ok::<_, anyhow::Error>(lines.into_iter().find(|l| l.contains("\"reason\":\"NoLongerAKey\"")))
        })
        .await?;
        assert!(refused.contains("\"action\":\"KeySecretReplaced\""), "{refused}");
        wait_for("the key Secret written back again", TIMEOUT, || async {
            Ok::<_, anyhow::Error>((data_of(&ns, &name).await? == original_data).then_some(()))
        })
        .await?;
        assert_eq!(g.metric("gitseal_key_secrets_replaced_total").await?, 2.0);
        let reasons = wait_for("the KeySecretRestored Event", TIMEOUT, || async {
            let reasons = event_reasons(&ns, &name).await?;
            Ok::<_, anyhow::Error>(reasons.iter().any(|r| r == "KeySecretRestored").then_some(reasons))
        })
        .await?;
        assert!(reasons.iter().any(|r| r == "KeySecretReplaced"), "{reasons:?}");
        g.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
