//! The wire model of the authenticated API `api.gitseal.dev/v1`, shared by the controller that
//! serves it and the CLI that calls it, so the two cannot drift apart.
//!
//! Each call POSTs a request object (`apiVersion`, `kind`, `metadata.name`, `spec`) to a
//! namespaced collection and gets the same object back with a `status` (201 Created), or a
//! metav1 [`Status`] failure. `keys` is the one collection that is listed rather than created.
//!
//! [`Resource`] is the one list of what the API serves: the controller derives its routes,
//! discovery documents and dispatch from it, the CLI its paths, kinds and verbs. Adding a
//! resource is one arm here plus its handler in the controller; the compiler points at both.
//!
//! Field order is wire order (serde_json keeps insertion order in this workspace): keep it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::SealedSecretObject;

pub const GROUP: &str = "api.gitseal.dev";
pub const VERSION: &str = "v1";
pub const GROUP_VERSION: &str = "api.gitseal.dev/v1";

/// Every resource of `api.gitseal.dev/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    SealedSecretVerifications,
    SealedSecretReseals,
    KeyRotations,
    KeyRetirements,
    KeyRevocations,
    KeyBackups,
    Keys,
}

/// What RBAC checks for a resource: every collection is either created into or listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    List,
}

impl Verb {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::List => "list",
        }
    }
}

impl Resource {
    /// In discovery order.
    pub const ALL: [Resource; 7] = [
        Resource::SealedSecretVerifications,
        Resource::SealedSecretReseals,
        Resource::KeyRotations,
        Resource::KeyRetirements,
        Resource::KeyRevocations,
        Resource::KeyBackups,
        Resource::Keys,
    ];

    /// The URL segment and the RBAC resource name.
    pub const fn plural(self) -> &'static str {
        match self {
            Resource::SealedSecretVerifications => "sealedsecretverifications",
            Resource::SealedSecretReseals => "sealedsecretreseals",
            Resource::KeyRotations => "keyrotations",
            Resource::KeyRetirements => "keyretirements",
            Resource::KeyRevocations => "keyrevocations",
            Resource::KeyBackups => "keybackups",
            Resource::Keys => "keys",
        }
    }

    pub const fn singular(self) -> &'static str {
        match self {
            Resource::SealedSecretVerifications => "sealedsecretverification",
            Resource::SealedSecretReseals => "sealedsecretreseal",
            Resource::KeyRotations => "keyrotation",
            Resource::KeyRetirements => "keyretirement",
            Resource::KeyRevocations => "keyrevocation",
            Resource::KeyBackups => "keybackup",
            Resource::Keys => "key",
        }
    }

    /// The kind of a request object (of one item, for `keys`).
    pub const fn kind(self) -> &'static str {
        match self {
            Resource::SealedSecretVerifications => "SealedSecretVerification",
            Resource::SealedSecretReseals => "SealedSecretReseal",
            Resource::KeyRotations => "KeyRotation",
            Resource::KeyRetirements => "KeyRetirement",
            Resource::KeyRevocations => "KeyRevocation",
            Resource::KeyBackups => "KeyBackup",
            Resource::Keys => "Key",
        }
    }

    pub const fn verb(self) -> Verb {
        match self {
            Resource::Keys => Verb::List,
            _ => Verb::Create,
        }
    }

    pub fn from_plural(plural: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.plural() == plural)
    }

    /// The collection's path in namespace `ns`.
    pub fn path(self, ns: &str) -> String {
        format!("/apis/{GROUP_VERSION}/namespaces/{ns}/{}", self.plural())
    }

    /// The resource as `/apis/api.gitseal.dev/v1` lists it.
    pub fn discovery(self) -> ApiResource {
        ApiResource {
            name: self.plural().into(),
            singular_name: self.singular().into(),
            namespaced: true,
            kind: self.kind().into(),
            verbs: vec![self.verb().as_str().into()],
        }
    }
}

/// A request object as the CLI sends it. The controller answers with the object it received
/// (every field the client sent) plus `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<S> {
    pub api_version: String,
    pub kind: String,
    pub metadata: RequestMeta,
    pub spec: S,
}

