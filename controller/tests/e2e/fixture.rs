//! Starting gitseal-controller against the harness, and small helpers the tests share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use gitseal_keys::Certificate;
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::seal::{SealOptions, seal_secret};
use gitseal_shared::types::ApiGroup;
use gitseal_shared::value::RecipientSet;
use gitseal_tests::gitseal::{GitsealController, Launch};
use gitseal_tests::{ChildProcess, ControlPlane, TestNamespace, http_get, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The SealedSecret API of a group in a namespace.
pub fn ss_api(client: &kube::Client, ns: &str, group: ApiGroup) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &group.api_resource())
}

/// A running gitseal-controller.
pub struct Gitseal {
    pub process: ChildProcess,
    pub api: String,
    pub metrics: String,
    pub audit_log: PathBuf,
}

impl Gitseal {
    /// Start a controller whose namespace (keys, lease) is `ns` and that watches `ns`.
    pub async fn start(plane: &ControlPlane, ns: &str, extra: &[&str]) -> anyhow::Result<Gitseal> {
        Self::start_named(plane, ns, "gitseal", extra).await
    }

    pub async fn start_named(plane: &ControlPlane, ns: &str, name: &str, extra: &[&str]) -> anyhow::Result<Gitseal> {
        Self::start_with_env(plane, ns, name, extra, &[]).await
    }

    /// [`Self::start_named`] with extra environment variables.
    pub async fn start_with_env(
        plane: &ControlPlane,
        ns: &str,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Gitseal> {
        let mut args = vec!["--key-size=2048", "--log-level=info,gitseal_controller=debug"];
        args.extend_from_slice(extra);
        let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
        let how = Launch { watch: Some(ns), flags: &args, env, ..Launch::new(ns, name) };
        let c = GitsealController::launch(plane, binary, &how).await?;
        Ok(Gitseal { process: c.process, api: c.api, metrics: c.metrics, audit_log: c.audit_log })
    }

    /// Wait until `/readyz` answers 200.
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.api);
        let result = wait_for("gitseal-controller /readyz", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(matches!(http_get(&url).await, Ok((200, _))).then_some(()))
        })
        .await;
        if result.is_err() {
            self.process.print_log_tail();
            let why = http_get(&url).await.map(|(c, b)| format!("{c} {}", String::from_utf8_lossy(&b)));
            bail!("gitseal-controller never became ready: {why:?}");
        }
        Ok(result?)
    }

    pub async fn cert(&self) -> anyhow::Result<Certificate> {
        let (code, body) = http_get(&format!("{}/v1/cert.pem", self.api)).await?;
        if code != 200 {
            bail!("GET /v1/cert.pem: {code}");
        }
        Ok(Certificate::from_pem(&String::from_utf8(body)?)?)
    }

    /// The value of a metric line (exact name with labels), 0 when absent.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let (_, body) = http_get(&self.metrics).await?;
        let text = String::from_utf8(body)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }

    pub fn audit_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.audit_log).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

/// Seal `data` for `name` in `ns` with `cert`, as a manifest of `group`.
pub fn seal(cert: &Certificate, ns: &str, name: &str, data: &[(&str, &str)], group: ApiGroup) -> Value {
    let string_data: BTreeMap<&str, &str> = data.iter().copied().collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "e2e"}}, "stringData": string_data});
    let plain = PlainSecret::from_value(&secret).expect("test Secret");
    let set = RecipientSet::new(vec![cert.recipient().expect("recipient")]).expect("recipients");
    let opts = SealOptions { api: group, ..Default::default() };
    serde_json::to_value(seal_secret(&plain, &set, &opts).expect("seal")).expect("json")
}

/// Wait for a Secret whose `key` holds `value`.
pub async fn secret_with(ns: &TestNamespace, name: &str, key: &str, value: &str) -> anyhow::Result<Secret> {
    let api: Api<Secret> = ns.api();
    let want = value.as_bytes().to_vec();
    Ok(wait_for(&format!("Secret {}/{name} with {key}={value}", ns.name()), TIMEOUT, || {
        let api = api.clone();
        let want = want.clone();
        async move {
            let s = api.get_opt(name).await?;
            Ok::<_, kube::Error>(s.filter(|s| s.data.as_ref().and_then(|d| d.get(key)).is_some_and(|v| v.0 == want)))
        }
    })
    .await?)
}

/// Wait for the Synced condition of a SealedSecret to have `status` (and return the object).
pub async fn synced(ns: &TestNamespace, group: ApiGroup, name: &str, status: &str) -> anyhow::Result<Value> {
    let api = ss_api(&ns.client(), ns.name(), group);
    Ok(wait_for(&format!("SealedSecret {}/{name} Synced={status}", ns.name()), TIMEOUT, || {
        let api = api.clone();
        async move {
            let obj = api.get_opt(name).await?;
            let v = obj.map(|o| serde_json::to_value(o).unwrap_or_default());
            Ok::<_, kube::Error>(v.filter(|v| {
                v.pointer("/status/conditions/0/status").and_then(Value::as_str) == Some(status)
                    && v.pointer("/status/observedGeneration") == v.pointer("/metadata/generation")
            }))
        }
    })
    .await?)
}

/// Reasons of the Events about an object.
pub async fn event_reasons(ns: &TestNamespace, name: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect())
}
