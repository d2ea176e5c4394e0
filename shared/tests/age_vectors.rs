//! Golden vectors for gitseal's own value format: binary age files with the scope bound in the
//! payload (`shared/src/value/multi.rs`) and cluster RSA keys as `gitseal-rsa-oaep` stanzas
//! (`shared/src/value/rsa_stanza.rs`).
//!
//! `tests/testdata/gitseal-age/` holds fixed **test** keys and one directory per case, described
//! by its `case.json` (the README there lists the layout). This runner walks them all:
//! - sealed cases (every scope × sealed for the RSA key, the X25519 identity, or both): the value
//!   is an age file with exactly the stanzas its recipients call for; it opens with each key it
//!   was sealed for (one RSA private operation for the RSA key, none for the identity), and with
//!   no other key and under no other target;
//! - `fail_*` cases: opening fails with `expect_error` in the message, after exactly
//!   `private_ops` RSA private operations, without echoing plaintext; where the case names a
//!   `control` key and target, that key opens the same file, so the failure is the one the case
//!   is about and not a broken file;
//! - the real Go `age` (`tests/peers/install.sh`) opens every value sealed for the X25519
//!   identity and prints the binding line and the value, and opens none sealed for RSA alone.
//!
//! Run: `cargo test -p gitseal-shared --test age_vectors`.
//! Regenerate (re-seals every case, keeps the keys; deleting a key file makes a new one; the
//! generator is `age_vectors/generate.rs`):
//! `GITSEAL_REGENERATE_VECTORS=1 cargo test -p gitseal-shared --test age_vectors`.

// Test code: a failed unwrap is a failed test with its message. clippy.toml's
// allow-unwrap-in-tests covers #[test] functions only, not the helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use age::secrecy::ExposeSecret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use gitseal_keys::material::parse_age_identity;
use gitseal_keys::{Certificate, parse_private_keys};
use gitseal_shared::value::{DecryptionKey, Format, Recipient, RecipientSet, open_metered};
use gitseal_shared::{Error, Scope, Target};
use serde::{Deserialize, Serialize};

#[path = "support/vectors.rs"]
mod vectors;

const REGENERATE: &str = "GITSEAL_REGENERATE_VECTORS";

/// Plaintext fragments of the inputs that no error message may contain.
const PLAINTEXTS: [&str; 2] = ["correct horse", "battery staple"];
const TEXT: &[u8] = b"correct horse battery staple";

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/gitseal-age")
}

// --- case.json ---------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    /// The target the value was sealed for.
    target: TargetSpec,
    /// Who it was sealed for: `rsa` (the certificate), `age` (the X25519 identity), `other-rsa`,
    /// `other-age` (fixture keys by name), or `plain-age` (the identity, by the age library with no gitseal binding).
    recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<String>,
    /// An input left out of the files and generated here: `len` bytes, byte i = i mod 251.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generated_len: Option<usize>,
    sealed: String,
    /// Sealed cases: the fixture keys that open it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    opens_with: Vec<String>,
    /// fail_* cases: the case whose value this one edits or reuses, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    derived_from: Option<String>,
    /// fail_* cases: opened under this target (default: `target`) with these keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_as: Option<TargetSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_ops: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    control: Option<Control>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl TargetSpec {
    fn new(scope: &str, namespace: Option<&str>, name: Option<&str>) -> TargetSpec {
        TargetSpec { scope: scope.into(), namespace: namespace.map(Into::into), name: name.map(Into::into) }
    }

    fn target(&self) -> Target {
        let scope: Scope = self.scope.parse().unwrap();
        Target::new(scope, self.namespace.as_deref(), self.name.as_deref()).unwrap()
    }

    /// The payload's first line, written out here rather than taken from the library, so the
    /// vectors pin the wire format.
    fn binding_line(&self) -> String {
        match self.scope.as_str() {
            "strict" => format!(
                "gitseal.dev/v1 strict {}/{}\n",
                self.namespace.as_deref().unwrap(),
                self.name.as_deref().unwrap()
            ),
            "namespace-wide" => format!("gitseal.dev/v1 namespace-wide {}\n", self.namespace.as_deref().unwrap()),
            "cluster-wide" => "gitseal.dev/v1 cluster-wide\n".into(),
            other => panic!("unknown scope {other}"),
        }
    }
}

