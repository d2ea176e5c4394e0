//! The pure decision: given a SealedSecret, the usable keys and the Secret that exists now,
//! which Secret and which status should exist, and what to tell people about it.
//!
//! No I/O and no clock: [`reconcile`](crate::reconcile) fetches the inputs, calls [`decide`],
//! and applies the [`Decision`]. Every rule of Bitnami's controller (§3.4 of the reference)
//! and every rule gitseal adds (drift repair, digests that spare a decryption, key revocation)
//! is decided here and tested with plain `#[test]`s.

use std::collections::BTreeMap;

use gitseal_shared::seal::{key_hints, target_of, unseal};
use gitseal_shared::types::{ApiGroup, SealedSecretCondition, SealedSecretObject, SealedSecretStatus};
use gitseal_shared::value::DecryptionKey;
use gitseal_shared::{Error as CoreError, KeyId};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

/// The field manager of every server-side apply gitseal makes.
pub const FIELD_MANAGER: &str = "gitseal-controller";
/// On a produced Secret: digest of the sealed inputs it was made from.
pub const SEALED_DIGEST_ANNOTATION: &str = "gitseal.dev/sealed-digest";
/// On a produced Secret: digest of the data gitseal wrote, to notice direct edits.
pub const DATA_DIGEST_ANNOTATION: &str = "gitseal.dev/data-digest";
/// On a produced Secret: the apiVersion of the SealedSecret it comes from.
pub const SEALED_BY_ANNOTATION: &str = "gitseal.dev/sealed-by";
/// On a produced Secret: the keys that opened its values (the fast path reports these, not a
/// possibly stale status).
pub const KEY_IDS_ANNOTATION: &str = "gitseal.dev/key-id";
/// Label on every produced Secret, so the drift watch sees only gitseal's Secrets.
pub const MANAGED_LABEL: &str = "gitseal.dev/managed";
pub const MANAGED_ANNOTATION: &str = "sealedsecrets.bitnami.com/managed";
pub const PATCH_ANNOTATION: &str = "sealedsecrets.bitnami.com/patch";
pub const SKIP_OWNER_REFERENCES_ANNOTATION: &str = "sealedsecrets.bitnami.com/skip-set-owner-references";
pub const SYNCED: &str = "Synced";

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
#[derive(Debug)]
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
}

/// The inputs of a decision.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub ss: &'a SealedSecretObject,
    pub group: ApiGroup,
    /// Keys that may decrypt, newest first (revoked keys excluded).
    pub keys: &'a [&'a DecryptionKey],
    /// Ids of revoked keys.
    pub revoked: &'a [KeyId],
    pub existing: Option<&'a Secret>,
    /// RFC 3339 time for condition timestamps.
    pub now: &'a str,
}

