//! `gitseal keys rotate|retire|revoke`: ask the controller to change its keys. Each call is
//! authorized by RBAC in the controller namespace and audited with the caller's identity.

use anyhow::{Result, anyhow, bail};
use gitseal_shared::KeyId;
use serde_json::json;

use super::short_id;
use crate::api::{self, RETIRE, REVOKE, ROTATE, Rotated, StateChange};
use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, Output};
use crate::{io, output};

pub fn rotate(cfg: &ClusterConfig, out: Output) -> Result<()> {
    let rotated = cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let ns = &cluster.controller_namespace;
        ROTATE.create::<Rotated>(&cluster, ns, "rotate", json!({})).await.map_err(|e| ROTATE.explain(&cluster, ns, e))
    })?;
    match out {
        Output::Json | Output::Yaml => output::print_structured(
            &json!({"keyId": rotated.key_id, "secretName": rotated.secret_name}),
            out == Output::Yaml,
        ),
        Output::Table | Output::Wide => {
            let secret =
                rotated.secret_name.map(|s| format!(" (Secret {}/{s})", cfg.controller_namespace)).unwrap_or_default();
            io::write_stdout(format!("New key {}{secret}\n", rotated.key_id).as_bytes())?;
            eprintln!("New SealedSecrets are sealed for it. Re-seal what is in Git with: gitseal reseal PATH…");
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    Retire,
    Revoke,
}

pub fn set_state(cfg: &ClusterConfig, given: &str, target: Target) -> Result<()> {
    let call = match target {
        Target::Retire => RETIRE,
        Target::Revoke => REVOKE,
    };
    let changed = cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let ns = cluster.controller_namespace.clone();
        let key_id = resolve(&cluster, given).await?;
        match call.create::<StateChange>(&cluster, &ns, "key", api::KeyStateSpec { key_id: key_id.clone() }).await {
            Ok(c) => Ok(c),
            Err(kube::Error::Api(s)) if s.code == 404 && s.message.contains("no key") => {
                Err(anyhow!("unknown key id {given}: the controller has no such key; see gitseal keys list"))
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 400 => {
                Err(anyhow!("the controller refused to change key {}: {}", short_id(&key_id), s.message.trim()))
            }
            Err(e) => Err(call.explain(&cluster, &ns, e)),
        }
    })?;
    io::write_stdout(format!("Key {} is now {}\n", changed.key_id, changed.state).as_bytes())?;
    if matches!(target, Target::Revoke) {
        eprintln!(
            "The controller no longer decrypts with it; SealedSecrets sealed only for it report KeyRevoked. Seal their values again with new secrets: the old ones must be considered known."
        );
    }
    Ok(())
}

/// A full key id from `SHA256:…` or a unique prefix of the hash (as `keys list` shows it).
async fn resolve(cluster: &Cluster, given: &str) -> Result<String> {
    let given = given.trim();
    if given.parse::<KeyId>().is_ok() {
        return Ok(given.to_string());
    }
    let prefix = given.strip_prefix("SHA256:").unwrap_or(given);
    if prefix.len() < 4 {
        bail!("key id {given:?} is too short: give at least 4 characters of it, as gitseal keys list shows");
    }
    let keys = api::list_keys(cluster).await?;
    let matches: Vec<&str> = keys
        .iter()
        .map(|k| k.key_id.as_str())
        .filter(|id| id.strip_prefix("SHA256:").unwrap_or(id).starts_with(prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => bail!("unknown key id {given}: the controller has no such key; see gitseal keys list"),
        many => bail!("key id {given} matches {} keys: give more of it (gitseal keys list -o wide)", many.len()),
    }
}