/// A key that must open the file under `target`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    key: String,
    target: TargetSpec,
}

fn strict() -> TargetSpec {
    TargetSpec::new("strict", Some("vectors"), Some("app-credentials"))
}

fn namespace_wide() -> TargetSpec {
    TargetSpec::new("namespace-wide", Some("vectors"), None)
}

fn cluster_wide() -> TargetSpec {
    TargetSpec::new("cluster-wide", None, None)
}

// --- fixture keys --------------------------------------------------------------------------------

struct Fixture {
    cert: Certificate,
    other_cert: Certificate,
    age: age::x25519::Identity,
    other_age: age::x25519::Identity,
    /// The RSA key alone, the identity alone, and the other keys, by their case.json names.
    keys: Vec<(&'static str, DecryptionKey)>,
}

impl Fixture {
    fn key(&self, name: &str) -> &DecryptionKey {
        &self.keys.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no fixture key {name:?}")).1
    }

    fn recipient(&self, name: &str) -> Recipient {
        match name {
            "rsa" => self.cert.recipient().unwrap(),
            "other-rsa" => self.other_cert.recipient().unwrap(),
            "age" => Recipient::age(self.age.to_public()),
            "other-age" => Recipient::age(self.other_age.to_public()),
            other => panic!("no recipient {other:?}"),
        }
    }
}

fn load_fixture(dir: &Path) -> Fixture {
    let rsa = |file: &str| {
        let pem = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut keys = parse_private_keys(&pem).unwrap();
        assert_eq!(keys.len(), 1, "{file} holds one key");
        keys.remove(0).key
    };
    let cert = |file: &str| Certificate::from_pem(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
    let identity = |file: &str| {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let line = text.lines().find(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
        parse_age_identity(line).unwrap()
    };
    let (age, other_age) = (identity("age-identity.txt"), identity("other-age-identity.txt"));
    let keys = vec![
        ("rsa", rsa("key.pem")),
        ("age", DecryptionKey::from_age(age.clone())),
        ("other-rsa", rsa("other-key.pem")),
        ("other-age", DecryptionKey::from_age(other_age.clone())),
    ];
    Fixture { cert: cert("cert.pem"), other_cert: cert("other-cert.pem"), age, other_age, keys }
}

/// The fixture, after regenerating the vectors first when `GITSEAL_REGENERATE_VECTORS` is set.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = vectors_dir();
        if std::env::var_os(REGENERATE).is_some_and(|v| !v.is_empty() && v != "0") {
            generate::all(&dir);
        }
        load_fixture(&dir)
    })
}

fn cases(fail: bool) -> Vec<(String, PathBuf, Case)> {
    fixture();
    vectors::cases(&vectors_dir(), fail)
}

fn run_all(fail: bool, f: impl Fn(&Fixture, &Path, &Case) -> Result<(), String>) -> usize {
    vectors::run_all(&vectors_dir(), fail, fixture(), f)
}

impl vectors::Described for Case {
    fn description(&self) -> &str {
        &self.description
    }
}

fn input_of(path: &Path, case: &Case) -> Result<Vec<u8>, String> {
    match (&case.input, case.generated_len) {
        (Some(file), None) => std::fs::read(path.join(file)).map_err(|e| format!("{file}: {e}")),
        (None, Some(len)) => Ok(generated(len)),
        _ => Err("a case needs exactly one of input and generated_len".into()),
    }
}

fn generated(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn sealed_of(path: &Path, case: &Case) -> Result<Vec<u8>, String> {
    std::fs::read(path.join(&case.sealed)).map_err(|e| format!("{}: {e}", case.sealed))
}

/// The age header's stanza lines (`-> tag args…`), in order.
fn stanzas(value: &[u8]) -> Vec<String> {
    let end = header_end(value).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).lines().filter_map(|l| l.strip_prefix("-> ").map(str::to_owned)).collect()
}

/// The offset just past the header's `--- MAC` line.
fn header_end(value: &[u8]) -> Option<usize> {
    let mac = value.windows(4).position(|w| w == b"\n---")? + 1;
    Some(mac + value[mac..].iter().position(|b| *b == b'\n')? + 1)
}

