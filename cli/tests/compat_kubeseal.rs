//! Two-way compatibility between the `gitseal` binary and the real kubeseal v0.36.6.
//!
//! - gitseal → kubeseal: what `gitseal seal --api bitnami --cert` writes (three scopes, `--raw`,
//!   binary, empty, 1 MiB and non-ASCII items, streams) opens with
//!   `kubeseal --recovery-unseal --recovery-private-key` and gives the original bytes back;
//!   kubeseal also reads the PEM key and the key Secret `gitseal keygen` writes.
//! - kubeseal → gitseal: what `kubeseal --cert` writes (with gitseal's certificate) opens with
//!   `gitseal unseal --key`, whether the key is a PEM file, a Bitnami key-Secret backup
//!   (`kubectl get secret -o yaml` of the controller's keys, a v1 List) or gitseal's key Secret.
//!
//! kubeseal comes from `tests/peers/install.sh` (`$GITSEAL_KUBESEAL` or the peer cache's
//! `peers.env`); without it these tests fail and say so. No cluster is involved.
//! Run: `cargo test -p gitseal-cli --test compat_kubeseal`.

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
use serde_json::{Value, json};

const SCOPES: [&str; 3] = ["strict", "namespace-wide", "cluster-wide"];

/// Item name → plaintext bytes.
type Items = BTreeMap<String, Vec<u8>>;

/// The items every test seals: text, all 256 byte values, empty, and non-ASCII values (non-ASCII
/// names are refused by `gitseal seal`, as Kubernetes would refuse the Secret; kubeseal-made ones
/// still open: tests/testdata/kubeseal/unicode_keys).
fn items() -> Items {
    let mut m = Items::new();
    m.insert("text".into(), b"correct horse battery staple".to_vec());
    m.insert("binary".into(), (0..=255u8).collect());
    m.insert("empty".into(), Vec::new());
    m.insert("unicode-ru".into(), "значение".as_bytes().to_vec());
    m.insert("unicode-ja".into(), "値".as_bytes().to_vec());
    m.insert("unicode-emoji".into(), "🗝️".as_bytes().to_vec());
    m
}

fn mebibyte() -> Items {
    Items::from([("big".to_string(), (0..1usize << 20).map(|i| (i % 251) as u8).collect())])
}

// ---------------------------------------------------------------------------------------------
// gitseal → kubeseal

#[test]
fn gitseal_bitnami_output_opens_with_kubeseal_recovery_unseal_in_every_scope() {
    let keys = keys();
    for scope in SCOPES {
        let input = secret("prod", "db", &items(), &[]);
        let sealed = gitseal(&["seal", "--api", "bitnami", "--cert", keys.cert(), "--scope", scope], &input);
        let doc = single(&sealed);
        assert_eq!(doc["apiVersion"], "bitnami.com/v1alpha1");
        let recovered = kubeseal_unseal(keys.key(), &sealed);
        assert_eq!(data_of(&recovered), items(), "scope {scope}");
        assert_eq!(recovered["metadata"]["namespace"], "prod", "scope {scope}");
    }
}

#[test]
fn a_cluster_wide_secret_without_a_namespace_sealed_by_gitseal_opens_with_kubeseal() {
    let keys = keys();
    let input = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "anywhere"},
        "stringData": {"token": "t0ken"}});
    let sealed =
        gitseal(&["seal", "--api", "bitnami", "--cert", keys.cert(), "--scope", "cluster-wide"], &input.to_string());
    assert!(single(&sealed)["metadata"].get("namespace").is_none(), "{sealed}");
    let recovered = kubeseal_unseal(keys.key(), &sealed);
    assert_eq!(data_of(&recovered)["token"], b"t0ken");
}

#[test]
fn a_one_mebibyte_value_sealed_by_gitseal_opens_with_kubeseal() {
    let keys = keys();
    let sealed =
        gitseal(&["seal", "--api", "bitnami", "--cert", keys.cert()], &secret("prod", "large", &mebibyte(), &[]));
    assert_eq!(data_of(&kubeseal_unseal(keys.key(), &sealed)), mebibyte());
}

