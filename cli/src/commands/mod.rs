//! One module per command, each taking its resolved configuration.

pub mod audit;
pub mod cert;
pub mod completions;
pub mod keygen;
pub mod keys;
pub mod reseal;
pub mod reseal_online;
pub mod scan;
pub mod seal;
pub mod unseal;
pub mod validate;
pub mod web;

use anyhow::Result;
use gitseal_shared::value::{self, DecryptionKey, Opened, decode_base64};
use gitseal_shared::{Error, Target};

use crate::config::Config;

pub fn run(config: Config) -> Result<()> {
    match config {
        Config::Seal(c) => seal::run(&c),
        Config::Unseal(c) => unseal::run(&c),
        Config::Reseal(c) => reseal::run(&c),
        Config::Validate(c) => validate::run(&c),
        Config::Cert(c) => cert::run(&c),
        Config::Keys(c) => keys::run(&c),
        Config::Audit(c) => audit::run(&c),
        Config::Scan(c) => scan::run(&c),
        Config::Keygen(c) => keygen::run(&c),
        Config::Completions(shell) => completions::run(shell),
        Config::Web(c) => web::run(&c),
    }
}

/// Open one `encryptedData` value, or say in a few words why it does not open. The reasons
/// never include the value or any part of a key.
pub(crate) fn open_value(keys: &[&DecryptionKey], target: &Target, text: &str) -> Result<Opened, String> {
    let bytes = decode_base64(text).map_err(|_| "bad base64".to_string())?;
    value::open(keys, target, &bytes).map_err(|e| match e {
        Error::DecryptionFailed => "wrong key or scope (or the value was altered)".into(),
        Error::TooShort { .. } => "truncated".into(),
        Error::UnknownFormat => "not a sealed value".into(),
        other => other.to_string(),
    })
}
