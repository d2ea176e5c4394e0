//! What the SealedSecret cache keeps: only what the no-key decision needs (issue #14, item 2).
//!
//! The cache used to hold whole objects — managedFields, `kubectl` last-applied copies and
//! every ciphertext — about 14 KiB per SealedSecret. The cache ([`crate::cache`]) now holds an
//! [`Entry`] (about 420 bytes): uid, resourceVersion, generation, the item names, the status
//! and the sealed digest of the full spec (computed before the ciphertext is dropped), under
//! its `namespace/name`. For a reconcile, [`Entry::to_object`] rebuilds the trimmed object
//! [`for_cache`] describes,
//! which still answers "is the Secret in sync?"
//! ([`decide::without_keys`](crate::decide::without_keys)); reconcile GETs the full object only
//! when it has to unseal.
//!
//! The cached digest travels in [`CACHED_DIGEST_ANNOTATION`], which exists only in memory: it
//! is always overwritten here, and [`forget_cached_digest`] drops whatever a user wrote under
//! that name from objects read from the API, so nobody can set it.

use std::borrow::Cow;
use std::sync::Arc;

use gitseal_shared::types::{ApiGroup, SealedSecretObject, SealedSecretSpec, SealedSecretStatus, SecretTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::DynamicResourceScope;

use crate::decide::digest::sealed_digest_bytes;
use crate::decide::sealed_digest;

/// In-memory only: the sealed digest of the spec this trimmed object was cut from.
pub const CACHED_DIGEST_ANNOTATION: &str = "gitseal.dev/internal-cached-sealed-digest";
/// `kubectl apply`'s copy of the whole object (ciphertext included).
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Cut `ss` down to what the cache keeps.
pub fn for_cache(ss: &mut SealedSecretObject) {
    let digest = sealed_digest(ss);
    ss.metadata.managed_fields = None;
    let annotations = ss.metadata.annotations.get_or_insert_default();
    annotations.remove(LAST_APPLIED_ANNOTATION);
    annotations.insert(CACHED_DIGEST_ANNOTATION.into(), digest);
    // Item names stay (the data digest covers them); values go.
    for v in ss.spec.encrypted_data.values_mut() {
        *v = String::new();
    }
    if let Some(t) = ss.spec.template.as_mut() {
        t.metadata = None;
        if let Some(data) = t.data.as_mut() {
            for v in data.values_mut() {
                *v = String::new();
            }
        }
    }
    if let Some(d) = ss.spec.data.as_mut() {
        *d = String::new();
    }
}

/// The sealed digest a trimmed object carries, `None` for a full object.
pub fn cached_digest(ss: &SealedSecretObject) -> Option<&str> {
    ss.metadata.annotations.as_ref()?.get(CACHED_DIGEST_ANNOTATION).map(String::as_str)
}

/// Drop the in-memory annotation from an object read from the API (a user may have written it).
pub fn forget_cached_digest(ss: &mut SealedSecretObject) {
    if let Some(a) = ss.metadata.annotations.as_mut() {
        a.remove(CACHED_DIGEST_ANNOTATION);
    }
}

/// One SealedSecret as the watch delivers it to the cache: only what the no-key decision
/// ([`decide::without_keys`](crate::decide::without_keys)), the lanes and the shards read —
/// name, namespace, uid, resourceVersion, generation, deletion, the sealed digest as 32 bytes,
/// the item names and the status (one JSON string). The watch deserializes list pages and
/// events straight into it (the whole object lives only while one item is read), and
/// [`crate::cache`] keeps its [`Entry`]; [`Entry::to_object`] rebuilds the trimmed object
/// [`for_cache`] would have made, for the length of one reconcile.
///
/// Its dynamic type is the [`ApiGroup`] (one byte) rather than an `ApiResource` (five
/// strings). About 14 KiB per object in a whole-object cache, about 3.5 KiB in a trimmed one,
/// about 420 bytes in the controller's cache
/// (`cargo bench -p gitseal-controller --bench cache_bytes`).
#[derive(Clone, Debug)]
pub struct Cached {
    /// Only name, namespace, generation, deletionTimestamp and resourceVersion: what
    /// kube-runtime's watcher reads.
    meta: ObjectMeta,
    group: ApiGroup,
    entry: Entry,
}

/// What the controller's cache ([`crate::cache`]) keeps of one object, beside its
/// `namespace/name`: no metadata struct, no copies of the name.
#[derive(Clone, Debug)]
pub struct Entry {
    uid: Option<Token>,
    resource_version: Option<Token>,
    generation: Option<i64>,
    deletion_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    digest: [u8; 32],
    /// Names of `spec.encryptedData` (shared: most objects name the same few items).
    pub(crate) items: Names,
    /// Names of `spec.template.data`, when there is a template with data.
    pub(crate) template_items: Option<Names>,
    /// The deprecated single-blob `spec.data` is set.
    blob: bool,
    /// `status` as JSON, one string; shared, since objects unsealed in the same second with
    /// the same key say the same.
    pub(crate) status: Option<Arc<str>>,
    observed_generation: Option<i64>,
    /// Which list of the watch last saw it (see [`crate::cache`]).
    pub(crate) listing: u32,
}

/// Item names of one object.
pub type Names = Arc<[Box<str>]>;

/// A uid or resourceVersion in fewer bytes: a UUID as 16 bytes, a decimal number as a `u64`
/// (what the API server hands out), anything else as it came. Always written back exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Uuid([u8; 16]),
    Number(u64),
    Text(Box<str>),
}

