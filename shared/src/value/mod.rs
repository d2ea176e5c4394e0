//! Sealed values: recipients to seal for, keys to open with, and the two wire formats.
//!
//! [`RecipientSet::seal`] picks the format: exactly one RSA recipient gives kubeseal's format
//! ([`hybrid`]), so Bitnami's controller and `kubeseal --recovery-unseal` open it; anything
//! else (several clusters, an age recipient) gives gitseal's age format ([`multi`]).
//! [`open`] accepts both and reports which key opened the value and how many RSA private
//! operations it cost.

pub mod hybrid;
pub mod multi;
pub mod oaep;
mod rsa_stanza;
pub mod unwrap;

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{Error, KeyId, Result, SecretBytes, Target};

pub use rsa_stanza::TAG as RSA_STANZA_TAG;
pub use unwrap::{SoftwareRsaKey, UnwrapKey, UnwrapPath};

/// The two value formats, told apart from the decoded bytes alone: an age file starts with
/// `age-encryption.org/v1\n`, whose first two bytes read as a kubeseal length prefix would
/// announce a 24,935-byte RSA ciphertext (a 199,480-bit key), which no kubeseal value has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Kubeseal,
    Age,
}

impl Format {
    pub fn detect(value: &[u8]) -> Result<Format> {
        if value.starts_with(multi::MAGIC) {
            return Ok(Format::Age);
        }
        hybrid::split(value)?;
        Ok(Format::Kubeseal)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Kubeseal => "kubeseal",
            Format::Age => "age",
        }
    }
}

/// Decode a manifest value: standard padded base64, line breaks ignored as Go does.
pub fn decode_base64(text: &str) -> Result<Vec<u8>> {
    if text.contains(['\n', '\r']) {
        let joined: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        return Ok(STANDARD.decode(joined)?);
    }
    Ok(STANDARD.decode(text)?)
}

pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A cluster's RSA public key, ready for OAEP.
pub struct RsaPublicKey {
    key: OaepPublicEncryptingKey,
    id: KeyId,
}

impl RsaPublicKey {
    /// From a DER SubjectPublicKeyInfo (the public key of a certificate).
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let key = PublicEncryptingKey::from_der(der).map_err(|_| Error::InvalidKey("not an RSA public key"))?;
        let bits = key.key_size_bits();
        if !(2048..=8192).contains(&bits) {
            return Err(Error::InvalidKey("RSA key size must be between 2048 and 8192 bits"));
        }
        let id = KeyId::of_rsa_spki(der)?;
        let key = OaepPublicEncryptingKey::new(key).map_err(|_| Error::InvalidKey("RSA key unusable for OAEP"))?;
        Ok(Self { key, id })
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn bits(&self) -> usize {
        self.key.key_size_bits()
    }
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({}, {} bits)", self.id, self.bits())
    }
}

/// One party a value is sealed for.
#[derive(Debug)]
pub enum Recipient {
    /// A cluster, through the RSA key of its certificate.
    Rsa(RsaPublicKey),
    /// An X25519 age recipient (`age1…`): a cluster's age key or an offline recovery key.
    Age { recipient: age::x25519::Recipient, id: KeyId },
}

impl Recipient {
    pub fn age(recipient: age::x25519::Recipient) -> Recipient {
        let id = KeyId::of_age_recipient(&recipient);
        Recipient::Age { recipient, id }
    }

    pub fn id(&self) -> &KeyId {
        match self {
            Recipient::Rsa(k) => k.id(),
            Recipient::Age { id, .. } => id,
        }
    }
}

/// Everyone a value is sealed for.
#[derive(Debug, Default)]
pub struct RecipientSet(Vec<Recipient>);

