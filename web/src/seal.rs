//! A whole SealedSecret from what the page's form holds: values sealed with [`crate::hybrid`],
//! the object built as `gitseal_shared::seal::seal_secret` builds it for a fresh Secret, and
//! written as `gitseal seal` writes YAML (`---`, sorted keys, one value per line).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroize;

use crate::cert::SealingKey;
use crate::hybrid;
use crate::{Error, Result, Scope, Target};

/// Random bytes a value consumes: the session key, then the OAEP seed.
pub const RANDOM_BYTES_PER_VALUE: usize = hybrid::RANDOM_BYTES;
/// Kubernetes' limit on a Secret's data, and so on what one form may seal.
pub const MAX_PLAINTEXT: usize = 1024 * 1024;
pub const MAX_ITEMS: usize = 1024;
/// The largest request (JSON) the wasm ABI accepts: the plaintext limit with room for escaping.
pub const MAX_REQUEST: usize = 8 * MAX_PLAINTEXT;

const KEY_ID_ANNOTATION: &str = "gitseal.dev/key-id";

/// What the page's form holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The sealing certificate, PEM (as `/v1/cert.pem` serves it).
    pub cert: String,
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// `strict`, `namespace-wide` or `cluster-wide`.
    pub scope: String,
    /// `gitseal.dev` (default) or `bitnami.com`.
    #[serde(default)]
    pub api: String,
    /// The Secret's type; empty for none.
    #[serde(default, rename = "type")]
    pub type_: String,
    pub data: Vec<Item>,
}

/// One key/value pair. The value is wiped when the item is dropped; `Debug` never shows it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub key: String,
    pub value: String,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Item({:?}, {} bytes)", self.key, self.value.len())
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

/// The sealed result, and which key it was sealed for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sealed {
    pub yaml: String,
    pub object: Value,
    pub key: KeyInfo,
}

/// What the page shows about the key it seals for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub id: String,
    pub bits: usize,
    pub not_before: u64,
    pub not_before_text: String,
    pub not_after: u64,
    pub not_after_text: String,
}

impl From<&SealingKey> for KeyInfo {
    fn from(k: &SealingKey) -> KeyInfo {
        KeyInfo {
            id: k.id.clone(),
            bits: k.bits,
            not_before: k.not_before,
            not_before_text: k.not_before_text.clone(),
            not_after: k.not_after,
            not_after_text: k.not_after_text.clone(),
        }
    }
}

/// Seal every value of `req`. `random` holds exactly [`RANDOM_BYTES_PER_VALUE`] fresh random
/// bytes per item, used in the order of the items' keys (sorted), never twice.
pub fn seal(req: &Request, random: &[u8]) -> Result<Sealed> {
    let key = SealingKey::from_pem(&req.cert)?;
    let scope: Scope = req.scope.parse()?;
    let api_version = match req.api.as_str() {
        "" | "gitseal.dev" => "gitseal.dev/v1",
        "bitnami.com" => "bitnami.com/v1alpha1",
        other => {
            return Err(Error::Request(format!("unknown API group {other:?}: expected gitseal.dev or bitnami.com")));
        }
    };
    check_name("name", &req.name, 253)?;
    if !req.namespace.is_empty() {
        check_name("namespace", &req.namespace, 63)?;
    }
    let namespace = (!req.namespace.is_empty()).then_some(req.namespace.as_str());
    let target = Target::new(scope, namespace, Some(&req.name))
        .map_err(|_| Error::Request(format!("{scope} scope needs a namespace")))?;
    if req.type_.len() > 253 {
        return Err(Error::Request("type is longer than 253 characters".into()));
    }

    let items = check_items(&req.data)?;
    if random.len() != items.len() * RANDOM_BYTES_PER_VALUE {
        return Err(Error::Request(format!(
            "{} random bytes given, {} needed ({RANDOM_BYTES_PER_VALUE} per value)",
            random.len(),
            items.len() * RANDOM_BYTES_PER_VALUE
        )));
    }
    let label = target.label();
    let mut encrypted = Map::new();
    for ((k, value), random) in items.iter().zip(random.chunks_exact(RANDOM_BYTES_PER_VALUE)) {
        let random: &[u8; RANDOM_BYTES_PER_VALUE] =
            random.try_into().map_err(|_| Error::Request("random bytes".into()))?;
        let sealed = hybrid::encrypt(&key.key, &label, value.as_bytes(), random)?;
        encrypted.insert((*k).to_string(), Value::String(STANDARD.encode(sealed)));
    }

    let object = object(req, scope, api_version, &key.id, encrypted);
    let yaml = format!("---\n{}", to_yaml(&object)?);
    Ok(Sealed { yaml, object, key: KeyInfo::from(&key) })
}

