//! `gitseal scan`: fail when a tree holds a plaintext Secret (`kind: Secret` with data or
//! stringData) or a SealedSecret whose key-id annotation names a retired or revoked key.
//!
//! Built to run before every commit (`.pre-commit-hooks.yaml`, id `gitseal-scan`) and in CI:
//! offline by default, a finding names file, document and object, never a value.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use gitseal_shared::KeyId;
use gitseal_shared::manifest::{Document, parse_documents};
use gitseal_shared::seal::key_hints;
use gitseal_shared::types::{is_sealed_secret, sealed_secret_from_value};
use serde_json::{Value, json};

use crate::cluster::{self, Cluster};
use crate::config::{Input, KeyStates, Output, ScanConfig};
use crate::{api, io, table, tree};

#[derive(Debug)]
struct Finding {
    file: String,
    /// `document 2`, `document 1, list item 3`.
    place: String,
    object: String,
    problem: String,
}

pub fn run(cfg: &ScanConfig) -> Result<()> {
    let states = key_states(&cfg.key_states)?;
    let files = tree::collect_files(&cfg.paths)?;
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        let text = if file.as_os_str() == "-" { io::read_text(&Input::Stdin) } else { io::read_file(file) };
        let name = if file.as_os_str() == "-" { "stdin".to_string() } else { file.display().to_string() };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                skipped.push(format!("{name}: {}", crate::output::one_line(&e)));
                continue;
            }
        };
        match parse_documents(&text) {
            Ok(docs) => findings.extend(docs.iter().filter_map(|d| {
                check(d, states.as_ref()).map(|(object, problem)| Finding {
                    file: name.clone(),
                    place: place(d),
                    object,
                    problem,
                })
            })),
            // A template (Helm, Kustomize vars) may not be YAML yet; say so only when it could hold a Secret.
            Err(_) if text.contains("Secret") => skipped.push(format!("{name}: not valid YAML or JSON, not checked")),
            Err(_) => {}
        }
    }
    for s in &skipped {
        eprintln!("warning: {s}");
    }
    print(&findings, files.len(), cfg.output)?;
    if !findings.is_empty() {
        bail!(
            "{} finding(s) in {} file(s): seal plaintext Secrets with gitseal seal, re-seal old ones with gitseal reseal",
            findings.len(),
            findings.iter().map(|f| &f.file).collect::<std::collections::BTreeSet<_>>().len()
        );
    }
    Ok(())
}

/// `(object, problem)` when a document must not be committed.
fn check(doc: &Document, states: Option<&BTreeMap<String, String>>) -> Option<(String, String)> {
    let label = || {
        let meta = &doc.value["metadata"];
        match (meta["namespace"].as_str(), meta["name"].as_str()) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.to_string(),
            _ => "(no name)".into(),
        }
    };
    if doc.kind() == "Secret" && doc.value["apiVersion"].as_str().is_none_or(|v| v == "v1") {
        let filled = |k: &str| doc.value.get(k).and_then(Value::as_object).is_some_and(|m| !m.is_empty());
        let fields: Vec<&str> = ["data", "stringData"].into_iter().filter(|k| filled(k)).collect();
        if !fields.is_empty() {
            return Some((
                format!("Secret {}", label()),
                format!("plaintext Secret ({}): seal it and commit the SealedSecret instead", fields.join(", ")),
            ));
        }
        return None;
    }
    let states = states?;
    if !is_sealed_secret(&doc.value) {
        return None;
    }
    let ss = sealed_secret_from_value(doc.value.clone()).ok()?;
    let bad: Vec<String> = key_hints(&ss)
        .iter()
        .filter_map(|id| match states.get(id.as_str()).map(String::as_str) {
            Some(s @ ("retired" | "revoked")) => Some(format!("{s} key {}", id.short())),
            _ => None,
        })
        .collect();
    if bad.is_empty() {
        return None;
    }
    let advice = if bad.iter().any(|b| b.starts_with("revoked")) {
        "its values must be considered exposed: change them and seal again"
    } else {
        "re-seal it with gitseal reseal"
    };
    Some((format!("SealedSecret {}", label()), format!("sealed for {}: {advice}", bad.join(", "))))
}

fn place(d: &Document) -> String {
    match d.item {
        Some(i) => format!("document {}, list item {}", d.index + 1, i + 1),
        None => format!("document {}", d.index + 1),
    }
}

/// Key id → state, from a `keys list -o json` file or the controller.
fn key_states(source: &KeyStates) -> Result<Option<BTreeMap<String, String>>> {
    let items: Vec<(String, String)> = match source {
        KeyStates::Unknown => return Ok(None),
        KeyStates::File(path) => parse_keys_file(path)?,
        KeyStates::Online(cfg) => cluster::run(async {
            let cluster = Cluster::connect(cfg).await?;
            Ok(api::list_keys(&cluster).await?.into_iter().map(|k| (k.key_id, k.state)).collect())
        })?,
    };
    Ok(Some(items.into_iter().collect()))
}

fn parse_keys_file(path: &Path) -> Result<Vec<(String, String)>> {
    let bad = || anyhow::anyhow!("{} is not a key list: write it with gitseal keys list -o json", path.display());
    let v: Value = serde_json::from_str(&io::read_file(path)?).map_err(|_| bad())?;
    let items = v.get("items").unwrap_or(&v).as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|i| {
            let id = i["keyId"].as_str().filter(|s| s.parse::<KeyId>().is_ok()).ok_or_else(bad)?;
            let state = i["state"].as_str().ok_or_else(bad)?;
            Ok((id.to_string(), state.to_string()))
        })
        .collect()
}

fn print(findings: &[Finding], scanned: usize, out: Output) -> Result<()> {
    if out == Output::Json {
        let list: Vec<Value> = findings
            .iter()
            .map(|f| json!({"file": f.file, "place": f.place, "object": f.object, "problem": f.problem}))
            .collect();
        return crate::output::print_structured(&json!({"scanned": scanned, "findings": list}), false);
    }
    let text = if findings.is_empty() {
        format!("{scanned} file(s) scanned: no plaintext Secret, no SealedSecret on a retired or revoked key\n")
    } else {
        let rows: Vec<[String; 4]> =
            findings.iter().map(|f| [f.file.clone(), f.place.clone(), f.object.clone(), f.problem.clone()]).collect();
        let mut t = table::render(["FILE", "WHERE", "OBJECT", "PROBLEM"], &rows);
        t.push_str(&format!("\n{} finding(s) in {scanned} file(s) scanned\n", findings.len()));
        t
    };
    io::write_stdout(text.as_bytes())
}
