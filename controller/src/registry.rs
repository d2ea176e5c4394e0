//! The key registry: every sealing key the controller holds, loaded from key Secrets in its
//! namespace and kept current by a watch (added, changed and removed keys are picked up
//! without a restart; a malformed key Secret is reported and skipped, never a crash).
//!
//! Key Secrets use Bitnami's layout (`kubernetes.io/tls`, PKCS#1 `tls.key`, `tls.crt`) plus
//! gitseal's `age.key`, and carry both labels: `gitseal.dev/key=<state>` and
//! `sealedsecrets.bitnami.com/sealed-secrets-key=active|compromised`, so a backup restores
//! into either controller.
//!
//! Revocation is sticky: the ids of revoked keys are also kept in a revocation-list Secret
//! ([`REVOCATION_LIST_SECRET`]) that the controller writes on revoke and never shrinks, and in
//! memory for the life of the process. A key whose id is on the list is revoked whatever its
//! own Secret's labels say, so deleting the revoked Secret and restoring an old backup cannot
//! bring it back; when several Secrets hold the same key, the most restrictive state wins.
//!
//! The registry also holds the digest key of the keyed Secret digests
//! ([`DigestKey`](crate::decide::DigestKey)), stored in [`DIGEST_KEY_SECRET`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use gitseal_keys::material::{
    AGE_KEY, KEY_BACKEND_ANNOTATION, PKCS11_BACKEND, PKCS11_ID_ANNOTATION, PKCS11_LABEL_ANNOTATION, TLS_CRT, TLS_KEY,
};
use gitseal_keys::{Certificate, KeyPair};
use gitseal_shared::KeyId;
use gitseal_shared::value::{DecryptionKey, UnwrapKey};
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
/// `gitseal.dev/key` value of the revocation-list Secret.
pub const REVOCATION_LIST_LABEL_VALUE: &str = "revocation-list";
/// `gitseal.dev/key` value of the digest-key Secret.
pub const DIGEST_KEY_LABEL_VALUE: &str = "digest-key";
/// Name of the Secret, in the controller namespace, that lists every revoked key id.
pub const REVOCATION_LIST_SECRET: &str = "gitseal-revoked-keys";
/// Its data item: one key id per line.
pub const REVOCATION_LIST_ITEM: &str = "key-ids";
/// Name of the Secret, in the controller namespace, that holds the digest key.
pub const DIGEST_KEY_SECRET: &str = "gitseal-digest-key";
/// Its data item: the 32 key bytes.
pub const DIGEST_KEY_ITEM: &str = "digest.key";
/// Most revoked ids read from the revocation list (a hostile list cannot grow memory unbounded).
pub const MAX_REVOKED_IDS: usize = 10_000;

/// Parse the revocation list's item: one key id per line; malformed lines are skipped.
pub fn parse_revocation_list(bytes: &[u8]) -> Vec<KeyId> {
    String::from_utf8_lossy(bytes).lines().filter_map(|l| l.trim().parse().ok()).take(MAX_REVOKED_IDS).collect()
}

/// The revocation list's item for `ids`.
pub fn format_revocation_list<'a>(ids: impl IntoIterator<Item = &'a KeyId>) -> String {
    let set: BTreeSet<&KeyId> = ids.into_iter().collect();
    set.iter().map(|id| format!("{}\n", id.as_str())).collect()
}

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
    ///
    /// The most restrictive label wins: a Secret Bitnami marked `compromised` is revoked even
    /// when gitseal's label says otherwise. A Secret with only Bitnami's label is loaded with
    /// `--bitnami-compat` only (`active`, or `compromised` as revoked).
    pub fn from_labels(labels: Option<&BTreeMap<String, String>>, bitnami_compat: bool) -> Option<KeyState> {
        let labels = labels?;
        let bitnami = match labels.get(BITNAMI_KEY_LABEL).map(String::as_str) {
            Some("active") => Some(KeyState::Active),
            Some("compromised") => Some(KeyState::Revoked),
            _ => None,
        };
        match labels.get(GITSEAL_KEY_LABEL).map(String::as_str) {
            Some(g) => {
                let gitseal = match g {
                    "active" => KeyState::Active,
                    "retired" => KeyState::Retired,
                    "revoked" => KeyState::Revoked,
                    _ => return None,
                };
                Some(bitnami.map_or(gitseal, |b| b.max(gitseal)))
            }
            None if bitnami_compat => bitnami,
            None => None,
        }
    }
}

