//! Prometheus metrics. Labels are bounded: every label value comes from an exhaustive match to
//! a `&'static str`, never from object names. Counters with labels are initialized at zero, so
//! dashboards and alerts see them before the first error (Bitnami #543).

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decide::{Outcome, Reason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

/// `caller` is who the work was for (reconcile or api); `outcome` whether the job that spent
/// them succeeded (`ok`) or not (`failed`: wrong keys, refused, over budget).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrivateOpLabels {
    pub caller: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Endpoint {
    Cert,
    Verify,
    Rotate,
    Recipients,
    AggregatedVerify,
    AggregatedReseal,
}

impl Endpoint {
    /// snake_case label value, like every other label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Cert => "cert",
            Endpoint::Verify => "verify",
            Endpoint::Rotate => "rotate",
            Endpoint::Recipients => "recipients",
            Endpoint::AggregatedVerify => "aggregated_verify",
            Endpoint::AggregatedReseal => "aggregated_reseal",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

/// Every metric family of the controller, registered on one registry.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub unseal_errors: Family<ReasonLabels, Counter>,
    pub unseal_duration: Histogram,
    pub private_key_ops: Family<PrivateOpLabels, Counter>,
    pub keys_loaded: Family<StateLabels, Gauge>,
    /// Usable keys by where their RSA unwrap runs (`memory`, `pkcs11-oaep`, `pkcs11-raw-rsa`).
    pub key_backends: Family<BackendLabels, Gauge>,
    pub latest_key_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub reconciles_in_flight: Gauge,
    pub revoked_sealed_secrets: Gauge,
    /// The objects behind `revoked_sealed_secrets` (namespace/name).
    revoked_objects: std::sync::Mutex<std::collections::HashSet<String>>,
    pub api_requests: Family<ApiLabels, Counter>,
    pub leader: Gauge,
    /// Reconciles that ended in an API error and are retried (`error_policy`), by step.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Key Secrets (sealing keys, the digest key) deleted while their key was loaded.
    pub key_secrets_deleted: Counter,
    /// Key Secrets (sealing keys, the audit key) whose content was replaced while loaded.
    pub key_secrets_replaced: Counter,
    /// Tasks alive on the controller's tokio runtime, sampled on every scrape (leak watch).
    pub tokio_alive_tasks: Gauge,
}

pub const OUTCOMES: [&str; 4] = ["in_sync", "unsealed", "drift_reverted", "failed"];
pub const REASONS: [Reason; 8] = [
    Reason::DecryptFailed,
    Reason::KeyRevoked,
    Reason::InvalidSealedSecret,
    Reason::TemplateFailed,
    Reason::SecretNotOwned,
    Reason::SecretImmutable,
    Reason::NoKeys,
    Reason::KeyUnavailable,
];

/// Label values of `reconcile_errors` (see `reconcile::Error::metric_label`).
pub const RECONCILE_ERRORS: [&str; 6] = ["get_secret", "apply", "status", "decide", "get_object", "key_unavailable"];

pub fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::InSync => "in_sync",
        Outcome::Unsealed => "unsealed",
        Outcome::DriftReverted => "drift_reverted",
        Outcome::Failed(_) => "failed",
    }
}

