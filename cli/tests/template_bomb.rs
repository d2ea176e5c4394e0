//! Issue #9: a 1.9 KB SealedSecret whose `template.data` chains ten copies of `{{ .password }}`
//! eight deep made `gitseal unseal` grow to 2.8 GB. Run here as the `gitseal` binary under an
//! address-space limit: it must fail at once with one line naming the entry, never a value.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "correct-horse-battery-staple";
/// Address-space limit for `gitseal unseal` (KiB): well under the old renderer's needs, far
/// above a normal unseal's.
const LIMIT_KIB: u32 = 256 * 1024;

fn gitseal() -> &'static str {
    env!("CARGO_BIN_EXE_gitseal")
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("GITSEAL_") || k.starts_with("SEALED_SECRETS_") {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.env("KUBECONFIG", "/nonexistent/template-bomb-kubeconfig");
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut pipe, stdin).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    identity: PathBuf,
    recipient: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("recovery.agekey");
    let out = run(Command::new(gitseal()).args(["keygen", "--type", "age", "--out-key"]).arg(&identity), b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let recipient = printed.lines().find(|l| l.starts_with("age1")).unwrap().to_string();
    Fixture { dir, identity, recipient }
}

impl Fixture {
    /// A SealedSecret of `password` = `value`, sealed by `gitseal seal`, with `templates`.
    fn sealed(&self, value: &str, templates: &Value) -> PathBuf {
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "prod"}, "stringData": {"password": value}});
        let out = run(
            Command::new(gitseal()).args(["seal", "--format", "json", "--recipient", &self.recipient]),
            secret.to_string().as_bytes(),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["spec"]["template"]["data"] = templates.clone();
        let path = self.dir.path().join("sealed.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        path
    }

    /// `gitseal unseal` of `file` under the address-space limit; (output, elapsed).
    fn unseal(&self, file: &Path) -> (Output, Duration) {
        let script = format!("ulimit -v {LIMIT_KIB} && exec \"$0\" unseal --format json --key \"$1\" -f \"$2\"");
        let start = Instant::now();
        let out = run(Command::new("sh").arg("-c").arg(script).arg(gitseal()).arg(&self.identity).arg(file), b"");
        (out, start.elapsed())
    }
}

/// One `error:` line, exit status 1, nothing on stdout; the message.
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "no partial output");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(!stderr.contains(PASSWORD) && !stderr.contains("xxxxxxxx"), "never quotes a value: {stderr}");
    stderr
}

#[test]
fn issue_9_chained_template_bomb_fails_fast_within_bounded_memory() {
    let fx = fixture();
    let mut templates = serde_json::Map::new();
    templates.insert("t0".into(), "{{ .password }}".repeat(10).into());
    for i in 1..8 {
        templates.insert(format!("t{i}"), format!("{{{{ .t{} }}}}", i - 1).repeat(10).into());
    }
    let file = fx.sealed(PASSWORD, &Value::Object(templates));
    let (out, elapsed) = fx.unseal(&file);
    let err = refused(&out);
    assert!(err.contains("template.data[t1] refers to \"t0\", which is not an encryptedData item"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    // The limit leaves room for a real unseal: the same object with a sane template opens.
    let file = fx.sealed(PASSWORD, &json!({"dsn": "postgres://app:{{ .password }}@db/app"}));
    let (out, _) = fx.unseal(&file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dsn = gitseal_shared::value::decode_base64(doc["data"]["dsn"].as_str().unwrap()).unwrap();
    assert_eq!(dsn, format!("postgres://app:{PASSWORD}@db/app").as_bytes());
}

#[test]
fn a_template_over_the_secret_size_limit_is_refused_before_it_is_built() {
    let fx = fixture();
    // 200 KiB × 10 copies: 2 MiB, over Kubernetes' 1 MiB, and the whole text fits in memory.
    let big = "x".repeat(200 * 1024);
    let file = fx.sealed(&big, &json!({"copies": "{{ .password }}".repeat(10)}));
    let (out, elapsed) = fx.unseal(&file);
    let err = refused(&out);
    assert!(err.contains("larger than 1048576 bytes (Kubernetes' Secret size limit"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn templates_over_empty_encrypted_data_render_literals_and_refuse_references() {
    let fx = fixture();
    let file = fx.sealed(PASSWORD, &json!({"static": "plain text", "ref": "{{ .password }}"}));
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    doc["spec"]["encryptedData"] = json!({});
    std::fs::write(&file, doc.to_string()).unwrap();
    let (out, _) = fx.unseal(&file);
    let err = refused(&out);
    assert!(err.contains("template.data[ref] refers to \"password\""), "{err}");

    doc["spec"]["template"]["data"] = json!({"static": "plain text"});
    std::fs::write(&file, doc.to_string()).unwrap();
    let (out, _) = fx.unseal(&file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secret["data"], json!({"static": "cGxhaW4gdGV4dA=="}));
}
