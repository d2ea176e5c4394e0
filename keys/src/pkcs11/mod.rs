//! RSA keys that never leave a PKCS#11 token (an HSM, a cloud HSM, SoftHSM).
//!
//! [`Token`] opens a module (the `cryptoki` crate dlopens it; no C at build time), finds the
//! token by label or slot, logs in with the PIN, and keeps a small pool of sessions that are
//! re-opened — the library re-initialised if need be — when the token goes away and comes
//! back. [`TokenKey`] is a key object in it, behind the [`UnwrapKey`] seam: only a session
//! key crosses it, and [`UnwrapKey::export_pkcs8`] is `None`.
//!
//! Tokens differ. [`Token::open`] probes once with a throw-away session key pair and a known
//! vector: CKM_RSA_PKCS_OAEP with SHA-256, MGF1-SHA-256 and the label as CKZ_DATA_SPECIFIED
//! source data where the token does it ([`UnwrapPath::TokenOaep`]); otherwise raw
//! CKM_RSA_X_509 in the token and EME-OAEP decoded in constant-time software
//! ([`gitseal_shared::value::oaep`], [`UnwrapPath::TokenRawRsa`]: Debian's SoftHSM 2.6 refuses
//! OAEP with SHA-256 and a label). The private key stays in the token either way.
//!
//! Unlike the rest of this crate, this module does I/O: it calls into the module the caller
//! names. Calls block; the controller makes them from its private-key threads.

mod pool;
mod signer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use gitseal_shared::value::{UnwrapKey, UnwrapPath, oaep};
use gitseal_shared::{KeyId, SecretBytes};
use pkcs8::der::Encode;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::{Certificate, Error, Result};
use pool::Pool;
pub use pool::is_reconnect_error;

/// Where to find the token and how to log in.
pub struct TokenConfig {
    /// Path of the PKCS#11 module (`libsofthsm2.so`, a vendor's library).
    pub module: PathBuf,
    /// The token's label (CKA_LABEL of the token); the first slot with a token when neither
    /// this nor `slot` is given.
    pub token_label: Option<String>,
    pub slot: Option<u64>,
    /// The user PIN.
    pub pin: Zeroizing<String>,
    /// Most sessions open at once (the controller passes `--private-key-threads`).
    pub sessions: usize,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("slot", &self.slot)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

/// An opened token.
pub struct Token {
    pool: Pool,
    path: UnwrapPath,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, {})", self.pool.describe(), self.path.as_str())
    }
}

/// The identity of a key object: its CKA_ID and CKA_LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub id: Vec<u8>,
    pub label: String,
}

impl ObjectRef {
    pub fn id_hex(&self) -> String {
        gitseal_shared::hex::encode(&self.id)
    }
}

pub(crate) fn token_err(what: &str, e: cryptoki::error::Error) -> Error {
    Error::Token(format!("{what}: {}", pool::short(&e)))
}

const PROBE_LABEL: &[u8] = b"gitseal.dev/v1/pkcs11-probe";
const PROBE_KEY: [u8; 32] = *b"gitseal pkcs11 probe session key";

fn oaep_mechanism(label: &[u8]) -> Mechanism<'_> {
    let source = if label.is_empty() { PkcsOaepSource::empty() } else { PkcsOaepSource::data_specified(label) };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, source))
}

impl Token {
    /// Open the token, log in, and probe how it unwraps.
    pub fn open(config: TokenConfig) -> Result<Arc<Token>> {
        let pool = Pool::open(config)?;
        let path = pool.with_session(probe)??;
        Ok(Arc::new(Token { pool, path }))
    }

    /// How this token unwraps: natively, or raw RSA with the padding decoded here.
    pub fn path(&self) -> UnwrapPath {
        self.path
    }

    /// Which token, for messages.
    pub fn describe(&self) -> String {
        self.pool.describe()
    }

