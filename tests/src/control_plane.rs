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

pub(crate) mod access;
mod audit;
mod launch;

use std::{
    path::{Path, PathBuf},
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
    // Option so that Drop can stop them in order; always Some until then.
    controller_manager: Option<ChildProcess>,
    apiserver: Option<ChildProcess>,
    etcd: Option<ChildProcess>,
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
            controller_manager: Some(controller_manager),
            apiserver: Some(apiserver),
            etcd: Some(etcd),
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
        let rss = |p: &Option<ChildProcess>| p.as_ref().and_then(ChildProcess::peak_rss_kib);
        (rss(&self.etcd), rss(&self.apiserver))
    }

    /// Process ids of etcd and kube-apiserver.
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        let id = |p: &Option<ChildProcess>| p.as_ref().map(ChildProcess::id);
        (id(&self.etcd), id(&self.apiserver))
    }

    /// The last `lines` lines of kube-apiserver's log.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.apiserver.as_ref().map(|p| p.log_tail(lines)).unwrap_or_default()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The controller manager, then the apiserver, so neither spends its shutdown retrying a
        // vanished peer.
        if let Some(mut kcm) = self.controller_manager.take() {
            kcm.stop(STOP_GRACE);
        }
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.stop(STOP_GRACE);
        }
        if let Some(mut etcd) = self.etcd.take() {
            etcd.stop(STOP_GRACE);
        }
    }
}
