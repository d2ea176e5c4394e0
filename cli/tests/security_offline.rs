//! The security team's commands that need no cluster, run as the `gitseal` binary in temporary
//! directories: `audit` (filters) and `audit verify` (hash chain), `scan`, `keys usage`, and
//! the file handling of `keys restore` (a backup made here with the age crate, as the
//! controller makes it). Online parts are in `drill.rs`.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Output;

use gitseal_shared::audit::{AuditObject, AuditRecord, CHAIN_STARTED, Caller, Chain, Checkpoint, Outcome, SigningKey};
use gitseal_shared::manifest::parse_documents;
use serde_json::{Value, json};
use snapbox::cmd::{Command, cargo_bin};

/// A value that must never appear in any output.
const PLAINTEXT: &str = "correct-horse-battery-staple";

fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(cargo_bin!("gitseal")).current_dir(dir).env("KUBECONFIG", "/nonexistent");
    for (k, _) in std::env::vars() {
        if k.starts_with("GITSEAL_") || k.starts_with("SEALED_SECRETS_") {
            cmd = cmd.env_remove(k);
        }
    }
    let mut cmd = cmd.args(args);
    if let Some(s) = stdin {
        cmd = cmd.stdin(s.to_string());
    }
    cmd.output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args, None);
    assert!(out.status.success(), "gitseal {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A run that must fail with status 1 and one `error:` line; returns (stdout, stderr).
fn fails(dir: &Path, args: &[&str]) -> (String, String) {
    let out = run(dir, args, None);
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(1), "gitseal {args:?}: {stdout}{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    (stdout, stderr)
}

// --- audit ---------------------------------------------------------------------------------

fn record(
    time: &str,
    action: &str,
    outcome: Outcome,
    object: Option<(&str, &str)>,
    key: &str,
    user: Option<&str>,
) -> AuditRecord {
    let mut r = AuditRecord::new(time.into(), action, outcome);
    r.object = object.map(|(ns, name)| AuditObject {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    });
    r.key_id = (!key.is_empty()).then(|| key.to_string());
    r.caller = user.map(|u| Caller { user: u.into(), groups: vec!["security".into()] });
    r
}

const KEY_A: &str = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
// The last character carries 2 bits that must be zero for a canonical 32-byte hash.
const KEY_B: &str = "SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA";

fn audit_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap().0)
}

/// A signed history of 6 records (a chain start and five operations) and its head.
fn signed_log() -> (Vec<String>, Chain) {
    let mut chain = Chain::default();
    let lines = [
        record("2026-01-01T10:00:00Z", CHAIN_STARTED, Outcome::Success, None, "", None),
        record("2026-01-01T10:00:00Z", "KeyGenerated", Outcome::Success, None, KEY_A, None),
        record("2026-01-02T10:00:00Z", "Unseal", Outcome::Success, Some(("prod", "db")), KEY_A, None),
        record("2026-01-03T10:00:00Z", "Unseal", Outcome::Failure, Some(("prod", "cache")), "", None),
        record("2026-01-04T10:00:00Z", "KeyGenerated", Outcome::Success, None, KEY_B, Some("sam")),
        record("2026-01-05T10:00:00Z", "Reseal", Outcome::Success, Some(("prod", "db")), KEY_B, Some("alice")),
        record("2026-01-06T10:00:00Z", "KeyRetired", Outcome::Success, None, KEY_A, Some("sam")),
    ]
    .into_iter()
    .map(|mut r| {
        r.actor = Some("replica-a".into());
        chain.seal(r, audit_key())
    })
    .collect();
    (lines, chain)
}

/// The six operations, without the chain start (for the filters).
fn audit_log() -> Vec<String> {
    signed_log().0.split_off(1)
}

