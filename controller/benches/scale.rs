//! Scale (issue #14): cold start, warm restart and peak RSS of gitseal-controller beside
//! Bitnami's controller v0.36.6 on the same objects, kubeseal-made objects on 13 keys, and
//! time-to-Secret of new objects created while thousands of unchanged ones are re-checked.
//!
//! ```sh
//! # the issue's table: 1000 × 3 values × 13 keys made by the real kubeseal (--bitnami-compat),
//! # the same sealed by gitseal (key ids), 5000 × 3 × 1 key; each beside Bitnami
//! cargo bench -p gitseal-controller --bench scale
//! # 10,000 and 50,000 objects × 1 value: cold start, warm restart, peak RSS, and p50/p99
//! # time-to-Secret of 100 new objects created during the start-up resync of the first size
//! GITSEAL_BENCH_SCALE=big GITSEAL_BENCH_SIZES=10000,50000 cargo bench -p gitseal-controller --bench scale
//! ```
//! `GITSEAL_BENCH_BITNAMI=0` skips Bitnami. Needs `tests/peers/install.sh`; loopback only;
//! bounded (every wait fails after 30 minutes). Keys are RSA-4096, as in production.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gitseal_keys::generate::{KeyPair, generate_key_pair};
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::types::ApiGroup;
use gitseal_tests::bitnami::{BitnamiController, BitnamiOptions};
use gitseal_tests::gitseal::{GitsealController, Launch};
use gitseal_tests::{ControlPlane, Peer, TestNamespace, apply_json, exec_binary, http_get};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

mod support;
use support::{env_usize, sealed, wait_secrets};

const LIMIT: Duration = Duration::from_secs(1800);
const OPS: &str = "gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}";

async fn create_all(client: &kube::Client, objects: Vec<serde_json::Value>) -> Duration {
    let start = Instant::now();
    futures::stream::iter(objects)
        .for_each_concurrent(16, |o| {
            let client = client.clone();
            async move {
                apply_json(&client, o).await.unwrap();
            }
        })
        .await;
    start.elapsed()
}

async fn metric(url: &str, series: &str) -> f64 {
    let Ok((_, body)) = http_get(url).await else { return 0.0 };
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn wait_metric(url: &str, series: &str, at_least: f64) {
    let t = Instant::now();
    while metric(url, series).await < at_least {
        assert!(t.elapsed() < LIMIT, "{series} never reached {at_least}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn mib(kib: Option<u64>) -> f64 {
    kib.unwrap_or(0) as f64 / 1024.0
}

/// `count` RSA-4096 key Secrets (both labels) in `ns`, NotBefore a month apart, oldest first.
async fn key_secrets(client: &kube::Client, ns: &str, pairs: &[KeyPair]) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for (i, p) in pairs.iter().enumerate() {
        let data = p.secret_data().unwrap().into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
        let labels = [("gitseal.dev/key", "active"), ("sealedsecrets.bitnami.com/sealed-secrets-key", "active")];
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("sealed-secrets-key{i:02}")),
                labels: Some(labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
}

fn pairs(count: usize) -> Vec<KeyPair> {
    let now = time::OffsetDateTime::now_utc();
    (0..count)
        .map(|i| {
            let age = time::Duration::days(30 * (count - i) as i64);
            generate_key_pair(gitseal_keys::RsaBits::Rsa4096, "", now - age, time::Duration::days(3650)).unwrap()
        })
        .collect()
}

/// The real kubeseal seals object `i` (`values` items) for one of `pairs`, spread evenly, as
/// objects sealed over a year of monthly renewals are.
async fn kubeseal_all(pairs: &[KeyPair], ns: &str, n: usize, values: usize) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let certs: Vec<String> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = dir.path().join(format!("k{i}.pem"));
            std::fs::write(&path, p.cert.pem()).unwrap();
            path.display().to_string()
        })
        .collect();
    let certs = Arc::new(certs);
    futures::stream::iter(0..n)
        .map(|i| {
            let certs = certs.clone();
            let ns = ns.to_string();
            async move {
                let data: serde_json::Map<String, serde_json::Value> =
                    (0..values).map(|v| (format!("key{v}"), json!(format!("value-{i}-{v}")))).collect();
                let secret = json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("s{i:05}"), "namespace": ns}, "stringData": data});
                let cert = &certs[i % certs.len()];
                let out = exec_binary(
                    Peer::Kubeseal.path().unwrap(),
                    ["--cert", cert.as_str(), "-o", "json"],
                    std::iter::empty::<(&str, &str)>(),
                    &serde_json::to_vec(&secret).unwrap(),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
                parse_documents(&String::from_utf8(out).unwrap()).unwrap().remove(0).value
            }
        })
        .buffered(4)
        .collect()
        .await
}

