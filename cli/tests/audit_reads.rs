//! Who read a Secret (issue #10, "Who read it"), on the real kube-apiserver: its own control plane,
//! started with `deploy/audit/policy.yaml` and the audit webhook pointing at gitseal-controller,
//! so other test binaries' shared control planes stay unaudited. Needs `tests/peers/install.sh`
//! and `cargo build -p gitseal-controller` (as `cargo test --workspace` does).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use gitseal_keys::Certificate;
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::seal::{SealOptions, seal_secret};
use gitseal_shared::types::ApiGroup;
use gitseal_shared::value::RecipientSet;
use gitseal_tests::gitseal::{GitsealController, controller_binary, repo_root};
use gitseal_tests::{AuditOptions, ControlPlane, TestNamespace, apply_json, http_get, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(45);

fn gitseal(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_gitseal")).args(args).output()?;
    if !out.status.success() {
        bail!("gitseal {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `gitseal audit reads NS/NAME FILE [--direct] -o json`.
fn reads(ns: &str, name: &str, log: &Path, direct: bool) -> anyhow::Result<Vec<Value>> {
    let target = format!("{ns}/{name}");
    let log = log.display().to_string();
    let mut args = vec!["audit", "reads", target.as_str(), log.as_str(), "-o", "json"];
    if direct {
        args.push("--direct");
    }
    Ok(serde_json::from_str(&gitseal(&args)?)?)
}

fn sealed(cert: &Certificate, ns: &str, name: &str) -> Value {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns}, "stringData": {"password": "hunter2"}});
    let plain = PlainSecret::from_value(&secret).unwrap();
    let set = RecipientSet::new(vec![cert.recipient().unwrap()]).unwrap();
    let opts = SealOptions { api: ApiGroup::Gitseal, ..Default::default() };
    serde_json::to_value(seal_secret(&plain, &set, &opts).unwrap()).unwrap()
}

/// A client authenticated as `user` in `groups` with a client certificate.
async fn user(plane: &ControlPlane, name: &str, groups: &[&str]) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(plane.user_config(name, groups).await?)?)
}

