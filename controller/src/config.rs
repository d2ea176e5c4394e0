//! Flags → resolved configuration. Every flag is also an environment variable
//! (`GITSEAL_<FLAG>`, upper case, `-` → `_`); the command line wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gitseal_keys::policy::RenewPolicy;
use time::OffsetDateTime;

/// Refuse the configuration with a one-line reason ([`crate::error::Error::Invalid`]).
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(crate::error::Error::invalid(format!($($arg)*)))
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "gitseal-controller",
    version,
    about = "Turns SealedSecrets into Secrets, owns and renews the sealing keys, and audits every unseal",
    after_help = "Every flag can also be set as an environment variable: GITSEAL_<FLAG>, e.g. GITSEAL_KEY_RENEW_PERIOD=720h."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML (both groups unless one is named).
    Crd {
        /// Only this group's CRD: gitseal (gitseal.dev/v1) or bitnami (bitnami.com/v1alpha1).
        group: Option<gitseal_shared::types::ApiGroup>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Namespace holding the key Secrets and the leader Lease (default: $POD_NAMESPACE, else the
    /// service-account namespace, else gitseal-system).
    #[arg(long, env = "GITSEAL_NAMESPACE")]
    pub namespace: Option<String>,
    /// Watch only these namespaces (comma-separated); all namespaces when empty.
    #[arg(long, env = "GITSEAL_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Also serve bitnami.com/v1alpha1 SealedSecrets and load Bitnami's key Secrets, so a cluster
    /// switches from Bitnami's controller with nothing re-sealed.
    #[arg(long, env = "GITSEAL_BITNAMI_COMPAT")]
    pub bitnami_compat: bool,
    /// Honour `gitseal.dev/restart-on-change: deployment/api, statefulset/db` on SealedSecrets:
    /// when their unsealed data changes, restart those workloads (same namespace, at most 8, only
    /// those whose pod template references the Secret) as `kubectl rollout restart` does. Needs
    /// get and patch on deployments, statefulsets and daemonsets (the chart's rolloutRestart.enabled)
    #[arg(long, env = "GITSEAL_ROLLOUT_RESTART")]
    pub rollout_restart: bool,
    /// generateName prefix of new key Secrets.
    #[arg(long, env = "GITSEAL_KEY_PREFIX", default_value = "gitseal-key-")]
    pub key_prefix: String,
    /// RSA key size of new keys: 2048, 3072, 4096 or 8192.
    #[arg(long, env = "GITSEAL_KEY_SIZE", default_value_t = gitseal_keys::RsaBits::default())]
    pub key_size: gitseal_keys::RsaBits,
    /// Validity of new certificates.
    #[arg(long, env = "GITSEAL_KEY_TTL", default_value = "87600h", value_parser = humantime::parse_duration)]
    pub key_ttl: Duration,
    /// Common name of new certificates (empty DN by default, like Bitnami).
    #[arg(long, env = "GITSEAL_MY_CN", default_value = "")]
    pub my_cn: String,
    /// Make a new key this often; 0 disables renewal.
    #[arg(long, env = "GITSEAL_KEY_RENEW_PERIOD", default_value = "720h", value_parser = humantime::parse_duration)]
    pub key_renew_period: Duration,
    /// Keys created before this time (RFC 3339) are never used for sealing: a new one is made at start.
    #[arg(long, env = "GITSEAL_KEY_CUTOFF_TIME")]
    pub key_cutoff_time: Option<String>,
    /// Hold back a renewed key from sealing until `gitseal keys backup` has taken a backup that
    /// contains it (Bitnami #359); `keys list` shows it as pending-backup.
    #[arg(long, env = "GITSEAL_REQUIRE_KEY_BACKUP")]
    pub require_key_backup: bool,
    /// Key Secrets whose certificate starts later than now plus this skew are refused (not
    /// loaded, not served, reported by Event, audit record and gitseal_keys{state="refused"}).
    #[arg(long, env = "GITSEAL_KEY_MAX_CLOCK_SKEW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub key_max_clock_skew: Duration,
    /// Only these age recipients (comma-separated age1…) may receive key backups; a backup to
    /// any other is refused and audited. Empty: any recipient the caller names.
    #[arg(long, env = "GITSEAL_BACKUP_RECIPIENTS", value_delimiter = ',')]
    pub backup_recipients: Vec<String>,
    /// Concurrent reconciles (each may spend RSA private operations). New and changed objects
    /// go first; with 2 or more, one is always kept for them while unchanged objects are
    /// re-checked.
    #[arg(long, env = "GITSEAL_WORKERS", default_value_t = 4)]
    pub workers: u16,
    /// Address of the HTTP API (/v1/cert.pem, /v1/verify, /v1/rotate, /v1/recipients, probes).
    #[arg(long, env = "GITSEAL_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "GITSEAL_METRICS_ADDR", default_value = "0.0.0.0:8081")]
    pub metrics_addr: SocketAddr,
    /// Requests per second each client may make to /v1/verify and /v1/rotate.
    #[arg(long, env = "GITSEAL_RATE_LIMIT", default_value_t = 2.0)]
    pub rate_limit: f64,
    /// Burst allowed above the rate limit.
    #[arg(long, env = "GITSEAL_RATE_LIMIT_BURST", default_value_t = 4)]
    pub rate_limit_burst: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "GITSEAL_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Turn off the unauthenticated /v1/verify and /v1/rotate (keep only cert, recipients, probes).
    #[arg(long, env = "GITSEAL_DISABLE_LEGACY_ENDPOINTS")]
    pub disable_legacy_endpoints: bool,
    /// Do not serve the sealing page under /seal/ (whoever serves the page serves the code that
    /// sees the values typed into it; users can run `gitseal web` locally instead).
    #[arg(long, env = "GITSEAL_DISABLE_SEAL_PAGE")]
    pub disable_seal_page: bool,
    /// Where audit records go: '-' for stdout, or a file (appended, chain resumed).
    #[arg(long, env = "GITSEAL_AUDIT_LOG", default_value = "-")]
    pub audit_log: String,
    /// Fail closed: while the audit sink cannot be written, stop unsealing and answering the
    /// verify/rotate/aggregated APIs, and report not ready; resume when it works again.
    #[arg(long, env = "GITSEAL_AUDIT_REQUIRED")]
    pub audit_required: bool,
    /// The leader checkpoints the audit chain head (ConfigMap gitseal-audit-checkpoint) after this
    /// many records; 0 checkpoints on the interval only.
    #[arg(long, env = "GITSEAL_AUDIT_CHECKPOINT_RECORDS", default_value_t = 100)]
    pub audit_checkpoint_records: u64,
    /// …and at least this often when records were written: records newer than the checkpoint
    /// can be cut from the log's tail unnoticed, so keep it short (one ConfigMap write per
    /// interval at most while records flow, none while idle).
    #[arg(long, env = "GITSEAL_AUDIT_CHECKPOINT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub audit_checkpoint_interval: Duration,
    /// Take a coordination.k8s.io Lease before reconciling, so several replicas are safe.
    #[arg(long, env = "GITSEAL_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "GITSEAL_LEASE_NAME", default_value = "gitseal-controller")]
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal.
    #[arg(long, env = "GITSEAL_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// Split the SealedSecrets into this many shards (1–64), each a Lease
    /// `<lease-name>-shard-<i>`: every replica reconciles the objects of the shards it holds,
    /// about shards / replicas of them. 1 (default): the leader alone reconciles. Needs
    /// --leader-elect; the leader Lease still decides who renews keys.
    #[arg(long, env = "GITSEAL_SHARDS", default_value_t = 1)]
    pub shards: u16,
    /// This replica's identity (default: $POD_NAME, else the host name).
    #[arg(long, env = "GITSEAL_POD_NAME")]
    pub pod_name: Option<String>,
    /// Address of the authenticated aggregated API (api.gitseal.dev/v1, HTTPS), served through
    /// the kube-apiserver by an APIService; off when not set.
    #[arg(long, env = "GITSEAL_AGGREGATED_ADDR", requires_all = ["aggregated_tls_cert", "aggregated_tls_key"])]
    pub aggregated_addr: Option<SocketAddr>,
    /// Serving certificate (PEM) of the aggregated API; its CA goes in the APIService's caBundle.
    #[arg(long, env = "GITSEAL_AGGREGATED_TLS_CERT")]
    pub aggregated_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the aggregated API's serving certificate.
    #[arg(long, env = "GITSEAL_AGGREGATED_TLS_KEY")]
    pub aggregated_tls_key: Option<PathBuf>,
    /// CA that signs the kube-apiserver's front-proxy client certificate. Default: read from
    /// the ConfigMap kube-system/extension-apiserver-authentication, as every extension API
    /// server does.
    #[arg(long, env = "GITSEAL_REQUESTHEADER_CLIENT_CA_FILE")]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed for the front-proxy client certificate (comma-separated; empty =
    /// any certificate the CA signed). Default: from the same ConfigMap.
    #[arg(long, env = "GITSEAL_REQUESTHEADER_ALLOWED_NAMES", value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Threads that run every RSA private-key operation (reconcile first; API work may use all
    /// but one of them).
    #[arg(long, env = "GITSEAL_PRIVATE_KEY_THREADS", default_value_t = 2)]
    pub private_key_threads: u16,
    /// API requests that may wait for a private-key thread; beyond it they get 503 + Retry-After.
    #[arg(long, env = "GITSEAL_API_QUEUE", default_value_t = 16)]
    pub api_queue: usize,
    /// Private-key operations per second each API client may spend (verify, rotate, reseal);
    /// legacy callers are counted by address, aggregated-API callers by user.
    #[arg(long, env = "GITSEAL_API_PRIVATE_OPS_RATE", default_value_t = 20.0)]
    pub api_private_ops_rate: f64,
    /// Private-key operations an API client may save up and spend at once.
    #[arg(long, env = "GITSEAL_API_PRIVATE_OPS_BURST", default_value_t = 200)]
    pub api_private_ops_burst: u32,
    /// PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so): new sealing keys are generated
    /// inside its token and never leave it; the key Secret holds only the certificate.
    #[arg(long, env = "GITSEAL_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the PKCS#11 token to use (default: the first slot with a token).
    #[arg(long, env = "GITSEAL_PKCS11_TOKEN_LABEL", requires = "pkcs11_module", conflicts_with = "pkcs11_slot")]
    pub pkcs11_token_label: Option<String>,
    /// Slot id of the PKCS#11 token to use, instead of its label.
    #[arg(long, env = "GITSEAL_PKCS11_SLOT", requires = "pkcs11_module")]
    pub pkcs11_slot: Option<u64>,
    /// File holding the token's user PIN (a mounted Secret; the PIN is never a flag value).
    #[arg(long, env = "GITSEAL_PKCS11_PIN_FILE", requires = "pkcs11_module")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Most private-key operations (items × keys tried) one API request may spend; beyond it
    /// the request is refused with 422.
    #[arg(long, env = "GITSEAL_MAX_PRIVATE_OPS_PER_REQUEST", default_value_t = 200)]
    pub max_private_ops_per_request: u32,
    /// Proxies (CIDR list) whose X-Forwarded-For is believed: behind them the client is the last
    /// hop that is not one of them. Empty: the header is ignored and the peer is the client.
    #[arg(long, env = "GITSEAL_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Both listeners: time a client has to finish the TLS handshake (aggregated API).
    #[arg(long, env = "GITSEAL_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// Both listeners: time a client has to send a request's headers.
    #[arg(long, env = "GITSEAL_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// Both listeners: time a client has to send a request's body.
    #[arg(long, env = "GITSEAL_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
    /// Both listeners: a connection with no request in flight is closed after this long.
    #[arg(long, env = "GITSEAL_IDLE_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Each listener: open connections beyond this are closed as soon as they are accepted.
    #[arg(long, env = "GITSEAL_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Each listener: requests handled at once; beyond it 503 with Retry-After.
    #[arg(long, env = "GITSEAL_MAX_CONCURRENT_REQUESTS", default_value_t = 64)]
    pub max_concurrent_requests: usize,
    /// Address of the kube-apiserver audit webhook receiver (HTTPS, POST /audit): who read
    /// gitseal's Secrets, recorded as SecretRead (docs/audit-reads.md); off when not set.
    #[arg(long, env = "GITSEAL_AUDIT_WEBHOOK_ADDR", requires_all = ["audit_webhook_tls_cert", "audit_webhook_tls_key"])]
    pub audit_webhook_addr: Option<SocketAddr>,
    /// Serving certificate (PEM) of the audit webhook receiver.
    #[arg(long, env = "GITSEAL_AUDIT_WEBHOOK_TLS_CERT")]
    pub audit_webhook_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the audit webhook receiver's serving certificate.
    #[arg(long, env = "GITSEAL_AUDIT_WEBHOOK_TLS_KEY")]
    pub audit_webhook_tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates may post audit events (the kube-apiserver's, from its
    /// webhook kubeconfig). At least this or --audit-webhook-token-file is required.
    #[arg(long, env = "GITSEAL_AUDIT_WEBHOOK_CLIENT_CA")]
    pub audit_webhook_client_ca: Option<PathBuf>,
    /// File holding the bearer token the kube-apiserver sends (its webhook kubeconfig's `token`).
    #[arg(long, env = "GITSEAL_AUDIT_WEBHOOK_TOKEN_FILE")]
    pub audit_webhook_token_file: Option<PathBuf>,
    /// Largest audit webhook body accepted, in bytes (one batch of events).
    #[arg(long, env = "GITSEAL_AUDIT_WEBHOOK_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub audit_webhook_max_body_bytes: usize,
    /// Log format on stderr.
    #[arg(long, env = "GITSEAL_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Log filter, e.g. info or gitseal_controller=debug.
    #[arg(long, env = "GITSEAL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Settings of the authenticated aggregated API.
#[derive(Debug, Clone)]
pub struct AggregatedConfig {
    pub addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub allowed_names: Vec<String>,
}

/// Budgets of private-key work (see [`crate::budget`]).
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    pub threads: usize,
    pub api_queue: usize,
    pub ops_rate: f64,
    pub ops_burst: u32,
    pub per_request: u32,
    pub trusted_proxies: Vec<crate::budget::Cidr>,
}

/// Timeouts and caps of each listener (see [`crate::serve`]).
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_requests: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_connections: 256,
            max_requests: 64,
        }
    }
}

