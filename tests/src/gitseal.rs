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
        install_crd_file(client, f).await?;
    }
    Ok(())
}

/// Install one CRD file of `deploy/crds` (e.g. `gitseal.dev_sealedsecrets.yaml`) and wait until
/// it is established.
pub async fn install_crd_file(client: &kube::Client, file: &str) -> Result<()> {
    let path = repo_root().join("deploy/crds").join(file);
    let yaml = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    install_crds_yaml(client, &yaml).await?;
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

/// How to start a gitseal-controller: everything but the control plane and the binary.
/// `Launch::new(ns, name)` gives the defaults; set the fields that differ.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The controller's namespace; its CRDs-independent RBAC and ServiceAccount are made there.
    pub namespace: &'a str,
    /// `--namespaces`: what it watches (all namespaces when `None`).
    pub watch: Option<&'a str>,
    /// `--pod-name`, also in the audit log's file name.
    pub name: &'a str,
    /// Where the HTTP API listens (e.g. a [`crate::service_route::HostLink`] address the
    /// apiserver's service proxy can reach); `127.0.0.1` by default.
    pub host: &'a str,
    /// The API server URL in the controller's kubeconfig (a [`crate::fault_proxy::FaultProxy`]
    /// in front of it); the control plane's own by default.
    pub server: Option<&'a str>,
    /// More flags, after the harness's own.
    pub flags: &'a [&'a str],
    /// More environment variables (e.g. SOFTHSM2_CONF for a token).
    pub env: &'a [(&'a str, &'a str)],
    /// Install gitseal's CRDs first (default); the playground installs only those of its mode.
    pub install_crds: bool,
}

impl<'a> Launch<'a> {
    pub fn new(namespace: &'a str, name: &'a str) -> Launch<'a> {
        Launch {
            namespace,
            watch: None,
            name,
            host: "127.0.0.1",
            server: None,
            flags: &[],
            env: &[],
            install_crds: true,
        }
    }
}

impl GitsealController {
    /// CRDs, RBAC and a ServiceAccount token in `ns`, then the controller (`binary`) with its
    /// namespace `ns`, watching `watch` (all namespaces when `None`), plus `extra` flags; its
    /// HTTP API on 127.0.0.1. [`Self::launch`] for anything else.
    pub async fn start(
        plane: &ControlPlane,
        binary: &Path,
        ns: &str,
        watch: Option<&str>,
        name: &str,
        extra: &[&str],
    ) -> Result<Self> {
        Self::launch(plane, binary, &Launch { watch, flags: extra, ..Launch::new(ns, name) }).await
    }

    /// Start the controller as `how` says.
    pub async fn launch(plane: &ControlPlane, binary: &Path, how: &Launch<'_>) -> Result<Self> {
        let client = plane.client()?;
        if how.install_crds {
            install_crds(&client).await?;
        }
        let ns = how.namespace;
        apply_rbac(&client, ns).await?;
        let server = how.server.unwrap_or(plane.server_url());
        let sa = plane.service_account_token_via(ns, "gitseal-controller", &[], server).await?;
        let (api_port, metrics_port) = (free_port()?, free_port()?);
        let audit_log = plane.dir().join(format!("audit-{ns}-{}.log", how.name));
        let host = how.host;
        let mut args: Vec<String> = vec![
            format!("--namespace={ns}"),
            format!("--listen-addr={host}:{api_port}"),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--audit-log={}", audit_log.display()),
            format!("--pod-name={}", how.name),
        ];
        if let Some(w) = how.watch {
            args.push(format!("--namespaces={w}"));
        }
        args.extend(how.flags.iter().map(|s| (*s).to_string()));
        let mut env = vec![("KUBECONFIG".to_string(), sa.kubeconfig_path().display().to_string())];
        env.extend(how.env.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        let process = run_binary(binary, &args, env)?;
        Ok(Self {
            process,
            api: format!("http://{host}:{api_port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            audit_log,
        })
    }
}

/// The APIService of gitseal's authenticated API (cluster-scoped: one at a time per control plane).
pub const APISERVICE: &str = "v1.api.gitseal.dev";
/// The Service the APIService names, in the controller's namespace.
pub const API_SERVICE_NAME: &str = "gitseal-api";

/// TLS material for the aggregated API: a CA (for the APIService's caBundle) and a serving
/// certificate for `gitseal-api.<ns>.svc`, written next to the control plane.
#[derive(Debug, Clone)]
pub struct ServingCert {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServingCert {
    pub fn generate(plane: &ControlPlane, ns: &str) -> Result<ServingCert> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let fail = |e: rcgen::Error| Error::invalid("making the aggregated API's serving certificate", e);
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca.distinguished_name.push(DnType::CommonName, "gitseal-api-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
        let key = KeyPair::generate().map_err(fail)?;
        let params =
            CertificateParams::new(vec![format!("{API_SERVICE_NAME}.{ns}.svc"), "localhost".into()]).map_err(fail)?;
        let cert = params.signed_by(&key, &Issuer::new(ca, ca_key)).map_err(fail)?;
        let (crt, k) =
            (plane.dir().join(format!("aggregated-{ns}.crt")), plane.dir().join(format!("aggregated-{ns}.key")));
        std::fs::write(&crt, cert.pem()).map_err(|e| Error::io(format!("writing {}", crt.display()), e))?;
        std::fs::write(&k, key.serialize_pem()).map_err(|e| Error::io(format!("writing {}", k.display()), e))?;
        Ok(ServingCert { ca_pem: ca_cert.pem(), cert: crt, key: k })
    }

    /// The controller flags that serve the aggregated API on 127.0.0.1:`port` with this certificate.
    pub fn flags(&self, port: u16) -> Vec<String> {
        vec![
            format!("--aggregated-addr=127.0.0.1:{port}"),
            format!("--aggregated-tls-cert={}", self.cert.display()),
            format!("--aggregated-tls-key={}", self.key.display()),
        ]
    }
}

/// The APIService API.
pub fn apiservices(client: &kube::Client) -> kube::Api<kube::api::DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService");
    kube::Api::all_with(client.clone(), &kube::discovery::ApiResource::from_gvk_with_plural(&gvk, "apiservices"))
}

/// Route `api.gitseal.dev/v1` to a controller listening on 127.0.0.1:`port` (an ExternalName
/// Service to localhost in `ns`, and the APIService with the CA), then wait until the
/// kube-apiserver reports it Available for that namespace.
pub async fn register_aggregated_api(
    client: &kube::Client,
    ns: &str,
    port: u16,
    cert: &ServingCert,
    timeout: std::time::Duration,
) -> Result<()> {
    use base64::Engine;
    apply_json(
        client,
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": API_SERVICE_NAME, "namespace": ns},
            "spec": {"type": "ExternalName", "externalName": "localhost"}}),
    )
    .await?;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(cert.ca_pem.as_bytes());
    apply_json(
        client,
        serde_json::json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {"group": "api.gitseal.dev", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                     "service": {"name": API_SERVICE_NAME, "namespace": ns, "port": port}, "caBundle": ca_bundle}}),
    )
    .await?;
    let api = apiservices(client);
    crate::wait_for("APIService v1.api.gitseal.dev Available", timeout, || {
        let api = api.clone();
        async move {
            let a = serde_json::to_value(api.get(APISERVICE).await?).unwrap_or_default();
            let available = a
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Available" && c["status"] == "True"));
            let ours = a.pointer("/spec/service/namespace").and_then(Value::as_str) == Some(ns);
            Ok::<_, kube::Error>((available && ours).then_some(()))
        }
    })
    .await
}
