//! Helpers over a running control plane: a namespace per test, CRD installation, polling.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! gitseal_tests::with_temp_ns(|ns| async move {
//!     let maps = ns.api::<ConfigMap>();
//!     assert!(maps.get_opt("absent").await?.is_none());
//!     Ok::<_, kube::Error>(())
//! })
//! .await??;
//! # Ok(())
//! # }
//! ```

use std::{fmt::Display, future::Future, time::Duration};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::wait::{await_condition, conditions},
};
use rand::{Rng, distributions::Alphanumeric};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{ControlPlane, Error, Result, control_plane::access::FIELD_MANAGER, error::chain, reaper};

/// How long [`install_crds`] waits for each CRD to become `Established`.
const CRD_TIMEOUT: Duration = Duration::from_secs(30);

/// A namespace that belongs to one test, with a random name `gitseal-test-xxxxxxxx`.
///
/// Deleting it only marks it `Terminating`: the harness runs no namespace controller, so its
/// objects stay until the control plane goes away. Names never repeat, so that is harmless.
#[derive(Clone)]
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace").field("name", &self.name).finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Creates a namespace with a fresh random name.
    pub async fn create(client: Client) -> Result<Self> {
        let suffix: String =
            rand::thread_rng().sample_iter(Alphanumeric).take(8).map(|c| char::from(c).to_ascii_lowercase()).collect();
        let name = format!("gitseal-test-{suffix}");
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| Error::kube(format!("creating the test namespace {name}"), e))?;
        Ok(Self { name, client })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client (for the runtime the namespace was made in).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// `Api<K>` for namespaced resources in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (it then stays `Terminating`, see the type's docs).
    pub async fn delete(&self) -> Result<()> {
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| Error::kube(format!("deleting the test namespace {}", self.name), e))
    }
}

/// Runs `test` in a fresh namespace of this binary's shared [`ControlPlane`], then deletes the
/// namespace, also when `test` panics (the panic then continues, failing the test).
///
/// `Err` means the harness could not set up (for example, the control plane did not start);
/// `Ok` carries what `test` returned. Set `GITSEAL_TEST_KEEP=1` to keep the namespace.
pub async fn with_temp_ns<T, F, Fut>(test: F) -> Result<T>
where
    F: FnOnce(TestNamespace) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let plane = ControlPlane::shared().await?;
    let ns = TestNamespace::create(plane.client()?).await?;
    // A spawned task turns a panic into a JoinError, so the namespace is deleted first.
    let outcome = tokio::spawn(test(ns.clone())).await;
    if !reaper::keep()
        && let Err(e) = ns.delete().await
    {
        tracing::warn!("{}", chain(&e));
    }
    match outcome {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::invalid(format!("running a test in namespace {}", ns.name), e)),
    }
}

/// Parses CRDs from (multi-document) YAML; empty documents are skipped, other kinds rejected.
pub fn parse_crds(yaml: &str) -> Result<Vec<CustomResourceDefinition>> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| Error::invalid("parsing CRD YAML", e))?;
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|doc| {
            let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("<none>");
            if kind != "CustomResourceDefinition" {
                return Err(Error::invalid(
                    "parsing CRD YAML",
                    format!("expected kind CustomResourceDefinition, found {kind}"),
                ));
            }
            serde_json::from_value(doc).map_err(|e| Error::invalid("parsing CRD YAML", e))
        })
        .collect()
}

/// Installs CRDs from YAML text (see [`parse_crds`] and [`install_crds`]).
pub async fn install_crds_yaml(client: &Client, yaml: &str) -> Result<Vec<CustomResourceDefinition>> {
    let crds = parse_crds(yaml)?;
    install_crds(client, &crds).await?;
    Ok(crds)
}

/// Applies `crds` (server-side apply, so installing twice is fine) and waits until each one is
/// `Established`, i.e. its resources are served.
pub async fn install_crds(client: &Client, crds: &[CustomResourceDefinition]) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.name_any();
        let mut crd = crd.clone();
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        crd.metadata.uid = None;
        crd.metadata.creation_timestamp = None;
        crd.status = None;
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .map_err(|e| Error::kube(format!("applying CRD {name}"), e))?;
    }
    for crd in crds {
        let name = crd.name_any();
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(CRD_TIMEOUT, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Error::invalid(format!("waiting for CRD {name}"), e)),
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("CRD {name} to become Established"),
                    waited: CRD_TIMEOUT,
                    detail: String::new(),
                });
            }
        }
    }
    Ok(())
}

/// Polls `probe` until it returns `Ok(Some(value))`, starting at 100 ms between tries and
/// backing off to 1 s. `Ok(None)` and `Err(_)` both mean "not yet"; the last error is reported
/// if `timeout` passes first.
pub async fn wait_for<T, E, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<Option<T>, E>>,
    E: Display,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    let mut last = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = Some(e.to_string()),
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited: timeout,
                detail: last.map(|e| format!("; last error: {e}")).unwrap_or_default(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_secs(1));
    }
}

/// Waits until object `name` exists and satisfies `ready`, and returns it.
pub async fn wait_for_object<K>(api: &Api<K>, name: &str, timeout: Duration, ready: impl Fn(&K) -> bool) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).into_owned();
    wait_for(&format!("{kind} {name}"), timeout, || async {
        Ok::<_, kube::Error>(api.get_opt(name).await?.filter(|o| ready(o)))
    })
    .await
}

/// Server-side applies one object given as JSON and returns it as stored.
///
/// The object needs `apiVersion`, `kind`, `metadata.name` and, for a namespaced kind,
/// `metadata.namespace`; the plural is derived from the kind (fine for built-in kinds and
/// regular CRDs). Applying again is fine (field manager `gitseal-tests`, forced).
pub async fn apply_json(client: &Client, mut object: Value) -> Result<DynamicObject> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (api_version, kind) = (text(&object, "apiVersion"), text(&object, "kind"));
    let meta = object.get("metadata").cloned().unwrap_or_default();
    let name = text(&meta, "name");
    let ns = meta.get("namespace").and_then(Value::as_str).map(str::to_owned);
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|_, v| !v.is_null());
    }
    if kind.is_empty() || name.is_empty() {
        return Err(Error::invalid("applying an object", "it needs kind and metadata.name"));
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
    let api: Api<DynamicObject> = match &ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
        .await
        .map_err(|e| Error::kube(format!("applying {kind} {name}"), e))
}
