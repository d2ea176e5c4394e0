//! The pure decision: given a SealedSecret, the usable keys and the Secret that exists now,
//! which Secret and which status should exist, and what to tell people about it.
//!
//! No I/O and no clock: [`reconcile`](crate::reconcile) fetches the [`Inputs`], calls
//! [`decide`], applies the [`Decision`] (Secret by server-side apply, then status, Event,
//! audit record and metrics). Every rule of Bitnami's controller (§3.4 of the reference) and
//! every rule gitseal adds (ownership, drift repair, keyed digests that spare a decryption, key
//! revocation) is decided here and tested with plain `#[test]`s.
//!
//! # Flow
//!
//! 1. **Ownership** ([`secret::ownership`]). An existing Secret is this SealedSecret's only when
//!    its controller owner reference carries this SealedSecret's UID, or — for Secrets made
//!    under `skip-set-owner-references`, which have no owner reference — when gitseal's
//!    `gitseal.dev/owner-uid` and `gitseal.dev/sealed-by` annotations name this UID and API
//!    group. A Secret controlled or claimed by anything else is refused with `SecretNotOwned`
//!    whatever its annotations say; an unclaimed one is adopted only with Bitnami's `managed`
//!    (take over) or `patch` (merge, leave ownership) annotation.
//! 2. **Fast path.** When the Secret is ours, carries the sealed digest of exactly these sealed
//!    inputs, a keyed data digest ([`digest`]) that still matches its data, and key ids none of
//!    which is revoked, the answer is `InSync` with no private-key operation.
//! 3. **Unseal** with the usable keys (revoked keys are never passed in). A failure is
//!    classified: `KeyRevoked` when the values or the last status name a revoked key,
//!    `DecryptFailed`, `TemplateFailed`, `InvalidSealedSecret`; `NoKeys` before any key;
//!    `KeyUnavailable` when a key's token did not answer (transient: reconcile retries it).
//! 4. **Build** the desired Secret ([`secret::build`]) and compare its keyed digest with the
//!    existing data's: an immutable Secret that differs is `SecretImmutable`; a Secret of ours
//!    made from the same sealed inputs whose data differs, or a Secret deleted although the
//!    current generation was synced, is `DriftReverted`; anything else is `Unsealed`.
//!
//! # Guarantees
//!
//! - Never writes a Secret another object controls or claims, and never spends a private-key
//!   operation before ownership is settled.
//! - A Secret edited directly (its annotations included) is noticed: only the controller holds
//!   the digest key. A digest-key rotation makes each object cost one re-verification.
//! - Messages, Events and `Debug` output never contain decrypted values ([`Decision`] and
//!   [`Inputs`] redact them).
//!
//! # Errors
//!
//! `decide` cannot fail: every problem is an [`Outcome::Failed`] with a [`Reason`], a one-line
//! message for the condition and the audit record, and a warning Event. Errors of I/O (reading
//! or applying the Secret, writing the status) belong to [`reconcile`](crate::reconcile).

pub mod digest;
pub mod secret;
pub mod status;

use gitseal_shared::seal::{key_hints, unseal};
use gitseal_shared::types::{ApiGroup, SealedSecretObject, SealedSecretStatus};
use gitseal_shared::value::{DecryptionKey, order_by_hints};
use gitseal_shared::{Error as CoreError, KeyId};
use k8s_openapi::api::core::v1::Secret;

pub use digest::{DigestKey, data_digest, sealed_digest};
pub use secret::{
    DATA_DIGEST_ANNOTATION, KEY_IDS_ANNOTATION, MANAGED_ANNOTATION, MANAGED_LABEL, OWNER_UID_ANNOTATION, Ownership,
    PATCH_ANNOTATION, SEALED_BY_ANNOTATION, SEALED_DIGEST_ANNOTATION, SKIP_OWNER_REFERENCES_ANNOTATION, ownership,
};
pub use status::SYNCED;
use status::next_status;

/// The field manager of every server-side apply gitseal makes.
pub const FIELD_MANAGER: &str = "gitseal-controller";

/// What happened, for metrics (bounded), events and audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The Secret already matches; no key was used.
    InSync,
    Unsealed,
    /// The Secret was edited or deleted directly and is put back.
    DriftReverted,
    Failed(Reason),
}

impl Outcome {
    /// The Event reason of this outcome (`None` for `InSync`, which publishes nothing).
    pub fn event_reason(self) -> Option<&'static str> {
        match self {
            Outcome::InSync => None,
            Outcome::Unsealed => Some("Unsealed"),
            Outcome::DriftReverted => Some("DriftReverted"),
            Outcome::Failed(r) => Some(r.as_str()),
        }
    }
}

