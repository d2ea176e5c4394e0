//! The kubeseal golden vectors, opened with gitseal's library.
//!
//! `tests/testdata/kubeseal/` holds what the real kubeseal v0.36.6 wrote for a fixed RSA-4096
//! test key (made by `tests/tools/make-golden.sh`, which documents the layout). Every case
//! directory has a `case.json`; this runner walks them all:
//! - manifest cases: each SealedSecret of `sealed.*` unseals to the Secret that
//!   `kubeseal --recovery-unseal` printed (`expected.yaml`), under the target `case.json` names,
//!   and sealing `input.yaml` with gitseal (Bitnami API) gives kubeseal's object shape;
//! - raw cases: the bare value of `sealed.txt` opens to `input.bin` for its target, and for no
//!   other;
//! - `fail_*` cases: unsealing fails with `expect_error` in the message, without panicking and
//!   without echoing plaintext.
//!
//! No peer is needed: the vectors are committed. Run: `cargo test -p gitseal-shared --test kubeseal_vectors`.

// Test code: a failed unwrap is a failed test with its message. clippy.toml's
// allow-unwrap-in-tests covers #[test] functions only, not the helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gitseal_keys::{Certificate, parse_private_keys};
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::seal::{SealOptions, seal_secret, target_of, unseal};
use gitseal_shared::types::{ApiGroup, sealed_secret_from_value};
use gitseal_shared::value::{DecryptionKey, Format, RecipientSet, decode_base64, encode_base64, open};
use gitseal_shared::{Error, Scope, Target};
use serde::Deserialize;
use serde_json::Value;

#[path = "support/vectors.rs"]
mod vectors;

/// Plaintext fragments of the vectors' inputs that no error message may contain.
const PLAINTEXTS: [&str; 3] = ["correct horse", "admin", "s3cr3t"];

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/kubeseal")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    sealed: String,
    #[serde(default)]
    kubeseal: Vec<String>,
    #[serde(default)]
    derived_from: Option<String>,
    #[serde(default)]
    expected: Option<String>,
    /// One target per object of `sealed` (manifest cases).
    #[serde(default)]
    targets: Vec<TargetSpec>,
    #[serde(default)]
    raw: bool,
    /// `input.bin` of raw cases; absent for generated inputs.
    #[serde(default)]
    input: Option<String>,
    /// The target of a raw value.
    #[serde(default)]
    target: Option<TargetSpec>,
    /// Data items left out of the files and generated here (the 1 MiB value).
    #[serde(default)]
    generated: BTreeMap<String, Generated>,
    #[serde(default)]
    expect_error: Option<String>,
    #[serde(default)]
    kubeseal_error: Option<String>,
    /// A rejection gitseal does not make yet, and why.
    #[serde(default)]
    pending: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    scope: String,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

impl TargetSpec {
    fn target(&self) -> Target {
        let scope: Scope = self.scope.parse().unwrap();
        Target::new(scope, self.namespace.as_deref(), Some(&self.name)).unwrap()
    }
}

/// `len` bytes, byte `i` = `i mod modulus`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generated {
    len: usize,
    modulus: usize,
}

impl Generated {
    fn bytes(&self) -> Vec<u8> {
        (0..self.len).map(|i| (i % self.modulus) as u8).collect()
    }
}

struct Fixture {
    key: DecryptionKey,
    cert: Certificate,
}

fn fixture() -> Fixture {
    let dir = vectors_dir();
    let pem = std::fs::read_to_string(dir.join("key.pem")).expect("tests/testdata/kubeseal/key.pem");
    let mut keys = parse_private_keys(&pem).unwrap();
    assert_eq!(keys.len(), 1, "key.pem holds one key");
    let cert = Certificate::from_pem(&std::fs::read_to_string(dir.join("cert.pem")).unwrap()).unwrap();
    Fixture { key: keys.remove(0).key, cert }
}

fn run_all(fail: bool, f: impl Fn(&Fixture, &Path, &Case) -> Result<(), String>) -> usize {
    vectors::run_all(&vectors_dir(), fail, &fixture(), f)
}

impl vectors::Described for Case {
    fn description(&self) -> &str {
        &self.description
    }
}