/// One loaded key. The private key is held once, behind [`DecryptionKey`] (in memory, or a
/// handle on a token object); the certificate is public.
#[derive(Debug)]
pub struct LoadedKey {
    pub secret_name: String,
    pub cert: Certificate,
    pub decryption: DecryptionKey,
    pub state: KeyState,
    /// Whether the Secret came from Bitnami's controller (no gitseal label).
    pub bitnami: bool,
    /// Waiting for a backup before it may seal (`--require-key-backup`).
    pub pending_backup: bool,
    /// The key Secret's creation time, RFC 3339.
    pub created: Option<String>,
    /// For a key held in a PKCS#11 token: the annotations naming its token object (backend, CKA_ID,
    /// CKA_LABEL), so a deleted key Secret can be written back from memory.
    pub token_object: Option<BTreeMap<String, String>>,
}

/// Why a key Secret cannot be loaded. Messages name the Secret and never echo key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySecretError {
    #[error("key Secret {0} has no data")]
    NoData(String),
    #[error("key Secret {0} lacks {TLS_KEY} or {TLS_CRT}")]
    Incomplete(String),
    #[error("key Secret {0}")]
    Invalid(String, #[source] gitseal_keys::Error),
    #[error("key Secret {0} names a key in a PKCS#11 token, and the controller runs without --pkcs11-module")]
    NoToken(String),
}

/// Finds the token object a key Secret names (its annotations) for the key of `cert`.
pub type TokenLookup<'a> =
    &'a dyn Fn(&Certificate, &BTreeMap<String, String>) -> Result<Arc<dyn UnwrapKey>, gitseal_keys::Error>;

impl LoadedKey {
    pub fn id(&self) -> &KeyId {
        self.decryption.id()
    }

    pub fn not_before(&self) -> Option<OffsetDateTime> {
        self.cert.not_before()
    }

    /// A key in memory, from a generated or parsed pair (whose PKCS#8 copy is dropped here).
    pub fn from_pair(secret_name: String, pair: KeyPair, state: KeyState) -> Result<LoadedKey, gitseal_keys::Error> {
        let decryption = pair.decryption_key()?;
        Ok(LoadedKey {
            secret_name,
            cert: pair.cert,
            decryption,
            state,
            bitnami: false,
            pending_backup: false,
            created: None,
            token_object: None,
        })
    }

    /// Parse a key Secret holding its private key (`tls.key`). Errors say what is wrong
    /// without echoing key material.
    pub fn from_secret(secret: &Secret, state: KeyState) -> Result<LoadedKey, KeySecretError> {
        Self::from_secret_in(secret, state, None)
    }