#[test]
fn audit_verify_counts_an_intact_chain_and_names_the_first_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, _) = signed_log();
    fs::write(dir.path().join("audit.log"), lines.join("\n") + "\n").unwrap();
    let out = ok(dir.path(), &["audit", "verify", "audit.log"]);
    assert!(out.starts_with("7 records, chain intact (seq 1 to 7, 1 segment)\n"), "{out}");
    assert!(out.contains("signatures: not checked"), "{out}");
    let out = run(dir.path(), &["audit", "verify", "-"], Some(&lines.join("\n")));
    assert!(out.status.success());

    let mut edited = lines.clone();
    edited[3] = edited[3].replace("\"failure\"", "\"success\"");
    fs::write(dir.path().join("edited.log"), edited.join("\n")).unwrap();
    let (_, err) = fails(dir.path(), &["audit", "verify", "edited.log"]);
    assert!(err.contains("edited.log: line 4 (seq 4): record altered"), "{err}");
    assert!(err.contains("trust ends at seq 3"), "{err}");

    let mut removed = lines.clone();
    removed.remove(2);
    fs::write(dir.path().join("removed.log"), removed.join("\n")).unwrap();
    let (_, err) = fails(dir.path(), &["audit", "verify", "removed.log"]);
    assert!(err.contains("line 3 (seq 4): record seq 3 is missing (removed); trust ends at seq 2"), "{err}");

    fs::write(dir.path().join("empty.log"), "\n").unwrap();
    let (_, err) = fails(dir.path(), &["audit", "verify", "empty.log"]);
    assert!(err.contains("no input") || err.contains("empty") || err.contains("no audit record"), "{err}");
}

#[test]
fn audit_verify_with_the_key_and_checkpoint_reports_forgery_and_truncation_with_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, head) = signed_log();
    let key = audit_key();
    fs::write(dir.path().join("key.pem"), key.public_key().to_pem()).unwrap();
    let cp = Checkpoint::new("replica-a", &head, "2026-01-06T10:00:01Z", key);
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"checkpoint": serde_json::to_string(&cp).unwrap()}});
    fs::write(dir.path().join("cp.json"), cm.to_string()).unwrap();
    fs::write(dir.path().join("audit.log"), lines.join("\n")).unwrap();
    let args = |log: &'static str| ["audit", "verify", "--public-key", "key.pem", "--checkpoint", "cp.json", log];
    let out = ok(dir.path(), &args("audit.log"));
    assert!(out.contains("signatures: valid (audit key SHA256:"), "{out}");
    assert!(out.contains("checkpoint: seq 7 of replica-a"), "{out}");

    // Cut off the last two records.
    fs::write(dir.path().join("cut.log"), lines[..5].join("\n")).unwrap();
    let (_, err) = fails(dir.path(), &args("cut.log"));
    assert!(err.contains("truncated: the log ends at seq 5") && err.contains("trust ends at seq 5"), "{err}");

    // Rewritten from seq 4 and re-hashed, signed with another key.
    let forger = SigningKey::generate().unwrap().0;
    let mut c = Chain::resume(&lines[2], &key.public_key()).unwrap();
    let mut forged = lines[..3].to_vec();
    for l in &lines[3..] {
        let mut r = gitseal_shared::audit::parse_line(l).unwrap().record;
        r.outcome = Outcome::Success;
        forged.push(c.seal(r, &forger));
    }
    fs::write(dir.path().join("forged.log"), forged.join("\n")).unwrap();
    let (_, err) = fails(dir.path(), &args("forged.log"));
    assert!(err.contains("line 4 (seq 4): record signature does not verify"), "{err}");
    assert!(err.contains("trust ends at seq 3"), "{err}");
    // Without the key, the checkpoint still tells the rewrite.
    let (_, err) = fails(dir.path(), &["audit", "verify", "--checkpoint", "cp.json", "forged.log"]);
    assert!(err.contains("rewritten at or before seq 7"), "{err}");

    // An added field.
    let mut added = lines.clone();
    added[5] = added[5].replacen('{', "{\"extra\":1,", 1);
    fs::write(dir.path().join("added.log"), added.join("\n")).unwrap();
    let (_, err) = fails(dir.path(), &args("added.log"));
    assert!(err.contains("line 6 (seq 6): record altered") && err.contains("trust ends at seq 5"), "{err}");

    fs::write(dir.path().join("bad.pem"), "nope").unwrap();
    let (_, err) = fails(dir.path(), &["audit", "verify", "--public-key", "bad.pem", "audit.log"]);
    assert!(err.contains("not an Ed25519 public key"), "{err}");
}

