//! The audit trail's footing in the cluster: the Ed25519 signing key (a Secret beside the
//! sealing keys, made by the first replica to start, loaded by all), the checkpoint (a
//! ConfigMap the leader rewrites every N records or T seconds, and on shutdown), and the sink
//! monitor that raises Events when the sink fails and recovers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Context as _;
use gitseal_shared::audit::{Checkpoint, SigningKey};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
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

/// Load the audit signing key, creating it when this is the first replica ever.
pub async fn load_or_create_key(client: &kube::Client, ns: &str) -> crate::error::Result<SigningKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    if let Some(s) = api.get_opt(KEY_SECRET).await.context("cannot read the audit key Secret")? {
        return parse_key(&s);
    }
    let (key, der) = SigningKey::generate().context("cannot generate the audit signing key")?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(KEY_SECRET.into()),
            namespace: Some(ns.into()),
            labels: Some([(KEY_LABEL.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(KEY_ENTRY.to_string(), ByteString(der.to_vec()))])),
        ..Default::default()
    };
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