    /// Generate an RSA key of `bits` inside the token (CKA_TOKEN, CKA_SENSITIVE, not
    /// extractable) and a self-signed certificate for it, signed by the token
    /// (CKM_SHA256_RSA_PKCS), shaped as [`crate::generate_key_pair`]'s.
    pub fn generate(
        self: &Arc<Self>,
        bits: crate::RsaBits,
        common_name: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<(Certificate, ObjectRef)> {
        if bits == crate::RsaBits::Rsa8192 {
            return Err(Error::Generate(format!("unsupported RSA size {bits} in a token: use 2048, 3072 or 4096")));
        }
        let bits = bits.bits();
        let mut id = vec![0u8; 16];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| Error::Generate("random source failed".into()))?;
        let object = ObjectRef { label: format!("gitseal-{}", gitseal_shared::hex::encode(&id[..6])), id };
        let bits = cryptoki::types::Ulong::from(u64::try_from(bits).unwrap_or(4096));
        let public_template = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::ModulusBits(bits),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Encrypt(true),
            Attribute::Verify(true),
            Attribute::Id(object.id.clone()),
            Attribute::Label(object.label.as_bytes().to_vec()),
        ];
        let private_template = private_key_attributes(&object);
        let spki = self.pool.with_session(|s| {
            let (public, _) =
                s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public_template, &private_template)?;
            public_spki(s, public)
        })??;
        let key = TokenKey::find(self, &object, &spki)?;
        let cert = crate::generate::self_signed_with(&signer::TokenSigner::new(&key, &spki)?, common_name, now, ttl)?;
        Ok((cert, object))
    }

    /// Import an RSA private key (PKCS#8 DER) as a token object (CKA_SENSITIVE, not
    /// extractable), where the token allows C_CreateObject of private keys.
    pub fn import(self: &Arc<Self>, pkcs8_der: &[u8], cert: &Certificate) -> Result<ObjectRef> {
        use pkcs8::der::Decode;
        let info = pkcs8::PrivateKeyInfo::from_der(pkcs8_der)
            .map_err(|_| Error::BadPrivateKey("not a PKCS#8 private key".into()))?;
        let k = pkcs1::RsaPrivateKey::from_der(info.private_key)
            .map_err(|_| Error::BadPrivateKey("not an RSA private key".into()))?;
        let mut id = vec![0u8; 16];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| Error::Generate("random source failed".into()))?;
        let object = ObjectRef { label: format!("gitseal-{}", gitseal_shared::hex::encode(&id[..6])), id };
        let z = |b: &[u8]| Zeroizing::new(b.to_vec());
        let (d, p, q) = (z(k.private_exponent.as_bytes()), z(k.prime1.as_bytes()), z(k.prime2.as_bytes()));
        let (dp, dq, qi) = (z(k.exponent1.as_bytes()), z(k.exponent2.as_bytes()), z(k.coefficient.as_bytes()));
        let mut template = private_key_attributes(&object);
        template.extend([
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(k.modulus.as_bytes().to_vec()),
            Attribute::PublicExponent(k.public_exponent.as_bytes().to_vec()),
            Attribute::PrivateExponent(d.to_vec()),
            Attribute::Prime1(p.to_vec()),
            Attribute::Prime2(q.to_vec()),
            Attribute::Exponent1(dp.to_vec()),
            Attribute::Exponent2(dq.to_vec()),
            Attribute::Coefficient(qi.to_vec()),
        ]);
        let created = self.pool.with_session(|s| s.create_object(&template));
        // The template's copies of the private numbers: wiped before anything else happens.
        for a in &mut template {
            if let Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) = a
            {
                zeroize::Zeroize::zeroize(v);
            }
        }
        created?;
        // The object holds the certificate's key (its public numbers are readable).
        TokenKey::find(self, &object, cert.spki_der())?;
        Ok(object)
    }

    /// Remove a key object (after a failed import check).
    pub fn destroy(&self, object: &ObjectRef) -> Result<()> {
        self.pool.with_session(|s| {
            for h in s.find_objects(&[Attribute::Id(object.id.clone())])? {
                s.destroy_object(h)?;
            }
            Ok(())
        })
    }

    /// The key object `object` for the certificate's public key.
    pub fn key(self: &Arc<Self>, object: &ObjectRef, cert: &Certificate) -> Result<Arc<TokenKey>> {
        Ok(Arc::new(TokenKey::find(self, object, cert.spki_der())?))
    }

    /// Finalize the library under the pool, as a token restart does (tests, benches).
    pub fn simulate_restart(&self) {
        self.pool.finalize_for_test();
    }

    /// Times the pool re-opened the library after a token went away.
    pub fn reconnects(&self) -> u64 {
        self.pool.reconnects()
    }
}

