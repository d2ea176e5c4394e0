//! The real Bitnami sealed-secrets controller (v0.36.6), run against the harness.
//!
//! The controller knows only in-cluster configuration: `KUBERNETES_SERVICE_HOST/PORT` and the
//! files `/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`. The harness
//! writes those files into a temporary directory and starts the controller under
//! `unshare --mount --propagation private` with that directory bind-mounted over `/var/run`, so
//! only the controller's private mount namespace sees them and the host is untouched. As root this
//! needs util-linux `unshare`; as another user it adds `--map-root-user` (an unprivileged user
//! namespace).
//!
//! The controller acts as ServiceAccount `sealed-secrets-controller` with the RBAC of Bitnami's
//! Helm chart (ClusterRole `secrets-unsealer`, here named `gitseal-test-secrets-unsealer-<ns>` so
//! that several controllers can share a control plane; Roles `…-key-admin` and
//! `…-service-proxier`), not as admin. Its HTTP API and metrics listen on free ports of 127.0.0.1; kubeseal reaches the
//! certificate with `--cert` [`BitnamiController::cert_url`], since the apiserver's service proxy
//! needs endpoints that no kubelet provides here.

use std::{path::Path, process::Command, time::Duration};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{
    ChildProcess, ControlPlane, Error, Peer, Result, apply_json, error::chain, exec_binary, free_port, http_get, reaper,
};

/// The ServiceAccount (and Helm "fullname") the controller runs as.
pub const SERVICE_ACCOUNT: &str = "sealed-secrets-controller";
/// How long [`BitnamiController::start`] waits for the first key (RSA-4096 generation included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Which namespaces the controller watches for SealedSecrets.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Scope {
    /// Only its own namespace (`--all-namespaces=false`): the default, so that tests sharing a
    /// control plane do not unseal each other's objects.
    #[default]
    OwnNamespace,
    /// Every namespace (the controller's own default).
    AllNamespaces,
    /// Its own namespace plus these (`--additional-namespaces`).
    Namespaces(Vec<String>),
}

/// How to run the controller.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BitnamiOptions {
    /// The controller's namespace (`POD_NAMESPACE`), where its keys live; created if missing.
    pub namespace: String,
    /// Which namespaces it watches.
    pub scope: Scope,
    /// `--key-renew-period`; `"0"` (the default here) turns automatic renewal off.
    pub key_renew_period: String,
    /// More flags, appended last.
    pub extra_args: Vec<String>,
}

impl BitnamiOptions {
    /// Defaults: own namespace only, no automatic key renewal.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            scope: Scope::default(),
            key_renew_period: "0".into(),
            extra_args: Vec::new(),
        }
    }
}

/// A running Bitnami controller; stopped on drop.
#[derive(Debug)]
pub struct BitnamiController {
    process: ChildProcess,
    namespace: String,
    http_port: u16,
    metrics_port: u16,
    kubeconfig: std::path::PathBuf,
    // Holds the service-account files; must outlive the process.
    _dir: TempDir,
}

