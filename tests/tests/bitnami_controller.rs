//! The real Bitnami controller and kubeseal work against the harness: the reference behaviour
//! that gitseal is compared with.

use std::time::Duration;

use anyhow::Context as _;
use gitseal_tests::{
    ControlPlane, Peer, apply_json,
    bitnami::{BitnamiController, BitnamiOptions},
    install_crds_yaml, wait_for_object, with_temp_ns,
};
use k8s_openapi::api::core::v1::Secret;

#[tokio::test]
async fn a_secret_sealed_by_real_kubeseal_is_unsealed_by_the_bitnami_controller() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(move |ns| async move {
        let client = ns.client();
        let crd = std::fs::read_to_string(Peer::BitnamiCrd.path()?)?;
        install_crds_yaml(&client, &crd).await?;
        let controller = BitnamiController::start(plane, BitnamiOptions::new(ns.name())).await?;

        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {}\n\
             type: Opaque\nstringData:\n  password: s3cr3t\n  user: admin\n",
            ns.name()
        );
        let sealed = controller.kubeseal(secret.as_bytes(), &["-o", "yaml"]).await?;
        let sealed = String::from_utf8(sealed)?;
        assert!(!sealed.contains("s3cr3t"), "the plaintext leaked into:\n{sealed}");
        let sealed: serde_json::Value = serde_saphyr::from_str(&sealed)?;
        assert_eq!(sealed["kind"], "SealedSecret");
        assert!(sealed["spec"]["encryptedData"]["password"].is_string());

        let applied = apply_json(&client, sealed).await?;
        let stored = wait_for_object(&ns.api::<Secret>(), "db", Duration::from_secs(60), |_| true).await?;
        let data = stored.data.context("the unsealed Secret has no data")?;
        assert_eq!(data["password"].0, b"s3cr3t");
        assert_eq!(data["user"].0, b"admin");
        let owner = stored.metadata.owner_references.unwrap_or_default();
        assert_eq!(owner.len(), 1, "one owner reference expected: {owner:?}");
        assert_eq!(owner[0].kind, "SealedSecret");
        assert_eq!(Some(&owner[0].uid), applied.metadata.uid.as_ref());
        anyhow::Ok(())
    })
    .await?
}
