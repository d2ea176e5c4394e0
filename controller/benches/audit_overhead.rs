//! What the signed, checkpointed audit trail costs unsealing (issue #10; target ≤ 5 % slower).
//!
//! 1. In process, no cluster: unseal N SealedSecrets × V values (RSA-4096) and write one audit
//!    record each to a file, once with the controller's sink (SHA-256 over the bytes + an
//!    Ed25519 signature + flush) and once with an unsigned line (the old chain: SHA-256 only).
//! 2. On the harness: a cold controller converges N SealedSecrets into Secrets with the
//!    checkpoint written after every record (`--audit-checkpoint-records=1`, the worst case) and
//!    with checkpoints off (`=0`, interval 1h). Signing is always on in the controller.
//!
//! ```sh
//! cargo bench -p gitseal-controller --bench audit_overhead
//! GITSEAL_BENCH_OBJECTS=500 cargo bench -p gitseal-controller --bench audit_overhead
//! ```
//! Bounded: one pass of each mode (part 1 three rounds), everything on loopback. Needs
//! `tests/peers/install.sh` for part 2.
//!
//! Measured 2026-11-30 (2 cores shared with other builds, so ±10 % noise on part 2):
//! unsigned 8.98 ms/object, signed 8.83 ms/object (−1.7 %, i.e. within noise); one signed
//! record 29.6 µs (0.3 % of an object's unseal); cold start to 200 Secrets 3.06 s without
//! checkpoints, 2.75 s with one after every record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use gitseal_controller::audit::{AuditLog, CheckpointPolicy};
use gitseal_keys::Certificate;
use gitseal_shared::audit::{AuditRecord, Outcome, SigningKey};
use gitseal_shared::seal::unseal;
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use gitseal_tests::gitseal::GitsealController;
use gitseal_tests::{ControlPlane, TestNamespace, apply_json, http_get};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use sha2::Digest as _;

mod support;
use support::{env_usize, sealed};

fn record(ss: &SealedSecretObject) -> AuditRecord {
    let mut r = AuditLog::record("Unseal", Outcome::Success);
    r.object = Some(gitseal_controller::audit::object_of(ss));
    r.key_id = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    r
}

/// Part 1: seconds per object, unsigned vs signed, best of three rounds each.
fn in_process(n: usize, values: usize) {
    let now = time::OffsetDateTime::now_utc();
    let pair =
        gitseal_keys::generate_key_pair(gitseal_keys::RsaBits::Rsa4096, "", now, time::Duration::days(365)).unwrap();
    let dk = pair.decryption_key().unwrap();
    let objects: Vec<SealedSecretObject> = (0..n)
        .map(|i| serde_json::from_value(sealed(&pair.cert, "bench", i, values, ApiGroup::Gitseal)).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let unsigned_path = dir.path().join("unsigned.log");
    let mut best = [Duration::MAX; 2];
    for round in 0..3 {
        // Unsigned: unseal, then the old line (SHA-256 of the serialized record), flushed.
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&unsigned_path).unwrap();
        let t = Instant::now();
        for ss in &objects {
            let u = unseal(ss, &[&dk]).unwrap();
            std::hint::black_box(&u);
            let mut r = record(ss);
            r.prev = "0".repeat(64);
            let body = serde_json::to_string(&r).unwrap();
            let hash = hex(&sha2::Sha256::digest(body.as_bytes()));
            writeln!(f, "{body}{hash}").unwrap();
            f.flush().unwrap();
        }
        best[0] = best[0].min(t.elapsed());

        // Signed: the controller's sink.
        let key = SigningKey::generate().unwrap().0;
        let path = dir.path().join(format!("signed-{round}.log"));
        let log = AuditLog::open(Some(&path), "bench", key, None, false, CheckpointPolicy { records: 0 }).unwrap();
        let t = Instant::now();
        for ss in &objects {
            let u = unseal(ss, &[&dk]).unwrap();
            std::hint::black_box(&u);
            log.try_write(record(ss)).unwrap();
        }
        best[1] = best[1].min(t.elapsed());
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    println!(
        "  in process (unseal + audit record, best of 3): unsigned {:.3} ms/object, signed {:.3} ms/object: {:+.2} %",
        per(best[0]),
        per(best[1]),
        (best[1].as_secs_f64() / best[0].as_secs_f64() - 1.0) * 100.0
    );

    // The audit record alone.
    let key = SigningKey::generate().unwrap().0;
    let mut chain = gitseal_shared::audit::Chain::default();
    let t = Instant::now();
    let reps = 5000;
    for _ in 0..reps {
        std::hint::black_box(chain.seal(record(&objects[0]), &key));
    }
    println!("  one signed record (hash + Ed25519, no I/O): {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / reps as f64);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn produced(api: &Api<Secret>) -> usize {
    api.list_metadata(&ListParams::default().labels("gitseal.dev/managed=true"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

/// Part 2: seconds to converge `n` objects from a cold start with `flags`.
async fn converge(plane: &ControlPlane, n: usize, values: usize, flags: &[&str]) -> Duration {
    let client = plane.client().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
    let ns = TestNamespace::create(client.clone()).await.unwrap();
    let mut args = vec!["--key-renew-period=0", "--log-level=warn"];
    args.extend_from_slice(flags);
    let first = GitsealController::start(plane, binary, ns.name(), Some(ns.name()), "keygen", &args).await.unwrap();
    let cert = loop {
        if let Ok((200, pem)) = http_get(&format!("{}/v1/cert.pem", first.api)).await {
            break Certificate::from_pem(&String::from_utf8(pem).unwrap()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(first);
    for i in 0..n {
        apply_json(&client, sealed(&cert, ns.name(), i, values, ApiGroup::Gitseal)).await.unwrap();
    }
    let api: Api<Secret> = ns.api();
    let t = Instant::now();
    let _cold = GitsealController::start(plane, binary, ns.name(), Some(ns.name()), "cold", &args).await.unwrap();
    while produced(&api).await < n {
        assert!(t.elapsed() < Duration::from_secs(600), "no convergence after 10 min");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("GITSEAL_BENCH_OBJECTS", 200);
    let values = env_usize("GITSEAL_BENCH_VALUES", 3);
    println!("audit_overhead: {n} SealedSecrets × {values} values, RSA-4096, 2 cores");
    tokio::task::block_in_place(|| in_process(n, values));

    let plane = ControlPlane::start().await.expect("control plane (run tests/peers/install.sh)");
    let off = ["--audit-checkpoint-records=0", "--audit-checkpoint-interval=1h"];
    let on = ["--audit-checkpoint-records=1", "--audit-checkpoint-interval=1s"];
    let t_off = converge(&plane, n, values, &off).await;
    let t_on = converge(&plane, n, values, &on).await;
    println!(
        "  on the harness (cold start to {n} Secrets): checkpoints off {:.2?} ({:.1}/s), after every record {:.2?} ({:.1}/s): {:+.1} %",
        t_off,
        n as f64 / t_off.as_secs_f64(),
        t_on,
        n as f64 / t_on.as_secs_f64(),
        (t_on.as_secs_f64() / t_off.as_secs_f64() - 1.0) * 100.0
    );
}
