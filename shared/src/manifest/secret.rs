//! Plain Kubernetes Secrets: the input of sealing and the output of unsealing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};

use crate::value::{decode_base64, encode_base64};
use crate::{Error, Result, SecretBytes};

/// Annotations that may carry a plaintext copy of the object and are dropped at seal time
/// (Bitnami issue #227).
pub const LAST_APPLIED_ANNOTATIONS: [&str; 2] =
    ["kubectl.kubernetes.io/last-applied-configuration", "kubecfg.ksonnet.io/last-applied-configuration"];

/// A Secret with its values decoded. Values zeroize on drop and never show in `Debug`.
#[derive(Debug, Clone, Default)]
pub struct PlainSecret {
    pub metadata: ObjectMeta,
    pub type_: Option<String>,
    pub immutable: Option<bool>,
    pub data: BTreeMap<String, SecretBytes>,
}

impl PlainSecret {
    /// Read a `v1/Secret` manifest value: `data` (base64) merged with `stringData` (which wins,
    /// as the API server does). Anything that is not a Secret is an error naming what it is.
    pub fn from_value(doc: &Value) -> Result<PlainSecret> {
        Self::read(doc, false).map(|(secret, _)| secret)
    }

    /// [`Self::from_value`], but `stringData` numbers and booleans (`port: 5432`,
    /// `enabled: true`) are taken as their text, as kubeseal does. Returns the keys so taken,
    /// for a warning; their values are never part of it.
    pub fn from_value_coercing(doc: &Value) -> Result<(PlainSecret, Vec<String>)> {
        Self::read(doc, true)
    }

    fn read(doc: &Value, coerce: bool) -> Result<(PlainSecret, Vec<String>)> {
        let kind = doc.get("kind").and_then(Value::as_str);
        let api = doc.get("apiVersion").and_then(Value::as_str);
        if kind != Some("Secret") || api.is_some_and(|a| a != "v1") {
            return Err(Error::Manifest(format!(
                "expected a v1 Secret, found {} ({}): gitseal seals Secret manifests",
                kind.unwrap_or("an object without kind"),
                api.unwrap_or("no apiVersion")
            )));
        }
        let metadata: ObjectMeta = match doc.get("metadata") {
            Some(m) => serde_json::from_value(m.clone())
                .map_err(|e| Error::Manifest(format!("malformed Secret metadata: {e}")))?,
            None => ObjectMeta::default(),
        };
        let mut data = BTreeMap::new();
        for (key, v) in string_map(doc.get("data"), "data", false)? {
            // The decoder names the offending symbol and its offset, which is plaintext: not repeated.
            let bytes = decode_base64(&v.text).map_err(|_| {
                Error::Manifest(format!(
                    "data[{key}] is not valid base64: encode it, or put plain text under stringData"
                ))
            })?;
            data.insert(key.clone(), SecretBytes::new(bytes));
        }
        let mut coerced = Vec::new();
        for (key, v) in string_map(doc.get("stringData"), "stringData", coerce)? {
            if v.coerced {
                coerced.push(key.clone());
            }
            data.insert(key.clone(), SecretBytes::from(v.text.as_bytes()));
        }
        let secret = PlainSecret {
            metadata,
            type_: doc.get("type").and_then(Value::as_str).map(str::to_string),
            immutable: doc.get("immutable").and_then(Value::as_bool),
            data,
        };
        Ok((secret, coerced))
    }

    /// The `v1/Secret` manifest, values base64-encoded. The returned value holds plaintext:
    /// callers print it and drop it.
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), "v1".into());
        obj.insert("kind".into(), "Secret".into());
        obj.insert("metadata".into(), serde_json::to_value(&self.metadata).unwrap_or(Value::Null));
        if let Some(t) = &self.type_ {
            obj.insert("type".into(), t.clone().into());
        }
        if let Some(i) = self.immutable {
            obj.insert("immutable".into(), i.into());
        }
        let data: Map<String, Value> =
            self.data.iter().map(|(k, v)| (k.clone(), encode_base64(v.expose()).into())).collect();
        obj.insert("data".into(), Value::Object(data));
        Value::Object(obj)
    }
}

/// Longest Secret data key the API server accepts (a DNS subdomain's length).
pub const MAX_DATA_KEY_LEN: usize = 253;

/// Refuse a data key the API server would reject (its `IsConfigMapKey`: `[-._a-zA-Z0-9]+`, at
/// most 253 characters, not `.` or `..` and not starting with `..`), so `a/b` fails at sealing
/// time, not later in the cluster. The message names the key (shortened, escaped): keys are not
/// secret, values are.
pub fn check_data_key(key: &str) -> Result<()> {
    let shown = || {
        let mut s: String = key.chars().take(64).collect();
        if key.chars().count() > 64 {
            s.push('…');
        }
        format!("{s:?}")
    };
    let why = if key.is_empty() {
        Some("is empty")
    } else if key.len() > MAX_DATA_KEY_LEN {
        Some("is longer than 253 characters")
    } else if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        Some("may hold only letters, digits, '-', '_' and '.'")
    } else if key == "." || key == ".." {
        Some("must not be '.' or '..'")
    } else if key.starts_with("..") {
        Some("must not start with '..'")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::Manifest(format!(
            "data key {} {why}: Kubernetes would refuse this Secret (keys match [-._a-zA-Z0-9]+)",
            shown()
        ))),
        None => Ok(()),
    }
}