fn private_key_attributes(object: &ObjectRef) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Decrypt(true),
        Attribute::Sign(true),
        Attribute::Id(object.id.clone()),
        Attribute::Label(object.label.as_bytes().to_vec()),
    ]
}

/// The DER SubjectPublicKeyInfo of a public key object.
fn public_spki(s: &Session, public: ObjectHandle) -> cryptoki::error::Result<Result<Vec<u8>>> {
    let attrs = s.get_attributes(public, &[AttributeType::Modulus, AttributeType::PublicExponent])?;
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    let (Some(n), Some(e)) = (n, e) else {
        return Ok(Err(Error::Token("the token did not return the public key".into())));
    };
    Ok(spki_from_parts(&n, &e))
}

fn spki_from_parts(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    let bad = |_| Error::Token("the token returned a malformed public key".into());
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    let (n, e) = (strip(n), strip(e));
    let rsa = pkcs1::RsaPublicKey {
        modulus: pkcs1::UintRef::new(&n).map_err(bad)?,
        public_exponent: pkcs1::UintRef::new(&e).map_err(bad)?,
    };
    let rsa_der = rsa.to_der().map_err(bad)?;
    let spki = pkcs8::SubjectPublicKeyInfoRef {
        algorithm: pkcs1::ALGORITHM_ID,
        subject_public_key: pkcs8::der::asn1::BitStringRef::from_bytes(&rsa_der).map_err(bad)?,
    };
    spki.to_der().map_err(bad)
}

/// The probe: a throw-away session key pair (CKA_TOKEN false), a session key wrapped to it by
/// aws-lc-rs with a label, unwrapped by the token natively if it can, raw otherwise.
fn probe(s: &Session) -> cryptoki::error::Result<Result<UnwrapPath>> {
    let (public, private) = s.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::Token(false),
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Encrypt(true),
        ],
        &[Attribute::Token(false), Attribute::Private(true), Attribute::Sensitive(true), Attribute::Decrypt(true)],
    )?;
    let result = (|| {
        let spki = match public_spki(s, public)? {
            Ok(spki) => spki,
            Err(e) => return Ok(Err(e)),
        };
        let Ok(wrapped) = wrap_for_probe(&spki) else {
            return Ok(Err(Error::Token("cannot use the probe key's public half".into())));
        };
        if let Ok(out) = s.decrypt(&oaep_mechanism(PROBE_LABEL), private, &wrapped) {
            let out = Zeroizing::new(out);
            if out.as_slice() == PROBE_KEY {
                return Ok(Ok(UnwrapPath::TokenOaep));
            }
        }
        let em = Zeroizing::new(s.decrypt(&Mechanism::RsaX509, private, &wrapped)?);
        match raw_decode(&em, PROBE_LABEL, wrapped.len()) {
            Ok(k) if k.expose() == PROBE_KEY => Ok(Ok(UnwrapPath::TokenRawRsa)),
            _ => Ok(Err(Error::Token(
                "the token unwraps RSA-OAEP-SHA256 with a label neither natively nor as raw RSA".into(),
            ))),
        }
    })();
    let _ = s.destroy_object(private);
    let _ = s.destroy_object(public);
    result
}

fn wrap_for_probe(spki: &[u8]) -> std::result::Result<Vec<u8>, ()> {
    let public = PublicEncryptingKey::from_der(spki).map_err(|_| ())?;
    let oaep = OaepPublicEncryptingKey::new(public).map_err(|_| ())?;
    let mut out = vec![0u8; oaep.ciphertext_size()];
    let n = oaep.encrypt(&OAEP_SHA256_MGF1SHA256, &PROBE_KEY, &mut out, Some(PROBE_LABEL)).map_err(|_| ())?.len();
    out.truncate(n);
    Ok(out)
}

