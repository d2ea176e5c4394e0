//! `template.data`: rendered as Bitnami's controller renders it (checked against the real one),
//! and issue #9's bomb — ten copies of `{{ .password }}` chained eight deep, which killed every
//! replica that picked it up — refused with a reason while both replicas of a leader-elected
//! pair keep running and other SealedSecrets still unseal.

use std::time::Duration;

use gitseal_shared::manifest::parse_documents;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::bitnami::{BitnamiController, BitnamiOptions};
use gitseal_tests::{ControlPlane, Peer, exec_binary, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use serde_json::{Map, Value, json};

use crate::fixture::{Gitseal, TIMEOUT, event_reasons, seal, secret_with, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_exactly_as_bitnamis_controller_renders_them() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let client = ns.client();
        gitseal_tests::install_crds_yaml(&client, &std::fs::read_to_string(Peer::BitnamiCrd.path()?)?).await?;
        let bitnami = BitnamiController::start(plane, BitnamiOptions::new(ns.name())).await?;
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tpl", "namespace": ns.name()},
            "stringData": {"user": "app", "my-pass": "pa ss\n", "password": "pw"}});
        let args = ["--cert", &bitnami.cert_url(), "-o", "json"];
        let input = serde_json::to_vec(&secret)?;
        let timeout = Duration::from_secs(60);
        let out =
            exec_binary(Peer::Kubeseal.path()?, args, std::iter::empty::<(&str, &str)>(), &input, timeout).await?;
        let mut sealed = parse_documents(&String::from_utf8(out)?)?.remove(0).value;
        sealed["spec"]["template"]["data"] = json!({
            "dsn": "postgres://{{ .user }}:{{ index . \"my-pass\" }}@db/{{index . `user`}}",
            "trimmed": "a \n\t {{- .user -}} \n b {{- .password }} c {{ .password -}} d",
            "password": "<{{ .password }}>",
            "copy": "{{ .password }}{{ .password }}",
            "literal": "no actions",
        });
        gitseal_tests::apply_json(&client, sealed).await?;
        let bitnami_secret = secret_with(&ns, "tpl", "password", "<pw>").await?;
        let bitnami_data = bitnami_secret.data.unwrap_or_default();
        drop(bitnami);

        // gitseal takes over with Bitnami's key and makes the Secret again.
        let secrets: Api<Secret> = ns.api();
        secrets.delete("tpl", &DeleteParams::default()).await?;
        let mut g = Gitseal::start(plane, ns.name(), &["--bitnami-compat", "--key-renew-period=0"]).await?;
        g.ready().await?;
        let ours = wait_for("gitseal's Secret tpl", TIMEOUT, || {
            let secrets = secrets.clone();
            async move {
                let s = secrets.get_opt("tpl").await?;
                Ok::<_, kube::Error>(s.filter(|s| {
                    s.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("gitseal.dev/sealed-by"))
                }))
            }
        })
        .await?;
        let ours = ours.data.unwrap_or_default();
        assert_eq!(ours, bitnami_data);
        assert_eq!(ours["trimmed"].0, b"aappbpw c pwd");
        assert_eq!(ours["dsn"].0, b"postgres://app:pa ss\n@db/app");
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

fn bomb() -> Value {
    let mut templates = Map::new();
    templates.insert("t0".into(), "{{ .password }}".repeat(10).into());
    for i in 1..8 {
        templates.insert(format!("t{i}"), format!("{{{{ .t{} }}}}", i - 1).repeat(10).into());
    }
    Value::Object(templates)
}

fn condition(v: &Value, field: &str) -> String {
    v.pointer(&format!("/status/conditions/0/{field}")).and_then(Value::as_str).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_template_bomb_leaves_both_replicas_running_and_others_unsealing() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let args = ["--leader-elect", "--lease-duration=4s"];
        let mut a = Gitseal::start_named(plane, ns.name(), "replica-a", &args).await?;
        a.ready().await?;
        let mut b = Gitseal::start_named(plane, ns.name(), "replica-b", &args).await?;
        b.ready().await?;
        let cert = a.cert().await?;
        let client = ns.client();

        // The chained bomb: entries see only decrypted values, so t1 names a missing item.
        let mut chained = seal(&cert, ns.name(), "chained", &[("password", "hunter2-hunter2")], ApiGroup::Gitseal);
        chained["spec"]["template"]["data"] = bomb();
        gitseal_tests::apply_json(&client, chained).await?;
        let s = synced(&ns, ApiGroup::Gitseal, "chained", "False").await?;
        assert_eq!(condition(&s, "reason"), "TemplateFailed");
        let message = condition(&s, "message");
        assert!(message.contains("template.data[t1] refers to \"t0\""), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        // The fan-out against one large value trips the Secret size limit instead.
        let big = "x".repeat(200 * 1024);
        let mut wide = seal(&cert, ns.name(), "wide", &[("password", &big)], ApiGroup::Gitseal);
        wide["spec"]["template"]["data"] = json!({"copies": "{{ .password }}".repeat(10)});
        gitseal_tests::apply_json(&client, wide).await?;
        let s = synced(&ns, ApiGroup::Gitseal, "wide", "False").await?;
        assert_eq!(condition(&s, "reason"), "TemplateFailed");
        assert!(condition(&s, "message").contains("Kubernetes' Secret size limit"), "{s}");

        // No ciphertext at all: the bomb needs no key, and is refused the same way.
        let mut empty = seal(&cert, ns.name(), "empty", &[("password", "x")], ApiGroup::Gitseal);
        empty["spec"]["encryptedData"] = json!({});
        empty["spec"]["template"]["data"] = bomb();
        gitseal_tests::apply_json(&client, empty).await?;
        let s = synced(&ns, ApiGroup::Gitseal, "empty", "False").await?;
        assert_eq!(condition(&s, "reason"), "TemplateFailed");
        assert!(event_reasons(&ns, "chained").await?.iter().any(|r| r == "TemplateFailed"));

        // Both replicas survive, and a SealedSecret created afterwards still unseals.
        a.process.check_running()?;
        b.process.check_running()?;
        let after = seal(&cert, ns.name(), "after", &[("k", "v")], ApiGroup::Gitseal);
        gitseal_tests::apply_json(&client, after).await?;
        secret_with(&ns, "after", "k", "v").await?;
        a.process.check_running()?;
        b.process.check_running()?;
        a.ready().await?;
        b.ready().await?;
        assert_eq!(a.metric("gitseal_leader").await? + b.metric("gitseal_leader").await?, 1.0);
        // Within the chart's 256 Mi memory limit, where the old renderer needed gigabytes.
        for g in [&a, &b] {
            let peak = g.process.peak_rss_kib().unwrap_or(0);
            eprintln!("{}: peak RSS {peak} KiB", g.process.name());
            assert!(peak > 0 && peak < 256 * 1024, "peak RSS {peak} KiB");
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
