//! Private keys: RSA (PKCS#1 or PKCS#8 PEM) and X25519 age identities, read from PEM files,
//! age identity files, or Kubernetes key Secrets (a backup of Bitnami's or gitseal's keys).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PrivateDecryptingKey;
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::value::{DecryptionKey, decode_base64};
use gitseal_shared::{KeyId, SecretBytes};
use pkcs8::der::{Decode, Encode};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Data keys of a key Secret.
pub const TLS_KEY: &str = "tls.key";
pub const TLS_CRT: &str = "tls.crt";
pub const AGE_KEY: &str = "age.key";

/// Annotation on a key Secret whose private key lives elsewhere than its `tls.key`.
pub const KEY_BACKEND_ANNOTATION: &str = "gitseal.dev/key-backend";
/// [`KEY_BACKEND_ANNOTATION`] value: the key is an object of a PKCS#11 token; the Secret holds
/// only `tls.crt` and the object's CKA_ID and CKA_LABEL ([`PKCS11_ID_ANNOTATION`],
/// [`PKCS11_LABEL_ANNOTATION`]).
pub const PKCS11_BACKEND: &str = "pkcs11";
/// The token object's CKA_ID, lowercase hex.
pub const PKCS11_ID_ANNOTATION: &str = "gitseal.dev/pkcs11-id";
/// The token object's CKA_LABEL.
pub const PKCS11_LABEL_ANNOTATION: &str = "gitseal.dev/pkcs11-label";

/// An RSA private key, held as PKCS#8 DER in a zeroizing buffer.
#[derive(Clone)]
pub struct RsaPrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    id: KeyId,
}

impl RsaPrivateKey {
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let key =
            PrivateDecryptingKey::from_pkcs8(der).map_err(|e| Error::BadPrivateKey(format!("not an RSA key ({e})")))?;
        let spki =
            key.public_key().as_der().map_err(|_| Error::BadPrivateKey("cannot encode its public key".into()))?;
        Ok(Self { pkcs8: Zeroizing::new(der.to_vec()), id: KeyId::of_rsa_spki(spki.as_ref())? })
    }

    /// From PKCS#1 DER (`RSA PRIVATE KEY`, what Bitnami writes), wrapped into PKCS#8.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let info = pkcs8::PrivateKeyInfo::new(pkcs1::ALGORITHM_ID, der);
        let pkcs8 =
            Zeroizing::new(info.to_der().map_err(|_| Error::BadPrivateKey("cannot wrap PKCS#1 into PKCS#8".into()))?);
        Self::from_pkcs8_der(&pkcs8)
    }

    /// From a PEM block of either form.
    pub fn from_pem_block(block: &pem::Pem) -> Result<Self> {
        match block.tag() {
            "RSA PRIVATE KEY" => Self::from_pkcs1_der(block.contents()),
            "PRIVATE KEY" => Self::from_pkcs8_der(block.contents()),
            other => Err(Error::BadPrivateKey(format!("unsupported PEM block {other:?}"))),
        }
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// PKCS#1 PEM, the form of Bitnami's `tls.key`.
    pub fn to_pkcs1_pem(&self) -> Result<Zeroizing<String>> {
        let info =
            pkcs8::PrivateKeyInfo::from_der(&self.pkcs8).map_err(|_| Error::BadPrivateKey("corrupt PKCS#8".into()))?;
        let block = pem::Pem::new("RSA PRIVATE KEY", info.private_key.to_vec());
        Ok(Zeroizing::new(pem::encode_config(&block, pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))))
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_spki_der(&self) -> Result<Vec<u8>> {
        let key =
            PrivateDecryptingKey::from_pkcs8(&self.pkcs8).map_err(|_| Error::BadPrivateKey("corrupt key".into()))?;
        let spki =
            key.public_key().as_der().map_err(|_| Error::BadPrivateKey("cannot encode its public key".into()))?;
        Ok(spki.as_ref().to_vec())
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn decryption_key(&self, age: Option<age::x25519::Identity>) -> Result<DecryptionKey> {
        Ok(DecryptionKey::from_rsa_pkcs8(&self.pkcs8, age)?)
    }
}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPrivateKey({})", self.id)
    }
}

/// A private key found in some input, ready to decrypt.
#[derive(Debug)]
pub struct ParsedKey {
    pub key: DecryptionKey,
    /// Where it came from, for messages: `PEM block 1`, `Secret kube-system/sealed-secrets-keyx7k2p`.
    pub source: String,
}

/// Read every private key in `text`: PEM blocks, age identity lines, or key Secrets (one, a
/// YAML/JSON stream, or a `v1/List`, as `kubectl get secret -o yaml` prints them).
pub fn parse_private_keys(text: &str) -> Result<Vec<ParsedKey>> {
    let text = Zeroizing::new(text.trim_start_matches('\u{feff}').to_string());
    let mut keys = Vec::new();
    if text.contains("-----BEGIN") {
        let blocks = pem::parse_many(text.as_bytes()).map_err(|e| Error::BadPrivateKey(format!("bad PEM ({e})")))?;
        for (i, block) in blocks.iter().enumerate() {
            if block.tag().ends_with("PRIVATE KEY") {
                let rsa = RsaPrivateKey::from_pem_block(block)?;
                keys.push(ParsedKey { key: rsa.decryption_key(None)?, source: format!("PEM block {}", i + 1) });
            }
        }
    } else if text.lines().any(|l| l.trim_start().starts_with("AGE-SECRET-KEY-1")) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = parse_age_identity(line)
                .map_err(|_| Error::BadPrivateKey(format!("line {} is not an age identity", n + 1)))?;
            keys.push(ParsedKey {
                key: DecryptionKey::from_age(identity),
                source: format!("age identity on line {}", n + 1),
            });
        }
    } else {
        for doc in parse_documents(&text)? {
            if doc.kind() != "Secret" {
                continue;
            }
            let data = doc.value.get("data");
            let field = |k: &str| -> Result<Option<SecretBytes>> {
                match data.and_then(|d| d.get(k)).and_then(|v| v.as_str()) {
                    Some(b64) => Ok(Some(SecretBytes::new(decode_base64(b64).map_err(|_| {
                        Error::BadPrivateKey(format!("{}: data[{k}] is not valid base64", doc.describe()))
                    })?))),
                    None => Ok(None),
                }
            };
            let age = match field(AGE_KEY)? {
                Some(b) => Some(parse_age_identity(std::str::from_utf8(b.expose()).unwrap_or("").trim())?),
                None => None,
            };
            let key = match (field(TLS_KEY)?, age) {
                (Some(pem_bytes), age) => {
                    let block = pem::parse(pem_bytes.expose())
                        .map_err(|_| Error::BadPrivateKey(format!("{}: tls.key is not PEM", doc.describe())))?;
                    RsaPrivateKey::from_pem_block(&block)?.decryption_key(age)?
                }
                (None, Some(age)) => DecryptionKey::from_age(age),
                (None, None) => continue,
            };
            keys.push(ParsedKey { key, source: doc.describe() });
        }
    }
    if keys.is_empty() {
        return Err(Error::NoPrivateKey);
    }
    Ok(keys)
}

/// Parse one `AGE-SECRET-KEY-1…` line.
pub fn parse_age_identity(s: &str) -> Result<age::x25519::Identity> {
    age::x25519::Identity::from_str(s.trim()).map_err(|_| Error::BadPrivateKey("not an age X25519 identity".into()))
}
