//! The audit key: Ed25519 (aws-lc-rs). Deterministic signatures, 64 bytes, ~20 µs to sign; the
//! private half lives in a Secret of the controller namespace, the public half is published
//! (`/v1/audit-key`, `gitseal audit key`) as a PEM `PUBLIC KEY` that openssl also reads.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{CHECKPOINT_DOMAIN, RECORD_DOMAIN};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The private audit key. Debug prints only the type; aws-lc-rs zeroizes it on drop.
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey")
    }
}

impl SigningKey {
    /// A new key and its PKCS#8 (v2) encoding, to store.
    pub fn generate() -> Result<(SigningKey, zeroize::Zeroizing<Vec<u8>>), &'static str> {
        let pair = Ed25519KeyPair::generate().map_err(|_| "cannot generate an Ed25519 key")?;
        let doc = pair.to_pkcs8().map_err(|_| "cannot encode the Ed25519 key")?;
        Ok((SigningKey(pair), zeroize::Zeroizing::new(doc.as_ref().to_vec())))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, &'static str> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SigningKey)
            .map_err(|_| "not an Ed25519 private key (PKCS#8)")
    }

    /// The PKCS#8 (v2) encoding, to write the key's Secret back after it was deleted or
    /// replaced. Wiped on drop.
    pub fn to_pkcs8(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, &'static str> {
        let doc = self.0.to_pkcs8().map_err(|_| "cannot encode the Ed25519 key")?;
        Ok(zeroize::Zeroizing::new(doc.as_ref().to_vec()))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(k)
    }

    pub(super) fn sign_record(&self, digest: &[u8; 32]) -> String {
        let mut msg = RECORD_DOMAIN.to_vec();
        msg.extend_from_slice(digest);
        B64.encode(self.0.sign(&msg).as_ref())
    }

    /// `bytes` already carry their domain prefix.
    pub(super) fn sign_raw(&self, bytes: &[u8]) -> String {
        debug_assert!(bytes.starts_with(CHECKPOINT_DOMAIN));
        B64.encode(self.0.sign(bytes).as_ref())
    }
}

/// The public audit key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(der))
    }

    /// Read a PEM `PUBLIC KEY` of an Ed25519 key.
    pub fn from_pem(text: &str) -> Result<PublicKey, &'static str> {
        const NOT: &str = "not an Ed25519 public key (PEM \"PUBLIC KEY\", as `gitseal audit key` prints)";
        let body = text
            .trim()
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|t| t.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or(NOT)?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if b64.len() > 64 {
            return Err(NOT);
        }
        let der = B64.decode(b64).map_err(|_| NOT)?;
        let key = der.strip_prefix(&SPKI_PREFIX[..]).ok_or(NOT)?;
        let k: [u8; 32] = key.try_into().map_err(|_| NOT)?;
        Ok(PublicKey(k))
    }

    /// A short fingerprint to print: `SHA256:` + unpadded base64 of the key's SHA-256.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let d = sha2::Sha256::digest(self.0);
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(d))
    }

    pub(super) fn verify_record(&self, digest: &[u8; 32], sig: &str) -> Result<(), &'static str> {
        let mut msg = RECORD_DOMAIN.to_vec();
        msg.extend_from_slice(digest);
        self.verify_raw(&msg, sig)
    }

    pub(super) fn verify_raw(&self, msg: &[u8], sig: &str) -> Result<(), &'static str> {
        const BAD: &str = "signature does not verify with the audit public key (forged, or another key)";
        if sig.len() > 128 {
            return Err(BAD);
        }
        let sig = B64.decode(sig).map_err(|_| BAD)?;
        UnparsedPublicKey::new(&ED25519, &self.0).verify(msg, &sig).map_err(|_| BAD)
    }
}
