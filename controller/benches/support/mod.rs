//! What the controller benches share: sizes from the environment, SealedSecrets made in bulk.
#![allow(dead_code, clippy::unwrap_used)]

use gitseal_keys::Certificate;
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::seal::{SealOptions, seal_secret};
use gitseal_shared::types::ApiGroup;
use gitseal_shared::value::RecipientSet;
use serde_json::json;

/// `name` from the environment as a count, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// SealedSecret `s{i:05}` in `ns` with `values` values, sealed for `cert` under `api`.
pub fn sealed(cert: &Certificate, ns: &str, i: usize, values: usize, api: ApiGroup) -> serde_json::Value {
    sealed_named(cert, ns, &format!("s{i:05}"), values, api)
}

/// SealedSecret `name` in `ns` with `values` values, sealed for `cert` under `api`.
pub fn sealed_named(cert: &Certificate, ns: &str, name: &str, values: usize, api: ApiGroup) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> =
        (0..values).map(|v| (format!("key{v}"), json!(format!("value-{name}-{v}")))).collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns}, "stringData": data});
    let plain = PlainSecret::from_value(&secret).unwrap();
    let set = RecipientSet::new(vec![cert.recipient().unwrap()]).unwrap();
    serde_json::to_value(seal_secret(&plain, &set, &SealOptions { api, ..Default::default() }).unwrap()).unwrap()
}

/// Poll until `n` produced Secrets exist in `ns` (its key Secrets, gitseal's or Bitnami's, not
/// counted); the time from `since`. Gives up after 30 minutes.
pub async fn wait_secrets(
    ns: &gitseal_tests::TestNamespace,
    n: usize,
    since: std::time::Instant,
) -> std::time::Duration {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, ListParams};
    let api: Api<Secret> = ns.api();
    loop {
        let all = api.list_metadata(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0);
        let keys = api
            .list_metadata(&ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if all.saturating_sub(keys) >= n {
            return since.elapsed();
        }
        assert!(since.elapsed() < std::time::Duration::from_secs(1800), "no convergence after 30 min ({all} Secrets)");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