/// Settings of the kube-apiserver audit webhook receiver ([`crate::audit_webhook`]).
#[derive(Debug, Clone)]
pub struct AuditWebhookConfig {
    pub addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub max_body_bytes: usize,
}

/// The resolved configuration every module reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub namespaces: Vec<String>,
    pub bitnami_compat: bool,
    /// `--rollout-restart`: act on `gitseal.dev/restart-on-change` ([`crate::rollout`]).
    pub rollout_restart: bool,
    pub key_prefix: String,
    pub key_size: gitseal_keys::RsaBits,
    pub key_ttl: time::Duration,
    pub my_cn: String,
    pub renew: RenewPolicy,
    pub require_key_backup: bool,
    pub key_max_clock_skew: time::Duration,
    /// Allowed backup recipients (age1…, validated); empty = any.
    pub backup_recipients: Vec<String>,
    pub workers: u16,
    pub listen_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub rate_limit: f64,
    pub rate_limit_burst: u32,
    pub max_body_bytes: usize,
    pub disable_legacy_endpoints: bool,
    pub disable_seal_page: bool,
    pub audit_log: Option<PathBuf>,
    pub audit_required: bool,
    pub audit_checkpoint_records: u64,
    pub audit_checkpoint_interval: Duration,
    pub leader_elect: bool,
    pub lease_name: String,
    pub lease_duration: Duration,
    /// Shards across replicas (1 = single leader); see [`crate::shard`].
    pub shards: u16,
    pub identity: String,
    pub aggregated: Option<AggregatedConfig>,
    pub audit_webhook: Option<AuditWebhookConfig>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub budget: BudgetConfig,
    pub listener: ListenerLimits,
    /// Keys in a PKCS#11 token (`--pkcs11-module`); `None`: keys in memory.
    pub pkcs11: Option<Pkcs11Config>,
}

