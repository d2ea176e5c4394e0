//! `gitseal keys usage`: which key ids the SealedSecrets of a tree are sealed for, from their
//! key-id annotation; with `--online`, the controller's verify endpoint answers for objects
//! without one. Offline it reads files only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use futures::StreamExt;
use gitseal_shared::seal::key_hints;
use serde_json::{Value, json};

use super::short_id;
use crate::api::{self, VERIFY, Verification};
use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, Output};
use crate::{io, output, table, tree};

const CONCURRENCY: usize = 8;

/// One SealedSecret found, and the keys it is sealed for (empty: unknown).
#[derive(Debug)]
struct Entry {
    file: String,
    object: String,
    ids: Vec<String>,
    /// Why `ids` is empty, when the controller was asked.
    reason: Option<String>,
    found: tree::Found,
}

pub fn run(paths: &[PathBuf], online: Option<&ClusterConfig>, out: Output) -> Result<()> {
    let files = tree::collect_files(paths)?;
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        let found = io::read_file(file).and_then(|t| tree::sealed_secrets(&t));
        match found {
            Ok(found) => entries.extend(found.into_iter().map(|f| Entry {
                file: file.display().to_string(),
                object: f.label.clone(),
                ids: key_hints(&f.object).iter().map(|k| k.as_str().to_string()).collect(),
                reason: None,
                found: f,
            })),
            Err(e) => problems.push(format!("{}: {}", file.display(), output::one_line(&e))),
        }
    }
    if entries.is_empty() && problems.is_empty() {
        bail!("no SealedSecret found in {} file(s) under the given paths", files.len());
    }
    if let Some(cfg) = online
        && entries.iter().any(|e| e.ids.is_empty())
    {
        cluster::run(ask(cfg, &mut entries))?;
    }
    print(&entries, out)?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    if !problems.is_empty() {
        bail!("{} file(s) could not be read: see the warnings above", problems.len());
    }
    Ok(())
}

/// Ask the controller which keys open the objects without a key-id annotation.
async fn ask(cfg: &ClusterConfig, entries: &mut [Entry]) -> Result<()> {
    let cluster = Cluster::connect(cfg).await?;
    let cluster = &cluster;
    let todo: Vec<(usize, String, String, api::SealedSecretSpec)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.ids.is_empty())
        .map(|(i, e)| {
            let ns = api::namespace_of(&e.found.object, cluster).to_string();
            let spec = api::spec_for(&e.found.object, &ns);
            (i, ns, api::request_name(&e.found.object), spec)
        })
        .collect();
    let mut answers = futures::stream::iter(todo)
        .map(|(i, ns, name, spec)| async move {
            (i, ns.clone(), VERIFY.create::<Verification>(cluster, &ns, &name, spec).await)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((i, ns, answer)) = answers.next().await {
        match answer {
            Ok(v) if v.valid => entries[i].ids = v.key_ids,
            Ok(v) => entries[i].reason = Some(v.message.unwrap_or_else(|| "the controller cannot open it".into())),
            Err(e @ kube::Error::Api(_)) => {
                entries[i].reason = Some(output::one_line(&VERIFY.explain(cluster, &ns, e)))
            }
            Err(e) => return Err(cluster.fail("asking the controller about SealedSecrets", e)),
        }
    }
    Ok(())
}

fn print(entries: &[Entry], out: Output) -> Result<()> {
    let mut by_key: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        for id in &e.ids {
            by_key.entry(id.as_str()).or_default().push(e);
        }
    }
    let unknown: Vec<&Entry> = entries.iter().filter(|e| e.ids.is_empty()).collect();
    let place = |e: &Entry| {
        let mut v = json!({"file": e.file, "object": e.object});
        if let Some(r) = &e.reason {
            v["reason"] = r.clone().into();
        }
        v
    };
    let text = match out {
        Output::Json | Output::Yaml => {
            let keys: Vec<Value> = by_key
                .iter()
                .map(|(id, es)| json!({"keyId": id, "objects": es.iter().map(|e| place(e)).collect::<Vec<_>>()}))
                .collect();
            let report = json!({"keys": keys, "unknown": unknown.iter().map(|e| place(e)).collect::<Vec<_>>()});
            return output::print_structured(&report, out == Output::Yaml);
        }
        Output::Wide => {
            let mut rows: Vec<[String; 3]> = Vec::new();
            for (id, es) in &by_key {
                rows.extend(es.iter().map(|e| [id.to_string(), e.object.clone(), e.file.clone()]));
            }
            rows.extend(unknown.iter().map(|e| ["?".to_string(), e.object.clone(), e.file.clone()]));
            table::render(["KEY ID", "OBJECT", "FILE"], &rows)
        }
        Output::Table => {
            let mut rows: Vec<[String; 3]> = by_key
                .iter()
                .map(|(id, es)| {
                    let mut files: Vec<&str> = es.iter().map(|e| e.file.as_str()).collect();
                    files.dedup();
                    [short_id(id), es.len().to_string(), files.len().to_string()]
                })
                .collect();
            if !unknown.is_empty() {
                rows.push(["? (no key-id annotation)".into(), unknown.len().to_string(), "-".into()]);
            }
            let mut t = table::render(["KEY ID", "OBJECTS", "FILES"], &rows);
            if !unknown.is_empty() {
                t.push_str("\nObjects of unknown key (add --online to ask the controller, or re-seal them):\n");
                let rows: Vec<[String; 3]> = unknown
                    .iter()
                    .map(|e| [e.object.clone(), e.file.clone(), e.reason.clone().unwrap_or_default()])
                    .collect();
                t.push_str(&table::render(["OBJECT", "FILE", "REASON"], &rows));
            }
            t
        }
    };
    io::write_stdout(text.as_bytes())
}