/// Why a SealedSecret could not become a Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No loaded key opens it (wrong key, wrong scope, tampered).
    DecryptFailed,
    /// It was sealed for a key that has been revoked.
    KeyRevoked,
    /// The SealedSecret itself is malformed (bad base64, truncated value, missing name).
    InvalidSealedSecret,
    TemplateFailed,
    /// A Secret of that name exists and belongs to someone else.
    SecretNotOwned,
    /// The existing Secret is immutable and differs.
    SecretImmutable,
    /// No key is loaded yet.
    NoKeys,
    /// A key that may open it lives in a token that cannot be reached now (a token restart, a
    /// network HSM gone): nothing was learnt about the values. Transient: retried with the
    /// per-object backoff, never counted as a decryption failure.
    KeyUnavailable,
}

impl Reason {
    /// PascalCase, for the condition reason and the Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DecryptFailed => "DecryptFailed",
            Reason::KeyRevoked => "KeyRevoked",
            Reason::InvalidSealedSecret => "InvalidSealedSecret",
            Reason::TemplateFailed => "TemplateFailed",
            Reason::SecretNotOwned => "SecretNotOwned",
            Reason::SecretImmutable => "SecretImmutable",
            Reason::NoKeys => "NoKeys",
            Reason::KeyUnavailable => "KeyUnavailable",
        }
    }

    /// snake_case metric label.
    pub fn metric_label(self) -> &'static str {
        match self {
            Reason::DecryptFailed => "decrypt_failed",
            Reason::KeyRevoked => "key_revoked",
            Reason::InvalidSealedSecret => "invalid",
            Reason::TemplateFailed => "template",
            Reason::SecretNotOwned => "unmanaged",
            Reason::SecretImmutable => "immutable",
            Reason::NoKeys => "no_keys",
            Reason::KeyUnavailable => "key_unavailable",
        }
    }
}

/// An Event to publish on the SealedSecret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Everything reconcile needs to act.
pub struct Decision {
    pub outcome: Outcome,
    /// The Secret to server-side apply, if any.
    pub apply: Option<Secret>,
    /// The status that should be written, if it differs from the current one.
    pub status: Option<SealedSecretStatus>,
    pub event: Option<EventSpec>,
    /// Keys that opened the values.
    pub key_ids: Vec<KeyId>,
    pub private_ops: u32,
    /// A one-line explanation (no secret content), for the condition and the audit record.
    pub message: String,
    /// The existing Secret of ours gets different data from changed sealed inputs: not its
    /// first creation, not a resync or re-encryption (same data), not a drift repair. What
    /// `gitseal.dev/restart-on-change` reacts to ([`crate::rollout`]).
    pub data_changed: bool,
}

/// `name (N items)` of a Secret, never its data.
fn redacted(secret: Option<&Secret>) -> Option<String> {
    secret.map(|s| {
        let items = s.data.as_ref().map_or(0, std::collections::BTreeMap::len);
        format!("Secret {} ({items} items, data redacted)", s.metadata.name.as_deref().unwrap_or(""))
    })
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("outcome", &self.outcome)
            .field("apply", &redacted(self.apply.as_ref()))
            .field("status", &self.status)
            .field("event", &self.event)
            .field("key_ids", &self.key_ids)
            .field("private_ops", &self.private_ops)
            .field("message", &self.message)
            .field("data_changed", &self.data_changed)
            .finish()
    }
}

/// The inputs of a decision.
pub struct Inputs<'a> {
    pub ss: &'a SealedSecretObject,
    pub group: ApiGroup,
    /// Keys that may decrypt, newest first (revoked keys excluded).
    pub keys: &'a [&'a DecryptionKey],
    /// Ids of revoked keys.
    pub revoked: &'a [KeyId],
    pub existing: Option<&'a Secret>,
    /// The key of the data digests.
    pub digest_key: &'a DigestKey,
    /// RFC 3339 time for condition timestamps.
    pub now: &'a str,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field(
                "ss",
                &format_args!(
                    "{}/{}",
                    self.ss.metadata.namespace.as_deref().unwrap_or(""),
                    self.ss.metadata.name.as_deref().unwrap_or("")
                ),
            )
            .field("group", &self.group)
            .field("keys", &self.keys.iter().map(|k| k.id()).collect::<Vec<_>>())
            .field("revoked", &self.revoked)
            .field("existing", &redacted(self.existing))
            .field("digest_key", &self.digest_key)
            .field("now", &self.now)
            .finish()
    }
}

