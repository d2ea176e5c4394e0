//! End-to-end runs of the `gitseal` binary in temporary directories: keys made by `keygen`,
//! Secrets sealed, merged, re-sealed and validated, and unsealed back. 2048-bit keys keep
//! it quick.

// Test code: a failed unwrap is a failed test with its message. clippy.toml's
// allow-unwrap-in-tests covers #[test] functions only, not the helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use gitseal_shared::manifest::parse_documents;
use gitseal_shared::value::{decode_base64, encode_base64};
use snapbox::cmd::{Command, cargo_bin};

/// A value that must never appear in an error, a report or a log line.
const PLAINTEXT: &str = "correct-horse-battery-staple";

fn gitseal(dir: &Path) -> Command {
    let mut cmd = Command::new(cargo_bin!("gitseal")).current_dir(dir).env("KUBECONFIG", "/nonexistent");
    for (k, _) in std::env::vars() {
        if k.starts_with("GITSEAL_") || k.starts_with("SEALED_SECRETS_") {
            cmd = cmd.env_remove(k);
        }
    }
    cmd
}

fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = gitseal(dir).args(args);
    if let Some(s) = stdin {
        cmd = cmd.stdin(s.to_string());
    }
    cmd.output().unwrap()
}

fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(dir, args, stdin);
    assert!(out.status.success(), "gitseal {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Run a command that must fail with status 1 and one error line; returns stdout and stderr.
fn fails(dir: &Path, args: &[&str], stdin: Option<&str>) -> (String, String) {
    let out = run(dir, args, stdin);
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(1), "gitseal {args:?}: {stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    (stdout, stderr)
}

/// `keygen` an RSA-2048 pair named `stem.key` / `stem.pem`.
fn keygen(dir: &Path, stem: &str) {
    ok(
        dir,
        &["keygen", "--bits", "2048", "--out-key", &format!("{stem}.key"), "--out-cert", &format!("{stem}.pem")],
        None,
    );
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n");
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v}\n"));
    }
    s
}

