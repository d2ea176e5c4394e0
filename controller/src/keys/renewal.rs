//! Making keys: generate (in memory or in the PKCS#11 token), store as a Secret, register;
//! the leader's renewal loop.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Context as _;
use gitseal_keys::generate_key_pair;
use gitseal_keys::material::TLS_CRT;
use gitseal_shared::KeyId;
use gitseal_shared::audit::Outcome as AuditOutcome;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use time::OffsetDateTime;

use super::{ensure_digest_key, rotate_digest_key, update_key_metrics};
use crate::Shared;
use crate::audit::AuditLog;
use crate::registry::{BITNAMI_KEY_LABEL, GITSEAL_KEY_LABEL, KeyState, LoadedKey};

/// Generate a key, store it as a Secret, register it. `why` goes into the audit record.
pub async fn generate(
    shared: &Shared,
    why: &str,
    caller: Option<gitseal_shared::audit::Caller>,
) -> crate::error::Result<KeyId> {
    let cfg = &shared.config;
    let (bits, cn, ttl) = (cfg.key_size, cfg.my_cn.clone(), cfg.key_ttl);
    // Certificates carry whole seconds and "latest" is the greatest NotBefore: a key made in the
    // same second as the newest one would tie with it, so start one second after it.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let not_before = match shared.registry.all().iter().filter_map(|k| k.not_before()).max() {
        Some(newest) if newest >= now => newest + time::Duration::seconds(1),
        _ => now,
    };
    // Only a renewal waits for a backup: the very first key has nothing to stand in for it.
    let renewal = shared.registry.latest().is_some();
    let (generated, secret) = match shared.token.get() {
        Some(token) => {
            // In the token: the Secret holds the certificate and the object's name only. It
            // cannot be backed up, so it never waits for a backup.
            let token = token.clone();
            let (cert, object) = tokio::task::spawn_blocking(move || token.generate(bits, &cn, not_before, ttl))
                .await
                .context("key generation task failed")??;
            let data = [(TLS_CRT.to_string(), ByteString(cert.pem().as_bytes().to_vec()))].into();
            let secret =
                key_secret(cfg, &[(GITSEAL_KEY_LABEL, "active")], crate::token::annotations(&object), "Opaque", data);
            (Generated::Token(cert, object), secret)
        }
        None => {
            let pair = tokio::task::spawn_blocking(move || generate_key_pair(bits, &cn, not_before, ttl))
                .await
                .context("key generation task failed")??;
            let data = pair.secret_data()?.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
            let mut annotations = std::collections::BTreeMap::new();
            if cfg.require_key_backup && renewal {
                annotations.insert(crate::registry::PENDING_BACKUP_ANNOTATION.to_string(), "true".to_string());
            }
            let labels = [(GITSEAL_KEY_LABEL, "active"), (BITNAMI_KEY_LABEL, "active")];
            (Generated::Memory(Box::new(pair)), key_secret(cfg, &labels, annotations, "kubernetes.io/tls", data))
        }
    };
    let pending_backup = matches!(generated, Generated::Memory(_)) && cfg.require_key_backup && renewal;
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
    let mut loaded = match generated {
        Generated::Memory(pair) => LoadedKey::from_pair(name.clone(), *pair, KeyState::Active)?,
        Generated::Token(cert, object) => {
            let token = shared.token.get().context("the PKCS#11 token is gone")?.clone();
            // A token call blocks (a session may be busy with unseals): not on the runtime.
            let (cert, object, key) = tokio::task::spawn_blocking(move || {
                let key = token.key(&object, &cert);
                key.map(|k| (cert, object, k))
            })
            .await
            .context("the token task failed")??;
            LoadedKey {
                secret_name: name.clone(),
                cert,
                decryption: gitseal_shared::value::DecryptionKey::from_rsa(key, None),
                state: KeyState::Active,
                bitnami: false,
                pending_backup: false,
                created: None,
                token_object: Some(crate::token::annotations(&object)),
            }
        }
    };
    let id = loaded.id().clone();
    loaded.pending_backup = pending_backup;
    loaded.created = created.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string());
    shared.registry.upsert(loaded);
    update_key_metrics(shared);
    let mut rec = AuditLog::record("KeyGenerated", AuditOutcome::Success);
    rec.key_id = Some(id.to_string());
    rec.reason = Some(why.into());
    rec.message = Some(format!("key Secret {}/{name}", cfg.namespace));
    rec.caller = caller;
    shared.audit.write(rec);
    tracing::info!(key_id = %id, secret = %name, reason = why, "generated a sealing key");
    // The digest key is rotated with the sealing keys (one re-verification per SealedSecret).
    if renewal && let Err(e) = rotate_digest_key(shared).await {
        tracing::warn!(error = %crate::error::report(&e), "digest key not rotated; keeping the current one");
    }
    Ok(id)
}

/// A new key before it is registered.
enum Generated {
    Memory(Box<gitseal_keys::KeyPair>),
    Token(gitseal_keys::Certificate, gitseal_keys::pkcs11::ObjectRef),
}

fn key_secret(
    cfg: &crate::config::Config,
    labels: &[(&str, &str)],
    annotations: std::collections::BTreeMap<String, String>,
    type_: &str,
    data: std::collections::BTreeMap<String, ByteString>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            generate_name: Some(cfg.key_prefix.clone()),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Leader only: make the first key, honour the cutoff, and renew every period.
pub async fn renewal_loop(shared: Arc<Shared>) {
    let mut synced = shared.standing.keys_synced.subscribe();
    let _ = synced.wait_for(|s| *s).await;
    while let Err(e) = ensure_digest_key(&shared).await {
        tracing::error!(error = %crate::error::report(&e), "no digest key; retrying in 5s");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
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
                    tracing::error!(error = %crate::error::report(&e), "key generation failed; retrying in 30s");
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
