//! Soak: gitseal-controller under a steady stream of SealedSecret creates, updates and deletes,
//! with key rotations in between, for a bounded time. Every minute it prints the controller's
//! resident memory, open file descriptors, tokio tasks alive (`gitseal_tokio_alive_tasks`) and
//! the reconcile p99 of that minute; flat after warm-up is the target.
//!
//! ```sh
//! cargo bench -p gitseal-controller --bench soak                        # 10 minutes
//! GITSEAL_SOAK_SECS=120 cargo bench -p gitseal-controller --bench soak  # shorter
//! ```
//! Other knobs: `GITSEAL_SOAK_RATE` (object operations per second, default 5),
//! `GITSEAL_SOAK_OBJECTS` (live population it hovers around, default 300),
//! `GITSEAL_SOAK_ROTATE_SECS` (key renewal period, default 120). Keys are RSA-2048 like the
//! end-to-end tests, so two cores keep up. Needs `tests/peers/install.sh`; loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gitseal_shared::types::ApiGroup;
use gitseal_tests::gitseal::GitsealController;
use gitseal_tests::{ControlPlane, TestNamespace, apply_json, http_get};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use serde_json::json;

mod support;
use support::env_usize;

async fn metrics_text(url: &str) -> String {
    http_get(url).await.map(|(_, b)| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Cumulative histogram buckets of the reconcile duration: upper bound → count.
fn buckets(text: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("gitseal_unseal_duration_seconds_bucket{le=\"")?;
            let (le, v) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, v.trim().parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The p99 upper bound of the reconciles between two bucket snapshots.
fn p99(before: &[(f64, f64)], after: &[(f64, f64)]) -> (f64, f64) {
    let diff: Vec<(f64, f64)> =
        after.iter().map(|(le, c)| (*le, c - before.iter().find(|(l, _)| l == le).map_or(0.0, |b| b.1))).collect();
    let total = diff.last().map_or(0.0, |d| d.1);
    let p = diff.iter().find(|(_, c)| *c >= total * 0.99).map_or(0.0, |d| d.0);
    (p, total)
}

fn proc_sample(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (rss, fds)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = env_usize("GITSEAL_SOAK_SECS", 600) as u64;
    let rate = env_usize("GITSEAL_SOAK_RATE", 5).max(1);
    let population = env_usize("GITSEAL_SOAK_OBJECTS", 300).max(1);
    let rotate = env_usize("GITSEAL_SOAK_ROTATE_SECS", 120);
    let plane = ControlPlane::start().await.expect("control plane (run tests/peers/install.sh)");
    let client = plane.client().unwrap();
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
    let renew = format!("--key-renew-period={rotate}s");
    let args = ["--key-size=2048", "--log-level=warn", renew.as_str()];
    let g = GitsealController::start(&plane, binary, ns.name(), Some(ns.name()), "soak", &args).await.unwrap();
    let pid = g.process.id();
    let cert_url = format!("{}/v1/cert.pem", g.api);
    let ready = format!("{}/readyz", g.api);
    let begin = Instant::now();
    while !matches!(http_get(&ready).await, Ok((200, _))) {
        assert!(begin.elapsed() < Duration::from_secs(60), "controller not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "soak: {secs} s, {rate} ops/s (create/update/delete) around {population} live SealedSecrets, key renewal every {rotate} s, RSA-2048, 2 cores"
    );
    println!(
        "{:>6} {:>9} {:>5} {:>6} {:>9} {:>10} {:>6} {:>5}",
        "min", "rss_kib", "fds", "tasks", "p99_s", "reconciles", "live", "keys"
    );

    let ss_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ApiGroup::Gitseal.api_resource());
    let mut live: BTreeMap<usize, u32> = BTreeMap::new();
    let mut next = 0usize;
    let mut cert = None;
    let mut cert_fetched = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    let start = Instant::now();
    let mut last_report = start;
    let mut last_buckets = buckets(&metrics_text(&g.metrics).await);
    let mut rows = Vec::new();
    let mut op = 0u64;
    let mut errors = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        // The certificate changes with each renewal: fetch it every 10 s, as a CI job would.
        if (cert.is_none() || cert_fetched.elapsed() > Duration::from_secs(10))
            && let Ok((200, body)) = http_get(&cert_url).await
        {
            cert = gitseal_keys::Certificate::from_pem(&String::from_utf8_lossy(&body)).ok();
            cert_fetched = Instant::now();
        }
        let Some(c) = &cert else { continue };
        op += 1;
        let result = match op % 5 {
            // Create (or update when the population is full).
            0 | 1 if live.len() < population => {
                let i = next;
                next += 1;
                live.insert(i, 1);
                apply_json(&client, support::sealed(c, ns.name(), i, 2, ApiGroup::Gitseal)).await.is_ok()
            }
            4 if live.len() > population / 2 => {
                let i = *live.keys().nth(op as usize % live.len()).unwrap();
                live.remove(&i);
                ss_api.delete(&format!("s{i:05}"), &DeleteParams::default()).await.is_ok()
            }
            _ if !live.is_empty() => {
                let i = *live.keys().nth((op as usize * 7) % live.len()).unwrap();
                let v = live.get_mut(&i).unwrap();
                *v += 1;
                let mut doc = support::sealed(c, ns.name(), i, 2, ApiGroup::Gitseal);
                doc["metadata"]["labels"] = json!({"rev": v.to_string()});
                apply_json(&client, doc).await.is_ok()
            }
            _ => true,
        };
        if !result {
            errors += 1;
        }
        if last_report.elapsed() >= Duration::from_secs(60) || start.elapsed() >= Duration::from_secs(secs) {
            last_report = Instant::now();
            let text = metrics_text(&g.metrics).await;
            let now_buckets = buckets(&text);
            let (p, count) = p99(&last_buckets, &now_buckets);
            last_buckets = now_buckets;
            let (rss, fds) = proc_sample(pid);
            let tasks = series(&text, "gitseal_tokio_alive_tasks");
            let keys = series(&text, "gitseal_keys{state=\"active\"}");
            let minute = start.elapsed().as_secs_f64() / 60.0;
            println!("{minute:>6.1} {rss:>9} {fds:>5} {tasks:>6} {p:>9} {count:>10} {:>6} {keys:>5}", live.len());
            rows.push((rss, fds, tasks));
        }
    }
    // Every live object ends as a Secret holding its latest data.
    let secrets: Api<Secret> = ns.api();
    let converge = Instant::now();
    loop {
        let produced = secrets
            .list_metadata(&ListParams::default().labels("gitseal.dev/managed=true"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if produced == live.len() {
            break;
        }
        if converge.elapsed() > Duration::from_secs(120) {
            println!("soak: NOT converged: {produced} Secrets for {} live SealedSecrets", live.len());
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = metrics_text(&g.metrics).await;
    println!(
        "soak: done: {} live objects converged {:.1?} after the load stopped; {} key generations in the audit log; {errors} client errors; controller exited: {}",
        live.len(),
        converge.elapsed(),
        std::fs::read_to_string(&g.audit_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"action\":\"KeyGenerated\""))
            .count(),
        series(&text, "gitseal_leader") != 1.0,
    );
    if let (Some(first), Some(last)) = (rows.get(1).or(rows.first()), rows.last()) {
        println!(
            "soak: after warm-up (minute 2 → end): rss {} → {} KiB, fds {} → {}, tasks {} → {}",
            first.0, last.0, first.1, last.1, first.2, last.2
        );
    }
}
