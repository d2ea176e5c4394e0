//! Does an API flood delay unsealing? 200 new SealedSecrets are created on the real control
//! plane while four clients (127.0.0.2–5, each its own rate-limit bucket) flood `/v1/verify` and
//! `/v1/rotate` with worst-case bodies: many items, no key hints, items sealed in turn for each
//! of 13 loaded RSA-4096 keys, so each item may cost a private operation per key. Reports p50/p99
//! time-to-Secret without and with the flood, the controller's CPU seconds and private-key
//! operations spent on API work, and whether the leader ever lost its Lease.
//!
//! ```sh
//! cargo bench -p gitseal-controller --bench flood
//! GITSEAL_BENCH_OBJECTS=100 GITSEAL_BENCH_FLOOD_LIMITS=open cargo bench -p gitseal-controller --bench flood
//! ```
//! `GITSEAL_BENCH_FLOOD_LIMITS=open` lifts the per-client limits so only the private-key pool's
//! priority protects unsealing. Needs `tests/peers/install.sh`; loopback only; bounded (each
//! phase stops after its objects converge, or fails after 5 minutes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gitseal_keys::generate::{KeyPair, generate_key_pair};
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::seal::{SealOptions, seal_secret};
use gitseal_shared::value::{RecipientSet, encode_base64};
use gitseal_tests::gitseal::GitsealController;
use gitseal_tests::{ControlPlane, TestNamespace, apply_json, http_get};
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::env_usize;

const KEYS: usize = 13;
const FLOOD_ITEMS: usize = 200;
const PHASE_LIMIT: Duration = Duration::from_secs(300);

/// A SealedSecret `name` with one value for the newest key (as a real one is).
fn sealed(pair: &KeyPair, ns: &str, name: &str) -> serde_json::Value {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns}, "stringData": {"password": format!("pw-{name}")}});
    let plain = PlainSecret::from_value(&secret).unwrap();
    let set = RecipientSet::new(vec![pair.cert.recipient().unwrap()]).unwrap();
    serde_json::to_value(seal_secret(&plain, &set, &SealOptions::default()).unwrap()).unwrap()
}

/// The worst body a caller can send: FLOOD_ITEMS items, item i sealed for key i mod 13, no
/// key-id hint, so keys are tried in turn for each item.
fn worst_case(pairs: &[KeyPair], ns: &str) -> Vec<u8> {
    let target = gitseal_shared::Target::new(gitseal_shared::Scope::Strict, Some(ns), Some("flood")).unwrap();
    let sets: Vec<RecipientSet> =
        pairs.iter().map(|p| RecipientSet::new(vec![p.cert.recipient().unwrap()]).unwrap()).collect();
    let data: serde_json::Map<String, serde_json::Value> = (0..FLOOD_ITEMS)
        .map(|i| (format!("k{i:04}"), json!(encode_base64(&sets[i % sets.len()].seal(&target, b"x").unwrap()))))
        .collect();
    serde_json::to_vec(&json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "flood", "namespace": ns}, "spec": {"encryptedData": data}}))
    .unwrap()
}

