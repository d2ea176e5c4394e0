//! Sealing and unsealing speed, beside the real kubeseal.
//!
//! Run: `cargo bench -p gitseal-cli --bench seal`
//! Samples per measurement: `GITSEAL_BENCH_SAMPLES` (default 15); every figure is a median.
//!
//! A plain `harness = false` binary (no criterion): it prints one table, and the kubeseal rows
//! need one process per sample anyway. What it measures, with the RSA-4096 test key of
//! `tests/testdata/kubeseal/` (key.pem, cert.pem):
//! - seal one 32-byte value: kubeseal format (one certificate) and age format (the certificate
//!   plus two X25519 recipients, i.e. three recipients);
//! - unseal one value: kubeseal format; age format with the RSA key and with an X25519 identity;
//! - seal one Secret of 3 values as a whole process (start-up included, issue #14 item 5): the
//!   `gitseal` binary beside the real `kubeseal --cert`, the same input;
//! - seal a stream of 1000 Secrets of 3 values each, YAML in and YAML out: through the library
//!   (parse, seal, write), through the `gitseal` binary (one process), and through the real
//!   `kubeseal --cert` (one process) when the peer is installed (`tests/peers/install.sh`,
//!   found through `$GITSEAL_KUBESEAL` or the peer cache's `peers.env`).

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gitseal_keys::{Certificate, parse_private_keys};
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::manifest::{OutputFormat, parse_documents, write_documents};
use gitseal_shared::seal::{SealOptions, seal_secret};
use gitseal_shared::types::ApiGroup;
use gitseal_shared::value::{DecryptionKey, Recipient, RecipientSet, open};
use gitseal_shared::{Scope, Target};

const SECRETS: usize = 1000;

fn main() -> Result<()> {
    let samples: usize = match std::env::var("GITSEAL_BENCH_SAMPLES") {
        Ok(s) => s.parse().context("GITSEAL_BENCH_SAMPLES must be a number")?,
        Err(_) => 15,
    };
    ensure!(samples > 0, "GITSEAL_BENCH_SAMPLES must be at least 1");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/kubeseal");
    let cert_path = dir.join("cert.pem");
    let cert = Certificate::from_pem(&std::fs::read_to_string(&cert_path)?)?;
    let rsa_key =
        parse_private_keys(&std::fs::read_to_string(dir.join("key.pem"))?)?.pop().context("key.pem holds no key")?.key;
    let ids = [age::x25519::Identity::generate(), age::x25519::Identity::generate()];
    let age_key = DecryptionKey::from_age(ids[0].clone());

    let target = Target::new(Scope::Strict, Some("bench"), Some("secret"))?;
    let value = [0x5a_u8; 32];
    let one = RecipientSet::new(vec![cert.recipient()?])?;
    let three = RecipientSet::new(vec![
        cert.recipient()?,
        Recipient::age(ids[0].to_public()),
        Recipient::age(ids[1].to_public()),
    ])?;
    let sealed_one = one.seal(&target, &value)?;
    let sealed_three = three.seal(&target, &value)?;

    let mut table = Table::default();
    table.row("seal one value, kubeseal format (RSA-4096)", fast(samples, || one.seal(&target, &value))?);
    table.row("seal one value, age format (RSA-4096 + 2 X25519)", fast(samples, || three.seal(&target, &value))?);
    table
        .row("unseal one value, kubeseal format (RSA key)", fast(samples, || open(&[&rsa_key], &target, &sealed_one))?);
    table.row("unseal one value, age format (RSA key)", fast(samples, || open(&[&rsa_key], &target, &sealed_three))?);
    table.row("unseal one value, age format (X25519 id)", fast(samples, || open(&[&age_key], &target, &sealed_three))?);

    let stream = secret_stream();
    let single = secret(0);
    let stream_samples = samples.min(5);
    // One Secret is mostly process start-up: more samples, the spread is wider.
    let single_samples = samples * 4;
    let label = format!("seal {SECRETS} Secrets x 3 values");
    let single_label = "seal one Secret (whole process)";
    table.row(&format!("{label}, library"), slow(stream_samples, || seal_stream(&stream, &one))?);
    let gitseal = PathBuf::from(env!("CARGO_BIN_EXE_gitseal"));
    let args = ["seal", "--api", "bitnami", "--format", "yaml", "--cert"];
    table.row(
        &format!("{single_label}, gitseal binary"),
        slow(single_samples, || run(&gitseal, &args, &cert_path, &single, 1))?,
    );
    table.row(
        &format!("{label}, gitseal binary"),
        slow(stream_samples, || run(&gitseal, &args, &cert_path, &stream, SECRETS))?,
    );
    match gitseal_tests::Peer::Kubeseal.path() {
        Ok(kubeseal) => {
            let args = ["-o", "yaml", "--cert"];
            let m = slow(single_samples, || run(&kubeseal, &args, &cert_path, &single, 1))?;
            table.row(&format!("{single_label}, kubeseal v0.36.6"), m);
            let m = slow(stream_samples, || run(&kubeseal, &args, &cert_path, &stream, SECRETS))?;
            table.row(&format!("{label}, kubeseal v0.36.6"), m);
        }
        // A benchmark may run without the peer; it says so instead of failing.
        Err(e) => table.note(&format!("no kubeseal comparison: {e}")),
    }
    table.print();
    Ok(())
}

