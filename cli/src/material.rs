//! Loading what commands seal for (certificates, age recipients) and open with (private keys).
//! The parsing itself is `gitseal-keys`'; this module reads files and URLs and says which one
//! failed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gitseal_keys::{Certificate, ParsedKey, parse_private_keys, recipients};
use gitseal_shared::value::{DecryptionKey, Recipient, RecipientSet};

use crate::config::RecipientSources;
use crate::{fetch, io};

/// Every recipient named on the command line, certificates first, duplicates dropped.
/// Expired certificates are refused. With nothing named, the controller's certificate.
pub fn load_recipients(sources: &RecipientSources) -> Result<RecipientSet> {
    let now = time::OffsetDateTime::now_utc();
    let mut all: Vec<Recipient> = Vec::new();
    if let Some(cluster) = &sources.controller {
        let cert = crate::commands::cert::fetch_certificate(cluster)
            .context("no --cert (or SEALED_SECRETS_CERT) given, so the certificate comes from the controller")?;
        all.push(cert.recipient().context("the controller's certificate")?);
    }
    for spec in &sources.certs {
        let cert = load_certificate(spec, sources.certs_from)?;
        cert.check_not_expired(now).with_context(|| format!("certificate {spec}"))?;
        all.push(cert.recipient().with_context(|| format!("certificate {spec}"))?);
    }
    for r in &sources.age {
        all.push(recipients::parse_recipient(r).context("--recipient")?);
    }
    for path in &sources.files {
        let text = io::read_file(path)?;
        let list =
            recipients::parse_recipients_file(&text).with_context(|| format!("recipients file {}", path.display()))?;
        if list.is_empty() {
            bail!("recipients file {} lists no recipient: add age1… lines", path.display());
        }
        all.extend(list);
    }
    let mut unique: Vec<Recipient> = Vec::with_capacity(all.len());
    for r in all {
        if !unique.iter().any(|u| u.id() == r.id()) {
            unique.push(r);
        }
    }
    Ok(RecipientSet::new(unique)?)
}

/// A certificate from a file path, a `file://` URL or an `http(s)://` URL.
/// `origin` names where `spec` came from (`--cert`, `SEALED_SECRETS_CERT`) in messages.
pub fn load_certificate(spec: &str, origin: &str) -> Result<Certificate> {
    let text = if spec.starts_with("http://") || spec.starts_with("https://") {
        let body = fetch::get(spec)?;
        String::from_utf8(body).map_err(|_| anyhow::anyhow!("{spec} did not return a PEM certificate"))?
    } else {
        let path = spec.strip_prefix("file://").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(spec));
        if !path.exists() {
            if origin == "--cert" {
                bail!(
                    "certificate file {} not found: pass the controller's certificate (PEM) as --cert",
                    path.display()
                );
            }
            bail!(
                "certificate file {} (from {origin}) not found: fix {origin}, or unset it and pass --cert",
                path.display()
            );
        }
        io::read_file(&path)?.to_string()
    };
    Certificate::from_pem(&text).with_context(|| format!("certificate {spec}"))
}

/// Every private key in every file, in the order given.
pub fn load_keys(paths: &[PathBuf]) -> Result<Vec<ParsedKey>> {
    let mut keys = Vec::new();
    for path in paths {
        keys.extend(load_key_file(path)?);
    }
    Ok(keys)
}

fn load_key_file(path: &Path) -> Result<Vec<ParsedKey>> {
    let text = io::read_file(path)?;
    parse_private_keys(&text).with_context(|| format!("key file {}", path.display()))
}

/// Borrow the decryption handles of parsed keys.
pub fn handles(keys: &[ParsedKey]) -> Vec<&DecryptionKey> {
    keys.iter().map(|k| &k.key).collect()
}
