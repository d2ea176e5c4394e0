//! What the SealedSecret cache keeps: only what the no-key decision needs (issue #14, item 2).
//!
//! The reflector used to hold whole objects — managedFields, `kubectl` last-applied copies and
//! every ciphertext — about 14 KiB per SealedSecret. [`for_cache`] keeps metadata, status, the
//! item names and the sealed digest of the full spec (computed before the ciphertext is
//! dropped), so the cached object still answers "is the Secret in sync?"
//! ([`decide::without_keys`](crate::decide::without_keys)); reconcile GETs the full object only
//! when it has to unseal.
//!
//! The cached digest travels in [`CACHED_DIGEST_ANNOTATION`], which exists only in memory: it
//! is always overwritten here, and [`forget_cached_digest`] drops whatever a user wrote under
//! that name from objects read from the API, so nobody can set it.

use gitseal_shared::types::SealedSecretObject;

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
}
