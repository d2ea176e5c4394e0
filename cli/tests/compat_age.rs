//! gitseal's age value format against the reference age (v1.3.2, the Go implementation).
//!
//! `gitseal seal --cert C --recipient age1…` writes each value as a binary age file with one
//! stanza per recipient; the scope is bound inside the payload (`gitseal.dev/v1 <target>\n`
//! then the value). These tests prove, with the real `age` and `age-keygen`:
//! - every value opens with `age -d -i identity` and shows exactly that binding and the value;
//! - `gitseal unseal` opens them with an `age-keygen` identity or the cluster's RSA key, and
//!   refuses them once moved to another name, namespace or scope;
//! - files written by the real `age -r` open with `gitseal unseal` when (and only when) they
//!   carry the right binding, and `gitseal keygen --type age` identities work in the real age.
//!
//! age comes from `tests/peers/install.sh` (`$GITSEAL_AGE`/`$GITSEAL_AGE_KEYGEN` or the peer
//! cache's `peers.env`); without it these tests fail and say so.
//! Run: `cargo test -p gitseal-cli --test compat_age`.

// Test code: a failed unwrap is a failed test with its message. clippy.toml's
// allow-unwrap-in-tests covers #[test] functions only, not the helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use gitseal_shared::manifest::parse_documents;
use gitseal_shared::value::{decode_base64, encode_base64};
use gitseal_tests::Peer;
use serde_json::{Value, json};

type Items = BTreeMap<String, Vec<u8>>;

/// Text, all 256 byte values, empty, a non-ASCII value, and 1 MiB (16 age STREAM chunks). (A
/// non-ASCII *key* is refused at sealing, as Kubernetes would refuse the Secret.)
fn items() -> Items {
    let mut m = Items::new();
    m.insert("text".into(), b"correct horse battery staple".to_vec());
    m.insert("binary".into(), (0..=255u8).collect());
    m.insert("empty".into(), Vec::new());
    m.insert("unicode".into(), "значение 🔑".as_bytes().to_vec());
    m.insert("big".into(), (0..1usize << 20).map(|i| (i % 251) as u8).collect());
    m
}

const SCOPES: [(&str, &str); 3] =
    [("strict", "strict prod/db"), ("namespace-wide", "namespace-wide prod"), ("cluster-wide", "cluster-wide")];

#[test]
fn every_gitseal_age_value_opens_with_the_real_age_and_shows_its_binding() {
    let fx = fixture();
    for (scope, binding) in SCOPES {
        let sealed = fx.seal(&["--scope", scope], &secret("prod", "db", &items()));
        let doc = single(&sealed);
        assert_eq!(doc["apiVersion"], "gitseal.dev/v1");
        for (item, value) in items() {
            let bytes = decode_base64(doc["spec"]["encryptedData"][&item].as_str().unwrap()).unwrap();
            let header = String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]);
            assert!(header.starts_with("age-encryption.org/v1\n"), "{item}: not an age file");
            assert!(header.contains("\n-> X25519 ") && header.contains("\n-> gitseal-rsa-oaep SHA256:"), "{header}");
            let file = fx.dir.join(format!("{scope}-{}.age", value.len()));
            std::fs::write(&file, &bytes).unwrap();
            let opened = ok(Command::new(age()).args(["-d", "-i", &fx.identity]).arg(&file), b"");
            let mut want = format!("gitseal.dev/v1 {binding}\n").into_bytes();
            want.extend_from_slice(&value);
            assert!(opened == want, "{scope} {item}: age -d gave {} bytes, want {}", opened.len(), want.len());
        }
    }
}

#[test]
fn gitseal_unseal_opens_age_values_with_an_age_keygen_identity_or_the_cluster_key() {
    let fx = fixture();
    for (scope, _) in SCOPES {
        let sealed = fx.seal(&["--scope", scope], &secret("prod", "db", &items()));
        for key in [&fx.identity, &fx.rsa_key] {
            let secrets = gitseal_unseal(key, &sealed).unwrap_or_else(|e| panic!("{scope}, --key {key}: {e}"));
            assert_eq!(data_of(&secrets[0]), items(), "{scope}, --key {key}");
        }
    }
}