/// Where the token is; the PIN is read from `pin_file` when the token is opened.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token_label: Option<String>,
    pub slot: Option<u64>,
    pub pin_file: PathBuf,
}

const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl RunArgs {
    pub fn resolve(self) -> crate::error::Result<Config> {
        let namespace = self
            .namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|s| !s.is_empty()))
            .or_else(|| std::fs::read_to_string(SA_NAMESPACE_FILE).ok().map(|s| s.trim().to_string()))
            .unwrap_or_else(|| "gitseal-system".into());
        let identity = self
            .pod_name
            .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()))
            .unwrap_or_else(|| "gitseal-controller".into());
        if !(1..=crate::shard::plan::MAX_SHARDS).contains(&self.shards) {
            bail!("--shards {} is out of range: use 1 to {}", self.shards, crate::shard::plan::MAX_SHARDS);
        }
        if self.shards > 1 && !self.leader_elect {
            bail!("--shards {} needs --leader-elect (the shards are Leases, like the leader's)", self.shards);
        }
        if self.shards > 1 && self.lease_duration < Duration::from_secs(1) {
            bail!("--lease-duration must be at least 1s with --shards");
        }
        if self.workers == 0 {
            bail!("--workers must be at least 1");
        }
        let cutoff = match &self.key_cutoff_time {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(parse_time(s).with_context(|| format!("--key-cutoff-time {s:?}"))?),
        };
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse().map_err(|e: crate::budget::CidrError| {
                    crate::error::Error::invalid(format!("--trusted-proxies: {e}"))
                })
            })
            .collect::<crate::error::Result<Vec<_>>>()?;
        if !(self.api_private_ops_rate.is_finite() && self.api_private_ops_rate >= 0.0) {
            bail!("--api-private-ops-rate must be a number of operations per second, 0 or more");
        }
        let period = (!self.key_renew_period.is_zero())
            .then(|| time::Duration::try_from(self.key_renew_period))
            .transpose()
            .context("--key-renew-period is too large")?;
        let audit_webhook = match (self.audit_webhook_addr, self.audit_webhook_tls_cert, self.audit_webhook_tls_key) {
            (Some(addr), Some(tls_cert), Some(tls_key)) => {
                if self.audit_webhook_client_ca.is_none() && self.audit_webhook_token_file.is_none() {
                    bail!(
                        "--audit-webhook-addr needs a way to authenticate the kube-apiserver: --audit-webhook-client-ca or --audit-webhook-token-file"
                    );
                }
                Some(AuditWebhookConfig {
                    addr,
                    tls_cert,
                    tls_key,
                    client_ca: self.audit_webhook_client_ca,
                    token_file: self.audit_webhook_token_file,
                    max_body_bytes: self.audit_webhook_max_body_bytes,
                })
            }
            _ => None,
        };
        Ok(Config {
            namespace,
            namespaces: self.namespaces.into_iter().filter(|s| !s.is_empty()).collect(),
            bitnami_compat: self.bitnami_compat,
            rollout_restart: self.rollout_restart,
            key_prefix: self.key_prefix,
            key_size: self.key_size,
            key_ttl: time::Duration::try_from(self.key_ttl).context("--key-ttl is too large")?,
            my_cn: self.my_cn,
            renew: RenewPolicy { period, cutoff },
            require_key_backup: self.require_key_backup,
            key_max_clock_skew: time::Duration::try_from(self.key_max_clock_skew)
                .context("--key-max-clock-skew is too large")?,
            backup_recipients: backup_recipients(self.backup_recipients)?,
            workers: self.workers,
            listen_addr: self.listen_addr,
            metrics_addr: self.metrics_addr,
            rate_limit: self.rate_limit,
            rate_limit_burst: self.rate_limit_burst.max(1),
            max_body_bytes: self.max_body_bytes,
            disable_legacy_endpoints: self.disable_legacy_endpoints,
            disable_seal_page: self.disable_seal_page,
            audit_log: (self.audit_log != "-").then(|| PathBuf::from(self.audit_log)),
            audit_required: self.audit_required,
            audit_checkpoint_records: self.audit_checkpoint_records,
            audit_checkpoint_interval: self.audit_checkpoint_interval.max(Duration::from_millis(100)),
            leader_elect: self.leader_elect,
            lease_name: self.lease_name,
            lease_duration: self.lease_duration,
            shards: self.shards,
            identity,
            aggregated: match (self.aggregated_addr, self.aggregated_tls_cert, self.aggregated_tls_key) {
                (Some(addr), Some(tls_cert), Some(tls_key)) => Some(AggregatedConfig {
                    addr,
                    tls_cert,
                    tls_key,
                    client_ca_file: self.requestheader_client_ca_file,
                    allowed_names: self.requestheader_allowed_names.into_iter().filter(|s| !s.is_empty()).collect(),
                }),
                _ => None,
            },
            audit_webhook,
            log_format: self.log_format,
            log_level: self.log_level,
            pkcs11: match (self.pkcs11_module, self.pkcs11_pin_file) {
                (Some(module), Some(pin_file)) => Some(Pkcs11Config {
                    module,
                    token_label: self.pkcs11_token_label,
                    slot: self.pkcs11_slot,
                    pin_file,
                }),
                (Some(_), None) => bail!("--pkcs11-module needs --pkcs11-pin-file (the token's user PIN)"),
                (None, _) => None,
            },
            budget: BudgetConfig {
                threads: usize::from(self.private_key_threads.max(1)),
                api_queue: self.api_queue,
                ops_rate: self.api_private_ops_rate,
                ops_burst: self.api_private_ops_burst.max(1),
                per_request: self.max_private_ops_per_request.max(1),
                trusted_proxies,
            },
            listener: ListenerLimits {
                handshake_timeout: self.tls_handshake_timeout,
                header_timeout: self.header_read_timeout,
                body_timeout: self.body_read_timeout,
                idle_timeout: self.idle_timeout,
                max_connections: self.max_connections.max(1),
                max_requests: self.max_concurrent_requests.max(1),
            },
        })
    }
}

