//! Keys in a hardware token (issue 11), with Debian's SoftHSM2 as the token: the controller
//! generates its key inside the token, the real kubeseal seals for it in all three scopes, the
//! controller unseals through the token (raw RSA + software OAEP decode: SoftHSM 2.6 refuses
//! OAEP-SHA256 with a label), no Secret in the cluster holds the private key, and a software
//! key planted beside it keeps unsealing (a mixed keyring).

use std::time::Duration;

use gitseal_keys::RsaPrivateKey;
use gitseal_keys::material::{KEY_BACKEND_ANNOTATION, TLS_KEY};
use gitseal_shared::KeyId;
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::softhsm::SoftHsmToken;
use gitseal_tests::{ControlPlane, Peer, exec_binary, with_temp_ns};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::fixture::{Gitseal, seal, secret_with};

const LABEL: &str = "gitseal-e2e";

async fn kubeseal(cert_url: &str, secret: &Value, scope: &str) -> anyhow::Result<Value> {
    let args = ["--cert", cert_url, "-o", "json", "--scope", scope];
    let input = serde_json::to_vec(secret)?;
    let out =
        exec_binary(Peer::Kubeseal.path()?, args, std::iter::empty::<(&str, &str)>(), &input, Duration::from_secs(60))
            .await?;
    Ok(parse_documents(&String::from_utf8(out)?)?.remove(0).value)
}

