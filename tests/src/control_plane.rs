//! etcd + kube-apiserver, started the way controller-runtime's envtest starts them.
//!
//! Flow of [`ControlPlane::start`]:
//! 1. pick free loopback ports and a directory below the harness root; write the certificates
//!    (see `certs`);
//! 2. start etcd (`--unsafe-no-fsync`, data in that directory) and wait for `/health`;
//! 3. start kube-apiserver with envtest's flags (RBAC, ServiceAccount admission off, loopback
//!    everywhere) plus the aggregation-layer flags (`--requestheader-*`, `--proxy-client-*`,
//!    `--enable-aggregator-routing`);
//! 4. write an admin kubeconfig (CN `admin`, O `system:masters`), wait for `/readyz` with that
//!    client certificate and then for the `default` namespace.
//!
//! Guarantees: the whole start has one deadline (60 s, or `GITSEAL_TEST_START_TIMEOUT` seconds);
//! a timeout or an early exit reports the end of the relevant log; a port taken by someone else
//! between [`crate::free_port`] and the bind is retried with new ports (three attempts). Dropping
//! the value stops kube-apiserver, then etcd (SIGTERM, ≤ 20 s, SIGKILL), and removes the directory.
//!
//! [`ControlPlane::shared`] is the one instance of a test binary; it is never dropped, and the
//! [`crate::reaper`] watchdog stops it when the process exits.
//!
//! Faults: [`ControlPlane::stop_peer`] stops (SIGTERM) or kills (SIGKILL) etcd, kube-apiserver
//! or kube-controller-manager while the rest keeps running, [`ControlPlane::start_peer`] starts it
//! again in place — same binary, flags, ports, certificates and etcd data directory — and waits
//! until it serves; [`ControlPlane::revive_dead_peers`] does that for any peer that died on its
//! own (the playground calls it every second).

pub(crate) mod access;
mod audit;
mod launch;

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use kube::Client;
use tempfile::TempDir;

pub use access::ServiceAccountAccess;
pub use audit::{AuditOptions, AuditWebhookFiles};

use crate::{
    ChildProcess, Error, Peer, Result,
    certs::Pki,
    error::chain,
    free_port,
    kubeconfig::{self, Credentials},
    process::STOP_GRACE,
    reaper,
};

/// One of the control plane's own processes, for [`ControlPlane::stop_peer`] and
/// [`ControlPlane::start_peer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanePeer {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
}

impl PlanePeer {
    /// Every peer, in start order.
    pub const ALL: [PlanePeer; 3] = [PlanePeer::Etcd, PlanePeer::KubeApiserver, PlanePeer::KubeControllerManager];

    /// The process name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            PlanePeer::Etcd => "etcd",
            PlanePeer::KubeApiserver => "kube-apiserver",
            PlanePeer::KubeControllerManager => "kube-controller-manager",
        }
    }
}

/// How [`ControlPlane::stop_peer`] ends a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopHow {
    /// SIGTERM, then SIGKILL after the grace period: a clean shutdown.
    Term,
    /// SIGKILL at once: a crash.
    Kill,
}

/// Files the aggregation layer needs, for an extension API server and its `APIService`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FrontProxyFiles {
    /// CA that signs the front-proxy client certificate (`--requestheader-client-ca-file`).
    pub ca: PathBuf,
    /// The certificate kube-apiserver presents when proxying (CN `front-proxy-client`).
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// `--requestheader-allowed-names`.
    pub allowed_names: &'static [&'static str],
}

/// A running etcd + kube-apiserver pair with an admin kubeconfig.
pub struct ControlPlane {
    // Option so that Drop can stop them in order; always Some until then. Behind a lock so a
    // shared (`&'static`) control plane can stop and restart them.
    controller_manager: Mutex<Option<ChildProcess>>,
    apiserver: Mutex<Option<ChildProcess>>,
    etcd: Mutex<Option<ChildProcess>>,
    pki: Pki,
    port: u16,
    server: String,
    etcd_url: String,
    kubeconfig: PathBuf,
    admin: kube::Config,
    audit_webhook: Option<AuditWebhookFiles>,
    started_in: Duration,
    dir: TempDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("etcd", &self.etcd_url)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

static SHARED: tokio::sync::OnceCell<std::result::Result<ControlPlane, String>> = tokio::sync::OnceCell::const_new();

impl ControlPlane {
    /// The control plane of this test binary, started by the first caller.
    ///
    /// Tests share it and isolate themselves by namespace ([`crate::with_temp_ns`]). A failed
    /// start is not retried: every caller gets [`Error::SharedStartFailed`] with the first error.
    /// Make clients with [`ControlPlane::client`] in each test: a `kube::Client` belongs to the
    /// tokio runtime that made it, and `#[tokio::test]` gives each test its own runtime.
    pub async fn shared() -> Result<&'static ControlPlane> {
        SHARED
            .get_or_init(|| async { Self::start().await.map_err(|e| chain(&e)) })
            .await
            .as_ref()
            .map_err(|e| Error::SharedStartFailed(e.clone()))
    }