#[test]
fn audit_filters_by_object_key_action_outcome_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = audit_log();
    text.insert(2, "{\"level\":\"info\",\"msg\":\"a log line mixed in\"}".into());
    text.insert(0, "plain text".into());
    fs::write(dir.path().join("audit.log"), text.join("\n")).unwrap();
    let count = |args: &[&str]| -> usize {
        let mut all = vec!["audit", "audit.log", "-o", "json"];
        all.extend_from_slice(args);
        let v: Value = serde_json::from_str(&ok(dir.path(), &all)).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(count(&[]), 6);
    assert_eq!(count(&["--object", "prod/db"]), 2);
    assert_eq!(count(&["--object", "cache"]), 1);
    assert_eq!(count(&["--key-id", "AAAAAA"]), 3);
    assert_eq!(count(&["--key-id", KEY_B]), 2);
    assert_eq!(count(&["--action", "keygenerated,keyretired"]), 3);
    assert_eq!(count(&["--outcome", "failure"]), 1);
    assert_eq!(count(&["--since", "2026-01-04T00:00:00Z"]), 3);
    assert_eq!(count(&["--since", "2026-01-02T00:00:00Z", "--until", "2026-01-04T00:00:00Z"]), 2);
    assert_eq!(count(&["--object", "prod/db", "--action", "reseal"]), 1);

    let out = run(dir.path(), &["audit", "--action", "Reseal"], Some(&text.join("\n")));
    let table = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(table.starts_with("TIME") && table.contains("prod/db") && table.contains("alice"), "{table}");
    assert!(table.contains("1 record(s)"), "{table}");
    assert!(stderr.contains("2 line(s) of stdin are not audit records"), "{stderr}");

    let out = run(dir.path(), &["audit", "audit.log", "--since", "last tuesday"], None);
    assert_eq!(out.status.code(), Some(2), "a bad time is a usage error");
}

// --- scan ----------------------------------------------------------------------------------

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A SealedSecret (not a real one: scan reads no values) annotated with `key_ids`.
fn sealed_secret(name: &str, key_ids: &str) -> String {
    format!(
        "apiVersion: gitseal.dev/v1\nkind: SealedSecret\nmetadata:\n  name: {name}\n  namespace: app\n  annotations:\n    gitseal.dev/key-id: {key_ids}\nspec:\n  encryptedData:\n    password: AgBy3i4OJSWK+PiTySYZZA==\n"
    )
}

#[test]
fn scan_catches_a_plaintext_secret_in_a_nested_multi_document_file_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("repo");
    write(&tree, "apps/db/sealed.yaml", &sealed_secret("db", KEY_A));
    write(&tree, "apps/db/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n");
    let nested = format!(
        "# the app\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: leaked\n  namespace: app\nstringData:\n  password: {PLAINTEXT}\n"
    );
    write(&tree, "apps/web/overlays/prod/all.yaml", &nested);
    write(&tree, ".git/objects/stash.yaml", &nested);
    write(
        &tree,
        "clean/empty-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sa-token}\ntype: kubernetes.io/service-account-token\n",
    );

    let clean = ok(dir.path(), &["scan", "repo/apps/db", "repo/clean"]);
    assert!(clean.contains("no plaintext Secret"), "{clean}");

    let (out, err) = fails(dir.path(), &["scan", "repo"]);
    assert!(out.contains("repo/apps/web/overlays/prod/all.yaml") && out.contains("document 3"), "{out}");
    assert!(out.contains("Secret app/leaked") && out.contains("stringData"), "{out}");
    assert!(!out.contains(".git"), "hidden directories are skipped: {out}");
    assert!(err.contains("1 finding(s) in 1 file(s)"), "{err}");
    assert!(!out.contains(PLAINTEXT) && !err.contains(PLAINTEXT), "the value is never printed");

    // The same Secret as JSON, inside a v1 List, with data instead of stringData.
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "in-list"}, "data": {"password": "Y29ycmVjdA=="}}]});
    write(&tree, "apps/list.json", &list.to_string());
    let out = run(dir.path(), &["scan", "-o", "json", "repo"], None);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let places: Vec<&str> =
        report["findings"].as_array().unwrap().iter().map(|f| f["place"].as_str().unwrap()).collect();
    assert_eq!(places, ["document 1, list item 2", "document 3"], "{report}");
}