/// A `data`/`stringData` value as text; `coerced` when it was a number or boolean.
struct Text {
    text: zeroize::Zeroizing<String>,
    coerced: bool,
}

fn string_map<'a>(v: Option<&'a Value>, field: &str, coerce: bool) -> Result<Vec<(&'a String, Text)>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, Text { text: s.clone().into(), coerced: false })),
                Value::Bool(b) if coerce => Ok((k, Text { text: b.to_string().into(), coerced: true })),
                Value::Number(n) if coerce => Ok((k, Text { text: number_as_kubeseal(n).into(), coerced: true })),
                _ => Err(Error::Manifest(format!("{field}[{k}] must be a string: quote the value"))),
            })
            .collect(),
        Some(_) => Err(Error::Manifest(format!("{field} must be a mapping of key: value strings"))),
    }
}

/// A number as kubeseal's YAML reader (sigs.k8s.io/yaml) turns it into a string field:
/// integers in full, floats as Go's `strconv.FormatFloat(f, 'g', -1, 32)` (shortest float32
/// digits; exponent form below 1e-4 and from 1e6, as `1e+06`).
fn number_as_kubeseal(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or_default() as f32;
    // Rust's `{:e}` gives the shortest digits that read back as the same f32: `-2.5e-7`.
    let shortest = format!("{f:e}");
    let (mantissa, exp) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if mantissa.starts_with('-') { "-" } else { "" };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs());
    }
    if exp < 0 {
        return format!("{sign}0.{}{digits}", "0".repeat(exp.unsigned_abs() as usize - 1));
    }
    let point = exp as usize + 1;
    if digits.len() <= point {
        format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: kubeseal seals `a/b` silently and the cluster refuses it later.
    #[test]
    fn data_keys_kubernetes_would_refuse_are_refused_by_name() {
        for ok in ["password", "tls.crt", ".dockerconfigjson", "a-b_c.D9", &"k".repeat(253)] {
            check_data_key(ok).unwrap();
        }
        for (bad, says) in [
            ("a/b", "\"a/b\" may hold only"),
            ("", "is empty"),
            ("with space", "may hold only"),
            ("é", "may hold only"),
            (".", "must not be"),
            ("..", "must not be"),
            ("..x", "must not start"),
        ] {
            let e = check_data_key(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(!e.contains('\n'));
        }
        let long = "k".repeat(254);
        let e = check_data_key(&long).unwrap_err().to_string();
        assert!(e.contains("longer than 253") && e.len() < 200, "{e}");
    }

    #[test]
    fn string_data_wins_over_data_like_the_api_server() {
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new"}});
        let s = PlainSecret::from_value(&doc).unwrap();
        assert_eq!(s.data["a"].expose(), b"new");
        assert_eq!(s.data["b"].expose(), b"b");
    }

    #[test]
    fn wrong_base64_names_the_key_but_not_the_value() {
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "not base64!"}});
        let err = PlainSecret::from_value(&doc).unwrap_err().to_string();
        assert!(err.contains("data[password]") && !err.contains("not base64!"), "{err}");
    }

    #[test]
    fn string_data_numbers_and_booleans_are_taken_as_text_only_when_asked() {
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"port": 5432, "on": true, "ratio": 1.5, "name": "x"}});
        let (s, coerced) = PlainSecret::from_value_coercing(&doc).unwrap();
        assert_eq!(s.data["port"].expose(), b"5432");
        assert_eq!(s.data["on"].expose(), b"true");
        assert_eq!(s.data["ratio"].expose(), b"1.5");
        assert_eq!(coerced, ["port", "on", "ratio"], "in the manifest's order");
        let err = PlainSecret::from_value(&doc).unwrap_err().to_string();
        assert!(err.contains("stringData[port] must be a string: quote") && !err.contains("5432"), "{err}");
        let nested = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"k": {"a": 1}}});
        assert!(PlainSecret::from_value_coercing(&nested).is_err());
    }

    #[test]
    fn numbers_read_as_text_as_kubeseal_v0_36_6_prints_them() {
        // Each pair was checked with the real kubeseal --cert … | --recovery-unseal.
        let cases = [
            ("5432", "5432"),
            ("12345678901234567890", "12345678901234567890"),
            ("1.50", "1.5"),
            ("1e3", "1000"),
            ("3.14159265358979", "3.1415927"),
            ("1e6", "1e+06"),
            ("0.00001", "1e-05"),
            ("-2.5e-7", "-2.5e-07"),
            ("1e21", "1e+21"),
        ];
        for (yaml, want) in cases {
            let n: serde_json::Number = serde_json::from_str(yaml).unwrap();
            assert_eq!(number_as_kubeseal(&n), want, "{yaml}");
        }
    }

    #[test]
    fn a_config_map_is_rejected_by_kind() {
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}});
        let err = PlainSecret::from_value(&doc).unwrap_err().to_string();
        assert!(err.contains("found ConfigMap"), "{err}");
    }
}