#[test]
fn a_stream_sealed_by_gitseal_opens_object_by_object_with_kubeseal() {
    let keys = keys();
    let docs = [
        secret("prod", "first", &items(), &[]),
        secret("staging", "second", &items(), &[("sealedsecrets.bitnami.com/namespace-wide", "true")]),
        secret("prod", "third", &items(), &[("sealedsecrets.bitnami.com/cluster-wide", "true")]),
    ];
    let input: String = docs.iter().map(|d| format!("---\n{d}\n")).collect();
    for format in ["yaml", "json"] {
        let sealed = gitseal(&["seal", "--api", "bitnami", "--cert", keys.cert(), "--format", format], &input);
        let objects = parse_documents(&sealed).unwrap();
        assert_eq!(objects.len(), 3, "{format}");
        for (object, name) in objects.iter().zip(["first", "second", "third"]) {
            // kubeseal --recovery-unseal reads one object per run.
            let recovered = kubeseal_unseal(keys.key(), &object.value.to_string());
            assert_eq!(recovered["metadata"]["name"], name);
            assert_eq!(data_of(&recovered), items(), "{format} {name}");
        }
    }
}

#[test]
fn raw_values_sealed_by_gitseal_open_with_kubeseal_in_every_scope() {
    let keys = keys();
    for scope in SCOPES {
        for (item, value) in items() {
            let file = keys.dir.join(format!("raw-{scope}-{}", value.len()));
            std::fs::write(&file, &value).unwrap();
            let args =
                ["seal", "--raw", "--cert", keys.cert(), "--scope", scope, "--namespace", "prod", "--name", "db"];
            let from = format!("--from-file={}", file.display());
            let raw = gitseal(&[&args[..], &[from.as_str()]].concat(), "");
            assert!(!raw.ends_with('\n') && raw.starts_with("Ag"), "bare base64 of an RSA-4096 value: {raw:.20}");
            let wrapped = raw_sealed_secret("bitnami.com/v1alpha1", scope, "prod", "db", &raw);
            let recovered = kubeseal_unseal(keys.key(), &wrapped);
            assert_eq!(data_of(&recovered)["value"], value, "scope {scope}, item {item}");
        }
    }
}

#[test]
fn kubeseal_reads_the_key_secret_gitseal_keygen_writes() {
    let keys = keys();
    let sealed = gitseal(&["seal", "--api", "bitnami", "--cert", keys.cert()], &secret("prod", "db", &items(), &[]));
    let recovered = kubeseal_unseal(&keys.path("key-secret.yaml"), &sealed);
    assert_eq!(data_of(&recovered), items());
}

// ---------------------------------------------------------------------------------------------
// kubeseal → gitseal

#[test]
fn kubeseal_output_opens_with_gitseal_unseal_in_every_scope_and_format() {
    let keys = keys();
    for scope in SCOPES {
        for format in ["json", "yaml"] {
            let input = secret("prod", "db", &items(), &[]);
            let sealed = kubeseal(&["--cert", keys.cert(), "--scope", scope, "-o", format], &input);
            let secrets = gitseal_unseal(keys.key(), &sealed);
            assert_eq!(secrets.len(), 1);
            assert_eq!(data_of(&secrets[0]), items(), "scope {scope}, {format}");
            assert_eq!(secrets[0]["metadata"]["name"], "db");
        }
    }
}

#[test]
fn kubeseal_output_opens_with_every_form_of_the_key_file() {
    let keys = keys();
    let sealed = kubeseal(&["--cert", keys.cert(), "-o", "yaml"], &secret("prod", "db", &items(), &[]));
    let backup = keys.path("bitnami-backup.yaml");
    for key in [keys.key(), backup.as_str(), keys.path("key-secret.yaml").as_str()] {
        let secrets = gitseal_unseal(key, &sealed);
        assert_eq!(data_of(&secrets[0]), items(), "--key {key}");
    }
}

#[test]
fn a_kubeseal_stream_opens_whole_with_gitseal_unseal() {
    let keys = keys();
    let input = [
        secret("prod", "first", &items(), &[]),
        secret("staging", "second", &items(), &[("sealedsecrets.bitnami.com/namespace-wide", "true")]),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "third",
            "annotations": {"sealedsecrets.bitnami.com/cluster-wide": "true"}}, "stringData": {"k": "v"}})
        .to_string(),
    ]
    .join("\n");
    for format in ["json", "yaml"] {
        let sealed = kubeseal(&["--cert", keys.cert(), "-o", format], &input);
        let secrets = gitseal_unseal(keys.key(), &sealed);
        let names: Vec<&str> = secrets.iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["first", "second", "third"], "{format}");
        assert_eq!(data_of(&secrets[1]), items());
        assert_eq!(data_of(&secrets[2])["k"], b"v");
    }
}

