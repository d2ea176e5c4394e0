//! Launching the two processes and waiting for them: flags, readiness probes, timeouts.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

use crate::{ChildProcess, Error, Result, certs::Pki, error::chain, http_get};

/// The whole start must finish within this, unless `GITSEAL_TEST_START_TIMEOUT` says otherwise.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const LOG_TAIL: usize = 40;

pub(super) fn start_timeout() -> Duration {
    std::env::var("GITSEAL_TEST_START_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(START_TIMEOUT, Duration::from_secs)
}

pub(super) fn apiserver_command(bin: &Path, pki: &Pki, etcd_url: &str, port: u16) -> Command {
    let f = &pki.files;
    let file = |flag: &str, path: &Path| format!("--{flag}={}", path.display());
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--etcd-servers={etcd_url}"))
        .arg(file("tls-cert-file", &f.serving_cert))
        .arg(file("tls-private-key-file", &f.serving_key))
        .arg(file("cert-dir", f.serving_cert.parent().unwrap_or(Path::new("."))))
        .arg(format!("--secure-port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--service-account-issuer=https://127.0.0.1:{port}/"))
        .arg(file("service-account-key-file", &f.sa_public_key))
        .arg(file("service-account-signing-key-file", &f.sa_private_key))
        .arg(file("client-ca-file", &f.client_ca))
        .arg("--authorization-mode=RBAC")
        // Otherwise every Pod needs a `default` ServiceAccount, and no controller makes one.
        .arg("--disable-admission-plugins=ServiceAccount")
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--allow-privileged=true")
        // The aggregation layer.
        .arg(file("requestheader-client-ca-file", &f.front_proxy_ca))
        .arg("--requestheader-allowed-names=front-proxy-client")
        .arg("--requestheader-username-headers=X-Remote-User")
        .arg("--requestheader-group-headers=X-Remote-Group")
        .arg("--requestheader-extra-headers-prefix=X-Remote-Extra-")
        .arg(file("proxy-client-cert-file", &f.front_proxy_client_cert))
        .arg(file("proxy-client-key-file", &f.front_proxy_client_key))
        // Aggregated APIs are reached through their Service's cluster address; for an
        // ExternalName Service (the harness's way to a local process) that is the external name.
        .arg("--enable-aggregator-routing=false");
    cmd
}

pub(super) fn controller_manager_command(bin: &Path, pki: &Pki, kubeconfig: &Path, port: u16) -> Command {
    let f = &pki.files;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--authentication-kubeconfig={}", kubeconfig.display()))
        .arg(format!("--authorization-kubeconfig={}", kubeconfig.display()))
        .arg("--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,clusterrole-aggregation")
        .arg("--leader-elect=false")
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .arg(format!("--service-account-private-key-file={}", f.sa_private_key.display()))
        .arg(format!("--root-ca-file={}", f.serving_ca.display()))
        .arg("--use-service-account-credentials=false");
    cmd
}

/// Ready when the `default` ServiceAccount of `default` exists (its controller is running).
pub(super) async fn wait_controller_manager(client: &Client, kcm: &mut ChildProcess, deadline: Instant) -> Result<()> {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), "default");
    let mut last = String::from("no attempt yet");
    while Instant::now() < deadline {
        kcm.check_running()?;
        match api.get_opt("default").await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => last = "ServiceAccount default/default does not exist yet".into(),
            Err(e) => last = chain(&e),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(timeout("kube-controller-manager to create ServiceAccount default/default".into(), &last, kcm))
}

pub(super) async fn wait_etcd(etcd: &mut ChildProcess, url: &str, deadline: Instant) -> Result<()> {
    let health = format!("{url}/health");
    let mut last = String::from("no attempt yet");
    while Instant::now() < deadline {
        etcd.check_running()?;
        match http_get(&health).await {
            Ok((200, body)) if String::from_utf8_lossy(&body).contains("true") => return Ok(()),
            Ok((status, body)) => last = format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            Err(e) => last = chain(&e),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(timeout(format!("etcd at {health}"), &last, etcd))
}

pub(super) async fn wait_apiserver(
    client: &Client,
    apiserver: &mut ChildProcess,
    etcd: &mut ChildProcess,
    deadline: Instant,
) -> Result<()> {
    let mut last = String::from("no attempt yet");
    let mut ready = false;
    while Instant::now() < deadline {
        apiserver.check_running()?;
        etcd.check_running()?;
        if !ready {
            let probe = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::invalid("building the /readyz probe", e))?;
            match client.request_text(probe).await {
                Ok(_) => ready = true,
                Err(e) => last = format!("/readyz: {}", chain(&e)),
            }
        }
        if ready {
            match Api::<Namespace>::all(client.clone()).get_opt("default").await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => last = "namespace `default` does not exist yet".into(),
                Err(e) => last = format!("GET namespace default: {}", chain(&e)),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Err(timeout("kube-apiserver to be ready and serve namespace `default`".into(), &last, apiserver))
}

fn timeout(what: String, last: &str, process: &ChildProcess) -> Error {
    Error::Timeout {
        what,
        waited: start_timeout(),
        detail: format!(
            " (raise GITSEAL_TEST_START_TIMEOUT on a slow machine); last error: {last}; \
             last lines of {}:\n{}",
            process.log_path().display(),
            process.log_tail(LOG_TAIL)
        ),
    }
}

pub(super) fn etcd_command(bin: &Path, data_dir: &Path, client_url: &str, peer_url: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--name=gitseal-test")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=gitseal-test={peer_url}"))
        .arg("--unsafe-no-fsync=true");
    cmd
}