impl<S> Request<S> {
    pub fn new(resource: Resource, name: &str, spec: S) -> Self {
        Request {
            api_version: GROUP_VERSION.into(),
            kind: resource.kind().into(),
            metadata: RequestMeta { name: name.into() },
            spec,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestMeta {
    #[serde(default)]
    pub name: String,
}

/// `spec` of a SealedSecretVerification or SealedSecretReseal. The object stays JSON: the
/// controller checks its namespace before it parses it as a SealedSecret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    pub sealed_secret: Value,
}

/// `status` of a SealedSecretVerification: `valid` with the key ids that open it, or not valid
/// with an opaque message ("this does not open here" is an answer, not an error).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `status` of a SealedSecretReseal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResealStatus {
    pub sealed_secret: SealedSecretObject,
    #[serde(default)]
    pub old_key_ids: Vec<String>,
    /// The key it is sealed to now.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// `spec` of a KeyRetirement or KeyRevocation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyStateSpec {
    #[serde(default)]
    pub key_id: String,
}

/// `spec` of a KeyBackup: age recipients (`age1…`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupSpec {
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// `status` of a KeyRotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    pub key_id: String,
    #[serde(default)]
    pub secret_name: Option<String>,
}

/// `status` of a KeyRetirement or KeyRevocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyStateStatus {
    pub key_id: String,
    pub state: String,
}

/// `status` of a KeyBackup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// base64 of a binary age file.
    pub backup: String,
    #[serde(default)]
    pub key_ids: Vec<String>,
}

/// One item of a [`KeyList`].
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The key new SealedSecrets are sealed to.
    #[serde(default)]
    pub latest: bool,
    /// Also a Bitnami sealed-secrets key (`sealedsecrets.bitnami.com/sealed-secrets-key`).
    #[serde(default)]
    pub bitnami: bool,
    #[serde(default)]
    pub age_recipient: Option<String>,
    /// Where the key's RSA unwrap runs: `memory`, `pkcs11-oaep` or `pkcs11-raw-rsa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Fields a newer controller sends that this build does not know, kept for `-o json`.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// The answer to listing `keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyList {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub items: Vec<KeyInfo>,
}

impl KeyList {
    pub fn new(items: Vec<KeyInfo>) -> Self {
        KeyList { api_version: GROUP_VERSION.into(), kind: "KeyList".into(), items }
    }
}

/// A metav1 `Status` failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub kind: String,
    pub api_version: String,
    pub metadata: serde_json::Map<String, Value>,
    pub status: String,
    pub message: String,
    pub reason: String,
    pub code: u16,
}

impl Status {
    pub fn failure(code: u16, reason: &str, message: &str) -> Self {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            metadata: serde_json::Map::new(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
        }
    }
}

/// Discovery: `/apis`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    pub kind: String,
    pub api_version: String,
    pub groups: Vec<ApiGroup>,
}

/// Discovery: `/apis/api.gitseal.dev`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub versions: Vec<GroupVersion>,
    pub preferred_version: GroupVersion,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupVersion {
    pub group_version: String,
    pub version: String,
}

/// Discovery: `/apis/api.gitseal.dev/v1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    pub kind: String,
    pub api_version: String,
    pub group_version: String,
    pub resources: Vec<ApiResource>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    pub name: String,
    pub singular_name: String,
    pub namespaced: bool,
    pub kind: String,
    pub verbs: Vec<String>,
}

impl ApiGroup {
    /// The one group and version gitseal serves.
    pub fn gitseal() -> Self {
        let gv = GroupVersion { group_version: GROUP_VERSION.into(), version: VERSION.into() };
        ApiGroup {
            kind: "APIGroup".into(),
            api_version: "v1".into(),
            name: GROUP.into(),
            versions: vec![gv.clone()],
            preferred_version: gv,
        }
    }
}

impl ApiGroupList {
    pub fn gitseal() -> Self {
        ApiGroupList { kind: "APIGroupList".into(), api_version: "v1".into(), groups: vec![ApiGroup::gitseal()] }
    }
}