/// The part of [`decide`] that needs no key and no ciphertext: a refusal because the Secret is
/// not ours, or `InSync` on the fast path; `None` when the values must be unsealed. Works on a
/// trimmed cached object ([`crate::trim`]), whose sealed digest was computed before trimming.
pub fn without_keys(inp: &Inputs<'_>) -> Option<Decision> {
    let ss = inp.ss;
    let digest = crate::trim::cached_digest(ss).map_or_else(|| sealed_digest(ss), str::to_string);
    let owner = inp.existing.map(|s| ownership(s, ss, inp.group));
    let ours = owner == Some(Ownership::Ours);
    let on_revoked_key = |ids: &[KeyId]| ids.iter().any(|id| inp.revoked.contains(id));

    if let Some(existing) = inp.existing {
        let ann = existing.metadata.annotations.as_ref();
        let flag = |k: &str| ann.and_then(|a| a.get(k)).is_some_and(|v| v == "true");
        let secret_name = existing.metadata.name.as_deref().unwrap_or("");
        match owner {
            Some(Ownership::Foreign) => {
                let msg = format!(
                    "Secret {secret_name} already exists and is controlled by another object: gitseal never takes over a Secret another owner controls"
                );
                return Some(failed(inp, Reason::SecretNotOwned, msg, 0));
            }
            Some(Ownership::Unclaimed) if !flag(MANAGED_ANNOTATION) && !flag(PATCH_ANNOTATION) => {
                let msg = format!(
                    "Secret {secret_name} already exists and is not managed by this SealedSecret: annotate it with {MANAGED_ANNOTATION}: \"true\" to let gitseal take it over"
                );
                return Some(failed(inp, Reason::SecretNotOwned, msg, 0));
            }
            _ => {}
        }
        // Fast path: the Secret was made from exactly these sealed inputs and nobody touched it.
        let annotated = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
        let secret_key_ids = annotated(KEY_IDS_ANNOTATION).map(KeyId::parse_list).unwrap_or_default();
        if ours
            && ss.spec.data.is_none()
            && annotated(SEALED_DIGEST_ANNOTATION) == Some(digest.as_str())
            && annotated(DATA_DIGEST_ANNOTATION)
                .is_some_and(|d| digest::data_digest_matches(inp.digest_key, d, &digest, existing, &managed_keys(ss)))
            && !secret_key_ids.is_empty()
            && !on_revoked_key(&secret_key_ids)
        {
            let message = String::new();
            return Some(Decision {
                outcome: Outcome::InSync,
                apply: None,
                status: next_status(ss, true, "Unsealed", &message, Some(&secret_key_ids), inp.now),
                event: None,
                key_ids: secret_key_ids,
                private_ops: 0,
                message,
                data_changed: false,
            });
        }
    }
    None
}

pub fn decide(inp: &Inputs<'_>) -> Decision {
    if let Some(d) = without_keys(inp) {
        return d;
    }
    // From here on the object must be whole: reconcile GETs it ([`crate::trim`] cuts the cache).
    let ss = inp.ss;
    let digest = sealed_digest(ss);
    let ours = inp.existing.map(|s| ownership(s, ss, inp.group)) == Some(Ownership::Ours);
    let status_key_ids: Vec<KeyId> =
        ss.status.as_ref().and_then(|s| s.key_id.as_deref()).map(KeyId::parse_list).unwrap_or_default();
    let on_revoked_key = |ids: &[KeyId]| ids.iter().any(|id| inp.revoked.contains(id));

    if inp.keys.is_empty() {
        return failed(inp, Reason::NoKeys, "no sealing key is loaded yet".into(), 0);
    }
    // Failures that depend on plaintext read like decryption failures (issue #9, item 9).
    // The keys that opened this object last time (its status) go first: a changed object
    // costs one private operation per value. The key-id annotation still wins (in `unseal`).
    let ordered = order_by_hints(inp.keys, &status_key_ids);
    let unsealed = match unseal(ss, &ordered).map_err(CoreError::for_remote) {
        Ok(u) => u,
        // Before any classification by plaintext: no value was opened or refused.
        Err(e @ CoreError::KeyUnavailable(_)) => return failed(inp, Reason::KeyUnavailable, e.to_string(), 0),
        Err(CoreError::Undecryptable(items)) => {
            let hinted = key_hints(ss);
            if on_revoked_key(&hinted) || on_revoked_key(&status_key_ids) {
                let msg =
                    format!("sealed for a revoked key; re-seal it with the current certificate ({})", items.join(", "));
                return failed(inp, Reason::KeyRevoked, msg, 0);
            }
            return failed(inp, Reason::DecryptFailed, CoreError::Undecryptable(items).to_string(), 0);
        }
        Err(e @ (CoreError::Template(_) | CoreError::SecretTooLarge { .. })) => {
            return failed(inp, Reason::TemplateFailed, e.to_string(), 0);
        }
        Err(e) => return failed(inp, Reason::InvalidSealedSecret, e.to_string(), 0),
    };
    let key_ids: Vec<KeyId> = unsealed.key_ids.iter().cloned().collect();
    let private_ops = unsealed.private_ops;

    let build = secret::Build {
        ss,
        group: inp.group,
        existing: inp.existing,
        digest_key: inp.digest_key,
        sealed_digest: &digest,
        key_ids: &key_ids,
    };
    let desired = secret::build(&build, &unsealed.secret);
    let desired_digest =
        desired.metadata.annotations.as_ref().and_then(|a| a.get(DATA_DIGEST_ANNOTATION)).cloned().unwrap_or_default();

    let drift;
    let mut data_changed = false;
    if let Some(existing) = inp.existing {
        let items: Vec<String> = unsealed.secret.data.keys().cloned().collect();
        let current = data_digest(inp.digest_key, &digest, existing, &items);
        if existing.immutable == Some(true) && current != desired_digest {
            let msg = "the target Secret is immutable and differs: delete it and gitseal recreates it".to_string();
            return failed(inp, Reason::SecretImmutable, msg, private_ops);
        }
        let ann = existing.metadata.annotations.as_ref();
        drift = ours && ann.and_then(|a| a.get(SEALED_DIGEST_ANNOTATION)) == Some(&digest) && current != desired_digest;
        data_changed = ours && !drift && current != desired_digest;
    } else {
        // Gone although it was produced from this very generation: someone deleted it.
        drift = ss.status.as_ref().is_some_and(|s| {
            s.observed_generation == ss.metadata.generation
                && s.conditions.iter().any(|c| c.type_ == SYNCED && c.status == "True")
        });
    }
    let outcome = if drift { Outcome::DriftReverted } else { Outcome::Unsealed };
    let note = if drift {
        "the Secret was changed or deleted outside Git and has been restored"
    } else {
        "SealedSecret unsealed successfully"
    };
    let event = outcome.event_reason().map(|reason| EventSpec { warning: drift, reason, note: note.into() });
    let message = String::new();
    Decision {
        outcome,
        apply: Some(desired),
        status: next_status(ss, true, "Unsealed", &message, Some(&key_ids), inp.now),
        event,
        key_ids,
        private_ops,
        message,
        data_changed,
    }
}

