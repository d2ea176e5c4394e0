//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas are safe: the leader
//! reconciles and renews keys; a standby loads keys and serves the certificate and probes.
//!
//! The Lease is written with optimistic concurrency (resourceVersion), taken over only when
//! its holder stopped renewing for a full lease duration, renewed every third of it, and
//! released on shutdown so a standby takes over at once. A leader that cannot renew before
//! its lease runs out stops leading (its caller exits, and Kubernetes restarts the pod).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

#[derive(Debug, Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// Whether a lease held by someone else has run out at `now`.
pub fn expired(spec: &LeaseSpec, now: jiff::Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else { return true };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    match renewed.0.checked_add(jiff::SignedDuration::from_secs(secs)) {
        Ok(end) => end < now,
        Err(_) => false,
    }
}

impl LeaseLock {
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> LeaseLock {
        LeaseLock { api: Api::namespaced(client, namespace), name: name.into(), identity: identity.into(), duration }
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs().max(1)).unwrap_or(15)),
            acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to take or keep the lease. `Ok(true)` when we hold it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.read().await?;
        self.take_or_renew(current).await
    }

    /// The Lease as it is now (`None` when it does not exist yet).
    pub async fn read(&self) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(&self.name).await
    }

    /// Take or keep the lease given what [`Self::read`] returned, under the same rules: only
    /// when it is ours, free, or expired, and only if nobody wrote it since (resourceVersion).
    pub async fn take_or_renew(&self, current: Option<Lease>) -> Result<bool, kube::Error> {
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(ae)) if ae.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !ours && !free && !expired(&spec, jiff::Timestamp::now()) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(self.spec(if ours { spec.acquire_time } else { None }, transitions));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Someone else wrote first.
            Err(kube::Error::Api(ae)) if ae.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wait until we hold the lease.
    pub async fn acquire(&self) {
        let retry = (self.duration / 5).max(Duration::from_millis(500));
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read or write the leader Lease"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renew until renewal fails for a whole lease duration; returns when leadership is lost.
    pub async fn keep(&self) {
        let period = (self.duration / 3).max(Duration::from_millis(300));
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader Lease");
                    if last_ok.elapsed() >= self.duration {
                        return;
                    }
                }
            }
        }
    }

    /// Give the lease up (on shutdown), so a standby does not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
            if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
                tracing::warn!(error = %e, "cannot release the leader Lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_one_duration_after_its_last_renewal() {
        let now = jiff::Timestamp::now();
        let at = |secs_ago: i64| MicroTime(now.checked_sub(jiff::SignedDuration::from_secs(secs_ago)).unwrap());
        let spec =
            |renew| LeaseSpec { renew_time: Some(renew), lease_duration_seconds: Some(15), ..Default::default() };
        assert!(!expired(&spec(at(5)), now));
        assert!(expired(&spec(at(20)), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
