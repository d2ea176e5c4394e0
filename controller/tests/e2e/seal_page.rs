//! The sealing page, served by the controller, in a real headless Chromium: a value sealed in
//! the page unseals in the controller in every scope, and no request the page makes carries it.

use std::time::Duration;

use gitseal_shared::manifest::parse_documents;
use gitseal_tests::browser::{Browser, log_mentions};
use gitseal_tests::{ControlPlane, with_temp_ns};
use serde_json::json;

use crate::fixture::{Gitseal, secret_with};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_sealed_in_the_page_unseals_in_the_controller_in_every_scope_and_is_never_sent() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let url = format!("{}/seal/", g.api);
        let namespace = ns.name().to_string();
        let logs = tempfile::tempdir()?;
        let scopes = ["strict", "namespace-wide", "cluster-wide"];
        let plain = |scope: &str| format!("pl41n-{scope}-7Qx9Vb2Kd");

        // The browser is driven synchronously (WebDriver over HTTP) on this worker thread.
        let (sealed, log) = tokio::task::block_in_place(|| -> anyhow::Result<_> {
            let b = Browser::start(logs.path())?;
            b.goto(&url)?;
            b.wait_until("the page to load its key", "return document.body.dataset.ready === 'true';", WAIT)?;
            let shown = b.execute("return document.getElementById('key-id').textContent;", json!([]))?;
            assert_eq!(shown, json!(cert.key_id().as_str()), "the page names the key it seals for");
            let mut sealed = Vec::new();
            for scope in scopes {
                let name = format!("web-{scope}");
                b.select("#scope", scope)?;
                b.type_into("#name", &name)?;
                b.type_into("#namespace", &namespace)?;
                b.type_into("#key-1", "password")?;
                b.type_into("#value-1", &plain(scope))?;
                b.click("#seal")?;
                let marker = format!("  name: {name}\n");
                let yaml = b.wait_until(
                    "the sealed YAML",
                    &format!("const v = document.getElementById('output').value; return v.includes({marker:?}) && v;"),
                    WAIT,
                )?;
                sealed.push((scope, name, yaml.as_str().unwrap_or_default().to_string()));
            }
            // The search can find what a request carries: a probe sent on purpose is found.
            b.execute(
                "return fetch('../v1/cert.pem?probe=' + arguments[0]).then(r => r.status);",
                json!(["pr0beXq7Lm2Zt"]),
            )?;
            std::thread::sleep(Duration::from_millis(300));
            Ok((sealed, b.network_log()?))
        })?;
        assert!(log_mentions(&log, "pr0beXq7Lm2Zt"), "the network log search finds a probe");
        assert!(log.iter().any(|e| e.contains("Network.requestWillBeSent") && e.contains("cert.pem")));

        let client = ns.client();
        for (scope, name, yaml) in &sealed {
            assert!(!log_mentions(&log, &plain(scope)), "a request carried the {scope} plaintext");
            assert!(!yaml.contains(&plain(scope)));
            let doc = parse_documents(yaml)?.remove(0);
            gitseal_tests::apply_json(&client, doc.value).await?;
            secret_with(&ns, name, "password", &plain(scope)).await?;
        }
        g.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