impl Token {
    fn new(s: &str) -> Token {
        if let Ok(n) = s.parse::<u64>()
            && n.to_string() == s
        {
            return Token::Number(n);
        }
        if let Some(bytes) = uuid_bytes(s) {
            return Token::Uuid(bytes);
        }
        Token::Text(s.into())
    }
}

/// The 16 bytes of a lowercase, hyphenated UUID (`8-4-4-4-12`), if `s` is exactly one.
fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        *out.get_mut(i)? = nibble(pair[0])? << 4 | nibble(*pair.get(1)?)?;
    }
    (hex.len() == 32).then_some(out)
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Number(n) => write!(f, "{n}"),
            Token::Text(t) => f.write_str(t),
            Token::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> Names {
    keys.map(|k| Box::from(k.as_str())).collect()
}

impl Cached {
    /// Cut `ss` (of `group`) down to what the cache keeps.
    pub fn new(ss: &SealedSecretObject, group: ApiGroup) -> Cached {
        let m = &ss.metadata;
        let meta = ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            resource_version: m.resource_version.clone(),
            generation: m.generation,
            deletion_timestamp: m.deletion_timestamp.clone(),
            ..ObjectMeta::default()
        };
        let status = ss.status.as_ref();
        let entry = Entry {
            uid: m.uid.as_deref().map(Token::new),
            resource_version: m.resource_version.as_deref().map(Token::new),
            generation: m.generation,
            deletion_timestamp: m.deletion_timestamp.clone(),
            digest: sealed_digest_bytes(ss),
            items: names(ss.spec.encrypted_data.keys()),
            template_items: ss.spec.template.as_ref().and_then(|t| t.data.as_ref()).map(|d| names(d.keys())),
            blob: ss.spec.data.is_some(),
            status: status.and_then(|s| serde_json::to_string(s).ok()).map(Arc::from),
            observed_generation: status.and_then(|s| s.observed_generation),
            listing: 0,
        };
        Cached { meta, group, entry }
    }

    /// The group is the watch's, whatever the object said (list items may omit `apiVersion`).
    pub fn set_group(&mut self, group: ApiGroup) {
        self.group = group;
    }

    /// Whether the status says this generation was already reconciled (see [`crate::lanes`]).
    pub fn is_unchanged(&self) -> bool {
        self.entry.is_unchanged()
    }

    /// `namespace/name` and the entry the cache keeps.
    pub fn into_entry(self) -> (crate::lanes::Key, Entry) {
        let key = crate::lanes::Key::new(
            self.meta.namespace.as_deref().unwrap_or_default(),
            self.meta.name.as_deref().unwrap_or_default(),
        );
        (key, self.entry)
    }

    /// The trimmed object [`for_cache`] makes: metadata as kept, item names with empty values,
    /// the status, and the sealed digest in [`CACHED_DIGEST_ANNOTATION`].
    pub fn to_object(&self) -> SealedSecretObject {
        let ns = self.meta.namespace.as_deref().unwrap_or_default();
        self.entry.to_object(ns, self.meta.name.as_deref().unwrap_or_default(), self.group)
    }
}

impl Entry {
    /// Whether the status says this generation was already reconciled (see [`crate::lanes`]).
    pub fn is_unchanged(&self) -> bool {
        crate::lanes::covers(self.observed_generation, self.generation)
    }