/// The object `seal_secret` builds for a Secret with only name, namespace, type and data.
fn object(req: &Request, scope: Scope, api_version: &str, key_id: &str, encrypted: Map<String, Value>) -> Value {
    let mut scope_annotations = BTreeMap::new();
    scope.apply_to(&mut scope_annotations);
    let mut top_annotations = scope_annotations.clone();
    top_annotations.insert(KEY_ID_ANNOTATION.to_string(), key_id.to_string());

    let mut meta = Map::new();
    meta.insert("name".into(), json!(req.name));
    if !req.namespace.is_empty() {
        meta.insert("namespace".into(), json!(req.namespace));
    }
    let mut template_meta = meta.clone();
    if !scope_annotations.is_empty() {
        template_meta.insert("annotations".into(), json!(scope_annotations));
    }
    meta.insert("annotations".into(), json!(top_annotations));

    let mut template = Map::new();
    template.insert("metadata".into(), Value::Object(template_meta));
    if !req.type_.is_empty() {
        template.insert("type".into(), json!(req.type_));
    }
    json!({
        "apiVersion": api_version,
        "kind": "SealedSecret",
        "metadata": meta,
        "spec": { "encryptedData": encrypted, "template": template },
    })
}

/// Keys as Kubernetes accepts them (`[-._a-zA-Z0-9]+`, at most 253, not `.` or `..`), no
/// duplicates, within the count and size limits; sorted by key.
fn check_items(data: &[Item]) -> Result<BTreeMap<&str, &str>> {
    if data.is_empty() {
        return Err(Error::Request("nothing to seal: add at least one key and value".into()));
    }
    if data.len() > MAX_ITEMS {
        return Err(Error::Request(format!("more than {MAX_ITEMS} values")));
    }
    let mut total = 0usize;
    let mut items = BTreeMap::new();
    for item in data {
        let k = item.key.as_str();
        let valid = !k.is_empty()
            && k.len() <= 253
            && k != "."
            && k != ".."
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err(Error::Request(format!(
                "invalid key {:?}: use letters, digits, '-', '_' and '.' (at most 253)",
                truncate(k)
            )));
        }
        total = total.saturating_add(item.value.len());
        if items.insert(k, item.value.as_str()).is_some() {
            return Err(Error::Request(format!("key {k:?} is given twice")));
        }
    }
    if total > MAX_PLAINTEXT {
        return Err(Error::Request("the values are larger than a Secret may hold (1 MiB)".into()));
    }
    Ok(items)
}

/// A DNS-style name: lowercase letters, digits, `-` and `.`, starting and ending alphanumeric.
fn check_name(what: &str, v: &str, max: usize) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Request(format!(
            "invalid {what} {:?}: lowercase letters, digits, '-' and '.', at most {max}",
            truncate(v)
        )))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One object as YAML with sorted keys: `gitseal_shared::manifest::to_yaml` itself.
pub fn to_yaml(v: &Value) -> Result<String> {
    gitseal_shared::manifest::to_yaml(v).map_err(|_| Error::Request("cannot write YAML".into()))
}

/// The JSON the wasm ABI answers: `{"ok":true,…Sealed}` or `{"ok":false,"error":"…"}`.
pub fn seal_json(request: &[u8], random: &[u8]) -> String {
    let answer = match serde_json::from_slice::<Request>(request) {
        Ok(req) => seal(&req, random).map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
        Err(e) => Err(Error::Request(format!("malformed request: {}", e.classify_text()))),
    };
    let v = match answer {
        Ok(Value::Object(mut m)) => {
            m.insert("ok".into(), Value::Bool(true));
            Value::Object(m)
        }
        Ok(_) => json!({"ok": false, "error": "internal error"}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    v.to_string()
}

/// `{"ok":true,"key":KeyInfo}` for a certificate PEM, for showing the key before sealing.
pub fn inspect_json(pem: &[u8]) -> String {
    let answer = std::str::from_utf8(pem)
        .map_err(|_| Error::Certificate("not UTF-8"))
        .and_then(SealingKey::from_pem)
        .map(|k| KeyInfo::from(&k));
    match answer {
        Ok(key) => json!({"ok": true, "key": key}).to_string(),
        Err(e) => json!({"ok": false, "error": e.to_string()}).to_string(),
    }
}

trait Classify {
    fn classify_text(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    /// serde_json's messages can quote the input (plaintext): only the category is said.
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected fields or types",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
