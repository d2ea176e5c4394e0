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