fn read(path: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(path.join(file)).map_err(|e| format!("{file}: {e}"))
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_kubeseal_vector_opens_to_the_secret_kubeseal_recovers() {
    let n = run_all(
        false,
        |fx, path, case| if case.raw { check_raw(fx, path, case) } else { check_manifest(fx, path, case) },
    );
    assert!(n >= 20, "only {n} vectors found: regenerate them with tests/tools/make-golden.sh");
}

#[test]
fn every_fail_vector_is_rejected_with_its_message_and_without_plaintext() {
    let n = run_all(true, check_fail);
    assert!(n >= 10, "only {n} fail_* vectors found: regenerate them with tests/tools/make-golden.sh");
}

#[test]
fn gitseal_seals_every_input_into_the_object_kubeseal_writes() {
    run_all(false, check_seal_shape);
}

#[test]
fn the_bitnami_key_secret_holds_the_same_key_as_the_pem_file_and_the_certificate() {
    let fx = fixture();
    let text = std::fs::read_to_string(vectors_dir().join("key-secret.yaml")).unwrap();
    let from_secret = parse_private_keys(&text).unwrap();
    assert_eq!(from_secret.len(), 1);
    assert_eq!(from_secret[0].key.id(), fx.key.id());
    assert_eq!(fx.cert.key_id(), fx.key.id());
    assert_eq!(fx.cert.public_key().bits(), 4096);
    // Valid for 100 years: CI must never meet an expired test certificate.
    assert!(fx.cert.not_after().unwrap().year() >= 2100);
}

// ---------------------------------------------------------------------------------------------

fn check_manifest(fx: &Fixture, path: &Path, case: &Case) -> Result<(), String> {
    let sealed = read(path, &case.sealed)?;
    let docs = parse_documents(&sealed).map_err(|e| format!("parsing {}: {e}", case.sealed))?;
    let expected_file = case.expected.as_deref().ok_or("manifest case without expected")?;
    let mut expected = parse_documents(&read(path, expected_file)?).map_err(|e| format!("parsing expected: {e}"))?;
    if docs.len() != case.targets.len() || docs.len() != expected.len() {
        return Err(format!(
            "{} objects, {} targets, {} expected Secrets",
            docs.len(),
            case.targets.len(),
            expected.len()
        ));
    }
    for ((doc, spec), want) in docs.into_iter().zip(&case.targets).zip(expected.iter_mut()) {
        let what = doc.describe();
        let ss = sealed_secret_from_value(doc.value).map_err(|e| format!("{what}: {e}"))?;
        if ApiGroup::of(&ss) != Some(ApiGroup::Bitnami) {
            return Err(format!("{what}: not read as bitnami.com/v1alpha1"));
        }
        let target = target_of(&ss).map_err(|e| format!("{what}: {e}"))?;
        if target != spec.target() {
            return Err(format!("{what}: read as {target}, case.json says {}", spec.target()));
        }
        let unsealed = unseal(&ss, &[&fx.key]).map_err(|e| format!("{what}: unseal failed: {e}"))?;
        let items = ss.spec.encrypted_data.len() as u32;
        if unsealed.private_ops != items {
            return Err(format!("{what}: {} RSA private operations for {items} items", unsealed.private_ops));
        }
        for (item, text) in &ss.spec.encrypted_data {
            let bytes = decode_base64(text).map_err(|e| format!("{item}: {e}"))?;
            let plain = unsealed.secret.data.get(item).ok_or_else(|| format!("{what}: item {item} not unsealed"))?;
            check_layout(&bytes, plain.len()).map_err(|e| format!("{what}: item {item}: {e}"))?;
        }

        normalize_recovered(&mut want.value);
        for (item, g) in &case.generated {
            want.value["data"][item] = Value::String(encode_base64(&g.bytes()));
        }
        let got = unsealed.secret.to_value();
        let diffs = diff(&want.value, &got);
        if !diffs.is_empty() {
            return Err(format!("{what}: the unsealed Secret differs from kubeseal's:\n    {}", diffs.join("\n    ")));
        }
    }
    Ok(())
}

/// What `kubeseal --recovery-unseal` prints, minus two Go artefacts: the ownerReference (empty
/// uid) that only the controller's Secret carries, and `null` for an empty value (Go marshals an
/// empty `[]byte` as `null`; the API server stores it as an empty value, as gitseal writes it).
fn normalize_recovered(secret: &mut Value) {
    if let Some(meta) = secret.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("ownerReferences");
    }
    if let Some(data) = secret.get_mut("data").and_then(Value::as_object_mut) {
        data.values_mut().filter(|v| v.is_null()).for_each(|v| *v = Value::String(String::new()));
    }
}

