//! `gitseal audit verify` and `gitseal audit key`.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use gitseal_shared::audit::{Checkpoint, PublicKey, Summary, verify_log};
use k8s_openapi::api::core::v1::ConfigMap;

use super::TTY_HINT;
use crate::cluster::{Cluster, run as run_async};
use crate::config::{ClusterConfig, Input};
use crate::io;

/// Where the controller keeps the checkpoint (controller/src/audit/cluster.rs).
const CHECKPOINT_CONFIGMAP: &str = "gitseal-audit-checkpoint";
const CHECKPOINT_ENTRY: &str = "checkpoint";
/// Largest key or checkpoint file read.
const SMALL_FILE: usize = 64 * 1024;

pub fn run(
    inputs: &[Input],
    key: Option<&Path>,
    checkpoint: Option<&Path>,
    online: Option<&ClusterConfig>,
) -> Result<()> {
    let mut key = key.map(read_key).transpose()?;
    let mut checkpoint = checkpoint.map(read_checkpoint_file).transpose()?;
    let mut key_from_cluster = false;
    if let Some(cfg) = online {
        let (cp, k) = run_async(fetch(cfg, key.is_none()))?;
        checkpoint = Some(cp.ok_or_else(|| {
            anyhow!(
                "no audit checkpoint in {}: the controller has not written one yet (or is older than this gitseal)",
                cfg.controller_namespace
            )
        })?);
        if key.is_none() {
            key = k;
            key_from_cluster = true;
        }
    }
    if inputs.iter().filter(|i| matches!(i, Input::Stdin)).count() > 1 {
        bail!("stdin (-) can be given once");
    }
    let mut texts = Vec::new();
    for input in inputs {
        texts.push((input.describe(), io::read_text_hinted(input, TTY_HINT)?));
    }
    let sources: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let summary = verify_log(&sources, key.as_ref(), checkpoint.as_ref())
        .map_err(|b| anyhow!("{b}; the log was edited, or records were inserted or removed there"))?;
    if summary.records == 0 {
        let what = texts.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        bail!("{what} holds no audit record: give the controller's audit log");
    }
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    if summary.skipped > 0 {
        eprintln!(
            "note: {} line(s) are not audit records (logs mixed in, torn writes) and were skipped",
            summary.skipped
        );
    }
    io::write_stdout(report(&summary, key.as_ref(), key_from_cluster, checkpoint.as_ref()).as_bytes())
}

fn report(s: &Summary, key: Option<&PublicKey>, key_from_cluster: bool, cp: Option<&Checkpoint>) -> String {
    let range = match (s.first_seq, s.last_seq) {
        (Some(a), Some(b)) => format!("seq {a} to {b}"),
        _ => "no seq".into(),
    };
    let mut out = format!(
        "{} records, chain intact ({range}, {} segment{})\n",
        s.records,
        s.segments,
        if s.segments == 1 { "" } else { "s" }
    );
    match key {
        Some(k) if key_from_cluster => out.push_str(&format!(
            "signatures: valid (audit key {} as the controller serves it now; pin it with --public-key)\n",
            k.fingerprint()
        )),
        Some(k) => out.push_str(&format!("signatures: valid (audit key {})\n", k.fingerprint())),
        None => out.push_str("signatures: not checked (give --public-key FILE, from `gitseal audit key`)\n"),
    }
    match cp {
        Some(cp) => out.push_str(&format!(
            "checkpoint: seq {} of {} ({}) found; {} record(s) after it are not anchored yet\n",
            cp.seq, cp.replica, cp.time, s.after_checkpoint
        )),
        None => out.push_str(
            "checkpoint: not checked (give --checkpoint FILE or --online): a cut-off tail would go unnoticed\n",
        ),
    }
    out
}

fn read_small(path: &Path, what: &str) -> Result<String> {
    let text = io::read_file(path).with_context(|| format!("reading the {what}"))?;
    if text.len() > SMALL_FILE {
        bail!("{} is too large for {what}", path.display());
    }
    Ok(text.to_string())
}

fn read_key(path: &Path) -> Result<PublicKey> {
    let text = read_small(path, "public audit key")?;
    PublicKey::from_pem(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The checkpoint JSON, or the ConfigMap that holds it.
fn parse_checkpoint(text: &str) -> Result<Checkpoint, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let inner = match v.pointer(&format!("/data/{CHECKPOINT_ENTRY}")).and_then(|c| c.as_str()) {
        Some(s) => {
            serde_json::from_str(s).map_err(|e| format!("its data.{CHECKPOINT_ENTRY} is not a checkpoint ({e})"))?
        }
        None => v,
    };
    serde_json::from_value(inner).map_err(|e| format!("not an audit checkpoint ({e})"))
}

fn read_checkpoint_file(path: &Path) -> Result<Checkpoint> {
    let text = read_small(path, "checkpoint")?;
    parse_checkpoint(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

async fn fetch(cfg: &ClusterConfig, want_key: bool) -> Result<(Option<Checkpoint>, Option<PublicKey>)> {
    let cluster = Cluster::connect(cfg).await?;
    let ns = &cluster.controller_namespace;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(cluster.client.clone(), ns);
    let cm = match api.get_opt(CHECKPOINT_CONFIGMAP).await {
        Ok(cm) => cm,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            bail!("you may not get the ConfigMap {ns}/{CHECKPOINT_CONFIGMAP}: ask for it, or pass --checkpoint FILE")
        }
        Err(e) => return Err(cluster.fail(&format!("reading ConfigMap {ns}/{CHECKPOINT_CONFIGMAP}"), e)),
    };
    let cp = match cm.and_then(|c| c.data).and_then(|mut d| d.remove(CHECKPOINT_ENTRY)) {
        Some(text) => Some(parse_checkpoint(&text).map_err(|e| anyhow!("ConfigMap {ns}/{CHECKPOINT_CONFIGMAP}: {e}"))?),
        None => None,
    };
    let key = if want_key { Some(controller_key(&cluster).await?) } else { None };
    Ok((cp, key))
}

async fn controller_key(cluster: &Cluster) -> Result<PublicKey> {
    let pem = cluster.controller_get("/v1/audit-key").await?;
    PublicKey::from_pem(&pem).map_err(|e| anyhow!("the controller's /v1/audit-key: {e}"))
}

/// `gitseal audit key`.
pub fn key(fingerprint: bool, cfg: &ClusterConfig) -> Result<()> {
    let key = run_async(async {
        let cluster = Cluster::connect(cfg).await?;
        controller_key(&cluster).await
    })?;
    let out = if fingerprint { format!("{}\n", key.fingerprint()) } else { key.to_pem() };
    io::write_stdout(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_read_bare_or_from_its_configmap() {
        let cp = r#"{"replica":"a","seq":3,"hash":"00","time":"t","sig":"AA=="}"#;
        assert_eq!(parse_checkpoint(cp).unwrap().seq, 3);
        let cm = serde_json::json!({"kind": "ConfigMap", "data": {"checkpoint": cp}}).to_string();
        assert_eq!(parse_checkpoint(&cm).unwrap().replica, "a");
        assert!(parse_checkpoint("{}").is_err());
        assert!(parse_checkpoint("nope").is_err());
    }
}
