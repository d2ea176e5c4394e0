//! The real `kubeseal` reaching gitseal-controller the only way it can without `--cert`: through
//! the kube-apiserver's service proxy. The controller listens on the harness's veth address and a
//! selector-less Service, a stand-in Pod and its Endpoints route `http:sealed-secrets-controller:http`
//! to it (see `gitseal_tests::service_route`), so every request below goes kubeseal → API server
//! → controller, as in a cluster.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gitseal_keys::Certificate;
use gitseal_shared::keyid::KEY_ID_ANNOTATION;
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::gitseal::{GitsealController, Launch};
use gitseal_tests::service_route::{HostLink, ServiceRoute};
use gitseal_tests::{ControlPlane, Peer, TestNamespace, apply_json, exec_binary, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};

use crate::fixture::{Gitseal, TIMEOUT, secret_with, synced};

/// kubeseal's default `--controller-name`.
const CONTROLLER: &str = "sealed-secrets-controller";

/// gitseal-controller listening on the harness's veth address, routed to by Service
/// [`CONTROLLER`] in `ns`; returns once `/v1/cert.pem` answers through the API server.
async fn start_behind_service(
    plane: &ControlPlane,
    ns: &TestNamespace,
    extra: &[&str],
) -> anyhow::Result<(Gitseal, ServiceRoute)> {
    let link = HostLink::shared()?;
    let client = ns.client();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
    let mut args = vec!["--key-size=2048", "--bitnami-compat", "--log-level=info,gitseal_controller=debug"];
    args.extend_from_slice(extra);
    let host = link.address().to_string();
    let how = Launch { watch: Some(ns.name()), host: &host, flags: &args, ..Launch::new(ns.name(), "gitseal-proxied") };
    let c = GitsealController::launch(plane, binary, &how).await?;
    let port: u16 = c.api.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in the API URL");
    let mut g = Gitseal { process: c.process, api: c.api, metrics: c.metrics, audit_log: c.audit_log };
    g.ready().await?;
    let route = ServiceRoute::create(&client, ns.name(), CONTROLLER, link, port).await?;
    route.wait_until_served("/v1/cert.pem", TIMEOUT).await?;
    Ok((g, route))
}

/// Runs the real kubeseal as admin against the controller Service in `ns`.
async fn kubeseal(plane: &ControlPlane, ns: &str, args: &[&str], stdin: &[u8]) -> gitseal_tests::Result<Vec<u8>> {
    let kubeconfig = plane.kubeconfig_path().display().to_string();
    let mut all = vec!["--kubeconfig", &kubeconfig, "--controller-name", CONTROLLER, "--controller-namespace", ns];
    all.extend_from_slice(args);
    let no_env = std::iter::empty::<(&str, &str)>();
    exec_binary(Peer::Kubeseal.path()?, all, no_env, stdin, Duration::from_secs(60)).await
}

/// kubeseal's JSON stream as objects.
fn objects(out: &[u8]) -> anyhow::Result<Vec<Value>> {
    Ok(parse_documents(std::str::from_utf8(out)?)?.into_iter().map(|d| d.value).collect())
}

fn to_stream(objects: &[Value]) -> Vec<u8> {
    objects.iter().flat_map(|o| serde_json::to_vec(o).unwrap_or_default()).collect()
}

fn secret(ns: &str, name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": {"v": value}})
}

/// Seals one Secret with kubeseal, which fetches the certificate through the service proxy.
async fn seal(plane: &ControlPlane, ns: &str, name: &str, value: &str) -> anyhow::Result<Value> {
    let out = kubeseal(plane, ns, &["-o", "json"], &serde_json::to_vec(&secret(ns, name, value))?).await?;
    let mut sealed = objects(&out)?;
    anyhow::ensure!(sealed.len() == 1, "kubeseal wrote {} objects", sealed.len());
    Ok(sealed.remove(0))
}

/// The stderr of a kubeseal run that must fail.
fn failure(result: gitseal_tests::Result<Vec<u8>>) -> String {
    match result {
        Ok(out) => panic!("kubeseal succeeded: {}", String::from_utf8_lossy(&out)),
        Err(gitseal_tests::Error::CommandFailed { stderr, .. }) => stderr,
        Err(e) => panic!("kubeseal did not run: {e}"),
    }
}

