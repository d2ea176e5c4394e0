//! The key registry: every sealing key the controller holds, loaded from key Secrets in its
//! namespace and kept current by a watch (added, changed and removed keys are picked up
//! without a restart; a malformed key Secret is reported and skipped, never a crash).
//!
//! Key Secrets use Bitnami's layout (`kubernetes.io/tls`, PKCS#1 `tls.key`, `tls.crt`) plus
//! gitseal's `age.key`, and carry both labels: `gitseal.dev/key=<state>` and
//! `sealedsecrets.bitnami.com/sealed-secrets-key=active|compromised`, so a backup restores
//! into either controller.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use gitseal_keys::KeyPair;
use gitseal_keys::material::{AGE_KEY, TLS_CRT, TLS_KEY};
use gitseal_shared::KeyId;
use gitseal_shared::value::DecryptionKey;
use k8s_openapi::api::core::v1::Secret;
use time::OffsetDateTime;
use tokio::sync::watch;

pub const GITSEAL_KEY_LABEL: &str = "gitseal.dev/key";
pub const BITNAMI_KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
/// On a key Secret: the key is not handed out for sealing until a backup contains it.
pub const PENDING_BACKUP_ANNOTATION: &str = "gitseal.dev/pending-backup";
/// On a key Secret: when a backup last contained it.
pub const BACKED_UP_ANNOTATION: &str = "gitseal.dev/backed-up-at";
/// On a key Secret created by `gitseal keys restore`: who says they restored it.
pub const RESTORED_BY_ANNOTATION: &str = "gitseal.dev/restored-by";

/// Lifecycle state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyState {
    /// Seals (when latest) and decrypts.
    Active,
    /// Decrypts, never used for sealing.
    Retired,
    /// Compromised: not used at all.
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Revoked => "revoked",
        }
    }

    /// State from a key Secret's labels; `None` when the Secret is not a key we load.
    pub fn from_labels(labels: Option<&BTreeMap<String, String>>, bitnami_compat: bool) -> Option<KeyState> {
        let labels = labels?;
        match labels.get(GITSEAL_KEY_LABEL).map(String::as_str) {
            Some("active") => return Some(KeyState::Active),
            Some("retired") => return Some(KeyState::Retired),
            Some("revoked") => return Some(KeyState::Revoked),
            Some(_) => return None,
            None => {}
        }
        // A Bitnami key: only `active` is loaded, as Bitnami does.
        match (bitnami_compat, labels.get(BITNAMI_KEY_LABEL).map(String::as_str)) {
            (true, Some("active")) => Some(KeyState::Active),
            _ => None,
        }
    }
}

/// One loaded key.
#[derive(Debug)]
pub struct LoadedKey {
    pub secret_name: String,
    pub pair: KeyPair,
    pub decryption: DecryptionKey,
    pub state: KeyState,
    /// Whether the Secret came from Bitnami's controller (no gitseal label).
    pub bitnami: bool,
    /// Waiting for a backup before it may seal (`--require-key-backup`).
    pub pending_backup: bool,
    /// The key Secret's creation time, RFC 3339.
    pub created: Option<String>,
}

impl LoadedKey {
    pub fn id(&self) -> &KeyId {
        self.decryption.id()
    }

    pub fn not_before(&self) -> Option<OffsetDateTime> {
        self.pair.cert.not_before()
    }

    /// Parse a key Secret. Errors say what is wrong without echoing key material.
    pub fn from_secret(secret: &Secret, state: KeyState) -> Result<LoadedKey, String> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = secret.data.as_ref().ok_or_else(|| format!("key Secret {name} has no data"))?;
        let get = |k: &str| data.get(k).map(|b| b.0.as_slice());
        let (Some(key), Some(crt)) = (get(TLS_KEY), get(TLS_CRT)) else {
            return Err(format!("key Secret {name} lacks {TLS_KEY} or {TLS_CRT}"));
        };
        let pair = KeyPair::from_secret_data(key, crt, get(AGE_KEY)).map_err(|e| format!("key Secret {name}: {e}"))?;
        let decryption = pair.decryption_key().map_err(|e| format!("key Secret {name}: {e}"))?;
        let bitnami = secret.metadata.labels.as_ref().is_none_or(|l| !l.contains_key(GITSEAL_KEY_LABEL));
        let pending_backup = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PENDING_BACKUP_ANNOTATION))
            .is_some_and(|v| v == "true");
        let created = secret.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string());
        Ok(LoadedKey { secret_name: name, pair, decryption, state, bitnami, pending_backup, created })
    }
}

