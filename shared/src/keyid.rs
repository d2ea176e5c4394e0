//! Key ids: public, non-secret fingerprints that let a controller try the right key first.
//!
//! An RSA key's id is the same `SHA256:…` fingerprint Bitnami's controller logs for it
//! (`ssh.FingerprintSHA256`: SHA-256 over the SSH wire encoding of the `ssh-rsa` public key,
//! unpadded base64), so a gitseal id can be matched against Bitnami's logs. An X25519 age
//! recipient's id is `SHA256:` over the recipient's `age1…` text.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use pkcs8::der::Decode;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The annotation on a SealedSecret that lists the key ids its values were sealed for,
/// comma-separated. Bitnami's controller ignores it.
pub const KEY_ID_ANNOTATION: &str = "gitseal.dev/key-id";

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id of an RSA public key given as DER SubjectPublicKeyInfo.
    pub fn of_rsa_spki(spki_der: &[u8]) -> Result<KeyId> {
        let spki = pkcs8::SubjectPublicKeyInfoRef::from_der(spki_der)
            .map_err(|_| Error::InvalidKey("not a DER SubjectPublicKeyInfo"))?;
        let rsa = pkcs1::RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
            .map_err(|_| Error::InvalidKey("not an RSA public key"))?;
        let mut wire = Vec::with_capacity(600);
        ssh_string(&mut wire, b"ssh-rsa");
        ssh_mpint(&mut wire, rsa.public_exponent.as_bytes());
        ssh_mpint(&mut wire, rsa.modulus.as_bytes());
        Ok(KeyId::sha256(&wire))
    }

    /// The id of an X25519 age recipient.
    pub fn of_age_recipient(recipient: &age::x25519::Recipient) -> KeyId {
        KeyId::sha256(recipient.to_string().as_bytes())
    }

    fn sha256(bytes: &[u8]) -> KeyId {
        KeyId(format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short form for tables: the first 12 characters of the hash.
    pub fn short(&self) -> &str {
        let hash = self.0.strip_prefix("SHA256:").unwrap_or(&self.0);
        hash.get(..12).unwrap_or(hash)
    }

    /// Parse the comma-separated list of the key-id annotation, skipping malformed entries.
    pub fn parse_list(annotation: &str) -> Vec<KeyId> {
        annotation.split(',').filter_map(|s| s.trim().parse().ok()).collect()
    }

    /// Format ids for the key-id annotation: sorted, deduplicated, comma-separated.
    pub fn join(ids: impl IntoIterator<Item = KeyId>) -> String {
        let set: std::collections::BTreeSet<KeyId> = ids.into_iter().collect();
        set.iter().map(KeyId::as_str).collect::<Vec<_>>().join(",")
    }
}

impl FromStr for KeyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<KeyId> {
        let hash = s.strip_prefix("SHA256:").ok_or(Error::InvalidKey("key id must start with SHA256:"))?;
        match STANDARD_NO_PAD.decode(hash) {
            Ok(bytes) if bytes.len() == 32 => Ok(KeyId(s.to_string())),
            _ => Err(Error::InvalidKey("key id is not SHA256: followed by 43 base64 characters")),
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// RFC 4251 mpint of a non-negative big-endian integer: no leading zeros, plus one zero byte
/// when the top bit is set.
fn ssh_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude.iter().position(|b| *b != 0).unwrap_or(magnitude.len());
    let m = &magnitude[start..];
    let pad = m.first().is_some_and(|b| b & 0x80 != 0);
    out.extend_from_slice(&((m.len() + usize::from(pad)) as u32).to_be_bytes());
    if pad {
        out.push(0);
    }
    out.extend_from_slice(m);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpint_adds_a_zero_byte_when_the_top_bit_is_set() {
        let mut out = Vec::new();
        ssh_mpint(&mut out, &[0x00, 0x80, 0x01]);
        assert_eq!(out, [0, 0, 0, 3, 0, 0x80, 0x01]);
        out.clear();
        ssh_mpint(&mut out, &[0x01, 0x00, 0x01]);
        assert_eq!(out, [0, 0, 0, 3, 1, 0, 1]);
    }

    #[test]
    fn key_id_lists_round_trip_sorted_and_deduplicated() {
        let a: KeyId = format!("SHA256:{}", STANDARD_NO_PAD.encode([1u8; 32])).parse().unwrap();
        let b: KeyId = format!("SHA256:{}", STANDARD_NO_PAD.encode([2u8; 32])).parse().unwrap();
        let joined = KeyId::join([b.clone(), a.clone(), b.clone()]);
        assert_eq!(KeyId::parse_list(&joined), vec![a, b]);
        assert!("SHA256:short".parse::<KeyId>().is_err());
        assert!("md5:xx".parse::<KeyId>().is_err());
    }
}