/// kubeseal's byte layout: u16 BE 512, the RSA-4096 ciphertext, the GCM ciphertext and tag.
fn check_layout(value: &[u8], plain_len: usize) -> Result<(), String> {
    if Format::detect(value).map_err(|e| e.to_string())? != Format::Kubeseal {
        return Err("not detected as the kubeseal format".into());
    }
    if value[..2] != [0x02, 0x00] || value.len() != 2 + 512 + plain_len + 16 {
        return Err(format!(
            "layout: prefix {:02x?}, {} bytes for {plain_len} plaintext bytes",
            &value[..2],
            value.len()
        ));
    }
    Ok(())
}

fn check_raw(fx: &Fixture, path: &Path, case: &Case) -> Result<(), String> {
    let text = read(path, &case.sealed)?;
    if text.ends_with('\n') {
        return Err("kubeseal --raw prints no trailing newline, yet sealed.txt has one".into());
    }
    let input = case.input.as_deref().ok_or("raw case without input")?;
    let want = std::fs::read(path.join(input)).map_err(|e| format!("{input}: {e}"))?;
    let target = case.target.as_ref().ok_or("raw case without target")?.target();
    let value = decode_base64(&text).map_err(|e| e.to_string())?;
    check_layout(&value, want.len())?;
    let opened = open(&[&fx.key], &target, &value).map_err(|e| format!("open as {target}: {e}"))?;
    if opened.plaintext.expose() != want {
        return Err(format!("opened {} bytes, want the {} bytes of {input}", opened.plaintext.len(), want.len()));
    }
    if (opened.format, opened.private_ops, &opened.key_id) != (Format::Kubeseal, 1, fx.key.id()) {
        return Err(format!("opened as {:?} with {} private ops", opened.format, opened.private_ops));
    }
    // The scope binds: the same value under any other target is a plain decryption failure.
    for other in other_targets(&target) {
        match open(&[&fx.key], &other, &value) {
            Err(Error::DecryptionFailed) => {}
            Ok(_) => return Err(format!("sealed for {target}, yet it opens as {other}")),
            Err(e) => return Err(format!("as {other}: {e}, want a plain decryption failure")),
        }
    }
    Ok(())
}

/// Targets a value sealed for `t` must not open under.
fn other_targets(t: &Target) -> Vec<Target> {
    let (ns, name) = match t {
        Target::Strict { namespace, name } => (namespace.clone(), name.clone()),
        Target::NamespaceWide { namespace } => (namespace.clone(), "any".into()),
        Target::ClusterWide => ("any".into(), "any".into()),
    };
    let candidates = [
        Target::new(Scope::Strict, Some(&ns), Some(&format!("{name}-copy"))),
        Target::new(Scope::Strict, Some(&format!("{ns}-copy")), Some(&name)),
        Target::new(Scope::Strict, Some(&ns), Some(&name)),
        Target::new(Scope::NamespaceWide, Some(&ns), None),
        Target::new(Scope::NamespaceWide, Some(&format!("{ns}-copy")), None),
        Target::new(Scope::ClusterWide, None, None),
    ];
    candidates.into_iter().map(Result::unwrap).filter(|c| c != t).collect()
}

fn check_fail(fx: &Fixture, path: &Path, case: &Case) -> Result<(), String> {
    let expect = case.expect_error.as_deref().ok_or("fail case without expect_error")?;
    let kubeseal = case.kubeseal_error.as_deref().map(|k| format!(" (kubeseal: {k})")).unwrap_or_default();
    let outcome = (|| -> Result<usize, String> {
        let docs = parse_documents(&read(path, &case.sealed)?).map_err(|e| e.to_string())?;
        let mut unsealed = 0;
        for doc in docs {
            let ss = sealed_secret_from_value(doc.value).map_err(|e| e.to_string())?;
            unseal(&ss, &[&fx.key]).map_err(|e| e.to_string())?;
            unsealed += 1;
        }
        Ok(unsealed)
    })();
    match (outcome, &case.pending) {
        (Err(msg), None) if msg.contains(expect) => match PLAINTEXTS.iter().find(|p| msg.contains(*p)) {
            Some(p) => Err(format!("the error shows plaintext {p:?}: {msg}")),
            None => Ok(()),
        },
        (Err(msg), None) => Err(format!("failed with {msg:?}, want it to contain {expect:?}{kubeseal}")),
        (Ok(n), None) => Err(format!("unsealed {n} object(s), want an error containing {expect:?}{kubeseal}")),
        (Err(msg), Some(_)) if msg.contains(expect) => {
            Err(format!("now rejected as expected ({msg}): remove \"pending\" from its case.json"))
        }
        (_, Some(why)) => {
            eprintln!("known gap, not yet rejected: {} — {why}", path.display());
            Ok(())
        }
    }
}