// --- the tests -----------------------------------------------------------------------------------

#[test]
fn every_sealed_vector_opens_with_exactly_its_recipients_and_only_under_its_target() {
    let n = run_all(false, check_sealed);
    assert!(n >= 9, "only {n} sealed vectors: regenerate with {REGENERATE}=1");
}

#[test]
fn every_fail_vector_is_rejected_with_its_message_cost_and_without_plaintext() {
    let n = run_all(true, check_fail);
    assert!(n >= 10, "only {n} fail_* vectors: regenerate with {REGENERATE}=1");
}

#[test]
fn the_fixture_keys_match_their_certificates_and_outlive_ci() {
    let fx = fixture();
    assert_eq!(fx.cert.key_id(), fx.key("rsa").id());
    assert_eq!(fx.other_cert.key_id(), fx.key("other-rsa").id());
    assert_ne!(fx.key("rsa").id(), fx.key("other-rsa").id());
    assert_ne!(fx.age.to_public().to_string(), fx.other_age.to_public().to_string());
    for cert in [&fx.cert, &fx.other_cert] {
        assert_eq!(cert.public_key().bits(), 2048);
        assert!(cert.not_after().unwrap().year() >= 2100, "test certificates must never expire in CI");
    }
}

#[test]
fn the_real_age_opens_every_value_sealed_for_the_identity_and_none_sealed_for_rsa_alone() {
    let age = age_binary();
    let dir = vectors_dir();
    let identity = dir.join("age-identity.txt");
    let mut checked = 0;
    for (name, path, case) in cases(false) {
        let file = path.join(&case.sealed);
        let out = Command::new(&age).arg("-d").arg("-i").arg(&identity).arg(&file).output().unwrap();
        if case.recipients.iter().any(|r| r == "age") {
            assert!(out.status.success(), "{name}: age -d failed: {}", String::from_utf8_lossy(&out.stderr));
            let mut want = case.target.binding_line().into_bytes();
            want.extend(input_of(&path, &case).unwrap());
            assert!(out.stdout == want, "{name}: age -d printed {} bytes, want {}", out.stdout.len(), want.len());
            checked += 1;
        } else {
            assert!(!out.status.success(), "{name}: sealed for RSA alone, yet age -d opened it");
        }
    }
    assert!(checked >= 6, "only {checked} X25519 vectors checked with the real age");
}

/// `$GITSEAL_AGE`, else the `GITSEAL_AGE=` line of the peer cache's `peers.env`.
fn age_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GITSEAL_AGE").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let cache = std::env::var_os("GITSEAL_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/gitseal-test"));
    let env = std::fs::read_to_string(cache.join("peers.env"))
        .unwrap_or_else(|e| panic!("{}/peers.env: {e}: run tests/peers/install.sh for the Go age", cache.display()));
    env.lines()
        .find_map(|l| l.strip_prefix("GITSEAL_AGE="))
        .map(PathBuf::from)
        .expect("peers.env names no GITSEAL_AGE: run tests/peers/install.sh")
}

// --- checks --------------------------------------------------------------------------------------

