//! `gitseal keys restore`: recreate the controller's key Secrets from a backup.
//!
//! Flow: decrypt the age file in memory with the user's identities and check every key in it
//! (a wrong identity, an altered file or anything but key Secrets stops here, before the
//! cluster is contacted); make sure none of its keys is in the cluster already; then create
//! the Secrets with the user's credentials, annotated with who restored them. All or nothing:
//! when a create fails, the Secrets created before it are deleted again. The controller loads
//! the new Secrets from its watch and audits them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use age::DecryptError;
use anyhow::{Result, anyhow, bail};
use gitseal_keys::material::{AGE_KEY, TLS_CRT, TLS_KEY, parse_age_identity};
use gitseal_keys::{Certificate, KeyPair};
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::value::decode_base64;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api::{KeyList, LIST_KEYS};
use crate::cluster::{self, Cluster};
use crate::config::ClusterConfig;
use crate::{io, table};

pub const GITSEAL_KEY_LABEL: &str = "gitseal.dev/key";
pub const BITNAMI_KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
pub const RESTORED_BY_ANNOTATION: &str = "gitseal.dev/restored-by";

/// One key Secret of a backup. `Debug` shows its name and id only.
pub struct BackupKey {
    pub name: String,
    pub id: String,
    pub state: String,
    bitnami_label: String,
    data: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupKey").field("name", &self.name).field("id", &self.id).finish_non_exhaustive()
    }
}

pub fn run(cfg: &ClusterConfig, file: &Path, identities: &[PathBuf], dry_run: bool) -> Result<()> {
    let (keys, extras) = open_backup(file, identities)?;
    let (user, created) = cluster::run(async {
        let done = restore(cfg, &keys, dry_run).await?;
        restore_extras(cfg, &extras, dry_run).await?;
        Ok::<_, anyhow::Error>(done)
    })?;
    let rows: Vec<[String; 3]> =
        keys.iter().map(|k| [k.name.clone(), super::short_id(&k.id), k.state.clone()]).collect();
    let mut out = table::render(["SECRET", "KEY ID", "STATE"], &rows);
    out.push_str(&if dry_run {
        format!("\nDry run, nothing created: would restore {} key(s) into {} as {user}\n", keys.len(), cfg.controller_namespace)
    } else {
        format!(
            "\nRestored {created} key(s) into {} as {user}; the controller loads them from its watch (check: gitseal keys list)\n",
            cfg.controller_namespace
        )
    });
    io::write_stdout(out.as_bytes())
}

/// `gitseal.dev/key` values of the Secrets a backup carries besides keys.
pub const DIGEST_KEY_LABEL_VALUE: &str = "digest-key";
pub const REVOCATION_LIST_LABEL_VALUE: &str = "revocation-list";
/// [`BackupExtra::label`] of the audit signing key (its Secret carries `gitseal.dev/audit-key`).
pub const AUDIT_KEY_EXTRA: &str = "audit-key";
const AUDIT_KEY_LABEL: &str = "gitseal.dev/audit-key";
/// The revocation list's name and item (as the controller writes them).
const REVOCATION_LIST_SECRET: &str = "gitseal-revoked-keys";
const REVOCATION_LIST_ITEM: &str = "key-ids";

/// A Secret of the backup that is not a sealing key: the controller's digest key, its
/// revocation list or its audit signing key. `Debug` shows its name only.
pub struct BackupExtra {
    pub name: String,
    pub label: String,
    data: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for BackupExtra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupExtra").field("name", &self.name).finish_non_exhaustive()
    }
}

fn extra_label(doc: &Value) -> Option<&str> {
    if doc["metadata"]["labels"][AUDIT_KEY_LABEL].is_string() {
        return Some(AUDIT_KEY_EXTRA);
    }
    doc["metadata"]["labels"][GITSEAL_KEY_LABEL]
        .as_str()
        .filter(|l| [DIGEST_KEY_LABEL_VALUE, REVOCATION_LIST_LABEL_VALUE].contains(l))
}