#[test]
fn an_age_value_moved_to_another_name_namespace_or_scope_is_refused_by_gitseal_unseal() {
    let fx = fixture();
    let small = Items::from([("password".to_string(), b"correct horse".to_vec())]);
    let strict: Value = serde_json::from_str(&fx.seal(&["--format", "json"], &secret("prod", "db", &small))).unwrap();
    let wide: Value = serde_json::from_str(
        &fx.seal(&["--format", "json", "--scope", "namespace-wide"], &secret("prod", "db", &small)),
    )
    .unwrap();
    let edited = |base: &Value, edit: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        edit(&mut v);
        v.to_string()
    };
    let refused = [
        ("strict, renamed", edited(&strict, &|v| v["metadata"]["name"] = json!("db-copy"))),
        ("strict, other namespace", edited(&strict, &|v| v["metadata"]["namespace"] = json!("staging"))),
        ("namespace-wide, other namespace", edited(&wide, &|v| v["metadata"]["namespace"] = json!("staging"))),
        (
            "strict, made cluster-wide",
            edited(&strict, &|v| {
                v["metadata"]["annotations"]["sealedsecrets.bitnami.com/cluster-wide"] = json!("true");
            }),
        ),
    ];
    for (what, moved) in &refused {
        for key in [&fx.identity, &fx.rsa_key] {
            let err = gitseal_unseal(key, moved).map(|_| ()).expect_err(what);
            assert!(err.contains("no key could decrypt item (password)"), "{what}, --key {key}: {err}");
            assert!(!err.contains("correct horse"), "{what}: {err}");
        }
    }
    // Namespace-wide values follow a rename: only the namespace is bound.
    let renamed = edited(&wide, &|v| v["metadata"]["name"] = json!("db-copy"));
    assert_eq!(data_of(&gitseal_unseal(&fx.identity, &renamed).unwrap()[0]), small);
}