fn failed(inp: &Inputs<'_>, reason: Reason, message: String, private_ops: u32) -> Decision {
    let outcome = Outcome::Failed(reason);
    let status = next_status(inp.ss, false, reason.as_str(), &message, None, inp.now);
    // A failure the status already reports for this generation (same reason, same message) is
    // not announced again on every retry: a token down for an hour would otherwise make one
    // Warning Event per object per backoff step. Events mark changes; the status keeps saying it.
    let event = status.as_ref().and(outcome.event_reason()).map(|r| EventSpec {
        warning: true,
        reason: r,
        note: message.clone(),
    });
    Decision { outcome, apply: None, status, event, key_ids: Vec::new(), private_ops, message, data_changed: false }
}

/// Item names the SealedSecret manages in its Secret.
fn managed_keys(ss: &SealedSecretObject) -> Vec<String> {
    let mut keys: Vec<String> = ss.spec.encrypted_data.keys().cloned().collect();
    if let Some(t) = ss.spec.template.as_ref().and_then(|t| t.data.as_ref()) {
        keys.extend(t.keys().cloned());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitseal_keys::KeyPair;
    use gitseal_keys::generate::{DEFAULT_TTL, generate_key_pair};
    use gitseal_shared::manifest::secret::PlainSecret;
    use gitseal_shared::seal::{SealOptions, seal_secret, target_of};
    use gitseal_shared::value::RecipientSet;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
    use std::collections::BTreeMap;
    use std::sync::OnceLock;

    const NOW: &str = "2026-11-26T12:00:00Z";

    fn keys() -> &'static (KeyPair, KeyPair) {
        static K: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
        K.get_or_init(|| {
            let now = time::OffsetDateTime::now_utc();
            (
                generate_key_pair(gitseal_keys::RsaBits::Rsa2048, "", now, DEFAULT_TTL).unwrap(),
                generate_key_pair(gitseal_keys::RsaBits::Rsa2048, "", now, DEFAULT_TTL).unwrap(),
            )
        })
    }

    fn sealed(pair: &KeyPair, template_annotations: &[(&str, &str)]) -> SealedSecretObject {
        let doc = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "app", "labels": {"team": "a"},
                          "annotations": template_annotations.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>()},
            "stringData": {"password": "hunter2", "user": "admin"}
        });
        let plain = PlainSecret::from_value(&doc).unwrap();
        let set = RecipientSet::new(vec![pair.cert.recipient().unwrap()]).unwrap();
        let mut ss = seal_secret(&plain, &set, &SealOptions::default()).unwrap();
        ss.metadata.uid = Some("uid-1".into());
        ss.metadata.generation = Some(1);
        ss
    }

    fn digest_key() -> &'static DigestKey {
        static K: OnceLock<DigestKey> = OnceLock::new();
        K.get_or_init(|| DigestKey::generate().unwrap())
    }

    fn run(ss: &SealedSecretObject, keys: &[&DecryptionKey], revoked: &[KeyId], existing: Option<&Secret>) -> Decision {
        run_as(ApiGroup::Gitseal, ss, keys, revoked, existing)
    }

    fn run_as(
        group: ApiGroup,
        ss: &SealedSecretObject,
        keys: &[&DecryptionKey],
        revoked: &[KeyId],
        existing: Option<&Secret>,
    ) -> Decision {
        decide(&Inputs { ss, group, keys, revoked, existing, digest_key: digest_key(), now: NOW })
    }

    /// What the API server would hold after gitseal applied `d`.
    fn applied(d: &Decision) -> Secret {
        let mut s = d.apply.clone().unwrap();
        s.metadata.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some(FIELD_MANAGER.into()), ..Default::default() }]);
        s
    }

    fn with_status(mut ss: SealedSecretObject, d: &Decision) -> SealedSecretObject {
        ss.status = d.status.clone();
        ss
    }

    /// Issue 12, restart-on-change: only a real change of the data counts.
    #[test]
    fn data_changed_only_when_new_sealed_inputs_give_new_data() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        assert!(!first.data_changed, "the first creation restarts nothing");
        let secret = applied(&first);
        let ss = with_status(ss, &first);
        let resync = run(&ss, &[&k], &[], Some(&secret));
        assert_eq!(resync.outcome, Outcome::InSync);
        assert!(!resync.data_changed);
        // Re-sealed (e.g. for a new key): new ciphertext, same data.
        let mut resealed = sealed(&keys().0, &[]);
        resealed.metadata.generation = Some(2);
        let d = run(&resealed, &[&k], &[], Some(&secret));
        assert_eq!(d.outcome, Outcome::Unsealed);
        assert!(!d.data_changed, "a re-encryption is no change");
        // A new value from Git.
        let mut changed = resealed.clone();
        let other = sealed_value(&keys().0, "rotated");
        changed.spec.encrypted_data.insert("password".into(), other);
        let d = run(&changed, &[&k], &[], Some(&secret));
        assert_eq!(d.outcome, Outcome::Unsealed);
        assert!(d.data_changed);
        // A direct edit reverted: drift repair, not a change of the sealed data.
        let mut edited = secret.clone();
        edited.data.as_mut().unwrap().insert("password".into(), k8s_openapi::ByteString(b"edited".to_vec()));
        let d = run(&ss, &[&k], &[], Some(&edited));
        assert_eq!(d.outcome, Outcome::DriftReverted);
        assert!(!d.data_changed);
    }

    /// `value` sealed for app/db (strict) with `pair`.
    fn sealed_value(pair: &KeyPair, value: &str) -> String {
        let set = RecipientSet::new(vec![pair.cert.recipient().unwrap()]).unwrap();
        let target = gitseal_shared::Target::new(gitseal_shared::Scope::Strict, Some("app"), Some("db")).unwrap();
        gitseal_shared::value::encode_base64(&set.seal(&target, value.as_bytes()).unwrap())
    }

    #[test]
    fn a_new_sealed_secret_becomes_an_owned_secret_with_the_template() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let d = run(&ss, &[&k], &[], None);
        assert_eq!(d.outcome, Outcome::Unsealed);
        assert_eq!(d.private_ops, 2, "one private op per value");
        let s = d.apply.as_ref().unwrap();
        assert_eq!(s.data.as_ref().unwrap()["password"].0, b"hunter2");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert_eq!(s.metadata.labels.as_ref().unwrap()["team"], "a");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("uid-1", Some(true)));
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.key_id.as_deref(), Some(k.id().as_str()));
        assert_eq!(d.event.as_ref().unwrap().reason, "Unsealed");
    }

    #[test]
    fn an_unchanged_secret_costs_no_private_key_operation() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        let ss = with_status(ss, &first);
        let again = run(&ss, &[&k], &[], Some(&applied(&first)));
        assert_eq!(again.outcome, Outcome::InSync);
        assert_eq!(again.private_ops, 0);
        assert!(again.apply.is_none() && again.status.is_none() && again.event.is_none());
    }

    #[test]
    fn a_changed_object_without_key_hints_tries_the_key_its_status_names_first() {
        let (k, other) = (keys().0.decryption_key().unwrap(), keys().1.decryption_key().unwrap());
        let mut ss = sealed(&keys().0, &[]);
        // As kubeseal makes it: no key-id annotation.
        ss.metadata.annotations.get_or_insert_default().remove(gitseal_shared::keyid::KEY_ID_ANNOTATION);
        let first = run(&ss, &[&other, &k], &[], None);
        assert_eq!(first.private_ops, 2 + 1, "the wrong key once, then the key that opened the first value");
        let mut ss = with_status(ss, &first);
        ss.metadata.generation = Some(2);
        ss.spec.encrypted_data.insert("extra".into(), ss.spec.encrypted_data["user"].clone());
        let changed = run(&ss, &[&other, &k], &[], Some(&applied(&first)));
        assert_eq!(changed.outcome, Outcome::Unsealed);
        assert_eq!(changed.private_ops, 3, "one private operation per value: the status named the key");
    }

    #[test]
    fn a_trimmed_cached_object_is_found_in_sync_without_its_ciphertext_and_a_changed_one_is_not() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        let ss = with_status(ss, &first);
        let existing = applied(&first);
        let mut cached = ss.clone();
        crate::trim::for_cache(&mut cached);
        let cheap = |o: &SealedSecretObject| {
            without_keys(&Inputs {
                ss: o,
                group: ApiGroup::Gitseal,
                keys: &[],
                revoked: &[],
                existing: Some(&existing),
                digest_key: digest_key(),
                now: NOW,
            })
        };
        let d = cheap(&cached).expect("in sync from the cache");
        assert_eq!((d.outcome, d.private_ops), (Outcome::InSync, 0));
        // A new value under the same item name: the cached digest differs, the values must open.
        let mut changed = ss.clone();
        changed.spec.encrypted_data.insert("password".into(), ss.spec.encrypted_data["user"].clone());
        crate::trim::for_cache(&mut changed);
        assert!(cheap(&changed).is_none());
        // A revoked key is never in sync from the cache either.
        let revoked = [k.id().clone()];
        let inputs = Inputs {
            ss: &cached,
            group: ApiGroup::Gitseal,
            keys: &[],
            revoked: &revoked,
            existing: Some(&existing),
            digest_key: digest_key(),
            now: NOW,
        };
        assert!(without_keys(&inputs).is_none());
    }

    #[test]
    fn a_direct_edit_of_the_secret_is_reverted() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        let ss = with_status(ss, &first);
        let mut edited = applied(&first);
        edited.data.as_mut().unwrap().insert("password".into(), ByteString(b"changed".to_vec()));
        let d = run(&ss, &[&k], &[], Some(&edited));
        assert_eq!(d.outcome, Outcome::DriftReverted);
        assert_eq!(d.apply.as_ref().unwrap().data.as_ref().unwrap()["password"].0, b"hunter2");
        assert_eq!(d.event.as_ref().unwrap().reason, "DriftReverted");
    }

    #[test]
    fn a_deleted_secret_is_recreated_as_drift() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        let d = run(&with_status(ss, &first), &[&k], &[], None);
        assert_eq!(d.outcome, Outcome::DriftReverted);
        assert!(d.apply.is_some());
    }

    #[test]
    fn an_unowned_secret_is_left_alone_and_reported() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let foreign =
            Secret { metadata: ObjectMeta { name: Some("db".into()), ..Default::default() }, ..Default::default() };
        let d = run(&ss, &[&k], &[], Some(&foreign));
        assert_eq!(d.outcome, Outcome::Failed(Reason::SecretNotOwned));
        assert!(d.apply.is_none());
        assert!(d.message.contains(MANAGED_ANNOTATION));
        assert_eq!(d.private_ops, 0, "no key spent on a Secret we may not write");
    }

    #[test]
    fn managed_adopts_and_patch_merges_without_taking_ownership() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let annotated = |a: &str| Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                annotations: Some([(a.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let managed = run(&ss, &[&k], &[], Some(&annotated(MANAGED_ANNOTATION)));
        assert!(managed.apply.as_ref().unwrap().metadata.owner_references.is_some());
        let patched = run(&ss, &[&k], &[], Some(&annotated(PATCH_ANNOTATION)));
        assert_eq!(patched.outcome, Outcome::Unsealed);
        assert!(patched.apply.as_ref().unwrap().metadata.owner_references.is_none());
    }

    #[test]
    fn skip_set_owner_references_in_the_template_is_honoured() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[(SKIP_OWNER_REFERENCES_ANNOTATION, "true")]);
        let d = run(&ss, &[&k], &[], None);
        assert!(d.apply.as_ref().unwrap().metadata.owner_references.is_none());
    }

    /// A retried failure the status already reports makes no new Event (a token down for an hour
    /// must not make one per object per backoff step); a new generation that fails again does.
    #[test]
    fn a_failure_already_in_the_status_is_not_announced_again_until_the_object_changes() {
        let other = keys().1.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&other], &[], None);
        assert_eq!(first.event.as_ref().map(|e| e.reason), Some("DecryptFailed"));
        let ss = with_status(ss, &first);
        let retried = run(&ss, &[&other], &[], None);
        assert_eq!(retried.outcome, Outcome::Failed(Reason::DecryptFailed));
        assert!(retried.status.is_none() && retried.event.is_none(), "nothing new to say");
        let mut changed = ss.clone();
        changed.metadata.generation = Some(ss.metadata.generation.unwrap_or(1) + 1);
        let again = run(&changed, &[&other], &[], None);
        assert_eq!(again.event.as_ref().map(|e| e.reason), Some("DecryptFailed"));
    }

    #[test]
    fn a_wrong_key_fails_without_leaking_anything() {
        let other = keys().1.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let d = run(&ss, &[&other], &[], None);
        assert_eq!(d.outcome, Outcome::Failed(Reason::DecryptFailed));
        assert!(d.apply.is_none());
        let status = d.status.unwrap();
        assert_eq!(
            (status.conditions[0].status.as_str(), status.conditions[0].reason.as_deref()),
            ("False", Some("DecryptFailed"))
        );
        assert!(!d.message.contains("hunter2") && d.message.contains("password"));
    }

    #[test]
    fn a_token_that_does_not_answer_is_key_unavailable_not_a_bad_or_undecryptable_sealed_secret() {
        let (token, gone) = crate::testing::Switchable::wrap(&keys().0.decryption_key().unwrap(), true);
        let other = keys().1.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        for keyring in [vec![&gone], vec![&other, &gone], vec![&gone, &other]] {
            let d = run(&ss, &keyring, &[], None);
            assert_eq!(d.outcome, Outcome::Failed(Reason::KeyUnavailable));
            assert!(d.apply.is_none());
            let status = d.status.as_ref().unwrap();
            assert_eq!(
                (status.conditions[0].status.as_str(), status.conditions[0].reason.as_deref()),
                ("False", Some("KeyUnavailable"))
            );
            let event = d.event.as_ref().unwrap();
            assert!(event.warning && event.reason == "KeyUnavailable", "{event:?}");
            assert!(d.message.contains("unavailable") && !d.message.contains("hunter2"), "{}", d.message);
        }
        // The token comes back: the same object, its status saying KeyUnavailable, unseals.
        let failed = run(&ss, &[&gone], &[], None);
        token.set_down(false);
        let back = run(&with_status(ss, &failed), &[&gone], &[], None);
        assert_eq!(back.outcome, Outcome::Unsealed);
        assert_eq!(back.status.unwrap().conditions[0].status, "True");
    }

    #[test]
    fn a_secret_in_sync_stays_in_sync_while_the_token_is_gone() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        let (_token, gone) = crate::testing::Switchable::wrap(&k, true);
        let d = run(&with_status(ss, &first), &[&gone], &[], Some(&applied(&first)));
        assert_eq!(d.outcome, Outcome::InSync, "the fast path needs no key");
    }

    #[test]
    fn a_value_on_a_revoked_key_reports_key_revoked() {
        let revoked_key = keys().0.decryption_key().unwrap();
        let other = keys().1.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let d = run(&ss, &[&other], &[revoked_key.id().clone()], None);
        assert_eq!(d.outcome, Outcome::Failed(Reason::KeyRevoked));
    }

    #[test]
    fn an_immutable_secret_that_differs_is_reported_not_rewritten() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        let mut existing = applied(&first);
        existing.immutable = Some(true);
        existing.data.as_mut().unwrap().insert("user".into(), ByteString(b"root".to_vec()));
        let d = run(&ss, &[&k], &[], Some(&existing));
        assert_eq!(d.outcome, Outcome::Failed(Reason::SecretImmutable));
    }

    #[test]
    fn without_keys_nothing_is_decided_but_no_keys() {
        let ss = sealed(&keys().0, &[]);
        assert_eq!(run(&ss, &[], &[], None).outcome, Outcome::Failed(Reason::NoKeys));
    }

    #[test]
    fn a_repeated_failure_does_not_rewrite_the_status() {
        let other = keys().1.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&other], &[], None);
        let second = run(&with_status(ss, &first), &[&other], &[], None);
        assert!(second.status.is_none());
    }

    #[test]
    fn issue_9_template_bomb_fails_as_template_failed_and_makes_no_secret() {
        let k = keys().0.decryption_key().unwrap();
        let mut ss = sealed(&keys().0, &[]);
        let mut data = BTreeMap::new();
        data.insert("t0".to_string(), "{{ .password }}".repeat(10));
        for i in 1..8 {
            data.insert(format!("t{i}"), format!("{{{{ .t{} }}}}", i - 1).repeat(10));
        }
        ss.spec.template.as_mut().unwrap().data = Some(data);
        let d = run(&ss, &[&k], &[], None);
        assert_eq!(d.outcome, Outcome::Failed(Reason::TemplateFailed));
        assert!(d.apply.is_none());
        assert!(d.message.contains("not an encryptedData item"), "{}", d.message);
        assert!(!d.message.contains("hunter2"));
        assert_eq!(d.event.as_ref().unwrap().reason, "TemplateFailed");
    }

    #[test]
    fn a_legacy_blob_that_is_not_a_secret_reads_like_one_that_does_not_decrypt() {
        let k = keys().0.decryption_key().unwrap();
        let mut ss = sealed(&keys().0, &[]);
        ss.spec.encrypted_data.clear();
        let target = target_of(&ss).unwrap();
        let legacy = |pair: &KeyPair, plain: &[u8]| {
            let set = RecipientSet::new(vec![pair.cert.recipient().unwrap()]).unwrap();
            gitseal_shared::value::encode_base64(&set.seal(&target, plain).unwrap())
        };
        ss.spec.data = Some(legacy(&keys().0, b"{\"kind\": \"not-a-secret hunter2\"}"));
        let unusable = run(&ss, &[&k], &[], None);
        ss.spec.data = Some(legacy(&keys().1, b"{}"));
        let undecryptable = run(&ss, &[&k], &[], None);
        assert_eq!(unusable.outcome, Outcome::Failed(Reason::DecryptFailed));
        assert_eq!(unusable.outcome, undecryptable.outcome);
        assert_eq!(unusable.message, undecryptable.message);
        assert!(!unusable.message.contains("hunter2") && !unusable.message.contains("not-a-secret"));
    }

    #[test]
    fn a_secret_of_another_sealed_secret_is_never_taken_over_across_groups() {
        let k = keys().0.decryption_key().unwrap();
        let platform = sealed(&keys().0, &[]);
        let first = run_as(ApiGroup::Bitnami, &platform, &[&k], &[], None);
        let existing = applied(&first); // owned by uid-1, written by gitseal's field manager
        let mut tenant = sealed(&keys().0, &[]);
        tenant.metadata.uid = Some("uid-tenant".into());
        let d = run_as(ApiGroup::Gitseal, &tenant, &[&k], &[], Some(&existing));
        assert_eq!(d.outcome, Outcome::Failed(Reason::SecretNotOwned));
        assert!(d.apply.is_none());
        assert_eq!(d.private_ops, 0);
        // Not even with the managed annotation (a template may put it on the Secret).
        let mut annotated = existing.clone();
        annotated.metadata.annotations.get_or_insert_default().insert(MANAGED_ANNOTATION.into(), "true".into());
        let d = run_as(ApiGroup::Gitseal, &tenant, &[&k], &[], Some(&annotated));
        assert_eq!(d.outcome, Outcome::Failed(Reason::SecretNotOwned));
        // The platform's own object still is in sync.
        let again = run_as(ApiGroup::Bitnami, &with_status(platform, &first), &[&k], &[], Some(&existing));
        assert_eq!(again.outcome, Outcome::InSync);
    }

    #[test]
    fn without_owner_references_the_owner_annotation_decides() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[(SKIP_OWNER_REFERENCES_ANNOTATION, "true")]);
        let first = run(&ss, &[&k], &[], None);
        let existing = applied(&first);
        assert_eq!(existing.metadata.annotations.as_ref().unwrap()[OWNER_UID_ANNOTATION], "uid-1");
        let ss = with_status(ss, &first);
        assert_eq!(run(&ss, &[&k], &[], Some(&existing)).outcome, Outcome::InSync);
        // The same UID under the other group is someone else.
        assert_eq!(
            run_as(ApiGroup::Bitnami, &ss, &[&k], &[], Some(&existing)).outcome,
            Outcome::Failed(Reason::SecretNotOwned)
        );
        let mut other = ss.clone();
        other.metadata.uid = Some("uid-2".into());
        assert_eq!(run(&other, &[&k], &[], Some(&existing)).outcome, Outcome::Failed(Reason::SecretNotOwned));
        // A field manager alone proves nothing.
        let mut unclaimed = existing.clone();
        unclaimed.metadata.annotations.as_mut().unwrap().remove(OWNER_UID_ANNOTATION);
        assert_eq!(run(&ss, &[&k], &[], Some(&unclaimed)).outcome, Outcome::Failed(Reason::SecretNotOwned));
    }

    #[test]
    fn an_edit_that_recomputes_an_unkeyed_digest_is_drift() {
        use sha2::{Digest, Sha256};
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let first = run(&ss, &[&k], &[], None);
        let ss = with_status(ss, &first);
        let mut edited = applied(&first);
        edited.data.as_mut().unwrap().insert("password".into(), ByteString(b"changed".to_vec()));
        let forged = gitseal_shared::hex::encode(&Sha256::digest(b"anything an editor can compute"));
        edited.metadata.annotations.as_mut().unwrap().insert(DATA_DIGEST_ANNOTATION.into(), forged);
        let d = run(&ss, &[&k], &[], Some(&edited));
        assert_eq!(d.outcome, Outcome::DriftReverted);
        // Under a rotated digest key an untouched Secret costs one re-verification, not drift.
        let other_key = DigestKey::generate().unwrap();
        let existing = applied(&first);
        let d = decide(&Inputs {
            ss: &ss,
            group: ApiGroup::Gitseal,
            keys: &[&k],
            revoked: &[],
            existing: Some(&existing),
            digest_key: &other_key,
            now: NOW,
        });
        assert_eq!(d.outcome, Outcome::Unsealed);
        assert!(d.private_ops > 0);
    }

    #[test]
    fn debug_output_never_shows_secret_values() {
        let k = keys().0.decryption_key().unwrap();
        let ss = sealed(&keys().0, &[]);
        let d = run(&ss, &[&k], &[], None);
        let existing = applied(&d);
        let printed = format!("{d:?}");
        assert!(printed.contains("data redacted") && !printed.contains("hunter2"));
        let inputs = Inputs {
            ss: &ss,
            group: ApiGroup::Gitseal,
            keys: &[&k],
            revoked: &[],
            existing: Some(&existing),
            digest_key: digest_key(),
            now: NOW,
        };
        let printed = format!("{inputs:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("104, 117, 110"));
    }
}