/// What changed in the registry after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(KeyId),
    Updated(KeyId),
    Removed(KeyId),
    Unchanged,
}

/// All keys, shared by the reconcilers, the HTTP API and the renewal loop.
#[derive(Debug)]
pub struct Registry {
    keys: RwLock<BTreeMap<String, Arc<LoadedKey>>>,
    /// Bumped on every change; reconcilers re-run failed objects, renewal re-plans.
    version: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { keys: RwLock::new(BTreeMap::new()), version: watch::channel(0).0 }
    }
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<LoadedKey>>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<LoadedKey>>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Insert or replace the key held by Secret `key.secret_name`.
    pub fn upsert(&self, key: LoadedKey) -> Change {
        let id = key.id().clone();
        let mut keys = self.write();
        let change = match keys.get(&key.secret_name) {
            None => Change::Added(id),
            Some(old) if old.id() == key.id() && old.state == key.state && old.pending_backup == key.pending_backup => {
                Change::Unchanged
            }
            Some(_) => Change::Updated(id),
        };
        keys.insert(key.secret_name.clone(), Arc::new(key));
        drop(keys);
        if change != Change::Unchanged {
            self.bump();
        }
        change
    }

    pub fn remove(&self, secret_name: &str) -> Change {
        let removed = self.write().remove(secret_name);
        match removed {
            Some(k) => {
                self.bump();
                Change::Removed(k.id().clone())
            }
            None => Change::Unchanged,
        }
    }

    /// Replace the whole set (after a watch re-list).
    pub fn replace_all(&self, keys: Vec<LoadedKey>) {
        let map = keys.into_iter().map(|k| (k.secret_name.clone(), Arc::new(k))).collect();
        *self.write() = map;
        self.bump();
    }

    /// Every key, newest certificate first.
    pub fn all(&self) -> Vec<Arc<LoadedKey>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by_key(|k| std::cmp::Reverse(k.not_before()));
        // The same key may sit in two Secrets (a Bitnami original and a gitseal copy).
        let mut seen = std::collections::HashSet::new();
        v.retain(|k| seen.insert(k.id().clone()));
        v
    }

    pub fn len(&self) -> usize {
        self.all().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The newest active key (greatest certificate NotBefore), backed up or not: what renewal
    /// counts from.
    pub fn latest(&self) -> Option<Arc<LoadedKey>> {
        self.all().into_iter().find(|k| k.state == KeyState::Active)
    }

    /// The key handed out for sealing: the newest active key that is not waiting for a backup
    /// (the oldest active one when every key is waiting: it is the one already in use).
    pub fn sealing(&self) -> Option<Arc<LoadedKey>> {
        let active: Vec<_> = self.all().into_iter().filter(|k| k.state == KeyState::Active).collect();
        active.iter().find(|k| !k.pending_backup).or(active.last()).cloned()
    }

    /// NotBefore of the latest active key.
    pub fn latest_not_before(&self) -> Option<OffsetDateTime> {
        self.latest().and_then(|k| k.not_before())
    }

    /// Keys that may decrypt (active and retired), newest first.
    pub fn usable(&self) -> Vec<Arc<LoadedKey>> {
        self.all().into_iter().filter(|k| k.state != KeyState::Revoked).collect()
    }

    pub fn revoked_ids(&self) -> Vec<KeyId> {
        self.all()
            .into_iter()
            .filter(|k| k.state == KeyState::Revoked)
            .flat_map(|k| k.decryption.ids().cloned().collect::<Vec<_>>())
            .collect()
    }

    pub fn find(&self, id: &KeyId) -> Option<Arc<LoadedKey>> {
        self.all().into_iter().find(|k| k.decryption.has_id(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn bitnami_keys_load_only_in_compat_mode_and_only_when_active() {
        let b = labels(&[(BITNAMI_KEY_LABEL, "active")]);
        assert_eq!(KeyState::from_labels(Some(&b), false), None);
        assert_eq!(KeyState::from_labels(Some(&b), true), Some(KeyState::Active));
        let c = labels(&[(BITNAMI_KEY_LABEL, "compromised")]);
        assert_eq!(KeyState::from_labels(Some(&c), true), None);
        let g = labels(&[(GITSEAL_KEY_LABEL, "retired"), (BITNAMI_KEY_LABEL, "active")]);
        assert_eq!(KeyState::from_labels(Some(&g), false), Some(KeyState::Retired));
    }
}