struct Run<'a> {
    plane: &'a ControlPlane,
    client: kube::Client,
    binary: &'a Path,
    bitnami: bool,
}

impl Run<'_> {
    async fn gitseal(&self, ns: &TestNamespace, name: &'static str, extra: &[&str]) -> GitsealController {
        let mut flags = vec!["--key-renew-period=0", "--log-level=warn"];
        flags.extend_from_slice(extra);
        let profile = heaptrack(name);
        // GITSEAL_BENCH_CONTROLLER_ENV="MALLOC_ARENA_MAX=2,…": more environment for the controller.
        let extra = std::env::var("GITSEAL_BENCH_CONTROLLER_ENV").unwrap_or_default();
        let mut env: Vec<(&str, &str)> = extra.split(',').filter_map(|kv| kv.split_once('=')).collect();
        env.extend(profile.iter().flat_map(|p| p.env()));
        let how = gitseal_tests::gitseal::Launch {
            watch: Some(ns.name()),
            flags: &flags,
            env: &env,
            ..Launch::new(ns.name(), name)
        };
        GitsealController::launch(self.plane, self.binary, &how).await.unwrap()
    }

    /// gitseal cold start on `objects` already in `ns`; prints time, peak RSS, private ops.
    async fn gitseal_cold(&self, what: &str, ns: &TestNamespace, n: usize, extra: &[&str]) {
        let t = Instant::now();
        let g = self.gitseal(ns, "bench-cold", extra).await;
        let took = wait_secrets(ns, n, t).await;
        let ops = metric(&g.metrics, OPS).await;
        println!(
            "  {what}: gitseal {n} Secrets in {took:.1?}, peak RSS {:.1} MiB, {ops} private ops ({:.2} per object)",
            mib(g.process.peak_rss_kib()),
            ops / n as f64
        );
    }

    /// Bitnami's controller (client unthrottled) on `objects` already in `ns`.
    async fn bitnami_cold(&self, what: &str, ns: &TestNamespace, n: usize) {
        if !self.bitnami {
            return;
        }
        let t = Instant::now();
        let mut options = BitnamiOptions::new(ns.name());
        // Its client is throttled to 5 requests/s by default: unthrottle it so work is compared.
        options.extra_args = vec!["--kubeclient-qps=-1".into(), "--kubeclient-burst=-1".into()];
        let b = BitnamiController::start(self.plane, options).await.unwrap();
        let took = wait_secrets(ns, n, t).await;
        println!(
            "  {what}: Bitnami v0.36.6 {n} Secrets in {took:.1?}, peak RSS {:.1} MiB",
            mib(b.process().peak_rss_kib())
        );
    }
}