/// Unseal `sealed` with `keys` and return (namespace/name, data) per Secret.
fn unseal(dir: &Path, keys: &[&str], sealed: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut args = vec!["unseal"];
    for k in keys {
        args.extend(["--key", k]);
    }
    let out = ok(dir, &args, Some(sealed));
    parse_documents(&out)
        .unwrap()
        .into_iter()
        .map(|d| {
            assert_eq!(d.kind(), "Secret");
            let meta = &d.value["metadata"];
            let id = format!("{}/{}", meta["namespace"].as_str().unwrap_or(""), meta["name"].as_str().unwrap());
            let data = d.value["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8(decode_base64(v.as_str().unwrap()).unwrap()).unwrap()))
                .collect();
            (id, data)
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The `encryptedData` values of the first SealedSecret in `text`.
fn encrypted(text: &str) -> BTreeMap<String, String> {
    let docs = parse_documents(text).unwrap();
    let doc = docs.iter().find(|d| d.kind() == "SealedSecret").unwrap();
    doc.value["spec"]["encryptedData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn sealing_in_every_scope_format_and_api_unseals_back_to_the_same_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    let input = format!(
        "{}---\n# a comment between documents\n---\n{}",
        secret("app", "db", &[("password", PLAINTEXT), ("user", "admin")]),
        secret("other", "cache", &[("token", "xyz")])
    );
    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        for format in ["yaml", "json"] {
            for api in ["gitseal", "bitnami"] {
                let args = ["seal", "--cert", "cluster.pem", "--scope", scope, "--format", format, "--api", api];
                let sealed = ok(d, &args, Some(&input));
                assert_eq!(sealed.starts_with('{'), format == "json", "{sealed}");
                assert!(!sealed.contains(PLAINTEXT));
                let docs = parse_documents(&sealed).unwrap();
                assert_eq!(docs.len(), 2, "one SealedSecret per Secret");
                let want_api = if api == "gitseal" { "gitseal.dev/v1" } else { "bitnami.com/v1alpha1" };
                assert!(docs.iter().all(|doc| doc.value["apiVersion"] == want_api));
                let back = unseal(d, &["cluster.key"], &sealed);
                assert_eq!(
                    back,
                    vec![
                        ("app/db".to_string(), map(&[("password", PLAINTEXT), ("user", "admin")])),
                        ("other/cache".to_string(), map(&[("token", "xyz")])),
                    ],
                    "{scope} {format} {api}"
                );
            }
        }
    }
}

#[test]
fn sealing_to_a_file_picks_the_format_from_its_extension_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    fs::write(d.join("s.yaml"), secret("app", "db", &[("password", PLAINTEXT)])).unwrap();
    ok(d, &["seal", "--cert", "cluster.pem", "-f", "s.yaml", "--format", "json", "-o", "out.yaml"], None);
    let written = fs::read_to_string(d.join("out.yaml")).unwrap();
    assert!(written.starts_with("---\napiVersion: gitseal.dev/v1\n"), "{written}");
    ok(d, &["seal", "--cert", "cluster.pem", "-f", "s.yaml", "-w", "out.json"], None);
    assert!(fs::read_to_string(d.join("out.json")).unwrap().starts_with('{'));
    let (_, err) = fails(d, &["seal", "--cert", "cluster.pem", "-f", "s.yaml", "-o", "out.yaml"], None);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read_to_string(d.join("out.yaml")).unwrap(), written);
    // A failing run leaves no file behind.
    fs::write(d.join("bad.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap();
    fails(d, &["seal", "--cert", "cluster.pem", "-f", "bad.yaml", "-o", "never.yaml"], None);
    assert!(!d.join("never.yaml").exists());
    let leftovers: Vec<_> = fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".gitseal-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn several_certificates_and_age_recipients_each_unseal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "prod");
    keygen(d, "dr");
    keygen(d, "stranger");
    let recovery = ok(d, &["keygen", "--type", "age", "--out-key", "recovery.agekey"], None).trim().to_string();
    assert!(recovery.starts_with("age1"), "{recovery}");
    ok(d, &["keygen", "--type", "age", "--out-key", "team.agekey"], None);
    let team = fs::read_to_string(d.join("team.agekey")).unwrap();
    let team_recipient = team.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_string();
    fs::write(d.join("recipients.txt"), format!("# the team\n{team_recipient}\n")).unwrap();

    let input = secret("app", "db", &[("password", PLAINTEXT)]);
    let args = [
        "seal",
        "--cert",
        "prod.pem",
        "--cert",
        "dr.pem",
        "--recipient",
        &recovery,
        "--recipients-file",
        "recipients.txt",
    ];
    let sealed = ok(d, &args, Some(&input));
    let ids = parse_documents(&sealed).unwrap()[0].value["metadata"]["annotations"]["gitseal.dev/key-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ids.split(',').count(), 4, "{ids}");
    for key in ["prod.key", "dr.key", "recovery.agekey", "team.agekey"] {
        assert_eq!(unseal(d, &[key], &sealed), vec![("app/db".to_string(), map(&[("password", PLAINTEXT)]))]);
    }
    let (_, err) = fails(d, &["unseal", "--key", "stranger.key"], Some(&sealed));
    assert!(err.contains("no key could decrypt item (password)"), "{err}");
}

#[test]
fn a_raw_value_opens_inside_a_sealed_secret_of_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    let strict =
        ok(d, &["seal", "--raw", "--cert", "cluster.pem", "--namespace", "app", "--name", "db"], Some(PLAINTEXT));
    assert!(!strict.ends_with('\n'), "bare base64 without a newline, like kubeseal");
    fs::write(d.join("value.txt"), "from a file\n").unwrap();
    let wide = ok(
        d,
        &[
            "seal",
            "--raw",
            "--cert",
            "cluster.pem",
            "--scope",
            "namespace-wide",
            "-n",
            "app",
            "--from-file",
            "k=value.txt",
        ],
        None,
    );
    let sealed = |name: &str, annotations: &str, value: &str| {
        format!(
            "apiVersion: gitseal.dev/v1\nkind: SealedSecret\nmetadata:\n  name: {name}\n  namespace: app\n{annotations}spec:\n  encryptedData:\n    v: {value}\n"
        )
    };
    assert_eq!(unseal(d, &["cluster.key"], &sealed("db", "", &strict))[0].1, map(&[("v", PLAINTEXT)]));
    let ns_wide = "  annotations:\n    sealedsecrets.bitnami.com/namespace-wide: \"true\"\n";
    assert_eq!(unseal(d, &["cluster.key"], &sealed("any-name", ns_wide, &wide))[0].1, map(&[("v", "from a file\n")]));
    let (_, err) = fails(d, &["unseal", "--key", "cluster.key"], Some(&sealed("renamed", "", &strict)));
    assert!(err.contains("no key could decrypt"), "{err}");
}

const COMMENTED: &str = "\
# Database credentials for the app.
apiVersion: gitseal.dev/v1
kind: SealedSecret
metadata:
  name: db
  namespace: app
spec:
  encryptedData:
    # rotated every quarter
    password: PASSWORD
    # read-only user
    user: USER
  template:
    metadata:
      name: db
      namespace: app
";

/// A commented SealedSecret file for `app/db`, sealed for `cert`.
fn commented_file(d: &Path, cert: &str) -> String {
    let sealed =
        ok(d, &["seal", "--cert", cert], Some(&secret("app", "db", &[("password", PLAINTEXT), ("user", "admin")])));
    let values = encrypted(&sealed);
    COMMENTED.replace("PASSWORD", &values["password"]).replace("USER", &values["user"])
}

#[test]
fn merge_into_keeps_comments_and_replaces_and_adds_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    fs::write(d.join("db.yaml"), commented_file(d, "cluster.pem")).unwrap();
    let before = fs::read_to_string(d.join("db.yaml")).unwrap();
    // The input's own name and namespace are overridden by the file's.
    let update = secret("elsewhere", "whatever", &[("password", "new-password"), ("extra", "added")]);
    ok(d, &["seal", "--cert", "cluster.pem", "--merge-into", "db.yaml"], Some(&update));
    let after = fs::read_to_string(d.join("db.yaml")).unwrap();
    for comment in ["# Database credentials for the app.", "# rotated every quarter", "# read-only user"] {
        assert!(after.contains(comment), "{comment} kept:\n{after}");
    }
    assert!(after.find("password:").unwrap() < after.find("user:").unwrap(), "order kept:\n{after}");
    assert_eq!(encrypted(&after)["user"], encrypted(&before)["user"], "untouched keys stay byte for byte");
    assert!(after.contains("gitseal.dev/key-id: "), "{after}");
    assert_eq!(
        unseal(d, &["cluster.key"], &after),
        vec![("app/db".to_string(), map(&[("extra", "added"), ("password", "new-password"), ("user", "admin")]))]
    );
}

#[test]
fn merge_into_a_json_file_rewrites_it_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    let input = secret("app", "db", &[("password", PLAINTEXT)]);
    ok(d, &["seal", "--cert", "cluster.pem", "--scope", "namespace-wide", "-o", "db.json"], Some(&input));
    ok(d, &["seal", "--cert", "cluster.pem", "--merge-into", "db.json"], Some(&secret("app", "db", &[("more", "v")])));
    let after = fs::read_to_string(d.join("db.json")).unwrap();
    assert!(after.starts_with('{'));
    let doc = &parse_documents(&after).unwrap()[0].value;
    assert_eq!(
        doc["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"], "true",
        "scope from the file"
    );
    assert_eq!(unseal(d, &["cluster.key"], &after)[0].1, map(&[("more", "v"), ("password", PLAINTEXT)]));
}

/// Lay out a repository: a commented file, a nested multi-document file mixing both API
/// groups and a ConfigMap, a plain ConfigMap file, and a README.
fn repository(d: &Path) -> PathBuf {
    let repo = d.join("repo");
    fs::create_dir_all(repo.join("apps/nested/deep")).unwrap();
    fs::write(repo.join("apps/db.yaml"), commented_file(d, "old.pem")).unwrap();
    let wide = ok(
        d,
        &["seal", "--cert", "old.pem", "--api", "bitnami", "--scope", "namespace-wide"],
        Some(&secret("web", "tls", &[("key", PLAINTEXT)])),
    );
    let cluster = ok(
        d,
        &["seal", "--cert", "old.pem", "--scope", "cluster-wide"],
        Some(&secret("web", "shared", &[("token", "t0k3n")])),
    );
    let multi = format!(
        "# Web tier\n{}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  color: blue # not a secret\n{}",
        wide.trim_start_matches("---\n").trim_end(),
        cluster
    );
    fs::write(repo.join("apps/nested/deep/multi.yaml"), multi).unwrap();
    fs::write(repo.join("apps/config.yaml"), "# just config\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
        .unwrap();
    fs::write(repo.join("README.md"), "not a manifest\n").unwrap();
    repo
}

fn snapshot(repo: &Path) -> BTreeMap<PathBuf, String> {
    walk(repo).into_iter().map(|p| (p.clone(), fs::read_to_string(&p).unwrap())).collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

#[test]
fn reseal_moves_a_repository_to_a_new_key_keeping_comments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "old");
    keygen(d, "new");
    let repo = repository(d);
    let before = snapshot(&repo);

    let dry = ok(d, &["reseal", "--dry-run", "--key", "old.key", "--cert", "new.pem", "repo"], None);
    assert!(dry.contains("Dry run, nothing written"), "{dry}");
    assert_eq!(snapshot(&repo), before, "--dry-run changes nothing");

    let report = ok(d, &["reseal", "--key", "old.key", "--cert", "new.pem", "repo"], None);
    assert!(report.contains("repo/apps/db.yaml") && report.contains("repo/apps/nested/deep/multi.yaml"), "{report}");
    assert!(
        report
            .contains("Re-sealed 4 value(s) in 3 object(s) across 2 file(s); 1 file(s) without SealedSecrets skipped"),
        "{report}"
    );
    assert!(!report.contains(PLAINTEXT));

    let after = snapshot(&repo);
    assert_eq!(after[&repo.join("apps/config.yaml")], before[&repo.join("apps/config.yaml")]);
    assert_eq!(after[&repo.join("README.md")], before[&repo.join("README.md")]);
    let db = &after[&repo.join("apps/db.yaml")];
    for comment in ["# Database credentials for the app.", "# rotated every quarter", "# read-only user"] {
        assert!(db.contains(comment), "{db}");
    }
    let multi = &after[&repo.join("apps/nested/deep/multi.yaml")];
    assert!(multi.starts_with("# Web tier\n") && multi.contains("color: blue # not a secret"), "{multi}");
    assert!(multi.contains("apiVersion: bitnami.com/v1alpha1"), "{multi}");
    for text in [db, multi] {
        fails(d, &["unseal", "--key", "old.key"], Some(text));
    }
    assert_eq!(unseal(d, &["new.key"], db)[0].1, map(&[("password", PLAINTEXT), ("user", "admin")]));
    let sealed_only: String = parse_documents(multi)
        .unwrap()
        .into_iter()
        .filter(|doc| doc.kind() == "SealedSecret")
        .map(|doc| serde_json::to_string(&doc.value).unwrap())
        .collect();
    assert_eq!(
        unseal(d, &["new.key"], &sealed_only),
        vec![
            ("web/tls".to_string(), map(&[("key", PLAINTEXT)])),
            ("web/shared".to_string(), map(&[("token", "t0k3n")]))
        ]
    );
    ok(d, &["validate", "--key", "new.key", "repo"], None);
}

#[test]
fn reseal_leaves_a_read_only_file_intact_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "old");
    keygen(d, "new");
    keygen(d, "unrelated");
    let repo = d.join("repo");
    fs::create_dir(&repo).unwrap();
    fs::write(repo.join("a.yaml"), commented_file(d, "old.pem")).unwrap();
    fs::write(repo.join("locked.yaml"), commented_file(d, "old.pem")).unwrap();
    fs::set_permissions(repo.join("locked.yaml"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::write(repo.join("foreign.yaml"), commented_file(d, "unrelated.pem")).unwrap();
    let locked = fs::read_to_string(repo.join("locked.yaml")).unwrap();
    let foreign = fs::read_to_string(repo.join("foreign.yaml")).unwrap();

    let (report, err) = fails(d, &["reseal", "--key", "old.key", "--cert", "new.pem", "repo"], None);
    assert!(err.contains("left unchanged"), "{err}");
    assert!(report.contains("Could not be re-sealed"), "{report}");
    assert!(report.contains("repo/locked.yaml") && report.contains("read-only"), "{report}");
    assert!(report.contains("repo/foreign.yaml") && report.contains("wrong key or scope"), "{report}");
    assert_eq!(fs::read_to_string(repo.join("locked.yaml")).unwrap(), locked);
    assert_eq!(fs::read_to_string(repo.join("foreign.yaml")).unwrap(), foreign, "a file with a failure is not written");
    let a = fs::read_to_string(repo.join("a.yaml")).unwrap();
    assert_eq!(unseal(d, &["new.key"], &a)[0].1, map(&[("password", PLAINTEXT), ("user", "admin")]));
}

#[test]
fn validate_passes_then_fails_after_tampering_or_renaming() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    fs::write(d.join("db.yaml"), commented_file(d, "cluster.pem")).unwrap();
    let report = ok(d, &["validate", "--key", "cluster.key", "db.yaml"], None);
    assert!(report.contains("2 values checked, 0 failed"), "{report}");

    let text = fs::read_to_string(d.join("db.yaml")).unwrap();
    let value = encrypted(&text)["password"].clone();
    let mut bytes = decode_base64(&value).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(d.join("tampered.yaml"), text.replace(&value, &encode_base64(&bytes))).unwrap();
    fs::write(
        d.join("moved.yaml"),
        text.replace("  name: db\n  namespace: app\nspec", "  name: db2\n  namespace: app\nspec"),
    )
    .unwrap();

    let (json, _) = fails(d, &["validate", "--key", "cluster.key", "-o", "json", "tampered.yaml", "moved.yaml"], None);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["checked"], 4);
    assert_eq!(report["failed"], 3, "{report}");
    let verdict = |file: &str, item: &str| {
        report["results"].as_array().unwrap().iter().find(|r| r["file"] == file && r["item"] == item).unwrap().clone()
    };
    assert_eq!(verdict("tampered.yaml", "password")["ok"], false);
    assert_eq!(verdict("tampered.yaml", "user")["ok"], true);
    assert_eq!(verdict("moved.yaml", "user")["reason"], "wrong key or scope (or the value was altered)");
}