pub fn decide(inp: &Inputs<'_>) -> Decision {
    let ss = inp.ss;
    let digest = sealed_digest(ss);
    let ours = inp.existing.is_some_and(|s| is_ours(s, ss));
    let status_key_ids: Vec<KeyId> =
        ss.status.as_ref().and_then(|s| s.key_id.as_deref()).map(KeyId::parse_list).unwrap_or_default();
    let on_revoked_key = |ids: &[KeyId]| ids.iter().any(|id| inp.revoked.contains(id));

    if let Some(existing) = inp.existing {
        let ann = existing.metadata.annotations.as_ref();
        let flag = |k: &str| ann.and_then(|a| a.get(k)).is_some_and(|v| v == "true");
        if !ours && !flag(MANAGED_ANNOTATION) && !flag(PATCH_ANNOTATION) {
            let msg = format!(
                "Secret {} already exists and is not managed by this SealedSecret: annotate it with {MANAGED_ANNOTATION}: \"true\" to let gitseal take it over",
                existing.metadata.name.as_deref().unwrap_or("")
            );
            return failed(inp, Reason::SecretNotOwned, msg, 0);
        }
        // Fast path: the Secret was made from exactly these sealed inputs and nobody touched it.
        let annotated = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
        let secret_key_ids = annotated(KEY_IDS_ANNOTATION).map(KeyId::parse_list).unwrap_or_default();
        if ours
            && ss.spec.data.is_none()
            && annotated(SEALED_DIGEST_ANNOTATION) == Some(digest.as_str())
            && annotated(DATA_DIGEST_ANNOTATION) == Some(data_digest(existing, &managed_keys(ss)).as_str())
            && !secret_key_ids.is_empty()
            && !on_revoked_key(&secret_key_ids)
        {
            let message = String::new();
            return Decision {
                outcome: Outcome::InSync,
                apply: None,
                status: next_status(ss, true, "Unsealed", &message, Some(&secret_key_ids), inp.now),
                event: None,
                key_ids: secret_key_ids,
                private_ops: 0,
                message,
            };
        }
    }

    if inp.keys.is_empty() {
        return failed(inp, Reason::NoKeys, "no sealing key is loaded yet".into(), 0);
    }
    // Failures that depend on plaintext read like decryption failures (issue #9, item 9).
    let unsealed = match unseal(ss, inp.keys).map_err(CoreError::for_remote) {
        Ok(u) => u,
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

    let desired = build_secret(inp, &unsealed.secret, &digest, &key_ids);
    let desired_digest =
        desired.metadata.annotations.as_ref().and_then(|a| a.get(DATA_DIGEST_ANNOTATION)).cloned().unwrap_or_default();

    let drift;
    if let Some(existing) = inp.existing {
        let current = data_digest(existing, &unsealed.secret.data.keys().cloned().collect::<Vec<_>>());
        if existing.immutable == Some(true) && current != desired_digest {
            let msg = "the target Secret is immutable and differs: delete it and gitseal recreates it".to_string();
            return failed(inp, Reason::SecretImmutable, msg, private_ops);
        }
        let ann = existing.metadata.annotations.as_ref();
        drift = ours && ann.and_then(|a| a.get(SEALED_DIGEST_ANNOTATION)) == Some(&digest) && current != desired_digest;
    } else {
        // Gone although it was produced from this very generation: someone deleted it.
        drift = ss.status.as_ref().is_some_and(|s| {
            s.observed_generation == ss.metadata.generation
                && s.conditions.iter().any(|c| c.type_ == SYNCED && c.status == "True")
        });
    }
    let (outcome, event) = if drift {
        let note = "the Secret was changed or deleted outside Git and has been restored".to_string();
        (Outcome::DriftReverted, EventSpec { warning: true, reason: "DriftReverted", note })
    } else {
        (
            Outcome::Unsealed,
            EventSpec { warning: false, reason: "Unsealed", note: "SealedSecret unsealed successfully".into() },
        )
    };
    let message = String::new();
    Decision {
        outcome,
        apply: Some(desired),
        status: next_status(ss, true, "Unsealed", &message, Some(&key_ids), inp.now),
        event: Some(event),
        key_ids,
        private_ops,
        message,
    }
}

fn failed(inp: &Inputs<'_>, reason: Reason, message: String, private_ops: u32) -> Decision {
    Decision {
        outcome: Outcome::Failed(reason),
        apply: None,
        status: next_status(inp.ss, false, reason.as_str(), &message, None, inp.now),
        event: Some(EventSpec { warning: true, reason: reason.as_str(), note: message.clone() }),
        key_ids: Vec::new(),
        private_ops,
        message,
    }
}

/// The status to write, or `None` when the current one already says the same.
fn next_status(
    ss: &SealedSecretObject,
    ok: bool,
    reason: &str,
    message: &str,
    key_ids: Option<&[KeyId]>,
    now: &str,
) -> Option<SealedSecretStatus> {
    let current = ss.status.clone().unwrap_or_default();
    let status = if ok { "True" } else { "False" };
    let old = current.conditions.iter().find(|c| c.type_ == SYNCED);
    let key_id = match key_ids {
        Some(ids) if !ids.is_empty() => Some(KeyId::join(ids.iter().cloned())),
        Some(_) => current.key_id.clone(),
        None => current.key_id.clone(),
    };
    let unchanged = old.is_some_and(|c| {
        c.status == status && c.reason.as_deref() == Some(reason) && c.message.as_deref().unwrap_or("") == message
    }) && current.observed_generation == ss.metadata.generation
        && current.key_id == key_id;
    if unchanged {
        return None;
    }
    let transition = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now.to_string()),
    };
    let condition = SealedSecretCondition {
        type_: SYNCED.into(),
        status: status.into(),
        last_update_time: Some(now.into()),
        last_transition_time: transition,
        reason: Some(reason.into()),
        message: (!message.is_empty()).then(|| message.to_string()),
    };
    // Synced first: Bitnami's printer columns read conditions[0].
    let mut conditions = vec![condition];
    conditions.extend(current.conditions.into_iter().filter(|c| c.type_ != SYNCED));
    Some(SealedSecretStatus { observed_generation: ss.metadata.generation, conditions, key_id })
}

/// Whether gitseal produced `secret` for `ss`: it is controlled by it, or gitseal's field
/// manager applied it (Secrets without owner references).
pub fn is_ours(secret: &Secret, ss: &SealedSecretObject) -> bool {
    let uid = ss.metadata.uid.as_deref();
    let owned = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid);
    let applied = secret.metadata.managed_fields.iter().flatten().any(|m| m.manager.as_deref() == Some(FIELD_MANAGER));
    owned || applied
}

