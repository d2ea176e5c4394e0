//! `gitseal unseal`: SealedSecrets → Secrets with private keys, offline (kubeseal's
//! `--recovery-unseal`, for a whole stream of documents).

use anyhow::{Context, Result, bail};
use gitseal_shared::manifest::{parse_documents, write_documents};
use gitseal_shared::seal::unseal;
use gitseal_shared::types::sealed_secret_from_value;
use zeroize::Zeroizing;

use crate::commands::seal::locate;
use crate::config::UnsealConfig;
use crate::{io, material};

pub fn run(cfg: &UnsealConfig) -> Result<()> {
    let keys = material::load_keys(&cfg.keys)?;
    let handles = material::handles(&keys);
    let text = io::read_text(&cfg.input)?;
    let docs = parse_documents(&text).with_context(|| format!("reading {}", cfg.input.describe()))?;
    if docs.is_empty() {
        bail!("no SealedSecret found in {}: expected a SealedSecret manifest (YAML or JSON)", cfg.input.describe());
    }
    let mut secrets = Vec::with_capacity(docs.len());
    for doc in docs {
        let at = locate(&doc);
        let sealed = sealed_secret_from_value(doc.value).with_context(|| at.clone())?;
        let opened = unseal(&sealed, &handles).with_context(|| at.clone())?;
        secrets.push(opened.secret.to_value());
    }
    let out = Zeroizing::new(write_documents(&secrets, cfg.format)?);
    io::write_stdout(out.as_bytes())
}