#[test]
fn errors_never_contain_the_plaintext_or_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    keygen(d, "other");
    let sealed = ok(d, &["seal", "--cert", "cluster.pem"], Some(&secret("app", "db", &[("password", PLAINTEXT)])));
    let key = fs::read_to_string(d.join("cluster.key")).unwrap();
    let key_body: String = key.lines().nth(3).unwrap().to_string();
    fs::write(d.join("broken.key"), key.replace(&key_body, &key_body.chars().rev().collect::<String>())).unwrap();

    let bad_inputs = [
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  password: {PLAINTEXT}\n"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  password: {PLAINTEXT}!\n"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: [{PLAINTEXT}\n"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: [{PLAINTEXT}]\n"),
        format!("{{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"stringData\": {{\"password\": \"{PLAINTEXT}\"}}"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  namespace: a\nstringData:\n  password: {PLAINTEXT}\n"),
    ];
    let mut messages = Vec::new();
    for input in &bad_inputs {
        messages.push(fails(d, &["seal", "--cert", "cluster.pem"], Some(input)));
    }
    messages.push(fails(d, &["unseal", "--key", "other.key"], Some(&sealed)));
    messages.push(fails(d, &["unseal", "--key", "broken.key"], Some(&sealed)));
    messages.push(fails(d, &["seal", "--cert", "cluster.key"], Some(&bad_inputs[0])));
    fs::write(d.join("s.yaml"), &sealed).unwrap();
    messages.push(fails(d, &["validate", "--key", "other.key", "s.yaml"], None));
    let keygen = run(d, &["keygen", "--bits", "2048", "--secret", "k.yaml", "--out-cert", "k.pem"], None);
    messages.push((String::from_utf8(keygen.stdout).unwrap(), String::from_utf8(keygen.stderr).unwrap()));
    let age = run(d, &["keygen", "--type", "age", "--out-key", "id.age"], None);
    messages.push((String::from_utf8(age.stdout).unwrap(), String::from_utf8(age.stderr).unwrap()));

    for (stdout, stderr) in &messages {
        for text in [stdout, stderr] {
            assert!(!text.contains(PLAINTEXT), "plaintext leaked: {text}");
            assert!(!text.contains("PRIVATE KEY") && !text.contains("AGE-SECRET-KEY"), "key leaked: {text}");
            assert!(!text.contains(&key_body), "key leaked: {text}");
        }
    }
}

