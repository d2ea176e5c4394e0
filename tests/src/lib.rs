//! gitseal's integration-test harness: a real Kubernetes control plane and the Go peers.
//!
//! What it is:
//! - [`ControlPlane`]: etcd + kube-apiserver built by `tests/peers/install.sh`, started on free
//!   loopback ports with envtest's flags, RBAC and the aggregation-layer (front-proxy) flags, and an
//!   admin kubeconfig. [`ControlPlane::shared`] starts **one per test binary**; each test isolates
//!   itself in its own namespace through [`with_temp_ns`].
//! - Helpers over it: [`install_crds`], [`ControlPlane::service_account_token`], [`wait_for`],
//!   [`run_binary`] / [`exec_binary`] for peer processes whose logs show up when a test fails.
//! - Faults: [`ControlPlane::stop_peer`] / [`ControlPlane::start_peer`] kill and restart etcd or
//!   kube-apiserver in place; [`fault_proxy::FaultProxy`] sits between a client and the apiserver
//!   and pauses, cuts or slows its connections.
//! - [`bitnami::BitnamiController`]: the real Bitnami sealed-secrets controller, run against the
//!   harness with only the RBAC its Helm chart grants.
//!
//! What it is not: a cluster. kube-controller-manager runs (garbage collection through owner
//! references, namespace finalization, default ServiceAccounts and their tokens), but there is no
//! scheduler or kubelet, so no Pod runs and no Endpoints point anywhere; aggregated APIs reach
//! local processes through ExternalName Services.
//!
//! Cleanup: children are stopped (SIGTERM, then SIGKILL after a grace period) when their handle is
//! dropped, also while a test panics. Because statics are never dropped, a small watchdog (see
//! [`reaper`]) also stops every registered child and removes the harness's temporary directory when
//! the test process exits for any reason, including SIGKILL. Set `GITSEAL_TEST_KEEP=1` to keep the
//! directory (logs, certificates, kubeconfig) for inspection.
//!
//! Peer binaries come from `$GITSEAL_TEST_CACHE/peers.env` (default `~/.cache/gitseal-test`), written
//! by `tests/peers/install.sh`; each can be overridden by its environment variable (see [`Peer`]).

pub mod bitnami;
pub mod browser;
mod certs;
mod cluster;
mod control_plane;
mod error;
pub mod fault_proxy;
pub mod gitseal;
mod http_probe;
mod kubeconfig;
pub mod peers;
pub mod playground;
mod process;
pub mod reaper;
pub mod service_route;
pub mod softhsm;

pub use cluster::{
    TestNamespace, apply_json, install_crds, install_crds_yaml, parse_crds, wait_for, wait_for_object, with_temp_ns,
};
pub use control_plane::{
    AuditOptions, AuditWebhookFiles, ControlPlane, FrontProxyFiles, PlanePeer, ServiceAccountAccess, StopHow,
};
pub use error::{Error, Result};
pub use http_probe::{http_get, http_post_json};
pub use peers::Peer;
pub use process::{ChildProcess, exec_binary, free_port, run_binary};
/// Signals for [`ChildProcess::signal`].
pub use rustix::process::Signal;