impl RecipientSet {
    pub fn new(recipients: Vec<Recipient>) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(Self(recipients))
    }

    pub fn recipients(&self) -> &[Recipient] {
        &self.0
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.0.iter().map(Recipient::id)
    }

    /// The format [`Self::seal`] writes for this set.
    pub fn format(&self) -> Format {
        match self.0.as_slice() {
            [Recipient::Rsa(_)] => Format::Kubeseal,
            _ => Format::Age,
        }
    }

    /// Seal one value for `target`. Every call draws fresh keys, so equal inputs give
    /// different outputs.
    pub fn seal(&self, target: &Target, plaintext: &[u8]) -> Result<Vec<u8>> {
        match self.0.as_slice() {
            [Recipient::Rsa(rsa)] => hybrid::encrypt(&rsa.key, &target.label(), plaintext),
            all => {
                let rsa: Vec<rsa_stanza::RsaRecipient<'_>> = all
                    .iter()
                    .filter_map(|r| match r {
                        Recipient::Rsa(k) => Some(rsa_stanza::RsaRecipient { key: &k.key, id: &k.id }),
                        Recipient::Age { .. } => None,
                    })
                    .collect();
                let mut dyns: Vec<&dyn age::Recipient> = rsa.iter().map(|r| r as &dyn age::Recipient).collect();
                for r in all {
                    if let Recipient::Age { recipient, .. } = r {
                        dyns.push(recipient);
                    }
                }
                multi::encrypt(&dyns, target, plaintext)
            }
        }
    }
}

/// A private key able to open values: a cluster key (RSA, in memory or in a hardware token,
/// usually with an age identity beside it) or an age identity alone (an offline recovery key).
/// `Debug` shows only the ids. Cloning shares the RSA key (no copy of the key material).
#[derive(Clone)]
pub struct DecryptionKey {
    id: KeyId,
    rsa: Option<Arc<dyn UnwrapKey>>,
    age: Option<(age::x25519::Identity, KeyId)>,
}

impl DecryptionKey {
    /// From an RSA private key in PKCS#8 DER, held in memory, optionally with its age identity.
    pub fn from_rsa_pkcs8(pkcs8_der: &[u8], age: Option<age::x25519::Identity>) -> Result<Self> {
        Ok(Self::from_rsa(Arc::new(SoftwareRsaKey::from_pkcs8(pkcs8_der)?), age))
    }

    /// From an RSA key of any backend ([`UnwrapKey`]), optionally with its age identity.
    pub fn from_rsa(rsa: Arc<dyn UnwrapKey>, age: Option<age::x25519::Identity>) -> Self {
        Self { id: rsa.key_id().clone(), rsa: Some(rsa), age: age.map(with_age_id) }
    }

    pub fn from_age(identity: age::x25519::Identity) -> Self {
        let (identity, id) = with_age_id(identity);
        Self { id: id.clone(), rsa: None, age: Some((identity, id)) }
    }

    /// The key's primary id: the RSA key's when there is one.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Every id that names this key (RSA and age).
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.rsa.iter().map(|k| k.key_id()).chain(self.age.iter().map(|(_, id)| id))
    }

    pub fn has_id(&self, id: &KeyId) -> bool {
        self.ids().any(|i| i == id)
    }

    pub fn age_recipient(&self) -> Option<age::x25519::Recipient> {
        self.age.as_ref().map(|(i, _)| i.to_public())
    }

    /// The age identity, for a backup of an exportable key.
    pub fn age_identity(&self) -> Option<&age::x25519::Identity> {
        self.age.as_ref().map(|(i, _)| i)
    }

    /// The RSA key's backend.
    pub fn rsa(&self) -> Option<&Arc<dyn UnwrapKey>> {
        self.rsa.as_ref()
    }

    /// How the RSA key unwraps (`None` for an age identity alone).
    pub fn unwrap_path(&self) -> Option<UnwrapPath> {
        self.rsa.as_ref().map(|k| k.path())
    }

    /// Whether every part of the key may leave its backend (false for a token-held RSA key).
    pub fn exportable(&self) -> bool {
        self.rsa.as_ref().is_none_or(|k| k.export_pkcs8().is_some())
    }
}

fn with_age_id(identity: age::x25519::Identity) -> (age::x25519::Identity, KeyId) {
    let id = KeyId::of_age_recipient(&identity.to_public());
    (identity, id)
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptionKey")
            .field("rsa", &self.rsa.as_ref().map(|k| (k.key_id(), k.path().as_str())))
            .field("age", &self.age.as_ref().map(|(_, id)| id))
            .finish()
    }
}

/// A successfully opened value.
#[derive(Debug)]
pub struct Opened {
    pub plaintext: SecretBytes,
    /// The primary id of the key that opened it.
    pub key_id: KeyId,
    pub format: Format,
    /// RSA private-key operations spent, wrong keys included.
    pub private_ops: u32,
}