    /// Starts a private control plane, stopped when the value is dropped.
    pub async fn start() -> Result<Self> {
        Self::start_with(None).await
    }

    /// [`Self::start`], with kube-apiserver auditing to a webhook when `audit` is given (see
    /// [`AuditWebhookFiles`]); the shared control plane never does.
    pub async fn start_with(audit: Option<AuditOptions>) -> Result<Self> {
        // kube builds rustls configs from the process default provider; make it aws-lc-rs even if
        // another crate in the graph enables ring. Already installed is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let etcd = Peer::Etcd.path()?;
        let apiserver = Peer::KubeApiserver.path()?;
        let kcm = Peer::KubeControllerManager.path()?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&etcd, &apiserver, &kcm, audit.as_ref()).await {
                Err(e) if attempt < 3 && chain(&e).contains("address already in use") => {
                    tracing::warn!("a port was taken while starting the control plane, retrying: {e}");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(
        etcd_bin: &Path,
        apiserver_bin: &Path,
        kcm_bin: &Path,
        audit: Option<&AuditOptions>,
    ) -> Result<Self> {
        let begin = Instant::now();
        let deadline = begin + launch::start_timeout();
        let dir = reaper::tempdir("control-plane-")?;
        let pki_dir = dir.path().join("pki");
        std::fs::create_dir(&pki_dir).map_err(|e| Error::io(format!("creating {}", pki_dir.display()), e))?;
        let pki = Pki::generate(&pki_dir)?;
        let (etcd_port, peer_port, port) = (free_port()?, free_port()?, free_port()?);

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let cmd = launch::etcd_command(etcd_bin, &dir.path().join("etcd-data"), &etcd_url, &peer_url);
        let mut etcd = ChildProcess::spawn("etcd", cmd, dir.path().join("etcd.log"))?;
        launch::wait_etcd(&mut etcd, &etcd_url, deadline).await?;

        let server = format!("https://127.0.0.1:{port}");
        let audit_webhook = audit.map(|a| AuditWebhookFiles::generate(&pki_dir, a)).transpose()?;
        let mut apiserver_cmd = launch::apiserver_command(apiserver_bin, &pki, &etcd_url, port);
        if let Some(a) = &audit_webhook {
            apiserver_cmd.args(a.apiserver_flags());
        }
        let mut apiserver =
            ChildProcess::spawn("kube-apiserver", apiserver_cmd, dir.path().join("kube-apiserver.log"))?;
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let admin = kubeconfig::write(
            &kubeconfig,
            &server,
            &pki.serving_ca_pem,
            Credentials::ClientCert { cert_pem: &pki.admin.cert_pem, key_pem: &pki.admin.key_pem },
            None,
        )
        .await?;
        let client = Client::try_from(admin.clone())
            .map_err(|e| Error::kube("building the admin client from the kubeconfig", e))?;
        launch::wait_apiserver(&client, &mut apiserver, &mut etcd, deadline).await?;
        // Garbage collection (owner references), namespace finalization and default
        // ServiceAccounts: what a real cluster does and the tests rely on.
        let mut controller_manager = ChildProcess::spawn(
            "kube-controller-manager",
            launch::controller_manager_command(kcm_bin, &pki, &kubeconfig, free_port()?),
            dir.path().join("kube-controller-manager.log"),
        )?;
        launch::wait_controller_manager(&client, &mut controller_manager, deadline).await?;

        let started_in = begin.elapsed();
        tracing::info!(%server, ?started_in, kubeconfig = %kubeconfig.display(), "control plane ready");
        Ok(Self {
            controller_manager: Mutex::new(Some(controller_manager)),
            apiserver: Mutex::new(Some(apiserver)),
            etcd: Mutex::new(Some(etcd)),
            pki,
            port,
            server,
            etcd_url,
            kubeconfig,
            admin,
            audit_webhook,
            started_in,
            dir,
        })
    }

    /// A new admin client (`system:masters`) bound to the current tokio runtime.
    pub fn client(&self) -> Result<Client> {
        Client::try_from(self.admin.clone()).map_err(|e| Error::kube("building the admin client", e))
    }

    /// The admin client configuration (clone it to change timeouts or the namespace).
    pub fn config(&self) -> &kube::Config {
        &self.admin
    }

    /// The admin kubeconfig file (`export KUBECONFIG=…` for kubectl, kubeseal, helm).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The apiserver's secure port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// etcd's client URL, `http://127.0.0.1:<port>`.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// PEM of the CA that signed the apiserver's serving certificate.
    pub fn serving_ca_pem(&self) -> &str {
        &self.pki.serving_ca_pem
    }

    /// File of [`Self::serving_ca_pem`].
    pub fn serving_ca_path(&self) -> &Path {
        &self.pki.files.serving_ca
    }

    /// The CA the apiserver trusts for client certificates (`--client-ca-file`).
    pub fn client_ca_path(&self) -> &Path {
        &self.pki.files.client_ca
    }

    /// The aggregation-layer (front-proxy) CA and client certificate.
    pub fn front_proxy(&self) -> FrontProxyFiles {
        FrontProxyFiles {
            ca: self.pki.files.front_proxy_ca.clone(),
            client_cert: self.pki.files.front_proxy_client_cert.clone(),
            client_key: self.pki.files.front_proxy_client_key.clone(),
            allowed_names: &["front-proxy-client"],
        }
    }

    /// Where kube-apiserver sends audit events, when started with [`AuditOptions`].
    pub fn audit_webhook(&self) -> Option<&AuditWebhookFiles> {
        self.audit_webhook.as_ref()
    }

    /// The directory holding logs, certificates, kubeconfigs and etcd's data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long [`Self::start`] took from its call to the `default` namespace being served.
    pub fn startup_time(&self) -> Duration {
        self.started_in
    }

    /// Peak RSS in KiB of etcd and kube-apiserver so far (`VmHWM`), if readable.
    pub fn peak_rss_kib(&self) -> (Option<u64>, Option<u64>) {
        let rss = |p: PlanePeer| self.peer(p).as_ref().and_then(ChildProcess::peak_rss_kib);
        (rss(PlanePeer::Etcd), rss(PlanePeer::KubeApiserver))
    }

    /// Process ids of etcd and kube-apiserver.
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (self.peer_pid(PlanePeer::Etcd), self.peer_pid(PlanePeer::KubeApiserver))
    }

    /// The last `lines` lines of kube-apiserver's log.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.peer(PlanePeer::KubeApiserver).as_ref().map(|p| p.log_tail(lines)).unwrap_or_default()
    }

