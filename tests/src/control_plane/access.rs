//! Identities other than admin: ServiceAccount tokens (TokenRequest) and client-certificate users.
//!
//! Each comes with its own kubeconfig file in the control plane's directory, so a peer process
//! (kubeseal, helm, a controller) can act as exactly that identity, and a `kube::Config` for
//! clients in the test itself.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::ControlPlane;
use crate::{
    Error, Result,
    kubeconfig::{self, Credentials},
};

/// Field manager of the objects the harness applies.
pub(crate) const FIELD_MANAGER: &str = "gitseal-tests";
/// Lifetime asked for ServiceAccount tokens: longer than any test run.
const TOKEN_SECONDS: i64 = 24 * 60 * 60;

/// A ServiceAccount token with a kubeconfig and client configuration that use it.
#[derive(Clone)]
pub struct ServiceAccountAccess {
    namespace: String,
    name: String,
    token: String,
    config: kube::Config,
    kubeconfig: PathBuf,
}

impl std::fmt::Debug for ServiceAccountAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountAccess")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountAccess {
    /// The bearer token (a JWT signed by the control plane's service-account key).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Client configuration that authenticates with the token.
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// A client acting as the ServiceAccount, bound to the current tokio runtime.
    pub fn client(&self) -> Result<Client> {
        Client::try_from(self.config.clone()).map_err(|e| {
            Error::kube(format!("building a client for ServiceAccount {}/{}", self.namespace, self.name), e)
        })
    }

    /// A kubeconfig file with the token, its default namespace set to the ServiceAccount's.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }
}

fn unique_file(dir: &Path, stem: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    dir.join(format!("{stem}-{}.kubeconfig", NEXT.fetch_add(1, Ordering::Relaxed)))
}

impl ControlPlane {
    /// A token for ServiceAccount `namespace/name` from the TokenRequest API, valid for 24 hours.
    ///
    /// The ServiceAccount is created if it does not exist (server-side apply). `audiences` empty
    /// means the apiserver's own audience, which is what a client of the apiserver needs. The
    /// ServiceAccount has only the rights RBAC gives it.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
    ) -> Result<ServiceAccountAccess> {
        self.service_account_token_via(namespace, name, audiences, self.server_url()).await
    }

    /// [`Self::service_account_token`] with a kubeconfig whose server is `server` (for example a
    /// [`crate::fault_proxy::FaultProxy`] in front of the apiserver) instead of the apiserver.
    pub async fn service_account_token_via(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        server: &str,
    ) -> Result<ServiceAccountAccess> {
        let what = |step: &str| format!("{step} ServiceAccount {namespace}/{name}");
        let api: Api<ServiceAccount> = Api::namespaced(self.client()?, namespace);
        let sa = json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name } });
        api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&sa))
            .await
            .map_err(|e| Error::kube(what("applying"), e))?;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: (!audiences.is_empty()).then(|| audiences.iter().map(|a| (*a).to_owned()).collect()),
                expiration_seconds: Some(TOKEN_SECONDS),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| Error::kube(what("requesting a token for"), e))?
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::invalid(what("requesting a token for"), "the TokenRequest came back without a token")
            })?;
        let file = unique_file(self.dir(), &format!("sa-{namespace}-{name}"));
        let config =
            kubeconfig::write(&file, server, self.serving_ca_pem(), Credentials::Token(&token), Some(namespace))
                .await?;
        Ok(ServiceAccountAccess {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            token,
            config,
            kubeconfig: file,
        })
    }

    /// Client configuration for user `user` in `groups`, authenticated by a client certificate
    /// from the control plane's client CA (envtest's `AddUser`). Also written as a kubeconfig
    /// file in [`ControlPlane::dir`].
    pub async fn user_config(&self, user: &str, groups: &[&str]) -> Result<kube::Config> {
        let pair = self.pki.client_cert(user, groups)?;
        kubeconfig::write(
            &unique_file(self.dir(), &format!("user-{user}")),
            self.server_url(),
            self.serving_ca_pem(),
            Credentials::ClientCert { cert_pem: &pair.cert_pem, key_pem: &pair.key_pem },
            None,
        )
        .await
    }
}
