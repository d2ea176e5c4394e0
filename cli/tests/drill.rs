//! The online `gitseal` commands end to end, on the harness's real kube-apiserver with
//! gitseal-controller as a child process and its authenticated API registered as an APIService:
//! the issue-5 key drill (rotate → re-seal Git → retire → back up → lose every key → restore),
//! revocation, certificate fetching through the service proxy, and `audit access`.
//!
//! The CLI runs as the binary, with the kubeconfig of a client-certificate user (the security
//! team), never as admin. Needs `tests/peers/install.sh` and a built gitseal-controller
//! (`cargo build -p gitseal-controller`; `tests/run.sh` does both).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitseal_shared::types::ApiGroup;
use gitseal_tests::gitseal::{GitsealController, Launch, controller_binary};
use gitseal_tests::service_route::{HostLink, ServiceRoute};
use gitseal_tests::{ControlPlane, Peer, TestNamespace, apply_json, exec_binary, http_get, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use serde_json::{Value, json};
use support::{Controller, Gitseal, TIMEOUT, documents, grant, user_kubeconfig};

/// The security team's rights in the controller namespace (where the test's objects live too).
fn security_rules() -> Value {
    json!([
        {"apiGroups": ["api.gitseal.dev"],
         "resources": ["keys", "keyrotations", "keyretirements", "keyrevocations", "keybackups",
                       "sealedsecretverifications", "sealedsecretreseals"],
         "verbs": ["create", "list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "list", "delete"]},
    ])
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

/// `gitseal keys list -o json` items as (keyId, state).
async fn keys(g: &Gitseal) -> anyhow::Result<Vec<(String, String)>> {
    let v: Value = serde_json::from_str(&g.ok(&["keys", "list", "-o", "json"]).await?)?;
    Ok(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["keyId"].as_str().unwrap().to_string(), k["state"].as_str().unwrap().to_string()))
        .collect())
}

fn short(id: &str) -> &str {
    &id["SHA256:".len().."SHA256:".len() + 12]
}

fn value_of(i: usize) -> String {
    format!("drill-value-{i:02}")
}

fn secret_doc(ns: &str, i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-{i:02}\n  namespace: {ns}\nstringData:\n  password: {}\n",
        value_of(i)
    )
}

/// Every file of a tree with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(root).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

/// Apply every SealedSecret of a tree as admin.
async fn apply_tree(admin: &kube::Client, root: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for file in walk(root) {
        for doc in documents(&file)? {
            apply_json(admin, doc).await?;
            n += 1;
        }
    }
    Ok(n)
}

async fn secret_value(ns: &TestNamespace, name: &str) -> anyhow::Result<Option<String>> {
    let s = ns.api::<Secret>().get_opt(name).await?;
    Ok(s.and_then(|s| s.data).and_then(|d| d.get("password").map(|v| String::from_utf8_lossy(&v.0).into_owned())))
}

/// Wait until Secrets `app-<i>` hold their values.
async fn all_secrets(ns: &TestNamespace, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    for i in range {
        let name = format!("app-{i:02}");
        wait_for(&format!("Secret {name}"), TIMEOUT, || async {
            Ok::<_, anyhow::Error>(
                (secret_value(ns, &name).await?.as_deref() == Some(value_of(i).as_str())).then_some(()),
            )
        })
        .await?;
    }
    Ok(())
}

/// The SealedSecret as stored, once `check` holds for it.
async fn sealed_until(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ApiGroup::Gitseal.api_resource());
    let found = wait_for(&format!("SealedSecret {name} {what}"), TIMEOUT, || async {
        let v = api.get_opt(name).await?.map(|o| serde_json::to_value(o).unwrap_or_default());
        Ok::<_, kube::Error>(
            v.filter(|v| v.pointer("/status/observedGeneration") == v.pointer("/metadata/generation") && check(v)),
        )
    })
    .await;
    if found.is_err() {
        let now = api.get_opt(name).await.ok().flatten().map(|o| serde_json::to_value(o).unwrap_or_default());
        eprintln!("SealedSecret {name} as it is: {}", now.map(|v| v["status"].to_string()).unwrap_or_default());
    }
    Ok(found?)
}

fn condition<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.pointer("/status/conditions").and_then(Value::as_array)?.iter().find(|c| c["type"] == "Synced")?[field].as_str()
}

fn identity(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, String)> {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", id.to_string().expose_secret()))?;
    Ok((path, id.to_public().to_string()))
}

/// Audit records of the controller, as JSON, for the given actions.
async fn audited(g: &Gitseal, log: &Path, actions: &str) -> anyhow::Result<Vec<Value>> {
    let out = g.ok(&["audit", &log.display().to_string(), "--action", actions, "-o", "json"]).await?;
    Ok(serde_json::from_str::<Vec<Value>>(&out)?)
}

