//! Differential run: the same generated streams and Set edits through gitseal-yaml-rewrite,
//! yaml-edit and nondestructive; each output is read back with serde-saphyr and compared with
//! the reference tree. Prints a tally of failure shapes and one example of each.
// The generator and reference of the crate's own property test, compiled here as a module.
#[path = "../../src/tests.rs"]
#[allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]
mod cases;
use cases::*;
pub use gitseal_yaml_rewrite::*;

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;

fn yaml_edit_apply(text: &str, edits: &[YamlEdit]) -> Result<String, String> {
    let file = yaml_edit::YamlFile::from_str(text).map_err(|e| format!("parse error: {e}"))?;
    for e in edits {
        let EditOp::Set(value) = &e.op;
        let doc = file.documents().nth(e.doc).ok_or("document index differs")?;
        let (last, parents) = e.path.split_last().ok_or("empty")?;
        if parents.is_empty() {
            doc.set(last.as_str(), value.as_str());
            continue;
        }
        let first = &parents[0];
        let mut map = match doc.get_mapping(first.as_str()) {
            Some(m) => m,
            None => {
                doc.set(first.as_str(), yaml_edit::Mapping::new());
                doc.get_mapping(first.as_str()).ok_or("created mapping not found")?
            }
        };
        for k in &parents[1..] {
            map = match map.get_mapping(k.as_str()) {
                Some(m) => m,
                None => {
                    map.set(k.as_str(), yaml_edit::Mapping::new());
                    map.get_mapping(k.as_str()).ok_or("created mapping not found")?
                }
            };
        }
        map.set(last.as_str(), value.as_str());
    }
    Ok(file.to_string())
}

fn nondestructive_apply(text: &str, edits: &[YamlEdit]) -> Result<String, String> {
    let mut doc = nondestructive::yaml::from_slice(text).map_err(|e| format!("parse error: {e}"))?;
    for e in edits {
        let EditOp::Set(value) = &e.op;
        if e.doc != 0 {
            return Err("multi-document stream".into());
        }
        let (last, parents) = e.path.split_last().ok_or("empty")?;
        let mut id = doc.as_ref().as_mapping().ok_or("root is not a mapping (empty document?)")?.id();
        for k in parents {
            let mut map = doc.value_mut(id).into_mapping_mut().ok_or("path goes through a non-mapping")?;
            id = if map.as_ref().get(k).is_some() {
                let v = map.get_into_mut(k).ok_or("lost")?;
                if v.as_ref().as_mapping().is_some() {
                    v.into_mapping_mut().ok_or("lost")?.as_ref().id()
                } else {
                    v.make_mapping().as_ref().id()
                }
            } else {
                map.insert(k, nondestructive::yaml::Separator::Auto).make_mapping().as_ref().id()
            };
        }
        let mut map = doc.value_mut(id).into_mapping_mut().ok_or("not a mapping")?;
        if let Some(mut v) = map.get_mut(last) {
            v.set_string(value);
        } else {
            map.insert_string(last, value);
        }
    }
    Ok(doc.to_string())
}

fn shape(text: &str, edits: &[YamlEdit]) -> String {
    let mut s = Vec::new();
    if text.matches("\n---").count() + text.starts_with("---") as usize > 0 {
        s.push("multi-doc");
    }
    if text.contains('#') {
        s.push("comments");
    }
    if text.contains(['|', '>']) {
        s.push("block-scalar");
    }
    if text.contains("\r\n") {
        s.push("crlf");
    }
    if text.starts_with('\u{feff}') {
        s.push("bom");
    }
    if text.contains("!!") {
        s.push("tag");
    }
    if text.contains("\n- ") || text.contains(" - ") {
        s.push("seq");
    }
    if edits.iter().any(|e| e.path.len() > 1) {
        s.push("nested-path");
    }
    s.join(",")
}

fn main() {
    let (cases, seed) = cases_and_seed(1000);
    let mut rng = Rng(seed);
    let mut tally: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
    let (mut total, mut ours_ok, mut ye_ok, mut nd_ok) = (0, 0, 0, 0);
    for _ in 0..cases {
        let text = random_stream(&mut rng);
        let mut reference = parse_stream_values(&text);
        let original = serde_json::to_string(&reference).unwrap_or_default();
        let mut edits = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let edit = random_edit(&mut rng, &reference);
            let mut trial = reference.clone();
            if trial.get_mut(edit.doc).is_some_and(|d| apply_reference(d, &edit.path, &edit.op).is_ok()) {
                reference = trial;
                edits.push(edit);
            }
        }
        total += 1;
        let check = |out: Result<String, String>| -> Result<(), String> {
            let out = out?;
            let back = serde_saphyr::from_multiple::<Json>(&out)
                .map_err(|e| format!("output does not parse: {}", e.to_string().lines().next().unwrap_or("")))?;
            let _ = back;
            let got = std::panic::catch_unwind(|| parse_stream_values(&out))
                .map_err(|_| "output document count differs".to_string())?;
            if got != reference {
                return Err("read-back tree differs from the reference".into());
            }
            // Comment-looking lines inside block scalars are content; skip those.
            for line in text.lines().filter(|l| l.trim_start().starts_with('#') && !original.contains(l.trim())) {
                if !out.contains(line) {
                    return Err("a comment line was lost".into());
                }
            }
            Ok(())
        };
        let ours = check(rewrite_yaml(&text, &edits).map_err(|e| e.to_string()));
        let ye =
            catch_unwind(AssertUnwindSafe(|| yaml_edit_apply(&text, &edits))).unwrap_or_else(|_| Err("panic".into()));
        let ye = if ye.as_ref().is_err_and(|e| e == "panic") {
            Err("panic".into())
        } else {
            catch_unwind(AssertUnwindSafe(|| check(ye))).unwrap_or_else(|_| Err("panic in check".into()))
        };
        let nd = catch_unwind(AssertUnwindSafe(|| nondestructive_apply(&text, &edits)))
            .unwrap_or_else(|_| Err("panic".into()));
        let nd = catch_unwind(AssertUnwindSafe(|| check(nd))).unwrap_or_else(|_| Err("panic in check".into()));
        for (name, r, ok) in
            [("gitseal", ours, &mut ours_ok), ("yaml-edit", ye, &mut ye_ok), ("nondestructive", nd, &mut nd_ok)]
        {
            match r {
                Ok(()) => *ok += 1,
                Err(e) => {
                    let key =
                        (name.to_string(), if e.starts_with("parse error") { "parse error".into() } else { e.clone() });
                    let ent = tally.entry(key).or_insert((0, String::new()));
                    ent.0 += 1;
                    if ent.1.is_empty() || ent.1.len() > text.len() + 200 {
                        ent.1 = format!(
                            "[{}] {e}\nedits: {:?}\n{text:?}",
                            shape(&text, &edits),
                            edits
                                .iter()
                                .map(|e| (
                                    e.doc,
                                    e.path.join("."),
                                    match &e.op {
                                        EditOp::Set(s) => s.clone(),
                                    }
                                ))
                                .collect::<Vec<_>>()
                        );
                    }
                }
            }
        }
    }
    println!("cases {total}: gitseal {ours_ok} agree, yaml-edit {ye_ok} agree, nondestructive {nd_ok} agree");
    for ((name, why), (n, ex)) in &tally {
        println!("\n== {name}: {why}: {n} cases; smallest example:\n{ex}");
    }
}
