//! The authenticated API through the real aggregation layer: the kube-apiserver authenticates
//! and authorizes, gitseal audits the caller, and nobody reaches the port directly.

use std::time::Duration;

use base64::Engine;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::gitseal::{APISERVICE, ServingCert, apiservices, register_aggregated_api};
use gitseal_tests::{ControlPlane, free_port, wait_for, with_temp_ns};
use kube::api::DeleteParams;
use serde_json::{Value, json};

use crate::fixture::{Gitseal, seal, secret_with};

async fn post(client: &kube::Client, path: &str, body: &Value) -> Result<Value, kube::Error> {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .map_err(kube::Error::HttpError)?;
    client.request::<Value>(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregated_api_authenticates_authorizes_and_audits_callers() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let port = free_port()?;
        let tls = ServingCert::generate(plane, ns.name())?;
        // The only recipient backups may go to.
        let identity = age::x25519::Identity::generate();
        let mut args = vec!["--require-key-backup".to_string(), format!("--backup-recipients={}", identity.to_public())];
        args.extend(tls.flags(port));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut g = Gitseal::start(plane, ns.name(), &args).await?;
        g.ready().await?;
        let admin = plane.client()?;
        let apiservices = apiservices(&admin);
        // The Service leads to the local controller; the APIService registers the group.
        let available = register_aggregated_api(&admin, ns.name(), port, &tls, Duration::from_secs(60)).await;
        if available.is_err() {
            g.process.print_log_tail();
            eprintln!("{}", plane.apiserver_log_tail(30));
        }
        available?;

        let cert = g.cert().await?;
        let sealed = seal(&cert, ns.name(), "db", &[("password", "hunter2")], ApiGroup::Gitseal);
        let verify_path = format!("/apis/api.gitseal.dev/v1/namespaces/{}/sealedsecretverifications", ns.name());
        let request = json!({"apiVersion": "api.gitseal.dev/v1", "kind": "SealedSecretVerification",
                             "metadata": {"name": "check"}, "spec": {"sealedSecret": sealed}});

        // A user without RBAC is refused by the kube-apiserver itself.
        let alice = kube::Client::try_from(plane.user_config("alice", &["developers"]).await?)?;
        match post(&alice, &verify_path, &request).await {
            Err(kube::Error::Api(ae)) => assert_eq!(ae.code, 403, "{ae:?}"),
            other => panic!("expected 403, got {other:?}"),
        }

        // Granted create on verifications in this namespace, she succeeds and is audited by name.
        gitseal_tests::apply_json(&admin, json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "verifier", "namespace": ns.name()},
            "rules": [{"apiGroups": ["api.gitseal.dev"], "resources": ["sealedsecretverifications", "sealedsecretreseals"], "verbs": ["create"]}]
        }))
        .await?;
        gitseal_tests::apply_json(&admin, json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "alice-verifier", "namespace": ns.name()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "verifier"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
        }))
        .await?;
        let answer = wait_for("alice's verification to be allowed", Duration::from_secs(20), || {
            let alice = alice.clone();
            let (path, request) = (verify_path.clone(), request.clone());
            async move { Ok::<_, kube::Error>(post(&alice, &path, &request).await.ok()) }
        })
        .await?;
        assert_eq!(answer.pointer("/status/valid"), Some(&Value::Bool(true)), "{answer}");
        let audited = g.audit_lines().into_iter().find(|l| l.contains("\"action\":\"Verify\"") && l.contains("\"user\":\"alice\""));
        let audited = audited.expect("an audit record naming alice");
        assert!(audited.contains("developers"), "{audited}");

        // Re-seal through the API, and the result unseals in the cluster.
        let reseal_path = format!("/apis/api.gitseal.dev/v1/namespaces/{}/sealedsecretreseals", ns.name());
        let reseal = json!({"apiVersion": "api.gitseal.dev/v1", "kind": "SealedSecretReseal",
                            "metadata": {"name": "r"}, "spec": {"sealedSecret": sealed}});
        let resealed = post(&alice, &reseal_path, &reseal).await?;
        let obj = resealed.pointer("/status/sealedSecret").cloned().expect("status.sealedSecret");
        assert_ne!(obj.pointer("/spec/encryptedData/password"), sealed.pointer("/spec/encryptedData/password"));
        gitseal_tests::apply_json(&admin, obj).await?;
        secret_with(&ns, "db", "password", "hunter2").await?;

        // Another namespace than the object's is a bad request, not a way around RBAC.
        let mut elsewhere = request.clone();
        elsewhere["spec"]["sealedSecret"]["metadata"]["namespace"] = "kube-system".into();
        match post(&alice, &verify_path, &elsewhere).await {
            Err(kube::Error::Api(ae)) => assert_eq!(ae.code, 400, "{ae:?}"),
            other => panic!("expected 400, got {other:?}"),
        }

        // Straight to the port, without the front-proxy certificate: refused, headers or not.
        let mut direct = kube::Config::new(format!("https://127.0.0.1:{port}").parse()?);
        direct.accept_invalid_certs = true;
        direct.headers.push((http::HeaderName::from_static("x-remote-user"), http::HeaderValue::from_static("system:admin")));
        let direct = kube::Client::try_from(direct)?;
        match post(&direct, &verify_path, &request).await {
            Err(kube::Error::Api(ae)) => assert_eq!(ae.code, 401, "{ae:?}"),
            other => panic!("expected 401, got {other:?}"),
        }

        key_operations(plane, &g, &ns, &admin, &sealed, &identity).await?;
        apiservices.delete(APISERVICE, &DeleteParams::default()).await?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// The security team's key operations through the same API, as a user bound to a Role.
