//! gitseal-controller end to end, on the real kube-apiserver + etcd + kube-controller-manager of
//! the test harness, the controller running as a child process with a token of the
//! ServiceAccount that `deploy/rbac/controller.yaml` defines — not as admin.
//!
//! One control plane serves this whole test binary; each test runs its own controller in its
//! own namespace (`--namespaces` keeps controllers from touching each other's objects).
//! Needs `tests/peers/install.sh` to have run.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixture;

mod aggregated;
mod audit;
mod budget;
mod compat;
mod custody;
mod first_use;
mod keys;
mod kubeseal_proxy;
mod leader;
mod pkcs11;
mod rollout;
mod scale;
mod seal_page;
mod shards;
mod templates;
mod unseal;
