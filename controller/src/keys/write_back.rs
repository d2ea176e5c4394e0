//! A key Secret deleted while its key is loaded is written back from memory, loudly (README
//! "Reliability"): what is written, how it is retried, how it is reported.

use std::sync::Arc;
use std::time::Duration;

use gitseal_keys::material::TLS_CRT;
use gitseal_shared::KeyId;
use gitseal_shared::audit::Outcome as AuditOutcome;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};

use super::{digest_key_secret, replaced, update_key_metrics};
use crate::Shared;
use crate::audit::AuditLog;
use crate::decide::DigestKey;
use crate::registry::{BITNAMI_KEY_LABEL, DIGEST_KEY_SECRET, GITSEAL_KEY_LABEL, KeyState, LoadedKey};

/// How often, and how far apart, a deleted key Secret is written back before giving up loudly.
pub(crate) const RESTORE_ATTEMPTS: u32 = 10;
pub(crate) const RESTORE_RETRY: Duration = Duration::from_secs(3);

/// A key Secret was deleted while its key was loaded (by hand, by a tool, by someone who can
/// edit the controller namespace). Bitnami's controller then makes a new key and can no longer
/// unseal what the old one sealed; gitseal keeps the key in memory (it still unseals and, when
/// latest, still seals), never makes a new key for it, says so loudly — an error log, a Warning
/// Event, a `KeySecretDeleted` audit record, `gitseal_key_secrets_deleted_total` (alerted on by
/// the chart's PrometheusRule) — and writes the Secret back from memory under the same name.
/// To retire a key on purpose, label it `retired` or `revoked` instead of deleting it. The one
/// deletion that is no loss: a software key Secret whose key another loaded Secret holds in a
/// token (`gitseal keys import-to-token`); it leaves the registry and is not written back.
pub(crate) fn key_secret_lost(shared: &Arc<Shared>, key: Arc<LoadedKey>) {
    let ns = &shared.config.namespace;
    let name = key.secret_name.clone();
    if key.token_object.is_none() && shared.registry.in_token_elsewhere(key.id(), &name) {
        // `gitseal keys import-to-token`: the key lives on in the token; its plaintext copy is
        // gone on purpose and must never be written back.
        shared.registry.remove(&name);
        tracing::info!(secret = %name, key_id = %key.id(), "software key Secret deleted; the key is held in the token");
        let mut rec = AuditLog::record("KeyMovedToToken", AuditOutcome::Success);
        rec.key_id = Some(key.id().to_string());
        rec.message = Some(format!("key Secret {ns}/{name} deleted; the key is kept only in the PKCS#11 token"));
        shared.audit.write(rec);
        update_key_metrics(shared);
        return;
    }
    shared.metrics.key_secrets_deleted.inc();
    let message = format!(
        "key Secret {ns}/{name} (key {}) was deleted while loaded; the key stays in memory and in use, and the Secret is written back from memory",
        key.id()
    );
    tracing::error!(secret = %name, key_id = %key.id(), "a loaded key Secret was deleted; keeping the key and restoring the Secret");
    let mut rec = AuditLog::record("KeySecretDeleted", AuditOutcome::Failure);
    rec.key_id = Some(key.id().to_string());
    rec.reason = Some("DeletedWhileLoaded".into());
    rec.message = Some(message.clone());
    shared.audit.write(rec);
    publish_key_event(shared, &name, EventType::Warning, "KeySecretDeleted", message);
    let shared = shared.clone();
    tokio::spawn(async move {
        let secret = match restored_key_secret(&shared, &key) {
            Ok(s) => s,
            Err(e) => {
                restore_failed(&shared, &name, Some(key.id()), &crate::error::report(&e));
                return;
            }
        };
        write_back(&shared, &name, Some(key.id()), secret).await;
    });
}

/// The digest-key Secret was deleted: the key in memory goes back under the same name (a new
/// one would cost every SealedSecret a re-verification), as loudly as a sealing key.
pub(crate) fn digest_key_secret_lost(shared: &Arc<Shared>, key: Arc<DigestKey>) {
    shared.metrics.key_secrets_deleted.inc();
    let message = format!(
        "the digest-key Secret {}/{DIGEST_KEY_SECRET} (digest key {}) was deleted; it is written back from memory",
        shared.config.namespace,
        key.id()
    );
    tracing::error!(secret = DIGEST_KEY_SECRET, "the digest-key Secret was deleted; restoring it from memory");
    let mut rec = AuditLog::record("KeySecretDeleted", AuditOutcome::Failure);
    rec.reason = Some("DeletedWhileLoaded".into());
    rec.message = Some(message.clone());
    shared.audit.write(rec);
    publish_key_event(shared, DIGEST_KEY_SECRET, EventType::Warning, "KeySecretDeleted", message);
    let shared = shared.clone();
    tokio::spawn(async move {
        let secret = digest_key_secret(&shared, &key);
        write_back(&shared, DIGEST_KEY_SECRET, None, secret).await;
    });
}