    /// Parse a key Secret; one marked `gitseal.dev/key-backend: pkcs11` holds only the
    /// certificate and names its token object, found through `token`.
    pub fn from_secret_in(
        secret: &Secret,
        state: KeyState,
        token: Option<TokenLookup<'_>>,
    ) -> Result<LoadedKey, KeySecretError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = secret.data.as_ref().ok_or_else(|| KeySecretError::NoData(name.clone()))?;
        let get = |k: &str| data.get(k).map(|b| b.0.as_slice());
        let empty = BTreeMap::new();
        let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
        let in_token = annotations.get(KEY_BACKEND_ANNOTATION).map(String::as_str) == Some(PKCS11_BACKEND);
        let token_object = in_token.then(|| {
            annotations
                .iter()
                .filter(|(k, _)| {
                    [KEY_BACKEND_ANNOTATION, PKCS11_ID_ANNOTATION, PKCS11_LABEL_ANNOTATION].contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        let (cert, decryption) = if in_token {
            let crt = get(TLS_CRT).ok_or_else(|| KeySecretError::Incomplete(name.clone()))?;
            let invalid = |e| KeySecretError::Invalid(name.clone(), e);
            let cert = Certificate::from_pem(std::str::from_utf8(crt).unwrap_or_default()).map_err(invalid)?;
            let lookup = token.ok_or_else(|| KeySecretError::NoToken(name.clone()))?;
            let rsa = lookup(&cert, annotations).map_err(invalid)?;
            // An imported key keeps the age identity it had (keys made in a token have none).
            let age = match get(AGE_KEY) {
                Some(b) => Some(
                    gitseal_keys::material::parse_age_identity(std::str::from_utf8(b).unwrap_or_default())
                        .map_err(|e| KeySecretError::Invalid(name.clone(), e))?,
                ),
                None => None,
            };
            (cert, DecryptionKey::from_rsa(rsa, age))
        } else {
            let (Some(key), Some(crt)) = (get(TLS_KEY), get(TLS_CRT)) else {
                return Err(KeySecretError::Incomplete(name));
            };
            let pair = KeyPair::from_secret_data(key, crt, get(AGE_KEY))
                .map_err(|e| KeySecretError::Invalid(name.clone(), e))?;
            let decryption = pair.decryption_key().map_err(|e| KeySecretError::Invalid(name.clone(), e))?;
            (pair.cert, decryption)
        };
        let bitnami = secret.metadata.labels.as_ref().is_none_or(|l| !l.contains_key(GITSEAL_KEY_LABEL));
        let pending_backup = annotations.get(PENDING_BACKUP_ANNOTATION).is_some_and(|v| v == "true");
        let created = secret.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string());
        Ok(LoadedKey { secret_name: name, cert, decryption, state, bitnami, pending_backup, created, token_object })
    }

    /// The same key in another state (the key itself is shared, not copied).
    fn restated(&self, state: KeyState) -> Option<LoadedKey> {
        Some(LoadedKey {
            secret_name: self.secret_name.clone(),
            cert: Certificate::from_pem(self.cert.pem()).ok()?,
            decryption: self.decryption.clone(),
            state,
            bitnami: self.bitnami,
            pending_backup: self.pending_backup,
            created: self.created.clone(),
            token_object: self.token_object.clone(),
        })
    }
}

/// How a key Secret seen again no longer holds the key loaded from it ([`replacement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// It is not a key Secret any more (labels gone, or its key does not load).
    NotAKey,
    /// It holds another key (or another certificate, or another age identity).
    OtherKey(KeyId),
}

impl Replaced {
    /// The audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Replaced::NotAKey => "NoLongerAKey",
            Replaced::OtherKey(_) => "OtherKey",
        }
    }
}

impl std::fmt::Display for Replaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replaced::NotAKey => f.write_str("no longer holds a loadable key"),
            Replaced::OtherKey(id) => write!(f, "now holds another key ({id})"),
        }
    }
}

/// Whether a key Secret that held `loaded` still holds it: the same certificate and the same
/// key ids (RSA and age) — its labels and annotations (state, pending backup) may change. `now`
/// is what the Secret holds today (`None`: no key, or one that does not load). A replaced key
/// Secret is never loaded: the key in memory stays, and the Secret is written back.
pub fn replacement(loaded: &LoadedKey, now: Option<&LoadedKey>) -> Option<Replaced> {
    let now = match now {
        None => return Some(Replaced::NotAKey),
        Some(n) => n,
    };
    let same = now.cert.pem() == loaded.cert.pem() && now.decryption.ids().eq(loaded.decryption.ids());
    (!same).then(|| Replaced::OtherKey(now.id().clone()))
}

