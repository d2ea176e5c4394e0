//! `gitseal keys list`: the controller's keys (`GET …/keys`), with how many SealedSecrets in
//! the cluster depend on each (their `status.keyId`, else their key-id annotation).

use std::collections::BTreeMap;

use anyhow::Result;
use gitseal_shared::KeyId;
use gitseal_shared::keyid::KEY_ID_ANNOTATION;
use gitseal_shared::types::ApiGroup;
use kube::api::{DynamicObject, ListParams};
use serde_json::{Value, json};

use super::short_id;
use crate::api::{self, KeyInfo};
use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, Output};
use crate::{io, output, table};

pub fn run(cfg: &ClusterConfig, out: Output) -> Result<()> {
    let (keys, dependents) = cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let keys = api::list_keys(&cluster).await?;
        let dependents = dependents(&cluster).await?;
        Ok((keys, dependents))
    })?;
    if dependents.is_none() && matches!(out, Output::Table | Output::Wide) {
        eprintln!("note: you may not list SealedSecrets in all namespaces, so SEALED SECRETS shows ?");
    }
    let count = |k: &KeyInfo| dependents.as_ref().map(|d| d.get(&k.key_id).copied().unwrap_or(0));
    match out {
        Output::Json | Output::Yaml => {
            let items: Vec<Value> = keys
                .iter()
                .map(|k| {
                    let mut v = serde_json::to_value(k).unwrap_or(Value::Null);
                    v["sealedSecrets"] = json!(count(k));
                    v
                })
                .collect();
            let list = json!({"apiVersion": api::GROUP_VERSION, "kind": "KeyList", "items": items});
            output::print_structured(&list, out == Output::Yaml)
        }
        Output::Table | Output::Wide => {
            let n = |k: &KeyInfo| count(k).map_or("?".to_string(), |c| c.to_string());
            let text = if out == Output::Wide {
                let rows: Vec<[String; 9]> = keys
                    .iter()
                    .map(|k| {
                        [
                            k.key_id.clone(),
                            state(k),
                            day(&k.created),
                            day(&k.not_before),
                            day(&k.not_after),
                            n(k),
                            k.secret_name.clone().unwrap_or_default(),
                            if k.pending_backup { "yes".into() } else { "-".into() },
                            k.backend.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                table::render(
                    [
                        "KEY ID",
                        "STATE",
                        "CREATED",
                        "NOT BEFORE",
                        "NOT AFTER",
                        "SEALED SECRETS",
                        "SECRET",
                        "PENDING BACKUP",
                        "BACKEND",
                    ],
                    &rows,
                )
            } else {
                let rows: Vec<[String; 5]> = keys
                    .iter()
                    .map(|k| [short_id(&k.key_id), state(k), day(&k.created), day(&k.not_after), n(k)])
                    .collect();
                table::render(["KEY ID", "STATE", "CREATED", "NOT AFTER", "SEALED SECRETS"], &rows)
            };
            io::write_stdout(text.as_bytes())
        }
    }
}

/// `active (latest)`, `active, pending backup`, `retired`, …
fn state(k: &KeyInfo) -> String {
    let mut s = k.state.clone();
    if k.latest {
        s.push_str(" (latest)");
    }
    if k.pending_backup {
        s.push_str(", pending backup");
    }
    s
}

/// The date and time of an RFC 3339 stamp, to the minute.
fn day(t: &Option<String>) -> String {
    match t {
        Some(t) => t.get(..16).unwrap_or(t).replace('T', " "),
        None => "-".into(),
    }
}

/// SealedSecrets per key id in every namespace of both groups; `None` when the user may not
/// list them everywhere. A group whose CRD is not installed counts nothing.
async fn dependents(cluster: &Cluster) -> Result<Option<BTreeMap<String, usize>>> {
    let mut counts = BTreeMap::new();
    for group in [ApiGroup::Gitseal, ApiGroup::Bitnami] {
        let api: kube::Api<DynamicObject> = kube::Api::all_with(cluster.client.clone(), &group.api_resource());
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(cluster.fail(&format!("listing {} SealedSecrets", group.api_version()), e)),
        };
        for obj in list.items {
            for id in key_ids_of(&obj) {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
    }
    Ok(Some(counts))
}

/// The keys a SealedSecret in the cluster depends on: the controller's `status.keyId`, else
/// the key-id annotation.
fn key_ids_of(obj: &DynamicObject) -> Vec<String> {
    let status = obj.data.pointer("/status/keyId").and_then(Value::as_str).filter(|s| !s.is_empty());
    let annotation = obj.metadata.annotations.as_ref().and_then(|a| a.get(KEY_ID_ANNOTATION)).map(String::as_str);
    match status.or(annotation) {
        Some(list) => KeyId::parse_list(list).iter().map(|k| k.as_str().to_string()).collect(),
        None => Vec::new(),
    }
}
