//! gitseal's pure core: value formats, scopes, SealedSecret types and manifest I/O.
//!
//! This crate is synchronous and does no I/O of its own: bytes and keys go in, bytes come out.
//! It holds no kube client and no tokio; the filesystem, the network and the cluster belong to
//! `gitseal` (the CLI) and `gitseal-controller`. Key *lifecycle* (generation, PEM files,
//! certificates, keyrings) lives in `gitseal-keys`; this crate only needs key handles.
//!
//! Two value formats exist and are told apart from the bytes alone ([`value::Format::detect`]):
//! - [`value::hybrid`]: Bitnami kubeseal's format, byte for byte (RSA-OAEP-SHA256 + AES-256-GCM,
//!   the scope in the OAEP label);
//! - [`value::multi`]: an age file with one stanza per recipient (cluster RSA keys, X25519 age
//!   recipients such as an offline recovery key), the scope bound inside the encrypted payload.

pub mod api;
pub mod apiserver_audit;
pub mod audit;
pub mod error;
pub mod hex;
pub mod keyid;
pub mod manifest;
pub mod scope;
pub mod seal;
pub mod secret;
pub mod template;
pub mod types;
pub mod value;

pub use error::{Error, Result};
pub use keyid::KeyId;
pub use scope::{Scope, Target};
pub use secret::SecretBytes;
