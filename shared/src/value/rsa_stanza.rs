//! An age stanza that wraps the file key to a cluster's RSA key, so a value sealed from a
//! certificate alone can join a multi-recipient age file.
//!
//! ```text
//! -> gitseal-rsa-oaep SHA256:<key id>
//! base64(RSA-OAEP-SHA256(file key, label "gitseal.dev/v1/rsa-oaep"))
//! ```
//! The key id in the arguments lets an identity skip stanzas that are not its own without any
//! private-key operation; the label separates these ciphertexts from kubeseal's value format.
//! Other age implementations skip the stanza, so the file still opens with any X25519 identity
//! among its recipients.

use std::collections::HashSet;

use age::{DecryptError, EncryptError};
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::secrecy::ExposeSecret;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey};

use super::unwrap::UnwrapKey;

use crate::KeyId;

pub const TAG: &str = "gitseal-rsa-oaep";
const LABEL: &[u8] = b"gitseal.dev/v1/rsa-oaep";

pub(crate) struct RsaRecipient<'a> {
    pub key: &'a OaepPublicEncryptingKey,
    pub id: &'a KeyId,
}

impl age::Recipient for RsaRecipient<'_> {
    fn wrap_file_key(&self, file_key: &FileKey) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        let mut body = vec![0u8; self.key.ciphertext_size()];
        let len = self
            .key
            .encrypt(&OAEP_SHA256_MGF1SHA256, file_key.expose_secret(), &mut body, Some(LABEL))
            .map_err(|_| EncryptError::Io(std::io::Error::other("RSA-OAEP wrap failed")))?
            .len();
        body.truncate(len);
        let stanza = Stanza { tag: TAG.into(), args: vec![self.id.to_string()], body };
        Ok((vec![stanza], HashSet::new()))
    }
}

pub(crate) struct RsaIdentity<'a> {
    pub key: &'a dyn UnwrapKey,
    pub id: &'a KeyId,
    /// RSA private operations performed, for the caller's cost accounting.
    pub private_ops: &'a std::cell::Cell<u32>,
    /// Set when the key's backend could not be reached (age sees only a failed stanza; the
    /// caller reports [`crate::Error::KeyUnavailable`] instead of a decryption failure).
    pub unavailable: &'a std::cell::Cell<bool>,
}

impl age::Identity for RsaIdentity<'_> {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.tag != TAG || stanza.args.first().map(String::as_str) != Some(self.id.as_str()) {
            return None;
        }
        self.private_ops.set(self.private_ops.get() + 1);
        let result = match self.key.unwrap(&stanza.body, LABEL) {
            Ok(plain) if plain.len() == FILE_KEY_BYTES => FileKey::try_init_with_mut(|k| {
                k.copy_from_slice(plain.expose());
                Ok(())
            }),
            Err(crate::Error::KeyUnavailable(_)) => {
                self.unavailable.set(true);
                Err(DecryptError::DecryptionFailed)
            }
            _ => Err(DecryptError::DecryptionFailed),
        };
        Some(result)
    }
}