    fn peer(&self, peer: PlanePeer) -> MutexGuard<'_, Option<ChildProcess>> {
        let slot = match peer {
            PlanePeer::Etcd => &self.etcd,
            PlanePeer::KubeApiserver => &self.apiserver,
            PlanePeer::KubeControllerManager => &self.controller_manager,
        };
        slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process id of `peer` (its current incarnation).
    pub fn peer_pid(&self, peer: PlanePeer) -> Option<u32> {
        self.peer(peer).as_ref().map(ChildProcess::id)
    }

    /// The log file of `peer` (every incarnation appends to it).
    pub fn peer_log(&self, peer: PlanePeer) -> Option<PathBuf> {
        self.peer(peer).as_ref().map(|p| p.log_path().to_owned())
    }

    /// Stops `peer` (SIGTERM with the usual grace, or SIGKILL) and leaves the others running.
    /// Returns how it ended (e.g. `signal: 9 (SIGKILL)`).
    pub fn stop_peer(&self, peer: PlanePeer, how: StopHow) -> Result<String> {
        let mut slot = self.peer(peer);
        let p = slot.as_mut().ok_or_else(|| Error::invalid(format!("stopping {}", peer.name()), "already dropped"))?;
        let status = match how {
            StopHow::Term => p.stop(STOP_GRACE),
            StopHow::Kill => p.kill(),
        };
        let status = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        tracing::info!(peer = peer.name(), ?how, %status, "control-plane peer stopped");
        Ok(status)
    }