fn key_id_annotation(ss: &Value) -> Option<&str> {
    ss.pointer("/metadata/annotations").and_then(|a| a.get(KEY_ID_ANNOTATION)).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeseal_fetch_cert_through_the_service_proxy_prints_exactly_gitseals_certificate() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let (g, route) = start_behind_service(plane, &ns, &["--key-renew-period=0"]).await?;
        let fetched = kubeseal(plane, ns.name(), &["--fetch-cert"], b"").await?;
        let (code, served) = gitseal_tests::http_get(&format!("{}/v1/cert.pem", g.api)).await?;
        assert_eq!(code, 200);
        assert_eq!(String::from_utf8(fetched)?, String::from_utf8(served.clone())?, "byte for byte");
        assert_eq!(route.get("/v1/cert.pem").await?.as_bytes(), served, "the admin client's proxy GET agrees");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeseal_seals_with_the_certificate_it_fetched_and_the_sealed_secret_becomes_a_secret() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let (_g, _route) = start_behind_service(plane, &ns, &["--key-renew-period=0"]).await?;
        let sealed = seal(plane, ns.name(), "db", "hunter2").await?;
        assert_eq!(sealed["apiVersion"], "bitnami.com/v1alpha1");
        apply_json(&ns.client(), sealed).await?;
        secret_with(&ns, "db", "v", "hunter2").await?;
        synced(&ns, ApiGroup::Bitnami, "db", "True").await?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeseal_validate_accepts_what_gitseal_opens_and_refuses_a_renamed_or_tampered_copy() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let (_g, _route) = start_behind_service(plane, &ns, &["--key-renew-period=0"]).await?;
        let sealed = seal(plane, ns.name(), "db", "hunter2").await?;
        kubeseal(plane, ns.name(), &["--validate"], &serde_json::to_vec(&sealed)?).await?;

        // Strict scope binds the name: the same ciphertext under another name does not open.
        let mut renamed = sealed.clone();
        renamed["metadata"]["name"] = "db-copy".into();
        let stderr = failure(kubeseal(plane, ns.name(), &["--validate"], &serde_json::to_vec(&renamed)?).await);
        assert!(stderr.contains("unable to decrypt sealed secret: db-copy"), "{stderr}");

        // One flipped bit in the AES-GCM tag.
        let mut tampered = sealed;
        let mut bytes = STANDARD.decode(tampered["spec"]["encryptedData"]["v"].as_str().unwrap_or_default())?;
        *bytes.last_mut().expect("a non-empty value") ^= 1;
        tampered["spec"]["encryptedData"]["v"] = STANDARD.encode(&bytes).into();
        let stderr = failure(kubeseal(plane, ns.name(), &["--validate"], &serde_json::to_vec(&tampered)?).await);
        assert!(stderr.trim_end().ends_with("unable to decrypt sealed secret: db"), "{stderr}");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeseal_re_encrypt_returns_fresh_ciphertext_that_still_becomes_the_secret() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let (g, _route) = start_behind_service(plane, &ns, &["--key-renew-period=0"]).await?;
        let client = ns.client();
        let sealed = seal(plane, ns.name(), "db", "hunter2").await?;
        apply_json(&client, sealed.clone()).await?;
        secret_with(&ns, "db", "v", "hunter2").await?;

        let out = kubeseal(plane, ns.name(), &["--re-encrypt", "-o", "json"], &serde_json::to_vec(&sealed)?).await?;
        let mut resealed = objects(&out)?;
        assert_eq!(resealed.len(), 1);
        let resealed = resealed.remove(0);
        assert_eq!(resealed["apiVersion"], "bitnami.com/v1alpha1");
        assert_eq!(resealed["metadata"]["name"], "db");
        assert_ne!(resealed["spec"]["encryptedData"]["v"], sealed["spec"]["encryptedData"]["v"], "a fresh session key");
        assert_eq!(key_id_annotation(&resealed), Some(g.cert().await?.key_id().as_str()));

        // The re-encrypted object replaces the original, and the Secret is rebuilt from it.
        apply_json(&client, resealed).await?;
        synced(&ns, ApiGroup::Bitnami, "db", "True").await?;
        Api::<Secret>::namespaced(client, ns.name()).delete("db", &DeleteParams::default()).await?;
        secret_with(&ns, "db", "v", "hunter2").await?;
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// The key Secret (as kubeseal's `--recovery-private-key` reads it) whose certificate has `id`.
async fn key_secret_with_id(ns: &TestNamespace, id: &str) -> anyhow::Result<Value> {
    let secrets: Api<Secret> = ns.api();
    for s in secrets.list(&ListParams::default()).await? {
        let Some(data) = s.data.as_ref() else { continue };
        let (Some(crt), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else { continue };
        if Certificate::from_pem(std::str::from_utf8(&crt.0)?)?.key_id().as_str() == id {
            return Ok(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": s.metadata.name, "namespace": ns.name()},
                "data": {"tls.crt": STANDARD.encode(&crt.0), "tls.key": STANDARD.encode(&key.0)}}));
        }
    }
    anyhow::bail!("no key Secret in {} has key id {id}", ns.name())
}