fn check_sealed(fx: &Fixture, path: &Path, case: &Case) -> Result<(), String> {
    let value = sealed_of(path, case)?;
    let want = input_of(path, case)?;
    let target = case.target.target();
    if Format::detect(&value).map_err(|e| e.to_string())? != Format::Age {
        return Err("not detected as gitseal's age format".into());
    }
    // The header carries one stanza per recipient, the RSA one naming the certificate's key.
    let mut expected: Vec<String> = Vec::new();
    for r in &case.recipients {
        match r.as_str() {
            "rsa" => expected.push(format!("gitseal-rsa-oaep {}", fx.cert.key_id())),
            "other-rsa" => expected.push(format!("gitseal-rsa-oaep {}", fx.other_cert.key_id())),
            "age" => expected.push("X25519".into()),
            other => return Err(format!("sealed case with recipient {other:?}")),
        }
    }
    // age adds a random `*-grease` stanza to every file, which every implementation skips.
    let mut got: Vec<String> = stanzas(&value)
        .into_iter()
        .filter(|s| !s.split(' ').next().unwrap_or_default().ends_with("-grease"))
        .map(|s| if s.starts_with("X25519 ") { "X25519".into() } else { s })
        .collect();
    got.sort();
    expected.sort();
    if got != expected {
        return Err(format!("stanzas {got:?}, want {expected:?}"));
    }
    for (name, key) in &fx.keys {
        let should_open = case.opens_with.iter().any(|k| k == name);
        let mut ops = 0;
        match (open_metered(&[key], &target, &value, &mut ops), should_open) {
            (Ok(opened), true) => {
                if opened.plaintext.expose() != want {
                    return Err(format!("{name}: opened {} bytes, want {}", opened.plaintext.len(), want.len()));
                }
                let want_ops = u32::from(name.ends_with("rsa"));
                if (opened.format, opened.private_ops, &opened.key_id) != (Format::Age, want_ops, key.id()) {
                    return Err(format!(
                        "{name}: opened as {:?} with {} private ops",
                        opened.format, opened.private_ops
                    ));
                }
            }
            (Err(Error::DecryptionFailed), false) if ops == 0 => {}
            (Err(Error::DecryptionFailed), false) => {
                return Err(format!("{name}: not a recipient, yet {ops} RSA private operations were spent"));
            }
            (Ok(_), false) => return Err(format!("{name} is not in opens_with, yet it opens the value")),
            (Err(e), _) => return Err(format!("{name}: {e}")),
        }
    }
    // The binding: under any other target every recipient key fails plainly.
    for other in other_targets(&target) {
        for name in &case.opens_with {
            match open_metered(&[fx.key(name)], &other, &value, &mut 0) {
                Err(Error::DecryptionFailed) => {}
                Ok(_) => return Err(format!("sealed for {target}, yet {name} opens it as {other}")),
                Err(e) => return Err(format!("{name} as {other}: {e}, want a plain decryption failure")),
            }
        }
    }
    Ok(())
}

/// Targets a value sealed for `t` must not open under.
fn other_targets(t: &Target) -> Vec<Target> {
    let candidates = [
        Target::new(Scope::Strict, Some("vectors"), Some("app-credentials")),
        Target::new(Scope::Strict, Some("vectors"), Some("app-credentials-copy")),
        Target::new(Scope::Strict, Some("vectors-copy"), Some("app-credentials")),
        Target::new(Scope::NamespaceWide, Some("vectors"), None),
        Target::new(Scope::NamespaceWide, Some("vectors-copy"), None),
        Target::new(Scope::ClusterWide, None, None),
    ];
    candidates.into_iter().map(Result::unwrap).filter(|c| c != t).collect()
}

fn check_fail(fx: &Fixture, path: &Path, case: &Case) -> Result<(), String> {
    let value = sealed_of(path, case)?;
    let expect = case.expect_error.as_deref().ok_or("fail case without expect_error")?;
    let want_ops = case.private_ops.ok_or("fail case without private_ops")?;
    let target = case.open_as.as_ref().unwrap_or(&case.target).target();
    if case.keys.is_empty() {
        return Err("fail case without keys".into());
    }
    let keys: Vec<&DecryptionKey> = case.keys.iter().map(|k| fx.key(k)).collect();
    let mut ops = 0;
    match open_metered(&keys, &target, &value, &mut ops) {
        Ok(_) => return Err(format!("opened as {target}, want an error containing {expect:?}")),
        Err(e) => {
            let msg = e.to_string();
            if !msg.contains(expect) {
                return Err(format!("failed with {msg:?}, want it to contain {expect:?}"));
            }
            if let Some(p) = PLAINTEXTS.iter().find(|p| msg.contains(*p)) {
                return Err(format!("the error shows plaintext {p:?}: {msg}"));
            }
        }
    }
    if ops != want_ops {
        return Err(format!("{ops} RSA private operations, want {want_ops}"));
    }
    if let Some(control) = &case.control {
        let t = control.target.target();
        let opened = open_metered(&[fx.key(&control.key)], &t, &value, &mut 0)
            .map_err(|e| format!("control: {} as {t}: {e}", control.key))?;
        if opened.plaintext.expose() != input_of(path, case)? {
            return Err("control: opened to another plaintext".into());
        }
    }
    Ok(())
}

// The generator, apart: a crate root finds modules beside it, so the path is spelled out.
#[path = "age_vectors/generate.rs"]
mod generate;
