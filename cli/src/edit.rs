//! In-place edits of SealedSecret files: set `encryptedData` values and annotations of chosen
//! objects, leaving everything else as it was.
//!
//! YAML goes through `gitseal_shared::manifest::rewrite`, which splices the text so comments,
//! key order and quoting survive. JSON has no comments, so it is parsed, changed and written
//! back pretty-printed (key order kept).

use anyhow::{Context, Result, anyhow, bail};
use gitseal_shared::keyid::KEY_ID_ANNOTATION;
use gitseal_shared::manifest::is_json;
use gitseal_shared::manifest::rewrite::{EditOp, YamlEdit, non_empty_document_indexes, rewrite_yaml};
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use serde_json::Value;

/// Changes to one object of a stream.
#[derive(Debug, Clone, Default)]
pub struct ObjectEdits {
    /// `Document::index` of the object's document.
    pub doc: usize,
    /// Its position in a `kind: List`, if it is a member of one.
    pub item: Option<usize>,
    /// Paths inside the object (e.g. `spec`, `encryptedData`, `password`) and their new string values.
    pub sets: Vec<(Vec<String>, String)>,
}

impl ObjectEdits {
    pub fn new(doc: usize, item: Option<usize>) -> Self {
        Self { doc, item, sets: Vec::new() }
    }

    pub fn set(&mut self, path: &[&str], value: String) {
        self.sets.push((path.iter().map(|s| s.to_string()).collect(), value));
    }

    /// Declare `ids` in the key-id annotation, only where that changes something: an equal
    /// value is left as written (no diff line), and a `bitnami.com` object without the
    /// annotation (kubeseal wrote it) keeps kubeseal's metadata; the ids are only hints.
    pub fn set_key_ids(&mut self, object: &SealedSecretObject, ids: String) {
        let current = object.metadata.annotations.as_ref().and_then(|a| a.get(KEY_ID_ANNOTATION));
        let kubeseal_made = current.is_none() && ApiGroup::of(object) == Some(ApiGroup::Bitnami);
        if current != Some(&ids) && !kubeseal_made {
            self.set(&["metadata", "annotations", KEY_ID_ANNOTATION], ids);
        }
    }
}

/// Apply `edits` to the text of a manifest file.
pub fn apply(text: &str, edits: &[ObjectEdits]) -> Result<String> {
    if is_json(text) { apply_json(text, edits) } else { apply_yaml(text, edits) }
}

fn apply_yaml(text: &str, edits: &[ObjectEdits]) -> Result<String> {
    // `Document::index` counts the documents serde reads; the rewriter counts empty ones too.
    let stream_index = non_empty_document_indexes(text)?;
    let mut list = Vec::new();
    for e in edits {
        if e.item.is_some() {
            bail!("a SealedSecret inside a kind: List cannot be rewritten in place: split the list into --- documents");
        }
        let doc = *stream_index.get(e.doc).ok_or_else(|| anyhow!("document {} is missing", e.doc + 1))?;
        for (path, value) in &e.sets {
            list.push(YamlEdit { doc, path: path.clone(), op: EditOp::Set(value.clone()) });
        }
    }
    Ok(rewrite_yaml(text, &list)?)
}

fn apply_json(text: &str, edits: &[ObjectEdits]) -> Result<String> {
    let text = text.trim_start_matches('\u{feff}');
    let mut values: Vec<Value> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .context("malformed JSON")?;
    for e in edits {
        let doc = values.get_mut(e.doc).ok_or_else(|| anyhow!("document {} is missing", e.doc + 1))?;
        let object = match e.item {
            Some(i) => {
                doc.get_mut("items").and_then(|v| v.get_mut(i)).ok_or_else(|| anyhow!("list item {i} is missing"))?
            }
            None => doc,
        };
        for (path, value) in &e.sets {
            set_json(object, path, value.clone())?;
        }
    }
    let mut out = String::with_capacity(text.len() + 256);
    for v in &values {
        out.push_str(&serde_json::to_string_pretty(v)?);
        out.push('\n');
    }
    Ok(out)
}

fn set_json(mut at: &mut Value, path: &[String], value: String) -> Result<()> {
    let Some((last, parents)) = path.split_last() else { return Ok(()) };
    for key in parents {
        let map = at.as_object_mut().ok_or_else(|| anyhow!("{} is not a mapping", path.join(".")))?;
        let next = map.entry(key.clone()).or_insert_with(|| Value::Object(Default::default()));
        if next.is_null() {
            *next = Value::Object(Default::default());
        }
        at = next;
    }
    let map = at.as_object_mut().ok_or_else(|| anyhow!("{} is not a mapping", path.join(".")))?;
    map.insert(last.clone(), Value::String(value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_edits_find_their_document_past_empty_ones_and_keep_comments() {
        let text = "---\n# nothing here\n---\nkind: ConfigMap\n---\n# the sealed one\nkind: SealedSecret\nspec:\n  encryptedData:\n    a: old # keep me\n";
        let docs = gitseal_shared::manifest::parse_documents(text).unwrap();
        let sealed = docs.iter().find(|d| d.kind() == "SealedSecret").unwrap();
        let mut e = ObjectEdits::new(sealed.index, None);
        e.set(&["spec", "encryptedData", "a"], "new".into());
        e.set(&["metadata", "annotations", "gitseal.dev/key-id"], "SHA256:x+y/z=".into());
        let out = apply(text, &[e]).unwrap();
        assert!(out.contains("    a: new # keep me\n") && out.contains("# the sealed one\n"), "{out}");
        let back = gitseal_shared::manifest::parse_documents(&out).unwrap();
        assert_eq!(back[1].value["metadata"]["annotations"]["gitseal.dev/key-id"], "SHA256:x+y/z=");
        assert_eq!(back[0].value["kind"], "ConfigMap");
    }

    #[test]
    fn json_edits_keep_key_order_and_create_missing_maps() {
        let text = "{\"kind\":\"SealedSecret\",\"metadata\":{\"name\":\"s\"},\"spec\":{\"encryptedData\":{\"b\":\"1\",\"a\":\"2\"}}}\n{\"kind\":\"Other\"}";
        let mut e = ObjectEdits::new(0, None);
        e.set(&["spec", "encryptedData", "a"], "new".into());
        e.set(&["spec", "encryptedData", "c"], "added".into());
        e.set(&["metadata", "annotations", "gitseal.dev/key-id"], "SHA256:x".into());
        let out = apply(text, &[e]).unwrap();
        let docs: Vec<Value> = serde_json::Deserializer::from_str(&out).into_iter().map(Result::unwrap).collect();
        assert_eq!(docs.len(), 2);
        let keys: Vec<_> = docs[0]["spec"]["encryptedData"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert_eq!(docs[0]["spec"]["encryptedData"]["a"], "new");
        assert_eq!(docs[0]["metadata"]["annotations"]["gitseal.dev/key-id"], "SHA256:x");
    }
}
