//! Where the peer binaries are.
//!
//! `tests/peers/install.sh` builds every peer into a version-keyed cache and writes
//! `$cache/peers.env` (`KEY=path` lines). The cache is `$GITSEAL_TEST_CACHE`, else
//! `~/.cache/gitseal-test`. An environment variable of the same name as the key (for example
//! `GITSEAL_KUBE_APISERVER=/usr/local/bin/kube-apiserver`) overrides the file, one peer at a time.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

/// A program (or file) the tests run against, built by `tests/peers/install.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Peer {
    /// etcd v3.6, the control plane's storage.
    Etcd,
    /// kube-apiserver v1.36.
    KubeApiserver,
    /// kube-controller-manager v1.36 (garbage collection, namespaces, ServiceAccounts).
    KubeControllerManager,
    /// kubectl v1.36, from the same k8s.io/kubernetes module as kube-apiserver.
    Kubectl,
    /// Bitnami's `kubeseal` CLI.
    Kubeseal,
    /// Bitnami's sealed-secrets controller (`cmd/controller`).
    BitnamiController,
    /// Bitnami's SealedSecret CRD YAML (a file, not a program).
    BitnamiCrd,
    /// `age`.
    Age,
    /// `age-keygen`.
    AgeKeygen,
    /// `helm` v3.
    Helm,
}

impl Peer {
    /// Every peer, in the order install.sh lists them.
    pub const ALL: [Peer; 10] = [
        Peer::Etcd,
        Peer::KubeApiserver,
        Peer::KubeControllerManager,
        Peer::Kubectl,
        Peer::Kubeseal,
        Peer::BitnamiController,
        Peer::BitnamiCrd,
        Peer::Age,
        Peer::AgeKeygen,
        Peer::Helm,
    ];

    /// The environment variable (and `peers.env` key) that names this peer's path.
    pub fn env_var(self) -> &'static str {
        match self {
            Peer::Etcd => "GITSEAL_ETCD",
            Peer::KubeApiserver => "GITSEAL_KUBE_APISERVER",
            Peer::KubeControllerManager => "GITSEAL_KUBE_CONTROLLER_MANAGER",
            Peer::Kubectl => "GITSEAL_KUBECTL",
            Peer::Kubeseal => "GITSEAL_KUBESEAL",
            Peer::BitnamiController => "GITSEAL_BITNAMI_CONTROLLER",
            Peer::BitnamiCrd => "GITSEAL_BITNAMI_CRD",
            Peer::Age => "GITSEAL_AGE",
            Peer::AgeKeygen => "GITSEAL_AGE_KEYGEN",
            Peer::Helm => "GITSEAL_HELM",
        }
    }

    /// A short human name, used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Etcd => "etcd",
            Peer::KubeApiserver => "kube-apiserver",
            Peer::KubeControllerManager => "kube-controller-manager",
            Peer::Kubectl => "kubectl",
            Peer::Kubeseal => "kubeseal",
            Peer::BitnamiController => "the Bitnami sealed-secrets controller",
            Peer::BitnamiCrd => "the Bitnami SealedSecret CRD",
            Peer::Age => "age",
            Peer::AgeKeygen => "age-keygen",
            Peer::Helm => "helm",
        }
    }

    /// The peer's path: its environment variable if set, else its line in `peers.env`.
    ///
    /// Fails with a message that says to run `tests/peers/install.sh` when neither names an
    /// existing file.
    pub fn path(self) -> Result<PathBuf> {
        let var = self.env_var();
        let (path, source_of_path) = match std::env::var_os(var) {
            Some(p) if !p.is_empty() => (PathBuf::from(p), format!("${var}")),
            _ => {
                let file = cache_dir().join("peers.env");
                let found = read_env_file(&file).remove(var);
                let source = format!("{var} in {}", file.display());
                match found {
                    Some(p) => (PathBuf::from(p), source),
                    None => (file.clone(), format!("{source}, which has no such line")),
                }
            }
        };
        if path.is_file() { Ok(path) } else { Err(Error::PeerMissing { peer: self.name(), var, path, source_of_path }) }
    }
}

/// The peer cache: `$GITSEAL_TEST_CACHE`, else `$HOME/.cache/gitseal-test` (as in install.sh).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GITSEAL_TEST_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache").join("gitseal-test")
}

/// Reads `KEY=value` lines; a missing or unreadable file reads as empty (the caller reports the
/// missing peer with the file's path).
fn read_env_file(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse_env(&text)
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_are_read_and_comments_skipped() {
        let env = parse_env("# c\nGITSEAL_ETCD=/a/etcd\n\nGITSEAL_HELM = /b/helm \n");
        assert_eq!(env["GITSEAL_ETCD"], "/a/etcd");
        assert_eq!(env["GITSEAL_HELM"], "/b/helm");
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn a_missing_peer_says_to_run_the_install_script() {
        let err = Error::PeerMissing {
            peer: Peer::Etcd.name(),
            var: Peer::Etcd.env_var(),
            path: PathBuf::from("/nope/etcd"),
            source_of_path: "$GITSEAL_ETCD".into(),
        };
        assert!(err.to_string().contains("run tests/peers/install.sh"));
    }
}