fn by<'a>(records: &'a [Value], action: &str, user: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["action"] == action && r["caller"]["user"] == user && r["outcome"] == "success")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_drill_rotates_reseals_retires_backs_up_loses_and_restores_every_key_with_each_step_audited()
-> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let c = Controller::start(plane, &ns, &[]).await?;
        let admin = plane.client()?;
        let work = tempfile::tempdir()?;
        let w = work.path();
        let user = "sam-drill";
        let sam = Gitseal {
            kubeconfig: user_kubeconfig(plane, user, &["security"]).await?,
            controller_ns: ns.name().into(),
            dir: w.into(),
        };

        // Without RBAC the kube-apiserver refuses, and the CLI says which role to ask for.
        let refused = sam.run(&["keys", "rotate"]).await?.error()?;
        assert!(
            refused.contains(&format!(
                "you may not create keyrotations.api.gitseal.dev in {}: ask for the gitseal-key-admin ClusterRole",
                ns.name()
            )),
            "{refused}"
        );
        grant(&admin, ns.name(), "security-team", security_rules(), group("security")).await?;
        wait_for("the security team's RBAC", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(sam.run(&["keys", "list"]).await?.ok().ok())
        })
        .await?;
        let first = keys(&sam).await?;
        assert_eq!(first.len(), 1, "{first:?}");
        let old_id = first[0].0.clone();

        // Seal 20 SealedSecrets into a Git tree: ten files of one, a stream of five, five as JSON.
        sam.ok(&["cert", "--cert", &c.cert_url(), "-o", "cluster.pem"]).await?;
        let repo = w.join("repo");
        for i in 0..10 {
            std::fs::create_dir_all(repo.join(format!("apps/app-{i:02}")))?;
            std::fs::write(w.join("in.yaml"), secret_doc(ns.name(), i))?;
            let out = format!("repo/apps/app-{i:02}/sealed.yaml");
            sam.ok(&["seal", "--cert", "cluster.pem", "-f", "in.yaml", "-o", &out]).await?;
            let text = std::fs::read_to_string(w.join(&out))?;
            std::fs::write(w.join(&out), format!("# owned by team {i}\n{text}"))?;
            std::fs::remove_file(w.join("in.yaml"))?;
        }
        std::fs::create_dir_all(repo.join("team"))?;
        let stream: String = (10..15).map(|i| format!("---\n{}", secret_doc(ns.name(), i))).collect();
        std::fs::write(w.join("stream.yaml"), stream)?;
        sam.ok(&["seal", "--cert", "cluster.pem", "-f", "stream.yaml", "-o", "repo/team/bundle.yaml"]).await?;
        let stream: String = (15..20).map(|i| format!("---\n{}", secret_doc(ns.name(), i))).collect();
        std::fs::write(w.join("stream.yaml"), stream)?;
        sam.ok(&["seal", "--cert", "cluster.pem", "-f", "stream.yaml", "-o", "repo/team/more.json"]).await?;
        std::fs::remove_file(w.join("stream.yaml"))?;
        assert_eq!(apply_tree(&admin, &repo).await?, 20);
        all_secrets(&ns, 0..20).await?;

        // Rotate: a new key, at once the one new SealedSecrets are sealed for.
        let rotated: Value = serde_json::from_str(&sam.ok(&["keys", "rotate", "-o", "json"]).await?)?;
        let new_id = rotated["keyId"].as_str().unwrap().to_string();
        assert_ne!(new_id, old_id);
        let list: Value = serde_json::from_str(&sam.ok(&["keys", "list", "-o", "json"]).await?)?;
        let latest: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["latest"] == true)
            .map(|k| k["keyId"].as_str().unwrap())
            .collect();
        assert_eq!(latest, [new_id.as_str()]);
        // The security team may not list SealedSecrets everywhere, so it is shown no count;
        // a cluster admin sees how many depend on each key.
        let on_old = |list: &Value| {
            list["items"].as_array().unwrap().iter().find(|k| k["keyId"] == old_id.as_str()).unwrap()["sealedSecrets"]
                .clone()
        };
        assert_eq!(on_old(&list), Value::Null);
        let ran = sam.run(&["keys", "list"]).await?;
        assert!(
            ran.stderr.contains("you may not list SealedSecrets in all namespaces") && ran.stdout.contains(" ?"),
            "{ran:?}"
        );
        let cluster_admin = Gitseal { kubeconfig: plane.kubeconfig_path().into(), ..sam.clone() };
        let list: Value = serde_json::from_str(&cluster_admin.ok(&["keys", "list", "-o", "json"]).await?)?;
        assert_eq!(on_old(&list), 20);

        // Bad input: a read-only file and a file without SealedSecrets; nothing lost.
        std::fs::create_dir_all(w.join("bad"))?;
        std::fs::copy(repo.join("apps/app-00/sealed.yaml"), w.join("bad/readonly.yaml"))?;
        std::fs::set_permissions(w.join("bad/readonly.yaml"), std::fs::Permissions::from_mode(0o444))?;
        std::fs::write(w.join("bad/configmap.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")?;
        let before = snapshot(&w.join("bad"));
        let ran = sam.run(&["reseal", "bad/readonly.yaml"]).await?;
        assert!(ran.error()?.contains("1 problem(s) in 1 file(s), which were left unchanged"), "{ran:?}");
        assert!(ran.stdout.contains("is read-only: make it writable"), "{ran:?}");
        let err = sam.run(&["reseal", "bad/configmap.yaml"]).await?.error()?;
        assert!(err.contains("no SealedSecret found in 1 file(s)"), "{err}");
        assert_eq!(snapshot(&w.join("bad")), before);

        // Re-seal the tree through the controller: a dry run writes nothing, then every file.
        let tree = snapshot(&repo);
        let dry = sam.ok(&["reseal", "--dry-run", "repo"]).await?;
        assert!(
            dry.contains("Dry run, nothing written: would re-seal 20 value(s) in 20 object(s) across 12 file(s)"),
            "{dry}"
        );
        assert_eq!(snapshot(&repo), tree);
        let report = sam.ok(&["reseal", "repo"]).await?;
        assert!(report.contains("Re-sealed 20 value(s) in 20 object(s) across 12 file(s)"), "{report}");
        let per_key = report.lines().find(|l| l.starts_with(short(&old_id))).unwrap_or_default();
        assert_eq!(per_key.split_whitespace().collect::<Vec<_>>(), [short(&old_id), "12", "20"], "{report}");
        let first_file = std::fs::read_to_string(repo.join("apps/app-00/sealed.yaml"))?;
        assert!(first_file.starts_with("# owned by team 0\n"), "comments kept: {first_file}");
        for file in walk(&repo) {
            for doc in documents(&file)? {
                assert_eq!(doc["metadata"]["annotations"]["gitseal.dev/key-id"], new_id.as_str(), "{}", file.display());
            }
        }
        let again = snapshot(&repo);
        let second = sam.ok(&["reseal", "repo"]).await?;
        assert!(second.contains("20 object(s) already on the latest key"), "{second}");
        assert_eq!(snapshot(&repo), again, "a second run changes nothing");

        // Apply: every SealedSecret now opens with the new key, and the Secrets stay as they were.
        apply_tree(&admin, &repo).await?;
        for i in 0..20 {
            // status.keyId is not checked: the controller may leave the old id there (see the report).
            sealed_until(&ns, &format!("app-{i:02}"), "Synced at generation 2", |v| {
                v.pointer("/metadata/generation") == Some(&json!(2)) && condition(v, "status") == Some("True")
            })
            .await?;
        }
        all_secrets(&ns, 0..20).await?;
        let validated = sam.ok(&["validate", "repo"]).await?;
        assert!(validated.contains("20 objects checked, 0 failed"), "{validated}");
        let report: Value = serde_json::from_str(&sam.ok(&["validate", "-o", "json", "repo"]).await?)?;
        let opened_by: BTreeSet<&str> =
            report["results"].as_array().unwrap().iter().map(|r| r["keyId"].as_str().unwrap()).collect();
        assert_eq!(opened_by, BTreeSet::from([short(&new_id)]), "the controller opens every object with the new key");

        // Nothing in Git depends on the old key any more, so retire it.
        let usage: Value = serde_json::from_str(&sam.ok(&["keys", "usage", "-o", "json", "repo"]).await?)?;
        let used: Vec<(&str, usize)> = usage["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["keyId"].as_str().unwrap(), k["objects"].as_array().unwrap().len()))
            .collect();
        assert_eq!(used, [(new_id.as_str(), 20)]);
        assert_eq!(usage["unknown"], json!([]));
        // An object without the key-id annotation (as kubeseal writes them): --online asks the controller.
        std::fs::create_dir_all(w.join("kubeseal"))?;
        let text = std::fs::read_to_string(repo.join("apps/app-05/sealed.yaml"))?;
        let bare: String = text
            .lines()
            .filter(|l| !l.contains("annotations:") && !l.contains("gitseal.dev/key-id"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(w.join("kubeseal/app-05.yaml"), bare)?;
        let offline: Value = serde_json::from_str(&sam.ok(&["keys", "usage", "-o", "json", "kubeseal"]).await?)?;
        assert_eq!(offline["keys"], json!([]), "{offline}");
        let online: Value =
            serde_json::from_str(&sam.ok(&["keys", "usage", "--online", "-o", "json", "kubeseal"]).await?)?;
        assert_eq!(online["keys"][0]["keyId"], new_id.as_str(), "{online}");
        assert_eq!(online["unknown"], json!([]), "{online}");
        let unknown =
            sam.run(&["keys", "retire", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]).await?.error()?;
        assert!(unknown.contains("unknown key id"), "{unknown}");
        let retired = sam.ok(&["keys", "retire", short(&old_id)]).await?;
        assert_eq!(retired.trim(), format!("Key {old_id} is now retired"));

        // Back up to the security team; the Go age CLI opens it with the identity, not without.
        let (team_key, team) = identity(w, "team.key")?;
        let (other_key, _) = identity(w, "other.key")?;
        let ran = sam.run(&["keys", "backup", "--recipient", &team, "-o", "backup.age"]).await?;
        assert!(ran.stderr.contains("Backed up 2 key(s)"), "{ran:?}");
        ran.ok()?;
        sam.ok(&["keys", "backup", "--recipient", &team, "--armor", "-o", "backup.txt"]).await?;
        assert!(std::fs::read_to_string(w.join("backup.txt"))?.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert_eq!(std::fs::metadata(w.join("backup.age"))?.permissions().mode() & 0o777, 0o600);
        for file in ["backup.age", "backup.txt"] {
            let path = w.join(file).display().to_string();
            let opened = exec_binary(
                Peer::Age.path()?,
                ["-d", "-i", &team_key.display().to_string(), &path],
                std::iter::empty::<(&str, &str)>(),
                b"",
                Duration::from_secs(30),
            )
            .await?;
            let text = String::from_utf8(opened)?;
            assert!(text.contains("kind: List") && text.matches("tls.key").count() == 2, "the backup holds both keys");
            assert!(text.contains("gitseal-audit-key") && text.contains("ed25519.pk8"), "and the audit signing key");
            let without = exec_binary(
                Peer::Age.path()?,
                ["-d", "-i", &other_key.display().to_string(), &path],
                std::iter::empty::<(&str, &str)>(),
                b"",
                Duration::from_secs(30),
            )
            .await;
            assert!(without.is_err(), "another identity reads nothing");
        }

        // Bad input: restoring onto a cluster that has those keys, a wrong identity, a tampered file.
        let key_secrets = || async {
            let list = ns.api::<Secret>().list(&ListParams::default().labels("gitseal.dev/key")).await?;
            Ok::<_, anyhow::Error>(
                list.items.into_iter().map(|s| s.metadata.name.unwrap_or_default()).collect::<BTreeSet<_>>(),
            )
        };
        let present = key_secrets().await?;
        let err = sam.run(&["keys", "restore", "backup.age", "--identity", "team.key"]).await?.error()?;
        assert!(err.contains("the cluster already has key(s)") && err.contains("nothing restored"), "{err}");
        let err = sam.run(&["keys", "restore", "backup.age", "--identity", "other.key"]).await?.error()?;
        assert!(err.contains("none of the identities given opens backup.age"), "{err}");
        let mut bytes = std::fs::read(w.join("backup.age"))?;
        let at = bytes.len() - 10;
        bytes[at] ^= 0x20;
        std::fs::write(w.join("tampered.age"), bytes)?;
        let err = sam.run(&["keys", "restore", "tampered.age", "--identity", "team.key"]).await?.error()?;
        assert!(err.contains("tampered.age is damaged or was altered: nothing restored"), "{err}");
        assert_eq!(key_secrets().await?, present, "no key Secret created or removed");

        // Disaster: the controller is gone and so is every key Secret (a running controller would
        // write deleted key Secrets back from memory: controller/tests/faults). A new controller
        // makes a key of its own; the old ones are restored from the backup beside it.
        c.stop().await?;
        ns.api::<Secret>()
            .delete_collection(&DeleteParams::default(), &ListParams::default().labels("gitseal.dev/key"))
            .await?;
        wait_for("the key Secrets to be gone", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(key_secrets().await?.is_empty().then_some(()))
        })
        .await?;
        let c = Controller::start(plane, &ns, &[]).await?;
        // Its own key first, so that the dry run's "nothing created" is about the restore alone.
        let before_dry_run = wait_for("the new controller's own key", TIMEOUT, || async {
            let now = key_secrets().await?;
            Ok::<_, anyhow::Error>((!now.is_empty()).then_some(now))
        })
        .await?;
        let dry = sam.ok(&["keys", "restore", "backup.txt", "--identity", "team.key", "--dry-run"]).await?;
        assert!(dry.contains("Dry run, nothing created: would restore 2 key(s)"), "{dry}");
        assert_eq!(key_secrets().await?, before_dry_run, "a dry run creates nothing");
        let restored = sam.ok(&["keys", "restore", "backup.txt", "--identity", "team.key"]).await?;
        assert!(restored.contains(&format!("Restored 2 key(s) into {} as {user}", ns.name())), "{restored}");
        let secrets = ns.api::<Secret>().list(&ListParams::default().labels("gitseal.dev/key")).await?;
        let restored_by: Vec<(String, String)> = secrets
            .items
            .iter()
            .filter_map(|s| {
                let who = s.metadata.annotations.as_ref()?.get("gitseal.dev/restored-by")?.clone();
                Some((s.metadata.labels.as_ref()?.get("gitseal.dev/key")?.clone(), who))
            })
            .collect();
        assert_eq!(restored_by.len(), 2, "{restored_by:?}");
        assert!(
            restored_by.contains(&("retired".into(), user.into()))
                && restored_by.contains(&("active".into(), user.into()))
        );
        wait_for("the controller to load the restored keys", TIMEOUT, || async {
            let states = keys(&sam).await?;
            let has = |id: &str, state: &str| states.iter().any(|(i, s)| i == id && s == state);
            Ok::<_, anyhow::Error>((has(&old_id, "retired") && has(&new_id, "active")).then_some(()))
        })
        .await?;

        // Every Secret still reconciles: deleted, each comes back from its SealedSecret.
        for i in 0..20 {
            ns.api::<Secret>().delete(&format!("app-{i:02}"), &DeleteParams::default()).await?;
        }
        all_secrets(&ns, 0..20).await?;

        // The trail: each step by its caller, and the chain intact.
        let log = w.join("audit.log");
        std::fs::copy(&c.inner.audit_log, &log)?;
        let verified = sam.ok(&["audit", "verify", "audit.log"]).await?;
        assert!(verified.contains("records, chain intact ("), "{verified}");
        let records = audited(&sam, &log, "KeyGenerated,Reseal,Verify,KeyRetired,KeyBackup,KeyRestored").await?;
        let generated = by(&records, "KeyGenerated", user);
        assert!(generated.iter().any(|r| r["keyId"] == new_id.as_str()), "rotation by {user}: {records:?}");
        assert!(by(&records, "Reseal", user).len() >= 20, "re-seals by {user}");
        assert!(by(&records, "Verify", user).len() >= 20, "verifications by {user}");
        assert!(by(&records, "KeyRetired", user).iter().any(|r| r["keyId"] == old_id.as_str()));
        assert_eq!(by(&records, "KeyBackup", user).len(), 2);
        assert_eq!(by(&records, "KeyRestored", user).len(), 2);
        let table = sam.ok(&["audit", "audit.log", "--action", "KeyRetired"]).await?;
        assert!(table.contains(user) && table.contains(short(&old_id)), "{table}");
        c.stop().await?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_marks_only_the_sealed_secrets_on_it_and_scan_flags_their_files() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let c = Controller::start(plane, &ns, &[]).await?;
        let admin = plane.client()?;
        let work = tempfile::tempdir()?;
        let w = work.path();
        let user = "sam-revoke";
        let sam = Gitseal {
            kubeconfig: user_kubeconfig(plane, user, &["security"]).await?,
            controller_ns: ns.name().into(),
            dir: w.into(),
        };
        grant(&admin, ns.name(), "security-team", security_rules(), group("security")).await?;
        wait_for("the security team's RBAC", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(sam.run(&["keys", "list"]).await?.ok().ok())
        })
        .await?;
        let first = keys(&sam).await?[0].0.clone();

        std::fs::create_dir_all(w.join("repo"))?;
        sam.ok(&["cert", "--cert", &c.cert_url(), "-o", "one.pem"]).await?;
        std::fs::write(w.join("old.in"), format!("{}---\n{}", secret_doc(ns.name(), 1), secret_doc(ns.name(), 2)))?;
        sam.ok(&["seal", "--cert", "one.pem", "-f", "old.in", "-o", "repo/old.yaml"]).await?;
        // Certificates carry whole seconds: a key made in the same second as the first one would
        // tie with it for "latest" (reported to the controller's owner).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second: Value = serde_json::from_str(&sam.ok(&["keys", "rotate", "-o", "json"]).await?)?;
        let second = second["keyId"].as_str().unwrap().to_string();
        sam.ok(&["cert", "--cert", &c.cert_url(), "-o", "two.pem"]).await?;
        let served = gitseal_keys::Certificate::from_pem(&std::fs::read_to_string(w.join("two.pem"))?)?;
        assert_eq!(served.key_id().as_str(), second, "the rotated key is the one handed out for sealing");
        std::fs::write(w.join("new.in"), secret_doc(ns.name(), 3))?;
        sam.ok(&["seal", "--cert", "two.pem", "-f", "new.in", "-o", "repo/new.yaml"]).await?;
        apply_tree(&admin, &w.join("repo")).await?;
        all_secrets(&ns, 1..4).await?;

        let out = sam.ok(&["keys", "revoke", short(&first)]).await?;
        assert_eq!(out.trim(), format!("Key {first} is now revoked"));
        let err = sam.run(&["keys", "retire", &first]).await?.error()?;
        assert!(err.contains("refused") && err.contains("never comes back"), "{err}");

        // A change to each object makes the controller decide again.
        for file in walk(&w.join("repo")) {
            for mut doc in documents(&file)? {
                doc["metadata"]["labels"] = json!({"touched": "1"});
                doc["spec"]["template"]["metadata"]["labels"] = json!({"rev": "2"});
                apply_json(&admin, doc).await?;
            }
        }
        for name in ["app-01", "app-02"] {
            let v = sealed_until(&ns, name, "KeyRevoked", |v| condition(v, "reason") == Some("KeyRevoked")).await?;
            assert_eq!(condition(&v, "status"), Some("False"));
        }
        let v = sealed_until(&ns, "app-03", "Synced", |v| condition(v, "status") == Some("True")).await?;
        assert_eq!(v.pointer("/status/keyId").and_then(Value::as_str), Some(second.as_str()));
        for i in 1..3 {
            assert_eq!(
                secret_value(&ns, &format!("app-{i:02}")).await?,
                Some(value_of(i)),
                "existing Secrets are kept"
            );
        }

        // scan refuses the file sealed for the revoked key, online or from a saved key list.
        let states = keys(&sam).await?;
        assert!(states.contains(&(first.clone(), "revoked".into())), "{states:?}");
        for args in [vec!["scan", "--online", "repo"], vec!["scan", "--keys-file", "keys.json", "repo"]] {
            if args.contains(&"keys.json") {
                std::fs::write(w.join("keys.json"), sam.ok(&["keys", "list", "-o", "json"]).await?)?;
            }
            let ran = sam.run(&args).await?;
            assert!(ran.error()?.contains("2 finding(s) in 1 file(s)"), "{ran:?}");
            assert!(ran.stdout.contains("repo/old.yaml") && !ran.stdout.contains("repo/new.yaml"), "{ran:?}");
            assert!(ran.stdout.contains(&format!("revoked key {}", short(&first))), "{ran:?}");
        }

        let log = w.join("audit.log");
        std::fs::copy(&c.inner.audit_log, &log)?;
        let records = audited(&sam, &log, "KeyRevoked").await?;
        assert!(by(&records, "KeyRevoked", user).iter().any(|r| r["keyId"] == first.as_str()), "{records:?}");
        sam.ok(&["audit", "verify", "audit.log"]).await?;
        c.stop().await?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// gitseal-controller on the harness's veth address behind Service `gitseal-controller`.
async fn controller_behind_service(plane: &ControlPlane, ns: &TestNamespace) -> anyhow::Result<GitsealController> {
    let link = HostLink::shared()?;
    let host = link.address().to_string();
    let flags = ["--key-size=2048", "--key-renew-period=0"];
    let how = Launch { watch: Some(ns.name()), host: &host, flags: &flags, ..Launch::new(ns.name(), "cli-proxy") };
    let c = GitsealController::launch(plane, &controller_binary()?, &how).await?;
    let port: u16 = c.api.rsplit(':').next().unwrap_or_default().parse()?;
    let route = ServiceRoute::create(&ns.client(), ns.name(), "gitseal-controller", link, port).await?;
    route.wait_until_served("/v1/cert.pem", TIMEOUT).await?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_and_seal_fetch_the_certificate_through_the_service_proxy_like_kubeseal() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let controller = controller_behind_service(plane, &ns).await?;
        let api = controller.api.clone();
        let work = tempfile::tempdir()?;
        let w = work.path();
        let admin =
            Gitseal { kubeconfig: plane.kubeconfig_path().into(), controller_ns: ns.name().into(), dir: w.into() };
        let (_, served) = http_get(&format!("{api}/v1/cert.pem")).await?;
        let served = String::from_utf8(served)?;

        assert_eq!(admin.ok(&["cert"]).await?, served, "byte for byte what the controller serves");
        assert_eq!(admin.ok(&["cert", "--cert", &format!("{api}/v1/cert.pem")]).await?, served);
        let recipients = admin.ok(&["cert", "--recipients"]).await?;
        assert!(
            recipients.starts_with("# gitseal sealing key SHA256:") && recipients.contains("\nage1"),
            "{recipients}"
        );

        // seal with neither --cert nor --recipient asks the controller, as kubeseal does.
        std::fs::write(w.join("secret.yaml"), secret_doc(ns.name(), 7))?;
        admin.ok(&["seal", "-f", "secret.yaml", "-o", "sealed.yaml"]).await?;
        let cert = gitseal_keys::Certificate::from_pem(&served)?;
        let doc = documents(&w.join("sealed.yaml"))?.remove(0);
        assert_eq!(doc["metadata"]["annotations"]["gitseal.dev/key-id"], cert.key_id().as_str());
        apply_json(&plane.client()?, doc).await?;
        all_secrets(&ns, 7..8).await?;

        // The public audit key, as the controller serves it, and an online check of its log
        // against the checkpoint (issue #10).
        let (_, key) = http_get(&format!("{api}/v1/audit-key")).await?;
        assert_eq!(admin.ok(&["audit", "key"]).await?.as_bytes(), key, "byte for byte what the controller serves");
        // Copy the log once the checkpoint (taken within a second of any record) anchors its
        // newest record: a copy taken before records the checkpoint names is, rightly, truncated.
        let anchored = wait_for("the checkpoint to anchor the log's newest record", TIMEOUT, || async {
            let log = std::fs::read_to_string(&controller.audit_log).unwrap_or_default();
            let head = log.lines().rev().find_map(|l| gitseal_shared::audit::parse_line(l).ok()).map(|p| p.hash);
            let cm = ns.api::<k8s_openapi::api::core::v1::ConfigMap>().get_opt("gitseal-audit-checkpoint").await?;
            let cp = cm.and_then(|c| c.data).and_then(|mut d| d.remove("checkpoint")).unwrap_or_default();
            Ok::<_, kube::Error>(head.filter(|h| cp.contains(h.as_str())).map(|_| log))
        })
        .await?;
        std::fs::write(w.join("audit.log"), anchored)?;
        let verified = admin.ok(&["audit", "verify", "--online", "audit.log"]).await?;
        assert!(verified.contains("signatures: valid (audit key SHA256:"), "{verified}");
        assert!(verified.contains("checkpoint: seq ") && verified.contains("of cli-proxy"), "{verified}");
        std::fs::write(w.join("audit-key.pem"), &key)?;
        let text = std::fs::read_to_string(w.join("audit.log"))?;
        let cut: Vec<&str> = text.lines().take(1).collect();
        std::fs::write(w.join("cut.log"), cut.join("\n"))?;
        let err =
            admin.run(&["audit", "verify", "--online", "--public-key", "audit-key.pem", "cut.log"]).await?.error()?;
        assert!(err.contains("truncated: the log ends at seq 1") && err.contains("trust ends at seq 1"), "{err}");

        let err = admin.run(&["cert", "--controller-name", "nope"]).await?.error()?;
        assert!(
            err.contains(&format!(
                "no Service nope in namespace {}: pass the controller's --controller-name",
                ns.name()
            )),
            "{err}"
        );
        let nobody = Gitseal { kubeconfig: user_kubeconfig(plane, "nobody-cert", &[]).await?, ..admin.clone() };
        let err = nobody.run(&["cert"]).await?.error()?;
        assert!(err.contains(&format!("you may not get services in {}", ns.name())), "{err}");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_access_lists_exactly_the_subjects_granted_directly_by_group_by_wildcard_and_by_aggregation()
-> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let admin = plane.client()?;
        let n = ns.name();
        let rule = |verbs: &[&str], names: &[&str]| {
            let mut r = json!({"apiGroups": [""], "resources": ["secrets"], "verbs": verbs});
            if !names.is_empty() {
                r["resourceNames"] = json!(names);
            }
            r
        };
        let user = |name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name});
        let (ann, readers, wild) = (format!("ann-{n}"), format!("readers-{n}"), format!("wild-{n}"));
        grant(&admin, n, "db-reader", json!([rule(&["get"], &["db"])]), user(&ann)).await?;
        grant(&admin, n, "lister", json!([rule(&["list", "watch"], &[])]), group(&readers)).await?;
        grant(&admin, n, "cache-only", json!([rule(&["get"], &["cache"])]), user(&format!("cache-{n}"))).await?;
        grant(&admin, n, "configmaps", json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]), user(&format!("cm-{n}"))).await?;
        let cluster_role = |name: &str, body: Value| {
            let mut v = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}});
            v.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
            v
        };
        let label = format!("gitseal-test.dev/agg-{n}");
        apply_json(&admin, cluster_role(&format!("wild-{n}"), json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]}))).await?;
        apply_json(&admin, cluster_role(&format!("agg-{n}"), json!({"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {&label: "true"}}]}}))).await?;
        let mut piece = cluster_role(&format!("piece-{n}"), json!({"rules": [rule(&["watch"], &[])]}));
        piece["metadata"]["labels"] = json!({&label: "true"});
        apply_json(&admin, piece).await?;
        for (binding, role, subject) in [
            ("wild", format!("wild-{n}"), group(&wild)),
            ("agg", format!("agg-{n}"), json!({"kind": "ServiceAccount", "name": "reader", "namespace": n})),
        ] {
            apply_json(&admin, json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": binding, "namespace": n},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [subject]})).await?;
        }

        let work = tempfile::tempdir()?;
        let g = Gitseal { kubeconfig: plane.kubeconfig_path().into(), controller_ns: n.into(), dir: work.path().into() };
        let want: BTreeSet<(String, String, Option<String>, Vec<String>)> = [
            ("Group", readers.as_str(), None, vec!["list", "watch"]),
            ("Group", wild.as_str(), None, vec!["get"]),
            ("ServiceAccount", "reader", Some(n), vec!["watch"]),
            ("User", ann.as_str(), None, vec!["get"]),
        ]
        .into_iter()
        .map(|(k, name, ns, verbs)| (k.to_string(), name.to_string(), ns.map(str::to_string), verbs.into_iter().map(str::to_string).collect()))
        .collect();
        let target = format!("{n}/db");
        let subjects = |v: &Value| -> Vec<Value> {
            // Controllers that other tests of this binary run are granted Secrets cluster-wide.
            v["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| !(s["kind"] == "ServiceAccount" && s["name"] == "gitseal-controller" && s["namespace"] != n))
                .cloned()
                .collect()
        };
        let as_set = |subjects: &[Value], field: &str| -> BTreeSet<(String, String, Option<String>, Vec<String>)> {
            subjects
                .iter()
                .map(|s| {
                    let verbs = s[field].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                    let ns = s["namespace"].as_str().map(str::to_string);
                    (s["kind"].as_str().unwrap().to_string(), s["name"].as_str().unwrap().to_string(), ns, verbs)
                })
                .collect()
        };

        // kube-controller-manager's clusterrole-aggregation controller fills the aggregated role in;
        // once it has, RBAC's text and the API server's answer agree for every subject.
        let report = wait_for("every granted subject to be confirmed", TIMEOUT, || async {
            let v: Value = serde_json::from_str(&g.ok(&["audit", "access", &target, "-o", "json"]).await?)?;
            let s = subjects(&v);
            Ok::<_, anyhow::Error>((as_set(&s, "verbs") == want && as_set(&s, "confirmed") == want).then_some(v))
        })
        .await?;
        assert!(report["hiddenSystemSubjects"].as_u64().unwrap() > 0, "system:masters and controllers are there, hidden");
        let all: Value = serde_json::from_str(&g.ok(&["audit", "access", &target, "--all", "-o", "json"]).await?)?;
        assert!(all["subjects"].as_array().unwrap().iter().any(|s| s["name"] == "system:masters"));
        let table = g.ok(&["audit", "access", &target]).await?;
        assert!(table.starts_with("KIND") && table.contains(&ann) && table.contains("RoleBinding"), "{table}");
        assert!(table.contains("system subject(s) not shown (--all shows them)"), "{table}");
        assert_eq!(g.run(&["audit", "access", "db"]).await?.code, Some(2), "NAMESPACE/NAME is required");

        for name in [format!("wild-{n}"), format!("agg-{n}"), format!("piece-{n}")] {
            Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(admin.clone()).delete(&name, &DeleteParams::default()).await?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// The key ids of every RSA private key (PEM, PKCS#8 or PKCS#1 DER) in any Secret of the cluster.
async fn private_keys_in_cluster(admin: &kube::Client) -> anyhow::Result<Vec<gitseal_shared::KeyId>> {
    use gitseal_keys::RsaPrivateKey;
    let mut ids = Vec::new();
    for s in Api::<Secret>::all(admin.clone()).list(&ListParams::default()).await?.items {
        for value in s.data.unwrap_or_default().into_values() {
            let v = value.0;
            if let Ok(text) = std::str::from_utf8(&v)
                && text.contains("PRIVATE KEY-----")
            {
                for block in pem::parse_many(text.as_bytes())? {
                    ids.push(RsaPrivateKey::from_pem_block(&block)?.id().clone());
                }
            }
            for k in [RsaPrivateKey::from_pkcs8_der(&v), RsaPrivateKey::from_pkcs1_der(&v)].into_iter().flatten() {
                ids.push(k.id().clone());
            }
        }
    }
    Ok(ids)
}

/// Issue 11: `gitseal keys import-to-token` moves a software key into a SoftHSM token (its
/// plaintext Secret gone from the cluster, never written back from the controller's memory,
/// what was sealed for it still unseals through the token), and `gitseal keys rotate` makes the
/// next key inside the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_to_token_leaves_no_plaintext_key_and_rotation_makes_the_next_key_in_the_token() -> anyhow::Result<()> {
    const LABEL: &str = "gitseal-drill";
    let plane = ControlPlane::shared().await?;
    let work = tempfile::tempdir()?;
    let token = gitseal_tests::softhsm::SoftHsmToken::init(work.path(), LABEL)?;
    let (pin, module) = (token.pin_file.clone(), gitseal_tests::softhsm::module());
    with_temp_ns(|ns| async move {
        let admin = plane.client()?;
        let token_flags = token.controller_flags();
        let conf = token.conf_env();
        let env = [("SOFTHSM2_CONF", conf.as_str())];
        let flags: Vec<&str> = token_flags.iter().map(String::as_str).collect();
        let c = Controller::start_with_env(plane, &ns, &flags, &env).await?;
        let sam = Gitseal {
            kubeconfig: user_kubeconfig(plane, "sam-token", &["security"]).await?,
            controller_ns: ns.name().into(),
            dir: work.path().into(),
        };
        let mut rules = security_rules();
        rules.as_array_mut().unwrap()[1]["verbs"] = json!(["get", "create", "list", "delete"]);
        grant(&admin, ns.name(), "security-team", rules, group("security")).await?;
        wait_for("the security team's RBAC", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(sam.run(&["keys", "list"]).await?.ok().ok())
        })
        .await?;
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns.name());

        // A software key (older than the token key the controller made at start), in use.
        let old = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let soft = gitseal_keys::generate_key_pair(gitseal_keys::RsaBits::Rsa2048, "", old, time::Duration::days(30))?;
        let soft_id = soft.cert.key_id().clone();
        let data = soft.secret_data()?.into_iter().map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())));
        let planted = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("software-key".into()),
                labels: Some([("gitseal.dev/key".to_string(), "active".to_string())].into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data.collect()),
            ..Default::default()
        };
        secrets.create(&Default::default(), &planted).await?;
        std::fs::write(work.path().join("soft.pem"), soft.cert.pem())?;
        let seal_for = |cert: &str, name: &str, value: &str| {
            let doc = format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {}\nstringData:\n  v: {value}\n",
                ns.name()
            );
            std::fs::write(work.path().join(format!("{name}.yaml")), doc).unwrap();
            let (cert, input, output) = (cert.to_string(), format!("{name}.yaml"), format!("{name}.sealed.yaml"));
            let sam = sam.clone();
            async move {
                sam.ok(&["seal", "--cert", &cert, "-f", &input, "-o", &output]).await?;
                let docs = support::documents(&sam.dir.join(&output))?;
                apply_json(&plane.client()?, docs[0].clone()).await?;
                anyhow::Ok(())
            }
        };
        seal_for("soft.pem", "before-import", "one").await?;
        sealed_until(&ns, "before-import", "synced", |v| condition(v, "status") == Some("True")).await?;
        assert!(private_keys_in_cluster(&admin).await?.contains(&soft_id), "the scan finds the planted key");

        // Import: the plaintext key Secret is replaced by one naming the token object.
        let pin_flag = format!("--pkcs11-pin-file={}", pin.display());
        let import = ["keys", "import-to-token", "software-key", "--pkcs11-module", &module];
        let import = [&import[..], &["--pkcs11-token-label", LABEL, &pin_flag]].concat();
        let said = sam.run_with_env(&import, None, &env).await?.ok()?;
        assert!(said.contains("software-key-pkcs11"), "{said}");
        let moved = secrets.get("software-key-pkcs11").await?;
        let annotations = moved.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get("gitseal.dev/key-backend").map(String::as_str), Some("pkcs11"));
        assert!(!moved.data.unwrap_or_default().contains_key("tls.key"));
        // Not written back from the controller's memory: the deletion is the point.
        wait_for("the controller to load the moved key", TIMEOUT, || async {
            let moved = c.audit_lines().iter().any(|l| l.contains("\"action\":\"KeyMovedToToken\""));
            Ok::<_, anyhow::Error>(moved.then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(secrets.get_opt("software-key").await?.is_none(), "the plaintext key Secret came back");
        assert!(!private_keys_in_cluster(&admin).await?.contains(&soft_id), "a Secret still holds the imported key");
        // Sealed for it before and after: both unseal, through the token.
        seal_for("soft.pem", "after-import", "two").await?;
        sealed_until(&ns, "after-import", "synced", |v| condition(v, "status") == Some("True")).await?;
        let list = sam.ok(&["keys", "list", "-o", "wide"]).await?;
        let row = list.lines().find(|l| l.contains(short(soft_id.as_str()))).unwrap_or_default();
        assert!(row.contains("pkcs11"), "{list}");
        assert!(!list.contains("memory"), "no key is left in memory: {list}");

        // Rotation makes the next key in the token.
        let before: BTreeSet<String> = keys(&sam).await?.into_iter().map(|(id, _)| id).collect();
        sam.ok(&["keys", "rotate"]).await?;
        let after = keys(&sam).await?;
        let (new_id, _) = after.iter().find(|(id, _)| !before.contains(id)).cloned().expect("a new key");
        let list = sam.ok(&["keys", "list", "-o", "wide"]).await?;
        let row = list.lines().find(|l| l.contains(short(&new_id))).unwrap_or_default();
        assert!(row.contains("pkcs11"), "{list}");
        let new_secret = secrets
            .list(&ListParams::default().labels("gitseal.dev/key"))
            .await?
            .items
            .into_iter()
            .find(|s| {
                let crt = s.data.as_ref().and_then(|d| d.get("tls.crt")).map(|b| b.0.clone()).unwrap_or_default();
                gitseal_keys::Certificate::from_pem(&String::from_utf8_lossy(&crt))
                    .is_ok_and(|c| c.key_id().as_str() == new_id)
            })
            .expect("the new key's Secret");
        assert!(!new_secret.data.unwrap_or_default().contains_key("tls.key"));
        sam.ok(&["cert", "--cert", &c.cert_url(), "-o", "new.pem"]).await?;
        seal_for("new.pem", "after-rotation", "three").await?;
        sealed_until(&ns, "after-rotation", "synced", |v| condition(v, "status") == Some("True")).await?;
        let ids = private_keys_in_cluster(&admin).await?;
        assert!(!ids.iter().any(|id| id.as_str() == new_id || *id == soft_id), "{ids:?}");
        c.stop().await?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
