//! Key operations for the security team, behind the authenticated API: list, rotate now,
//! retire, revoke, and back up (encrypted to age recipients inside the controller, so private
//! keys never leave it in plaintext). Every operation is audited with its caller.

use std::io::Write as _;
use std::str::FromStr;

use gitseal_shared::KeyId;
use gitseal_shared::api::{BackupStatus, KeyInfo, KeyList, KeyStateStatus, RotationStatus};
use gitseal_shared::audit::{Caller, Outcome as AuditOutcome};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::Shared;
use crate::audit::AuditLog;
use crate::registry::{
    BACKED_UP_ANNOTATION, BITNAMI_KEY_LABEL, GITSEAL_KEY_LABEL, KeyState, PENDING_BACKUP_ANNOTATION,
};

#[derive(Debug, thiserror::Error)]
pub enum KeyOpError {
    #[error("no key {0} in this controller")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
    /// Refused by the controller's configuration (e.g. a backup recipient not allowed).
    #[error("{0}")]
    Forbidden(String),
}

/// The Secrets a backup carries besides the keys: the digest key (so a restored cluster does
/// not re-verify every Secret) and the revocation list (so a restore into an empty cluster
/// keeps revoked keys revoked; `gitseal keys restore` merges it with the cluster's).
fn backup_extras(shared: &Shared) -> Vec<Value> {
    use crate::registry::{
        DIGEST_KEY_ITEM, DIGEST_KEY_LABEL_VALUE, DIGEST_KEY_SECRET, REVOCATION_LIST_ITEM, REVOCATION_LIST_LABEL_VALUE,
        REVOCATION_LIST_SECRET, format_revocation_list,
    };
    let b64 = gitseal_shared::value::encode_base64;
    let secret = |name: &str, label: &str, item: &str, bytes: &[u8]| {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": shared.config.namespace, "labels": {GITSEAL_KEY_LABEL: label}},
            "data": {item: b64(bytes)},
        })
    };
    let mut extras = Vec::new();
    if let Some(k) = shared.registry.digest_key() {
        extras.push(secret(DIGEST_KEY_SECRET, DIGEST_KEY_LABEL_VALUE, DIGEST_KEY_ITEM, k.bytes()));
    }
    let revoked = shared.registry.revocation_list();
    if !revoked.is_empty() {
        let text = format_revocation_list(&revoked);
        extras.push(secret(REVOCATION_LIST_SECRET, REVOCATION_LIST_LABEL_VALUE, REVOCATION_LIST_ITEM, text.as_bytes()));
    }
    extras
}

fn audit(shared: &Shared, action: &str, caller: &Caller, key_id: Option<String>, result: &Result<(), String>) {
    let mut rec = AuditLog::record(action, if result.is_ok() { AuditOutcome::Success } else { AuditOutcome::Failure });
    rec.caller = Some(caller.clone());
    rec.key_id = key_id;
    if let Err(m) = result {
        rec.message = Some(m.clone());
    }
    shared.audit.write(rec);
}

/// Every key with its state, newest first.
pub fn list(shared: &Shared) -> KeyList {
    let sealing = shared.registry.sealing().map(|k| k.id().clone());
    let items = shared
        .registry
        .all()
        .iter()
        .map(|k| KeyInfo {
            key_id: k.id().to_string(),
            secret_name: Some(k.secret_name.clone()),
            created: k.created.clone(),
            not_before: k.not_before().map(gitseal_keys::cert::fmt_time),
            not_after: k.cert.not_after().map(gitseal_keys::cert::fmt_time),
            state: k.state.as_str().into(),
            pending_backup: k.pending_backup,
            latest: sealing.as_ref() == Some(k.id()),
            bitnami: k.bitnami,
            age_recipient: k.decryption.age_recipient().map(|r| r.to_string()),
            backend: k.decryption.unwrap_path().map(|p| p.as_str().to_string()),
            extra: serde_json::Map::new(),
        })
        .collect();
    KeyList::new(items)
}

/// Make a new key now.
pub async fn rotate(shared: &Shared, caller: &Caller) -> Result<RotationStatus, KeyOpError> {
    let id = crate::keys::generate(shared, "Requested", Some(caller.clone()))
        .await
        .map_err(|e| KeyOpError::Failed(crate::error::report(&e)))?;
    let secret = shared.registry.find(&id).map(|k| k.secret_name.clone());
    Ok(RotationStatus { key_id: id.to_string(), secret_name: secret })
}

