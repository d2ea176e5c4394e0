//! Throughput with 1, 2 and 3 shard-holding replicas (`--shards 6`) on the same workload: N
//! SealedSecrets × V values created once the replicas have split the shards, timed until every
//! Secret exists, with the CPU seconds the replicas spent (utime + stime from /proc) per object.
//! On this machine the replicas share the same 2 cores, so wall time cannot drop much; CPU per
//! object shows what sharding costs (each replica watches and caches every object).
//!
//! ```sh
//! cargo bench -p gitseal-controller --bench shards                  # 300 objects × 3 values
//! GITSEAL_BENCH_OBJECTS=1000 cargo bench -p gitseal-controller --bench shards
//! ```
//! Needs `tests/peers/install.sh`. Keys are RSA-4096, as in production. Loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use gitseal_keys::Certificate;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::gitseal::GitsealController;
use gitseal_tests::{ControlPlane, TestNamespace, apply_json, http_get};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

mod support;
use support::{env_usize, sealed};

const SHARDS: u16 = 6;

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) =
        (f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0), f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0));
    (utime + stime) / ticks
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
    out.ok().and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(100.0)
}

async fn metric_sum(url: &str, prefix: &str) -> f64 {
    metric_sum_with(url, prefix, "").await
}

/// [`metric_sum`] over the lines that also contain `label` (e.g. `change="gained"`).
async fn metric_sum_with(url: &str, prefix: &str, label: &str) -> f64 {
    let Ok((_, body)) = http_get(url).await else { return 0.0 };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

async fn produced(api: &Api<Secret>) -> usize {
    api.list_metadata(&ListParams::default().labels("gitseal.dev/managed=true")).await.map_or(0, |l| l.items.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("GITSEAL_BENCH_OBJECTS", 300);
    let values = env_usize("GITSEAL_BENCH_VALUES", 3);
    let ticks = clock_ticks();
    let plane = ControlPlane::start().await.expect("control plane (run tests/peers/install.sh)");
    let client = plane.client().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
    println!("shards: {n} SealedSecrets × {values} values, --shards {SHARDS}, RSA-4096, replicas share 2 cores");

    // The controller namespace holds the key and the Leases; each run watches its own namespace.
    let ctl = TestNamespace::create(client.clone()).await.unwrap();
    let keygen = GitsealController::start(
        &plane,
        binary,
        ctl.name(),
        Some(ctl.name()),
        "bench-keygen",
        &["--key-renew-period=0"],
    )
    .await
    .unwrap();
    let cert = loop {
        if let Ok((200, pem)) = http_get(&format!("{}/v1/cert.pem", keygen.api)).await {
            break Certificate::from_pem(&String::from_utf8(pem).unwrap()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(keygen);

    for replicas in 1..=3usize {
        let work = TestNamespace::create(client.clone()).await.unwrap();
        let lease = format!("--lease-name=bench-{replicas}");
        let shards = format!("--shards={SHARDS}");
        let args =
            ["--key-renew-period=0", "--log-level=warn", "--leader-elect", "--lease-duration=3s", &lease, &shards];
        let mut running = Vec::new();
        for r in 0..replicas {
            let name = format!("bench-{replicas}-{r}");
            running.push(
                GitsealController::start(&plane, binary, ctl.name(), Some(work.name()), &name, &args).await.unwrap(),
            );
        }
        // Wait until the replicas split the shards evenly.
        let t_balance = Instant::now();
        loop {
            let mut owned = Vec::new();
            for g in &running {
                owned.push(metric_sum(&g.metrics, "gitseal_shard_owned{").await);
            }
            if owned.iter().all(|o| *o == f64::from(SHARDS) / replicas as f64) {
                break;
            }
            assert!(t_balance.elapsed() < Duration::from_secs(60), "no balance after 60 s: {owned:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let cpu0: f64 = running.iter().map(|g| cpu_seconds(g.process.id(), ticks)).sum();
        let objects: Vec<_> = (0..n).map(|i| sealed(&cert, work.name(), i, values, ApiGroup::Gitseal)).collect();
        let t0 = Instant::now();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::new();
        for o in objects {
            let (client, sem) = (client.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                apply_json(&client, o).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secrets: Api<Secret> = work.api();
        while produced(&secrets).await < n {
            assert!(t0.elapsed() < Duration::from_secs(600), "no convergence after 10 min");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let wall = t0.elapsed();
        let cpu = running.iter().map(|g| cpu_seconds(g.process.id(), ticks)).sum::<f64>() - cpu0;
        let (mut per_replica, mut gained, mut fenced) = (Vec::new(), 0.0, 0.0);
        for g in &running {
            per_replica.push(metric_sum(&g.metrics, "gitseal_shard_reconciles_total{").await);
            gained += metric_sum_with(&g.metrics, "gitseal_shard_transitions_total{", "change=\"gained\"").await;
            fenced += metric_sum(&g.metrics, "gitseal_shard_fenced_total{").await;
        }
        println!(
            "  {replicas} replica(s): {n} Secrets in {wall:.2?} ({:.1}/s), {cpu:.2} CPU s in all = {:.4} CPU s per object; reconciles started per replica {per_replica:?}; shard gains {gained} (balance included), fenced applies {fenced}",
            n as f64 / wall.as_secs_f64(),
            cpu / n as f64
        );
        for mut g in running {
            g.process.stop(Duration::from_secs(10));
        }
    }
}