/// A key Secret the controller refuses to load (its certificate starts in the future).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedKey {
    pub secret_name: String,
    pub key_id: KeyId,
    pub not_before: Option<OffsetDateTime>,
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
    /// Keys as loaded, by Secret name, in the state their labels say.
    keys: RwLock<BTreeMap<String, Arc<LoadedKey>>>,
    /// Every key once, in its effective state, newest first (recomputed on every change).
    view: RwLock<Vec<Arc<LoadedKey>>>,
    /// Revoked ids: the revocation list, the revoked labels ever seen. Only grows.
    revoked: RwLock<BTreeSet<KeyId>>,
    /// Key Secrets refused at load, by Secret name.
    refused: RwLock<BTreeMap<String, RefusedKey>>,
    digest: RwLock<Option<Arc<crate::decide::DigestKey>>>,
    /// Bumped on every change; reconcilers re-run failed objects, renewal re-plans.
    version: watch::Sender<u64>,
    /// How many SealedSecrets each key opened (at most [`MAX_RECENT_KEYS`] ids): objects
    /// without a key hint try the most successful keys first.
    recent: std::sync::Mutex<BTreeMap<KeyId, u64>>,
}

/// How many recently successful keys the registry remembers for ordering.
pub const MAX_RECENT_KEYS: usize = 64;

/// Added to every count before keys are compared, so that a few objects (or a few finished out
/// of order by concurrent workers) never reorder the keys: a key moves ahead only when it opened
/// at least twice as many objects as another, plus this many.
pub const RANK_SMOOTHING: u64 = 4;