/// kubeseal's offline `--recovery-unseal` of `sealed` with only the key `key_secret`.
async fn recovery_unseal(
    plane: &ControlPlane,
    ns: &TestNamespace,
    key_secret: &Value,
    sealed: &Value,
) -> gitseal_tests::Result<Vec<u8>> {
    let file = plane.dir().join(format!(
        "recovery-{}-{}.json",
        ns.name(),
        key_secret["metadata"]["name"].as_str().unwrap_or("key")
    ));
    std::fs::write(&file, serde_json::to_vec(key_secret).unwrap_or_default()).expect("writing the key file");
    let key_arg = file.display().to_string();
    let args = ["--recovery-unseal", "--recovery-private-key", &key_arg, "-o", "json"];
    let no_env = std::iter::empty::<(&str, &str)>();
    let out = exec_binary(
        Peer::Kubeseal.path()?,
        args,
        no_env,
        &serde_json::to_vec(sealed).unwrap_or_default(),
        Duration::from_secs(60),
    )
    .await;
    let _ = std::fs::remove_file(&file);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_renewal_kubeseal_re_encrypt_seals_for_the_new_key() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let (g, _route) = start_behind_service(plane, &ns, &["--key-renew-period=5s"]).await?;
        let client = ns.client();
        // Seal with the certificate fetched now, pinned in a file so a renewal cannot slip in.
        let pem = kubeseal(plane, ns.name(), &["--fetch-cert"], b"").await?;
        let old = Certificate::from_pem(std::str::from_utf8(&pem)?)?.key_id().clone();
        let cert_file = plane.dir().join(format!("cert-{}.pem", ns.name()));
        std::fs::write(&cert_file, &pem)?;
        let cert_arg = cert_file.display().to_string();
        let input = serde_json::to_vec(&secret(ns.name(), "db", "hunter2"))?;
        let sealed =
            objects(&kubeseal(plane, ns.name(), &["--cert", &cert_arg, "-o", "json"], &input).await?)?.remove(0);
        apply_json(&client, sealed.clone()).await?;
        secret_with(&ns, "db", "v", "hunter2").await?;

        let renewed = wait_for("a renewed sealing key", Duration::from_secs(40), || async {
            let c = g.cert().await?;
            Ok::<_, anyhow::Error>((c.key_id() != &old).then(|| c.key_id().clone()))
        })
        .await?;
        let out = kubeseal(plane, ns.name(), &["--re-encrypt", "-o", "json"], &serde_json::to_vec(&sealed)?).await?;
        let after = g.cert().await?.key_id().clone();
        let resealed = objects(&out)?.remove(0);
        let id = key_id_annotation(&resealed).expect("gitseal annotates the key id").to_owned();
        assert_ne!(id, old.as_str(), "re-encrypt must not keep the old key");
        assert!(id == renewed.as_str() || id == after.as_str(), "{id}: the latest key (was {renewed}, now {after})");

        // Independent of the annotation: kubeseal opens it offline with the new key alone, and
        // not with the old one.
        let new_key = key_secret_with_id(&ns, &id).await?;
        let opened = objects(&recovery_unseal(plane, &ns, &new_key, &resealed).await?)?.remove(0);
        assert_eq!(opened["data"]["v"], STANDARD.encode("hunter2"));
        let old_key = key_secret_with_id(&ns, old.as_str()).await?;
        assert!(recovery_unseal(plane, &ns, &old_key, &resealed).await.is_err(), "the old key must not open it");
        assert!(recovery_unseal(plane, &ns, &old_key, &sealed).await.is_ok(), "(while it opens the original)");

        // And the controller turns it into the Secret.
        apply_json(&client, resealed).await?;
        synced(&ns, ApiGroup::Bitnami, "db", "True").await?;
        Api::<Secret>::namespaced(client, ns.name()).delete("db", &DeleteParams::default()).await?;
        secret_with(&ns, "db", "v", "hunter2").await?;
        let _ = std::fs::remove_file(&cert_file);
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeseal_validates_and_re_encrypts_more_sealed_secrets_at_once_than_the_rate_limit_burst() -> anyhow::Result<()>
{
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        // The defaults: 2 requests a second, bursts of 4, per client (here: the API server's
        // address, the peer; without --trusted-proxies its X-Forwarded-For is not believed).
        let (g, _route) = start_behind_service(plane, &ns, &["--key-renew-period=0"]).await?;
        let secrets: Vec<Value> = (0..6).map(|i| secret(ns.name(), &format!("s{i}"), &format!("v{i}"))).collect();
        let sealed = objects(&kubeseal(plane, ns.name(), &["-o", "json"], &to_stream(&secrets)).await?)?;
        assert_eq!(sealed.len(), 6);
        kubeseal(plane, ns.name(), &["--validate"], &to_stream(&sealed)).await?;
        let resealed =
            objects(&kubeseal(plane, ns.name(), &["--re-encrypt", "-o", "json"], &to_stream(&sealed)).await?)?;
        assert_eq!(resealed.len(), 6);
        for (before, after) in sealed.iter().zip(&resealed) {
            assert_eq!(before["metadata"]["name"], after["metadata"]["name"]);
            assert_ne!(before["spec"]["encryptedData"]["v"], after["spec"]["encryptedData"]["v"]);
        }
        // The limit did refuse some requests: kubeseal got through by obeying Retry-After.
        let (_, body) = gitseal_tests::http_get(&g.metrics).await?;
        let refused: f64 = String::from_utf8(body)?
            .lines()
            .filter(|l| l.starts_with("gitseal_api_requests_total{") && l.contains("outcome=\"rate_limited\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(refused >= 2.0, "12 requests against bursts of 4 must meet the limit; refused {refused}");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
