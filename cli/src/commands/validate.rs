//! `gitseal validate`: check offline that every sealed value opens for its namespace, name
//! and scope, and report each value.

use std::path::Path;

use anyhow::{Result, bail};
use gitseal_shared::seal::{key_hints, target_of};
use gitseal_shared::value::{DecryptionKey, order_by_hints};
use serde_json::json;

use crate::commands::open_value;
use crate::config::{Input, ValidateConfig};
use crate::{io, material, output, tree};

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
    let keys = material::load_keys(&cfg.keys)?;
    let handles = material::handles(&keys);
    let files = tree::collect_files(&cfg.paths)?;
    let mut records = Vec::new();
    let mut objects = 0;
    for file in &files {
        objects += check_file(file, &handles, &mut records);
    }
    if objects == 0 && records.is_empty() {
        bail!("no SealedSecret found in {}: give files or directories holding SealedSecrets", list(&cfg.paths));
    }
    print(cfg.json, &records)?;
    let failed = records.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} checks failed: see the report above", records.len());
    }
    Ok(())
}

/// Check every SealedSecret of one file; returns how many were found.
fn check_file(file: &Path, keys: &[&DecryptionKey], records: &mut Vec<Record>) -> usize {
    let name = if file.as_os_str() == "-" { "stdin".to_string() } else { file.display().to_string() };
    let fail = |object: &str, item: &str, reason: String| Record {
        file: name.clone(),
        object: object.into(),
        item: item.into(),
        result: Err(reason),
    };
    let text = if file.as_os_str() == "-" { io::read_text(&Input::Stdin) } else { io::read_file(file) };
    let found = match text.and_then(|t| tree::sealed_secrets(&t)) {
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

fn print(json: bool, records: &[Record]) -> Result<()> {
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
        out.push_str(&format!("\n{} values checked, {} failed\n", records.len(), failed));
        out
    };
    io::write_stdout(text.as_bytes())
}

fn list(paths: &[std::path::PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
