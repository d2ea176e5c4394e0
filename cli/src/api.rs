//! The controller's authenticated API, `api.gitseal.dev/v1`, served through the kube-apiserver:
//! the caller is authenticated by the cluster, RBAC authorizes each virtual resource per
//! namespace, and the controller audits the call with the caller's identity.
//!
//! Each call POSTs a request object and gets it back with a `status` (201), or a metav1
//! `Status` error that [`Call::explain`] turns into one line that says what to do.

use anyhow::anyhow;
use gitseal_shared::types::SealedSecretObject;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::cluster::Cluster;

pub const GROUP_VERSION: &str = "api.gitseal.dev/v1";

/// One kind of call: resource, kind, and the verb RBAC checks.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub resource: &'static str,
    pub kind: &'static str,
    pub verb: &'static str,
    /// The ClusterRole to ask for in a 403 message.
    pub role: &'static str,
}

pub const VERIFY: Call = Call {
    resource: "sealedsecretverifications",
    kind: "SealedSecretVerification",
    verb: "create",
    role: "gitseal-verifier",
};
pub const RESEAL: Call =
    Call { resource: "sealedsecretreseals", kind: "SealedSecretReseal", verb: "create", role: "gitseal-resealer" };
pub const ROTATE: Call =
    Call { resource: "keyrotations", kind: "KeyRotation", verb: "create", role: "gitseal-key-admin" };
pub const RETIRE: Call =
    Call { resource: "keyretirements", kind: "KeyRetirement", verb: "create", role: "gitseal-key-admin" };
pub const REVOKE: Call =
    Call { resource: "keyrevocations", kind: "KeyRevocation", verb: "create", role: "gitseal-key-admin" };
pub const BACKUP: Call = Call { resource: "keybackups", kind: "KeyBackup", verb: "create", role: "gitseal-key-backup" };
pub const LIST_KEYS: Call = Call { resource: "keys", kind: "KeyList", verb: "list", role: "gitseal-key-viewer" };

impl Call {
    fn path(&self, ns: &str) -> String {
        format!("/apis/{GROUP_VERSION}/namespaces/{ns}/{}", self.resource)
    }

    /// POST a request object with `spec` in namespace `ns`; the answer's `status`.
    pub async fn create<T: DeserializeOwned>(
        &self,
        cluster: &Cluster,
        ns: &str,
        name: &str,
        spec: Value,
    ) -> Result<T, kube::Error> {
        let body = json!({"apiVersion": GROUP_VERSION, "kind": self.kind, "metadata": {"name": name}, "spec": spec});
        let request = http::Request::post(self.path(ns))
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
        let request = http::Request::get(self.path(ns))
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        cluster.client.request(request).await
    }

    /// One line for a failed call in namespace `ns`.
    pub fn explain(&self, cluster: &Cluster, ns: &str, e: kube::Error) -> anyhow::Error {
        let kube::Error::Api(s) = &e else {
            return cluster.fail(&format!("calling {} in {ns}", self.resource), e);
        };
        let message = s.message.split(['\n', '\r']).map(str::trim).collect::<Vec<_>>().join(" ");
        match s.code {
            403 => anyhow!(
                "you may not {} {}.api.gitseal.dev in {ns}: ask for the {} ClusterRole (bound in {ns})",
                self.verb,
                self.resource,
                self.role
            ),
            404 if message.contains("could not find the requested resource") || message.is_empty() => anyhow!(
                "the cluster at {} does not serve {GROUP_VERSION}/{}: install the controller's APIService (deploy/aggregated/apiservice.yaml) or check --context",
                cluster.url,
                self.resource
            ),
            503 => anyhow!(
                "the gitseal controller's API is unavailable ({message}): check that the controller runs and `kubectl get apiservice v1.api.gitseal.dev` is Available"
            ),
            _ => anyhow!("{} in {ns} failed: {message} ({} {})", self.resource, s.code, s.reason),
        }
    }
}

/// `status` of a SealedSecretVerification.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub valid: bool,
    #[serde(default)]
    pub key_ids: Vec<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// `status` of a SealedSecretReseal.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resealed {
    pub sealed_secret: SealedSecretObject,
    #[serde(default)]
    pub old_key_ids: Vec<String>,
    #[serde(default)]
    pub key_id: Option<String>,
}

/// The namespace a SealedSecret's request goes to: its own, else `-n`/the context's.
pub fn namespace_of<'a>(ss: &'a SealedSecretObject, cluster: &'a Cluster) -> &'a str {
    ss.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(&cluster.namespace)
}

/// The request body's `spec` for a SealedSecret: the object as it is, namespace filled in.
pub fn spec_for(ss: &SealedSecretObject, ns: &str) -> Value {
    let mut object = serde_json::to_value(ss).unwrap_or(Value::Null);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("namespace").or_insert_with(|| Value::String(ns.to_string()));
    }
    json!({ "sealedSecret": object })
}

/// A request object's name: the SealedSecret's, which the controller ignores but audit logs show.
pub fn request_name(ss: &SealedSecretObject) -> String {
    ss.metadata.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "gitseal".into())
}

/// `status` of a KeyRotation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    pub key_id: String,
    #[serde(default)]
    pub secret_name: Option<String>,
}

/// `status` of a KeyRetirement or KeyRevocation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    pub key_id: String,
    pub state: String,
}

/// `status` of a KeyBackup.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// base64 of a binary age file.
    pub backup: String,
    #[serde(default)]
    pub key_ids: Vec<String>,
}

/// One item of a KeyList.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub key_id: String,
    #[serde(default)]
    pub secret_name: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
    pub state: String,
    #[serde(default)]
    pub pending_backup: bool,
    #[serde(default)]
    pub latest: bool,
    /// Fields this client does not show (`bitnami`, `ageRecipient`, …), kept for `-o json`.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct KeyList {
    #[serde(default)]
    pub items: Vec<KeyInfo>,
}

/// Every key of the controller.
pub async fn list_keys(cluster: &Cluster) -> anyhow::Result<Vec<KeyInfo>> {
    let ns = &cluster.controller_namespace;
    LIST_KEYS.list::<KeyList>(cluster, ns).await.map(|l| l.items).map_err(|e| LIST_KEYS.explain(cluster, ns, e))
}