/// The decoded `data` of a Secret in a backup, wiped on drop; `what` names it in errors.
fn secret_data(doc: &Value, what: &str) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>> {
    let mut data = BTreeMap::new();
    for (k, v) in doc["data"].as_object().into_iter().flatten() {
        let bytes =
            v.as_str().and_then(|s| decode_base64(s).ok()).ok_or_else(|| anyhow!("{what}: data[{k}] is not base64"))?;
        data.insert(k.clone(), Zeroizing::new(bytes));
    }
    Ok(data)
}

/// The non-key Secrets of a decrypted backup.
pub fn parse_extras(text: &str) -> Result<Vec<BackupExtra>> {
    let docs =
        parse_documents(text).map_err(|_| anyhow!("the backup is not YAML: was it written by gitseal keys backup?"))?;
    let mut extras = Vec::new();
    for doc in docs {
        let Some(label) = extra_label(&doc.value) else { continue };
        let name = doc.value["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let data = secret_data(&doc.value, &format!("Secret {name}"))?;
        extras.push(BackupExtra { name, label: label.to_string(), data });
    }
    Ok(extras)
}

/// Restore the digest key and the audit key when the cluster has none, and merge the revocation
/// list into the cluster's (a list only grows: restoring an old backup never un-revokes a key).
/// A controller refuses to start while a checkpoint names a history its audit key did not sign,
/// so the audit key comes back before the controller does.
async fn restore_extras(cfg: &ClusterConfig, extras: &[BackupExtra], dry_run: bool) -> Result<()> {
    if extras.is_empty() {
        return Ok(());
    }
    let cluster = Cluster::connect(cfg).await?;
    let ns = cluster.controller_namespace.clone();
    let api: kube::Api<Secret> = kube::Api::namespaced(cluster.client.clone(), &ns);
    let params = PostParams { dry_run, field_manager: Some("gitseal".into()) };
    for extra in extras {
        let data: BTreeMap<String, ByteString> =
            extra.data.iter().map(|(k, v)| (k.clone(), ByteString(v.to_vec()))).collect();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(extra.name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(if extra.label == AUDIT_KEY_EXTRA {
                    [(AUDIT_KEY_LABEL.to_string(), "true".to_string())].into()
                } else {
                    [(GITSEAL_KEY_LABEL.to_string(), extra.label.clone())].into()
                }),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        };
        match api.create(&params, &secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 && extra.label == REVOCATION_LIST_LABEL_VALUE => {
                merge_revocations(&api, extra, &params).await.map_err(|e| {
                    cluster.fail(&format!("merging the revocation list {ns}/{REVOCATION_LIST_SECRET}"), e)
                })?;
            }
            // The cluster's digest key stays: it matches the digests on today's Secrets. So does
            // its audit key: a running controller writes back the one it signs with.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(cluster.fail(&format!("creating Secret {ns}/{}", extra.name), e)),
        }
    }
    Ok(())
}

async fn merge_revocations(
    api: &kube::Api<Secret>,
    extra: &BackupExtra,
    params: &PostParams,
) -> std::result::Result<(), kube::Error> {
    let lines = |b: &[u8]| -> BTreeSet<String> {
        String::from_utf8_lossy(b).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
    };
    for _ in 0..5 {
        let mut current = api.get(REVOCATION_LIST_SECRET).await?;
        let have =
            current.data.as_ref().and_then(|d| d.get(REVOCATION_LIST_ITEM)).map(|b| lines(&b.0)).unwrap_or_default();
        let mut all = have.clone();
        all.extend(extra.data.get(REVOCATION_LIST_ITEM).map(|b| lines(b)).unwrap_or_default());
        if all == have {
            return Ok(());
        }
        let text: String = all.iter().map(|l| format!("{l}\n")).collect();
        current.data.get_or_insert_default().insert(REVOCATION_LIST_ITEM.into(), ByteString(text.into_bytes()));
        match api.replace(REVOCATION_LIST_SECRET, params, &current).await {
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            other => return other.map(|_| ()),
        }
    }
    Ok(())
}

/// Decrypt and check a backup, in memory: its key Secrets and the other Secrets it carries.
pub fn open_backup(file: &Path, identity_files: &[PathBuf]) -> Result<(Vec<BackupKey>, Vec<BackupExtra>)> {
    let mut identities = Vec::new();
    for path in identity_files {
        let text = io::read_file(path)?;
        let before = identities.len();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            identities.push(parse_age_identity(line).map_err(|_| {
                anyhow!(
                    "{} is not an age identity file: give the AGE-SECRET-KEY-1… file of a backup recipient",
                    path.display()
                )
            })?);
        }
        if identities.len() == before {
            bail!("{} holds no age identity: give the AGE-SECRET-KEY-1… file of a backup recipient", path.display());
        }
    }
    let bytes = std::fs::read(file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    let start = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).trim_start().to_string();
    if !start.starts_with("age-encryption.org/") && !start.starts_with("-----BEGIN AGE ENCRYPTED FILE-----") {
        bail!("{} is not an age file: give a backup written by gitseal keys backup", file.display());
    }
    let altered =
        || anyhow!("{} is damaged or was altered: nothing restored; use an intact copy of the backup", file.display());
    let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(&bytes[..])).map_err(|e| match e {
        DecryptError::UnknownFormat => {
            anyhow!("{} is not an age file: give a backup written by gitseal keys backup", file.display())
        }
        _ => altered(),
    })?;
    let mut reader = decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).map_err(|e| match e {
        DecryptError::NoMatchingKeys => anyhow!(
            "none of the identities given opens {}: use the identity of a recipient the backup was made for",
            file.display()
        ),
        _ => altered(),
    })?;
    let mut plain = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut plain).map_err(|_| altered())?;
    let text = std::str::from_utf8(&plain).map_err(|_| not_a_backup(file))?;
    let keys = parse_keys(text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let extras = parse_extras(text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    Ok((keys, extras))
}

fn not_a_backup(file: &Path) -> anyhow::Error {
    anyhow!("{} opens, but holds no key Secrets: give a backup written by gitseal keys backup", file.display())
}

/// The key Secrets of a decrypted backup (a v1 List, or a YAML stream), each checked.
pub fn parse_keys(text: &str) -> Result<Vec<BackupKey>> {
    let docs =
        parse_documents(text).map_err(|_| anyhow!("the backup is not YAML: was it written by gitseal keys backup?"))?;
    let mut keys = Vec::new();
    for doc in docs {
        if doc.kind() != "Secret" {
            bail!("the backup holds a {} besides key Secrets: was it written by gitseal keys backup?", doc.kind());
        }
        if extra_label(&doc.value).is_some() {
            continue; // the digest key, the revocation list or the audit key: see parse_extras
        }
        let meta = &doc.value["metadata"];
        let name = meta["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| anyhow!("a key Secret of the backup has no name"))?;
        let data = secret_data(&doc.value, &format!("key Secret {name}"))?;
        let (Some(key), Some(crt)) = (data.get(TLS_KEY), data.get(TLS_CRT)) else {
            bail!("key Secret {name} lacks {TLS_KEY} or {TLS_CRT}: not a sealing key");
        };
        let pair = KeyPair::from_secret_data(key, crt, data.get(AGE_KEY).map(|v| v.as_slice()))
            .map_err(|e| anyhow!("key Secret {name}: {e}"))?;
        let label = |l: &str| meta["labels"][l].as_str().map(str::to_string);
        let state = match label(GITSEAL_KEY_LABEL).as_deref() {
            Some(s @ ("active" | "retired" | "revoked")) => s.to_string(),
            _ => "active".into(),
        };
        keys.push(BackupKey {
            name: name.to_string(),
            id: pair.rsa.id().to_string(),
            state,
            bitnami_label: label(BITNAMI_KEY_LABEL).unwrap_or_else(|| "active".into()),
            data,
        });
    }
    if keys.is_empty() {
        bail!("the backup holds no key Secret");
    }
    Ok(keys)
}

/// Check and create; returns the restoring user and how many Secrets were created.
async fn restore(cfg: &ClusterConfig, keys: &[BackupKey], dry_run: bool) -> Result<(String, usize)> {
    let cluster = Cluster::connect(cfg).await?;
    let ns = cluster.controller_namespace.clone();
    let present = existing_ids(&cluster).await?;
    let clash: Vec<String> = keys.iter().filter(|k| present.contains(&k.id)).map(|k| super::short_id(&k.id)).collect();
    if !clash.is_empty() {
        bail!(
            "the cluster already has key(s) {} in {ns}: nothing restored; restore onto a cluster without them",
            clash.join(", ")
        );
    }
    let user = whoami(&cluster).await;
    let api: kube::Api<Secret> = kube::Api::namespaced(cluster.client.clone(), &ns);
    let params = PostParams { dry_run, field_manager: Some("gitseal".into()) };
    let mut created: Vec<&str> = Vec::new();
    for k in keys {
        if let Err(e) = api.create(&params, &secret_of(k, &ns, &user)).await {
            // All or nothing: take back what this run created.
            let mut left = Vec::new();
            for name in created.iter().filter(|_| !dry_run) {
                if api.delete(name, &DeleteParams::default()).await.is_err() {
                    left.push(*name);
                }
            }
            let outcome = if left.is_empty() {
                "nothing restored".to_string()
            } else {
                format!("could not remove the key Secret(s) created before it ({}): delete them", left.join(", "))
            };
            return Err(match e {
                kube::Error::Api(s) if s.code == 409 => anyhow!(
                    "a Secret {ns}/{} already exists: {outcome}; remove it or restore onto another cluster",
                    k.name
                ),
                kube::Error::Api(s) if s.code == 403 => {
                    anyhow!("you may not create secrets in {ns}, which restoring keys needs: {outcome}")
                }
                e => cluster.fail(&format!("creating Secret {ns}/{} ({outcome})", k.name), e),
            });
        }
        created.push(&k.name);
    }
    Ok((user, if dry_run { 0 } else { created.len() }))
}

fn secret_of(k: &BackupKey, ns: &str, user: &str) -> Secret {
    let labels = [(GITSEAL_KEY_LABEL, k.state.as_str()), (BITNAMI_KEY_LABEL, k.bitnami_label.as_str())]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    // Only restored-by: a key that comes from a backup is never pending one.
    let annotations = [(RESTORED_BY_ANNOTATION.to_string(), user.to_string())].into_iter().collect();
    let data = k
        .data
        .iter()
        .filter(|(name, _)| [TLS_KEY, TLS_CRT, AGE_KEY].contains(&name.as_str()))
        .map(|(name, v)| (name.clone(), ByteString(v.to_vec())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(k.name.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Ids of the keys in the cluster: from the controller, else (controller down) from the key
/// Secrets' certificates.
async fn existing_ids(cluster: &Cluster) -> Result<BTreeSet<String>> {
    let ns = &cluster.controller_namespace;
    let via_api = LIST_KEYS.list::<KeyList>(cluster, ns).await;
    if let Ok(list) = via_api {
        return Ok(list.items.into_iter().map(|k| k.key_id).collect());
    }
    let api: kube::Api<Secret> = kube::Api::namespaced(cluster.client.clone(), ns);
    let mut ids = BTreeSet::new();
    for selector in [GITSEAL_KEY_LABEL, BITNAMI_KEY_LABEL] {
        let list = match api.list(&ListParams::default().labels(selector)).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 403 => bail!(
                "cannot tell which keys {ns} already has: you may neither list keys.api.gitseal.dev nor secrets there; nothing restored"
            ),
            Err(e) => return Err(cluster.fail(&format!("listing the key Secrets of {ns}"), e)),
        };
        for s in list.items {
            let crt = s
                .data
                .as_ref()
                .and_then(|d| d.get(TLS_CRT))
                .and_then(|b| std::str::from_utf8(&b.0).ok().map(str::to_string));
            if let Some(cert) = crt.and_then(|pem| Certificate::from_pem(&pem).ok()) {
                ids.insert(cert.key_id().to_string());
            }
        }
    }
    Ok(ids)
}

/// The user name the API server sees (a SelfSubjectReview); `unknown` when it cannot say.
async fn whoami(cluster: &Cluster) -> String {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default());
    let answer: Option<Value> = match request {
        Ok(r) => cluster.client.request::<Value>(r).await.ok(),
        Err(_) => None,
    };
    answer
        .and_then(|v| v.pointer("/status/userInfo/username").and_then(Value::as_str).map(str::to_string))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            eprintln!(
                "warning: the API server did not say who you are (SelfSubjectReview); annotating restored-by: unknown"
            );
            "unknown".into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_text(state: Option<&str>) -> String {
        let pair = gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            time::OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
        .unwrap();
        let mut data = serde_json::Map::new();
        for (k, v) in pair.secret_data().unwrap() {
            data.insert(k.to_string(), gitseal_shared::value::encode_base64(&v).into());
        }
        let labels = match state {
            Some(s) => json!({GITSEAL_KEY_LABEL: s}),
            None => json!({}),
        };
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k1", "labels": labels}, "type": "kubernetes.io/tls", "data": data}
        ]});
        serde_json::to_string(&list).unwrap()
    }

    #[test]
    fn a_backup_list_yields_its_keys_with_their_states() {
        let keys = parse_keys(&backup_text(Some("retired"))).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].state, "retired");
        assert!(keys[0].id.starts_with("SHA256:"));
        let keys = parse_keys(&backup_text(None)).unwrap();
        assert_eq!(keys[0].state, "active");
        let debug = format!("{:?}", keys[0]);
        assert!(!debug.contains("PRIVATE") && !debug.contains("AGE-SECRET"), "{debug}");
    }

    #[test]
    fn anything_but_key_secrets_is_refused() {
        let err = parse_keys("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap_err().to_string();
        assert!(err.contains("ConfigMap"), "{err}");
        let err =
            parse_keys("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {a: YQ==}\n").unwrap_err().to_string();
        assert!(err.contains("lacks tls.key"), "{err}");
    }

    #[test]
    fn the_digest_key_revocation_list_and_audit_key_ride_along_but_are_not_sealing_keys() {
        let mut list: Value = serde_json::from_str(&backup_text(Some("active"))).unwrap();
        let items = list["items"].as_array_mut().unwrap();
        items.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gitseal-digest-key",
            "labels": {GITSEAL_KEY_LABEL: DIGEST_KEY_LABEL_VALUE}}, "data": {"digest.key": "AAAA"}}));
        items.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gitseal-revoked-keys",
            "labels": {GITSEAL_KEY_LABEL: REVOCATION_LIST_LABEL_VALUE}}, "data": {"key-ids": "U0hBMjU2Olg="}}));
        items.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gitseal-audit-key",
            "labels": {AUDIT_KEY_LABEL: "true"}}, "data": {"ed25519.pk8": "AAAA"}}));
        let text = serde_json::to_string(&list).unwrap();
        assert_eq!(parse_keys(&text).unwrap().len(), 1);
        let extras = parse_extras(&text).unwrap();
        assert_eq!(
            extras.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["gitseal-digest-key", "gitseal-revoked-keys", "gitseal-audit-key"]
        );
        assert_eq!(extras[2].label, AUDIT_KEY_EXTRA, "the audit key is restored too");
        assert!(!format!("{:?}", extras[0]).contains("AAAA"));
    }
}
