//! gitseal-controller: watches SealedSecrets (gitseal.dev/v1, and bitnami.com/v1alpha1 with
//! `--bitnami-compat`) and keeps the matching Secrets true to Git; holds, loads and renews the
//! sealing keys; serves the Bitnami-compatible HTTP API; audits every unseal and key operation.
//!
//! Shape: [`decide`] is the pure decision, [`reconcile`] fetches and applies it, [`registry`]
//! holds keys that [`keys`] loads and renews, [`http`] serves the API and [`metrics`], [`leader`]
//! makes several replicas safe, [`audit`] writes the hash-chained trail. `main.rs` only wires.

pub mod aggregated;
pub mod audit;
pub mod audit_webhook;
pub mod backoff;
pub mod budget;
pub mod cache;
pub mod config;
pub mod context;
pub mod crd;
pub mod decide;
pub mod driver;
pub mod error;
pub mod http;
pub mod key_ops;
pub mod keys;
pub mod lanes;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod mock_api;
pub mod object_events;
pub mod reconcile;
pub mod registry;
pub mod rollout;
pub mod seal_page;
pub mod serve;
pub mod service;
pub mod shard;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod token;
pub mod trim;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::Context as _;
use futures::StreamExt;
use gitseal_shared::audit::Outcome as AuditOutcome;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::config::Config;
pub use crate::context::{Limits, Shared, Standing};

/// The audit sink, continuing the cluster's history: the signing key from its Secret (made on
/// first start), the head from the audit file or the checkpoint.
async fn open_audit(client: &kube::Client, config: &Config) -> crate::error::Result<AuditLog> {
    let anchor = audit::cluster::read_checkpoint(client, &config.namespace).await?;
    let key = audit::cluster::load_or_create_key(client, &config.namespace, anchor.as_ref()).await?;
    let policy = audit::CheckpointPolicy { records: config.audit_checkpoint_records };
    AuditLog::open(config.audit_log.as_deref(), &config.identity, key, anchor.as_ref(), config.audit_required, policy)
        .context("cannot open the audit log")
}

/// How long a start waits for the Kubernetes API (kube-apiserver or etcd restarting, RBAC not
/// loaded yet) before giving up; Kubernetes then restarts the pod.
pub const STARTUP_API_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// [`open_audit`], retrying while the Kubernetes API fails (unreachable, 5xx, a 403 from an
/// apiserver whose RBAC cache is still loading) for up to [`STARTUP_API_WAIT`]; anything else
/// (a malformed audit key Secret, an unusable audit file) ends the start at once.
async fn open_audit_retrying(client: &kube::Client, config: &Config) -> crate::error::Result<AuditLog> {
    let deadline = tokio::time::Instant::now() + STARTUP_API_WAIT;
    loop {
        match open_audit(client, config).await {
            Err(e @ crate::error::Error::Kube { .. }) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %crate::error::report(&e), "the Kubernetes API is not usable yet; retrying in 2s");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Run the controller until SIGTERM.
pub async fn run(config: Config) -> crate::error::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (no in-cluster config and no usable KUBECONFIG)")?;
    let audit = open_audit_retrying(&client, &config).await?;
    let shared = Arc::new(Shared::new(client, config, audit));
    if let Some(p11) = shared.config.pkcs11.clone() {
        let sessions = shared.config.budget.threads;
        let token = tokio::task::spawn_blocking(move || token::open(&p11, sessions))
            .await
            .context("the PKCS#11 open task failed")??;
        let _ = shared.token.set(token);
    }
    let mut rec = AuditLog::record("ControllerStarted", AuditOutcome::Success);
    rec.message = Some(format!("namespace {}", shared.config.namespace));
    shared.audit.write(rec);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = tokio::net::TcpListener::bind(shared.config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", shared.config.listen_addr))?;
    let metrics = tokio::net::TcpListener::bind(shared.config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", shared.config.metrics_addr))?;
    let (api_limits, api_app, api_stop) = (shared.config.listener, http::router(shared.clone()), stop_rx.clone());
    let api_server = async move {
        serve::serve_plain(api, api_limits, api_app, api_stop).await;
        Ok::<(), std::io::Error>(())
    };
    let metrics_server =
        axum::serve(metrics, http::metrics_router(shared.clone())).with_graceful_shutdown(stopped(stop_rx.clone()));
    let servers = tokio::spawn(async move {
        let (a, m) = tokio::join!(api_server, metrics_server);
        a.and(m)
    });
    if let Some(agg) = shared.config.aggregated.clone() {
        let (shared, stop) = (shared.clone(), stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = aggregated::serve(shared, agg, stop).await {
                tracing::error!(error = %crate::error::report(&e), "aggregated API stopped");
            }
        });
    }
    if let Some(hook) = shared.config.audit_webhook.clone() {
        let (shared, stop) = (shared.clone(), stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = audit_webhook::serve(shared, hook, stop).await {
                tracing::error!(error = %crate::error::report(&e), "audit webhook receiver stopped");
            }
        });
    }
    tokio::spawn(keys::watch_keys(shared.clone()));
    tokio::spawn(audit::cluster::monitor_sink(shared.clone()));
    tokio::spawn(audit::cluster::watch_key(shared.clone()));
    tracing::info!(listen = %shared.config.listen_addr, metrics = %shared.config.metrics_addr, identity = %shared.config.identity, "gitseal-controller started");

    let result = lead_and_work(shared.clone(), shutdown_signal()).await;
    let _ = stop_tx.send(true);
    match servers.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("gitseal-controller stopped");
    result
}

async fn lead_and_work(
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) -> crate::error::Result<()> {
    if shared.standing.shards.is_some() {
        return shard::lead_and_work(shared, shutdown).await;
    }
    tokio::pin!(shutdown);
    let lock = shared.config.leader_elect.then(|| {
        leader::LeaseLock::new(
            shared.client.clone(),
            &shared.config.namespace,
            &shared.config.lease_name,
            &shared.config.identity,
            shared.config.lease_duration,
        )
    });
    if let Some(lock) = &lock {
        tracing::info!(lease = %shared.config.lease_name, "waiting for leadership (standby serves the certificate)");
        tokio::select! {
            () = lock.acquire() => {}
            () = &mut shutdown => return Ok(()),
        }
        tracing::info!("became leader");
    }
    shared.standing.leading.store(true, Ordering::SeqCst);
    shared.metrics.leader.set(1);
    let mut rec = AuditLog::record("LeadershipAcquired", AuditOutcome::Success);
    rec.message = Some(shared.config.identity.clone());
    shared.audit.write(rec);

    let renewal = tokio::spawn(keys::renewal_loop(shared.clone()));
    let checkpoints = tokio::spawn(audit::cluster::checkpoint_loop(shared.clone()));
    let work = driver::controllers(shared.clone()).for_each(|()| async {});
    let keep = async {
        match &lock {
            Some(l) => l.keep().await,
            None => futures::future::pending::<()>().await,
        }
    };
    let result = tokio::select! {
        () = work => Err(crate::error::Error::StreamsEnded),
        () = keep => Err(crate::error::Error::LostLease),
        () = &mut shutdown => Ok(()),
    };
    renewal.abort();
    checkpoints.abort();
    if let Err(e) = audit::cluster::write_checkpoint(&shared).await {
        tracing::warn!(error = %crate::error::report(&e), "cannot write the last audit checkpoint");
    }
    shared.standing.leading.store(false, Ordering::SeqCst);
    shared.metrics.leader.set(0);
    if let Some(lock) = &lock {
        lock.release().await;
    }
    result
}