async fn key_operations(
    plane: &ControlPlane,
    g: &Gitseal,
    ns: &gitseal_tests::TestNamespace,
    admin: &kube::Client,
    old_sealed: &Value,
    identity: &age::x25519::Identity,
) -> anyhow::Result<()> {
    gitseal_tests::apply_json(
        admin,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "key-admin", "namespace": ns.name()},
            "rules": [{"apiGroups": ["api.gitseal.dev"],
                       "resources": ["keys", "keyrotations", "keyretirements", "keyrevocations", "keybackups"],
                       "verbs": ["create", "list"]}]
        }),
    )
    .await?;
    gitseal_tests::apply_json(
        admin,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "sec-key-admin", "namespace": ns.name()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "key-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "security"}]
        }),
    )
    .await?;
    let sec = kube::Client::try_from(plane.user_config("sam", &["security"]).await?)?;
    let base = format!("/apis/api.gitseal.dev/v1/namespaces/{}", ns.name());
    let op = |kind: &str, spec: Value| json!({"apiVersion": "api.gitseal.dev/v1", "kind": kind, "metadata": {"name": "op"}, "spec": spec});
    let first = g.cert().await?;

    // Rotate now: a second key, held back from sealing until a backup contains it.
    let rotated = wait_for("sam's rotation to be allowed", Duration::from_secs(20), || {
        let (sec, path, body) = (sec.clone(), format!("{base}/keyrotations"), op("KeyRotation", json!({})));
        async move { Ok::<_, kube::Error>(post(&sec, &path, &body).await.ok()) }
    })
    .await?;
    let new_id = rotated.pointer("/status/keyId").and_then(Value::as_str).unwrap().to_string();
    let list: Value = sec.request(http::Request::get(format!("{base}/keys")).body(Vec::new())?).await?;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let pending = items.iter().find(|k| k["keyId"] == new_id.as_str()).unwrap();
    assert_eq!(pending["pendingBackup"], true);
    assert_eq!(g.cert().await?.key_id(), first.key_id(), "a key waiting for its backup does not seal");

    // A backup to a recipient outside --backup-recipients is refused and audited.
    let stranger = age::x25519::Identity::generate().to_public().to_string();
    let refused = post(&sec, &format!("{base}/keybackups"), &op("KeyBackup", json!({"recipients": [stranger]}))).await;
    assert!(matches!(refused, Err(kube::Error::Api(ref ae)) if ae.code == 403), "{refused:?}");
    assert!(
        g.audit_lines().iter().any(|l| l.contains("\"action\":\"KeyBackup\"") && l.contains("RecipientNotAllowed"))
    );

    // Back up to the security team's age recipient: the real age CLI opens it; then the new key seals.
    let recipient = identity.to_public().to_string();
    let backup =
        post(&sec, &format!("{base}/keybackups"), &op("KeyBackup", json!({"recipients": [recipient]}))).await?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(backup.pointer("/status/backup").and_then(Value::as_str).unwrap())?;
    let dir = plane.dir();
    let (id_file, backup_file) =
        (dir.join(format!("sam-{}.age-id", ns.name())), dir.join(format!("backup-{}.age", ns.name())));
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&id_file, format!("{}\n", identity.to_string().expose_secret()))?;
    }
    std::fs::write(&backup_file, &bytes)?;
    let opened = gitseal_tests::exec_binary(
        gitseal_tests::Peer::Age.path()?,
        ["-d", "-i", &id_file.display().to_string(), &backup_file.display().to_string()],
        std::iter::empty::<(&str, &str)>(),
        b"",
        Duration::from_secs(30),
    )
    .await?;
    let text = String::from_utf8(opened)?;
    assert!(text.contains("kind: List") && text.matches("tls.key").count() == 2, "backup holds both keys");
    assert!(text.contains("name: gitseal-digest-key"), "the backup carries the digest key");
    let nobody = gitseal_tests::exec_binary(
        gitseal_tests::Peer::Age.path()?,
        ["-d", "-i", "/dev/null", &backup_file.display().to_string()],
        std::iter::empty::<(&str, &str)>(),
        b"",
        Duration::from_secs(30),
    )
    .await;
    assert!(nobody.is_err(), "without the identity nothing is readable");
    wait_for("the backed-up key to seal", Duration::from_secs(20), || async {
        Ok::<_, anyhow::Error>((g.cert().await?.key_id().as_str() == new_id).then_some(()))
    })
    .await?;

    // Retire the first key: it still decrypts, so the old SealedSecret stays in sync.
    let retired =
        post(&sec, &format!("{base}/keyretirements"), &op("KeyRetirement", json!({"keyId": first.key_id().as_str()})))
            .await?;
    assert_eq!(retired.pointer("/status/state"), Some(&json!("retired")));
    let unknown = post(
        &sec,
        &format!("{base}/keyretirements"),
        &op("KeyRetirement", json!({"keyId": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})),
    )
    .await;
    assert!(matches!(unknown, Err(kube::Error::Api(ref ae)) if ae.code == 404), "{unknown:?}");

    // Revoke it: SealedSecrets on it report KeyRevoked, others are untouched, the Secret stays.
    let other = seal(&g.cert().await?, ns.name(), "on-new-key", &[("k", "v")], ApiGroup::Gitseal);
    gitseal_tests::apply_json(admin, other).await?;
    crate::fixture::synced(ns, ApiGroup::Gitseal, "on-new-key", "True").await?;
    post(&sec, &format!("{base}/keyrevocations"), &op("KeyRevocation", json!({"keyId": first.key_id().as_str()})))
        .await?;
    let mut touched = old_sealed.clone();
    touched["metadata"]["labels"] = json!({"touch": "1"});
    touched["spec"]["template"]["metadata"]["labels"] = json!({"rev": "1"});
    gitseal_tests::apply_json(admin, touched).await?;
    let s = crate::fixture::synced(ns, ApiGroup::Gitseal, "db", "False").await?;
    assert_eq!(s.pointer("/status/conditions/0/reason").and_then(Value::as_str), Some("KeyRevoked"));
    crate::fixture::synced(ns, ApiGroup::Gitseal, "on-new-key", "True").await?;
    secret_with(ns, "db", "password", "hunter2").await?;
    // Written on revoke: the revocation list names the key.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = ns.api();
    let list = secrets.get("gitseal-revoked-keys").await?;
    let ids = String::from_utf8(list.data.unwrap_or_default()["key-ids"].0.clone())?;
    assert!(ids.lines().any(|l| l == first.key_id().as_str()), "{ids}");
    assert!(g.metric("gitseal_sealed_secrets_on_revoked_keys").await? >= 1.0);

    let lines = g.audit_lines();
    for action in ["KeyGenerated", "KeyBackup", "KeyRetired", "KeyRevoked"] {
        assert!(
            lines.iter().any(|l| l.contains(&format!("\"action\":\"{action}\"")) && l.contains("\"user\":\"sam\"")),
            "an audit record of {action} naming sam"
        );
    }
    assert!(gitseal_shared::audit::verify_chain(lines.iter().map(String::as_str)).is_ok());
    Ok(())
}
