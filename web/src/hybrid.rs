//! kubeseal's value format, sealed with RustCrypto from caller-supplied randomness
//! (the writer half of `gitseal_shared::value::hybrid`):
//!
//! ```text
//! u16 big-endian L ‖ RSA-OAEP(SHA-256, MGF1-SHA-256, label)(session key) [L bytes] ‖ AES-256-GCM(session key, nonce 0¹², no AAD)(plaintext) ‖ tag
//! ```
//! The all-zero nonce is safe because every value has its own session key: the caller must give
//! fresh random bytes for every value, which [`crate::seal`] enforces by layout (no byte is used
//! twice) and the page by drawing them from `crypto.getRandomValues` for every seal.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{CryptoRng, RngCore};
use rsa::Oaep;
use rsa::traits::PublicKeyParts;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The AES-256 session key, then the OAEP seed (one SHA-256 output).
pub const RANDOM_BYTES: usize = SESSION_KEY_LEN + OAEP_SEED_LEN;
const SESSION_KEY_LEN: usize = 32;
const OAEP_SEED_LEN: usize = 32;

/// Seal `plaintext` for `key` under the OAEP `label` of its scope, with `random` as the only
/// source of randomness.
pub fn encrypt(
    key: &rsa::RsaPublicKey,
    label: &[u8],
    plaintext: &[u8],
    random: &[u8; RANDOM_BYTES],
) -> Result<Vec<u8>> {
    let (session, seed) = random.split_at(SESSION_KEY_LEN);
    let session =
        Zeroizing::new(<[u8; SESSION_KEY_LEN]>::try_from(session).map_err(|_| Error::Encrypt("session key"))?);
    let rsa_len = key.size();
    let prefix = u16::try_from(rsa_len).map_err(|_| Error::Encrypt("RSA key too large"))?;

    // Go passes an empty slice for cluster-wide; OAEP hashes an absent and an empty label alike.
    let padding = if label.is_empty() {
        Oaep::new::<Sha256>()
    } else {
        let label = String::from_utf8(label.to_vec()).map_err(|_| Error::Encrypt("label is not UTF-8"))?;
        Oaep::new_with_label::<Sha256, _>(label)
    };
    let mut rng = SliceRng { bytes: seed, short: false };
    let wrapped =
        key.encrypt(&mut rng, padding, session.as_slice()).map_err(|_| Error::Encrypt("RSA-OAEP wrap failed"))?;
    if rng.short || !rng.bytes.is_empty() || wrapped.len() != rsa_len {
        return Err(Error::Encrypt("RSA-OAEP used an unexpected amount of randomness"));
    }

    let aead = Aes256Gcm::new_from_slice(session.as_slice()).map_err(|_| Error::Encrypt("AES key setup failed"))?;
    let body = aead
        .encrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: plaintext, aad: &[] })
        .map_err(|_| Error::Encrypt("AES-GCM seal failed"))?;

    let mut out = Vec::with_capacity(2 + rsa_len + body.len());
    out.extend_from_slice(&prefix.to_be_bytes());
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&body);
    Ok(out)
}

/// An "RNG" that hands out the caller's bytes once, in order. Asking for more than it holds
/// sets `short` (and yields zeros), which [`encrypt`] turns into an error before anything
/// sealed with it leaves.
struct SliceRng<'a> {
    bytes: &'a [u8],
    short: bool,
}

impl RngCore for SliceRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if dest.len() > self.bytes.len() {
            self.short = true;
            dest.fill(0);
            self.bytes = &[];
            return;
        }
        let (now, rest) = self.bytes.split_at(dest.len());
        dest.copy_from_slice(now);
        self.bytes = rest;
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SliceRng<'_> {}
