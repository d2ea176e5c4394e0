//! SealedSecrets become Secrets, follow updates and deletes, fail visibly, and drift is reverted.

use gitseal_shared::audit::verify_chain;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, wait_for, with_temp_ns};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::fixture::{Gitseal, TIMEOUT, event_reasons, seal, secret_with, ss_api, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secrets_become_secrets_follow_updates_and_go_with_their_sealed_secret() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let client = ns.client();
        let api = ss_api(&client, ns.name(), ApiGroup::Gitseal);

        let ss = seal(&cert, ns.name(), "db", &[("password", "hunter2"), ("user", "admin")], ApiGroup::Gitseal);
        gitseal_tests::apply_json(&client, ss).await?;
        let secret = secret_with(&ns, "db", "password", "hunter2").await?;
        assert_eq!(secret.data.as_ref().unwrap()["user"].0, b"admin");
        assert_eq!(secret.metadata.labels.as_ref().unwrap()["app"], "e2e");
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("SealedSecret", Some(true)));
        let status = synced(&ns, ApiGroup::Gitseal, "db", "True").await?;
        assert_eq!(status.pointer("/status/keyId").and_then(Value::as_str), Some(cert.key_id().as_str()));

        // An update in Git propagates.
        let ss = seal(&cert, ns.name(), "db", &[("password", "rotated"), ("user", "admin")], ApiGroup::Gitseal);
        gitseal_tests::apply_json(&client, ss).await?;
        secret_with(&ns, "db", "password", "rotated").await?;
        assert!(event_reasons(&ns, "db").await?.iter().any(|r| r == "Unsealed"));

        // Deleting the SealedSecret deletes the Secret (garbage collection through the owner reference).
        api.delete("db", &DeleteParams::default()).await?;
        let secrets: Api<Secret> = ns.api();
        // The garbage collector learns about a new CRD on its next discovery sync (every 30 s).
        wait_for("Secret db to be garbage-collected", TIMEOUT * 3, || {
            let secrets = secrets.clone();
            async move { Ok::<_, kube::Error>(secrets.get_opt("db").await?.is_none().then_some(())) }
        })
        .await?;

        // The audit trail holds the unseals, verifies, and breaks when a line is edited.
        let lines = g.audit_lines();
        assert!(lines.iter().filter(|l| l.contains("\"action\":\"Unseal\"")).count() >= 2, "{lines:#?}");
        assert!(lines.iter().all(|l| !l.contains("hunter2") && !l.contains("rotated")));
        assert!(verify_chain(lines.iter().map(String::as_str)).is_ok());
        let mut edited = lines.clone();
        let i = edited.iter().position(|l| l.contains("\"action\":\"Unseal\"")).unwrap();
        edited[i] = edited[i].replace("\"outcome\":\"success\"", "\"outcome\":\"failure\"");
        assert_eq!(verify_chain(edited.iter().map(String::as_str)).unwrap_err().line, i + 1);
        g.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_scope_and_tampered_values_report_synced_false_and_make_no_secret() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let client = ns.client();

        // Sealed for another name, then renamed in Git: strict scope refuses it.
        let mut moved = seal(&cert, ns.name(), "original", &[("k", "v")], ApiGroup::Gitseal);
        moved["metadata"]["name"] = "moved".into();
        gitseal_tests::apply_json(&client, moved).await?;
        let s = synced(&ns, ApiGroup::Gitseal, "moved", "False").await?;
        assert_eq!(s.pointer("/status/conditions/0/reason").and_then(Value::as_str), Some("DecryptFailed"));

        // A flipped character in the ciphertext.
        let mut tampered = seal(&cert, ns.name(), "tampered", &[("k", "s3cr3t-plaintext")], ApiGroup::Gitseal);
        let v = tampered["spec"]["encryptedData"]["k"].as_str().unwrap().to_string();
        let mut bytes = v.into_bytes();
        bytes[40] = if bytes[40] == b'A' { b'B' } else { b'A' };
        tampered["spec"]["encryptedData"]["k"] = String::from_utf8(bytes)?.into();
        gitseal_tests::apply_json(&client, tampered).await?;
        let s = synced(&ns, ApiGroup::Gitseal, "tampered", "False").await?;
        let message = s.pointer("/status/conditions/0/message").and_then(Value::as_str).unwrap_or_default();
        assert!(message.contains("no key could decrypt"), "{message}");
        assert!(!message.contains("s3cr3t"), "never echoes plaintext: {message}");

        let secrets: Api<Secret> = ns.api();
        assert!(secrets.get_opt("moved").await?.is_none());
        assert!(secrets.get_opt("tampered").await?.is_none());
        assert!(event_reasons(&ns, "tampered").await?.iter().any(|r| r == "DecryptFailed"));
        assert!(g.metric("gitseal_unseal_errors_total{reason=\"decrypt_failed\"}").await? >= 2.0);

        // The controller keeps serving.
        g.process.check_running()?;
        g.ready().await?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_edits_and_deletes_of_the_secret_are_reverted() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        gitseal_tests::apply_json(
            &ns.client(),
            seal(&cert, ns.name(), "api", &[("token", "t0k3n")], ApiGroup::Gitseal),
        )
        .await?;
        secret_with(&ns, "api", "token", "t0k3n").await?;
        synced(&ns, ApiGroup::Gitseal, "api", "True").await?;

        // Someone edits the Secret directly.
        let secrets: Api<Secret> = ns.api();
        let patch = json!({"data": {"token": ByteString(b"hacked".to_vec())}});
        secrets.patch("api", &PatchParams::default(), &Patch::Merge(&patch)).await?;
        secret_with(&ns, "api", "token", "t0k3n").await?;

        // Someone deletes it.
        secrets.delete("api", &DeleteParams::default()).await?;
        secret_with(&ns, "api", "token", "t0k3n").await?;

        assert!(event_reasons(&ns, "api").await?.iter().any(|r| r == "DriftReverted"));
        assert!(g.metric("gitseal_reconciles_total{outcome=\"drift_reverted\"}").await? >= 2.0);
        assert!(g.audit_lines().iter().any(|l| l.contains("\"action\":\"DriftRepair\"")));
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
