//! Key lifecycle in the cluster: load key Secrets through a watch, generate keys, renew them
//! on schedule. Only the leader generates; every replica loads (standbys serve the certificate).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Context as _;
use futures::StreamExt;
use gitseal_shared::KeyId;
use gitseal_shared::audit::Outcome as AuditOutcome;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use time::OffsetDateTime;

mod renewal;
pub(crate) mod replaced;
mod write_back;

pub use renewal::{generate, renewal_loop};
pub(crate) use write_back::{
    RESTORE_ATTEMPTS, RESTORE_RETRY, digest_key_secret_lost, key_secret_lost, publish_key_event, restore_failed,
    restored_key_secret, written_back,
};

use crate::Shared;
use crate::audit::AuditLog;
use crate::decide::DigestKey;
use crate::registry::{
    DIGEST_KEY_ITEM, DIGEST_KEY_LABEL_VALUE, DIGEST_KEY_SECRET, GITSEAL_KEY_LABEL, KeyState, LoadedKey,
    REVOCATION_LIST_ITEM, REVOCATION_LIST_LABEL_VALUE, REVOCATION_LIST_SECRET, RefusedKey, format_revocation_list,
    parse_revocation_list,
};

/// The label selector of the key watch: gitseal's label; none with `--bitnami-compat`, where a
/// key Secret may carry either label (or both) and a selector cannot say "either" — the
/// controller namespace is then read whole and filtered here.
pub fn key_selector(bitnami_compat: bool) -> Option<String> {
    (!bitnami_compat).then(|| GITSEAL_KEY_LABEL.to_string())
}

/// What a Secret of the controller namespace is to the key watch.
enum Seen {
    Key(Box<LoadedKey>),
    RevocationList(Vec<KeyId>),
    /// Not a key (or a refused one): not in the registry.
    Other,
    /// The classification did not finish (its thread panicked): change nothing.
    Unknown,
}

/// [`classify`] on a blocking thread. Loading a key parses and checks an RSA private key
/// (milliseconds for 4096 bits) or looks its object up in a PKCS#11 token, which may wait for a
/// session busy with unseals or for a token that does not answer: none of it may stall the key
/// watch or the runtime's other tasks.
async fn classify_off_runtime(shared: &Arc<Shared>, secret: Secret) -> Seen {
    let shared = shared.clone();
    off_runtime(move || classify(&shared, &secret)).await.unwrap_or(Seen::Unknown)
}

/// Run blocking `work` on tokio's blocking threads; `None` if it panicked.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "a key Secret could not be classified");
            None
        }
    }
}

fn label_value<'a>(secret: &'a Secret, label: &str) -> Option<&'a str> {
    secret.metadata.labels.as_ref().and_then(|l| l.get(label)).map(String::as_str)
}

fn classify(shared: &Shared, secret: &Secret) -> Seen {
    let name = secret.metadata.name.clone().unwrap_or_default();
    // Only the controller namespace holds keys; a Secret gitseal produced is never one.
    if secret.metadata.namespace.as_deref() != Some(shared.config.namespace.as_str())
        || label_value(secret, crate::decide::MANAGED_LABEL).is_some()
    {
        return Seen::Other;
    }
    let item = |k: &str| secret.data.as_ref().and_then(|d| d.get(k)).map(|b| b.0.as_slice());
    match label_value(secret, GITSEAL_KEY_LABEL) {
        Some(REVOCATION_LIST_LABEL_VALUE) if name == REVOCATION_LIST_SECRET => {
            return Seen::RevocationList(parse_revocation_list(item(REVOCATION_LIST_ITEM).unwrap_or_default()));
        }
        Some(DIGEST_KEY_LABEL_VALUE) if name == DIGEST_KEY_SECRET => {
            match item(DIGEST_KEY_ITEM).map(DigestKey::from_bytes) {
                Some(Ok(k)) => shared.registry.set_digest_key(k),
                Some(Err(e)) => tracing::warn!(secret = %name, error = %e, "ignoring a malformed digest key"),
                None => tracing::warn!(secret = %name, "the digest-key Secret holds no {DIGEST_KEY_ITEM}"),
            }
            return Seen::Other;
        }
        _ => {}
    }
    let Some(state) = KeyState::from_labels(secret.metadata.labels.as_ref(), shared.config.bitnami_compat) else {
        return Seen::Other;
    };
    let key = match parse_key(shared, secret, state) {
        Ok(k) => k,
        Err(e) => {
            let problem = crate::error::report(&e);
            tracing::warn!(secret = %name, %problem, "skipping malformed key Secret");
            let mut rec = AuditLog::record("KeyLoad", AuditOutcome::Failure);
            rec.reason = Some("MalformedKeySecret".into());
            rec.message = Some(problem);
            shared.audit.write(rec);
            return Seen::Other;
        }
    };
    let horizon = OffsetDateTime::now_utc() + shared.config.key_max_clock_skew;
    if let Some(nb) = key.not_before().filter(|nb| *nb > horizon) {
        let refused = RefusedKey { secret_name: name.clone(), key_id: key.id().clone(), not_before: Some(nb) };
        let known = shared.registry.refused().contains(&refused);
        shared.registry.refuse(refused);
        if !known {
            report_refused(shared, secret, &key, nb);
        }
        return Seen::Other;
    }
    Seen::Key(Box::new(key))
}

