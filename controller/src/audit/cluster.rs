//! The audit trail's footing in the cluster: the Ed25519 signing key (a Secret beside the
//! sealing keys, made by the first replica to start, loaded by all), the checkpoint (a
//! ConfigMap the leader rewrites every N records or T seconds, and on shutdown), and the sink
//! monitor that raises Events when the sink fails and recovers.
//!
//! # Guarantees (the signing key)
//!
//! Whoever can write Secrets in the controller namespace must not be able to swap the key the
//! chain is signed with. While a replica runs, [`watch_key`] keeps the Secret holding the key in
//! its memory: deleted or replaced, it is reported (Warning Event and audit record
//! `KeySecretDeleted` / `KeySecretReplaced`, `gitseal_key_secrets_deleted_total` /
//! `gitseal_key_secrets_replaced_total`) and written back; the other key is never used. At start,
//! [`load_or_create_key`] refuses a key that does not verify the last checkpoint, and refuses to
//! make a new key when a checkpoint shows a history signed by a missing one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Context as _;
use futures::StreamExt as _;
use gitseal_shared::audit::{Checkpoint, PublicKey, SigningKey};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::Shared;

/// The Secret holding the audit signing key, in the controller namespace.
pub const KEY_SECRET: &str = "gitseal-audit-key";
/// Its data entry: the Ed25519 private key, PKCS#8 DER.
pub const KEY_ENTRY: &str = "ed25519.pk8";
/// Label that marks it (not a sealing key: the key watch does not select it).
pub const KEY_LABEL: &str = "gitseal.dev/audit-key";
/// The ConfigMap holding the checkpoint, in the controller namespace; data entry `checkpoint`.
pub const CHECKPOINT_CONFIGMAP: &str = "gitseal-audit-checkpoint";
pub const CHECKPOINT_ENTRY: &str = "checkpoint";
const FIELD_MANAGER: &str = "gitseal-controller-audit";

fn parse_key(secret: &Secret) -> crate::error::Result<SigningKey> {
    let der = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_ENTRY))
        .with_context(|| format!("Secret {KEY_SECRET} has no {KEY_ENTRY}"))?;
    SigningKey::from_pkcs8(&der.0).with_context(|| format!("Secret {KEY_SECRET} holds no usable audit signing key"))
}

/// Whether the key found at start may sign the history `anchor` (the last checkpoint) ends in:
/// only the key that signed it. `None`: there is no key Secret.
pub fn check_against_checkpoint(key: Option<&PublicKey>, anchor: Option<&Checkpoint>) -> Result<(), String> {
    let Some(cp) = anchor else { return Ok(()) };
    let at = format!("ConfigMap {CHECKPOINT_CONFIGMAP} (seq {} of {})", cp.seq, cp.replica);
    match key {
        Some(k) if cp.check_signature(k).is_ok() => Ok(()),
        Some(_) => Err(format!(
            "the audit key in Secret {KEY_SECRET} did not sign the last checkpoint, {at}: it was replaced while no controller ran; put the original back from a key backup (gitseal keys restore), or delete the ConfigMap to start a new chain under this key on purpose"
        )),
        None => Err(format!(
            "Secret {KEY_SECRET} is missing but {at} holds a history signed by it: put it back from a key backup (gitseal keys restore), or delete the ConfigMap to start a new chain on purpose"
        )),
    }
}

/// Load the audit signing key, creating it when this is the first replica ever. A key that
/// does not verify the last checkpoint, or a missing one when a checkpoint exists, ends the
/// start ([`check_against_checkpoint`]).
pub async fn load_or_create_key(
    client: &kube::Client,
    ns: &str,
    anchor: Option<&Checkpoint>,
) -> crate::error::Result<SigningKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    if let Some(s) = api.get_opt(KEY_SECRET).await.context("cannot read the audit key Secret")? {
        let key = parse_key(&s)?;
        check_against_checkpoint(Some(&key.public_key()), anchor).map_err(crate::error::Error::invalid)?;
        return Ok(key);
    }
    check_against_checkpoint(None, anchor).map_err(crate::error::Error::invalid)?;
    let (key, der) = SigningKey::generate().context("cannot generate the audit signing key")?;
    let secret = key_secret(ns, &der);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(fingerprint = %key.public_key().fingerprint(), "generated the audit signing key");
            Ok(key)
        }
        // Another replica made it first: use theirs.
        Err(kube::Error::Api(ae)) if ae.code == 409 => {
            parse_key(&api.get(KEY_SECRET).await.context("cannot read the audit key Secret")?)
        }
        Err(e) => Err(e).context("cannot store the audit key Secret"),
    }
}

/// The Secret holding `der`, as the first replica made it.
fn key_secret(ns: &str, der: &[u8]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(KEY_SECRET.into()),
            namespace: Some(ns.into()),
            labels: Some([(KEY_LABEL.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(KEY_ENTRY.to_string(), ByteString(der.to_vec()))])),
        ..Default::default()
    }
}

