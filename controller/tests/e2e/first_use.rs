//! What a first-time user does against a live controller (issue 12): look at SealedSecrets with
//! the real kubectl, where Bitnami's CRD exists too, and seal generated values nobody sees.

use std::path::{Path, PathBuf};
use std::process::Command;

use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, Peer, with_temp_ns};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::Value;

use crate::fixture::{Gitseal, seal, synced};

/// The real kubectl (tests/peers/install.sh) against the harness as admin, with a discovery
/// cache of its own (CRDs are installed moments before).
fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let cache = plane.dir().join("kubectl-cache");
    let out = Command::new(Peer::Kubectl.path().expect("kubectl: run tests/peers/install.sh"))
        .arg(format!("--kubeconfig={}", plane.kubeconfig_path().display()))
        .arg(format!("--cache-dir={}", cache.display()))
        .args(args)
        .output()
        .expect("running kubectl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
}

/// The `gitseal` binary of this build, next to gitseal-controller (`cargo build -p gitseal-cli`;
/// `cargo test --workspace` builds it for the CLI's own tests).
fn gitseal_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_gitseal-controller")).with_file_name("gitseal");
    assert!(path.is_file(), "{} is missing: run cargo build -p gitseal-cli", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_gitseal_objects_by_full_name_category_and_short_name_with_status_columns() -> anyhow::Result<()>
{
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let client = ns.client();
        gitseal_tests::apply_json(&client, seal(&cert, ns.name(), "db", &[("password", "hunter2")], ApiGroup::Gitseal))
            .await?;
        // A bitnami.com object beside it, as in a cluster migrating from Bitnami.
        gitseal_tests::apply_json(&client, seal(&cert, ns.name(), "legacy", &[("k", "v")], ApiGroup::Bitnami)).await?;
        let status = synced(&ns, ApiGroup::Gitseal, "db", "True").await?;
        let reason = status.pointer("/status/conditions/0/reason").and_then(Value::as_str).unwrap_or_default();
        let key_id = status.pointer("/status/keyId").and_then(Value::as_str).unwrap_or_default();
        assert!(!reason.is_empty() && !key_id.is_empty(), "{status}");

        // The plural alone resolves to bitnami.com: the reason the others exist.
        let plural = kubectl(plane, &["get", "sealedsecrets", "-n", ns.name(), "-o", "name"]);
        assert_eq!(plural.trim(), "sealedsecret.bitnami.com/legacy");

        let all = kubectl(plane, &["get", "sealedsecrets.gitseal.dev", "-A", "--no-headers"]);
        let row: Vec<&str> = all
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&ns.name()))
            .unwrap_or_default();
        assert_eq!(row.get(1), Some(&"db"), "{all}");

        let category = kubectl(plane, &["get", "gitseal", "-n", ns.name(), "-o", "name"]);
        assert_eq!(category.trim(), "sealedsecret.gitseal.dev/db");

        for short in ["gss", "gsealedsecret"] {
            let table = kubectl(plane, &["get", short, "db", "-n", ns.name()]);
            let mut lines = table.lines();
            let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
            assert_eq!(header, ["NAME", "SYNCED", "REASON", "KEY", "AGE"], "{table}");
            let cols: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
            assert_eq!(&cols[..4], ["db", "True", reason, key_id], "{table}");
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_values_never_show_and_unseal_to_the_asked_shape() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("db.sealed.yaml");
        let out = Command::new(gitseal_binary())
            .args(["seal", "--cert", &format!("{}/v1/cert.pem", g.api), "-n", ns.name(), "--name", "db"])
            .args(["--generate", "password=password:24:alnum", "--generate", "symbols=password"])
            .args(["--generate", "key=bytes:32:base64", "--generate", "raw=bytes:48"])
            .args(["--generate", "id=uuid", "--generate", "api=hex:16"])
            .arg("-o")
            .arg(&file)
            .output()?;
        let (stdout, stderr) = (out.stdout, out.stderr);
        assert!(out.status.success(), "gitseal seal: {}", String::from_utf8_lossy(&stderr));
        let sealed = std::fs::read(&file)?;
        let text = String::from_utf8(sealed.clone())?;
        let docs = gitseal_shared::manifest::parse_documents(&text)?;
        gitseal_tests::apply_json(&ns.client(), docs[0].value.clone()).await?;
        synced(&ns, ApiGroup::Gitseal, "db", "True").await?;
        let secret = Api::<Secret>::namespaced(ns.client(), ns.name()).get("db").await?;
        let data = secret.data.unwrap_or_default();
        let value = |k: &str| data.get(k).map(|v| v.0.clone()).unwrap_or_default();
        let text_of = |k: &str| String::from_utf8(value(k)).unwrap_or_default();

        let password = text_of("password");
        assert!(password.len() == 24 && password.bytes().all(|b| b.is_ascii_alphanumeric()), "shape of password");
        let symbols = text_of("symbols");
        assert!(symbols.len() == 32 && symbols.bytes().any(|b| !b.is_ascii_alphanumeric()), "shape of symbols");
        assert_eq!(gitseal_shared::value::decode_base64(&text_of("key"))?.len(), 32);
        assert_eq!(value("raw").len(), 48);
        let id = text_of("id");
        assert!(id.len() == 36 && id.as_bytes()[14] == b'4' && id.matches('-').count() == 4, "shape of id");
        let api = text_of("api");
        assert!(api.len() == 32 && api.bytes().all(|b| b.is_ascii_hexdigit()), "shape of api");

        // Nowhere but in the Secret: not in the CLI's output, the sealed file or the controller's
        // log and audit trail, neither as text nor as the base64 the Secret carries.
        let log = std::fs::read(g.process.log_path()).unwrap_or_default();
        let audit = std::fs::read(&g.audit_log).unwrap_or_default();
        for key in ["password", "symbols", "key", "raw", "id", "api"] {
            let v = value(key);
            let b64 = gitseal_shared::value::encode_base64(&v).into_bytes();
            for (what, hay) in
                [("stdout", &stdout), ("stderr", &stderr), ("the file", &sealed), ("log", &log), ("audit", &audit)]
            {
                let found = hay.windows(v.len()).any(|w| w == v.as_slice())
                    || hay.windows(b64.len()).any(|w| w == b64.as_slice());
                assert!(!found, "the generated {key} shows in {what}");
            }
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
