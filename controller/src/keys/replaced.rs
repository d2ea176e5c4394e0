//! Key Secrets replaced in place: someone who can write Secrets in the controller namespace
//! swaps the `tls.key`/`tls.crt` of a loaded key's Secret (or strips its labels). Loading the new
//! content would drop the old key, and everything sealed for it would stop unsealing — the same
//! loss as a deletion, which is handled the same way (see `key_secret_lost`).
//!
//! # Guarantees
//!
//! The key loaded from the Secret stays in memory and in use; whatever the Secret holds now is
//! never loaded under that name (to add a key, create a new Secret: it is checked like any other
//! planted key). The replacement is reported — an error log, a Warning Event `KeySecretReplaced`,
//! an audit record `KeySecretReplaced` (reason `OtherKey` or `NoLongerAKey`),
//! `gitseal_key_secrets_replaced_total` and the chart's `GitsealKeySecretReplaced` alert — and
//! the Secret is written back from memory (`KeySecretRestored`, audit `KeyRestored`).
//!
//! # Flow
//!
//! [`replaced`] is asked before a key Secret event reaches the registry: it compares what the
//! Secret holds with the key loaded from it ([`crate::registry::replacement`], pure). A replaced
//! Secret skips the registry; [`key_secret_replaced`] reports it and [`overwrite`] puts the
//! remembered content back (replace with the resourceVersion read; delete and create when the
//! Secret's immutable type changed).

use std::sync::Arc;

use gitseal_shared::KeyId;
use gitseal_shared::audit::Outcome as AuditOutcome;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::events::EventType;

use super::{RESTORE_ATTEMPTS, RESTORE_RETRY, publish_key_event, restore_failed, restored_key_secret, written_back};
use crate::Shared;
use crate::audit::AuditLog;
use crate::registry::{KeyState, LoadedKey, RESTORED_BY_ANNOTATION, Replaced, replacement};

/// What `secret` holds as a key, without loading or refusing it.
fn held_key(shared: &Shared, secret: &Secret) -> Option<LoadedKey> {
    if secret.metadata.namespace.as_deref() != Some(shared.config.namespace.as_str())
        || super::label_value(secret, crate::decide::MANAGED_LABEL).is_some()
    {
        return None;
    }
    let state = KeyState::from_labels(secret.metadata.labels.as_ref(), shared.config.bitnami_compat)?;
    super::parse_key(shared, secret, state).ok()
}

/// The key loaded from `secret`'s name when `secret` no longer holds it, and how.
pub(super) fn replaced(shared: &Shared, secret: &Secret) -> Option<(Arc<LoadedKey>, Replaced)> {
    let loaded = shared.registry.by_secret(secret.metadata.name.as_deref()?)?;
    let why = replacement(&loaded, held_key(shared, secret).as_ref())?;
    Some((loaded, why))
}

/// Report a replaced key Secret and write the remembered one back (in the background).
pub(super) fn key_secret_replaced(shared: &Arc<Shared>, key: Arc<LoadedKey>, why: &Replaced) {
    let ns = &shared.config.namespace;
    let name = key.secret_name.clone();
    shared.metrics.key_secrets_replaced.inc();
    let message = format!(
        "key Secret {ns}/{name} (key {}) {why}: the loaded key stays in memory and in use, the new content is not loaded, and the Secret is written back from memory",
        key.id()
    );
    tracing::error!(secret = %name, key_id = %key.id(), reason = why.reason(), "a loaded key Secret was replaced; keeping the key and restoring the Secret");
    let mut rec = AuditLog::record("KeySecretReplaced", AuditOutcome::Failure);
    rec.key_id = Some(key.id().to_string());
    rec.reason = Some(why.reason().into());
    rec.message = Some(message.clone());
    shared.audit.write(rec);
    publish_key_event(shared, &name, EventType::Warning, "KeySecretReplaced", message);
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut secret = match restored_key_secret(&shared, &key) {
            Ok(s) => s,
            Err(e) => {
                restore_failed(&shared, &name, Some(key.id()), &crate::error::report(&e));
                return;
            }
        };
        secret.metadata.annotations.get_or_insert_default().insert(
            RESTORED_BY_ANNOTATION.to_string(),
            "gitseal-controller (from memory, after the Secret was replaced)".to_string(),
        );
        overwrite(&shared, &name, Some(key.id()), secret).await;
    });
}

/// Whether `found` already holds what `want` says: the same data, type and labels.
fn holds(found: &Secret, want: &Secret) -> bool {
    let labels_kept = want
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| found.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    found.data == want.data && found.type_ == want.type_ && labels_kept
}

/// Make Secret `name` hold `secret` again, whatever it holds now; retried, reported either way.
pub(crate) async fn overwrite(shared: &Shared, name: &str, key_id: Option<&KeyId>, secret: Secret) {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let mut last = String::new();
    for attempt in 1..=RESTORE_ATTEMPTS {
        let step = match api.get_opt(name).await {
            Ok(Some(found)) if holds(&found, &secret) => Ok(()),
            Ok(Some(found)) if found.type_ == secret.type_ => {
                let mut s = secret.clone();
                s.metadata.resource_version = found.metadata.resource_version;
                api.replace(name, &PostParams::default(), &s).await.map(drop)
            }
            // The type cannot change in place: delete exactly what was read, then create.
            Ok(Some(found)) => {
                let pre = Preconditions { resource_version: found.metadata.resource_version, uid: found.metadata.uid };
                match api.delete(name, &DeleteParams { preconditions: Some(pre), ..Default::default() }).await {
                    Ok(_) => api.create(&PostParams::default(), &secret).await.map(drop),
                    Err(e) => Err(e),
                }
            }
            Ok(None) => api.create(&PostParams::default(), &secret).await.map(drop),
            Err(e) => Err(e),
        };
        match step {
            Ok(()) => {
                written_back(shared, name, key_id, attempt);
                return;
            }
            // Changed since it was read: read again at once.
            Err(kube::Error::Api(ae)) if ae.code == 409 => {
                last = ae.message;
                continue;
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, data: &[(&str, &[u8])], labels: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn a_written_back_secret_counts_only_with_its_data_type_and_labels() {
        let want =
            secret("kubernetes.io/tls", &[("tls.key", b"k"), ("tls.crt", b"c")], &[("gitseal.dev/key", "active")]);
        let mut extra_label = want.clone();
        extra_label.metadata.labels.get_or_insert_default().insert("team".into(), "x".into());
        assert!(holds(&want, &want) && holds(&extra_label, &want), "more labels are fine");
        let other_data =
            secret("kubernetes.io/tls", &[("tls.key", b"x"), ("tls.crt", b"c")], &[("gitseal.dev/key", "active")]);
        let no_label = secret("kubernetes.io/tls", &[("tls.key", b"k"), ("tls.crt", b"c")], &[]);
        let opaque = secret("Opaque", &[("tls.key", b"k"), ("tls.crt", b"c")], &[("gitseal.dev/key", "active")]);
        for found in [other_data, no_label, opaque] {
            assert!(!holds(&found, &want), "{:?}", found.type_);
        }
    }
}