impl Metrics {
    /// Record whether the last reconcile of `object` (namespace/name) failed on a revoked key,
    /// and set `gitseal_sealed_secrets_on_revoked_keys` to how many did.
    pub fn mark_revoked(&self, object: String, revoked: bool) {
        let mut s = self.revoked_objects.lock().unwrap_or_else(|p| p.into_inner());
        if revoked {
            s.insert(object);
        } else {
            s.remove(&object);
        }
        self.revoked_sealed_secrets.set(i64::try_from(s.len()).unwrap_or(i64::MAX));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gitseal");
        let m = Metrics {
            reconciles: Family::default(),
            unseal_errors: Family::default(),
            unseal_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            private_key_ops: Family::default(),
            keys_loaded: Family::default(),
            key_backends: Family::default(),
            latest_key_age_seconds: Gauge::default(),
            reconciles_in_flight: Gauge::default(),
            revoked_sealed_secrets: Gauge::default(),
            revoked_objects: std::sync::Mutex::default(),
            api_requests: Family::default(),
            leader: Gauge::default(),
            reconcile_errors: Family::default(),
            key_secrets_deleted: Counter::default(),
            key_secrets_replaced: Counter::default(),
            tokio_alive_tasks: Gauge::default(),
            registry: Registry::default(),
        };
        for o in OUTCOMES {
            let _ = m.reconciles.get_or_create(&OutcomeLabels { outcome: o });
        }
        for r in REASONS {
            let _ = m.unseal_errors.get_or_create(&ReasonLabels { reason: r.metric_label() });
        }
        for caller in ["reconcile", "api"] {
            for outcome in ["ok", "failed"] {
                let _ = m.private_key_ops.get_or_create(&PrivateOpLabels { caller, outcome });
            }
        }
        for s in ["active", "retired", "revoked"] {
            let _ = m.keys_loaded.get_or_create(&StateLabels { state: s });
        }
        registry.register("reconciles", "SealedSecret reconciles by outcome", m.reconciles.clone());
        registry.register(
            "unseal_errors",
            "SealedSecrets that could not become Secrets, by reason",
            m.unseal_errors.clone(),
        );
        registry.register(
            "unseal_duration_seconds",
            "Time to decide and apply one SealedSecret",
            m.unseal_duration.clone(),
        );
        registry.register(
            "private_key_operations",
            "RSA private-key operations, wrong keys and failed jobs included, by caller class and job outcome",
            m.private_key_ops.clone(),
        );
        registry.register("keys", "Sealing keys loaded, by state", m.keys_loaded.clone());
        registry.register(
            "key_backends",
            "Usable sealing keys by where RSA unwraps run (memory, pkcs11-oaep, pkcs11-raw-rsa)",
            m.key_backends.clone(),
        );
        registry.register(
            "latest_key_age_seconds",
            "Age of the newest active sealing key",
            m.latest_key_age_seconds.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now (work queue depth)",
            m.reconciles_in_flight.clone(),
        );
        registry.register(
            "sealed_secrets_on_revoked_keys",
            "SealedSecrets whose last reconcile failed because their key is revoked",
            m.revoked_sealed_secrets.clone(),
        );
        registry.register("api_requests", "HTTP API requests by endpoint and outcome", m.api_requests.clone());
        registry.register("leader", "1 when this replica holds the leader Lease", m.leader.clone());
        for e in RECONCILE_ERRORS {
            let _ = m.reconcile_errors.get_or_create(&ErrorLabels { error: e });
        }
        registry.register(
            "reconcile_errors",
            "Reconciles that failed on the Kubernetes API (or on a token that did not answer) and are retried, by step",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "key_secrets_deleted",
            "Key Secrets deleted while their key was loaded (kept in memory and restored)",
            m.key_secrets_deleted.clone(),
        );
        registry.register(
            "key_secrets_replaced",
            "Key Secrets replaced in place while their key was loaded (old key kept, Secret written back)",
            m.key_secrets_replaced.clone(),
        );
        registry.register(
            "tokio_alive_tasks",
            "Tasks alive on the controller's async runtime",
            m.tokio_alive_tasks.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Text exposition for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Count one reconcile and time it until the guard drops.
    pub fn reconcile_started(&self) -> ReconcileGuard<'_> {
        self.reconciles_in_flight.inc();
        ReconcileGuard { metrics: self, start: Instant::now() }
    }

    /// Count one reconcile outcome. Its private operations are counted by the pool that ran
    /// them ([`Metrics::private_ops`]), failed ones included.
    pub fn record(&self, outcome: Outcome) {
        self.reconciles.get_or_create(&OutcomeLabels { outcome: outcome_label(outcome) }).inc();
        if let Outcome::Failed(r) = outcome {
            self.unseal_errors.get_or_create(&ReasonLabels { reason: r.metric_label() }).inc();
        }
    }

    /// Count private-key operations spent for `class` by a job that succeeded or not.
    pub fn private_ops(&self, class: crate::budget::WorkClass, ok: bool, ops: u64) {
        let labels = PrivateOpLabels { caller: class.label(), outcome: if ok { "ok" } else { "failed" } };
        self.private_key_ops.get_or_create(&labels).inc_by(ops);
    }

    pub fn api(&self, endpoint: Endpoint, outcome: &'static str) {
        self.api_requests.get_or_create(&ApiLabels { endpoint: endpoint.label(), outcome }).inc();
    }
}

/// Records the reconcile duration and the in-flight gauge when dropped.
#[derive(Debug)]
pub struct ReconcileGuard<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileGuard<'_> {
    fn drop(&mut self) {
        self.metrics.reconciles_in_flight.dec();
        self.metrics.unseal_duration.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_exist_at_zero_before_any_event() {
        let m = Metrics::default();
        let text = m.encode();
        assert!(text.contains("gitseal_unseal_errors_total{reason=\"decrypt_failed\"} 0"), "{text}");
        assert!(text.contains("gitseal_reconciles_total{outcome=\"drift_reverted\"} 0"), "{text}");
        assert!(text.contains("gitseal_reconcile_errors_total{error=\"apply\"} 0"), "{text}");
        assert!(text.contains("gitseal_private_key_operations_total{caller=\"api\",outcome=\"failed\"} 0"), "{text}");
        m.record(Outcome::Failed(Reason::KeyRevoked));
        m.private_ops(crate::budget::WorkClass::Api, false, 3);
        let text = m.encode();
        assert!(text.contains("gitseal_unseal_errors_total{reason=\"key_revoked\"} 1"), "{text}");
        assert!(text.contains("gitseal_private_key_operations_total{caller=\"api\",outcome=\"failed\"} 3"), "{text}");
    }
}
