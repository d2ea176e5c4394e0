//! The CustomResourceDefinitions, generated from the Rust types: `gitseal.dev/v1` as
//! kube-derive writes it, and `bitnami.com/v1alpha1` with the same schema under Bitnami's
//! group, names and printer columns. `deploy/crds/` holds the output; CI checks it is current.

use gitseal_shared::types::{ApiGroup, BITNAMI_GROUP, BITNAMI_VERSION, SealedSecret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use kube::CustomResourceExt;

pub fn gitseal() -> CustomResourceDefinition {
    let mut crd = SealedSecret::crd();
    // Like Bitnami's CRD: a SealedSecret without encryptedData would unseal to an empty Secret.
    for v in &mut crd.spec.versions {
        if let Some(spec) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
        {
            spec.required = Some(vec!["encryptedData".into()]);
            if let Some(ed) = spec.properties.as_mut().and_then(|p| p.get_mut("encryptedData")) {
                ed.default = None;
            }
        }
    }
    crd
}

pub fn bitnami() -> CustomResourceDefinition {
    let mut crd = gitseal();
    crd.metadata.name = Some(format!("sealedsecrets.{BITNAMI_GROUP}"));
    crd.spec.group = BITNAMI_GROUP.into();
    crd.spec.names.short_names = None;
    // `kubectl get gitseal` lists gitseal.dev objects only, as Bitnami's own CRD has no category.
    crd.spec.names.categories = None;
    for v in &mut crd.spec.versions {
        v.name = BITNAMI_VERSION.into();
        let col = |name: &str, type_: &str, path: &str| CustomResourceColumnDefinition {
            name: name.into(),
            type_: type_.into(),
            json_path: path.into(),
            ..Default::default()
        };
        v.additional_printer_columns = Some(vec![
            col("Status", "string", ".status.conditions[0].message"),
            col("Synced", "string", ".status.conditions[0].status"),
            col("Age", "date", ".metadata.creationTimestamp"),
        ]);
    }
    crd
}

/// The CRD of `group`, or both, as a YAML stream.
pub fn render(group: Option<ApiGroup>) -> crate::error::Result<String> {
    let docs = match group {
        Some(ApiGroup::Gitseal) => vec![serde_json::to_value(gitseal())?],
        Some(ApiGroup::Bitnami) => vec![serde_json::to_value(bitnami())?],
        None => vec![serde_json::to_value(gitseal())?, serde_json::to_value(bitnami())?],
    };
    Ok(gitseal_shared::manifest::write_documents(&docs, gitseal_shared::manifest::OutputFormat::Yaml)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_crds_share_one_schema_under_their_own_groups() {
        let (g, b) = (gitseal(), bitnami());
        assert_eq!(g.metadata.name.as_deref(), Some("sealedsecrets.gitseal.dev"));
        assert_eq!(b.metadata.name.as_deref(), Some("sealedsecrets.bitnami.com"));
        assert_eq!(b.spec.versions[0].name, "v1alpha1");
        assert_eq!(g.spec.versions[0].schema, b.spec.versions[0].schema);
        assert!(b.spec.versions[0].subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    }

    /// Issue 12: where both CRDs exist `sealedsecrets` means bitnami.com to kubectl, so gitseal's
    /// objects need names of their own, a category, and default columns that say how they are.
    #[test]
    fn gitseal_crd_has_short_names_a_category_and_status_columns_bitnami_has_neither() {
        let (g, b) = (gitseal(), bitnami());
        let short = g.spec.names.short_names.clone().unwrap_or_default();
        for name in ["gss", "gsealedsecret", "sealed"] {
            assert!(short.iter().any(|s| s == name), "short name {name} missing: {short:?}");
        }
        assert_eq!(g.spec.names.categories, Some(vec!["gitseal".to_string()]));
        assert_eq!(b.spec.names.short_names, None);
        assert_eq!(b.spec.names.categories, None);
        let cols = g.spec.versions[0].additional_printer_columns.clone().unwrap_or_default();
        let shown: Vec<(&str, &str)> = cols
            .iter()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("Synced", r#".status.conditions[?(@.type=="Synced")].status"#),
                ("Reason", r#".status.conditions[?(@.type=="Synced")].reason"#),
                ("Key", ".status.keyId"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
    }
}