/// What happened to the audit key's Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    Deleted,
    /// It holds another key.
    OtherKey,
    /// It holds no usable key.
    NoLongerAKey,
}

/// What the Secret holds, against the key in memory: `None` when it holds that key.
fn lost(secret: &Secret, ours: &PublicKey) -> Option<Lost> {
    match parse_key(secret) {
        Ok(k) if k.public_key() == *ours => None,
        Ok(_) => Some(Lost::OtherKey),
        Err(_) => Some(Lost::NoLongerAKey),
    }
}

/// Every replica: keep Secret [`KEY_SECRET`] holding the key this replica signs with. A
/// deletion or a replacement is reported and the Secret written back; the chain goes on under
/// the key in memory.
pub async fn watch_key(shared: Arc<Shared>) {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let wc = watcher::Config::default().fields(&format!("metadata.name={KEY_SECRET}"));
    let mut stream = watcher(api, wc).boxed();
    let ours = shared.audit.public_key();
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let what = match event {
            Ok(watcher::Event::Init) => {
                listed = false;
                None
            }
            Ok(watcher::Event::InitApply(s) | watcher::Event::Apply(s)) => {
                listed = true;
                lost(&s, &ours)
            }
            Ok(watcher::Event::InitDone) => (!listed).then_some(Lost::Deleted),
            Ok(watcher::Event::Delete(_)) => Some(Lost::Deleted),
            Err(e) => {
                tracing::warn!(error = %e, "audit key watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                None
            }
        };
        if let Some(what) = what {
            key_secret_lost(&shared, what);
        }
    }
}

fn key_secret_lost(shared: &Arc<Shared>, what: Lost) {
    let ns = &shared.config.namespace;
    let fingerprint = shared.audit.public_key().fingerprint();
    let (action, reason, how) = match what {
        Lost::Deleted => ("KeySecretDeleted", "DeletedWhileLoaded", "was deleted"),
        Lost::OtherKey => ("KeySecretReplaced", "OtherKey", "now holds another key"),
        Lost::NoLongerAKey => ("KeySecretReplaced", "NoLongerAKey", "no longer holds a usable key"),
    };
    let counter = match what {
        Lost::Deleted => &shared.metrics.key_secrets_deleted,
        Lost::OtherKey | Lost::NoLongerAKey => &shared.metrics.key_secrets_replaced,
    };
    counter.inc();
    let message = format!(
        "the audit key Secret {ns}/{KEY_SECRET} {how}: the chain goes on signed by the key in memory ({fingerprint}), which is written back"
    );
    tracing::error!(
        secret = KEY_SECRET,
        reason,
        "the audit key Secret changed; keeping the key in memory and restoring the Secret"
    );
    let mut rec = crate::audit::AuditLog::record(action, gitseal_shared::audit::Outcome::Failure);
    rec.reason = Some(reason.into());
    rec.message = Some(message.clone());
    shared.audit.write(rec);
    crate::keys::publish_key_event(shared, KEY_SECRET, EventType::Warning, action, message);
    let der = match shared.audit.key_pkcs8() {
        Ok(der) => der,
        Err(e) => {
            tracing::error!(error = e, "cannot encode the audit key to write it back");
            return;
        }
    };
    let secret = key_secret(ns, &der);
    let shared = shared.clone();
    tokio::spawn(async move { crate::keys::replaced::overwrite(&shared, KEY_SECRET, None, secret).await });
}

/// The key Secret as an item of a key backup (`keybackups`), if it exists.
pub async fn backup_item(shared: &Shared) -> Option<Value> {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let s = api.get_opt(KEY_SECRET).await.ok()??;
    let der = s.data.as_ref()?.get(KEY_ENTRY)?;
    Some(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": KEY_SECRET, "namespace": shared.config.namespace, "labels": {KEY_LABEL: "true"}},
        "data": {KEY_ENTRY: gitseal_shared::value::encode_base64(&der.0)},
    }))
}

/// The checkpoint, if one was written.
pub async fn read_checkpoint(client: &kube::Client, ns: &str) -> crate::error::Result<Option<Checkpoint>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = api.get_opt(CHECKPOINT_CONFIGMAP).await.context("cannot read the audit checkpoint")? else {
        return Ok(None);
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(CHECKPOINT_ENTRY)) else { return Ok(None) };
    let cp = serde_json::from_str(text).context("the audit checkpoint ConfigMap holds no checkpoint")?;
    Ok(Some(cp))
}

/// Write the current head as the checkpoint.
pub async fn write_checkpoint(shared: &Shared) -> crate::error::Result<Checkpoint> {
    let cp = shared.audit.checkpoint();
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CHECKPOINT_CONFIGMAP, "labels": {"app.kubernetes.io/name": "gitseal"}},
        "data": {CHECKPOINT_ENTRY: serde_json::to_string(&cp)?},
    });
    api.patch(CHECKPOINT_CONFIGMAP, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .context("cannot write the audit checkpoint")?;
    Ok(cp)
}