#[test]
fn files_written_by_the_real_age_open_with_gitseal_only_under_their_binding() {
    let fx = fixture();
    let value: Vec<u8> = (0..=255u8).rev().collect();
    let encrypt = |payload: &[u8]| encode_base64(&ok(Command::new(age()).args(["-r", &fx.recipient]), payload));
    let sealed_secret = |b64: &str| {
        json!({"apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "prod"}, "spec": {"encryptedData": {"value": b64}}})
        .to_string()
    };
    let bound = [b"gitseal.dev/v1 strict prod/db\n".as_slice(), &value].concat();
    let secrets = gitseal_unseal(&fx.identity, &sealed_secret(&encrypt(&bound))).unwrap();
    assert_eq!(data_of(&secrets[0])["value"], value);

    for payload in [value.clone(), [b"gitseal.dev/v1 strict prod/other\n".as_slice(), &value].concat()] {
        let err = gitseal_unseal(&fx.identity, &sealed_secret(&encrypt(&payload))).map(|_| ()).unwrap_err();
        assert!(err.contains("no key could decrypt item (value)"), "{err}");
    }
}

#[test]
fn a_gitseal_keygen_age_identity_works_with_the_real_age() {
    let fx = fixture();
    let id = fx.dir.join("gitseal.agekey");
    let _ = std::fs::remove_file(&id);
    let printed =
        String::from_utf8(ok(Command::new(gitseal_bin()).args(["keygen", "--type", "age", "--out-key"]).arg(&id), b""))
            .unwrap();
    let recipient =
        printed.lines().find(|l| l.starts_with("age1")).unwrap_or_else(|| panic!("no age1… in {printed:?}"));
    let derived = String::from_utf8(ok(Command::new(age_keygen()).arg("-y").arg(&id), b"")).unwrap();
    assert_eq!(derived.trim(), recipient, "age-keygen -y derives the recipient gitseal printed");

    // Sealed for that recipient alone (no certificate), opened by the real age.
    let sealed = ok(
        Command::new(gitseal_bin()).args(["seal", "--recipient", recipient]),
        secret("prod", "db", &items()).as_bytes(),
    );
    let doc = single(&String::from_utf8(sealed).unwrap());
    let bytes = decode_base64(doc["spec"]["encryptedData"]["binary"].as_str().unwrap()).unwrap();
    let file = fx.dir.join("gitseal-keygen.age");
    std::fs::write(&file, bytes).unwrap();
    let opened = ok(Command::new(age()).arg("-d").arg("-i").arg(&id).arg(&file), b"");
    assert_eq!(opened, [b"gitseal.dev/v1 strict prod/db\n".as_slice(), &items()["binary"]].concat());
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Made once per test binary in Cargo's target tmp dir: a gitseal RSA key pair (the cluster)
/// and an identity from the real `age-keygen` (an offline recovery key).
struct Fixture {
    dir: PathBuf,
    cert: String,
    rsa_key: String,
    identity: String,
    recipient: String,
}

impl Fixture {
    /// `gitseal seal --cert C --recipient R ARGS…` of `input`.
    fn seal(&self, args: &[&str], input: &str) -> String {
        let mut cmd = Command::new(gitseal_bin());
        cmd.args(["seal", "--cert", &self.cert, "--recipient", &self.recipient]).args(args);
        String::from_utf8(ok(&mut cmd, input.as_bytes())).unwrap()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat_age");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = |f: &str| dir.join(f).to_str().unwrap().to_owned();
        let (cert, rsa_key, identity) = (file("cert.pem"), file("key.pem"), file("identity.txt"));
        ok(
            Command::new(gitseal_bin()).args(["keygen", "--bits", "2048", "--out-key", &rsa_key, "--out-cert", &cert]),
            b"",
        );
        ok(Command::new(age_keygen()).args(["-o", &identity]), b"");
        let recipient = String::from_utf8(ok(Command::new(age_keygen()).args(["-y", &identity]), b"")).unwrap();
        Fixture { dir, cert, rsa_key, identity, recipient: recipient.trim().to_owned() }
    })
}

fn gitseal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitseal"))
}

fn age() -> PathBuf {
    Peer::Age.path().unwrap_or_else(|e| panic!("{e}"))
}

fn age_keygen() -> PathBuf {
    Peer::AgeKeygen.path().unwrap_or_else(|e| panic!("{e}"))
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    support::run_isolated(cmd, stdin)
}

fn ok(cmd: &mut Command, stdin: &[u8]) -> Vec<u8> {
    let described = format!("{cmd:?}");
    let out = run(cmd, stdin);
    assert!(out.status.success(), "{described} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `gitseal unseal --key KEY` of a stream: the Secrets, or stderr when it fails.
fn gitseal_unseal(key: &str, sealed: &str) -> Result<Vec<Value>, String> {
    let out = run(Command::new(gitseal_bin()).args(["unseal", "--key", key, "--format", "json"]), sealed.as_bytes());
    if !out.status.success() {
        assert!(out.stdout.is_empty(), "a failed unseal printed a Secret");
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(parse_documents(&String::from_utf8(out.stdout).unwrap()).unwrap().into_iter().map(|d| d.value).collect())
}

fn secret(namespace: &str, name: &str, items: &Items) -> String {
    let data: serde_json::Map<String, Value> =
        items.iter().map(|(k, v)| (k.clone(), json!(encode_base64(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": data})
        .to_string()
}

fn single(text: &str) -> Value {
    let mut docs = parse_documents(text).unwrap();
    assert_eq!(docs.len(), 1);
    docs.remove(0).value
}

fn data_of(secret: &Value) -> Items {
    let data = secret["data"].as_object().unwrap_or_else(|| panic!("no data in {secret}"));
    data.iter().map(|(k, v)| (k.clone(), decode_base64(v.as_str().unwrap()).unwrap())).collect()
}