async fn table(run: &Run<'_>) {
    let n = env_usize("GITSEAL_BENCH_OBJECTS", 1000);
    let big_n = env_usize("GITSEAL_BENCH_ONE_KEY_OBJECTS", 5000);
    let values = 3;
    let keys = pairs(13);
    let client = &run.client;

    // kubeseal-made (no key ids), 13 keys, --bitnami-compat.
    let what = format!("{n} × {values} values, 13 keys, kubeseal-made, --bitnami-compat");
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    key_secrets(client, ns.name(), &keys).await;
    create_all(client, kubeseal_all(&keys, ns.name(), n, values).await).await;
    run.gitseal_cold(&what, &ns, n, &["--bitnami-compat"]).await;
    if run.bitnami {
        let bns = TestNamespace::create(client.clone()).await.unwrap();
        key_secrets(client, bns.name(), &keys).await;
        create_all(client, kubeseal_all(&keys, bns.name(), n, values).await).await;
        run.bitnami_cold(&what, &bns, n).await;
    }

    // The same shape sealed by gitseal (a key-id annotation on each object).
    let what = format!("{n} × {values} values, 13 keys, sealed by gitseal");
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    key_secrets(client, ns.name(), &keys).await;
    let objects = (0..n).map(|i| sealed(&keys[i % keys.len()].cert, ns.name(), i, values, ApiGroup::Gitseal)).collect();
    create_all(client, objects).await;
    run.gitseal_cold(&what, &ns, n, &[]).await;

    // One key, more objects.
    let what = format!("{big_n} × {values} values, 1 key");
    let one = &keys[12..];
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    key_secrets(client, ns.name(), one).await;
    let objects = (0..big_n).map(|i| sealed(&one[0].cert, ns.name(), i, values, ApiGroup::Bitnami)).collect();
    create_all(client, objects).await;
    run.gitseal_cold(&what, &ns, big_n, &["--bitnami-compat"]).await;
    if run.bitnami {
        let bns = TestNamespace::create(client.clone()).await.unwrap();
        key_secrets(client, bns.name(), one).await;
        let objects = (0..big_n).map(|i| sealed(&one[0].cert, bns.name(), i, values, ApiGroup::Bitnami)).collect();
        create_all(client, objects).await;
        run.bitnami_cold(&what, &bns, big_n).await;
    }
}