/// A timing: the median of `samples` runs, each of `batch` iterations.
struct Measure {
    median: Duration,
    samples: usize,
    batch: u32,
}

/// Time a fast operation: batches sized to take about 20 ms, median per iteration.
fn fast<T, E: std::fmt::Debug>(samples: usize, mut f: impl FnMut() -> Result<T, E>) -> Result<Measure> {
    let once = |f: &mut dyn FnMut() -> Result<T, E>| -> Result<Duration> {
        let start = Instant::now();
        black_box(f().map_err(|e| anyhow::anyhow!("{e:?}"))?);
        Ok(start.elapsed())
    };
    let probe = once(&mut f)?.max(Duration::from_nanos(100));
    let batch = (Duration::from_millis(20).as_nanos() / probe.as_nanos()).clamp(1, 10_000) as u32;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..batch {
            black_box(f().map_err(|e| anyhow::anyhow!("{e:?}"))?);
        }
        times.push(start.elapsed() / batch);
    }
    Ok(Measure { median: median(times), samples, batch })
}

/// Time a slow operation once per sample, after one warm-up run.
fn slow(samples: usize, mut f: impl FnMut() -> Result<()>) -> Result<Measure> {
    f()?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    Ok(Measure { median: median(times), samples, batch: 1 })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// 1000 Secrets, 3 values each, as one YAML stream.
fn secret_stream() -> String {
    (0..SECRETS).map(secret).collect()
}

/// Secret number `i` of the stream: 3 values, YAML.
fn secret(i: usize) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: app-{i:04}\n  namespace: bench\n\
         type: Opaque\nstringData:\n  username: user-{i:04}\n  password: pw-{i:04}-0123456789abcdef0123456789\n\
         \x20 url: postgres://user-{i:04}@db.bench.svc:5432/app\n"
    )
}

/// The library path of `gitseal seal --api bitnami`: parse, seal each Secret, write YAML.
fn seal_stream(text: &str, recipients: &RecipientSet) -> Result<()> {
    let opts = SealOptions { api: ApiGroup::Bitnami, ..Default::default() };
    let mut out = Vec::with_capacity(SECRETS);
    for doc in parse_documents(text)? {
        let secret = PlainSecret::from_value(&doc.value)?;
        out.push(serde_json::to_value(seal_secret(&secret, recipients, &opts)?)?);
    }
    let yaml = write_documents(&out, OutputFormat::Yaml)?;
    ensure!(out.len() == SECRETS && !yaml.is_empty(), "sealed {} Secrets", out.len());
    black_box(yaml);
    Ok(())
}

/// Run `program args… cert` with `stdin` piped in; check it sealed all `secrets` Secrets.
fn run(program: &Path, args: &[&str], cert: &Path, stdin: &str, secrets: usize) -> Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .arg(cert)
        // No cluster: an empty kubeconfig path keeps the host's ~/.kube/config out.
        .env("KUBECONFIG", "/nonexistent/gitseal-bench-kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut input = child.stdin.take().context("no stdin")?;
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let output = child.wait_with_output()?;
    writer.join().map_err(|_| anyhow::anyhow!("stdin writer panicked"))??;
    if !output.status.success() {
        bail!("{} failed: {}", program.display(), String::from_utf8_lossy(&output.stderr));
    }
    let sealed = String::from_utf8_lossy(&output.stdout).matches("kind: SealedSecret").count();
    ensure!(sealed == secrets, "{} wrote {sealed} SealedSecrets, want {secrets}", program.display());
    Ok(())
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, Measure)>,
    notes: Vec<String>,
}

impl Table {
    fn row(&mut self, name: &str, m: Measure) {
        self.rows.push((name.to_owned(), m));
    }

    fn note(&mut self, note: &str) {
        self.notes.push(note.to_owned());
    }

    fn print(&self) {
        println!("\n{:<58} {:>12}  samples x batch", "operation", "median");
        for (name, m) in &self.rows {
            println!("{name:<58} {:>12}  {} x {}", fmt(m.median), m.samples, m.batch);
        }
        for note in &self.notes {
            println!("note: {note}");
        }
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}
