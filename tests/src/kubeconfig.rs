//! Kubeconfig files for the harness's users, and the `kube::Config` read back from them.
//!
//! Every file has one cluster, one user and one context, all named `gitseal-test` (envtest names
//! them `envtest`), with the serving CA and credentials inlined as `*-data`, so the file works
//! for kubectl, kubeseal and helm as well. The `kube::Config` is parsed from the very text that
//! was written, so what the tests use is what a person using the file gets.

use std::path::Path;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::{Error, Result};

/// The name of the cluster, user and context in every kubeconfig the harness writes.
pub const NAME: &str = "gitseal-test";

/// How a kubeconfig user authenticates.
pub(crate) enum Credentials<'a> {
    /// A client certificate and its key, PEM.
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token (for example a ServiceAccount token).
    Token(&'a str),
}

/// Writes a kubeconfig for `server` to `path` and returns the client configuration it gives.
pub(crate) async fn write(
    path: &Path,
    server: &str,
    ca_pem: &str,
    credentials: Credentials<'_>,
    namespace: Option<&str>,
) -> Result<kube::Config> {
    let user = match credentials {
        Credentials::ClientCert { cert_pem, key_pem } => json!({
            "client-certificate-data": STANDARD.encode(cert_pem),
            "client-key-data": STANDARD.encode(key_pem),
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    let mut context = json!({ "cluster": NAME, "user": NAME });
    if let Some(ns) = namespace {
        context["namespace"] = json!(ns);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": NAME,
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            },
        }],
        "users": [{ "name": NAME, "user": user }],
        "contexts": [{ "name": NAME, "context": context }],
        "current-context": NAME,
    });
    let yaml = serde_saphyr::to_string(&doc).map_err(|e| Error::invalid("rendering a kubeconfig as YAML", e))?;
    std::fs::write(path, &yaml).map_err(|e| Error::io(format!("writing the kubeconfig {}", path.display()), e))?;
    load(&yaml, path).await
}

/// Parses kubeconfig text (from `path`, named in errors) into a client configuration.
pub(crate) async fn load(yaml: &str, path: &Path) -> Result<kube::Config> {
    let what = || format!("reading the kubeconfig {}", path.display());
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|source| Error::Kubeconfig { what: what(), source })?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig { what: what(), source })
}
