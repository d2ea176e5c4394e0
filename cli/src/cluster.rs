//! Cluster access for the commands that go online: a kube client from the user's kubeconfig
//! and credentials, the controller's Service proxy, and one-line messages for what can go wrong
//! on the way (unreachable server, rejected credentials, missing objects).
//!
//! Only online commands call [`run`], which builds a tokio current-thread runtime; offline
//! commands stay synchronous and never read a kubeconfig beyond its namespace.

use std::future::Future;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::core::v1::Service;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::ClusterConfig;

/// Run an online command to completion on a current-thread runtime.
pub fn run<T>(command: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the I/O runtime")?;
    runtime.block_on(command)
}

/// A connected cluster: the client, where it points, and where the controller lives.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    /// The API server URL, for messages.
    pub url: String,
    /// The namespace of objects that name none: `-n`, else the context's.
    pub namespace: String,
    pub controller_name: String,
    pub controller_namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("url", &self.url).field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Load the kubeconfig and build a client. Nothing is sent yet: an unreachable server shows
    /// up on the first request, through [`Cluster::fail`].
    pub async fn connect(cfg: &ClusterConfig) -> Result<Cluster> {
        // kube's rustls needs a process-wide provider; aws-lc-rs is the product's one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let options = KubeConfigOptions { context: cfg.context.clone(), ..Default::default() };
        let hint = "pass --kubeconfig FILE, set KUBECONFIG, or check --context";
        if let Some(path) = &cfg.kubeconfig
            && !path.exists()
        {
            return Err(anyhow!("kubeconfig {} not found: pass the kubeconfig of your cluster", path.display()));
        }
        if cfg.kubeconfig.is_none()
            && let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty())
            && !std::env::split_paths(&list).any(|p| p.exists())
        {
            return Err(anyhow!(
                "no kubeconfig found at $KUBECONFIG ({}): set KUBECONFIG to your cluster's, or pass --kubeconfig FILE",
                list.to_string_lossy()
            ));
        }
        let config = match &cfg.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| anyhow!("cannot read the kubeconfig {}: {e}; {hint}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        };
        let config = match (config, &cfg.kubeconfig, &cfg.context) {
            (Ok(c), _, _) => c,
            // Inside a Pod, with no kubeconfig: its ServiceAccount, as kubectl does.
            (Err(e), None, None) => {
                kube::Config::incluster().map_err(|_| anyhow!("cannot load a kubeconfig: {e}; {hint}"))?
            }
            (Err(e), _, _) => return Err(anyhow!("cannot load the kubeconfig: {e}; {hint}")),
        };
        let url = config.cluster_url.to_string();
        let url = url.trim_end_matches('/').to_string();
        let namespace = cfg.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|e| anyhow!("cannot set up a client for {url}: {}; check --kubeconfig", innermost(&e)))?;
        Ok(Cluster {
            client,
            url,
            namespace,
            controller_name: cfg.controller_name.clone(),
            controller_namespace: cfg.controller_namespace.clone(),
        })
    }

    /// One line for an error that is not specific to the call: unreachable server, rejected
    /// credentials, or the API server's own message. `doing` says what was being done.
    pub fn fail(&self, doing: &str, e: kube::Error) -> anyhow::Error {
        match &e {
            kube::Error::Api(s) if s.code == 401 => anyhow!(
                "the cluster at {} did not accept your credentials while {doing}: log in again, or check --context/--kubeconfig",
                self.url
            ),
            kube::Error::Api(s) => {
                let message = one_line(&s.message);
                anyhow!("{doing}: {message} ({} {})", s.code, s.reason)
            }
            kube::Error::SerdeError(_) => anyhow!(
                "{doing}: the server's answer is not what gitseal expects ({e}); check that client and controller versions match"
            ),
            _ => anyhow!("cannot reach the cluster at {}: {}; check --context/--kubeconfig", self.url, innermost(&e)),
        }
    }

    /// GET a path of the controller's HTTP API through the API server's service proxy, as
    /// kubeseal does: the Service's first port, by name.
    pub async fn controller_get(&self, path: &str) -> Result<String> {
        let (ns, name) = (&self.controller_namespace, &self.controller_name);
        let services: kube::Api<Service> = kube::Api::namespaced(self.client.clone(), ns);
        let service = match services.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(anyhow!(
                    "no Service {name} in namespace {ns}: pass the controller's --controller-name and --controller-namespace"
                ));
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                return Err(anyhow!(
                    "you may not get services in {ns}: ask for read access to the controller's Service, or pass --cert FILE|URL"
                ));
            }
            Err(e) => return Err(self.fail(&format!("reading Service {ns}/{name}"), e)),
        };
        let port = service
            .spec
            .and_then(|s| s.ports)
            .and_then(|p| p.into_iter().next())
            .map(|p| p.name.filter(|n| !n.is_empty()).unwrap_or_else(|| p.port.to_string()))
            .ok_or_else(|| anyhow!("Service {ns}/{name} has no port: is it the controller's Service?"))?;
        let proxy = format!("/api/v1/namespaces/{ns}/services/http:{name}:{port}/proxy{path}");
        let request = http::Request::get(&proxy)
            .header(http::header::ACCEPT, "*/*")
            .body(Vec::new())
            .context("building the proxy request")?;
        match self.client.request_text(request).await {
            Ok(body) => Ok(body),
            Err(kube::Error::Api(s)) if s.code == 403 => Err(anyhow!(
                "you may not use the service proxy of {ns}/{name} (services/proxy): ask for it, or pass --cert FILE|URL"
            )),
            Err(kube::Error::Api(s)) if matches!(s.code, 502..=504) => Err(anyhow!(
                "the controller behind Service {ns}/{name} does not answer ({} {}): check that it runs (kubectl -n {ns} get pods), or pass --cert FILE|URL",
                s.code,
                one_line(&s.message)
            )),
            Err(e) => Err(self.fail(&format!("GET {path} from Service {ns}/{name}"), e)),
        }
    }
}

/// The innermost cause of an error: `connection refused`, `invalid peer certificate`, … —
/// what a person can act on, without the layers of client plumbing above it.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    one_line(&last.to_string())
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_cause_is_reported_on_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused\n(os error 111)");
        let outer = anyhow::Error::new(io).context("client error (Connect)");
        let dyn_err: &(dyn std::error::Error + 'static) = outer.as_ref();
        assert_eq!(innermost(dyn_err), "Connection refused (os error 111)");
    }
}