#[test]
fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let now = time::OffsetDateTime::now_utc();
    let pair = gitseal_keys::generate_key_pair(
        gitseal_keys::RsaBits::Rsa2048,
        "",
        now - time::Duration::days(30),
        time::Duration::days(1),
    )
    .unwrap();
    fs::write(d.join("expired.pem"), pair.cert.pem()).unwrap();
    let (_, err) = fails(d, &["seal", "--cert", "expired.pem"], Some(&secret("a", "b", &[("k", "v")])));
    assert!(err.starts_with("error: certificate expired.pem: the certificate expired on "), "{err}");
}

/// Serve `body` with `status` to one request on a loopback port; returns the URL.
fn serve_once(status: &'static str, body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/cert.pem", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let reply =
                format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    url
}

#[test]
fn a_certificate_is_fetched_from_an_http_url() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    let url = serve_once("200 OK", fs::read_to_string(d.join("cluster.pem")).unwrap());
    let sealed = ok(d, &["seal", "--cert", &url], Some(&secret("app", "db", &[("password", PLAINTEXT)])));
    assert_eq!(unseal(d, &["cluster.key"], &sealed)[0].1, map(&[("password", PLAINTEXT)]));

    let missing = serve_once("404 Not Found", String::new());
    let (_, err) = fails(d, &["seal", "--cert", &missing], Some(&secret("app", "db", &[("k", "v")])));
    assert!(err.contains(&missing) && err.contains("check the URL"), "{err}");
    let file_url = format!("file://{}", d.join("cluster.pem").display());
    ok(d, &["seal", "--cert", &file_url], Some(&secret("app", "db", &[("k", "v")])));
}

