//! Manifest I/O: YAML or JSON streams in, kubeseal-shaped YAML or JSON out.
//!
//! Input may be a YAML stream (`---`-separated), a JSON object, a stream of concatenated JSON
//! objects (what kubeseal prints), or a `kind: List`; every form yields [`Document`]s that keep
//! their index in the stream, so [`rewrite`] can edit the right one in place.

/// The comment-preserving YAML rewriter, which lives in its own crate (`gitseal-yaml-rewrite`).
pub mod rewrite {
    pub use gitseal_yaml_rewrite::*;
}
#[cfg(feature = "crypto")]
pub mod secret;

use serde_json::Value;

use crate::{Error, Result};

/// Output formats, as kubeseal's `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Yaml,
    Json,
}

/// One object of a stream. `index` counts the non-empty documents of the stream;
/// `item` is set for the members of a `kind: List`.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub index: usize,
    pub item: Option<usize>,
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    /// `kind namespace/name` for messages.
    pub fn describe(&self) -> String {
        let meta = self.value.get("metadata");
        let get = |k| meta.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("");
        let (ns, name) = (get("namespace"), get("name"));
        let kind = if self.kind().is_empty() { "object" } else { self.kind() };
        match (ns, name) {
            ("", "") => format!("{kind} #{}", self.index + 1),
            ("", n) => format!("{kind} {n}"),
            (ns, n) => format!("{kind} {ns}/{n}"),
        }
    }
}

/// Whether `text` looks like JSON rather than YAML (JSON is YAML, but a kubeseal stream of
/// concatenated JSON objects is not).
pub fn is_json(text: &str) -> bool {
    matches!(text.trim_start_matches('\u{feff}').trim_start().chars().next(), Some('{' | '['))
}

/// Parse a YAML or JSON stream into documents; empty documents are skipped, lists flattened.
pub fn parse_documents(text: &str) -> Result<Vec<Document>> {
    let text = text.trim_start_matches('\u{feff}');
    let raw: Vec<Value> = if is_json(text) {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Manifest(format!("malformed JSON at line {}, column {}: {e}", e.line(), e.column())))?
    } else {
        serde_saphyr::from_multiple::<Value>(text)
            .map_err(|e| Error::Manifest(format!("malformed YAML: {}", one_line(&e.to_string()))))?
    };
    let mut docs = Vec::new();
    for (index, value) in raw.into_iter().enumerate() {
        match value {
            Value::Null => {}
            Value::Object(_) if value.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = value.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                for (i, item) in items.into_iter().enumerate() {
                    docs.push(Document { index, item: Some(i), value: item });
                }
            }
            Value::Object(_) => docs.push(Document { index, item: None, value }),
            other => {
                return Err(Error::Manifest(format!(
                    "document {} is a {}, not a Kubernetes object",
                    index + 1,
                    json_type(&other)
                )));
            }
        }
    }
    Ok(docs)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

/// Collapse a multi-line parser message (with a source snippet) into its first line, so errors
/// stay one line and never echo file content.
fn one_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or(msg).trim();
    // The parser's messages start with their own `error: `, which the CLI prints once already.
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Serialize objects as kubeseal does: JSON objects pretty-printed and concatenated, or YAML
/// documents each preceded by `---` with keys sorted.
pub fn write_documents(values: &[Value], format: OutputFormat) -> Result<String> {
    let mut out = String::new();
    for v in values {
        match format {
            OutputFormat::Json => {
                out.push_str(&serde_json::to_string_pretty(v).map_err(|e| Error::Manifest(e.to_string()))?);
                out.push('\n');
            }
            OutputFormat::Yaml => {
                out.push_str("---\n");
                out.push_str(&to_yaml(v)?);
            }
        }
    }
    Ok(out)
}

/// One object as YAML with sorted keys (as Kubernetes' YAML printer writes it).
pub fn to_yaml(v: &Value) -> Result<String> {
    let sorted = sort_keys(v);
    // Block scalars would fold a 700-character sealed value over several lines; Kubernetes
    // tools write it on one line, and so do we.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    let mut s = serde_saphyr::to_string_with_options(&sorted, options)
        .map_err(|e| Error::Manifest(format!("cannot write YAML: {e}")))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sort_keys(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeseal_json_stream_of_concatenated_objects_is_read() {
        let docs = parse_documents("{\"kind\":\"A\"}\n{\"kind\":\"B\"}\n").unwrap();
        assert_eq!(docs.iter().map(Document::kind).collect::<Vec<_>>(), ["A", "B"]);
    }

    #[test]
    fn yaml_stream_keeps_document_indexes_and_flattens_lists() {
        let text = "---\n# only a comment\n---\nkind: A\n---\nkind: List\nitems:\n- kind: B\n- kind: C\n";
        let docs = parse_documents(text).unwrap();
        let got: Vec<_> = docs.iter().map(|d| (d.index, d.item, d.kind().to_string())).collect();
        assert_eq!(got, [(0, None, "A".into()), (1, Some(0), "B".into()), (1, Some(1), "C".into())]);
    }

    #[test]
    fn malformed_yaml_gives_a_one_line_error() {
        let err = parse_documents("kind: [unclosed\n").unwrap_err().to_string();
        assert!(err.starts_with("malformed YAML"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn a_scalar_document_is_rejected() {
        assert!(parse_documents("just text\n").is_err());
    }

    #[test]
    fn yaml_output_sorts_keys_and_keeps_long_values_on_one_line() {
        let long = "A".repeat(700);
        let v = serde_json::json!({"spec": {"encryptedData": {"k": long}}, "kind": "SealedSecret", "apiVersion": "v"});
        let y = write_documents(std::slice::from_ref(&v), OutputFormat::Yaml).unwrap();
        assert!(y.starts_with("---\napiVersion: v\nkind: SealedSecret\n"), "{y}");
        assert!(y.lines().any(|l| l.trim() == format!("k: {long}")), "{y}");
        let back = parse_documents(&y).unwrap();
        assert_eq!(back[0].value, v);
    }
}