#[test]
fn scan_with_a_keys_file_flags_sealed_secrets_on_retired_or_revoked_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key_c = "SHA256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA";
    write(dir.path(), "repo/active.yaml", &sealed_secret("on-active", KEY_B));
    write(dir.path(), "repo/retired.yaml", &sealed_secret("on-retired", KEY_A));
    write(
        dir.path(),
        "repo/revoked.yaml",
        &format!("{}---\n{}", sealed_secret("fine", KEY_B), sealed_secret("on-revoked", &format!("{KEY_B},{key_c}"))),
    );
    let keys = json!({"kind": "KeyList", "items": [
        {"keyId": KEY_A, "state": "retired"}, {"keyId": KEY_B, "state": "active"}, {"keyId": key_c, "state": "revoked"}]});
    fs::write(dir.path().join("keys.json"), keys.to_string()).unwrap();

    // Without key states only plaintext is looked for.
    ok(dir.path(), &["scan", "repo"]);
    let (out, err) = fails(dir.path(), &["scan", "--keys-file", "keys.json", "repo"]);
    assert!(
        out.contains("SealedSecret app/on-retired") && out.contains("sealed for retired key AAAAAAAAAAAA"),
        "{out}"
    );
    assert!(out.contains("SealedSecret app/on-revoked") && out.contains("revoked key CCCCCCCCCCCC"), "{out}");
    assert!(out.contains("considered exposed"), "{out}");
    assert!(!out.contains("on-active") && !out.contains("app/fine"), "{out}");
    assert!(err.contains("2 finding(s) in 2 file(s)"), "{err}");

    fs::write(dir.path().join("bad.json"), "[1, 2]").unwrap();
    let (_, err) = fails(dir.path(), &["scan", "--keys-file", "bad.json", "repo"]);
    assert!(err.contains("bad.json is not a key list: write it with gitseal keys list -o json"), "{err}");
}

// --- keys usage ----------------------------------------------------------------------------

#[test]
fn keys_usage_reports_the_key_ids_a_tree_is_sealed_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for stem in ["old", "new"] {
        ok(d, &["keygen", "--bits", "2048", "--out-key", &format!("{stem}.key"), "--out-cert", &format!("{stem}.pem")]);
    }
    fs::create_dir_all(d.join("repo/a")).unwrap();
    let secret = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: app}}\nstringData: {{p: {PLAINTEXT}}}\n"
        )
    };
    for (file, name, cert) in [
        ("repo/a/one.yaml", "one", "old.pem"),
        ("repo/a/two.yaml", "two", "new.pem"),
        ("repo/three.yaml", "three", "new.pem"),
    ] {
        let out = run(d, &["seal", "--cert", cert], Some(&secret(name)));
        assert!(out.status.success());
        fs::write(d.join(file), out.stdout).unwrap();
    }
    // Sealed by kubeseal: no key-id annotation.
    let text = fs::read_to_string(d.join("repo/three.yaml")).unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| !l.contains("annotations:") && !l.contains("gitseal.dev/key-id"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(d.join("repo/kubeseal.yaml"), stripped).unwrap();

    let id_of = |file: &str| {
        let docs = parse_documents(&fs::read_to_string(d.join(file)).unwrap()).unwrap();
        docs[0].value["metadata"]["annotations"]["gitseal.dev/key-id"].as_str().unwrap().to_string()
    };
    let (old, new) = (id_of("repo/a/one.yaml"), id_of("repo/a/two.yaml"));
    let report: Value = serde_json::from_str(&ok(d, &["keys", "usage", "-o", "json", "repo"])).unwrap();
    let keys: Vec<(String, usize)> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["keyId"].as_str().unwrap().to_string(), k["objects"].as_array().unwrap().len()))
        .collect();
    let mut want = vec![(old.clone(), 1), (new.clone(), 2)];
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(report["unknown"][0]["file"], "repo/kubeseal.yaml");

    let table = ok(d, &["keys", "usage", "repo"]);
    assert!(table.starts_with("KEY ID") && table.contains("? (no key-id annotation)"), "{table}");
    assert!(table.contains("add --online"), "{table}");
    let wide = ok(d, &["keys", "usage", "-o", "wide", "repo/a"]);
    assert!(wide.contains(&old) && wide.contains("app/one") && wide.contains("repo/a/one.yaml"), "{wide}");
    assert!(!table.contains(PLAINTEXT) && !wide.contains(PLAINTEXT));

    let (_, err) = fails(d, &["keys", "usage", "old.pem"]);
    assert!(err.contains("no SealedSecret found"), "{err}");
}