    /// Unchanged and not being deleted: the resync lane's (see [`crate::lanes::lane_of`]).
    pub fn is_settled(&self) -> bool {
        self.deletion_timestamp.is_none() && self.is_unchanged()
    }

    /// The trimmed object [`for_cache`] makes of object `namespace/name` of `group`: metadata
    /// as kept, item names with empty values, the status, and the sealed digest in
    /// [`CACHED_DIGEST_ANNOTATION`].
    pub fn to_object(&self, namespace: &str, name: &str, group: ApiGroup) -> SealedSecretObject {
        let meta = ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            uid: self.uid.as_ref().map(Token::to_string),
            resource_version: self.resource_version.as_ref().map(Token::to_string),
            generation: self.generation,
            deletion_timestamp: self.deletion_timestamp.clone(),
            annotations: Some(
                [(CACHED_DIGEST_ANNOTATION.to_string(), gitseal_shared::hex::encode(&self.digest))].into(),
            ),
            ..ObjectMeta::default()
        };
        let empty = |names: &[Box<str>]| names.iter().map(|n| (n.to_string(), String::new())).collect();
        let spec = SealedSecretSpec {
            template: self
                .template_items
                .as_ref()
                .map(|t| SecretTemplateSpec { data: Some(empty(t)), ..SecretTemplateSpec::default() }),
            encrypted_data: empty(&self.items),
            data: self.blob.then(String::new),
        };
        let ar = group.api_resource();
        let mut o = SealedSecretObject::new(name, &ar, spec);
        o.metadata = meta;
        o.status = self.status.as_deref().and_then(|s| serde_json::from_str::<SealedSecretStatus>(s).ok());
        o
    }
}

fn group_version(g: ApiGroup) -> (&'static str, &'static str) {
    use gitseal_shared::types::{BITNAMI_GROUP, BITNAMI_VERSION, GITSEAL_GROUP, GITSEAL_VERSION};
    match g {
        ApiGroup::Gitseal => (GITSEAL_GROUP, GITSEAL_VERSION),
        ApiGroup::Bitnami => (BITNAMI_GROUP, BITNAMI_VERSION),
    }
}

impl Resource for Cached {
    type DynamicType = ApiGroup;
    /// Dynamic, so that an `Api` can be made for one namespace with the group as its type.
    type Scope = DynamicResourceScope;

    fn kind(_: &ApiGroup) -> Cow<'_, str> {
        Cow::Borrowed(gitseal_shared::types::KIND)
    }
    fn group(g: &ApiGroup) -> Cow<'_, str> {
        Cow::Borrowed(group_version(*g).0)
    }
    fn version(g: &ApiGroup) -> Cow<'_, str> {
        Cow::Borrowed(group_version(*g).1)
    }
    fn api_version(g: &ApiGroup) -> Cow<'_, str> {
        Cow::Borrowed(g.api_version())
    }
    fn plural(_: &ApiGroup) -> Cow<'_, str> {
        Cow::Borrowed("sealedsecrets")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// kube-runtime's `Controller` asks for it; a cached object is made from a whole one, the