/// Leader only: link the cluster history (a `ChainResumed` after the checkpoint, if another
/// replica wrote it), then checkpoint every `records` records or `interval`, whichever first.
pub async fn checkpoint_loop(shared: Arc<Shared>) {
    match read_checkpoint(&shared.client, &shared.config.namespace).await {
        Ok(Some(cp)) => match shared.audit.relink(&cp) {
            Ok(true) => tracing::info!(seq = cp.seq, replica = %cp.replica, "audit chain resumed after the checkpoint"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %crate::error::report(&e), "cannot link the audit chain to the checkpoint")
            }
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %crate::error::report(&e), "cannot read the audit checkpoint"),
    }
    let mut written = None;
    loop {
        let head = shared.audit.head();
        if written != Some(head.seq()) {
            match write_checkpoint(&shared).await {
                Ok(cp) => written = Some(cp.seq),
                Err(e) => tracing::warn!(error = %crate::error::report(&e), "cannot write the audit checkpoint"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(shared.config.audit_checkpoint_interval) => {}
            () = shared.audit.checkpoint_due.notified() => {}
        }
    }
}

/// Every replica: probe the sink each second, publish an Event when it fails or recovers.
pub async fn monitor_sink(shared: Arc<Shared>) {
    let mut was_ok = true;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ok = shared.audit.healthy();
        if ok == was_ok {
            continue;
        }
        was_ok = ok;
        let (type_, reason, note) = if ok {
            (EventType::Normal, "AuditSinkRecovered", "the audit sink is writable again".to_string())
        } else {
            let stops = if shared.config.audit_required {
                "unsealing and the APIs are stopped until it recovers (--audit-required)"
            } else {
                "work goes on unaudited (gitseal_audit_write_errors_total counts the lost records)"
            };
            (EventType::Warning, "AuditSinkFailed", format!("the audit sink cannot be written: {stops}"))
        };
        tracing::warn!(reason, "audit sink state changed");
        let pod = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(shared.config.identity.clone()),
            namespace: Some(shared.config.namespace.clone()),
            ..Default::default()
        };
        let event = Event { type_, reason: reason.into(), note: Some(note), action: "Audit".into(), secondary: None };
        if let Err(e) = shared.recorder.publish(&event, &pod).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    }
}

/// `GET /v1/audit-key`: the public audit key, PEM.
pub async fn public_key_handler(
    axum::extract::State(s): axum::extract::State<Arc<Shared>>,
) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], s.audit.public_key().to_pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitseal_shared::audit::Chain;

    fn checkpoint(key: &SigningKey) -> Checkpoint {
        Checkpoint::new("gitseal-0", &Chain::at(41, "ab"), "2026-01-01T00:00:00Z", key)
    }

    #[test]
    fn a_start_adopts_only_the_key_that_signed_the_last_checkpoint() {
        let (ours, _) = SigningKey::generate().unwrap();
        let (theirs, _) = SigningKey::generate().unwrap();
        let cp = checkpoint(&ours);
        assert_eq!(check_against_checkpoint(Some(&ours.public_key()), Some(&cp)), Ok(()));
        assert_eq!(check_against_checkpoint(Some(&theirs.public_key()), None), Ok(()), "no history yet");
        assert_eq!(check_against_checkpoint(None, None), Ok(()), "the first start makes the key");
        let replaced = check_against_checkpoint(Some(&theirs.public_key()), Some(&cp)).unwrap_err();
        assert!(replaced.contains("did not sign the last checkpoint") && replaced.contains("seq 41"), "{replaced}");
        let missing = check_against_checkpoint(None, Some(&cp)).unwrap_err();
        assert!(missing.contains("is missing") && !missing.contains('\n'), "{missing}");
    }

    #[test]
    fn the_audit_key_secret_is_lost_when_it_holds_another_key_or_none() {
        let (ours, der) = SigningKey::generate().unwrap();
        let (_, other) = SigningKey::generate().unwrap();
        let ns = "gitseal-system";
        assert_eq!(lost(&key_secret(ns, &der), &ours.public_key()), None);
        assert_eq!(lost(&key_secret(ns, &ours.to_pkcs8().unwrap()), &ours.public_key()), None, "re-encoded");
        assert_eq!(lost(&key_secret(ns, &other), &ours.public_key()), Some(Lost::OtherKey));
        assert_eq!(lost(&key_secret(ns, b"junk"), &ours.public_key()), Some(Lost::NoLongerAKey));
        let mut empty = key_secret(ns, &der);
        empty.data = None;
        assert_eq!(lost(&empty, &ours.public_key()), Some(Lost::NoLongerAKey));
    }
}