/// Item names the SealedSecret manages in its Secret.
fn managed_keys(ss: &SealedSecretObject) -> Vec<String> {
    let mut keys: Vec<String> = ss.spec.encrypted_data.keys().cloned().collect();
    if let Some(t) = ss.spec.template.as_ref().and_then(|t| t.data.as_ref()) {
        keys.extend(t.keys().cloned());
    }
    keys
}

/// Digest of everything the produced Secret depends on.
pub fn sealed_digest(ss: &SealedSecretObject) -> String {
    let mut h = Sha256::new();
    let target = target_of(ss).map(|t| t.to_string()).unwrap_or_default();
    h.update(target.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(&ss.spec).unwrap_or_default());
    h.update([0]);
    h.update(ss.metadata.uid.as_deref().unwrap_or("").as_bytes());
    hex(&h.finalize())
}

/// Digest of a Secret's type and the given data items, to notice direct edits.
pub fn data_digest(secret: &Secret, keys: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(secret.type_.as_deref().unwrap_or("Opaque").as_bytes());
    let data = secret.data.as_ref();
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    for k in sorted {
        h.update([0]);
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        match data.and_then(|d| d.get(k)) {
            Some(v) => {
                h.update([1]);
                h.update((v.0.len() as u64).to_be_bytes());
                h.update(&v.0);
            }
            None => h.update([2]),
        }
    }
    hex(&h.finalize())
}

fn build_secret(
    inp: &Inputs<'_>,
    plain: &gitseal_shared::manifest::secret::PlainSecret,
    digest: &str,
    key_ids: &[KeyId],
) -> Secret {
    let ss = inp.ss;
    let existing_ann = inp.existing.and_then(|s| s.metadata.annotations.as_ref());
    let flag = |k: &str| existing_ann.and_then(|a| a.get(k)).is_some_and(|v| v == "true");
    let template_ann = plain.metadata.annotations.clone().unwrap_or_default();
    let skip_owner = template_ann.get(SKIP_OWNER_REFERENCES_ANNOTATION).is_some_and(|v| v == "true");
    let patch_only =
        flag(PATCH_ANNOTATION) && !flag(MANAGED_ANNOTATION) && !inp.existing.is_some_and(|s| is_ours(s, ss));

    let data: BTreeMap<String, ByteString> =
        plain.data.iter().map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec()))).collect();
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: ss.metadata.name.clone(),
            namespace: ss.metadata.namespace.clone(),
            labels: plain.metadata.labels.clone(),
            annotations: Some(template_ann),
            ..Default::default()
        },
        type_: plain.type_.clone(),
        immutable: plain.immutable,
        data: Some(data),
        ..Default::default()
    };
    if !skip_owner && !patch_only {
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: inp.group.api_version().into(),
            kind: gitseal_shared::types::KIND.into(),
            name: ss.metadata.name.clone().unwrap_or_default(),
            uid: ss.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
    }
    let keys: Vec<String> = plain.data.keys().cloned().collect();
    let dd = data_digest(&secret, &keys);
    let ann = secret.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(SEALED_DIGEST_ANNOTATION.into(), digest.into());
    ann.insert(DATA_DIGEST_ANNOTATION.into(), dd);
    ann.insert(SEALED_BY_ANNOTATION.into(), inp.group.api_version().into());
    ann.insert(KEY_IDS_ANNOTATION.into(), KeyId::join(key_ids.iter().cloned()));
    secret.metadata.labels.get_or_insert_with(BTreeMap::new).insert(MANAGED_LABEL.into(), "true".into());
    secret
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitseal_keys::KeyPair;
    use gitseal_keys::generate::{DEFAULT_TTL, generate_key_pair};
    use gitseal_shared::manifest::secret::PlainSecret;
    use gitseal_shared::seal::{SealOptions, seal_secret};
    use gitseal_shared::value::RecipientSet;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use std::sync::OnceLock;

    const NOW: &str = "2026-11-26T12:00:00Z";

    fn keys() -> &'static (KeyPair, KeyPair) {
        static K: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
        K.get_or_init(|| {
            let now = time::OffsetDateTime::now_utc();
            (
                generate_key_pair(2048, "", now, DEFAULT_TTL).unwrap(),
                generate_key_pair(2048, "", now, DEFAULT_TTL).unwrap(),
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

    fn run(ss: &SealedSecretObject, keys: &[&DecryptionKey], revoked: &[KeyId], existing: Option<&Secret>) -> Decision {
        decide(&Inputs { ss, group: ApiGroup::Gitseal, keys, revoked, existing, now: NOW })
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
}