/// The key Secret as the controller would have written it: the state in gitseal's label (and
/// Bitnami's for an active or revoked key), the key material, the pending-backup mark.
pub(crate) fn restored_key_secret(shared: &Shared, key: &LoadedKey) -> crate::error::Result<Secret> {
    // A key in a token: the Secret only ever held its certificate and the token object's name.
    let (data, type_) = match &key.token_object {
        Some(_) => ([(TLS_CRT.to_string(), ByteString(key.cert.pem().as_bytes().to_vec()))].into(), "Opaque"),
        None => (
            gitseal_keys::generate::export_secret_data(&key.cert, &key.decryption)?
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
            "kubernetes.io/tls",
        ),
    };
    let mut labels = std::collections::BTreeMap::new();
    let bitnami_state = match key.state {
        KeyState::Active => Some("active"),
        KeyState::Revoked => Some("compromised"),
        KeyState::Retired => None,
    };
    if let Some(b) = bitnami_state {
        labels.insert(BITNAMI_KEY_LABEL.to_string(), b.to_string());
    }
    if !key.bitnami {
        labels.insert(GITSEAL_KEY_LABEL.to_string(), key.state.as_str().to_string());
    }
    let mut annotations = std::collections::BTreeMap::from([(
        crate::registry::RESTORED_BY_ANNOTATION.to_string(),
        "gitseal-controller (from memory, after the Secret was deleted)".to_string(),
    )]);
    if key.pending_backup {
        annotations.insert(crate::registry::PENDING_BACKUP_ANNOTATION.to_string(), "true".to_string());
    }
    annotations.extend(key.token_object.clone().unwrap_or_default());
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(key.secret_name.clone()),
            namespace: Some(shared.config.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(data),
        ..Default::default()
    })
}

/// Create `secret` again, retrying; already there (someone restored it first) is success.
pub(crate) async fn write_back(shared: &Shared, name: &str, key_id: Option<&KeyId>, secret: Secret) {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let mut last = String::new();
    for attempt in 1..=RESTORE_ATTEMPTS {
        let done = match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            // Someone wrote a Secret of that name first: restored only if it holds the same data;
            // otherwise it took the name (e.g. without the key label, which the watch does not
            // see): it is overwritten as a replaced key Secret is.
            Err(kube::Error::Api(ae)) if ae.code == 409 => match api.get_opt(name).await {
                Ok(Some(found)) if found.data == secret.data => Ok(()),
                Ok(_) => {
                    tracing::warn!(secret = %name, "another Secret took the deleted key Secret's name; overwriting it");
                    return Box::pin(replaced::overwrite(shared, name, key_id, secret)).await;
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => {
                written_back(shared, name, key_id, attempt);
                return;
            }
            Err(e) => {
                last = e.to_string();
                tracing::warn!(secret = %name, attempt, error = %e, "cannot write the key Secret back yet");
            }
        }
        tokio::time::sleep(RESTORE_RETRY).await;
    }
    restore_failed(shared, name, key_id, &last);
}

/// Report a key Secret written back from memory: audit `KeyRestored`, a log line, an Event.
pub(crate) fn written_back(shared: &Shared, name: &str, key_id: Option<&KeyId>, attempt: u32) {
    let mut rec = AuditLog::record("KeyRestored", AuditOutcome::Success);
    rec.key_id = key_id.map(ToString::to_string);
    rec.caller = Some(gitseal_shared::audit::Caller { user: "gitseal-controller".into(), groups: Vec::new() });
    rec.message = Some(format!("key Secret {name} written back from memory"));
    shared.audit.write(rec);
    tracing::warn!(secret = %name, attempt, "key Secret written back from memory");
    publish_key_event(
        shared,
        name,
        EventType::Normal,
        "KeySecretRestored",
        format!("key Secret {name} was written back from the controller's memory"),
    );
}

pub(crate) fn restore_failed(shared: &Shared, name: &str, key_id: Option<&KeyId>, why: &str) {
    let message = format!(
        "key Secret {name} could not be written back ({why}); the key is only in memory: take a backup now (gitseal keys backup)"
    );
    tracing::error!(secret = %name, error = %why, "key Secret not restored; the key is only in memory");
    let mut rec = AuditLog::record("KeyRestored", AuditOutcome::Failure);
    rec.key_id = key_id.map(ToString::to_string);
    rec.reason = Some("WriteBackFailed".into());
    rec.message = Some(message.clone());
    shared.audit.write(rec);
    publish_key_event(shared, name, EventType::Warning, "KeySecretRestoreFailed", message);
}

/// An Event about key Secret `name` in the controller namespace (sent in the background).
pub(crate) fn publish_key_event(shared: &Shared, name: &str, type_: EventType, reason: &str, note: String) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "KeyCustody".into(), secondary: None };
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(shared.config.namespace.clone()),
        name: Some(name.to_string()),
        ..Default::default()
    };
    let recorder = shared.recorder.clone();
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "cannot publish a key custody event");
        }
    });
}