#[test]
fn a_one_mebibyte_value_sealed_by_kubeseal_opens_with_gitseal() {
    let keys = keys();
    let sealed = kubeseal(&["--cert", keys.cert(), "-o", "yaml"], &secret("prod", "large", &mebibyte(), &[]));
    assert_eq!(data_of(&gitseal_unseal(keys.key(), &sealed)[0]), mebibyte());
}

#[test]
fn raw_values_sealed_by_kubeseal_open_with_gitseal_in_every_scope() {
    let keys = keys();
    for scope in SCOPES {
        let file = keys.dir.join(format!("kubeseal-raw-{scope}"));
        std::fs::write(&file, items()["binary"].as_slice()).unwrap();
        let from = format!("--from-file={}", file.display());
        let raw =
            kubeseal(&["--cert", keys.cert(), "--raw", &from, "--scope", scope, "-n", "prod", "--name", "db"], "");
        for api in ["bitnami.com/v1alpha1", "gitseal.dev/v1"] {
            let wrapped = raw_sealed_secret(api, scope, "prod", "db", &raw);
            let secrets = gitseal_unseal(keys.key(), &wrapped);
            assert_eq!(data_of(&secrets[0])["value"], items()["binary"], "scope {scope}, {api}");
        }
    }
}

#[test]
fn a_kubeseal_secret_moved_to_another_namespace_is_refused_by_gitseal_without_plaintext() {
    let keys = keys();
    let sealed = kubeseal(&["--cert", keys.cert(), "-o", "json"], &secret("prod", "db", &items(), &[]));
    let mut moved: Value = serde_json::from_str(&sealed).unwrap();
    moved["metadata"]["namespace"] = json!("staging");
    let out = run(Command::new(gitseal_bin()).args(["unseal", "--key", keys.key()]), &moved.to_string());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no key could decrypt"), "{stderr}");
    assert!(!stderr.contains("correct horse") && out.stdout.is_empty(), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// The same everyday invocations through both (issue #16)

/// Where an invocation leaves its result.
#[derive(Clone, Copy)]
enum Result_ {
    Stdout,
    /// A file in the working directory (`-w`, `--merge-into`).
    File(&'static str),
    /// `--raw`: bare base64 of one value for prod/db, strict.
    Raw,
    /// `--recovery-unseal`: the Secret itself.
    Plain,
}

/// Ten invocations a kubeseal user types every day, with the same arguments and input given
/// to `kubeseal` and to `gitseal` (kubeseal's form, no subcommand). Each result is opened with
/// `kubeseal --recovery-unseal`, and the two Secrets must agree: name, namespace, type, labels,
/// annotations and every value.
#[test]
fn ten_everyday_kubeseal_invocations_give_the_same_secrets_through_gitseal() {
    let keys = keys();
    let cert = keys.cert().to_string();
    let key = keys.key().to_string();
    let no_namespace =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "s3cr3t"}})
            .to_string();
    let numbers = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: settings\n  namespace: prod\n  labels: {app: web}\ntype: Opaque\nstringData:\n  port: 5432\n  debug: false\n  ratio: 1.50\n  pi: 3.14159265358979\n  host: db.prod.svc\n";
    let addition = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "prod"},
            "stringData": {"user": "admin"}})
    .to_string();
    let prod = secret("prod", "db", &items(), &[]);
    let sealed_by_kubeseal = kubeseal(&["--cert", &cert, "-o", "json"], &prod);
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, Vec<String>, String, Result_)> = vec![
        ("json to stdout", a(&["--cert", &cert]), prod.clone(), Result_::Stdout),
        ("yaml to stdout", a(&["--cert", &cert, "-o", "yaml"]), prod.clone(), Result_::Stdout),
        ("namespace-wide", a(&["--cert", &cert, "--scope", "namespace-wide"]), prod.clone(), Result_::Stdout),
        ("cluster-wide", a(&["--cert", &cert, "--scope=cluster-wide", "-o", "yaml"]), prod.clone(), Result_::Stdout),
        ("-n fills the namespace", a(&["--cert", &cert, "-n", "prod"]), no_namespace, Result_::Stdout),
        (
            "-f and -w over a stale file",
            a(&["--cert", &cert, "-f", "in.json", "-w", "out.json"]),
            String::new(),
            Result_::File("out.json"),
        ),
        (
            "--raw",
            a(&["--cert", &cert, "--raw", "--from-file=value.txt", "--namespace", "prod", "--name", "db"]),
            String::new(),
            Result_::Raw,
        ),
        (
            "--merge-into",
            a(&["--cert", &cert, "--merge-into", "existing.json"]),
            addition,
            Result_::File("existing.json"),
        ),
        ("stringData numbers", a(&["--cert", &cert, "-o", "yaml"]), numbers.to_string(), Result_::Stdout),
        (
            "--recovery-unseal",
            a(&["--recovery-unseal", "--recovery-private-key", &key, "-o", "json"]),
            sealed_by_kubeseal.clone(),
            Result_::Plain,
        ),
    ];
    for (n, (what, args, stdin, result)) in cases.into_iter().enumerate() {
        let mut secrets = Vec::new();
        for (tool, bin) in [("kubeseal", kubeseal_bin()), ("gitseal", gitseal_bin())] {
            let dir = keys.dir.join(format!("everyday-{n}-{tool}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("in.json"), &prod).unwrap();
            std::fs::write(dir.join("out.json"), "stale").unwrap();
            std::fs::write(dir.join("value.txt"), "raw value").unwrap();
            std::fs::write(dir.join("existing.json"), &sealed_by_kubeseal).unwrap();
            let out = run(Command::new(&bin).current_dir(&dir).args(&args), &stdin);
            assert!(out.status.success(), "{what}: {tool} failed: {}", String::from_utf8_lossy(&out.stderr));
            let stdout = String::from_utf8(out.stdout).unwrap();
            let secret = match result {
                Result_::Stdout => kubeseal_unseal(&key, &stdout),
                Result_::File(f) => kubeseal_unseal(&key, &std::fs::read_to_string(dir.join(f)).unwrap()),
                Result_::Raw => {
                    kubeseal_unseal(&key, &raw_sealed_secret("bitnami.com/v1alpha1", "strict", "prod", "db", &stdout))
                }
                Result_::Plain => single(&stdout),
            };
            secrets.push(comparable(&secret));
        }
        assert_eq!(secrets[0], secrets[1], "{what}: kubeseal (left) and gitseal (right) differ");
    }
}

/// Issue 12: `--merge-into` sets the input Secret's labels and annotations on the file's
/// template (the input wins on a clash, the file's others stay) and keeps the file's type, as
/// kubeseal v0.36.6 does. (kubeseal panics, "assignment to entry in nil map", when the file's
/// template has no labels or annotations yet; gitseal adds them.)
#[test]
fn merge_into_carries_labels_and_annotations_over_as_kubeseal_does() {
    let keys = keys();
    let (cert, key) = (keys.cert().to_string(), keys.key().to_string());
    let existing = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db", "namespace": "prod", "labels": {"team": "old", "keep": "k"},
            "annotations": {"note": "old", "keep": "k"}},
        "stringData": {"password": "s3cr3t"}});
    let existing = kubeseal(&["--cert", &cert], &existing.to_string());
    let addition = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
        "metadata": {"name": "db", "namespace": "prod", "labels": {"team": "new"}, "annotations": {"note": "new"}},
        "stringData": {"username": "admin"}});
    let mut secrets = Vec::new();
    for (tool, bin) in [("kubeseal", kubeseal_bin()), ("gitseal", gitseal_bin())] {
        let dir = keys.dir.join(format!("merge-metadata-{tool}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("existing.json"), &existing).unwrap();
        let out = run(
            Command::new(&bin).current_dir(&dir).args(["--cert", &cert, "--merge-into", "existing.json"]),
            &addition.to_string(),
        );
        assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
        secrets.push(comparable(&kubeseal_unseal(&key, &std::fs::read_to_string(dir.join("existing.json")).unwrap())));
    }
    assert_eq!(secrets[0], secrets[1], "kubeseal (left) and gitseal (right) differ");
    assert_eq!(secrets[1]["labels"], json!({"keep": "k", "team": "new"}));
    assert_eq!(secrets[1]["annotations"], json!({"keep": "k", "note": "new"}));
    assert_eq!(secrets[1]["type"], "Opaque");
}

/// What two tools must agree on in a Secret; kubeseal's owner reference and null fields aside.
fn comparable(secret: &Value) -> Value {
    let meta = &secret["metadata"];
    json!({
        "name": meta["name"], "namespace": meta["namespace"],
        "labels": meta.get("labels").cloned().unwrap_or(Value::Null),
        "annotations": meta.get("annotations").cloned().unwrap_or(Value::Null),
        "type": secret.get("type").cloned().unwrap_or(Value::Null),
        "data": data_of(secret).into_iter().map(|(k, v)| (k, json!(encode_base64(&v)))).collect::<serde_json::Map<_, _>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A key pair made once per test binary by `gitseal keygen`, in Cargo's target tmp dir, as a PEM
/// key, a certificate, gitseal's key Secret (`key-secret.yaml`) and a Bitnami key backup
/// (`bitnami-backup.yaml`, a v1 List as `kubectl get secret -l …sealed-secrets-key -o yaml`).
struct Keys {
    dir: PathBuf,
    key: String,
    cert: String,
}

impl Keys {
    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn cert(&self) -> &str {
        &self.cert
    }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat_kubeseal");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = |f: &str| dir.join(f).to_str().unwrap().to_owned();
        let (key, cert, secret) = (file("key.pem"), file("cert.pem"), file("key-secret.yaml"));
        gitseal(&["keygen", "--bits", "4096", "--out-key", &key, "--out-cert", &cert, "--secret", &secret], "");
        let pem = std::fs::read(&key).unwrap();
        let crt = std::fs::read(&cert).unwrap();
        let backup = json!({"apiVersion": "v1", "kind": "List", "items": [{
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "sealed-secrets-keyabcde", "namespace": "kube-system",
                "labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"}},
            "data": {"tls.crt": encode_base64(&crt), "tls.key": encode_base64(&pem)}}]});
        std::fs::write(file("bitnami-backup.yaml"), backup.to_string()).unwrap();
        Keys { dir, key, cert }
    })
}