/// Retire (still decrypts, never seals) or revoke (compromised: not used at all) a key.
pub async fn set_state(
    shared: &Shared,
    caller: &Caller,
    key_id: &str,
    state: KeyState,
) -> Result<KeyStateStatus, KeyOpError> {
    let action = match state {
        KeyState::Retired => "KeyRetired",
        KeyState::Revoked => "KeyRevoked",
        KeyState::Active => "KeyActivated",
    };
    let id = KeyId::from_str(key_id).map_err(|e| KeyOpError::BadRequest(format!("spec.keyId: {e}")))?;
    let Some(key) = shared.registry.find(&id) else {
        audit(shared, action, caller, Some(key_id.into()), &Err("unknown key id".into()));
        return Err(KeyOpError::NotFound(key_id.into()));
    };
    if key.state == KeyState::Revoked && state != KeyState::Revoked {
        return Err(KeyOpError::Conflict(format!("key {key_id} is revoked; a revoked key never comes back")));
    }
    if state == KeyState::Revoked {
        // The revocation list first: once it holds the id, no label, deletion or restore of the
        // key Secret brings the key back.
        shared.registry.revoke_ids(key.decryption.ids().cloned());
        if let Err(e) = crate::keys::persist_revocations(shared).await {
            let result = Err(format!("cannot write the revocation list: {e}"));
            audit(shared, action, caller, Some(key.id().to_string()), &result);
            return Err(KeyOpError::Failed(
                "cannot write the revocation list; the key is revoked in this replica only: retry".into(),
            ));
        }
    }
    let bitnami_value = if state == KeyState::Revoked { "compromised" } else { "active" };
    let patch = json!({"metadata": {"labels": {GITSEAL_KEY_LABEL: state.as_str(), BITNAMI_KEY_LABEL: bitnami_value}}});
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let result = api
        .patch(&key.secret_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    audit(shared, action, caller, Some(key.id().to_string()), &result);
    result.map_err(KeyOpError::Failed)?;
    Ok(KeyStateStatus { key_id: key.id().to_string(), state: state.as_str().into() })
}

/// Encrypt every key (as a YAML v1 List of key Secrets) to the given age recipients and mark the
/// keys backed up. Returns the base64 of a binary age file.
pub async fn backup(shared: &Shared, caller: &Caller, recipients: &[String]) -> Result<BackupStatus, KeyOpError> {
    if recipients.is_empty() {
        return Err(KeyOpError::BadRequest("spec.recipients: give at least one age recipient (age1…)".into()));
    }
    let parsed: Vec<age::x25519::Recipient> = recipients
        .iter()
        .map(|r| {
            age::x25519::Recipient::from_str(r.trim())
                .map_err(|_| KeyOpError::BadRequest(format!("not an age recipient: {r}")))
        })
        .collect::<Result<_, _>>()?;
    let allowed = &shared.config.backup_recipients;
    if !allowed.is_empty() {
        let foreign: Vec<String> = parsed.iter().map(ToString::to_string).filter(|r| !allowed.contains(r)).collect();
        if !foreign.is_empty() {
            let message =
                format!("recipient(s) {} not in the controller's --backup-recipients allow-list", foreign.join(", "));
            let mut rec = AuditLog::record("KeyBackup", AuditOutcome::Failure);
            rec.caller = Some(caller.clone());
            rec.reason = Some("RecipientNotAllowed".into());
            rec.message = Some(message.clone());
            shared.audit.write(rec);
            return Err(KeyOpError::Forbidden(format!("{message}: no backup made")));
        }
    }
    let keys = shared.registry.all();
    if keys.is_empty() {
        return Err(KeyOpError::Conflict("no key to back up yet".into()));
    }
    // Export is a capability: a key held in a hardware token cannot be in a backup.
    if let Some(k) = keys.iter().find(|k| !k.decryption.exportable()) {
        let message = gitseal_keys::Error::NotExportable(k.id().clone()).to_string();
        let mut rec = AuditLog::record("KeyBackup", AuditOutcome::Failure);
        rec.caller = Some(caller.clone());
        rec.key_id = Some(k.id().to_string());
        rec.reason = Some("NotExportable".into());
        rec.message = Some(message.clone());
        shared.audit.write(rec);
        return Err(KeyOpError::Conflict(format!("{message}: no backup made")));
    }
    let mut items = Vec::new();
    for k in &keys {
        let data: serde_json::Map<String, Value> = gitseal_keys::generate::export_secret_data(&k.cert, &k.decryption)
            .map_err(|e| KeyOpError::Failed(e.to_string()))?
            .into_iter()
            .map(|(name, v)| (name.to_string(), Value::from(gitseal_shared::value::encode_base64(&v))))
            .collect();
        items.push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": k.secret_name, "namespace": shared.config.namespace,
                         "labels": {GITSEAL_KEY_LABEL: k.state.as_str(),
                                    BITNAMI_KEY_LABEL: if k.state == KeyState::Revoked { "compromised" } else { "active" }}},
            "data": data,
        }));
    }
    items.extend(backup_extras(shared));
    // The audit signing key travels with the sealing keys, so a restored cluster continues
    // the same verifiable history.
    items.extend(crate::audit::cluster::backup_item(shared).await);
    let list = zeroize::Zeroizing::new(
        gitseal_shared::manifest::to_yaml(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
            .map_err(|e| KeyOpError::Failed(e.to_string()))?,
    );
    drop(items);
    let dyns: Vec<&dyn age::Recipient> = parsed.iter().map(|r| r as &dyn age::Recipient).collect();
    let encryptor = age::Encryptor::with_recipients(dyns.into_iter()).map_err(|e| KeyOpError::Failed(e.to_string()))?;
    let mut out = Vec::new();
    let io = |e: std::io::Error| KeyOpError::Failed(e.to_string());
    let mut w = encryptor.wrap_output(&mut out).map_err(io)?;
    w.write_all(list.as_bytes()).map_err(io)?;
    w.finish().map_err(io)?;
    drop(list);

    let ids: Vec<String> = keys.iter().map(|k| k.id().to_string()).collect();
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let now = crate::audit::now_rfc3339();
    for k in &keys {
        let patch = json!({"metadata": {"annotations": {PENDING_BACKUP_ANNOTATION: null, BACKED_UP_ANNOTATION: now}}});
        if let Err(e) = api.patch(&k.secret_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(secret = %k.secret_name, error = %e, "cannot mark the key backed up");
        }
    }
    let mut rec = AuditLog::record("KeyBackup", AuditOutcome::Success);
    rec.caller = Some(caller.clone());
    rec.key_id = Some(ids.join(","));
    rec.message = Some(format!("{} keys encrypted to {} recipients", ids.len(), recipients.len()));
    shared.audit.write(rec);
    Ok(BackupStatus { backup: gitseal_shared::value::encode_base64(&out), key_ids: ids })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gitseal_shared::value::{DecryptionKey, SoftwareRsaKey, UnwrapKey, UnwrapPath};

    use super::*;
    use crate::registry::LoadedKey;
    use crate::testing::{Lines, shared_with};

    /// A key that behaves as one held in a token: it unwraps, and cannot be exported.
    struct HeldInToken(SoftwareRsaKey);

    impl UnwrapKey for HeldInToken {
        fn key_id(&self) -> &KeyId {
            self.0.key_id()
        }
        fn modulus_bytes(&self) -> usize {
            self.0.modulus_bytes()
        }
        fn path(&self) -> UnwrapPath {
            UnwrapPath::TokenRawRsa
        }
        fn unwrap(&self, wrapped: &[u8], label: &[u8]) -> gitseal_shared::Result<gitseal_shared::SecretBytes> {
            self.0.unwrap(wrapped, label)
        }
        fn export_pkcs8(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
            None
        }
    }

    #[tokio::test]
    async fn backup_of_a_key_held_in_a_token_is_refused_naming_the_key() {
        let lines = Lines::default();
        let shared = shared_with(&[], Box::new(lines.clone()));
        let pair = gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            time::OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
        .unwrap();
        let held = HeldInToken(SoftwareRsaKey::from_pkcs8(pair.rsa.pkcs8_der()).unwrap());
        let id = pair.rsa.id().clone();
        shared.registry.upsert(LoadedKey {
            secret_name: "token-key".into(),
            cert: pair.cert,
            decryption: DecryptionKey::from_rsa(Arc::new(held), None),
            state: KeyState::Active,
            bitnami: false,
            pending_backup: false,
            created: None,
            token_object: None,
        });
        assert_eq!(list(&shared).items.iter().filter(|k| k.backend.as_deref() == Some("pkcs11-raw-rsa")).count(), 1);
        let caller = Caller { user: "alice".into(), groups: Vec::new() };
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        let err = backup(&shared, &caller, &[recipient]).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, KeyOpError::Conflict(_)), "{message}");
        assert!(message.contains(id.as_str()) && message.contains("cannot be exported"), "{message}");
        assert!(!message.contains('\n'));
        assert!(lines.text().contains("NotExportable"));
    }
}
