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

//!
//! Feature `crypto` (default) is everything that needs aws-lc-rs, age or the Kubernetes types.
//! Without it only [`scope`], [`error`], [`hex`], [`secret`] and [`manifest`] writing remain,
//! which build for `wasm32-unknown-unknown`: the browser page (`gitseal-web`) writes scopes,
//! labels and YAML with this very code.

#[cfg(feature = "crypto")]
pub mod api;
#[cfg(feature = "crypto")]
pub mod apiserver_audit;
#[cfg(feature = "crypto")]
pub mod audit;
pub mod error;
pub mod hex;
#[cfg(feature = "crypto")]
pub mod keyid;
pub mod manifest;
pub mod scope;
#[cfg(feature = "crypto")]
pub mod seal;
pub mod secret;
#[cfg(feature = "crypto")]
pub mod template;
#[cfg(feature = "crypto")]
pub mod types;
#[cfg(feature = "crypto")]
pub mod value;

pub use error::{Error, Result};
#[cfg(feature = "crypto")]
pub use keyid::KeyId;
pub use scope::{Scope, Target};
pub use secret::SecretBytes;