// --- keys restore: the backup file, before any cluster is involved ------------------------

/// A backup as the controller makes it: a YAML v1 List of key Secrets, encrypted with age.
fn backup(recipient: &age::x25519::Recipient) -> Vec<u8> {
    let pair = gitseal_keys::generate_key_pair(
        gitseal_keys::RsaBits::Rsa2048,
        "",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(30),
    )
    .unwrap();
    let data: serde_json::Map<String, Value> = pair
        .secret_data()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_string(), gitseal_shared::value::encode_base64(&v).into()))
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [{
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "gitseal-key-abcde", "namespace": "gitseal-system", "labels": {"gitseal.dev/key": "retired"}},
        "data": data}]});
    let yaml = gitseal_shared::manifest::to_yaml(&list).unwrap();
    age::encrypt(recipient, yaml.as_bytes()).unwrap()
}

fn identity_file(dir: &Path, name: &str) -> age::x25519::Identity {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    fs::write(dir.join(name), format!("# created by a test\n{}\n", id.to_string().expose_secret())).unwrap();
    id
}

#[test]
fn restore_checks_the_backup_before_touching_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let team = identity_file(d, "team.key");
    identity_file(d, "other.key");
    let binary = backup(&team.to_public());
    fs::write(d.join("keys.age"), &binary).unwrap();
    let mut armored = age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor).unwrap();
    armored.write_all(&binary).unwrap();
    fs::write(d.join("keys.age.txt"), armored.finish().unwrap()).unwrap();
    let mut tampered = binary.clone();
    let at = tampered.len() - 20;
    tampered[at] ^= 1;
    fs::write(d.join("tampered.age"), &tampered).unwrap();
    fs::write(d.join("not-age.yaml"), "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    fs::write(d.join("not-an-identity.key"), "AGE-SECRET-KEY-1NOPE\n").unwrap();
    let secret_list = json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]});
    fs::write(d.join("not-keys.age"), age::encrypt(&team.to_public(), secret_list.to_string().as_bytes()).unwrap())
        .unwrap();

    let mut outputs = String::new();
    for (file, identity, expect) in [
        ("keys.age", "other.key", "none of the identities given opens keys.age"),
        ("tampered.age", "team.key", "tampered.age is damaged or was altered: nothing restored"),
        ("not-age.yaml", "team.key", "not-age.yaml is not an age file"),
        ("keys.age", "not-an-identity.key", "not-an-identity.key is not an age identity file"),
        ("not-keys.age", "team.key", "holds a ConfigMap besides key Secrets"),
        ("missing.age", "team.key", "cannot read missing.age"),
        // A good backup, binary or armored, opens: the next step needs the cluster.
        ("keys.age", "team.key", "no kubeconfig found"),
        ("keys.age.txt", "team.key", "no kubeconfig found"),
    ] {
        let (out, err) = fails(d, &["keys", "restore", file, "--identity", identity]);
        assert!(err.contains(expect), "{file} with {identity}: {err}");
        outputs.push_str(&out);
        outputs.push_str(&err);
    }
    assert!(!outputs.contains("PRIVATE KEY") && !outputs.contains("AGE-SECRET-KEY-1Q"), "no key material: {outputs}");
    let names: Vec<String> =
        fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 8, "nothing written next to the backup: {names:?}");

    let out = run(d, &["keys", "restore", "keys.age"], None);
    assert_eq!(out.status.code(), Some(2), "--identity is required");
}

#[test]
fn backup_needs_valid_recipients_before_asking_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["keys", "backup", "-o", "keys.age"], None);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--recipient age1… or --recipients-file FILE"));
    let (_, err) = fails(dir.path(), &["keys", "backup", "--recipient", "age1notarecipient", "-o", "keys.age"]);
    assert!(err.contains("--recipient") && err.contains("age1notarecipient"), "{err}");
    fs::write(dir.path().join("exists.age"), "x").unwrap();
    let (_, err) = fails(dir.path(), &["keys", "backup", "--recipient", "age1notarecipient", "-o", "exists.age"]);
    assert!(err.contains("exists.age already exists"), "{err}");
}
