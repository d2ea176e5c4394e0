//! Bitnami kubeseal's value format, byte for byte (`pkg/crypto/crypto.go`).
//!
//! ```text
//! u16 big-endian L ‖ RSA-OAEP(SHA-256, MGF1-SHA-256, label)(session key) [L bytes] ‖ AES-256-GCM(session key, nonce 0¹², no AAD)(plaintext) ‖ tag
//! ```
//! A fresh 32-byte session key is drawn for every value, which is what makes the all-zero GCM
//! nonce safe; [`encrypt`] never reuses one. The scope is bound only through the OAEP label.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey};
use zeroize::Zeroizing;

use super::unwrap::UnwrapKey;
use crate::{Error, Result, SecretBytes};

const SESSION_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

fn oaep_label(label: &[u8]) -> Option<&[u8]> {
    // Go passes an empty slice for cluster-wide; OAEP hashes an absent and an empty label alike.
    (!label.is_empty()).then_some(label)
}

/// Seal `plaintext` for `key` under the OAEP `label` of its scope.
pub fn encrypt(key: &OaepPublicEncryptingKey, label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut session = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    aws_lc_rs::rand::fill(session.as_mut_slice()).map_err(|_| Error::Encrypt("random source failed"))?;

    let rsa_len = key.ciphertext_size();
    let prefix = u16::try_from(rsa_len).map_err(|_| Error::InvalidKey("RSA key too large"))?;
    let mut out = Vec::with_capacity(2 + rsa_len + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&prefix.to_be_bytes());
    out.resize(2 + rsa_len, 0);
    let wrapped = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, session.as_slice(), &mut out[2..], oaep_label(label))
        .map_err(|_| Error::Encrypt("RSA-OAEP wrap failed"))?
        .len();
    if wrapped != rsa_len {
        return Err(Error::Encrypt("RSA-OAEP produced an unexpected length"));
    }

    let aead = aead_key(session.as_slice())?;
    let mut body = plaintext.to_vec();
    aead.seal_in_place_append_tag(Nonce::assume_unique_for_key([0u8; 12]), Aad::empty(), &mut body)
        .map_err(|_| Error::Encrypt("AES-GCM seal failed"))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The two halves of a value: the RSA-wrapped session key and the GCM ciphertext with its tag.
/// Only structure is checked here ([`Error::TooShort`]); everything else is a decryption failure.
pub fn split(value: &[u8]) -> Result<(&[u8], &[u8])> {
    let too_short = || Error::TooShort { len: value.len() };
    let (len, rest) = value.split_first_chunk::<2>().ok_or_else(too_short)?;
    let rsa_len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < rsa_len + TAG_LEN {
        return Err(too_short());
    }
    Ok(rest.split_at(rsa_len))
}

/// Open a value with one private key. Any failure after [`split`] is [`Error::DecryptionFailed`]
/// (or [`Error::KeyUnavailable`] when the key's token cannot be reached).
pub fn decrypt(key: &dyn UnwrapKey, label: &[u8], value: &[u8]) -> Result<SecretBytes> {
    let (wrapped, sealed) = split(value)?;
    if wrapped.len() != key.modulus_bytes() {
        // Sealed for a key of another size: certainly not this key, and no private op spent.
        return Err(Error::DecryptionFailed);
    }
    let session = key.unwrap(wrapped, label)?;
    if session.len() != SESSION_KEY_LEN {
        return Err(Error::DecryptionFailed);
    }
    let aead = aead_key(session.expose()).map_err(|_| Error::DecryptionFailed)?;
    let mut body = Zeroizing::new(sealed.to_vec());
    let plain = aead
        .open_in_place(Nonce::assume_unique_for_key([0u8; 12]), Aad::empty(), &mut body)
        .map_err(|_| Error::DecryptionFailed)?;
    Ok(SecretBytes::from(&*plain))
}

fn aead_key(key: &[u8]) -> Result<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Encrypt("AES key setup failed"))?;
    Ok(LessSafeKey::new(unbound))
}