/// p50, p99 and max of `d`.
fn quantiles(mut d: Vec<Duration>) -> (Duration, Duration, Duration) {
    d.sort();
    let at = |q: f64| d[((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1];
    (at(0.5), at(0.99), *d.last().unwrap())
}

async fn big(run: &Run<'_>) {
    let sizes: Vec<usize> = std::env::var("GITSEAL_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,50000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let values = env_usize("GITSEAL_BENCH_VALUES", 1);
    let fresh = env_usize("GITSEAL_BENCH_NEW", 100);
    let key = pairs(1);
    let client = &run.client;
    for (round, &n) in sizes.iter().enumerate() {
        println!("{n} objects × {values} value(s), 1 key:");
        let ns = TestNamespace::create(client.clone()).await.unwrap();
        key_secrets(client, ns.name(), &key).await;
        let objects = (0..n).map(|i| sealed(&key[0].cert, ns.name(), i, values, ApiGroup::Gitseal)).collect();
        let created = create_all(client, objects).await;
        println!("  created in {created:.1?}");
        let t = Instant::now();
        let g = run.gitseal(&ns, "bench-cold", &[]).await;
        let took = wait_secrets(&ns, n, t).await;
        // Every status written too, so the warm restart finds them unchanged.
        wait_metric(&g.metrics, "gitseal_reconciles_total{outcome=\"unsealed\"}", n as f64).await;
        println!(
            "  cold start: {n} Secrets in {took:.1?}, peak RSS {:.1} MiB, CPU {:.1} s",
            mib(g.process.peak_rss_kib()),
            cpu_seconds(&g)
        );
        drop(g);
        tokio::time::sleep(Duration::from_secs(2)).await;

        let t = Instant::now();
        let g = run.gitseal(&ns, "bench-warm", &[]).await;
        // New objects during the start-up resync (first size only).
        let mut latencies = Vec::new();
        if round == 0 && fresh > 0 {
            let mut ready = false;
            while !ready {
                ready = matches!(http_get(&format!("{}/readyz", g.api)).await, Ok((200, _)));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let secrets: Api<Secret> = ns.api();
            let seen = Arc::new(std::sync::Mutex::new(HashMap::<String, Instant>::new()));
            let watch = {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut s = watcher(secrets, watcher::Config::default()).applied_objects().boxed();
                    while let Some(Ok(o)) = s.next().await {
                        let name = o.metadata.name.unwrap_or_default();
                        seen.lock().unwrap().entry(name).or_insert_with(Instant::now);
                    }
                })
            };
            let mut sent = HashMap::new();
            for i in 0..fresh {
                let name = format!("new{i:03}");
                let o = support::sealed_named(&key[0].cert, ns.name(), &name, values, ApiGroup::Gitseal);
                apply_json(client, o).await.unwrap();
                sent.insert(name, Instant::now());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let backlog_at_end = metric(&g.metrics, "gitseal_resync_backlog").await;
            let start = Instant::now();
            loop {
                let done = sent.keys().filter(|k| seen.lock().unwrap().contains_key(*k)).count();
                if done == fresh {
                    break;
                }
                assert!(start.elapsed() < LIMIT, "new objects never converged");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            watch.abort();
            latencies = {
                let seen = seen.lock().unwrap();
                sent.iter().map(|(k, at)| seen[k].saturating_duration_since(*at)).collect()
            };
            let in_sync = metric(&g.metrics, "gitseal_reconciles_total{outcome=\"in_sync\"}").await;
            println!(
                "  {fresh} new objects during the start-up resync: {in_sync} of {n} unchanged re-checked when the last converged, {backlog_at_end} waiting when the last was created"
            );
        }
        wait_metric(&g.metrics, "gitseal_reconciles_total{outcome=\"in_sync\"}", n as f64).await;
        println!(
            "  warm restart: {n} confirmed in sync in {:.1?}, peak RSS {:.1} MiB (now {:.1} MiB: heap and stacks {:.1}, mapped files {:.1}), {} private ops, CPU {:.1} s",
            t.elapsed(),
            mib(g.process.peak_rss_kib()),
            mib(rss_now(&g)),
            mib(status_kib(&g, "RssAnon:")),
            mib(status_kib(&g, "RssFile:")),
            metric(&g.metrics, OPS).await,
            cpu_seconds(&g)
        );
        if !latencies.is_empty() {
            let (p50, p99, max) = quantiles(latencies);
            println!("  time-to-Secret of the new objects: p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}");
        }
    }
}

/// `GITSEAL_BENCH_HEAPTRACK=<dir>`: every controller run records its heap with heaptrack
/// (Debian package `heaptrack`) into `<dir>/<name>.zst`; read it with
/// `heaptrack_print -f <dir>/<name>.zst`. The run itself is slower and its RSS higher.
struct Heaptrack {
    fifo: String,
}

impl Heaptrack {
    fn env(&self) -> [(&str, &str); 2] {
        [("LD_PRELOAD", "/usr/lib/heaptrack/libheaptrack_preload.so"), ("DUMP_HEAPTRACK_OUTPUT", &self.fifo)]
    }
}

/// Interpreters still writing their profile; waited for at the end of the run.
static INTERPRETERS: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

fn heaptrack(name: &str) -> Option<Heaptrack> {
    let dir = std::env::var("GITSEAL_BENCH_HEAPTRACK").ok()?;
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = format!("{dir}/{name}.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo {fifo}");
    // The interpreter reads until the controller closes the pipe (when it exits).
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("/usr/lib/heaptrack/libexec/heaptrack_interpret < {fifo} | zstd -q -c > {dir}/{name}.zst"))
        .spawn()
        .unwrap();
    INTERPRETERS.lock().unwrap().push(child);
    Some(Heaptrack { fifo })
}

/// Resident set of the controller now (`VmRSS`), beside the peak the harness reads (`VmHWM`).
fn rss_now(g: &GitsealController) -> Option<u64> {
    status_kib(g, "VmRSS:")
}

/// A `/proc/<pid>/status` line in KiB (`VmRSS:`, `RssAnon:`, `RssFile:`).
fn status_kib(g: &GitsealController, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", g.process.pid())).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of the controller so far (`/proc/<pid>/stat`).
fn cpu_seconds(g: &GitsealController) -> f64 {
    let pid = g.process.pid();
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let plane = ControlPlane::start().await.expect("control plane (run tests/peers/install.sh)");
    let client = plane.client().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
    // gitseal's CRDs (both groups) before any object is created.
    gitseal_tests::gitseal::install_crds(&client).await.unwrap();
    let run = Run {
        plane: &plane,
        client,
        binary,
        bitnami: std::env::var("GITSEAL_BENCH_BITNAMI").map_or(true, |v| v != "0"),
    };
    println!("scale: RSA-4096, 2 cores, real kube-apiserver + etcd");
    match std::env::var("GITSEAL_BENCH_SCALE").as_deref() {
        Ok("big") => big(&run).await,
        _ => table(&run).await,
    }
    for mut child in std::mem::take(&mut *INTERPRETERS.lock().unwrap()) {
        let _ = child.wait();
    }
}
