//! The harness cleans up after itself: on drop, and when the test process dies.
//!
//! These tests start their own control planes (not the shared one), one at a time. They also
//! print the start-up time and the peak memory of etcd and kube-apiserver (`--nocapture`).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use gitseal_tests::ControlPlane;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|s| !s.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
}

/// Processes whose command line mentions `dir` (etcd's data dir, the apiserver's cert files).
fn processes_using(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .filter(|pid| running(*pid))
        .collect()
}

async fn eventually(what: &str, timeout: Duration, check: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn dropping_a_control_plane_stops_its_processes_and_removes_its_directory() -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let plane = ControlPlane::start().await?;
    let client = plane.client()?;
    Api::<Namespace>::all(client).get("default").await?;
    let (etcd_rss, apiserver_rss) = plane.peak_rss_kib();
    eprintln!(
        "control plane ready in {:?}; peak RSS etcd {} MiB, kube-apiserver {} MiB",
        plane.startup_time(),
        etcd_rss.unwrap_or(0) / 1024,
        apiserver_rss.unwrap_or(0) / 1024
    );
    let (etcd, apiserver) = plane.pids();
    let pids = [etcd.context("no etcd pid")?, apiserver.context("no apiserver pid")?];
    let dir = plane.dir().to_path_buf();
    assert!(pids.iter().all(|p| running(*p)));

    let stop = Instant::now();
    drop(plane);
    eprintln!("control plane stopped in {:?}", stop.elapsed());
    assert!(pids.iter().all(|p| !running(*p)), "a peer still runs after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
    Ok(())
}

#[tokio::test]
async fn a_killed_playground_leaves_no_peer_running_and_no_directory() -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut playground = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_gitseal-playground")).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?,
    );
    let stdout = playground.0.stdout.take().context("no stdout")?;
    // Blocking read on a helper thread; the line arrives once the control plane is ready.
    let kubeconfig = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("export KUBECONFIG=").map(PathBuf::from))
    });
    let kubeconfig = tokio::time::timeout(Duration::from_secs(90), kubeconfig).await;
    let kubeconfig = match kubeconfig {
        Ok(Ok(Some(path))) => path,
        other => {
            let _ = playground.0.kill();
            anyhow::bail!("the playground printed no KUBECONFIG line: {other:?}");
        }
    };
    let dir = kubeconfig.parent().context("kubeconfig has no parent")?.to_path_buf();
    let root = dir.parent().context("no harness root")?.to_path_buf();
    let peers = processes_using(&dir);
    // etcd, kube-apiserver, kube-controller-manager and the playground's gitseal-controller.
    assert_eq!(peers.len(), 4, "expected four peers, found pids {peers:?}");

    // SIGKILL: no destructor runs, only the watchdog can clean up.
    playground.0.kill()?;
    playground.0.wait()?;
    let gone = Instant::now();
    eventually("the peers to stop", Duration::from_secs(30), || peers.iter().all(|p| !running(*p))).await?;
    eventually("the harness root to be removed", Duration::from_secs(10), || !root.exists()).await?;
    eprintln!("watchdog cleaned up {:?} after SIGKILL", gone.elapsed());
    Ok(())
}

/// The playground, SIGKILLed if the test fails before it does: its watchdog then stops the
/// peers, so a failed assertion leaves nothing running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_playground_peer_killed_by_hand_is_restarted_in_place_while_the_rest_keeps_running() -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut playground = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_gitseal-playground"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    let stdout = playground.0.stdout.take().context("no stdout")?;
    let stderr = playground.0.stderr.take().context("no stderr")?;
    // The instructions: "... kube-apiserver https://… (pid N), etcd … (pid M)" then the KUBECONFIG.
    let head = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let first = lines.next()?;
        let kubeconfig = lines.find_map(|l| l.strip_prefix("export KUBECONFIG=").map(PathBuf::from))?;
        Some((first, kubeconfig))
    });
    let (first, kubeconfig) = match tokio::time::timeout(Duration::from_secs(90), head).await {
        Ok(Ok(Some(h))) => h,
        other => anyhow::bail!("the playground printed no instructions: {other:?}"),
    };
    let pids: Vec<u32> = first.split("(pid ").skip(1).filter_map(|s| s.split(')').next()?.parse().ok()).collect();
    let [apiserver, etcd] = pids[..] else { anyhow::bail!("no pids in {first:?}") };
    let dir = kubeconfig.parent().context("kubeconfig has no parent")?.to_path_buf();
    let others: Vec<u32> = processes_using(&dir).into_iter().filter(|p| *p != apiserver).collect();
    assert_eq!(others.len(), 3, "etcd, kube-controller-manager, gitseal-controller: {others:?}");
    assert!(others.contains(&etcd));
    let names: Vec<String> = others
        .iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(argv0).rsplit('/').next().unwrap_or_default().to_string()
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // An operator's `kill -9` on kube-apiserver.
    let killed = Instant::now();
    assert!(Command::new("kill").args(["-9", &apiserver.to_string()]).status()?.success());
    let restarted = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = rx.recv().await {
            if line.contains("kube-apiserver had exited") && line.contains("restarted in place") {
                return Some(line);
            }
        }
        None
    })
    .await?
    .context("the playground ended without restarting kube-apiserver")?;
    eprintln!("{restarted} ({:.1?} after the kill)", killed.elapsed());

    // Same port, certificates and data: the old kubeconfig works and the namespaces are there.
    let text = std::fs::read_to_string(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&text)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    Api::<Namespace>::all(client.clone()).get("gitseal-system").await?;
    let stopped: Vec<&String> = others.iter().zip(&names).filter(|(p, _)| !running(**p)).map(|(_, n)| n).collect();
    assert!(stopped.is_empty(), "the other peers keep running, but these stopped: {stopped:?}");
    assert!(playground.0.try_wait()?.is_none(), "the playground keeps running");
    Ok(())
}