    /// Starts `peer` again in place (same flags, ports, certificates and data directory) and
    /// waits until it serves: etcd `/health`, kube-apiserver `/readyz`, kube-controller-manager
    /// running for a second. Returns how long that took. It must have ended first.
    pub async fn start_peer(&self, peer: PlanePeer) -> Result<Duration> {
        let begin = Instant::now();
        let deadline = begin + launch::start_timeout();
        {
            let mut slot = self.peer(peer);
            let p =
                slot.as_mut().ok_or_else(|| Error::invalid(format!("starting {}", peer.name()), "already dropped"))?;
            p.restart()?;
        }
        let mut last = String::from("no attempt yet");
        let client = self.client()?;
        while Instant::now() < deadline {
            if let Some(p) = self.peer(peer).as_mut() {
                p.check_running()?;
            }
            let served = match peer {
                PlanePeer::Etcd => match crate::http_get(&format!("{}/health", self.etcd_url)).await {
                    Ok((200, body)) => String::from_utf8_lossy(&body).contains("true"),
                    Ok((status, _)) => {
                        last = format!("/health: HTTP {status}");
                        false
                    }
                    Err(e) => {
                        last = chain(&e);
                        false
                    }
                },
                PlanePeer::KubeApiserver => {
                    let probe = http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| Error::invalid("building the /readyz probe", e))?;
                    match client.request_text(probe).await {
                        Ok(_) => true,
                        Err(e) => {
                            last = format!("/readyz: {}", chain(&e));
                            false
                        }
                    }
                }
                PlanePeer::KubeControllerManager => begin.elapsed() >= Duration::from_secs(1),
            };
            if served {
                let took = begin.elapsed();
                tracing::info!(peer = peer.name(), ?took, "control-plane peer serves again");
                return Ok(took);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let tail = self.peer(peer).as_ref().map(|p| p.log_tail(40)).unwrap_or_default();
        Err(Error::Timeout {
            what: format!("{} to serve again after a restart", peer.name()),
            waited: launch::start_timeout(),
            detail: format!("; last error: {last}; end of its log:\n{tail}"),
        })
    }

    /// Compacts etcd's history up to its current revision through etcd's gRPC gateway on
    /// loopback (`/v3/kv/range` for the revision, `/v3/kv/compaction` with `physical`); returns the
    /// revision. A watch that resumes from an older resourceVersion then gets "too old resource
    /// version" (410) from etcd; kube-apiserver's watch cache answers the same once it no longer
    /// holds that version (e.g. after a restart). etcd here listens on plain HTTP, 127.0.0.1 only.
    pub async fn compact_etcd(&self) -> Result<u64> {
        let what = "compacting etcd";
        let (code, body) =
            crate::http_post_json(&format!("{}/v3/kv/range", self.etcd_url), r#"{"key":"AA=="}"#).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::invalid(what, e))?;
        let revision = v
            .pointer("/header/revision")
            .and_then(|r| r.as_str().and_then(|s| s.parse().ok()).or_else(|| r.as_u64()))
            .ok_or_else(|| Error::invalid(what, format!("/v3/kv/range answered {code} without a revision")))?;
        let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
        let (code, reply) = crate::http_post_json(&format!("{}/v3/kv/compaction", self.etcd_url), &body).await?;
        if code != 200 {
            return Err(Error::invalid(
                what,
                format!("/v3/kv/compaction: HTTP {code}: {}", String::from_utf8_lossy(&reply)),
            ));
        }
        tracing::info!(revision, "etcd compacted");
        Ok(revision)
    }

    /// [`Self::stop_peer`] then [`Self::start_peer`]; returns the time to serve again.
    pub async fn restart_peer(&self, peer: PlanePeer, how: StopHow) -> Result<Duration> {
        self.stop_peer(peer, how)?;
        self.start_peer(peer).await
    }

    /// Restarts in place every peer that has exited on its own (killed from outside, crashed),
    /// waiting until each serves again; returns what was revived and how it had ended.
    pub async fn revive_dead_peers(&self) -> Result<Vec<(PlanePeer, String)>> {
        let mut revived = Vec::new();
        for peer in PlanePeer::ALL {
            let ended = match self.peer(peer).as_mut() {
                Some(p) => p.try_status()?,
                None => None,
            };
            if let Some(status) = ended {
                tracing::warn!(peer = peer.name(), %status, "control-plane peer exited; restarting it in place");
                self.start_peer(peer).await?;
                revived.push((peer, status.to_string()));
            }
        }
        Ok(revived)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The controller manager, then the apiserver, so neither spends its shutdown retrying a
        // vanished peer.
        for slot in [&mut self.controller_manager, &mut self.apiserver, &mut self.etcd] {
            if let Some(mut p) = slot.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
                p.stop(STOP_GRACE);
            }
        }
    }
}
