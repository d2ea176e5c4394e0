//! gitseal's multi-recipient value format: a binary age file (`age-encryption.org/v1`).
//!
//! Each cluster is a recipient through its RSA key ([`super::rsa_stanza`]) or its X25519 age
//! recipient; extra recipients (other clusters, an offline recovery key) are X25519. age has no
//! associated data, so the scope is bound *inside* the encrypted payload:
//!
//! ```text
//! gitseal.dev/v1 strict <namespace>/<name>\n<value>
//! gitseal.dev/v1 namespace-wide <namespace>\n<value>
//! gitseal.dev/v1 cluster-wide\n<value>
//! ```
//! and [`open`] rejects a payload whose binding differs from the object it was found in. The
//! Go `age` CLI opens these files with an X25519 identity and prints the binding line first.

use std::io::{Read, Write};

use crate::{Error, Result, SecretBytes, Target};

pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";
const BINDING_PREFIX: &str = "gitseal.dev/v1 ";

/// The first line of the payload for `target`.
pub fn binding_line(target: &Target) -> String {
    format!("{BINDING_PREFIX}{target}\n")
}

/// Encrypt `plaintext` for every recipient at once.
pub fn encrypt(recipients: &[&dyn age::Recipient], target: &Target, plaintext: &[u8]) -> Result<Vec<u8>> {
    if recipients.is_empty() {
        return Err(Error::NoRecipients);
    }
    let encryptor = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(|_| Error::Encrypt("age refused this set of recipients"))?;
    let binding = binding_line(target);
    let mut out = Vec::with_capacity(plaintext.len() + binding.len() + 256 + 700 * recipients.len());
    let io = |_| Error::Encrypt("age stream failed");
    let mut writer = encryptor.wrap_output(&mut out).map_err(io)?;
    writer.write_all(binding.as_bytes()).map_err(io)?;
    writer.write_all(plaintext).map_err(io)?;
    writer.finish().map_err(io)?;
    Ok(out)
}

/// Open an age value with `identities` (tried in order) and check it was sealed for `target`.
pub fn open(identities: &[&dyn age::Identity], target: &Target, value: &[u8]) -> Result<SecretBytes> {
    let decryptor = age::Decryptor::new_buffered(value).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => Error::TooShort { len: value.len() },
        _ => Error::DecryptionFailed,
    })?;
    let mut reader = decryptor.decrypt(identities.iter().copied()).map_err(|_| Error::DecryptionFailed)?;
    let mut payload = zeroize::Zeroizing::new(Vec::with_capacity(value.len()));
    reader.read_to_end(&mut payload).map_err(|_| Error::DecryptionFailed)?;
    let expected = binding_line(target);
    match payload.strip_prefix(expected.as_bytes()) {
        Some(plain) => Ok(SecretBytes::from(plain)),
        // Sealed for another namespace/name or scope: opaque, like a wrong key.
        None => Err(Error::DecryptionFailed),
    }
}
