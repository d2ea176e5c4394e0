//! rcgen's remote-key signing for a key in a token: the TBSCertificate is built in Rust, only
//! its SHA256-RSA (CKM_SHA256_RSA_PKCS) signature is made by the token.

use pkcs8::der::Decode;

use super::TokenKey;
use crate::{Error, Result};

pub(super) struct TokenSigner<'a> {
    key: &'a TokenKey,
    /// The RSAPublicKey DER (the SubjectPublicKeyInfo's BIT STRING), what rcgen wants.
    rsa_public: Vec<u8>,
}

impl<'a> TokenSigner<'a> {
    pub(super) fn new(key: &'a TokenKey, spki: &[u8]) -> Result<Self> {
        let info = pkcs8::SubjectPublicKeyInfoRef::from_der(spki)
            .map_err(|_| Error::Token("the token returned a malformed public key".into()))?;
        let rsa_public = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::Token("the token returned a malformed public key".into()))?
            .to_vec();
        Ok(Self { key, rsa_public })
    }
}

impl rcgen::PublicKeyData for TokenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.rsa_public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for TokenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.key.sign_sha256(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
