//! The sealing certificate: its RSA public key, key id and validity.
//!
//! The key id is gitseal's (`gitseal_shared::KeyId::of_rsa_spki`): SHA-256 over the SSH wire
//! encoding of the `ssh-rsa` key, as Bitnami's controller logs it. tests/compat.rs checks that
//! both agree.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rsa::BigUint;
use rsa::pkcs1::der::{Decode, DecodePem};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::{Error, Result};

/// The largest certificate PEM accepted: a 8192-bit RSA certificate is about 3 KiB.
pub const MAX_CERT_PEM: usize = 64 * 1024;

/// The sealing key of a certificate.
#[derive(Debug, Clone)]
pub struct SealingKey {
    pub(crate) key: rsa::RsaPublicKey,
    pub id: String,
    pub bits: usize,
    /// Seconds since the Unix epoch, and RFC 3339.
    pub not_before: u64,
    pub not_before_text: String,
    pub not_after: u64,
    pub not_after_text: String,
}

impl SealingKey {
    /// From the first certificate of a PEM file (what `/v1/cert.pem` serves).
    pub fn from_pem(pem: &str) -> Result<SealingKey> {
        if pem.len() > MAX_CERT_PEM {
            return Err(Error::Certificate("larger than 64 KiB"));
        }
        let first = first_certificate(pem).ok_or(Error::Certificate("no PEM CERTIFICATE block"))?;
        let cert = Certificate::from_pem(first.as_bytes()).map_err(|_| Error::Certificate("malformed"))?;
        let tbs = &cert.tbs_certificate;
        let spki = &tbs.subject_public_key_info;
        if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
            return Err(Error::Certificate("not an RSA key"));
        }
        let raw = spki.subject_public_key.as_bytes().ok_or(Error::Certificate("malformed public key"))?;
        let pkcs1 = rsa::pkcs1::RsaPublicKey::from_der(raw).map_err(|_| Error::Certificate("not an RSA public key"))?;
        let (n, e) = (pkcs1.modulus.as_bytes(), pkcs1.public_exponent.as_bytes());
        let key = rsa::RsaPublicKey::new_with_max_size(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e), 8192)
            .map_err(|_| Error::Certificate("unusable RSA key"))?;
        let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
        if !(2048..=8192).contains(&bits) {
            return Err(Error::Certificate("RSA key size must be between 2048 and 8192 bits"));
        }
        let validity = &tbs.validity;
        let time = |t: &x509_cert::time::Time| (t.to_unix_duration().as_secs(), t.to_date_time().to_string());
        let (not_before, not_before_text) = time(&validity.not_before);
        let (not_after, not_after_text) = time(&validity.not_after);
        Ok(SealingKey { key, id: key_id(e, n), bits, not_before, not_before_text, not_after, not_after_text })
    }
}

fn first_certificate(pem: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)?;
    let end = pem[start..].find(END)? + start + END.len();
    Some(&pem[start..end])
}

/// `SHA256:` + unpadded base64 of SHA-256 over `string "ssh-rsa" ‖ mpint e ‖ mpint n`.
fn key_id(e: &[u8], n: &[u8]) -> String {
    let mut wire = Vec::with_capacity(16 + e.len() + n.len());
    ssh_string(&mut wire, b"ssh-rsa");
    ssh_mpint(&mut wire, e);
    ssh_mpint(&mut wire, n);
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&wire)))
}

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn ssh_mpint(out: &mut Vec<u8>, unsigned_be: &[u8]) {
    let trimmed = match unsigned_be.iter().position(|b| *b != 0) {
        Some(i) => &unsigned_be[i..],
        None => &[],
    };
    let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
    out.extend_from_slice(&((trimmed.len() + usize::from(pad)) as u32).to_be_bytes());
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
}
