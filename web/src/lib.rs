//! Seal in the browser: the kubeseal-format sealing core of gitseal, built for `wasm32`, and the
//! static page that runs it.
//!
//! `shared/` seals with aws-lc-rs, which does not build for `wasm32-unknown-unknown`. This crate
//! seals the same bytes with RustCrypto (`rsa` OAEP-SHA256 encrypt, `aes-gcm`), public-key
//! operations only, and is deterministic: every random byte is passed in by the caller
//! ([`seal::RANDOM_BYTES_PER_VALUE`] per value), which the page fills from
//! `crypto.getRandomValues`. Scopes, OAEP labels and YAML writing are `gitseal-shared`'s own
//! (its `crypto` feature off), so labels and output cannot drift; tests/compat.rs opens what this crate seals with shared's
//! aws-lc-rs decryption in every scope and checks that the object and its YAML are byte for
//! byte what `gitseal seal` writes.
//!
//! What it is not: no I/O, no private keys, no decryption, no age recipients (RSA
//! certificates only: the kubeseal format). [`assets`] (native builds only) holds the page,
//! its script and the committed `.wasm`, for the controller and `gitseal web` to serve.

pub mod cert;
pub mod error;
pub mod hybrid;
pub mod seal;

/// Sealing scopes and OAEP labels: `gitseal-shared`'s own (built without its aws-lc-rs parts),
/// so the page and the CLI cannot disagree about a label.
pub use gitseal_shared::scope;

#[cfg(target_arch = "wasm32")]
mod abi;

#[cfg(not(target_arch = "wasm32"))]
pub mod assets;

pub use error::{Error, Result};
pub use scope::{Scope, Target};