fn gitseal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitseal"))
}

fn kubeseal_bin() -> PathBuf {
    gitseal_tests::Peer::Kubeseal.path().unwrap_or_else(|e| panic!("{e}"))
}

fn run(cmd: &mut Command, stdin: &str) -> Output {
    support::run_isolated(cmd, stdin.as_bytes())
}

fn ok(cmd: &mut Command, stdin: &str) -> String {
    let described = format!("{cmd:?}");
    let out = run(cmd, stdin);
    assert!(out.status.success(), "{described} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn gitseal(args: &[&str], stdin: &str) -> String {
    ok(Command::new(gitseal_bin()).args(args), stdin)
}

fn kubeseal(args: &[&str], stdin: &str) -> String {
    ok(Command::new(kubeseal_bin()).args(args), stdin)
}

/// `kubeseal --recovery-unseal` of one SealedSecret: the Secret, as JSON.
fn kubeseal_unseal(key: &str, sealed: &str) -> Value {
    let out = kubeseal(&["--recovery-unseal", "--recovery-private-key", key, "-o", "json"], sealed);
    serde_json::from_str(&out).unwrap()
}

/// `gitseal unseal` of a stream: the Secrets.
fn gitseal_unseal(key: &str, sealed: &str) -> Vec<Value> {
    let out = gitseal(&["unseal", "--key", key, "--format", "json"], sealed);
    parse_documents(&out).unwrap().into_iter().map(|d| d.value).collect()
}

/// A v1 Secret (JSON) with `items` under `data`.
fn secret(namespace: &str, name: &str, items: &Items, annotations: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, Value> =
        items.iter().map(|(k, v)| (k.clone(), json!(encode_base64(v)))).collect();
    let mut meta = json!({"name": name, "namespace": namespace});
    if !annotations.is_empty() {
        meta["annotations"] = annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    }
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data}).to_string()
}

/// The SealedSecret a user writes around a `--raw` value: item `value`, scope annotation.
fn raw_sealed_secret(api: &str, scope: &str, namespace: &str, name: &str, raw: &str) -> String {
    let mut meta = json!({"name": name, "namespace": namespace});
    if scope != "strict" {
        meta["annotations"] = json!({format!("sealedsecrets.bitnami.com/{scope}"): "true"});
    }
    json!({"apiVersion": api, "kind": "SealedSecret", "metadata": meta, "spec": {"encryptedData": {"value": raw}}})
        .to_string()
}

/// The only object of a YAML or JSON stream.
fn single(text: &str) -> Value {
    let mut docs = parse_documents(text).unwrap();
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0).value
}

/// A Secret's `data`, decoded. kubeseal prints an empty value as `null` (Go's nil `[]byte`).
fn data_of(secret: &Value) -> Items {
    let data = secret["data"].as_object().unwrap_or_else(|| panic!("no data in {secret}"));
    data.iter()
        .map(|(k, v)| {
            let bytes = match v {
                Value::Null => Vec::new(),
                v => decode_base64(v.as_str().unwrap()).unwrap(),
            };
            (k.clone(), bytes)
        })
        .collect()
}