impl ApiResourceList {
    /// Every [`Resource`], in [`Resource::ALL`] order.
    pub fn gitseal() -> Self {
        ApiResourceList {
            kind: "APIResourceList".into(),
            api_version: "v1".into(),
            group_version: GROUP_VERSION.into(),
            resources: Resource::ALL.into_iter().map(Resource::discovery).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_resource_is_found_by_its_plural_and_nothing_else_is() {
        for r in Resource::ALL {
            assert_eq!(Resource::from_plural(r.plural()), Some(r));
        }
        assert_eq!(Resource::from_plural("secrets"), None);
    }

    /// The discovery document is byte for byte what the hand-built JSON was before the model.
    #[test]
    fn discovery_serializes_as_the_kubernetes_documents() {
        let res = |name: &str, singular: &str, kind: &str, verb: &str| json!({"name": name, "singularName": singular, "namespaced": true, "kind": kind, "verbs": [verb]});
        let expected = json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "api.gitseal.dev/v1",
            "resources": [
                res("sealedsecretverifications", "sealedsecretverification", "SealedSecretVerification", "create"),
                res("sealedsecretreseals", "sealedsecretreseal", "SealedSecretReseal", "create"),
                res("keyrotations", "keyrotation", "KeyRotation", "create"),
                res("keyretirements", "keyretirement", "KeyRetirement", "create"),
                res("keyrevocations", "keyrevocation", "KeyRevocation", "create"),
                res("keybackups", "keybackup", "KeyBackup", "create"),
                res("keys", "key", "Key", "list"),
            ]
        });
        let got = serde_json::to_string(&ApiResourceList::gitseal()).unwrap();
        assert_eq!(got, expected.to_string());
        let gv = json!({"groupVersion": "api.gitseal.dev/v1", "version": "v1"});
        let group = json!({"kind": "APIGroup", "apiVersion": "v1", "name": "api.gitseal.dev",
                           "versions": [gv.clone()], "preferredVersion": gv});
        assert_eq!(serde_json::to_string(&ApiGroup::gitseal()).unwrap(), group.to_string());
        let list = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]});
        assert_eq!(serde_json::to_string(&ApiGroupList::gitseal()).unwrap(), list.to_string());
    }

    #[test]
    fn statuses_serialize_in_wire_order_and_omit_what_the_answer_lacks() {
        let ok = VerificationStatus { valid: true, key_ids: vec!["a".into()], message: None };
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"valid":true,"keyIds":["a"]}"#);
        let no = VerificationStatus { valid: false, key_ids: vec![], message: Some("no".into()) };
        assert_eq!(serde_json::to_string(&no).unwrap(), r#"{"valid":false,"message":"no"}"#);
        let rot = RotationStatus { key_id: "k".into(), secret_name: None };
        assert_eq!(serde_json::to_string(&rot).unwrap(), r#"{"keyId":"k","secretName":null}"#);
        let failure = Status::failure(404, "NotFound", "gone");
        let expected = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": "gone", "reason": "NotFound", "code": 404});
        assert_eq!(serde_json::to_string(&failure).unwrap(), expected.to_string());
    }

    #[test]
    fn a_request_object_serializes_as_the_cli_always_sent_it() {
        let req = Request::new(Resource::KeyRetirements, "key", KeyStateSpec { key_id: "SHA256:x".into() });
        let expected = json!({"apiVersion": "api.gitseal.dev/v1", "kind": "KeyRetirement",
                              "metadata": {"name": "key"}, "spec": {"keyId": "SHA256:x"}});
        assert_eq!(serde_json::to_string(&req).unwrap(), expected.to_string());
        assert_eq!(Resource::Keys.path("ops"), "/apis/api.gitseal.dev/v1/namespaces/ops/keys");
    }

    #[test]
    fn a_key_list_keeps_fields_this_build_does_not_know() {
        let wire = json!({"apiVersion": "api.gitseal.dev/v1", "kind": "KeyList", "items": [{
            "keyId": "k", "secretName": "s", "created": null, "notBefore": null, "notAfter": null,
            "state": "active", "pendingBackup": false, "latest": true, "bitnami": false,
            "ageRecipient": null, "hsm": "slot-1"}]});
        let list: KeyList = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(list.items[0].extra.get("hsm"), Some(&json!("slot-1")));
        assert_eq!(serde_json::to_value(&list).unwrap(), wire);
    }
}
