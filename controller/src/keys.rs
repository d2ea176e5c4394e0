//! Key lifecycle in the cluster: load key Secrets through a watch, generate keys, renew them
//! on schedule. Only the leader generates; every replica loads (standbys serve the certificate).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use gitseal_keys::generate_key_pair;
use gitseal_shared::KeyId;
use gitseal_shared::audit::Outcome as AuditOutcome;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use time::OffsetDateTime;

use crate::Shared;
use crate::audit::AuditLog;
use crate::registry::{BITNAMI_KEY_LABEL, GITSEAL_KEY_LABEL, KeyState, LoadedKey};

/// The label selector of the key watch.
pub fn key_selector(bitnami_compat: bool) -> String {
    if bitnami_compat { BITNAMI_KEY_LABEL.to_string() } else { GITSEAL_KEY_LABEL.to_string() }
}

fn load(shared: &Shared, secret: &Secret) -> Option<LoadedKey> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let state = KeyState::from_labels(secret.metadata.labels.as_ref(), shared.config.bitnami_compat)?;
    match LoadedKey::from_secret(secret, state) {
        Ok(k) => Some(k),
        Err(problem) => {
            tracing::warn!(secret = %name, %problem, "skipping malformed key Secret");
            let mut rec = AuditLog::record("KeyLoad", AuditOutcome::Failure);
            rec.reason = Some("MalformedKeySecret".into());
            rec.message = Some(problem);
            shared.audit.write(rec);
            None
        }
    }
}

fn audit_loaded(shared: &Shared, key: &LoadedKey, action: &str) {
    let mut rec = AuditLog::record(action, AuditOutcome::Success);
    rec.key_id = Some(key.id().to_string());
    rec.message = Some(format!("key Secret {} ({})", key.secret_name, key.state.as_str()));
    shared.audit.write(rec);
}