/// The raw RSA result, left-padded to the modulus size (some tokens drop leading zeros), then
/// EME-OAEP decoded in constant time.
fn raw_decode(em: &[u8], label: &[u8], k: usize) -> gitseal_shared::Result<SecretBytes> {
    if em.len() > k {
        return Err(gitseal_shared::Error::DecryptionFailed);
    }
    let mut full = Zeroizing::new(vec![0u8; k]);
    full[k - em.len()..].copy_from_slice(em);
    oaep::decode(&full, label, k)
}

/// Why an unwrap found no key object (see [`TokenKey::unwrap`]).
const OBJECT_GONE: &str = "the key object is gone";
/// How often a missing key object may re-open the library ([`pool::Pool::refresh`]).
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A private key object in a token.
pub struct TokenKey {
    token: Arc<Token>,
    object: ObjectRef,
    id: KeyId,
    modulus_bytes: usize,
    /// The private key's handle, valid for one generation of the pool's library context.
    handle: Mutex<Option<(u64, ObjectHandle)>>,
}

impl TokenKey {
    /// Find the key pair `object` and check it is the key of `spki`; a missing public key
    /// object is created from `spki` (after an import).
    fn find(token: &Arc<Token>, object: &ObjectRef, spki: &[u8]) -> Result<TokenKey> {
        let public = PublicEncryptingKey::from_der(spki).map_err(|_| Error::BadCertificate("not an RSA key".into()))?;
        let id = KeyId::of_rsa_spki(spki)?;
        let key = TokenKey {
            token: token.clone(),
            object: object.clone(),
            id,
            modulus_bytes: public.key_size_bytes(),
            handle: Mutex::new(None),
        };
        // The private object's public numbers must be the certificate's: a Secret naming
        // another object would otherwise fail every unwrap, silently.
        let token_spki = token.pool.with_session(|s| {
            let h = key.lookup(s)?;
            match h {
                None => Ok(Ok(None)),
                Some(h) => public_spki(s, h).map(|r| r.map(Some)),
            }
        })??;
        match token_spki {
            None => Err(Error::Token(format!("no private key object with CKA_ID {} in the token", object.id_hex()))),
            Some(t) if t != spki => Err(Error::Token(format!(
                "token object {} ({}) is not the key of the certificate",
                object.label,
                object.id_hex()
            ))),
            Some(_) => Ok(key),
        }
    }

    /// Drop the cached handle: the next [`Self::lookup`] searches the token again.
    fn forget_handle(&self) {
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn lookup(&self, s: &Session) -> cryptoki::error::Result<Option<ObjectHandle>> {
        let generation = self.token.pool.generation();
        let mut cached = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, h)) = *cached
            && g == generation
        {
            return Ok(Some(h));
        }
        let found = s.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Id(self.object.id.clone()),
        ])?;
        let h = found.first().copied();
        *cached = h.map(|h| (generation, h));
        Ok(h)
    }

    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    /// Run `op` on the key's object, `None` if the token has no such object. A handle the token
    /// no longer knows is looked up again, and an object the token forgot while it was away is
    /// looked for once more after re-opening the library (at most once a second), as
    /// [`UnwrapKey::unwrap`] does.
    fn with_object<T>(&self, op: impl Fn(&Session, ObjectHandle) -> cryptoki::error::Result<T>) -> Result<Option<T>> {
        let attempt = || {
            self.token.pool.with_session(|s| {
                for _ in 0..2 {
                    let Some(h) = self.lookup(s)? else { return Ok(None) };
                    match op(s, h) {
                        Err(CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)) => {
                            self.forget_handle();
                        }
                        other => return other.map(Some),
                    }
                }
                Ok(None)
            })
        };
        match attempt()? {
            None if self.token.pool.refresh(REFRESH_EVERY) => attempt(),
            found => Ok(found),
        }
    }

    /// Sign `data` with CKM_SHA256_RSA_PKCS (the certificate's self-signature).
    pub(crate) fn sign_sha256(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.with_object(|s, h| s.sign(&Mechanism::Sha256RsaPkcs, h, data))?.ok_or_else(|| self.gone())
    }

    fn gone(&self) -> Error {
        Error::Token(format!("the key object {} is gone from the token", self.object.label))
    }

    /// CKA_SENSITIVE and CKA_EXTRACTABLE as the token reports them, and whether any private
    /// number (CKA_PRIVATE_EXPONENT, CKA_PRIME_1) could be read.
    pub fn custody(&self) -> Result<(bool, bool, bool)> {
        self.with_object(|s, h| {
            let attrs = s.get_attributes(h, &[AttributeType::Sensitive, AttributeType::Extractable])?;
            let (mut sensitive, mut extractable) = (false, true);
            for a in attrs {
                match a {
                    Attribute::Sensitive(v) => sensitive = v,
                    Attribute::Extractable(v) => extractable = v,
                    _ => {}
                }
            }
            let private = s.get_attributes(h, &[AttributeType::PrivateExponent, AttributeType::Prime1]);
            let readable = private.is_ok_and(|v| !v.is_empty());
            Ok((sensitive, extractable, readable))
        })?
        .ok_or_else(|| self.gone())
    }
}