fn check_seal_shape(fx: &Fixture, path: &Path, case: &Case) -> Result<(), String> {
    // Only cases sealed straight from input.yaml by kubeseal (not edited afterwards).
    if case.raw || case.derived_from.is_some() || !path.join("input.yaml").is_file() {
        return Ok(());
    }
    let scope = match case.kubeseal.iter().position(|a| a == "--scope") {
        Some(i) => Some(case.kubeseal[i + 1].parse::<Scope>().map_err(|e| e.to_string())?),
        None => None,
    };
    let opts = SealOptions { scope, api: ApiGroup::Bitnami, ..Default::default() };
    let recipients = RecipientSet::new(vec![fx.cert.recipient().unwrap()]).unwrap();
    let inputs = parse_documents(&read(path, "input.yaml")?).map_err(|e| e.to_string())?;
    let kubeseals = parse_documents(&read(path, &case.sealed)?).map_err(|e| e.to_string())?;
    let expected = parse_documents(&read(path, case.expected.as_deref().unwrap_or("expected.yaml"))?)
        .map_err(|e| e.to_string())?;
    if inputs.len() != kubeseals.len() {
        return Err(format!("{} inputs, {} kubeseal objects", inputs.len(), kubeseals.len()));
    }
    for ((input, theirs), want) in inputs.iter().zip(&kubeseals).zip(&expected) {
        let secret = PlainSecret::from_value(&input.value).map_err(|e| e.to_string())?;
        let ours = seal_secret(&secret, &recipients, &opts).map_err(|e| format!("{}: {e}", input.describe()))?;
        let mut ours_value = serde_json::to_value(&ours).unwrap();
        let mut theirs_value = theirs.value.clone();
        // gitseal adds its key-id hint; kubeseal writes none.
        if let Some(a) = ours_value["metadata"].get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(gitseal_shared::keyid::KEY_ID_ANNOTATION);
            if a.is_empty() {
                ours_value["metadata"].as_object_mut().unwrap().remove("annotations");
            }
        }
        // Values are random: compare the item names only.
        for v in [&mut ours_value, &mut theirs_value] {
            if let Some(m) = v["spec"].get_mut("encryptedData").and_then(Value::as_object_mut) {
                m.values_mut().for_each(|x| *x = Value::String("<sealed>".into()));
            }
        }
        let diffs = diff(&theirs_value, &ours_value);
        if !diffs.is_empty() {
            return Err(format!(
                "{}: gitseal's SealedSecret differs from kubeseal's (left kubeseal, right gitseal):\n    {}",
                input.describe(),
                diffs.join("\n    ")
            ));
        }
        // And what gitseal sealed opens to what kubeseal recovers from kubeseal's.
        let back = unseal(&ours, &[&fx.key]).map_err(|e| format!("unsealing gitseal's own: {e}"))?;
        let mut want = want.value.clone();
        normalize_recovered(&mut want);
        let diffs = diff(&want, &back.secret.to_value());
        if !diffs.is_empty() {
            return Err(format!("gitseal's own SealedSecret unseals differently:\n    {}", diffs.join("\n    ")));
        }
    }
    Ok(())
}

/// Paths where `a` and `b` differ, values cut short (a 1 MiB value must not flood the output).
fn diff(a: &Value, b: &Value) -> Vec<String> {
    fn short(v: Option<&Value>) -> String {
        match v {
            None => "(absent)".into(),
            Some(v) => {
                let s = v.to_string();
                if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
            }
        }
    }
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(&format!("{path}.{k}"), x.get(k), y.get(k), out);
                }
            }
            (a, b) if a != b => out.push(format!("{path}: {} vs {}", short(a), short(b))),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", Some(a), Some(b), &mut out);
    out
}