/// One POST from `source` (a loopback address of its own); the status code.
async fn post(source: &str, api: SocketAddr, path: &str, body: &[u8]) -> Option<u16> {
    let sock = tokio::net::TcpSocket::new_v4().ok()?;
    sock.bind(format!("{source}:0").parse().ok()?).ok()?;
    let mut s = sock.connect(api).await.ok()?;
    let head = format!("POST {path} HTTP/1.0\r\nHost: {api}\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut resp)).await.ok()?.ok()?;
    String::from_utf8_lossy(&resp[..resp.len().min(32)]).split_whitespace().nth(1)?.parse().ok()
}

async fn metric_sum(url: &str, prefix: &str) -> f64 {
    let Ok((_, body)) = http_get(url).await else { return 0.0 };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct Phase {
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu: f64,
    api_ops: f64,
    api_cpu: f64,
    answered: HashMap<u16, u64>,
    lease_kept: bool,
}

/// Create `n` SealedSecrets at a steady pace (optionally under a flood) and time each to its
/// Secret.
async fn phase(
    g: &GitsealController,
    ns: &TestNamespace,
    newest: &KeyPair,
    prefix: &str,
    n: usize,
    flood_body: Option<Arc<Vec<u8>>>,
) -> Phase {
    let client = ns.client();
    let secrets: Api<Secret> = ns.api();
    let leases: Api<Lease> = ns.api();
    let lease_before = leases.get_opt("gitseal-controller").await.unwrap();
    let seen: Arc<tokio::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut stream = watcher(secrets, watcher::Config::default()).boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = ev
                    && let Some(name) = s.metadata.name
                {
                    seen.lock().await.entry(name).or_insert_with(Instant::now);
                }
            }
        })
    };
    let api: SocketAddr = g.api.trim_start_matches("http://").parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<std::sync::Mutex<HashMap<u16, u64>>> = Arc::default();
    let mut flooders = Vec::new();
    if let Some(body) = &flood_body {
        for c in 0..4 {
            let (body, stop, answered) = (body.clone(), stop.clone(), answered.clone());
            flooders.push(tokio::spawn(async move {
                let source = format!("127.0.0.{}", c + 2);
                let path = if c % 2 == 0 { "/v1/verify" } else { "/v1/rotate" };
                while !stop.load(Ordering::SeqCst) {
                    let code = post(&source, api, path, &body).await.unwrap_or(0);
                    *answered.lock().unwrap().entry(code).or_default() += 1;
                    if code == 429 || code == 503 {
                        // A well-behaved client would wait Retry-After; a flooder does not.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let leader_seen_down = Arc::new(AtomicU64::new(0));
    let lease_probe = {
        let (metrics, stop, down) = (g.metrics.clone(), stop.clone(), leader_seen_down.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if metric_sum(&metrics, "gitseal_leader ").await < 1.0 {
                    down.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let (cpu0, ops0) = (
        cpu_seconds(g.process.id()),
        metric_sum(&g.metrics, "gitseal_private_key_operations_total{caller=\"api\"").await,
    );
    let t0 = Instant::now();
    let mut created = HashMap::new();
    for i in 0..n {
        let name = format!("{prefix}{i:04}");
        created.insert(name.clone(), Instant::now());
        apply_json(&client, sealed(newest, ns.name(), &name)).await.unwrap();
        // A steady stream of new objects (20 a second), as a busy GitOps sync produces.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let done = seen.lock().await.keys().filter(|k| k.starts_with(prefix)).count();
        if done >= n {
            break;
        }
        assert!(t0.elapsed() < PHASE_LIMIT, "only {done}/{n} Secrets after {PHASE_LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cpu_seconds(g.process.id()) - cpu0;
    let api_ops = metric_sum(&g.metrics, "gitseal_private_key_operations_total{caller=\"api\"").await - ops0;
    stop.store(true, Ordering::SeqCst);
    for f in flooders {
        f.await.unwrap();
    }
    lease_probe.await.unwrap();
    watch.abort();
    let seen = seen.lock().await;
    let mut times: Vec<Duration> =
        created.iter().map(|(name, at)| seen.get(name).map(|s| s.saturating_duration_since(*at)).unwrap()).collect();
    times.sort();
    let lease_after = leases.get_opt("gitseal-controller").await.unwrap();
    let holder = |l: &Option<Lease>| l.as_ref().and_then(|l| l.spec.as_ref()?.holder_identity.clone());
    let transitions = |l: &Option<Lease>| l.as_ref().and_then(|l| l.spec.as_ref()?.lease_transitions);
    let lease_kept = leader_seen_down.load(Ordering::SeqCst) == 0
        && holder(&lease_before).is_some()
        && holder(&lease_before) == holder(&lease_after)
        && transitions(&lease_before) == transitions(&lease_after);
    Phase {
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
        max: *times.last().unwrap(),
        cpu,
        api_ops,
        api_cpu: 0.0,
        answered: answered.lock().unwrap().clone(),
        lease_kept,
    }
}

/// CPU seconds one RSA-4096 private operation costs here (a quick local measurement).
fn seconds_per_op(pair: &KeyPair) -> f64 {
    let key = pair.decryption_key().unwrap();
    let target = gitseal_shared::Target::new(gitseal_shared::Scope::Strict, Some("x"), Some("y")).unwrap();
    let set = RecipientSet::new(vec![pair.cert.recipient().unwrap()]).unwrap();
    let sealed = set.seal(&target, b"v").unwrap();
    let t = Instant::now();
    for _ in 0..50 {
        gitseal_shared::value::open(&[&key], &target, &sealed).unwrap();
    }
    t.elapsed().as_secs_f64() / 50.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("GITSEAL_BENCH_OBJECTS", 200);
    let open_limits = std::env::var("GITSEAL_BENCH_FLOOD_LIMITS").is_ok_and(|v| v == "open");
    let plane = ControlPlane::start().await.expect("control plane (run tests/peers/install.sh)");
    let client = plane.client().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    println!(
        "flood: {n} new SealedSecrets, 4 clients flooding verify/rotate ({FLOOD_ITEMS} items, no hints), {KEYS} RSA-4096 keys, limits {}",
        if open_limits { "opened" } else { "default" }
    );

    // 13 keys, as after a year of monthly renewals; the newest seals the new objects.
    let now = time::OffsetDateTime::now_utc();
    let pairs: Vec<KeyPair> = (0..KEYS)
        .map(|i| {
            generate_key_pair(
                gitseal_keys::RsaBits::Rsa4096,
                "",
                now - time::Duration::days(30 * (KEYS - i) as i64),
                time::Duration::days(3650),
            )
            .unwrap()
        })
        .collect();
    let secrets: Api<Secret> = ns.api();
    for (i, p) in pairs.iter().enumerate() {
        let data = p.secret_data().unwrap().into_iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("gitseal-key-bench{i:02}")),
                labels: Some(
                    [("gitseal.dev/key", "active"), ("sealedsecrets.bitnami.com/sealed-secrets-key", "active")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let mut flags = vec!["--key-renew-period=0", "--log-level=warn", "--leader-elect"];
    if open_limits {
        flags.extend([
            "--rate-limit=100000",
            "--rate-limit-burst=100000",
            "--api-private-ops-rate=100000",
            "--api-private-ops-burst=100000",
        ]);
    }
    let g = GitsealController::start(&plane, binary, ns.name(), Some(ns.name()), "bench-flood", &flags).await.unwrap();
    let ready = Instant::now();
    while !matches!(http_get(&format!("{}/readyz", g.api)).await, Ok((200, _))) {
        assert!(ready.elapsed() < Duration::from_secs(60), "controller never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let newest = pairs.last().unwrap();
    let per_op = seconds_per_op(newest);

    // Warm up (watch caches, connections, first reconciles) so neither phase pays for it.
    phase(&g, &ns, newest, "warm", 20, None).await;
    let quiet = phase(&g, &ns, newest, "quiet", n, None).await;
    let body = Arc::new(worst_case(&pairs, ns.name()));
    let mut loud = phase(&g, &ns, newest, "loud", n, Some(body)).await;
    loud.api_cpu = loud.api_ops * per_op;

    let show = |what: &str, p: &Phase| {
        println!(
            "  {what:<13} time-to-Secret p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}  controller CPU {:.1} s  API private ops {:.0}  leader kept Lease: {}",
            p.p50, p.p99, p.max, p.cpu, p.api_ops, p.lease_kept
        );
    };
    show("without flood", &quiet);
    show("with flood", &loud);
    let mut codes: Vec<_> = loud.answered.iter().collect();
    codes.sort();
    println!(
        "  flood answers (status: count): {codes:?}; CPU on API work ≈ {:.1} s ({:.0} ops × {:.2} ms/op); p99 ratio {:.2} (target ≤ 2)",
        loud.api_cpu,
        loud.api_ops,
        per_op * 1000.0,
        loud.p99.as_secs_f64() / quiet.p99.as_secs_f64().max(1e-9)
    );
}