#[test]
fn keygen_writes_private_files_0600_and_a_key_secret_that_unseals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mode = |p: &str| fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
    ok(
        d,
        &[
            "keygen",
            "--bits",
            "2048",
            "--cn",
            "test",
            "--ttl",
            "87600h",
            "--secret",
            "key-secret.yaml",
            "--out-cert",
            "c.pem",
        ],
        None,
    );
    assert_eq!(mode("key-secret.yaml"), 0o600);
    assert_eq!(mode("c.pem"), 0o644);
    let manifest = fs::read_to_string(d.join("key-secret.yaml")).unwrap();
    let doc = &parse_documents(&manifest).unwrap()[0].value;
    assert_eq!(doc["type"], "kubernetes.io/tls");
    assert_eq!(doc["metadata"]["labels"]["sealedsecrets.bitnami.com/sealed-secrets-key"], "active");
    assert_eq!(doc["metadata"]["namespace"], "kube-system");
    for k in ["tls.key", "tls.crt", "age.key"] {
        assert!(doc["data"][k].is_string(), "{k}");
    }
    let sealed = ok(d, &["seal", "--cert", "c.pem"], Some(&secret("app", "db", &[("password", PLAINTEXT)])));
    assert_eq!(unseal(d, &["key-secret.yaml"], &sealed)[0].1, map(&[("password", PLAINTEXT)]));

    let recipient = ok(d, &["keygen", "--type", "age", "--out-key", "id.age"], None);
    assert_eq!(mode("id.age"), 0o600);
    let identity = fs::read_to_string(d.join("id.age")).unwrap();
    assert!(identity.starts_with("# created: "), "{identity}");
    assert!(identity.contains(&format!("# public key: {}", recipient.trim())), "{identity}");
    assert!(identity.lines().last().unwrap().starts_with("AGE-SECRET-KEY-1"));

    let (_, err) = fails(d, &["keygen", "--type", "age", "--out-key", "id.age"], None);
    assert!(err.contains("id.age already exists"), "{err}");
    assert_eq!(fs::read_to_string(d.join("id.age")).unwrap(), identity);
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "cluster");
    let input: String = (0..300).map(|i| secret("app", &format!("s{i}"), &[("k", "v")]) + "---\n").collect();
    let mut child = std::process::Command::new(cargo_bin!("gitseal"))
        .current_dir(d)
        .args(["seal", "--cert", "cluster.pem"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let mut head = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
