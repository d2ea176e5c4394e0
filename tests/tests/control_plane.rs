//! The harness's control plane is a real Kubernetes API: objects, CRDs, watches and RBAC.
//!
//! All tests in this binary share one control plane; each works in its own namespace.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use gitseal_tests::{ControlPlane, apply_json, install_crds, wait_for, with_temp_ns};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::{WatchStreamExt as _, watcher},
};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(20);

fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 403)
}

#[tokio::test]
async fn a_secret_written_in_a_fresh_namespace_reads_back_with_its_data() -> anyhow::Result<()> {
    with_temp_ns(|ns| async move {
        let secrets = ns.api::<Secret>();
        let mut secret = Secret::default();
        secret.metadata.name = Some("demo".into());
        secret.string_data = Some(BTreeMap::from([("password".into(), "hunter2".into())]));
        secrets.create(&PostParams::default(), &secret).await?;

        let stored = secrets.get("demo").await?;
        let data = stored.data.context("the stored Secret has no data")?;
        assert_eq!(data["password"].0, b"hunter2");
        assert_eq!(stored.metadata.namespace.as_deref(), Some(ns.name()));
        anyhow::Ok(())
    })
    .await?
}

#[tokio::test]
async fn a_custom_resource_definition_is_served_and_validates_its_schema() -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.harness.gitseal.test" },
        "spec": {
            "group": "harness.gitseal.test",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer", "minimum": 1 } },
                    } },
                } },
            }],
        },
    }))?;
    with_temp_ns(move |ns| async move {
        let client = ns.client();
        install_crds(&client, &[crd]).await?;

        let widget = |size| {
            json!({
                "apiVersion": "harness.gitseal.test/v1", "kind": "Widget",
                "metadata": { "name": "w", "namespace": ns.name() }, "spec": { "size": size },
            })
        };
        apply_json(&client, widget(json!(3))).await?;
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("harness.gitseal.test", "v1", "Widget"));
        let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &resource);
        assert_eq!(widgets.get("w").await?.data["spec"]["size"], 3);

        let Err(err) = apply_json(&client, widget(json!(0))).await else {
            anyhow::bail!("size 0 is below the schema's minimum, yet the apiserver accepted it");
        };
        assert!(format!("{err:?}").contains("422"), "expected a 422 validation error, got {err:?}");
        anyhow::Ok(())
    })
    .await?
}

#[tokio::test]
async fn a_watch_sees_an_object_change() -> anyhow::Result<()> {
    with_temp_ns(|ns| async move {
        let maps = ns.api::<ConfigMap>();
        let config = watcher::Config::default().fields("metadata.name=watched");
        let mut changes = watcher(maps.clone(), config).applied_objects().boxed();

        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("watched".into());
        cm.data = Some(BTreeMap::from([("v".into(), "1".into())]));
        maps.create(&PostParams::default(), &cm).await?;
        let patch = json!({ "data": { "v": "2" } });
        maps.patch("watched", &PatchParams::default(), &Patch::Merge(&patch)).await?;

        let seen = tokio::time::timeout(TIMEOUT, async {
            while let Some(cm) = changes.try_next().await? {
                if cm.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some("2") {
                    return anyhow::Ok(cm);
                }
            }
            anyhow::bail!("the watch ended")
        })
        .await
        .context("no watch event with v=2 within 20 s")??;
        assert_eq!(seen.metadata.name.as_deref(), Some("watched"));
        anyhow::Ok(())
    })
    .await?
}

#[tokio::test]
async fn a_service_account_without_rights_is_refused_and_one_bound_to_a_role_succeeds() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(move |ns| async move {
        let nobody = plane.service_account_token(ns.name(), "nobody", &[]).await?;
        let Err(err) = Api::<Secret>::namespaced(nobody.client()?, ns.name()).list(&Default::default()).await else {
            anyhow::bail!("a ServiceAccount with no RoleBinding listed Secrets");
        };
        assert!(is_forbidden(&err), "expected 403, got {err:?}");

        let user = plane.user_config("alice", &["developers"]).await?;
        let alice = Api::<Secret>::namespaced(kube::Client::try_from(user)?, ns.name());
        let Err(err) = alice.list(&Default::default()).await else {
            anyhow::bail!("a client-certificate user with no rights listed Secrets");
        };
        assert!(is_forbidden(&err), "expected 403, got {err:?}");

        let reader = plane.service_account_token(ns.name(), "reader", &[]).await?;
        let client = ns.client();
        apply_json(
            &client,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": { "name": "secret-reader", "namespace": ns.name() },
                "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"] }],
            }),
        )
        .await?;
        apply_json(
            &client,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "secret-reader", "namespace": ns.name() },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader" },
                "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns.name() }],
            }),
        )
        .await?;
        // The RBAC authorizer reads bindings from an informer, so allow it a moment.
        let secrets = Api::<Secret>::namespaced(reader.client()?, ns.name());
        wait_for("the reader ServiceAccount to list Secrets", TIMEOUT, || async {
            secrets.list(&Default::default()).await.map(Some)
        })
        .await?;
        let Err(err) = Api::<Secret>::namespaced(reader.client()?, "default").list(&Default::default()).await else {
            anyhow::bail!("a Role granted rights outside its namespace");
        };
        assert!(is_forbidden(&err), "expected 403, got {err:?}");
        anyhow::Ok(())
    })
    .await?
}

#[tokio::test]
async fn the_aggregation_layer_is_configured_with_the_front_proxy_ca() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    let client = plane.client()?;
    let auth = Api::<ConfigMap>::namespaced(client, "kube-system").get("extension-apiserver-authentication").await?;
    let data = auth.data.context("extension-apiserver-authentication has no data")?;
    let ca = std::fs::read_to_string(&plane.front_proxy().ca)?;
    assert_eq!(data["requestheader-client-ca-file"].trim(), ca.trim());
    assert_eq!(data["requestheader-allowed-names"], r#"["front-proxy-client"]"#);
    assert_eq!(data["requestheader-username-headers"], r#"["X-Remote-User"]"#);
    assert_eq!(data["requestheader-group-headers"], r#"["X-Remote-Group"]"#);
    assert_eq!(data["requestheader-extra-headers-prefix"], r#"["X-Remote-Extra-"]"#);
    assert!(data.contains_key("client-ca-file"));
    Ok(())
}