/// The key a key Secret holds (its private key, or its token object), not yet checked.
fn parse_key(shared: &Shared, secret: &Secret, state: KeyState) -> Result<LoadedKey, crate::registry::KeySecretError> {
    let token = shared.token.get();
    let lookup = |cert: &gitseal_keys::Certificate, a: &std::collections::BTreeMap<String, String>| match token {
        Some(t) => crate::token::lookup(t, cert, a),
        None => Err(gitseal_keys::Error::Token("no token".into())),
    };
    LoadedKey::from_secret_in(secret, state, token.map(|_| &lookup as crate::registry::TokenLookup<'_>))
}

/// A key whose certificate starts beyond the allowed clock skew: audit, Event, log. The
/// metric (`gitseal_keys{state="refused"}`) follows from the registry.
fn report_refused(shared: &Shared, secret: &Secret, key: &LoadedKey, not_before: OffsetDateTime) {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let when = gitseal_keys::cert::fmt_time(not_before);
    let message = format!(
        "key Secret {name} is refused: its certificate is valid only from {when}, beyond the allowed clock skew; it is neither loaded nor served"
    );
    tracing::warn!(secret = %name, key_id = %key.id(), not_before = %when, "refusing a key that is not valid yet");
    let mut rec = AuditLog::record("KeyRefused", AuditOutcome::Failure);
    rec.key_id = Some(key.id().to_string());
    rec.reason = Some("NotYetValid".into());
    rec.message = Some(message.clone());
    shared.audit.write(rec);
    let event = Event {
        type_: EventType::Warning,
        reason: "KeyRefused".into(),
        note: Some(message),
        action: "LoadKey".into(),
        secondary: None,
    };
    let reference = secret.object_ref(&());
    let recorder = shared.recorder.clone();
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "cannot publish the KeyRefused event");
        }
    });
}

fn audit_loaded(shared: &Shared, key: &LoadedKey, action: &str) {
    let mut rec = AuditLog::record(action, AuditOutcome::Success);
    rec.key_id = Some(key.id().to_string());
    rec.message = Some(format!("key Secret {} ({})", key.secret_name, key.state.as_str()));
    shared.audit.write(rec);
}