/// Order `keys` so that those named by `hints` come first, each group keeping its order
/// (keyrings list the latest key first).
pub fn order_by_hints<'k>(keys: &[&'k DecryptionKey], hints: &[KeyId]) -> Vec<&'k DecryptionKey> {
    let (mut hinted, rest): (Vec<&DecryptionKey>, Vec<&DecryptionKey>) =
        keys.iter().copied().partition(|k| hints.iter().any(|h| k.has_id(h)));
    hinted.extend(rest);
    hinted
}

/// Open `value` sealed for `target`, trying `keys` in the order given. Every failure to open
/// is the same [`Error::DecryptionFailed`]; only structural damage is reported apart.
pub fn open(keys: &[&DecryptionKey], target: &Target, value: &[u8]) -> Result<Opened> {
    open_metered(keys, target, value, &mut 0)
}

/// [`open`], adding the RSA private-key operations it spends to `spent` whether it succeeds or
/// fails, so a caller can charge failed attempts to a budget too.
pub fn open_metered(keys: &[&DecryptionKey], target: &Target, value: &[u8], spent: &mut u32) -> Result<Opened> {
    let format = Format::detect(value)?;
    let mut private_ops = 0u32;
    let result = open_counting(keys, target, value, format, &mut private_ops);
    *spent = spent.saturating_add(private_ops);
    result
}

