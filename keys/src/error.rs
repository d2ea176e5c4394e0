//! The one error type of `gitseal-keys`.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no PEM block found: expected a certificate (BEGIN CERTIFICATE) or a public key")]
    NoCertificate,
    #[error("malformed certificate: {0}")]
    BadCertificate(String),
    #[error("the certificate expired on {0}: fetch the controller's current certificate (gitseal cert)")]
    Expired(String),
    #[error("malformed private key: {0}")]
    BadPrivateKey(String),
    #[error(
        "no private key found: expected a PEM RSA key, an age identity (AGE-SECRET-KEY-1…), or a key Secret with tls.key"
    )]
    NoPrivateKey,
    #[error("invalid age recipient {0:?}: expected age1… (X25519)")]
    BadRecipient(String),
    /// Export (a backup) of a key that cannot leave its hardware token.
    #[error("key {0} is held in a hardware token and cannot be exported; back up the token instead")]
    NotExportable(gitseal_shared::KeyId),
    /// The PKCS#11 module, the token, or an operation in it failed.
    #[error("PKCS#11: {0}")]
    Token(String),
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error(transparent)]
    Core(#[from] gitseal_shared::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
