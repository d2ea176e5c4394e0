//! gitseal's own controller against the harness: CRDs from `deploy/crds`, the least-privilege
//! RBAC of `deploy/rbac/controller.yaml`, and the `gitseal-controller` binary run with a token
//! of that ServiceAccount. Used by the playground and the end-to-end tests.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{ChildProcess, ControlPlane, Error, Result, apply_json, free_port, install_crds_yaml, run_binary};

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `gitseal-controller` binary of this build: next to the running executable (a binary) or
/// one level up (a test in `deps/`).
pub fn controller_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("locating the running executable", e))?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("gitseal-controller");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::invalid(
        "locating gitseal-controller",
        "not built next to this executable: run `cargo build -p gitseal-controller` first",
    ))
}

/// Install gitseal's CRDs for both groups and wait until they are established.
pub async fn install_crds(client: &kube::Client) -> Result<()> {
    for f in ["gitseal.dev_sealedsecrets.yaml", "bitnami.com_sealedsecrets.yaml"] {
        let path = repo_root().join("deploy/crds").join(f);
        let yaml = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        install_crds_yaml(client, &yaml).await?;
    }
    Ok(())
}

/// Apply `deploy/rbac/controller.yaml` for a controller whose namespace is `ns`. Objects outside
/// `gitseal-system` (cluster-scoped ones, the kube-system reader binding) get `-<ns>` appended to
/// their names, so several controllers can share one control plane.
pub async fn apply_rbac(client: &kube::Client, ns: &str) -> Result<()> {
    let path = repo_root().join("deploy/rbac/controller.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| Error::invalid("parsing the RBAC YAML", e))?;
    for mut v in docs.into_iter().filter(|v| !v.is_null()) {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if kind.starts_with("Cluster") || v["metadata"]["namespace"] != "gitseal-system" {
            let name = format!("{}-{ns}", v["metadata"]["name"].as_str().unwrap_or_default());
            v["metadata"]["name"] = name.into();
        } else {
            v["metadata"]["namespace"] = ns.into();
        }
        if kind == "ClusterRoleBinding" {
            let role = format!("{}-{ns}", v["roleRef"]["name"].as_str().unwrap_or_default());
            v["roleRef"]["name"] = role.into();
        }
        if let Some(subjects) = v.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                s["namespace"] = ns.into();
            }
        }
        apply_json(client, v).await?;
    }
    Ok(())
}

/// A running gitseal-controller.
#[derive(Debug)]
pub struct GitsealController {
    pub process: ChildProcess,
    /// `http://127.0.0.1:<port>` of the HTTP API.
    pub api: String,
    /// The `/metrics` URL.
    pub metrics: String,
    pub audit_log: PathBuf,
}

impl GitsealController {
    /// CRDs, RBAC and a ServiceAccount token in `ns`, then the controller (`binary`) with its
    /// namespace `ns`, watching `watch` (all namespaces when `None`), plus `extra` flags; its
    /// HTTP API on 127.0.0.1.
    pub async fn start(
        plane: &ControlPlane,
        binary: &Path,
        ns: &str,
        watch: Option<&str>,
        name: &str,
        extra: &[&str],
    ) -> Result<Self> {
        Self::start_on(plane, binary, ns, watch, name, "127.0.0.1", extra).await
    }

    /// [`Self::start`] with the HTTP API on `host` (e.g. a [`crate::service_route::HostLink`]
    /// address the apiserver's service proxy can reach).
    pub async fn start_on(
        plane: &ControlPlane,
        binary: &Path,
        ns: &str,
        watch: Option<&str>,
        name: &str,
        host: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let client = plane.client()?;
        install_crds(&client).await?;
        apply_rbac(&client, ns).await?;
        let sa = plane.service_account_token(ns, "gitseal-controller", &[]).await?;
        let (api_port, metrics_port) = (free_port()?, free_port()?);
        let audit_log = plane.dir().join(format!("audit-{ns}-{name}.log"));
        let mut args: Vec<String> = vec![
            format!("--namespace={ns}"),
            format!("--listen-addr={host}:{api_port}"),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--audit-log={}", audit_log.display()),
            format!("--pod-name={name}"),
        ];
        if let Some(w) = watch {
            args.push(format!("--namespaces={w}"));
        }
        args.extend(extra.iter().map(|s| (*s).to_string()));
        let env = [("KUBECONFIG", sa.kubeconfig_path().display().to_string())];
        let process = run_binary(binary, &args, env)?;
        Ok(Self {
            process,
            api: format!("http://{host}:{api_port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            audit_log,
        })
    }
}