fn open_counting(
    keys: &[&DecryptionKey],
    target: &Target,
    value: &[u8],
    format: Format,
    private_ops: &mut u32,
) -> Result<Opened> {
    // A key whose token is unreachable does not end the search (a later key may open the
    // value), but when no key opens it the answer is KeyUnavailable, never a decryption failure.
    let mut unavailable = None;
    for key in keys {
        let opened = match format {
            Format::Kubeseal => match &key.rsa {
                Some(rsa) => {
                    let (wrapped, _) = hybrid::split(value)?;
                    if wrapped.len() == rsa.modulus_bytes() {
                        *private_ops += 1;
                    }
                    hybrid::decrypt(rsa.as_ref(), &target.label(), value)
                }
                None => continue,
            },
            Format::Age => {
                let ops = Cell::new(0);
                let unavailable = Cell::new(false);
                let rsa = key.rsa.as_ref().map(|k| rsa_stanza::RsaIdentity {
                    key: k.as_ref(),
                    id: k.key_id(),
                    private_ops: &ops,
                    unavailable: &unavailable,
                });
                let mut ids: Vec<&dyn age::Identity> = Vec::with_capacity(2);
                if let Some(r) = &rsa {
                    ids.push(r);
                }
                if let Some((identity, _)) = &key.age {
                    ids.push(identity);
                }
                let result = multi::open(&ids, target, value);
                *private_ops += ops.get();
                match result {
                    Err(Error::DecryptionFailed) if unavailable.get() => {
                        Err(Error::KeyUnavailable("the token did not answer"))
                    }
                    other => other,
                }
            }
        };
        match opened {
            Ok(plaintext) => {
                return Ok(Opened { plaintext, key_id: key.id().clone(), format, private_ops: *private_ops });
            }
            Err(Error::DecryptionFailed) => continue,
            Err(Error::KeyUnavailable(why)) => unavailable = Some(why),
            Err(other) => return Err(other),
        }
    }
    Err(unavailable.map_or(Error::DecryptionFailed, Error::KeyUnavailable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// Two 2048-bit keys, generated once per test binary.
    fn rsa_keys() -> &'static [(Vec<u8>, Vec<u8>); 2] {
        static KEYS: OnceLock<[(Vec<u8>, Vec<u8>); 2]> = OnceLock::new();
        KEYS.get_or_init(|| {
            let make = || {
                let k = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
                let pkcs8 = k.as_der().unwrap().as_ref().to_vec();
                let spki = k.public_key().as_der().unwrap().as_ref().to_vec();
                (pkcs8, spki)
            };
            [make(), make()]
        })
    }

    fn recipient(i: usize) -> Recipient {
        Recipient::Rsa(RsaPublicKey::from_spki_der(&rsa_keys()[i].1).unwrap())
    }

    fn key(i: usize, age: Option<age::x25519::Identity>) -> DecryptionKey {
        DecryptionKey::from_rsa_pkcs8(&rsa_keys()[i].0, age).unwrap()
    }

    fn strict(ns: &str, name: &str) -> Target {
        Target::new(Scope::Strict, Some(ns), Some(name)).unwrap()
    }

    #[test]
    fn single_certificate_gives_the_kubeseal_layout() {
        let set = RecipientSet::new(vec![recipient(0)]).unwrap();
        let v = set.seal(&strict("ns", "s"), b"abc").unwrap();
        assert_eq!(&v[..2], &[0x01, 0x00], "u16 BE length of a 2048-bit RSA ciphertext");
        assert_eq!(v.len(), 2 + 256 + 3 + 16);
        assert_eq!(Format::detect(&v).unwrap(), Format::Kubeseal);
    }

    #[test]
    fn every_scope_round_trips_and_rejects_other_targets() {
        let set = RecipientSet::new(vec![recipient(0)]).unwrap();
        let k = key(0, None);
        for scope in Scope::ALL {
            let t = Target::new(scope, Some("ns"), Some("name")).unwrap();
            let v = set.seal(&t, b"value").unwrap();
            let opened = open(&[&k], &t, &v).unwrap();
            assert_eq!(opened.plaintext.expose(), b"value");
            assert_eq!(opened.private_ops, 1);
            let moved = match scope {
                Scope::ClusterWide => continue,
                Scope::NamespaceWide => Target::new(scope, Some("other"), None).unwrap(),
                Scope::Strict => strict("ns", "renamed"),
            };
            assert!(matches!(open(&[&k], &moved, &v), Err(Error::DecryptionFailed)));
        }
    }

    #[test]
    fn namespace_wide_survives_a_rename_but_strict_does_not() {
        let set = RecipientSet::new(vec![recipient(0)]).unwrap();
        let k = key(0, None);
        let t = Target::new(Scope::NamespaceWide, Some("ns"), Some("a")).unwrap();
        let v = set.seal(&t, b"x").unwrap();
        let renamed = Target::new(Scope::NamespaceWide, Some("ns"), Some("b")).unwrap();
        assert!(open(&[&k], &renamed, &v).is_ok());
    }

    #[test]
    fn tampered_and_truncated_values_fail_without_naming_the_step() {
        let set = RecipientSet::new(vec![recipient(0)]).unwrap();
        let k = key(0, None);
        let t = strict("ns", "s");
        let v = set.seal(&t, b"secret").unwrap();
        for i in [0usize, 5, 2 + 256, v.len() - 1] {
            let mut bad = v.clone();
            bad[i] ^= 1;
            let err = open(&[&k], &t, &bad).unwrap_err();
            assert!(matches!(err, Error::DecryptionFailed | Error::TooShort { .. }), "{err}");
            assert!(!err.to_string().contains("secret"));
        }
        assert!(matches!(open(&[&k], &t, &v[..100]), Err(Error::TooShort { .. })));
        assert!(matches!(open(&[&k], &t, &[2]), Err(Error::TooShort { .. })));
    }

    #[test]
    fn wrong_key_is_a_plain_decryption_failure() {
        let set = RecipientSet::new(vec![recipient(0)]).unwrap();
        let v = set.seal(&strict("ns", "s"), b"x").unwrap();
        assert!(matches!(open(&[&key(1, None)], &strict("ns", "s"), &v), Err(Error::DecryptionFailed)));
    }

    #[test]
    fn hinted_key_is_tried_first_so_one_private_op_suffices() {
        let set = RecipientSet::new(vec![recipient(1)]).unwrap();
        let t = strict("ns", "s");
        let v = set.seal(&t, b"x").unwrap();
        let (k0, k1) = (key(0, None), key(1, None));
        let unhinted = open(&[&k0, &k1], &t, &v).unwrap();
        assert_eq!(unhinted.private_ops, 2);
        let ordered = order_by_hints(&[&k0, &k1], &[k1.id().clone()]);
        let hinted = open(&ordered, &t, &v).unwrap();
        assert_eq!((hinted.private_ops, &hinted.key_id), (1, k1.id()));
    }

    #[test]
    fn age_format_opens_with_each_recipient_and_binds_the_scope() {
        let recovery = age::x25519::Identity::generate();
        let set = RecipientSet::new(vec![recipient(0), recipient(1), Recipient::age(recovery.to_public())]).unwrap();
        assert_eq!(set.format(), Format::Age);
        let t = strict("ns", "s");
        let v = set.seal(&t, b"multi").unwrap();
        assert!(v.starts_with(multi::MAGIC));
        assert_eq!(Format::detect(&v).unwrap(), Format::Age);
        for k in [key(0, None), key(1, None), DecryptionKey::from_age(recovery.clone())] {
            let opened = open(&[&k], &t, &v).unwrap();
            assert_eq!(opened.plaintext.expose(), b"multi");
            assert!(opened.private_ops <= 1);
        }
        // An RSA stanza that is not ours costs no private operation.
        let other = key(1, None);
        let only0 = RecipientSet::new(vec![recipient(0), Recipient::age(recovery.to_public())]).unwrap();
        let v0 = only0.seal(&t, b"x").unwrap();
        let err = open(&[&other], &t, &v0).unwrap_err();
        assert!(matches!(err, Error::DecryptionFailed));
        // Moved to another name: rejected after decryption.
        assert!(matches!(
            open(&[&DecryptionKey::from_age(recovery)], &strict("ns", "t"), &v),
            Err(Error::DecryptionFailed)
        ));
    }

    /// Key `i` behind a token that does not answer.
    struct Unreachable(SoftwareRsaKey);

    impl UnwrapKey for Unreachable {
        fn key_id(&self) -> &KeyId {
            self.0.key_id()
        }
        fn modulus_bytes(&self) -> usize {
            self.0.modulus_bytes()
        }
        fn path(&self) -> UnwrapPath {
            UnwrapPath::TokenRawRsa
        }
        fn unwrap(&self, _: &[u8], _: &[u8]) -> Result<SecretBytes> {
            Err(Error::KeyUnavailable("the token did not answer"))
        }
        fn export_pkcs8(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
            None
        }
    }

    fn unreachable(i: usize) -> DecryptionKey {
        DecryptionKey::from_rsa(Arc::new(Unreachable(SoftwareRsaKey::from_pkcs8(&rsa_keys()[i].0).unwrap())), None)
    }

    #[test]
    fn a_key_whose_token_is_gone_is_unavailable_not_a_decryption_failure_in_both_formats() {
        let t = strict("ns", "s");
        let kubeseal = RecipientSet::new(vec![recipient(0)]).unwrap().seal(&t, b"x").unwrap();
        let age_format =
            RecipientSet::new(vec![recipient(0), Recipient::age(age::x25519::Identity::generate().to_public())])
                .unwrap()
                .seal(&t, b"x")
                .unwrap();
        for v in [&kubeseal, &age_format] {
            let gone = unreachable(0);
            assert!(matches!(open(&[&gone], &t, v), Err(Error::KeyUnavailable(_))));
            // Another key that cannot open it does not turn the answer into a decryption failure.
            assert!(matches!(open(&[&gone, &key(1, None)], &t, v), Err(Error::KeyUnavailable(_))));
        }
    }

    #[test]
    fn a_key_whose_token_is_gone_does_not_stop_another_key_from_opening_the_value() {
        let t = strict("ns", "s");
        let v = RecipientSet::new(vec![recipient(1)]).unwrap().seal(&t, b"x").unwrap();
        let opened = open(&[&unreachable(0), &key(1, None)], &t, &v).unwrap();
        assert_eq!(opened.plaintext.expose(), b"x");
        assert_eq!(&opened.key_id, key(1, None).id());
    }

    #[test]
    fn an_age_value_is_never_taken_for_a_kubeseal_value() {
        assert_eq!(Format::detect(b"age-encryption.org/v1\n-> X25519 abc\n").unwrap(), Format::Age);
        assert!(matches!(Format::detect(b"ag"), Err(Error::TooShort { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_value_round_trips_in_both_formats(value in proptest::collection::vec(any::<u8>(), 0..2048), age_format in any::<bool>()) {
            let mut rs = vec![recipient(0)];
            if age_format {
                rs.push(recipient(1));
            }
            let set = RecipientSet::new(rs).unwrap();
            let t = strict("ns", "name");
            let v = set.seal(&t, &value).unwrap();
            let opened = open(&[&key(0, None)], &t, &v).unwrap();
            prop_assert_eq!(opened.plaintext.expose(), &value[..]);
        }
    }
}