/// group from its `apiVersion` (gitseal's when absent).
impl<'de> serde::Deserialize<'de> for Cached {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ss = SealedSecretObject::deserialize(d)?;
        Ok(Cached::new(&ss, ApiGroup::of(&ss).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> SealedSecretObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "app", "uid": "u1",
                "annotations": {LAST_APPLIED_ANNOTATION: "{\"huge\": true}", CACHED_DIGEST_ANNOTATION: "forged"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"encryptedData": {"a": "AgBy".repeat(200), "b": "AgCz".repeat(200)},
                     "template": {"metadata": {"labels": {"x": "y"}}, "data": {"t": "{{ .a }}"}}}
        }))
        .unwrap()
    }

    #[test]
    fn the_cache_keeps_names_and_the_digest_of_the_full_spec_and_drops_ciphertext() {
        let mut full = object();
        forget_cached_digest(&mut full);
        assert_eq!(cached_digest(&full), None, "a user cannot set the cached digest");
        let want = sealed_digest(&full);
        let mut cached = full.clone();
        for_cache(&mut cached);
        assert_eq!(cached_digest(&cached), Some(want.as_str()));
        assert!(cached.metadata.managed_fields.is_none());
        assert!(!cached.metadata.annotations.as_ref().unwrap().contains_key(LAST_APPLIED_ANNOTATION));
        assert_eq!(cached.spec.encrypted_data.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(cached.spec.encrypted_data.values().all(String::is_empty));
        assert_eq!(cached.spec.template.as_ref().unwrap().data.as_ref().unwrap()["t"], "");
        let size = |o: &SealedSecretObject| serde_json::to_vec(o).unwrap().len();
        assert!(size(&cached) * 4 < size(&full), "{} vs {}", size(&cached), size(&full));
        // Trimming whatever came in overwrites a forged value.
        let mut forged = object();
        for_cache(&mut forged);
        assert_eq!(cached_digest(&forged), Some(want.as_str()));
    }

    #[test]
    fn uids_and_resource_versions_come_back_exactly_as_they_were() {
        for s in [
            "6f1c2f2e-4b7a-4f8e-9a55-0b1c2d3e4f50",
            "6F1C2F2E-4B7A-4F8E-9A55-0B1C2D3E4F50",
            "6f1c2f2e-4b7a-4f8e-9a55-0b1c2d3e4f5",
            "6f1c2f2e+4b7a-4f8e-9a55-0b1c2d3e4f50",
            "123456",
            "0123",
            "18446744073709551616",
            "",
            "u1",
            "é",
        ] {
            assert_eq!(Token::new(s).to_string(), s);
        }
        assert!(matches!(Token::new("6f1c2f2e-4b7a-4f8e-9a55-0b1c2d3e4f50"), Token::Uuid(_)));
        assert!(matches!(Token::new("123456"), Token::Number(123456)));
        assert!(matches!(Token::new("0123"), Token::Text(_)));
    }

    #[test]
    fn a_compact_entry_rebuilds_what_the_trimmed_object_says() {
        let mut full = object();
        forget_cached_digest(&mut full);
        full.metadata.resource_version = Some("42".into());
        full.metadata.generation = Some(3);
        full.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        full.status = Some(SealedSecretStatus {
            observed_generation: Some(3),
            conditions: vec![gitseal_shared::types::SealedSecretCondition {
                type_: "Synced".into(),
                status: "True".into(),
                last_transition_time: Some("2026-01-01T00:00:00Z".into()),
                reason: Some("Unsealed".into()),
                ..Default::default()
            }],
            key_id: Some("k1".into()),
        });
        let mut trimmed = full.clone();
        for_cache(&mut trimmed);
        let cached = Cached::new(&full, ApiGroup::Bitnami);
        let rebuilt = cached.to_object();

        assert_eq!(cached_digest(&rebuilt), cached_digest(&trimmed));
        assert_eq!(rebuilt.spec.encrypted_data, trimmed.spec.encrypted_data);
        assert_eq!(rebuilt.spec.data, trimmed.spec.data);
        assert_eq!(
            rebuilt.spec.template.as_ref().and_then(|t| t.data.clone()),
            trimmed.spec.template.as_ref().and_then(|t| t.data.clone())
        );
        assert_eq!(rebuilt.status, full.status);
        for (a, b) in [
            (&rebuilt.metadata.name, &full.metadata.name),
            (&rebuilt.metadata.namespace, &full.metadata.namespace),
            (&rebuilt.metadata.uid, &full.metadata.uid),
            (&rebuilt.metadata.resource_version, &full.metadata.resource_version),
        ] {
            assert_eq!(a, b);
        }
        assert_eq!(rebuilt.metadata.generation, Some(3));
        // The cache's entry, without the metadata, rebuilds the same object.
        let (key, entry) = cached.clone().into_entry();
        assert_eq!(key.as_str(), "app/db");
        assert_eq!(entry.to_object(key.namespace(), key.name(), ApiGroup::Bitnami).metadata, rebuilt.metadata);
        assert_eq!(ApiGroup::of(&rebuilt), Some(ApiGroup::Bitnami), "the group travels with the entry");
        assert!(cached.is_unchanged() && crate::lanes::is_unchanged(&rebuilt));
        // A new generation is news, and so is an object without status.
        full.metadata.generation = Some(4);
        assert!(!Cached::new(&full, ApiGroup::Gitseal).is_unchanged());
        full.status = None;
        let fresh = Cached::new(&full, ApiGroup::Gitseal);
        assert!(!fresh.is_unchanged());
        assert_eq!(fresh.to_object().status, None);
        // Owner references of produced Secrets name the object by the group's apiVersion.
        assert_eq!(<Cached as Resource>::api_version(&ApiGroup::Bitnami), "bitnami.com/v1alpha1");
        assert_eq!(<Cached as Resource>::api_version(&ApiGroup::Gitseal), ApiGroup::Gitseal.api_version());
    }
}