impl BitnamiController {
    /// Grants the chart's RBAC, issues a token, starts the controller and waits until it serves
    /// its certificate (that is, until it has a key).
    pub async fn start(plane: &ControlPlane, options: BitnamiOptions) -> Result<Self> {
        let binary = Peer::BitnamiController.path()?;
        let ns = options.namespace.as_str();
        apply_rbac(plane, ns, &options.scope).await?;
        let access = plane.service_account_token(ns, SERVICE_ACCOUNT, &[]).await?;

        let dir = reaper::tempdir("bitnami-")?;
        let run = dir.path().join("run");
        let sa_dir = run.join("secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&sa_dir).map_err(|e| Error::io(format!("creating {}", sa_dir.display()), e))?;
        for (file, contents) in [("token", access.token()), ("ca.crt", plane.serving_ca_pem()), ("namespace", ns)] {
            let path = sa_dir.join(file);
            std::fs::write(&path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }

        let (http_port, metrics_port) = (free_port()?, free_port()?);
        let mut args = vec![
            format!("--listen-addr=127.0.0.1:{http_port}"),
            format!("--listen-metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--key-renew-period={}", options.key_renew_period),
        ];
        match &options.scope {
            Scope::OwnNamespace => args.push("--all-namespaces=false".into()),
            Scope::AllNamespaces => args.push("--all-namespaces=true".into()),
            Scope::Namespaces(list) => {
                args.push("--all-namespaces=false".into());
                args.push(format!("--additional-namespaces={}", list.join(",")));
            }
        }
        args.extend(options.extra_args.iter().cloned());

        let mut cmd = in_private_mount_ns(&run, &binary);
        cmd.args(&args)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", plane.port().to_string())
            .env("POD_NAMESPACE", ns);
        // Its flags also come from SEALED_SECRETS_* variables; none of the host's may leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SEALED_SECRETS_") {
                cmd.env_remove(key);
            }
        }
        let process = ChildProcess::spawn("bitnami-controller", cmd, dir.path().join("controller.log"))?;
        let kubeconfig = plane.kubeconfig_path().to_owned();
        let mut this = Self { process, namespace: ns.to_owned(), http_port, metrics_port, kubeconfig, _dir: dir };
        this.wait_ready().await?;
        Ok(this)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = self.cert_url();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no attempt yet");
        while tokio::time::Instant::now() < deadline {
            self.process.check_running()?;
            match http_get(&url).await {
                Ok((200, body)) if body.starts_with(b"-----BEGIN CERTIFICATE-----") => return Ok(()),
                Ok((status, body)) => last = format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                Err(e) => last = chain(&e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::Timeout {
            what: format!("the Bitnami controller to serve {url}"),
            waited: READY_TIMEOUT,
            detail: format!(
                "; last error: {last}; last lines of {}:\n{}",
                self.process.log_path().display(),
                self.process.log_tail(40)
            ),
        })
    }

    /// `http://127.0.0.1:<port>/v1/cert.pem`, for `kubeseal --cert`.
    pub fn cert_url(&self) -> String {
        self.url("/v1/cert.pem")
    }

    /// A URL of the controller's HTTP API (`/healthz`, `/v1/verify`, `/v1/rotate`, …).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// `http://127.0.0.1:<port>/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    /// The controller's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The PEM certificate of its newest key.
    pub async fn cert_pem(&self) -> Result<String> {
        match http_get(&self.cert_url()).await? {
            (200, body) => Ok(String::from_utf8_lossy(&body).into_owned()),
            (status, body) => Err(Error::invalid(
                format!("GET {}", self.cert_url()),
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            )),
        }
    }

    /// Runs the real `kubeseal --cert <cert_url> <args>` with `input` on stdin; returns stdout.
    ///
    /// `KUBECONFIG` is the harness's admin kubeconfig, so a kubeconfig of the person running
    /// the tests is never read (kubeseal consults it for the default namespace).
    pub async fn kubeseal(&self, input: &[u8], args: &[&str]) -> Result<Vec<u8>> {
        let kubeseal = Peer::Kubeseal.path()?;
        let mut all = vec!["--cert".to_owned(), self.cert_url()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let env = [("KUBECONFIG", self.kubeconfig.as_os_str())];
        exec_binary(kubeseal, all, env, input, Duration::from_secs(60)).await
    }

    /// The process (log, pid, signals such as SIGUSR1 for a key rotation).
    pub fn process(&self) -> &ChildProcess {
        &self.process
    }

    /// The controller's process, to check or signal it.
    pub fn process_mut(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}

/// `unshare` + `sh` that bind-mounts `run` over `/var/run` and then execs `binary`.
fn in_private_mount_ns(run: &Path, binary: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    if !rustix::process::geteuid().is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(r#"mount --bind "$0" /var/run && exec "$@""#)
        .arg(run)
        .arg(binary);
    cmd
}

/// The RBAC of Bitnami's Helm chart (`cluster-role.yaml`, `role.yaml` and their bindings).
async fn apply_rbac(plane: &ControlPlane, ns: &str, scope: &Scope) -> Result<()> {
    let sa = json!([{ "kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns }]);
    let cluster_role = format!("gitseal-test-secrets-unsealer-{ns}");
    let mut unsealer_rules = vec![
        rule("bitnami.com", "sealedsecrets", &["get", "list", "watch"]),
        rule("bitnami.com", "sealedsecrets/status", &["update"]),
        rule("", "secrets", &["get", "list", "create", "update", "delete", "watch"]),
        rule("", "events", &["create", "patch"]),
    ];
    if let Scope::Namespaces(list) = scope {
        let mut r = rule("", "namespaces", &["get"]);
        r["resourceNames"] = json!(list);
        unsealer_rules.push(r);
    }
    let mut key_get = rule("", "secrets", &["get"]);
    key_get["resourceNames"] = json!(["sealed-secrets-key"]);
    let mut svc_get = rule("", "services", &["get"]);
    svc_get["resourceNames"] = json!([SERVICE_ACCOUNT]);
    let mut proxy = rule("", "services/proxy", &["create", "get"]);
    proxy["resourceNames"] =
        json!([format!("http:{SERVICE_ACCOUNT}:"), format!("http:{SERVICE_ACCOUNT}:http"), SERVICE_ACCOUNT]);
    let objects = [
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }),
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": SERVICE_ACCOUNT, "namespace": ns } }),
        role("ClusterRole", &cluster_role, None, unsealer_rules),
        binding("ClusterRoleBinding", &cluster_role, None, "ClusterRole", sa.clone()),
        role(
            "Role",
            &format!("{SERVICE_ACCOUNT}-key-admin"),
            Some(ns),
            vec![key_get, rule("", "secrets", &["create", "list"])],
        ),
        binding("RoleBinding", &format!("{SERVICE_ACCOUNT}-key-admin"), Some(ns), "Role", sa),
        role("Role", &format!("{SERVICE_ACCOUNT}-service-proxier"), Some(ns), vec![svc_get, proxy]),
        binding(
            "RoleBinding",
            &format!("{SERVICE_ACCOUNT}-service-proxier"),
            Some(ns),
            "Role",
            json!([{ "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated" }]),
        ),
    ];
    let client = plane.client()?;
    for object in objects {
        apply_json(&client, object).await?;
    }
    Ok(())
}

fn rule(group: &str, resource: &str, verbs: &[&str]) -> Value {
    json!({ "apiGroups": [group], "resources": [resource], "verbs": verbs })
}

fn role(kind: &str, name: &str, ns: Option<&str>, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
        "metadata": { "name": name, "namespace": ns }, "rules": rules,
    })
}

fn binding(kind: &str, name: &str, ns: Option<&str>, role_kind: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
        "metadata": { "name": name, "namespace": ns },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name },
        "subjects": subjects,
    })
}