/// Keep the registry equal to the key Secrets of the controller namespace, forever.
pub async fn watch_keys(shared: Arc<Shared>) {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let wc = watcher::Config::default().labels(&key_selector(shared.config.bitnami_compat));
    let mut stream = watcher(api, wc).boxed();
    let mut buffer: Vec<LoadedKey> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => buffer.clear(),
            Ok(watcher::Event::InitApply(s)) => buffer.extend(load(&shared, &s)),
            Ok(watcher::Event::InitDone) => {
                for k in &buffer {
                    audit_loaded(&shared, k, "KeyLoaded");
                }
                shared.registry.replace_all(std::mem::take(&mut buffer));
                shared.keys_synced.send_replace(true);
                tracing::info!(keys = shared.registry.len(), "key Secrets loaded");
                update_key_metrics(&shared);
            }
            Ok(watcher::Event::Apply(s)) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                let restored_by = s
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(crate::registry::RESTORED_BY_ANNOTATION))
                    .cloned();
                match load(&shared, &s) {
                    Some(k) => {
                        let change = shared.registry.upsert(k);
                        if let (crate::registry::Change::Added(id), Some(who)) = (&change, &restored_by) {
                            let mut rec = AuditLog::record("KeyRestored", AuditOutcome::Success);
                            rec.key_id = Some(id.to_string());
                            rec.caller = Some(gitseal_shared::audit::Caller { user: who.clone(), groups: Vec::new() });
                            rec.message =
                                Some(format!("key Secret {name} restored from a backup (restorer as annotated)"));
                            shared.audit.write(rec);
                        }
                        if change != crate::registry::Change::Unchanged
                            && let Some(k) = shared.registry.all().into_iter().find(|k| k.secret_name == name)
                        {
                            audit_loaded(&shared, &k, "KeyLoaded");
                        }
                    }
                    None => {
                        shared.registry.remove(&name);
                    }
                }
                update_key_metrics(&shared);
            }
            Ok(watcher::Event::Delete(s)) => {
                if let crate::registry::Change::Removed(id) =
                    shared.registry.remove(&s.metadata.name.unwrap_or_default())
                {
                    let mut rec = AuditLog::record("KeyRemoved", AuditOutcome::Success);
                    rec.key_id = Some(id.to_string());
                    shared.audit.write(rec);
                }
                update_key_metrics(&shared);
            }
            Err(e) => {
                tracing::warn!(error = %e, "key watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

pub fn update_key_metrics(shared: &Shared) {
    let all = shared.registry.all();
    for state in [KeyState::Active, KeyState::Retired, KeyState::Revoked] {
        let n = all.iter().filter(|k| k.state == state).count();
        shared
            .metrics
            .keys_loaded
            .get_or_create(&crate::metrics::StateLabels { state: state.as_str() })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Some(nb) = shared.registry.latest_not_before() {
        shared.metrics.latest_key_age_seconds.set((OffsetDateTime::now_utc() - nb).as_seconds_f64());
    }
}

/// Generate a key, store it as a Secret, register it. `why` goes into the audit record.
pub async fn generate(
    shared: &Shared,
    why: &str,
    caller: Option<gitseal_shared::audit::Caller>,
) -> anyhow::Result<KeyId> {
    let cfg = &shared.config;
    let (bits, cn, ttl) = (cfg.key_size, cfg.my_cn.clone(), cfg.key_ttl);
    // Certificates carry whole seconds and "latest" is the greatest NotBefore: a key made in the
    // same second as the newest one would tie with it, so start one second after it.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let not_before = match shared.registry.all().iter().filter_map(|k| k.not_before()).max() {
        Some(newest) if newest >= now => newest + time::Duration::seconds(1),
        _ => now,
    };
    let pair = tokio::task::spawn_blocking(move || generate_key_pair(bits, &cn, not_before, ttl))
        .await
        .context("key generation task failed")??;
    let data = pair.secret_data()?.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
    let labels = [(GITSEAL_KEY_LABEL, "active"), (BITNAMI_KEY_LABEL, "active")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Only a renewal waits for a backup: the very first key has nothing to stand in for it.
    let pending_backup = cfg.require_key_backup && shared.registry.latest().is_some();
    let annotations =
        pending_backup.then(|| [(crate::registry::PENDING_BACKUP_ANNOTATION.to_string(), "true".to_string())].into());
    let secret = Secret {
        metadata: ObjectMeta {
            generate_name: Some(cfg.key_prefix.clone()),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(labels),
            annotations,
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &cfg.namespace);
    let created = match api.create(&PostParams::default(), &secret).await {
        Ok(s) => s,
        Err(e) => {
            let mut rec = AuditLog::record("KeyGenerated", AuditOutcome::Failure);
            rec.reason = Some("CreateFailed".into());
            rec.message = Some(e.to_string());
            rec.caller = caller;
            shared.audit.write(rec);
            return Err(e).context("cannot store the new key Secret");
        }
    };
    let name = created.metadata.name.clone().unwrap_or_default();
    let id = pair.rsa.id().clone();
    let decryption = pair.decryption_key()?;
    shared.registry.upsert(LoadedKey {
        secret_name: name.clone(),
        pair,
        decryption,
        state: KeyState::Active,
        bitnami: false,
        pending_backup,
        created: created.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
    });
    update_key_metrics(shared);
    let mut rec = AuditLog::record("KeyGenerated", AuditOutcome::Success);
    rec.key_id = Some(id.to_string());
    rec.reason = Some(why.into());
    rec.message = Some(format!("key Secret {}/{name}", cfg.namespace));
    rec.caller = caller;
    shared.audit.write(rec);
    tracing::info!(key_id = %id, secret = %name, reason = why, "generated a sealing key");
    Ok(id)
}

/// Leader only: make the first key, honour the cutoff, and renew every period.
pub async fn renewal_loop(shared: Arc<Shared>) {
    let mut synced = shared.keys_synced.subscribe();
    let _ = synced.wait_for(|s| *s).await;
    let mut changes = shared.registry.subscribe();
    loop {
        let now = OffsetDateTime::now_utc();
        let latest = shared.registry.latest_not_before();
        let policy = shared.config.renew;
        let wait = if policy.needs_new_key(latest, now) {
            let why = match latest {
                None => "NoKey",
                Some(nb) if policy.cutoff.is_some_and(|c| nb < c) => "CutoffTime",
                Some(_) => "RenewPeriod",
            };
            match generate(&shared, why, None).await {
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "key generation failed; retrying in 30s");
                    Some(Duration::from_secs(30))
                }
            }
        } else {
            latest.and_then(|nb| policy.next_renewal_in(nb, now)).and_then(|d| Duration::try_from(d).ok())
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}