/// A key's place class in [`Registry::usable_recent_first`]: 0 for keys within a factor of two of
/// the `most` successful one, 1 within a factor of four, and so on.
fn rank(most: u64, opened: u64) -> u32 {
    let ratio = most.saturating_add(RANK_SMOOTHING) / opened.saturating_add(RANK_SMOOTHING);
    ratio.max(1).ilog2()
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            keys: RwLock::new(BTreeMap::new()),
            view: RwLock::new(Vec::new()),
            revoked: RwLock::new(BTreeSet::new()),
            refused: RwLock::new(BTreeMap::new()),
            digest: RwLock::new(None),
            version: watch::channel(0).0,
            recent: std::sync::Mutex::new(BTreeMap::new()),
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<LoadedKey>>> {
        read(&self.keys)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<LoadedKey>>> {
        write(&self.keys)
    }

    /// Recompute the effective view: one entry per key id, the most restrictive state of all
    /// Secrets holding it, revoked when its id is on the revocation list.
    fn recompute(&self) {
        let keys: Vec<Arc<LoadedKey>> = self.read().values().cloned().collect();
        // Revoked labels are remembered: removing the label or the Secret does not un-revoke.
        {
            let mut revoked = write(&self.revoked);
            for k in keys.iter().filter(|k| k.state == KeyState::Revoked) {
                revoked.extend(k.decryption.ids().cloned());
            }
        }
        let revoked = read(&self.revoked).clone();
        let mut by_id: BTreeMap<KeyId, Vec<Arc<LoadedKey>>> = BTreeMap::new();
        for k in keys {
            by_id.entry(k.id().clone()).or_default().push(k);
        }
        let mut view = Vec::with_capacity(by_id.len());
        for (_, mut group) in by_id {
            // Most restrictive first; among equals, gitseal's own Secret before a Bitnami copy.
            group.sort_by_key(|k| (std::cmp::Reverse(k.state), k.bitnami, k.secret_name.clone()));
            let first = group.swap_remove(0);
            let listed = first.decryption.ids().any(|id| revoked.contains(id));
            let state = if listed { KeyState::Revoked } else { first.state };
            let pending = first.pending_backup || group.iter().any(|k| k.pending_backup);
            if state == first.state && pending == first.pending_backup {
                view.push(first);
            } else if let Some(mut k) = first.restated(state) {
                k.pending_backup = pending;
                view.push(Arc::new(k));
            } else {
                // Cannot re-read the certificate: leave the key out rather than use it.
                tracing::warn!(secret = %first.secret_name, "cannot restate a key; leaving it out");
            }
        }
        view.sort_by_key(|k| std::cmp::Reverse(k.not_before()));
        *write(&self.view) = view;
    }

    /// Add ids to the sticky revocation list; true when one was new.
    pub fn revoke_ids(&self, ids: impl IntoIterator<Item = KeyId>) -> bool {
        let added = {
            let mut revoked = write(&self.revoked);
            let before = revoked.len();
            for id in ids {
                if revoked.len() >= MAX_REVOKED_IDS {
                    break;
                }
                revoked.insert(id);
            }
            revoked.len() != before
        };
        if added {
            self.recompute();
            self.bump();
        }
        added
    }

    /// Every id known revoked (listed, or labelled revoked at any time).
    pub fn revocation_list(&self) -> BTreeSet<KeyId> {
        read(&self.revoked).clone()
    }

    /// Record a refused key Secret (and forget any key it held before).
    pub fn refuse(&self, refused: RefusedKey) {
        let name = refused.secret_name.clone();
        write(&self.refused).insert(name.clone(), refused);
        self.remove(&name);
    }

    /// Forget a refusal (the Secret was deleted, fixed, or is now loaded).
    pub fn unrefuse(&self, secret_name: &str) {
        write(&self.refused).remove(secret_name);
    }

    pub fn refused(&self) -> Vec<RefusedKey> {
        read(&self.refused).values().cloned().collect()
    }

    pub fn set_digest_key(&self, key: crate::decide::DigestKey) {
        let changed = read(&self.digest).as_ref().is_none_or(|k| k.id() != key.id());
        if changed {
            *write(&self.digest) = Some(Arc::new(key));
            self.bump();
        }
    }

    pub fn digest_key(&self) -> Option<Arc<crate::decide::DigestKey>> {
        read(&self.digest).clone()
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
        write(&self.refused).remove(&key.secret_name);
        keys.insert(key.secret_name.clone(), Arc::new(key));
        drop(keys);
        if change != Change::Unchanged {
            self.recompute();
            self.bump();
        }
        change
    }

    pub fn remove(&self, secret_name: &str) -> Change {
        let removed = self.write().remove(secret_name);
        match removed {
            Some(k) => {
                self.recompute();
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
        self.recompute();
        self.bump();
    }

    /// Replace the whole set after a re-list, but keep the keys of Secrets that were loaded and
    /// are missing from `keys` (deleted while the watch was away): a deleted key Secret must not
    /// cost the ability to unseal. Returns the kept ones, for the caller to restore and report.
    pub fn replace_all_keeping_vanished(&self, keys: Vec<LoadedKey>) -> Vec<Arc<LoadedKey>> {
        let mut map: BTreeMap<String, Arc<LoadedKey>> =
            keys.into_iter().map(|k| (k.secret_name.clone(), Arc::new(k))).collect();
        let vanished: Vec<Arc<LoadedKey>> =
            self.read().iter().filter(|(name, _)| !map.contains_key(*name)).map(|(_, k)| k.clone()).collect();
        for k in &vanished {
            map.insert(k.secret_name.clone(), k.clone());
        }
        *self.write() = map;
        self.recompute();
        self.bump();
        vanished
    }

    /// The key loaded from Secret `secret_name`, as its labels say (not the effective view).
    pub fn by_secret(&self, secret_name: &str) -> Option<Arc<LoadedKey>> {
        self.read().get(secret_name).cloned()
    }

    /// Whether a key Secret other than `except` holds key `id` in a token (the key was moved
    /// there by `gitseal keys import-to-token`).
    pub fn in_token_elsewhere(&self, id: &KeyId, except: &str) -> bool {
        self.read().iter().any(|(name, k)| name != except && k.token_object.is_some() && k.id() == id)
    }

    /// Every key, newest certificate first.
    ///
    /// The same key may sit in several Secrets (a Bitnami original and a gitseal copy, a
    /// restored duplicate): it appears once, in the most restrictive state of all of them.
    pub fn all(&self) -> Vec<Arc<LoadedKey>> {
        read(&self.view).clone()
    }

    pub fn len(&self) -> usize {
        self.all().len()
    }

    pub fn is_empty(&self) -> bool {
        read(&self.view).is_empty()
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

    /// Ids of revoked keys: loaded ones and every id on the revocation list.
    pub fn revoked_ids(&self) -> Vec<KeyId> {
        let mut ids = self.revocation_list();
        for k in self.all().into_iter().filter(|k| k.state == KeyState::Revoked) {
            ids.extend(k.decryption.ids().cloned());
        }
        ids.into_iter().collect()
    }

    /// Record that `ids` just opened a SealedSecret: they move up in
    /// [`usable_recent_first`](Self::usable_recent_first).
    pub fn note_opened(&self, ids: &[KeyId]) {
        let mut counts = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if counts.len() >= MAX_RECENT_KEYS && !counts.contains_key(id) {
                // Forget the least successful key to make room (keys come and go with renewal).
                if let Some(least) = counts.iter().min_by_key(|(_, n)| **n).map(|(k, _)| k.clone()) {
                    counts.remove(&least);
                }
            }
            *counts.entry(id.clone()).or_default() += 1;
        }
    }

    /// [`usable`](Self::usable), the keys that opened clearly more SealedSecrets first, ties and
    /// keys never seen newest first: what an object without any hint tries.
    ///
    /// A key is ranked by how many times fewer objects it opened than the most successful key
    /// (in powers of two, counts smoothed by [`RANK_SMOOTHING`]): keys that open about as many
    /// objects as each other share rank 0 and keep a fixed (newest-first, the sort is stable)
    /// order instead of chasing the last success. With objects spread evenly over the keys any
    /// fixed order averages (keys + 1)/2 tries; an order that moves the keys that just opened
    /// an object ahead puts the next key of a round-robin spread last (issue #14: ranks by
    /// absolute order of magnitude did that whenever the counts crossed a power of two).
    pub fn usable_recent_first(&self) -> Vec<Arc<LoadedKey>> {
        let counts = self.recent.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut keys = self.usable();
        let opened = |k: &LoadedKey| k.decryption.ids().filter_map(|id| counts.get(id)).sum::<u64>();
        let most = keys.iter().map(|k| opened(k)).max().unwrap_or(0);
        keys.sort_by_key(|k| rank(most, opened(k)));
        keys
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
        assert_eq!(KeyState::from_labels(Some(&c), true), Some(KeyState::Revoked), "loaded only to stay revoked");
        assert_eq!(KeyState::from_labels(Some(&c), false), None);
        let g = labels(&[(GITSEAL_KEY_LABEL, "retired"), (BITNAMI_KEY_LABEL, "active")]);
        assert_eq!(KeyState::from_labels(Some(&g), false), Some(KeyState::Retired));
        let both = labels(&[(GITSEAL_KEY_LABEL, "active"), (BITNAMI_KEY_LABEL, "compromised")]);
        assert_eq!(KeyState::from_labels(Some(&both), false), Some(KeyState::Revoked), "the stricter label wins");
        let only_ours = labels(&[(GITSEAL_KEY_LABEL, "active")]);
        assert_eq!(KeyState::from_labels(Some(&only_ours), true), Some(KeyState::Active));
    }

    fn key_secret(name: &str, pair: &KeyPair, state: &str) -> Secret {
        let data = pair
            .secret_data()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
            .collect();
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels(&[(GITSEAL_KEY_LABEL, state)])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }

    fn loaded(name: &str, pair: &KeyPair, state: KeyState) -> LoadedKey {
        LoadedKey::from_secret(&key_secret(name, pair, state.as_str()), state).unwrap()
    }

    fn pair() -> KeyPair {
        gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
        .unwrap()
    }

    #[test]
    fn a_relist_without_a_loaded_key_keeps_it_and_names_it_for_restoring() {
        let (old, new) = (pair(), pair());
        let r = Registry::default();
        r.replace_all(vec![loaded("old", &old, KeyState::Active)]);
        // The re-list shows another Secret only: "old" was deleted while the watch was away.
        let vanished = r.replace_all_keeping_vanished(vec![loaded("new", &new, KeyState::Active)]);
        assert_eq!(vanished.iter().map(|k| k.secret_name.as_str()).collect::<Vec<_>>(), ["old"]);
        assert_eq!(r.all().len(), 2, "both keys still decrypt");
        assert!(r.by_secret("old").is_some_and(|k| k.id() == old.rsa.id()));
        // A re-list that shows everything keeps nothing extra.
        let none = r.replace_all_keeping_vanished(vec![
            loaded("old", &old, KeyState::Active),
            loaded("new", &new, KeyState::Active),
        ]);
        assert!(none.is_empty());
        assert_eq!(r.all().len(), 2);
    }

    #[test]
    fn a_key_secret_holding_another_key_or_none_is_a_replacement_and_a_relabel_is_not() {
        let (p, other) = (pair(), pair());
        let was = loaded("k", &p, KeyState::Active);
        assert_eq!(replacement(&was, Some(&loaded("k", &p, KeyState::Retired))), None, "a state change");
        assert_eq!(replacement(&was, Some(&loaded("k", &p, KeyState::Active))), None);
        assert_eq!(
            replacement(&was, Some(&loaded("k", &other, KeyState::Active))),
            Some(Replaced::OtherKey(other.rsa.id().clone()))
        );
        assert_eq!(replacement(&was, None), Some(Replaced::NotAKey));
        // The same RSA key with another age identity: age-sealed values would stop opening.
        let item = |pair: &KeyPair, name: &str| {
            pair.secret_data().unwrap().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_vec())
        };
        let other_age = item(&other, AGE_KEY).expect("generated keys carry an age identity");
        let swapped =
            KeyPair::from_secret_data(&item(&p, TLS_KEY).unwrap(), &item(&p, TLS_CRT).unwrap(), Some(&other_age))
                .unwrap();
        let swapped = LoadedKey::from_pair("k".into(), swapped, KeyState::Active).unwrap();
        assert!(matches!(replacement(&was, Some(&swapped)), Some(Replaced::OtherKey(_))));
    }

    #[test]
    fn the_most_restrictive_state_wins_across_duplicates_whatever_their_names() {
        let p = pair();
        for (a, b) in [("a-copy", "z-revoked"), ("z-copy", "a-revoked")] {
            let r = Registry::default();
            r.replace_all(vec![loaded(a, &p, KeyState::Active), loaded(b, &p, KeyState::Revoked)]);
            assert_eq!(r.all().len(), 1);
            assert_eq!(r.all()[0].state, KeyState::Revoked, "{a} / {b}");
            assert!(r.usable().is_empty() && r.sealing().is_none());
        }
    }

    #[test]
    fn keys_that_opened_clearly_more_objects_come_first_and_the_rest_stay_newest_first() {
        let (a, b, c) = (pair(), pair(), pair());
        let r = Registry::default();
        r.replace_all(vec![
            loaded("a", &a, KeyState::Active),
            loaded("b", &b, KeyState::Retired),
            loaded("c", &c, KeyState::Active),
        ]);
        let ids = |keys: Vec<Arc<LoadedKey>>| keys.iter().map(|k| k.id().clone()).collect::<Vec<_>>();
        assert_eq!(ids(r.usable_recent_first()), ids(r.usable()), "nothing opened yet: newest first");
        let newest_first = ids(r.usable());
        r.note_opened(std::slice::from_ref(&newest_first[2]));
        assert_eq!(ids(r.usable_recent_first()), newest_first, "one object reorders nothing");
        for _ in 0..3 {
            r.note_opened(std::slice::from_ref(&newest_first[2]));
        }
        assert_eq!(
            ids(r.usable_recent_first()),
            vec![newest_first[2].clone(), newest_first[0].clone(), newest_first[1].clone()],
            "4 against none: twice as many, smoothed"
        );
        r.note_opened(std::slice::from_ref(&newest_first[1]));
        r.note_opened(std::slice::from_ref(&newest_first[1]));
        assert_eq!(
            ids(r.usable_recent_first()),
            vec![newest_first[1].clone(), newest_first[2].clone(), newest_first[0].clone()],
            "4 and 2 opened: the same rank, newest first"
        );
        assert_eq!(r.recent.lock().unwrap().len(), 2, "each id is counted once");
    }

    /// Issue #14: kubeseal-made objects (no key ids) spread evenly over 13 keys, in the order
    /// they were sealed (round robin, as monthly renewals leave them), reconciled one after the
    /// other as reconcile does: order the keys, unseal, note what opened. Returns the private
    /// operations spent per object.
    fn ops_per_object(r: &Registry, keys: &[KeyPair], sealed_for: impl Fn(usize) -> usize, objects: usize) -> f64 {
        use gitseal_shared::manifest::secret::PlainSecret;
        use gitseal_shared::seal::{SealOptions, seal_secret, unseal};
        use gitseal_shared::value::RecipientSet;
        let mut spent = 0u64;
        for i in 0..objects {
            let doc = serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("s{i:05}"), "namespace": "app"},
                "stringData": {"key0": "a", "key1": "b", "key2": "c"}
            });
            let plain = PlainSecret::from_value(&doc).unwrap();
            let set = RecipientSet::new(vec![keys[sealed_for(i)].cert.recipient().unwrap()]).unwrap();
            let mut ss = seal_secret(&plain, &set, &SealOptions::default()).unwrap();
            ss.metadata.annotations = None; // what kubeseal writes: no key-id hint
            let usable = r.usable_recent_first();
            let keyring: Vec<_> = usable.iter().map(|k| &k.decryption).collect();
            let u = unseal(&ss, &keyring).unwrap();
            spent += u64::from(u.private_ops);
            r.note_opened(&u.key_ids.into_iter().collect::<Vec<_>>());
        }
        spent as f64 / objects as f64
    }

    #[test]
    fn objects_spread_evenly_over_13_keys_cost_at_most_keys_plus_one_over_two_plus_the_other_values() {
        const KEYS: usize = 13;
        const VALUES: f64 = 3.0;
        let now = OffsetDateTime::now_utc();
        // Oldest first, monthly renewals: newest first is then the reverse of the sealing order.
        let keys: Vec<KeyPair> = (0..KEYS)
            .map(|i| {
                let not_before = now - time::Duration::days(30 * (KEYS - i) as i64);
                gitseal_keys::generate_key_pair(
                    gitseal_keys::RsaBits::Rsa2048,
                    "",
                    not_before,
                    time::Duration::days(3650),
                )
                .unwrap()
            })
            .collect();
        let registry = || {
            let r = Registry::default();
            r.replace_all(
                keys.iter().enumerate().map(|(i, p)| loaded(&format!("k{i:02}"), p, KeyState::Active)).collect(),
            );
            r
        };
        let bound = (KEYS as f64 + 1.0) / 2.0 + (VALUES - 1.0);
        // Four rounds: the counts cross 1, 2 and 4, where ranks by absolute order of magnitude
        // put the next key of the round last (12.0 per object here before the fix).
        let even = ops_per_object(&registry(), &keys, |i| i % KEYS, 4 * KEYS);
        assert!(even <= bound, "{even:.2} private operations per object, bound {bound}");
        // Three objects in four on the oldest key, tried last in a fixed order (about 13.5 per
        // object): it moves first once it has opened a few, and the average falls well below.
        let skewed = ops_per_object(&registry(), &keys, |i| if i % 4 == 3 { i % KEYS } else { 0 }, 4 * KEYS);
        assert!(skewed < 6.0, "{skewed:.2} per object with one key opening most objects");
        eprintln!("private operations per object: {even:.2} spread evenly, {skewed:.2} skewed");
    }

    #[test]
    fn a_revoked_key_stays_revoked_after_its_secret_goes_and_comes_back_active() {
        let p = pair();
        let r = Registry::default();
        r.replace_all(vec![loaded("k", &p, KeyState::Revoked)]);
        r.remove("k");
        assert!(r.revoked_ids().contains(p.rsa.id()), "the id is remembered");
        // An old backup restores it labelled active.
        r.upsert(loaded("k-restored", &p, KeyState::Active));
        assert_eq!(r.all()[0].state, KeyState::Revoked);
        assert!(r.sealing().is_none());
        // The list read at start has the same effect on a fresh registry.
        let fresh = Registry::default();
        fresh.revoke_ids([p.rsa.id().clone()]);
        fresh.replace_all(vec![loaded("k-restored", &p, KeyState::Active)]);
        assert_eq!(fresh.all()[0].state, KeyState::Revoked);
        let text = format_revocation_list(&fresh.revocation_list());
        assert_eq!(parse_revocation_list(text.as_bytes()), vec![p.rsa.id().clone()]);
        assert!(parse_revocation_list(b"junk\n\xff\n").is_empty());
    }
}
