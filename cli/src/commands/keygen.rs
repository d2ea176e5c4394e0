//! `gitseal keygen`: an RSA key pair with a Bitnami-shaped certificate (optionally as a key
//! Secret for bring-your-own-key), or an age identity for offline recovery.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use anyhow::{Context, Result};
use gitseal_keys::cert::fmt_time;
use gitseal_keys::{KeyPair, generate_key_pair};
use gitseal_shared::manifest::{OutputFormat, write_documents};
use gitseal_shared::value::encode_base64;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::config::{KeySecretOut, KeygenConfig};
use crate::io::{self, Mode};

/// The label Bitnami's controller (and gitseal's) looks for on key Secrets.
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";

pub fn run(cfg: &KeygenConfig) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    match cfg {
        KeygenConfig::Age { out_key } => age_identity(out_key, now),
        KeygenConfig::Rsa { bits, common_name, ttl, out_key, out_cert, secret } => {
            let targets: Vec<&Path> =
                [out_key.as_deref(), out_cert.as_deref(), secret.as_ref().map(|s| s.path.as_path())]
                    .into_iter()
                    .flatten()
                    .collect();
            for t in &targets {
                io::ensure_absent(t)?;
            }
            let pair = generate_key_pair(*bits, common_name, now, *ttl).context("generating the key")?;
            let mut written: Vec<PathBuf> = Vec::new();
            let result = write_rsa(&pair, out_key.as_deref(), out_cert.as_deref(), secret.as_ref(), &mut written);
            if result.is_err() {
                // All or nothing: do not leave a key without its certificate.
                for p in &written {
                    let _ = std::fs::remove_file(p);
                }
            }
            result?;
            let until = pair.cert.not_after().map(fmt_time).unwrap_or_default();
            eprintln!("Generated RSA-{bits} key {} (certificate valid until {until})", pair.rsa.id());
            for p in &written {
                eprintln!("  wrote {}", p.display());
            }
            Ok(())
        }
    }
}

fn write_rsa(
    pair: &KeyPair,
    out_key: Option<&Path>,
    out_cert: Option<&Path>,
    secret: Option<&KeySecretOut>,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    if let Some(p) = out_key {
        io::write_new(p, pair.rsa.to_pkcs1_pem()?.as_bytes(), Mode::Private)?;
        written.push(p.to_path_buf());
    }
    if let Some(p) = out_cert {
        io::write_new(p, pair.cert.pem().as_bytes(), Mode::Public)?;
        written.push(p.to_path_buf());
    }
    if let Some(s) = secret {
        let manifest = key_secret(pair, s)?;
        io::write_new(&s.path, manifest.as_bytes(), Mode::Private)?;
        written.push(s.path.clone());
    }
    Ok(())
}

/// A `kubernetes.io/tls` Secret as Bitnami's controller writes its keys, plus `age.key`.
fn key_secret(pair: &KeyPair, out: &KeySecretOut) -> Result<Zeroizing<String>> {
    let mut data = Map::new();
    for (name, bytes) in pair.secret_data()? {
        data.insert(name.to_string(), Value::String(encode_base64(&bytes)));
    }
    let name = out.name.clone().unwrap_or_else(|| format!("sealed-secrets-key{}", suffix(pair.rsa.id().as_str())));
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": out.namespace,
            "labels": {KEY_LABEL: "active"},
        },
        "type": "kubernetes.io/tls",
        "data": Value::Object(data),
    });
    Ok(Zeroizing::new(write_documents(&[doc], OutputFormat::Yaml)?))
}

/// Five characters in the alphabet of Kubernetes' `generateName`, derived from the (public)
/// key id so each key gets its own name.
fn suffix(key_id: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    key_id.bytes().rev().take(5).map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect()
}

/// An age identity file in age-keygen's layout; the recipient goes to stdout.
fn age_identity(out_key: &Path, now: time::OffsetDateTime) -> Result<()> {
    io::ensure_absent(out_key)?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = fmt_time(now.replace_nanosecond(0).unwrap_or(now));
    let secret = identity.to_string();
    let text = Zeroizing::new(format!("# created: {created}\n# public key: {recipient}\n{}\n", secret.expose_secret()));
    io::write_new(out_key, text.as_bytes(), Mode::Private)?;
    eprintln!("Wrote age identity to {} (mode 0600); public key:", out_key.display());
    io::write_stdout(format!("{recipient}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_name_suffixes_use_the_generate_name_alphabet() {
        let s = super::suffix("SHA256:abcdefghijklmnopqrstuvwxyz0123456789+/ABCDE");
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
    }
}
