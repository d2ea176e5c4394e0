//! `gitseal validate`: check that every sealed value opens for its namespace, name and scope,
//! and report each value (offline, with `--key`) or each object (online: the controller's
//! authenticated verify endpoint, in the object's namespace, with the user's credentials).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use futures::StreamExt;
use gitseal_shared::KeyId;
use gitseal_shared::seal::{key_hints, target_of};
use gitseal_shared::value::{DecryptionKey, order_by_hints};
use serde_json::json;

use crate::api::{self, VERIFY, Verification};
use crate::cluster::{self, Cluster};
use crate::commands::open_value;
use crate::config::{Input, ValidateConfig};
use crate::{io, material, output, tree};

/// Verify requests in flight at once.
const CONCURRENCY: usize = 8;

/// The verdict on one value (or on a file or object that could not be read at all).
#[derive(Debug)]
struct Record {
    file: String,
    object: String,
    item: String,
    /// `Ok(short key id)` or `Err(reason)`.
    result: Result<String, String>,
}

pub fn run(cfg: &ValidateConfig) -> Result<()> {
    let files = tree::collect_files(&cfg.paths)?;
    let mut records = Vec::new();
    let mut objects = 0;
    match &cfg.keys {
        Some(keys) => {
            let keys = material::load_keys(keys)?;
            let handles = material::handles(&keys);
            for file in &files {
                objects += check_file(file, &handles, &mut records);
            }
        }
        None => objects = cluster::run(check_online(cfg, &files, &mut records))?,
    }
    if objects == 0 && records.is_empty() {
        bail!("no SealedSecret found in {}: give files or directories holding SealedSecrets", list(&cfg.paths));
    }
    print(cfg.json, &records, if cfg.keys.is_some() { "value" } else { "object" })?;
    let failed = records.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} checks failed: see the report above", records.len());
    }
    Ok(())
}

fn display_name(file: &Path) -> String {
    if file.as_os_str() == "-" { "stdin".to_string() } else { file.display().to_string() }
}

fn read_found(file: &Path) -> Result<Vec<tree::Found>> {
    let text = if file.as_os_str() == "-" { io::read_text(&Input::Stdin) } else { io::read_file(file) };
    text.and_then(|t| tree::sealed_secrets(&t))
}

/// Ask the controller about every SealedSecret of `files`; returns how many were found. An
/// unreachable cluster ends the run; a refused or failed object is one failed record.
async fn check_online(cfg: &ValidateConfig, files: &[PathBuf], records: &mut Vec<Record>) -> Result<usize> {
    let mut objects = Vec::new();
    for file in files {
        match read_found(file) {
            Ok(found) => objects.extend(found.into_iter().map(|f| (display_name(file), f))),
            Err(e) => records.push(Record {
                file: display_name(file),
                object: "-".into(),
                item: "-".into(),
                result: Err(output::one_line(&e)),
            }),
        }
    }
    if objects.is_empty() {
        return Ok(0);
    }
    let cluster = Cluster::connect(&cfg.cluster).await?;
    let cluster = &cluster;
    let count = objects.len();
    let bar = output::progress(count as u64);
    let mut answers = futures::stream::iter(objects)
        .map(|(file, f)| async move {
            let ns = api::namespace_of(&f.object, cluster).to_string();
            let answer = VERIFY
                .create::<Verification>(cluster, &ns, &api::request_name(&f.object), api::spec_for(&f.object, &ns))
                .await;
            (file, f, ns, answer)
        })
        .buffered(CONCURRENCY);
    while let Some((file, f, ns, answer)) = answers.next().await {
        bar.inc(1);
        let result = match answer {
            Ok(v) if v.valid => Ok(short_ids(&v.key_ids)),
            Ok(v) => Err(v.message.unwrap_or_else(|| "the controller cannot open it".into())),
            Err(e @ kube::Error::Api(_)) => Err(output::one_line(&VERIFY.explain(cluster, &ns, e))),
            Err(e) => return Err(cluster.fail("verifying SealedSecrets", e)),
        };
        let label = if f.object.metadata.namespace.is_some() { f.label.clone() } else { format!("{ns}/{}", f.label) };
        records.push(Record { file, object: label, item: "(all)".into(), result });
    }
    bar.finish_and_clear();
    Ok(count)
}

/// `abc123def456,…` from full key ids.
pub(crate) fn short_ids(ids: &[String]) -> String {
    let short: Vec<String> =
        ids.iter().map(|i| i.parse::<KeyId>().map(|k| k.short().to_string()).unwrap_or_else(|_| i.clone())).collect();
    if short.is_empty() { "?".into() } else { short.join(",") }
}

/// Check every SealedSecret of one file; returns how many were found.
fn check_file(file: &Path, keys: &[&DecryptionKey], records: &mut Vec<Record>) -> usize {
    let name = display_name(file);
    let fail = |object: &str, item: &str, reason: String| Record {
        file: name.clone(),
        object: object.into(),
        item: item.into(),
        result: Err(reason),
    };
    let found = match read_found(file) {
        Ok(f) => f,
        Err(e) => {
            records.push(fail("-", "-", output::one_line(&e)));
            return 0;
        }
    };
    for f in &found {
        let target = match target_of(&f.object) {
            Ok(t) => t,
            Err(e) => {
                records.push(fail(&f.label, "-", e.to_string()));
                continue;
            }
        };
        let ordered = order_by_hints(keys, &key_hints(&f.object));
        if let Some(blob) = &f.object.spec.data {
            let result = open_value(&ordered, &target, blob).map(|o| o.key_id.short().to_string());
            records.push(Record { file: name.clone(), object: f.label.clone(), item: "(spec.data)".into(), result });
        }
        for (item, value) in &f.object.spec.encrypted_data {
            let result = open_value(&ordered, &target, value).map(|o| o.key_id.short().to_string());
            records.push(Record { file: name.clone(), object: f.label.clone(), item: item.clone(), result });
        }
    }
    found.len()
}

/// `noun`: what a record is about, singular (a value offline, a whole object online).
fn print(json: bool, records: &[Record], noun: &str) -> Result<()> {
    let failed = records.iter().filter(|r| r.result.is_err()).count();
    let text = if json {
        let results: Vec<_> = records
            .iter()
            .map(|r| {
                json!({
                    "file": r.file, "object": r.object, "item": r.item,
                    "ok": r.result.is_ok(),
                    "keyId": r.result.as_ref().ok(),
                    "reason": r.result.as_ref().err(),
                })
            })
            .collect();
        let report = json!({"checked": records.len(), "failed": failed, "results": results});
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        let rows: Vec<[String; 4]> = records
            .iter()
            .map(|r| {
                let verdict = match &r.result {
                    Ok(key) => format!("OK (key {key})"),
                    Err(reason) => format!("FAIL: {reason}"),
                };
                [r.file.clone(), r.object.clone(), r.item.clone(), verdict]
            })
            .collect();
        let mut out = crate::table::render(["FILE", "OBJECT", "ITEM", "RESULT"], &rows);
        let plural = if records.len() == 1 { "" } else { "s" };
        out.push_str(&format!("\n{} {noun}{plural} checked, {failed} failed\n", records.len()));
        out
    };
    io::write_stdout(text.as_bytes())
}

fn list(paths: &[std::path::PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
