//! The key-backend seam: the one place an RSA private-key operation happens.
//!
//! Both value formats wrap a session key of at most 32 bytes with RSA-OAEP (SHA-256,
//! MGF1-SHA-256, a label naming the scope or the stanza kind). Only that unwrap needs the
//! private key; AES-GCM and the age payload stay in software. [`UnwrapKey`] is that one
//! operation, so a key may live in memory ([`SoftwareRsaKey`], aws-lc-rs) or in a hardware
//! token (`gitseal_keys::pkcs11`) and every caller — [`super::hybrid`], the age RSA stanza,
//! [`super::DecryptionKey`] — goes through the same joint, as age's `Identity::unwrap_stanza`.
//!
//! Export is a capability: [`UnwrapKey::export_pkcs8`] is `None` for a key that cannot leave
//! its token, and backups refuse such keys.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use zeroize::Zeroizing;

use crate::{Error, KeyId, Result, SecretBytes};

/// Longest session key any format wraps (kubeseal's AES-256 key; age's file key is 16).
pub const MAX_SESSION_KEY: usize = 32;

/// Where and how a key performs RSA-OAEP: for logs, a metric label and `keys list -o wide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnwrapPath {
    /// aws-lc-rs in the controller's memory.
    Memory,
    /// The token's own CKM_RSA_PKCS_OAEP with SHA-256/MGF1-SHA-256 and the label.
    TokenOaep,
    /// The token's raw CKM_RSA_X_509; OAEP decoded in constant-time software
    /// ([`super::oaep::decode`]). The private key still never leaves the token.
    TokenRawRsa,
}

impl UnwrapPath {
    pub fn as_str(self) -> &'static str {
        match self {
            UnwrapPath::Memory => "memory",
            UnwrapPath::TokenOaep => "pkcs11-oaep",
            UnwrapPath::TokenRawRsa => "pkcs11-raw-rsa",
        }
    }
}

/// An RSA private key that can unwrap a session key, wherever it lives.
pub trait UnwrapKey: Send + Sync {
    /// The id of the key (of its public key).
    fn key_id(&self) -> &KeyId;

    /// The modulus size in bytes: a ciphertext of another length is not for this key, and is
    /// refused before any private operation.
    fn modulus_bytes(&self) -> usize;

    fn path(&self) -> UnwrapPath;

    /// RSA-OAEP(SHA-256, MGF1-SHA-256, `label`) decryption of `wrapped` (exactly
    /// [`Self::modulus_bytes`] long) to a session key of at most [`MAX_SESSION_KEY`] bytes.
    /// Every cryptographic failure is the same [`Error::DecryptionFailed`]; a backend that
    /// cannot be reached (a token gone) is [`Error::KeyUnavailable`], so the caller retries.
    fn unwrap(&self, wrapped: &[u8], label: &[u8]) -> Result<SecretBytes>;

    /// The private key as PKCS#8 DER, when it may leave its backend; `None` for a key that
    /// cannot leave its token.
    fn export_pkcs8(&self) -> Option<Zeroizing<Vec<u8>>>;
}

impl fmt::Debug for dyn UnwrapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnwrapKey({}, {})", self.key_id(), self.path().as_str())
    }
}

/// An RSA private key held in memory by aws-lc-rs (constant-time private operations).
pub struct SoftwareRsaKey {
    /// For export; shares the one key object with `oaep` (aws-lc-rs clones by reference count).
    private: PrivateDecryptingKey,
    oaep: OaepPrivateDecryptingKey,
    id: KeyId,
}

impl SoftwareRsaKey {
    /// From an RSA private key in PKCS#8 DER.
    pub fn from_pkcs8(pkcs8_der: &[u8]) -> Result<Self> {
        let private =
            PrivateDecryptingKey::from_pkcs8(pkcs8_der).map_err(|_| Error::InvalidKey("not an RSA private key"))?;
        let spki = private.public_key().as_der().map_err(|_| Error::InvalidKey("cannot encode the public key"))?;
        let id = KeyId::of_rsa_spki(spki.as_ref())?;
        let oaep = OaepPrivateDecryptingKey::new(private.clone())
            .map_err(|_| Error::InvalidKey("RSA key unusable for OAEP"))?;
        Ok(Self { private, oaep, id })
    }
}

impl UnwrapKey for SoftwareRsaKey {
    fn key_id(&self) -> &KeyId {
        &self.id
    }

    fn modulus_bytes(&self) -> usize {
        self.oaep.key_size_bytes()
    }

    fn path(&self) -> UnwrapPath {
        UnwrapPath::Memory
    }

    fn unwrap(&self, wrapped: &[u8], label: &[u8]) -> Result<SecretBytes> {
        if wrapped.len() != self.modulus_bytes() {
            return Err(Error::DecryptionFailed);
        }
        let mut out = Zeroizing::new(vec![0u8; self.oaep.min_output_size()]);
        // Go passes an empty slice for cluster-wide; OAEP hashes an absent and an empty label alike.
        let label = (!label.is_empty()).then_some(label);
        let plain = self
            .oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, label)
            .map_err(|_| Error::DecryptionFailed)?;
        if plain.len() > MAX_SESSION_KEY {
            return Err(Error::DecryptionFailed);
        }
        Ok(SecretBytes::from(&*plain))
    }

    fn export_pkcs8(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.private.as_der().ok().map(|d| Zeroizing::new(d.as_ref().to_vec()))
    }
}

impl fmt::Debug for SoftwareRsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftwareRsaKey({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{KeySize, OaepPublicEncryptingKey};

    #[test]
    fn software_key_unwraps_with_the_label_and_refuses_any_other() {
        let k = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let soft = SoftwareRsaKey::from_pkcs8(k.as_der().unwrap().as_ref()).unwrap();
        let public = OaepPublicEncryptingKey::new(k.public_key()).unwrap();
        let mut ct = vec![0u8; public.ciphertext_size()];
        public.encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut ct, Some(b"ns/name")).unwrap();
        assert_eq!(soft.unwrap(&ct, b"ns/name").unwrap().expose(), &[7u8; 32]);
        assert!(matches!(soft.unwrap(&ct, b"ns/other"), Err(Error::DecryptionFailed)));
        assert!(matches!(soft.unwrap(&ct[1..], b"ns/name"), Err(Error::DecryptionFailed)));
        assert_eq!(soft.path().as_str(), "memory");
        let exported = soft.export_pkcs8().unwrap();
        assert_eq!(SoftwareRsaKey::from_pkcs8(&exported).unwrap().key_id(), soft.key_id());
        assert!(!format!("{soft:?}").contains("PRIVATE"));
    }
}
