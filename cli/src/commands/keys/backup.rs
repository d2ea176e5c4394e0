//! `gitseal keys backup`: the controller encrypts every key Secret to the given age recipients
//! and hands back the age file; this command only checks and stores it. The private keys are
//! never in plaintext on this machine, on any disk, or on the terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;

use age::armor::{ArmoredWriter, Format};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use gitseal_keys::recipients::parse_recipient;

use crate::api::{BACKUP, Backup, BackupSpec};
use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, RecipientSources};
use crate::io::{self, Mode};

/// The first line of every binary age file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

pub fn run(cfg: &ClusterConfig, sources: &RecipientSources, out: Option<&Path>, armor: bool) -> Result<()> {
    if let Some(path) = out {
        io::ensure_absent(path)?;
    } else if !armor && std::io::stdout().is_terminal() {
        bail!("the backup is binary: write it to a file with -o FILE, or add --armor to print it");
    }
    let recipients = recipients(sources)?;
    let backup = cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let ns = &cluster.controller_namespace;
        BACKUP
            .create::<Backup>(&cluster, ns, "backup", BackupSpec { recipients: recipients.clone() })
            .await
            .map_err(|e| BACKUP.explain(&cluster, ns, e))
    })?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(backup.backup.trim()).map_err(|_| {
        anyhow!("the controller's backup is not base64: check that client and controller versions match")
    })?;
    if !bytes.starts_with(AGE_MAGIC) {
        bail!("the controller's backup is not an age file: check that client and controller versions match");
    }
    let file = if armor { armored(&bytes)? } else { bytes };
    match out {
        Some(path) => io::write_new(path, &file, Mode::Private)?,
        None => io::write_stdout(&file)?,
    }
    let ids: Vec<String> = backup.key_ids.iter().map(|k| super::short_id(k)).collect();
    eprintln!(
        "Backed up {} key(s) ({}) to {}, encrypted to {} recipient(s). Restore with: gitseal keys restore FILE --identity KEYFILE",
        backup.key_ids.len(),
        ids.join(", "),
        out.map_or_else(|| "stdout".to_string(), |p| p.display().to_string()),
        recipients.len()
    );
    Ok(())
}

/// The recipients as text, each checked here so a typo fails before any request.
fn recipients(sources: &RecipientSources) -> Result<Vec<String>> {
    let mut all: Vec<String> = Vec::new();
    for r in &sources.age {
        parse_recipient(r).context("--recipient")?;
        all.push(r.trim().to_string());
    }
    for path in &sources.files {
        let text = io::read_file(path)?;
        let before = all.len();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            parse_recipient(line).with_context(|| format!("recipients file {}", path.display()))?;
            all.push(line.to_string());
        }
        if all.len() == before {
            bail!("recipients file {} lists no recipient: add age1… lines", path.display());
        }
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|r| seen.insert(r.clone()));
    if all.iter().any(|r| !r.starts_with("age1")) {
        bail!("keys backup encrypts to X25519 age recipients only (age1…)");
    }
    Ok(all)
}

/// ASCII armor around a binary age file: the same file, base64 between BEGIN/END lines.
fn armored(binary: &[u8]) -> Result<Vec<u8>> {
    let mut w = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor).context("armoring the backup")?;
    w.write_all(binary).context("armoring the backup")?;
    w.finish().context("armoring the backup")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armor_wraps_the_binary_file_so_age_reads_it_back() {
        use std::io::Read;
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public();
        let binary = age::encrypt(&recipient, b"keys").unwrap();
        let text = armored(&binary).unwrap();
        assert!(text.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        let reader = age::armor::ArmoredReader::new(&text[..]);
        let d = age::Decryptor::new(reader).unwrap();
        let mut out = Vec::new();
        d.decrypt(std::iter::once(&id as &dyn age::Identity)).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"keys");
    }
}
