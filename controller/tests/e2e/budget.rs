//! Private-key work has a budget (issue #9): an API flood cannot stop unsealing, and a caller
//! cannot pick its own rate-limit bucket with X-Forwarded-For.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, with_temp_ns};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixture::{Gitseal, seal, secret_with};

/// POST `body` to `url` (`http://host:port/path`) with extra header lines; the status code.
pub async fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<u16> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("not an http:// URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = tokio::net::TcpStream::connect(authority).await?;
    let mut req = format!("POST {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp)).await??;
    let head = String::from_utf8_lossy(&resp[..resp.len().min(64)]).into_owned();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow::anyhow!("bad response {head:?}"))
}

/// A SealedSecret of `items` values for `cert` without key hints: every item costs a private
/// operation per key tried, the worst case a caller can send.
pub fn worst_case_body(cert: &gitseal_keys::Certificate, ns: &str, items: usize) -> Vec<u8> {
    let values: Vec<(String, String)> = (0..items).map(|i| (format!("k{i:04}"), format!("v{i}"))).collect();
    let data: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut ss = seal(cert, ns, "flood", &data, ApiGroup::Bitnami);
    if let Some(a) = ss.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.retain(|k, _| !k.contains("key-id"));
    }
    serde_json::to_vec(&ss).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_verify_calls_from_one_client_does_not_stop_another_object_from_unsealing() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        // Limits opened wide, so the flood really reaches the private-key pool.
        let flags = [
            "--private-key-threads=2",
            "--rate-limit=100000",
            "--rate-limit-burst=100000",
            "--api-private-ops-rate=100000",
            "--api-private-ops-burst=100000",
        ];
        let mut g = Gitseal::start(plane, ns.name(), &flags).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let body = Arc::new(worst_case_body(&cert, ns.name(), 200));
        let url = format!("{}/v1/verify", g.api);
        let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        let flood: Vec<_> = (0..6)
            .map(|_| {
                let (body, url, stop, answered) = (body.clone(), url.clone(), stop.clone(), answered.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok(200) = post(&url, &[], &body).await {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        // Let the flood fill the pool's API queue, then create the object that must unseal.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        gitseal_tests::apply_json(
            &ns.client(),
            seal(&cert, ns.name(), "victim", &[("p", "s3cret")], ApiGroup::Gitseal),
        )
        .await?;
        secret_with(&ns, "victim", "p", "s3cret").await?;
        let took = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        for f in flood {
            f.await?;
        }
        let api_ops = g.metric("gitseal_private_key_operations_total{caller=\"api\",outcome=\"ok\"}").await?;
        assert!(answered.load(Ordering::SeqCst) >= 1 && api_ops >= 200.0, "the flood did real work ({api_ops} ops)");
        assert!(took < Duration::from_secs(5), "unsealing waited {took:?} behind the flood");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_change_the_rate_limit_key() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--rate-limit=0.1", "--rate-limit-burst=2"]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let body = serde_json::to_vec(&seal(&cert, ns.name(), "db", &[("p", "v")], ApiGroup::Bitnami))?;
        let url = format!("{}/v1/verify", g.api);
        let mut codes = Vec::new();
        for i in 0..6 {
            let forged = format!("203.0.113.{i}");
            codes.push(post(&url, &[("X-Forwarded-For", &forged)], &body).await?);
        }
        assert_eq!(codes, [200, 200, 429, 429, 429, 429], "one bucket for the peer, whatever the header says");
        let lines = g.audit_lines();
        let limited: Vec<&String> = lines.iter().filter(|l| l.contains("\"reason\":\"rate_limited\"")).collect();
        assert_eq!(limited.len(), 4, "every refusal is audited");
        assert!(limited.iter().all(|l| l.contains("unauthenticated:127.0.0.1")), "{limited:?}");
        assert!(!lines.iter().any(|l| l.contains("203.0.113.")), "a forged address is never believed");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