/// The ids of every RSA private key anywhere in `value` (PEM of either form, or raw DER).
fn private_key_ids(value: &[u8]) -> Vec<KeyId> {
    let mut ids = Vec::new();
    if let Ok(text) = std::str::from_utf8(value)
        && text.contains("PRIVATE KEY-----")
    {
        for block in pem::parse_many(text.as_bytes()).unwrap_or_default() {
            match RsaPrivateKey::from_pem_block(&block) {
                Ok(k) => ids.push(k.id().clone()),
                Err(_) => panic!("a PEM private key this test cannot read: {}", block.tag()),
            }
        }
    }
    for k in [RsaPrivateKey::from_pkcs8_der(value), RsaPrivateKey::from_pkcs1_der(value)].into_iter().flatten() {
        ids.push(k.id().clone());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_generated_in_a_softhsm_token_unseals_kubeseal_values_and_never_reaches_a_secret() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    let dir = tempfile::tempdir()?;
    let token = SoftHsmToken::init(dir.path(), LABEL)?;
    with_temp_ns(|ns| async move {
        let mut flags = token.controller_flags();
        flags.push("--key-renew-period=0".to_string());
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let conf = token.conf_env();
        let mut g = Gitseal::start_with_env(plane, ns.name(), "gitseal", &flags, &[("SOFTHSM2_CONF", &conf)]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let token_key = cert.key_id().clone();
        let client = ns.client();

        // The key Secret: the certificate and the token object's name, no private key.
        let secrets: Api<Secret> = ns.api();
        let keys = secrets.list(&ListParams::default().labels("gitseal.dev/key=active")).await?;
        assert_eq!(keys.items.len(), 1);
        let key_secret = &keys.items[0];
        let annotations = key_secret.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(KEY_BACKEND_ANNOTATION).map(String::as_str), Some("pkcs11"));
        assert!(!key_secret.data.as_ref().unwrap().contains_key(TLS_KEY));
        assert_eq!(g.metric("gitseal_key_backends{backend=\"pkcs11-raw-rsa\"}").await?, 1.0);

        // The real kubeseal seals for the token key in every scope; the controller unseals.
        let url = format!("{}/v1/cert.pem", g.api);
        for (scope, name) in [("strict", "t-strict"), ("namespace-wide", "t-ns"), ("cluster-wide", "t-cluster")] {
            let plain = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": ns.name()}, "stringData": {"v": scope}});
            let mut sealed = kubeseal(&url, &plain, scope).await?;
            // kubeseal's bytes under gitseal's group (this controller runs without --bitnami-compat).
            sealed["apiVersion"] = "gitseal.dev/v1".into();
            gitseal_tests::apply_json(&client, sealed).await?;
            if let Err(e) = secret_with(&ns, name, "v", scope).await {
                g.process.print_log_tail();
                return Err(e);
            }
        }

        // A software key planted beside it (older, so the token key stays the sealing key)
        // loads and unseals: a mixed keyring.
        let old = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let soft = gitseal_keys::generate_key_pair(gitseal_keys::RsaBits::Rsa2048, "", old, time::Duration::days(30))?;
        let data = soft.secret_data()?.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
        let planted = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("software-key".into()),
                labels: Some([("gitseal.dev/key".to_string(), "active".to_string())].into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        };
        secrets.create(&Default::default(), &planted).await?;
        gitseal_tests::apply_json(
            &client,
            seal(&soft.cert, ns.name(), "from-soft", &[("v", "soft")], ApiGroup::Gitseal),
        )
        .await?;
        secret_with(&ns, "from-soft", "v", "soft").await?;
        assert_eq!(g.cert().await?.key_id(), &token_key, "the newest key, the token's, still seals");
        assert_eq!(g.metric("gitseal_key_backends{backend=\"memory\"}").await?, 1.0);

        // Every Secret in the cluster: whatever private keys they hold, none is the token key.
        let all: Api<Secret> = Api::all(plane.client()?);
        let mut seen = 0;
        for s in all.list(&ListParams::default()).await?.items {
            for (item, value) in s.data.unwrap_or_default() {
                let ids = private_key_ids(&value.0);
                assert!(!ids.contains(&token_key), "Secret {:?} {item} holds the token key", s.metadata.name);
                seen += ids.len();
            }
        }
        assert!(seen >= 1, "the planted software key is found, so the scan reads private keys");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// The Synced reasons of every SealedSecret named in `names`, by name.
async fn sync_reasons(ns: &gitseal_tests::TestNamespace, names: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let api = crate::fixture::ss_api(&ns.client(), ns.name(), ApiGroup::Gitseal);
    let mut out = Vec::new();
    for o in api.list(&ListParams::default()).await?.items {
        let name = o.metadata.name.clone().unwrap_or_default();
        if names.contains(&name) {
            let v = serde_json::to_value(&o)?;
            let reason = v.pointer("/status/conditions/0/reason").and_then(Value::as_str).unwrap_or("").to_string();
            out.push((name, reason));
        }
    }
    Ok(out)
}

/// Issue 11, "a token restart mid-run recovers": the token's storage goes away while the
/// controller unseals a batch (SoftHSM's token directory moved aside: its sessions then answer
/// CKR_OBJECT_HANDLE_INVALID and re-initialising finds no token), and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_gone_mid_run_reports_key_unavailable_and_every_object_converges_when_it_returns() -> anyhow::Result<()>
{
    let plane = ControlPlane::shared().await?;
    let dir = tempfile::tempdir()?;
    let token = SoftHsmToken::init(dir.path(), LABEL)?;
    let (tokens, away) = (token.tokens.clone(), dir.path().join("tokens-away"));
    with_temp_ns(|ns| async move {
        let mut flags = token.controller_flags();
        flags.push("--key-renew-period=0".to_string());
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let conf = token.conf_env();
        let mut g = Gitseal::start_with_env(plane, ns.name(), "gitseal", &flags, &[("SOFTHSM2_CONF", &conf)]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let client = ns.client();
        let apply = |names: std::ops::Range<usize>| {
            let (client, cert, ns_name) = (client.clone(), &cert, ns.name().to_string());
            async move {
                for i in names {
                    let name = format!("s{i}");
                    let value = format!("v{i}");
                    let doc = seal(cert, &ns_name, &name, &[("v", &value)], ApiGroup::Gitseal);
                    gitseal_tests::apply_json(&client, doc).await?;
                }
                Ok::<_, anyhow::Error>(())
            }
        };

        // A batch is being unsealed through the token when its storage goes away.
        apply(0..12).await?;
        secret_with(&ns, "s0", "v", "v0").await?;
        std::fs::rename(&tokens, &away)?;
        // Objects that arrive while it is away cannot be opened: KeyUnavailable, nothing else.
        apply(12..18).await?;
        let late: Vec<String> = (12..18).map(|i| format!("s{i}")).collect();
        let reasons = gitseal_tests::wait_for("late objects report KeyUnavailable", Duration::from_secs(30), || {
            let (ns, late) = (&ns, &late);
            async move {
                let r = sync_reasons(ns, late).await?;
                Ok::<_, anyhow::Error>((r.len() == late.len() && r.iter().all(|(_, why)| !why.is_empty())).then_some(r))
            }
        })
        .await?;
        assert!(reasons.iter().all(|(_, why)| why == "KeyUnavailable"), "{reasons:?}");
        assert!(g.metric("gitseal_unseal_errors_total{reason=\"key_unavailable\"}").await? >= 6.0);
        g.process.check_running()?;

        // The token is back: every object converges, without a restart of the controller.
        std::fs::rename(&away, &tokens)?;
        let started = std::time::Instant::now();
        for i in 0..18 {
            if let Err(e) = secret_with(&ns, &format!("s{i}"), "v", &format!("v{i}")).await {
                g.process.print_log_tail();
                return Err(e);
            }
        }
        let converged = started.elapsed();
        let all: Vec<String> = (0..18).map(|i| format!("s{i}")).collect();
        gitseal_tests::wait_for("every status Synced again", Duration::from_secs(30), || {
            let (ns, all) = (&ns, &all);
            async move {
                let r = sync_reasons(ns, all).await?;
                Ok::<_, anyhow::Error>(
                    (r.len() == all.len() && r.iter().all(|(_, why)| why == "Unsealed")).then_some(()),
                )
            }
        })
        .await?;
        g.process.check_running()?;

        // Never reported as a bad or undecryptable SealedSecret, in metrics or the audit trail.
        for reason in ["decrypt_failed", "invalid"] {
            assert_eq!(
                g.metric(&format!("gitseal_unseal_errors_total{{reason=\"{reason}\"}}")).await?,
                0.0,
                "{reason}"
            );
        }
        let audit = g.audit_lines().join("\n");
        assert!(audit.contains(r#""reason":"KeyUnavailable""#));
        assert!(!audit.contains("InvalidSealedSecret") && !audit.contains("DecryptFailed"));
        eprintln!("token back: 18 objects converged {converged:?} later");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