impl UnwrapKey for TokenKey {
    fn key_id(&self) -> &KeyId {
        &self.id
    }

    fn modulus_bytes(&self) -> usize {
        self.modulus_bytes
    }

    fn path(&self) -> UnwrapPath {
        self.token.path
    }

    fn unwrap(&self, wrapped: &[u8], label: &[u8]) -> gitseal_shared::Result<SecretBytes> {
        use gitseal_shared::Error as E;
        if wrapped.len() != self.modulus_bytes {
            return Err(E::DecryptionFailed);
        }
        let path = self.token.path;
        let attempt = || {
            self.token.pool.with_session(|s| {
                let mechanism = match path {
                    UnwrapPath::TokenOaep => oaep_mechanism(label),
                    _ => Mechanism::RsaX509,
                };
                for _ in 0..2 {
                    let Some(h) = self.lookup(s)? else { return Ok(Err(E::KeyUnavailable(OBJECT_GONE))) };
                    match s.decrypt(&mechanism, h, wrapped) {
                        Ok(out) => return Ok(Ok(Zeroizing::new(out))),
                        Err(e) if is_reconnect_error(&e) => return Err(e),
                        // The handle names no key any more (SoftHSM answers this while its token
                        // directory is gone, an HSM after a reload): look the object up again.
                        Err(CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)) => {
                            self.forget_handle();
                        }
                        // C_DecryptInit never sees the ciphertext: its refusals are about the key
                        // or the token, never a verdict on the value.
                        Err(CkError::Pkcs11(_, Function::DecryptInit)) => {
                            return Ok(Err(E::KeyUnavailable("the token refused the key")));
                        }
                        // Anything else the token says about a ciphertext is a decryption failure.
                        Err(_) => return Ok(Err(E::DecryptionFailed)),
                    }
                }
                Ok(Err(E::KeyUnavailable(OBJECT_GONE)))
            })
        };
        let result = match attempt() {
            // Perhaps the token forgot it while it was away: re-open the library (at most once
            // a second, however many values ask) and try once more.
            Ok(Err(E::KeyUnavailable(OBJECT_GONE))) if self.token.pool.refresh(REFRESH_EVERY) => attempt(),
            other => other,
        };
        let out = match result {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(E::KeyUnavailable("the token did not answer")),
        };
        match path {
            UnwrapPath::TokenOaep if out.len() <= gitseal_shared::value::unwrap::MAX_SESSION_KEY => {
                Ok(SecretBytes::from(out.as_slice()))
            }
            UnwrapPath::TokenOaep => Err(E::DecryptionFailed),
            _ => raw_decode(&out, label, self.modulus_bytes),
        }
    }

    fn export_pkcs8(&self) -> Option<Zeroizing<Vec<u8>>> {
        None
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({}, {}, {})", self.id, self.object.label, self.token.path.as_str())
    }
}
