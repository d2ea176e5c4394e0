//! `gitseal keys …`: the controller's key lifecycle through its authenticated API, plus the
//! offline `keys usage` report over a Git tree.

mod backup;
mod change;
mod import;
mod list;
mod restore;
mod usage;

use anyhow::Result;

use crate::config::KeysConfig;

pub fn run(cfg: &KeysConfig) -> Result<()> {
    match cfg {
        KeysConfig::List { output, cluster } => list::run(cluster, *output),
        KeysConfig::Rotate { output, cluster } => change::rotate(cluster, *output),
        KeysConfig::Retire { key_id, cluster } => change::set_state(cluster, key_id, change::Target::Retire),
        KeysConfig::Revoke { key_id, cluster } => change::set_state(cluster, key_id, change::Target::Revoke),
        KeysConfig::Backup { recipients, output, armor, cluster } => {
            backup::run(cluster, recipients, output.as_deref(), *armor)
        }
        KeysConfig::Restore { file, identities, dry_run, cluster } => restore::run(cluster, file, identities, *dry_run),
        KeysConfig::Usage { paths, online, output } => usage::run(paths, online.as_ref(), *output),
        KeysConfig::ImportToToken { secret, token, cluster } => import::run(cluster, secret, token),
    }
}

/// `abcdef123456` for a full `SHA256:…` id (the id itself when it does not parse).
pub(crate) fn short_id(id: &str) -> String {
    id.parse::<gitseal_shared::KeyId>().map(|k| k.short().to_string()).unwrap_or_else(|_| id.to_string())
}
