//! How long gitseal-controller takes to turn N SealedSecrets × V values into Secrets from a cold
//! start, what that costs in memory, what a warm restart costs — and the same objects through
//! Bitnami's controller v0.36.6 in the same run.
//!
//! ```sh
//! cargo bench -p gitseal-controller --bench converge                 # 1000 objects × 3 values
//! GITSEAL_BENCH_OBJECTS=200 cargo bench -p gitseal-controller --bench converge
//! GITSEAL_BENCH_SKIP_BITNAMI=1 cargo bench -p gitseal-controller --bench converge   # gitseal only
//! ```
//! Needs `tests/peers/install.sh`. Keys are RSA-4096, as in production. Where SoftHSM2 is
//! installed, the cold start runs a second time with the key generated in a SoftHSM token
//! (`--pkcs11-module`, issue 11): every unwrap goes through the token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use gitseal_keys::Certificate;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::bitnami::{BitnamiController, BitnamiOptions};
use gitseal_tests::gitseal::{GitsealController, Launch};
use gitseal_tests::{ControlPlane, Peer, TestNamespace, apply_json, http_get};

mod support;
use support::{env_usize, sealed, wait_secrets};

async fn create_all(client: &kube::Client, objects: &[serde_json::Value]) -> Duration {
    let start = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for o in objects {
        let (client, o, sem) = (client.clone(), o.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await;
            apply_json(&client, o).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn metric(url: &str, series: &str) -> f64 {
    let Ok((_, body)) = http_get(url).await else { return 0.0 };
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The cold start again with the key in a SoftHSM2 token: same objects, own namespace.
async fn token_cold_start(plane: &ControlPlane, binary: &Path, n: usize, values: usize) {
    let module = gitseal_tests::softhsm::module();
    if !Path::new(&module).exists() {
        println!("  (no SoftHSM2 at {module}: the token cold start is skipped)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = gitseal_tests::softhsm::SoftHsmToken::init(dir.path(), "bench").unwrap();
    let client = plane.client().unwrap();
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    let mut flags = vec!["--key-renew-period=0".to_string(), "--log-level=warn".to_string()];
    flags.extend(token.controller_flags());
    let conf = token.conf_env();
    let start = |name: &'static str| {
        let (ns, flags, conf) = (ns.name().to_string(), &flags, &conf);
        async move {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let env = [("SOFTHSM2_CONF", conf.as_str())];
            let how = Launch { watch: Some(&ns), flags: &flags, env: &env, ..Launch::new(&ns, name) };
            GitsealController::launch(plane, binary, &how).await.unwrap()
        }
    };
    let first = start("bench-token-keygen").await;
    let cert = loop {
        if let Ok((200, pem)) = http_get(&format!("{}/v1/cert.pem", first.api)).await {
            break Certificate::from_pem(&String::from_utf8(pem).unwrap()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(first);
    let objects: Vec<_> = (0..n).map(|i| sealed(&cert, ns.name(), i, values, ApiGroup::Gitseal)).collect();
    create_all(&client, &objects).await;
    let t0 = Instant::now();
    let cold = start("bench-token-cold").await;
    let converged = wait_secrets(&ns, n, t0).await;
    let backend = metric(&cold.metrics, "gitseal_key_backends{backend=\"pkcs11-raw-rsa\"}").await
        + metric(&cold.metrics, "gitseal_key_backends{backend=\"pkcs11-oaep\"}").await;
    assert!(backend >= 1.0, "the key is not held in the token");
    let ops = metric(&cold.metrics, "gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}").await;
    let rss = cold.process.peak_rss_kib().unwrap_or(0);
    println!(
        "  gitseal cold start, key in SoftHSM2: {n} Secrets in {converged:.2?}, peak RSS {:.1} MiB, {ops} RSA private ops",
        rss as f64 / 1024.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("GITSEAL_BENCH_OBJECTS", 1000);
    let values = env_usize("GITSEAL_BENCH_VALUES", 3);
    let plane = ControlPlane::start().await.expect("control plane (run tests/peers/install.sh)");
    let client = plane.client().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
    println!("converge: {n} SealedSecrets × {values} values, RSA-4096, 2 cores");

    // gitseal: make the key, stop, create every object, then start cold.
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    let start_gitseal = |name: &'static str| {
        let ns = ns.name().to_string();
        let plane = &plane;
        async move {
            GitsealController::start(plane, binary, &ns, Some(&ns), name, &["--key-renew-period=0", "--log-level=warn"])
                .await
                .unwrap()
        }
    };
    let first = start_gitseal("bench-keygen").await;
    let cert = loop {
        if let Ok((200, pem)) = http_get(&format!("{}/v1/cert.pem", first.api)).await {
            break Certificate::from_pem(&String::from_utf8(pem).unwrap()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(first);
    let objects: Vec<_> = (0..n).map(|i| sealed(&cert, ns.name(), i, values, ApiGroup::Gitseal)).collect();
    let created = create_all(&client, &objects).await;
    println!("  created {n} SealedSecrets in {created:.1?}");
    let t0 = Instant::now();
    let cold = start_gitseal("bench-cold").await;
    let converged = wait_secrets(&ns, n, t0).await;
    let rss = cold.process.peak_rss_kib().unwrap_or(0);
    let ops = metric(&cold.metrics, "gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}").await;
    println!(
        "  gitseal cold start: {n} Secrets in {converged:.2?}, peak RSS {:.1} MiB, {ops} RSA private ops",
        rss as f64 / 1024.0
    );
    drop(cold);

    // Warm restart: everything already matches.
    let t1 = Instant::now();
    let warm = start_gitseal("bench-warm").await;
    loop {
        if metric(&warm.metrics, "gitseal_reconciles_total{outcome=\"in_sync\"}").await >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let warm_ops =
        metric(&warm.metrics, "gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}").await;
    println!(
        "  gitseal warm restart: {n} objects confirmed in sync in {:.2?}, {warm_ops} RSA private ops",
        t1.elapsed()
    );
    drop(warm);

    token_cold_start(&plane, binary, n, values).await;
    if std::env::var_os("GITSEAL_BENCH_SKIP_BITNAMI").is_some() {
        return;
    }

    // Bitnami's controller on the same workload (its own namespace, its own key).
    let bns = TestNamespace::create(client.clone()).await.unwrap();
    gitseal_tests::install_crds_yaml(&client, &std::fs::read_to_string(Peer::BitnamiCrd.path().unwrap()).unwrap())
        .await
        .unwrap();
    let bitnami = BitnamiController::start(&plane, BitnamiOptions::new(bns.name())).await.unwrap();
    let bcert = Certificate::from_pem(&bitnami.cert_pem().await.unwrap()).unwrap();
    drop(bitnami);
    let bobjects: Vec<_> = (0..n).map(|i| sealed(&bcert, bns.name(), i, values, ApiGroup::Bitnami)).collect();
    create_all(&client, &bobjects).await;
    // Bitnami's client is throttled to 5 requests/s by default (--kubeclient-qps), which alone
    // bounds it to about one object per second; unthrottle it so CPU work is what is compared.
    let t2 = Instant::now();
    let mut options = BitnamiOptions::new(bns.name());
    options.extra_args = vec!["--kubeclient-qps=-1".into(), "--kubeclient-burst=-1".into()];
    let bitnami = BitnamiController::start(&plane, options).await.unwrap();
    let bconverged = wait_secrets(&bns, n, t2).await;
    let brss = bitnami.process().peak_rss_kib().unwrap_or(0);
    println!(
        "  Bitnami v0.36.6 cold start (client unthrottled): {n} Secrets in {bconverged:.2?}, peak RSS {:.1} MiB",
        brss as f64 / 1024.0
    );
}