/// `--backup-recipients`: each an age X25519 recipient, normalised.
fn backup_recipients(given: Vec<String>) -> crate::error::Result<Vec<String>> {
    use std::str::FromStr as _;
    given
        .into_iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .map(|r| match age::x25519::Recipient::from_str(&r) {
            Ok(parsed) => Ok(parsed.to_string()),
            Err(_) => bail!("--backup-recipients: {r:?} is not an age recipient (age1…)"),
        })
        .collect()
}

/// RFC 3339, or RFC 1123Z as Bitnami's `--key-cutoff-time` takes (`date -R`).
fn parse_time(s: &str) -> crate::error::Result<OffsetDateTime> {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Rfc2822))
        .context("expected RFC 3339 (2026-01-02T15:04:05Z) or RFC 1123Z (Mon, 02 Jan 2026 15:04:05 +0000)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_size_takes_only_the_supported_rsa_sizes() {
        let cli = Cli::try_parse_from(["x", "--key-size", "3072"]).unwrap();
        assert_eq!(cli.run.resolve().unwrap().key_size, gitseal_keys::RsaBits::Rsa3072);
        assert_eq!(Cli::try_parse_from(["x"]).unwrap().run.resolve().unwrap().key_size.bits(), 4096);
        let err = Cli::try_parse_from(["x", "--key-size", "1024"]).unwrap_err().to_string();
        assert!(err.contains(r#"unsupported RSA key size "1024": use 2048, 3072, 4096 or 8192"#), "{err}");
    }

    #[test]
    fn trusted_proxies_are_cidrs_and_a_bad_one_is_refused_by_name() {
        let cli = Cli::try_parse_from(["x", "--trusted-proxies", "10.0.0.0/8,::1"]).unwrap();
        assert_eq!(cli.run.resolve().unwrap().budget.trusted_proxies.len(), 2);
        let cli = Cli::try_parse_from(["x", "--trusted-proxies", "10.0.0.0/99"]).unwrap();
        let err = cli.run.resolve().unwrap_err().to_string();
        assert!(err.contains("--trusted-proxies") && err.contains("10.0.0.0/99"), "{err}");
    }

    #[test]
    fn zero_renew_period_disables_renewal_and_cutoff_accepts_both_time_forms() {
        let cli = Cli::try_parse_from([
            "x",
            "--key-renew-period",
            "0s",
            "--key-cutoff-time",
            "Mon, 02 Jan 2026 15:04:05 +0000",
        ])
        .unwrap();
        let c = cli.run.resolve().unwrap();
        assert_eq!(c.renew.period, None);
        assert!(c.renew.cutoff.is_some());
        let cli = Cli::try_parse_from(["x", "--key-cutoff-time", "2026-01-02T15:04:05Z"]).unwrap();
        assert!(cli.run.resolve().unwrap().renew.cutoff.is_some());
    }

    #[test]
    fn backup_recipients_must_be_age_recipients_and_skew_has_a_safe_default() {
        let r = age::x25519::Identity::generate().to_public().to_string();
        let c = Cli::try_parse_from(["x", "--backup-recipients", &format!(" {r} ,")]).unwrap().run.resolve().unwrap();
        assert_eq!(c.backup_recipients, vec![r]);
        assert_eq!(c.key_max_clock_skew, time::Duration::minutes(5));
        let err = Cli::try_parse_from(["x", "--backup-recipients", "age1nope"]).unwrap().run.resolve().unwrap_err();
        assert!(err.to_string().contains("not an age recipient"), "{err}");
    }

    #[test]
    fn the_audit_webhook_refuses_to_start_without_a_way_to_authenticate_the_apiserver() {
        let base =
            ["x", "--audit-webhook-addr=127.0.0.1:8443", "--audit-webhook-tls-cert=c", "--audit-webhook-tls-key=k"];
        let err = Cli::try_parse_from(base).unwrap().run.resolve().unwrap_err();
        assert!(err.to_string().contains("--audit-webhook-client-ca"), "{err}");
        let with_token = base.iter().copied().chain(["--audit-webhook-token-file=t"]);
        let c = Cli::try_parse_from(with_token).unwrap().run.resolve().unwrap();
        assert!(c.audit_webhook.is_some_and(|w| w.token_file.is_some() && w.client_ca.is_none()));
        assert!(Cli::try_parse_from(["x"]).unwrap().run.resolve().unwrap().audit_webhook.is_none());
    }

    #[test]
    fn shards_default_to_one_and_more_need_leader_election_and_stay_within_the_cap() {
        assert_eq!(Cli::try_parse_from(["x"]).unwrap().run.resolve().unwrap().shards, 1);
        let c = Cli::try_parse_from(["x", "--leader-elect", "--shards", "8"]).unwrap().run.resolve().unwrap();
        assert_eq!(c.shards, 8);
        let err = Cli::try_parse_from(["x", "--shards", "8"]).unwrap().run.resolve().unwrap_err();
        assert!(err.to_string().contains("needs --leader-elect"), "{err}");
        for bad in ["0", "65"] {
            let err = Cli::try_parse_from(["x", "--leader-elect", "--shards", bad]).unwrap().run.resolve().unwrap_err();
            assert!(err.to_string().contains("out of range"), "{err}");
        }
    }
}
