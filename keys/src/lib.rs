//! Key material and its lifecycle: generation, PEM and certificate parsing, key ids, the
//! keyring, and the renewal policy.
//!
//! Keys are stored the way Bitnami's controller stores them (a `kubernetes.io/tls` Secret with
//! a PKCS#1 `tls.key` and a self-signed `tls.crt`), plus gitseal's X25519 age identity under
//! `age.key`, so a backup restores into either controller. RSA private operations run on
//! aws-lc-rs (constant time); private bytes live in zeroizing buffers and never reach `Debug`.
//! This crate is synchronous and reads no files: callers pass text in — except [`pkcs11`],
//! which calls into the PKCS#11 module its caller names (keys that never leave a token).

pub mod bits;
pub mod cert;
pub mod error;
pub mod generate;
pub mod keyring;
pub mod material;
pub mod pkcs11;
pub mod policy;
pub mod recipients;

pub use bits::{RsaBits, UnsupportedRsaBits};
pub use cert::Certificate;
pub use error::{Error, Result};
pub use generate::{KeyPair, generate_key_pair};
pub use keyring::{KeyEntry, Keyring};
pub use material::{ParsedKey, RsaPrivateKey, parse_private_keys};
