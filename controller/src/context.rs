//! What the controller's tasks share, grouped by what uses it.
//!
//! [`Shared`] holds the handles every part needs (client, configuration, key [`Registry`],
//! [`Metrics`], [`AuditLog`], event recorder) and two groups that only some parts touch:
//! [`Limits`] (what bounds callers' work: the HTTP and aggregated API and the private-key pool)
//! and [`Standing`] (where this replica stands: keys listed, watches synced, leadership, shards;
//! read by readiness, written by the key watch, the leader loop and reconcile). It depends on
//! no serving or reconciling module, so `http`, `reconcile` and `lib` no longer form a cycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::budget::{OpLimiter, PrivatePool, RateLimiter};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shard;

/// Audit records of refused unauthenticated calls per client address: rate and burst.
pub const REFUSAL_AUDITS_PER_SECOND: f64 = 1.0;
pub const REFUSAL_AUDITS_BURST: u32 = 20;

/// Everything the tasks of the controller share.
pub struct Shared {
    pub client: kube::Client,
    pub config: Config,
    pub registry: Registry,
    pub metrics: Metrics,
    pub audit: AuditLog,
    pub recorder: Recorder,
    /// What bounds callers' work.
    pub limits: Limits,
    /// Where this replica stands.
    pub standing: Standing,
    /// The PKCS#11 token new keys are made in (`--pkcs11-module`), once opened.
    pub token: std::sync::OnceLock<Arc<gitseal_keys::pkcs11::Token>>,
}

/// What bounds the work callers can cause: requests per client, refusals that reach the audit
/// log, and private-key operations (one pool for everything, reconcile first).
#[derive(Debug)]
pub struct Limits {
    /// Legacy endpoint requests per client address (`--rate-limit`).
    pub requests: RateLimiter,
    /// How many refusals of unauthenticated callers (by address) reach the audit log: a flood
    /// of free refusals must not fill the disk (and, with `--audit-required`, stop unsealing).
    /// Refusals beyond it are still counted in `gitseal_api_requests_total`.
    pub refusal_audits: RateLimiter,
    /// The one pool that runs every private-key operation (reconcile first).
    pub pool: PrivatePool,
    /// API callers' budgets of private-key operations.
    pub ops: OpLimiter,
}

/// Where this replica stands; what readiness is made of.
#[derive(Debug)]
pub struct Standing {
    /// True once the key watch has listed the key Secrets.
    pub keys_synced: watch::Sender<bool>,
    /// SealedSecret watches not yet synced (leader only).
    pub watches_pending: AtomicI64,
    pub leading: AtomicBool,
    /// With `--shards` > 1: the shards this replica holds (see [`shard`]).
    pub shards: Option<Arc<shard::Shards>>,
    /// Unchanged objects waiting in the resync lanes (`gitseal_resync_backlog`).
    pub resync_backlog: Gauge,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).field("registry", &self.registry).finish()
    }
}

impl Shared {
    /// Everything shared, with an empty key registry, from the resolved configuration.
    pub fn new(client: kube::Client, config: Config, audit: AuditLog) -> Shared {
        let reporter = Reporter { controller: "gitseal-controller".into(), instance: Some(config.identity.clone()) };
        let b = &config.budget;
        let mut metrics = Metrics::default();
        metrics.registry.register(
            "audit_write_errors",
            "Audit records that could not be written (lost, or refused work with --audit-required)",
            audit.write_errors.clone(),
        );
        let shards = shard::Shards::for_config(&config, &mut metrics.registry);
        let resync_backlog = Gauge::default();
        metrics.registry.register(
            "resync_backlog",
            "Unchanged SealedSecrets waiting to be re-checked behind new and changed ones",
            resync_backlog.clone(),
        );
        Shared {
            recorder: Recorder::new(client.clone(), reporter),
            limits: Limits {
                requests: RateLimiter::new(config.rate_limit, config.rate_limit_burst),
                refusal_audits: RateLimiter::new(REFUSAL_AUDITS_PER_SECOND, REFUSAL_AUDITS_BURST),
                pool: PrivatePool::new(b.threads, b.api_queue),
                ops: OpLimiter::new(b.ops_rate, b.ops_burst, b.per_request),
            },
            standing: Standing {
                keys_synced: watch::channel(false).0,
                watches_pending: AtomicI64::new(0),
                leading: AtomicBool::new(false),
                shards,
                resync_backlog,
            },
            client,
            registry: Registry::default(),
            metrics,
            audit,
            token: std::sync::OnceLock::new(),
            config,
        }
    }

    /// Ready means: keys listed, a key loaded, and (when leading, or with shards) every watch synced.
    pub fn readiness(&self) -> Result<(), &'static str> {
        let st = &self.standing;
        if !*st.keys_synced.borrow() {
            return Err("key Secrets not listed yet");
        }
        if self.registry.sealing().is_none() {
            return Err("no sealing key loaded");
        }
        // With shards every replica reconciles, so every replica waits for its watches.
        let reconciling = st.leading.load(Ordering::SeqCst) || st.shards.is_some();
        if reconciling && st.watches_pending.load(Ordering::SeqCst) > 0 {
            return Err("SealedSecret watches not synced");
        }
        self.audit.ready_for_work()
    }
}