/// Make the revocation-list Secret hold every id the registry knows revoked (union with what it
/// holds: the list never shrinks). Returns what it holds afterwards.
pub async fn persist_revocations(shared: &Shared) -> Result<BTreeSet<KeyId>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    for _ in 0..5 {
        let current = api.get_opt(REVOCATION_LIST_SECRET).await?;
        let mut ids = shared.registry.revocation_list();
        let listed: BTreeSet<KeyId> = current
            .as_ref()
            .and_then(|s| s.data.as_ref()?.get(REVOCATION_LIST_ITEM))
            .map(|b| parse_revocation_list(&b.0).into_iter().collect())
            .unwrap_or_default();
        if ids.is_subset(&listed) {
            return Ok(listed);
        }
        ids.extend(listed);
        let data = [(REVOCATION_LIST_ITEM.to_string(), ByteString(format_revocation_list(&ids).into_bytes()))].into();
        let labels = [(GITSEAL_KEY_LABEL.to_string(), REVOCATION_LIST_LABEL_VALUE.to_string())].into();
        let result = match current {
            Some(mut s) => {
                s.data = Some(data);
                s.metadata.labels.get_or_insert_default().extend(labels);
                api.replace(REVOCATION_LIST_SECRET, &PostParams::default(), &s).await
            }
            None => {
                let s = Secret {
                    metadata: ObjectMeta {
                        name: Some(REVOCATION_LIST_SECRET.into()),
                        namespace: Some(shared.config.namespace.clone()),
                        labels: Some(labels),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &s).await
            }
        };
        match result {
            Ok(_) => return Ok(ids),
            // Written meanwhile (another replica): read again and merge.
            Err(kube::Error::Api(ae)) if ae.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(BTreeSet::new())
}

/// Load the digest key, or make and store one when the controller namespace has none yet.
pub async fn ensure_digest_key(shared: &Shared) -> crate::error::Result<()> {
    if shared.registry.digest_key().is_some() {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    if let Some(s) = api.get_opt(DIGEST_KEY_SECRET).await.context("cannot read the digest-key Secret")? {
        let bytes = s.data.as_ref().and_then(|d| d.get(DIGEST_KEY_ITEM)).map(|b| b.0.clone()).unwrap_or_default();
        shared.registry.set_digest_key(DigestKey::from_bytes(&bytes).context("the digest-key Secret is malformed")?);
        return Ok(());
    }
    let key = DigestKey::generate().map_err(|_| crate::error::Error::invalid("the system random generator failed"))?;
    match api.create(&PostParams::default(), &digest_key_secret(shared, &key)).await {
        Ok(_) => {
            let mut rec = AuditLog::record("DigestKeyGenerated", AuditOutcome::Success);
            rec.message = Some(format!("digest key {} in Secret {DIGEST_KEY_SECRET}", key.id()));
            shared.audit.write(rec);
            shared.registry.set_digest_key(key);
            Ok(())
        }
        // Another replica made it first: use that one.
        Err(kube::Error::Api(ae)) if ae.code == 409 => Box::pin(ensure_digest_key(shared)).await,
        Err(e) => Err(e).context("cannot store the digest-key Secret"),
    }
}

pub(crate) fn digest_key_secret(shared: &Shared, key: &DigestKey) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(DIGEST_KEY_SECRET.into()),
            namespace: Some(shared.config.namespace.clone()),
            labels: Some([(GITSEAL_KEY_LABEL.to_string(), DIGEST_KEY_LABEL_VALUE.to_string())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some([(DIGEST_KEY_ITEM.to_string(), ByteString(key.bytes().to_vec()))].into()),
        ..Default::default()
    }
}

/// Replace the digest key (with a key renewal). Every produced Secret then costs one
/// re-verification: its annotation was made under the old key.
pub(crate) async fn rotate_digest_key(shared: &Shared) -> crate::error::Result<()> {
    let key = DigestKey::generate().map_err(|_| crate::error::Error::invalid("the system random generator failed"))?;
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let pp = PatchParams::apply(crate::decide::FIELD_MANAGER).force();
    api.patch(DIGEST_KEY_SECRET, &pp, &Patch::Apply(&digest_key_secret(shared, &key)))
        .await
        .context("cannot rotate the digest key")?;
    let mut rec = AuditLog::record("DigestKeyRotated", AuditOutcome::Success);
    rec.message = Some(format!("digest key {} in Secret {DIGEST_KEY_SECRET}", key.id()));
    shared.audit.write(rec);
    shared.registry.set_digest_key(key);
    Ok(())
}

/// Keep the registry equal to the key Secrets of the controller namespace, forever.
pub async fn watch_keys(shared: Arc<Shared>) {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    let mut wc = watcher::Config::default();
    if let Some(selector) = key_selector(shared.config.bitnami_compat) {
        wc = wc.labels(&selector);
    }
    let mut stream = watcher(api, wc).boxed();
    let mut buffer: Vec<LoadedKey> = Vec::new();
    // Loaded keys whose Secret a re-list shows replaced: kept, reported at InitDone.
    let mut replaced_at_relist: std::collections::BTreeMap<String, crate::registry::Replaced> =
        std::collections::BTreeMap::new();
    // What the revocation-list Secret holds, as last seen.
    let mut persisted: BTreeSet<KeyId> = BTreeSet::new();
    // A refused key is looked at again once its NotBefore is within the allowed skew.
    let mut recheck = tokio::time::interval(Duration::from_secs(30));
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let event = tokio::select! {
            event = stream.next() => match event {
                Some(event) => event,
                None => break,
            },
            _ = recheck.tick() => {
                recheck_refused(&shared).await;
                continue;
            }
        };
        match event {
            Ok(watcher::Event::Init) => {
                buffer.clear();
                replaced_at_relist.clear();
            }
            // Replaced while the watch was away: left out of the re-list, so kept as vanished.
            Ok(watcher::Event::InitApply(s)) if let Some((k, why)) = replaced::replaced(&shared, &s) => {
                replaced_at_relist.insert(k.secret_name.clone(), why);
            }
            Ok(watcher::Event::InitApply(s)) => match classify_off_runtime(&shared, s).await {
                Seen::Key(k) => buffer.push(*k),
                Seen::RevocationList(ids) => {
                    persisted.extend(ids.iter().cloned());
                    shared.registry.revoke_ids(ids);
                }
                Seen::Other | Seen::Unknown => {}
            },
            Ok(watcher::Event::InitDone) => {
                for k in &buffer {
                    audit_loaded(&shared, k, "KeyLoaded");
                }
                // A re-list that no longer shows a loaded key: deleted while the watch was away.
                for k in shared.registry.replace_all_keeping_vanished(std::mem::take(&mut buffer)) {
                    match replaced_at_relist.remove(&k.secret_name) {
                        Some(why) => replaced::key_secret_replaced(&shared, k, &why),
                        None => key_secret_lost(&shared, k),
                    }
                }
                shared.standing.keys_synced.send_replace(true);
                tracing::info!(keys = shared.registry.len(), "key Secrets loaded");
                update_key_metrics(&shared);
            }
            // A loaded key's Secret holding something else now: keep the key, write it back.
            Ok(watcher::Event::Apply(s)) if let Some((k, why)) = replaced::replaced(&shared, &s) => {
                replaced::key_secret_replaced(&shared, k, &why);
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
                match classify_off_runtime(&shared, s).await {
                    Seen::Key(k) => {
                        let change = shared.registry.upsert(*k);
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
                    Seen::RevocationList(ids) => {
                        persisted = ids.iter().cloned().collect();
                        shared.registry.revoke_ids(ids);
                    }
                    Seen::Other => {
                        shared.registry.remove(&name);
                    }
                    // Nothing learnt: the registry stays as it was.
                    Seen::Unknown => {}
                }
                update_key_metrics(&shared);
            }
            Ok(watcher::Event::Delete(s)) => {
                let name = s.metadata.name.unwrap_or_default();
                shared.registry.unrefuse(&name);
                if let Some(k) = shared.registry.by_secret(&name) {
                    // Kept in memory and written back: see `key_secret_lost`.
                    key_secret_lost(&shared, k);
                    update_key_metrics(&shared);
                    continue;
                }
                if name == DIGEST_KEY_SECRET
                    && let Some(key) = shared.registry.digest_key()
                {
                    digest_key_secret_lost(&shared, key);
                    continue;
                }
                if name == REVOCATION_LIST_SECRET {
                    // Deleted: written again from memory below.
                    persisted.clear();
                }
                if let crate::registry::Change::Removed(id) = shared.registry.remove(&name) {
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
        // Revoked ids known here but not in the list Secret (a key labelled revoked by hand or
        // by an older version, a deleted list): write them down.
        if *shared.standing.keys_synced.borrow() && !shared.registry.revocation_list().is_subset(&persisted) {
            match persist_revocations(&shared).await {
                Ok(now_listed) => persisted = now_listed,
                Err(e) => tracing::warn!(error = %e, "cannot write the revocation list; retrying on the next change"),
            }
        }
    }
}

/// Load refused keys whose certificate has become valid (within the allowed skew).
async fn recheck_refused(shared: &Arc<Shared>) {
    let horizon = OffsetDateTime::now_utc() + shared.config.key_max_clock_skew;
    let due: Vec<RefusedKey> =
        shared.registry.refused().into_iter().filter(|r| r.not_before.is_none_or(|nb| nb <= horizon)).collect();
    if due.is_empty() {
        return;
    }
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.config.namespace);
    for r in due {
        match api.get_opt(&r.secret_name).await {
            Ok(Some(s)) => {
                if let Seen::Key(k) = classify_off_runtime(shared, s).await {
                    shared.registry.upsert(*k);
                    if let Some(k) = shared.registry.all().into_iter().find(|k| k.secret_name == r.secret_name) {
                        audit_loaded(shared, &k, "KeyLoaded");
                    }
                }
            }
            Ok(None) => shared.registry.unrefuse(&r.secret_name),
            Err(e) => tracing::warn!(secret = %r.secret_name, error = %e, "cannot re-read a refused key Secret"),
        }
    }
    update_key_metrics(shared);
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
    let mut backends: std::collections::BTreeMap<&'static str, i64> =
        [("memory", 0), ("pkcs11-oaep", 0), ("pkcs11-raw-rsa", 0)].into();
    for k in all.iter().filter(|k| k.state != KeyState::Revoked) {
        if let Some(p) = k.decryption.unwrap_path() {
            *backends.entry(p.as_str()).or_default() += 1;
        }
    }
    for (backend, n) in backends {
        shared.metrics.key_backends.get_or_create(&crate::metrics::BackendLabels { backend }).set(n);
    }
    let refused = shared.registry.refused().len();
    shared
        .metrics
        .keys_loaded
        .get_or_create(&crate::metrics::StateLabels { state: "refused" })
        .set(i64::try_from(refused).unwrap_or(i64::MAX));
    if let Some(nb) = shared.registry.latest_not_before() {
        shared.metrics.latest_key_age_seconds.set((OffsetDateTime::now_utc() - nb).as_seconds_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitseal_keys::generate_key_pair;

    /// Issue 11: key loading (a token lookup may wait for a session) runs beside the watch, not
    /// in it. On a one-thread runtime, work that waits for another task of that runtime finishes
    /// only if it runs elsewhere.
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_key_work_leaves_the_runtime_free_for_other_tasks() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other_task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(()).ok();
        });
        let waited = off_runtime(move || rx.recv_timeout(Duration::from_secs(5)).is_ok()).await;
        assert_eq!(waited, Some(true), "the other task ran while the blocking work waited");
        other_task.await.unwrap();
        assert_eq!(off_runtime(|| -> u8 { panic!("a bug in key loading") }).await, None, "a panic changes nothing");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_key_secret_is_classified_off_the_runtime() {
        let shared = crate::testing::shared_with(&[], Box::new(std::io::sink()));
        let pair = generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            OffsetDateTime::now_utc() - time::Duration::hours(1),
            time::Duration::days(1),
        )
        .unwrap();
        let id = pair.cert.key_id().clone();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("k".into()),
                namespace: Some(shared.config.namespace.clone()),
                labels: Some([(GITSEAL_KEY_LABEL.to_string(), "active".to_string())].into()),
                ..Default::default()
            },
            data: Some(
                pair.secret_data().unwrap().into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect(),
            ),
            ..Default::default()
        };
        match classify_off_runtime(&shared, secret).await {
            Seen::Key(k) => assert_eq!(k.id(), &id),
            _ => panic!("the key Secret was not loaded"),
        }
    }
}
