//! A set of private keys, newest first, findable by id.
//!
//! "Latest" follows Bitnami: the greatest certificate NotBefore. Only the latest key's
//! certificate is handed out for sealing; every key decrypts.

use gitseal_shared::KeyId;
use gitseal_shared::value::DecryptionKey;
use time::OffsetDateTime;

use crate::Certificate;

#[derive(Debug)]
pub struct KeyEntry {
    pub key: DecryptionKey,
    pub cert: Option<Certificate>,
    /// Where the key came from, for messages and audit records.
    pub source: String,
}

impl KeyEntry {
    /// The ordering time: the certificate's NotBefore.
    pub fn not_before(&self) -> Option<OffsetDateTime> {
        self.cert.as_ref().and_then(Certificate::not_before)
    }

    pub fn id(&self) -> &KeyId {
        self.key.id()
    }
}

#[derive(Debug, Default)]
pub struct Keyring {
    entries: Vec<KeyEntry>,
}

impl Keyring {
    /// Build a keyring: newest first, later duplicates of an id dropped.
    pub fn new(entries: Vec<KeyEntry>) -> Keyring {
        let mut out: Vec<KeyEntry> = Vec::with_capacity(entries.len());
        for e in entries {
            if !out.iter().any(|o| o.id() == e.id()) {
                out.push(e);
            }
        }
        // Stable: keys without a certificate keep their input order, after dated ones.
        out.sort_by_key(|e| std::cmp::Reverse(e.not_before()));
        Keyring { entries: out }
    }

    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The key new SealedSecrets are sealed for: the greatest certificate NotBefore.
    pub fn latest(&self) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.cert.is_some())
    }

    /// The entry any of whose ids (RSA or age) is `id`.
    pub fn find(&self, id: &KeyId) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.key.has_id(id))
    }

    /// Every key, newest first, for [`gitseal_shared::seal::unseal`].
    pub fn decryption_keys(&self) -> Vec<&DecryptionKey> {
        self.entries.iter().map(|e| &e.key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{DEFAULT_TTL, generate_key_pair};
    use time::Duration;

    fn entry(at: OffsetDateTime) -> KeyEntry {
        let kp = generate_key_pair(crate::RsaBits::Rsa2048, "", at, DEFAULT_TTL).unwrap();
        KeyEntry { key: kp.decryption_key().unwrap(), cert: Some(kp.cert), source: "test".into() }
    }

    #[test]
    fn latest_is_the_greatest_not_before_and_every_id_finds_its_key() {
        let now = OffsetDateTime::now_utc();
        let old = entry(now - Duration::days(60));
        let new = entry(now);
        let (old_id, new_id) = (old.id().clone(), new.id().clone());
        let age_id = KeyId::of_age_recipient(&new.key.age_recipient().unwrap());
        let ring = Keyring::new(vec![old, new]);
        assert_eq!(ring.latest().unwrap().id(), &new_id);
        assert_eq!(ring.find(&old_id).unwrap().id(), &old_id);
        assert_eq!(ring.find(&age_id).unwrap().id(), &new_id);
        assert_eq!(ring.decryption_keys()[0].id(), &new_id);
    }
}