#[tokio::test]
async fn the_apiserver_reports_exactly_who_read_a_gitseal_secret_and_strangers_are_refused() -> anyhow::Result<()> {
    let policy = repo_root().join("deploy/audit/policy.yaml");
    let plane = ControlPlane::start_with(Some(AuditOptions::new(policy))).await?;
    let hook = plane.audit_webhook().context("started with audit options")?.clone();
    let admin = plane.client()?;
    let ns = TestNamespace::create(admin.clone()).await?;
    let ns_name = ns.name().to_string();

    // The apiserver authenticates with its client certificate; a token works as well.
    let token_file = plane.dir().join("audit-webhook.token");
    std::fs::write(&token_file, "t0ken-for-the-apiserver\n")?;
    let mut flags = vec!["--key-size=2048".to_string(), "--key-renew-period=0".to_string()];
    flags.extend(hook.controller_flags());
    flags.push(format!("--audit-webhook-token-file={}", token_file.display()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let controller =
        GitsealController::start(&plane, &controller_binary()?, &ns_name, Some(&ns_name), "gitseal", &flags).await?;
    let ready = format!("{}/readyz", controller.api);
    wait_for("gitseal-controller /readyz", TIMEOUT, || async {
        Ok::<_, anyhow::Error>(matches!(http_get(&ready).await, Ok((200, _))).then_some(()))
    })
    .await
    .inspect_err(|_| controller.process.print_log_tail())?;

    // A gitseal-made Secret and an unrelated one.
    let (_, pem) = http_get(&format!("{}/v1/cert.pem", controller.api)).await?;
    let cert = Certificate::from_pem(&String::from_utf8(pem)?)?;
    let ss_api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &ns_name, &ApiGroup::Gitseal.api_resource());
    let ss: DynamicObject = serde_json::from_value(sealed(&cert, &ns_name, "db"))?;
    ss_api.create(&PostParams::default(), &ss).await?;
    // Wait on the SealedSecret's status, not on the Secret: the admin must not read it.
    wait_for("SealedSecret db Synced", TIMEOUT, || async {
        let v = serde_json::to_value(ss_api.get("db").await?)?;
        Ok::<_, anyhow::Error>((v.pointer("/status/conditions/0/status") == Some(&json!("True"))).then_some(()))
    })
    .await?;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns_name);
    let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other", "namespace": ns_name},
        "stringData": {"k": "v"}});
    secrets.create(&PostParams::default(), &serde_json::from_value(other)?).await?;

    // Three users may get Secrets in the namespace.
    apply_json(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "secret-reader", "namespace": ns_name},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
    )
    .await?;
    let subjects: Vec<Value> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": u}))
        .collect();
    apply_json(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "secret-readers", "namespace": ns_name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
            "subjects": subjects}),
    )
    .await?;

    // carol reads the unrelated Secret first, so once bob's read is recorded hers has been seen.
    Api::<Secret>::namespaced(user(&plane, "carol", &["auditors"]).await?, &ns_name).get("other").await?;
    Api::<Secret>::namespaced(user(&plane, "alice", &["devs"]).await?, &ns_name).get("db").await?;
    Api::<Secret>::namespaced(user(&plane, "bob", &["ops"]).await?, &ns_name).get("db").await?;

    let log = controller.audit_log.clone();
    let direct = wait_for("two SecretRead records of db", TIMEOUT, || async {
        let r = reads(&ns_name, "db", &log, true)?;
        Ok::<_, anyhow::Error>((r.len() >= 2).then_some(r))
    })
    .await
    .inspect_err(|_| {
        controller.process.print_log_tail();
        eprintln!("{}", plane.apiserver_log_tail(30));
    })?;
    let who: BTreeMap<&str, &Value> =
        direct.iter().map(|r| (r.pointer("/caller/user").and_then(Value::as_str).unwrap_or(""), r)).collect();
    assert_eq!(direct.len(), 2, "exactly the two reads of db: {direct:#?}");
    assert_eq!(who.keys().copied().collect::<Vec<_>>(), ["alice", "bob"]);
    for (name, group) in [("alice", "devs"), ("bob", "ops")] {
        let r = who[name];
        assert_eq!(r["action"], "SecretRead");
        assert_eq!(r["outcome"], "success");
        assert_eq!(r.pointer("/object/name"), Some(&json!("db")));
        assert_eq!(r.pointer("/read/verb"), Some(&json!("get")));
        assert_eq!(r.pointer("/read/code"), Some(&json!(200)));
        let groups = r.pointer("/caller/groups").and_then(Value::as_array).unwrap();
        assert!(groups.contains(&json!(group)), "{name}'s groups: {groups:?}");
        let ips = r.pointer("/read/sourceIPs").and_then(Value::as_array).unwrap();
        assert!(ips.contains(&json!("127.0.0.1")), "{ips:?}");
        assert!(r.pointer("/read/auditId").and_then(Value::as_str).is_some_and(|id| !id.is_empty()));
    }
    // Namespace- and cluster-wide lists may add reads without a name, but never a read that
    // named another Secret; carol's read of `other` is not recorded.
    let all = reads(&ns_name, "db", &log, false)?;
    assert!(all.iter().all(|r| r.pointer("/object/name").is_none_or(|n| n == "db")), "{all:#?}");
    // gitseal-controller's own get while unsealing is a read by a system identity: recorded,
    // listed with --all.
    let target = format!("{ns_name}/db");
    let with_system: Vec<Value> = serde_json::from_str(&gitseal(&[
        "audit",
        "reads",
        &target,
        &log.display().to_string(),
        "--all",
        "-o",
        "json",
    ])?)?;
    let sa = format!("system:serviceaccount:{ns_name}:gitseal-controller");
    assert!(with_system.iter().any(|r| r.pointer("/caller/user") == Some(&json!(sa))), "{with_system:#?}");
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains("\"carol\""), "carol read only an unrelated Secret");
    assert!(!text.contains("hunter2"), "no Secret value in the audit log");
    let table = gitseal(&["audit", "reads", &format!("{ns_name}/db"), &log.display().to_string(), "--direct"])?;
    assert!(table.contains("alice") && table.contains("bob") && table.contains("2 read(s)"), "{table}");

    // Who can and who did, side by side: carol may read db but did not.
    let kubeconfig = plane.kubeconfig_path().display().to_string();
    let access: Value = serde_json::from_str(&gitseal(&[
        "audit",
        "access",
        &target,
        "--log",
        &log.display().to_string(),
        "--kubeconfig",
        &kubeconfig,
        "-o",
        "json",
    ])?)?;
    let did: BTreeMap<&str, i64> = access["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "User")
        .map(|s| (s["name"].as_str().unwrap(), s["reads"].as_i64().unwrap()))
        .collect();
    assert_eq!(did, BTreeMap::from([("alice", 1), ("bob", 1), ("carol", 0)]), "{access:#}");

    // Strangers: no client certificate and no token, then a made-up token.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ca = ureq::tls::Certificate::from_pem(hook.ca_pem.as_bytes())?;
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().into();
    let forged = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [{
        "auditID": "forged-1", "stage": "ResponseComplete", "verb": "get",
        "user": {"username": "mallory"}, "objectRef": {"resource": "secrets", "namespace": ns_name, "name": "db"},
        "responseStatus": {"code": 200}, "stageTimestamp": "2026-01-01T00:00:00Z"}]});
    let url = format!("https://{}/audit", hook.addr);
    let forged = serde_json::to_vec(&forged)?;
    let resp = agent.post(&url).content_type("application/json").send(&forged[..])?;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = agent.post(&url).header("Authorization", "Bearer guessed").send(&forged[..])?;
    assert_eq!(resp.status().as_u16(), 401);
    let oversized = vec![b' '; 5 * 1024 * 1024];
    let resp = agent.post(&url).header("Authorization", "Bearer t0ken-for-the-apiserver").send(&oversized[..])?;
    assert_eq!(resp.status().as_u16(), 413, "an authenticated but oversized body is refused");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains("mallory"), "an unauthenticated body is never recorded");
    assert!(text.contains("AuditWebhookRefused"), "the refusal is audited");

    // The right token is accepted, and a batch delivered twice is recorded once.
    for _ in 0..2 {
        let resp = agent.post(&url).header("Authorization", "Bearer t0ken-for-the-apiserver").send(&forged[..])?;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let text = std::fs::read_to_string(&log)?;
    assert_eq!(text.matches("forged-1").count(), 1, "one record per audit ID");
    ns.delete().await?;
    Ok(())
}
