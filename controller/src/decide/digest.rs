//! Digests on produced Secrets.
//!
//! - The *sealed digest* ([`sealed_digest`]) is a plain SHA-256 of everything public the Secret
//!   is made from (target, spec, the SealedSecret's UID). It is not a secret and is not trusted
//!   on its own: it only says "made from these sealed inputs".
//! - The *data digest* ([`data_digest`]) is an HMAC-SHA256 under the controller's digest key
//!   ([`DigestKey`], a Secret in the controller namespace) over the sealed digest, the Secret's
//!   type and its managed items. Nobody without the key can recompute it, so an edit of the
//!   Secret that also rewrites the annotation is still drift, short values are no brute-force
//!   target, and a value from an older version cannot be replayed beside a newer sealed digest.
//!
//! The annotation reads `hmac-sha256:<key id>:<hex>`. When the digest key is rotated (with the
//! sealing keys), annotations under the old key no longer match: each SealedSecret then costs
//! one re-verification (one decryption, one apply with the new digest) — the old key is not
//! kept, so a leaked old digest key stops mattering after that pass.

use aws_lc_rs::hmac;
use gitseal_shared::scope::Target;
use gitseal_shared::types::SealedSecretObject;
use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of a digest key, bytes.
pub const DIGEST_KEY_LEN: usize = 32;
/// Prefix of a keyed data digest.
const SCHEME: &str = "hmac-sha256";
/// Domain separation of the data digest's HMAC input.
const DOMAIN: &[u8] = b"gitseal.dev/data-digest/v1\0";

/// The controller-held key of the data digests.
pub struct DigestKey {
    bytes: Zeroizing<Vec<u8>>,
    id: String,
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DigestKey({})", self.id)
    }
}

/// A digest key of the wrong length.
#[derive(Debug, thiserror::Error)]
#[error("a digest key is {DIGEST_KEY_LEN} bytes, this one is {0}")]
pub struct BadDigestKey(pub usize);

impl DigestKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<DigestKey, BadDigestKey> {
        if bytes.len() != DIGEST_KEY_LEN {
            return Err(BadDigestKey(bytes.len()));
        }
        let mut h = Sha256::new();
        h.update(b"gitseal.dev/digest-key-id\0");
        h.update(bytes);
        let id = gitseal_shared::hex::encode(&h.finalize()[..8]);
        Ok(DigestKey { bytes: Zeroizing::new(bytes.to_vec()), id })
    }

    /// A fresh random key from the system CSPRNG.
    pub fn generate() -> Result<DigestKey, aws_lc_rs::error::Unspecified> {
        let mut buf = Zeroizing::new(vec![0u8; DIGEST_KEY_LEN]);
        aws_lc_rs::rand::fill(&mut buf)?;
        DigestKey::from_bytes(&buf).map_err(|_| aws_lc_rs::error::Unspecified)
    }

    /// A public, non-secret identifier (a truncated hash of the key).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Digest of everything the produced Secret depends on.
pub fn sealed_digest(ss: &SealedSecretObject) -> String {
    gitseal_shared::hex::encode(&sealed_digest_bytes(ss))
}

/// [`sealed_digest`] as bytes (what the cache keeps: 32 bytes, not 64 of hex).
pub fn sealed_digest_bytes(ss: &SealedSecretObject) -> [u8; 32] {
    let mut h = Sha256::new();
    let target = gitseal_shared::seal::target_of(ss).map(|t: Target| t.to_string()).unwrap_or_default();
    h.update(target.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(&ss.spec).unwrap_or_default());
    h.update([0]);
    h.update(ss.metadata.uid.as_deref().unwrap_or("").as_bytes());
    h.finalize().into()
}

/// Keyed digest of a Secret's type and the given data items, bound to the sealed digest it is
/// produced from.
pub fn data_digest(key: &DigestKey, sealed_digest: &str, secret: &Secret, items: &[String]) -> String {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key.bytes()));
    ctx.update(DOMAIN);
    ctx.update(&(sealed_digest.len() as u64).to_be_bytes());
    ctx.update(sealed_digest.as_bytes());
    let ty = secret.type_.as_deref().unwrap_or("Opaque");
    ctx.update(&(ty.len() as u64).to_be_bytes());
    ctx.update(ty.as_bytes());
    let data = secret.data.as_ref();
    let mut sorted: Vec<&String> = items.iter().collect();
    sorted.sort();
    sorted.dedup();
    for k in sorted {
        ctx.update(&[0]);
        ctx.update(&(k.len() as u64).to_be_bytes());
        ctx.update(k.as_bytes());
        match data.and_then(|d| d.get(k)) {
            Some(v) => {
                ctx.update(&[1]);
                ctx.update(&(v.0.len() as u64).to_be_bytes());
                ctx.update(&v.0);
            }
            None => ctx.update(&[2]),
        }
    }
    format!("{SCHEME}:{}:{}", key.id(), gitseal_shared::hex::encode(ctx.sign().as_ref()))
}

/// Whether `annotation` is the data digest of `secret` under `key` (constant-time comparison).
pub fn data_digest_matches(
    key: &DigestKey,
    annotation: &str,
    sealed_digest: &str,
    secret: &Secret,
    items: &[String],
) -> bool {
    let want = data_digest(key, sealed_digest, secret, items);
    annotation.len() == want.len()
        && aws_lc_rs::constant_time::verify_slices_are_equal(annotation.as_bytes(), want.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(v: &[u8]) -> Secret {
        Secret { data: Some([("p".to_string(), ByteString(v.to_vec()))].into()), ..Default::default() }
    }

    #[test]
    fn the_digest_depends_on_key_data_and_sealed_inputs() {
        let k1 = DigestKey::generate().unwrap();
        let k2 = DigestKey::generate().unwrap();
        let items = vec!["p".to_string()];
        let d = data_digest(&k1, "s1", &secret(b"x"), &items);
        assert!(d.starts_with(&format!("hmac-sha256:{}:", k1.id())));
        assert!(data_digest_matches(&k1, &d, "s1", &secret(b"x"), &items));
        assert!(!data_digest_matches(&k2, &d, "s1", &secret(b"x"), &items), "another key");
        assert!(!data_digest_matches(&k1, &d, "s2", &secret(b"x"), &items), "other sealed inputs");
        assert!(!data_digest_matches(&k1, &d, "s1", &secret(b"y"), &items), "other data");
        assert_ne!(k1.id(), k2.id());
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused_and_debug_hides_it() {
        assert!(DigestKey::from_bytes(&[0; 16]).is_err());
        let k = DigestKey::from_bytes(&[7; DIGEST_KEY_LEN]).unwrap();
        assert_eq!(format!("{k:?}"), format!("DigestKey({})", k.id()));
    }
}
