//! The controller's authenticated API, `api.gitseal.dev/v1`, served through the kube-apiserver:
//! the caller is authenticated by the cluster, RBAC authorizes each virtual resource per
//! namespace, and the controller audits the call with the caller's identity.
//!
//! Each call POSTs a request object and gets it back with a `status` (201), or a metav1
//! `Status` error that [`Call::explain`] turns into one line that says what to do.

use anyhow::anyhow;
use gitseal_shared::api::{Request, Resource};
use gitseal_shared::types::SealedSecretObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::Cluster;

pub use gitseal_shared::api::{
    BackupSpec, BackupStatus as Backup, GROUP_VERSION, KeyInfo, KeyList, KeyStateSpec, KeyStateStatus as StateChange,
    ResealStatus as Resealed, RotationStatus as Rotated, SealedSecretSpec, VerificationStatus as Verification,
};

/// One kind of call: the resource, and the ClusterRole to ask for in a 403 message.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub resource: Resource,
    pub role: &'static str,
}

pub const VERIFY: Call = Call { resource: Resource::SealedSecretVerifications, role: "gitseal-verifier" };
pub const RESEAL: Call = Call { resource: Resource::SealedSecretReseals, role: "gitseal-resealer" };
pub const ROTATE: Call = Call { resource: Resource::KeyRotations, role: "gitseal-key-admin" };
pub const RETIRE: Call = Call { resource: Resource::KeyRetirements, role: "gitseal-key-admin" };
pub const REVOKE: Call = Call { resource: Resource::KeyRevocations, role: "gitseal-key-admin" };
pub const BACKUP: Call = Call { resource: Resource::KeyBackups, role: "gitseal-key-backup" };
pub const LIST_KEYS: Call = Call { resource: Resource::Keys, role: "gitseal-key-viewer" };

impl Call {
    /// POST a request object with `spec` in namespace `ns`; the answer's `status`.
    pub async fn create<T: DeserializeOwned>(
        &self,
        cluster: &Cluster,
        ns: &str,
        name: &str,
        spec: impl Serialize,
    ) -> Result<T, kube::Error> {
        let body = Request::new(self.resource, name, spec);
        let request = http::Request::post(self.resource.path(ns))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?)
            .map_err(kube::Error::HttpError)?;
        let answer: Value = cluster.client.request(request).await?;
        let status = answer.get("status").cloned().unwrap_or(Value::Null);
        serde_json::from_value(status).map_err(kube::Error::SerdeError)
    }

    /// GET the collection in namespace `ns`.
    pub async fn list<T: DeserializeOwned>(&self, cluster: &Cluster, ns: &str) -> Result<T, kube::Error> {
        let request = http::Request::get(self.resource.path(ns))
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        cluster.client.request(request).await
    }

    /// One line for a failed call in namespace `ns`.
    pub fn explain(&self, cluster: &Cluster, ns: &str, e: kube::Error) -> anyhow::Error {
        let kube::Error::Api(s) = &e else {
            return cluster.fail(&format!("calling {} in {ns}", self.resource.plural()), e);
        };
        let message = s.message.split(['\n', '\r']).map(str::trim).collect::<Vec<_>>().join(" ");
        match s.code {
            403 => anyhow!(
                "you may not {} {}.api.gitseal.dev in {ns}: ask for the {} ClusterRole (bound in {ns})",
                self.resource.verb().as_str(),
                self.resource.plural(),
                self.role
            ),
            404 if message.contains("could not find the requested resource") || message.is_empty() => anyhow!(
                "the cluster at {} does not serve {GROUP_VERSION}/{}: install the controller's APIService (deploy/aggregated/apiservice.yaml) or check --context",
                cluster.url,
                self.resource.plural()
            ),
            503 => anyhow!(
                "the gitseal controller's API is unavailable ({message}): check that the controller runs and `kubectl get apiservice v1.api.gitseal.dev` is Available"
            ),
            _ => anyhow!("{} in {ns} failed: {message} ({} {})", self.resource.plural(), s.code, s.reason),
        }
    }
}

/// The namespace a SealedSecret's request goes to: its own, else `-n`/the context's.
pub fn namespace_of<'a>(ss: &'a SealedSecretObject, cluster: &'a Cluster) -> &'a str {
    ss.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(&cluster.namespace)
}

/// The request body's `spec` for a SealedSecret: the object as it is, namespace filled in.
pub fn spec_for(ss: &SealedSecretObject, ns: &str) -> SealedSecretSpec {
    let mut object = serde_json::to_value(ss).unwrap_or(Value::Null);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("namespace").or_insert_with(|| Value::String(ns.to_string()));
    }
    SealedSecretSpec { sealed_secret: object }
}

/// A request object's name: the SealedSecret's, which the controller ignores but audit logs show.
pub fn request_name(ss: &SealedSecretObject) -> String {
    ss.metadata.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "gitseal".into())
}

/// Every key of the controller.
pub async fn list_keys(cluster: &Cluster) -> anyhow::Result<Vec<KeyInfo>> {
    let ns = &cluster.controller_namespace;
    LIST_KEYS.list::<KeyList>(cluster, ns).await.map(|l| l.items).map_err(|e| LIST_KEYS.explain(cluster, ns, e))
}
