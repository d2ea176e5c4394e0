//! The Helm chart `deploy/helm/gitseal`, checked with the real helm v3 (built by
//! `tests/peers/install.sh`) against the real kube-apiserver of the harness:
//!
//! - `helm lint --strict` and `helm template` pass for the default, the namespaced and the
//!   aggregated-API + Bitnami-compat values;
//! - every rendered object passes a server-side dry-run apply (CRDs installed first), and the
//!   pod template passes the `restricted` Pod Security Standard;
//! - the rendered RBAC, applied for real, is all gitseal-controller needs: started with the
//!   Deployment's own arguments and a token of the chart's ServiceAccount, it unseals a
//!   SealedSecret (sealed with the library for the certificate it serves);
//! - in namespaced mode that identity is refused (403) outside its namespaces;
//! - the dashboard and the alerts use only metrics the controller exports, and the Argo CD
//!   health check reads the status the controller writes.
//!
//! The controller runs from `target/debug/gitseal-controller` (`cargo build -p
//! gitseal-controller`; `tests/run.sh` and `cargo test --workspace` build it).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use gitseal_keys::Certificate;
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::seal::{SealOptions, seal_secret};
use gitseal_shared::types::ApiGroup;
use gitseal_shared::value::RecipientSet;
use gitseal_tests::{
    ChildProcess, ControlPlane, Peer, TestNamespace, apply_json, free_port, http_get, install_crds_yaml, run_binary,
    wait_for, with_temp_ns,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};
use support::{Health, health_of, repo_root};

const TIMEOUT: Duration = Duration::from_secs(60);
const FIELD_MANAGER: &str = "gitseal-chart-test";

/// Extra values for the aggregated API + Bitnami compat render; `ca_bundle` is base64 PEM.
fn aggregated_compat_values(ca_bundle: &str) -> Vec<String> {
    [
        "bitnamiCompat=true",
        "aggregatedApi.enabled=true",
        "aggregatedApi.tlsSecretName=gitseal-api-tls",
        "controller.disableLegacyEndpoints=true",
        "controller.disableSealPage=true",
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.grafanaDashboard.enabled=true",
        "networkPolicy.enabled=true",
        "networkPolicy.egress.enabled=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("aggregatedApi.caBundle={ca_bundle}")])
    .collect()
}

fn namespaced_values(watch: &[&str]) -> Vec<String> {
    vec!["rbac.namespaced=true".into(), format!("watchNamespaces={{{}}}", watch.join(","))]
}

fn chart() -> PathBuf {
    repo_root().join("deploy/helm/gitseal")
}

/// Runs helm with `args`; its stdout, or an error with its stderr.
async fn helm(args: &[String]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(Peer::Helm.path()?)
        .args(args)
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("gitseal-helm-test/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("gitseal-helm-test/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("gitseal-helm-test/data"))
        .output()
        .await
        .context("running helm")?;
    if !out.status.success() {
        bail!(
            "helm {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn with_sets(mut args: Vec<String>, sets: &[String]) -> Vec<String> {
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    args
}

/// `helm template` of the chart (CRDs included) as JSON objects.
async fn render(release: &str, namespace: &str, sets: &[String]) -> anyhow::Result<Vec<Value>> {
    let args = vec![
        "template".into(),
        release.into(),
        chart().display().to_string(),
        "--namespace".into(),
        namespace.into(),
        "--include-crds".into(),
    ];
    parse_yaml_stream(&helm(&with_sets(args, sets)).await?)
}

fn parse_yaml_stream(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).context("parsing rendered YAML")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or_default()
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], kind_: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind(o) == kind_).collect()
}

fn gvk_of(obj: &Value) -> GroupVersionKind {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind(obj))
}

/// Server-side apply of `obj` (`dry_run`: validated and admitted, not stored).
async fn server_side_apply(client: &kube::Client, obj: &Value, dry_run: bool) -> anyhow::Result<()> {
    let (resource, caps) = pinned_kind(client, &gvk_of(obj))
        .await
        .with_context(|| format!("discovering {} {}", obj["apiVersion"], kind(obj)))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => {
            let ns = obj["metadata"]["namespace"].as_str().context("a namespaced object without a namespace")?;
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    if dry_run {
        params = params.dry_run();
    }
    api.patch(name(obj), &params, &Patch::Apply(obj))
        .await
        .with_context(|| format!("applying {} {} (dry run: {dry_run})", kind(obj), name(obj)))?;
    Ok(())
}

async fn install_our_crds(client: &kube::Client) -> anyhow::Result<()> {
    for f in ["gitseal.dev_sealedsecrets.yaml", "bitnami.com_sealedsecrets.yaml"] {
        install_crds_yaml(client, &std::fs::read_to_string(repo_root().join("deploy/crds").join(f))?).await?;
    }
    Ok(())
}

/// Kinds whose CRDs (prometheus-operator) the harness does not have: rendered and parsed, but
/// not sent to the API server.
const NOT_ON_THE_HARNESS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

/// Dry-runs every object; returns the kinds sent.
async fn dry_run_all(client: &kube::Client, objects: &[Value]) -> anyhow::Result<BTreeSet<String>> {
    let mut sent = BTreeSet::new();
    for obj in objects {
        if NOT_ON_THE_HARNESS.contains(&kind(obj)) {
            assert_eq!(obj["apiVersion"], "monitoring.coreos.com/v1");
            continue;
        }
        server_side_apply(client, obj, true).await?;
        sent.insert(kind(obj).to_string());
    }
    Ok(sent)
}

/// Labels `ns` to enforce the `restricted` Pod Security Standard.
async fn enforce_restricted(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    apply_json(
        client,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
    )
    .await?;
    Ok(())
}

/// Dry-run creates a Pod from `template` (a Deployment's pod template) in `ns`.
async fn dry_run_pod(client: &kube::Client, ns: &str, template: &Value) -> Result<(), kube::Error> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "chart-pod", "namespace": ns, "labels": template["metadata"]["labels"]},
                     "spec": template["spec"]});
    let pods: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    );
    let pod: DynamicObject = serde_json::from_value(pod).expect("pod");
    pods.create(&PostParams { dry_run: true, field_manager: None }, &pod).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_lint_and_template_pass_for_default_namespaced_and_aggregated_compat_values() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    let ca = base64::engine::general_purpose::STANDARD.encode(plane.serving_ca_pem());
    let cases: [(&str, Vec<String>); 3] = [
        ("default", vec![]),
        ("namespaced", namespaced_values(&["apps", "web"])),
        ("aggregated+compat", aggregated_compat_values(&ca)),
    ];
    for (label, sets) in &cases {
        let lint =
            vec!["lint".into(), "--strict".into(), chart().display().to_string(), "--namespace".into(), "gs".into()];
        let out = helm(&with_sets(lint, sets)).await.with_context(|| format!("helm lint, {label} values"))?;
        assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "{label}: {out}");
        let objects = render("gitseal-controller", "gs", sets).await.with_context(|| format!("{label} values"))?;
        assert!(!find(&objects, "Deployment").is_empty(), "{label}: no Deployment");
    }
    // The aggregated + compat render has what those switches promise.
    let objects = render("gitseal-controller", "gs", &cases[2].1).await?;
    let kinds: BTreeSet<&str> = objects.iter().map(kind).collect();
    for k in ["APIService", "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap", "PodDisruptionBudget"] {
        assert!(kinds.contains(k), "no {k} in {kinds:?}");
    }
    let crds: Vec<&str> = find(&objects, "CustomResourceDefinition").into_iter().map(name).collect();
    assert_eq!(crds, ["sealedsecrets.gitseal.dev", "sealedsecrets.bitnami.com"]);
    let args = container(&objects)["args"].clone();
    for flag in
        ["--bitnami-compat", "--disable-legacy-endpoints", "--disable-seal-page", "--aggregated-addr=0.0.0.0:8443"]
    {
        assert!(args.as_array().unwrap().iter().any(|a| a == flag), "{flag} missing from {args}");
    }
    // Misconfigurations fail the render with a message, not a broken install.
    let err = render("gitseal-controller", "gs", &["rbac.namespaced=true".into()]).await.unwrap_err();
    assert!(format!("{err:#}").contains("needs watchNamespaces"), "{err:#}");
    // values.schema.json refuses misspelt keys and values the controller would reject.
    for bad in ["replica=3", "controller.keySize=1024", "controller.keyRenewPeriod=30d"] {
        let err = render("gitseal-controller", "gs", &[bad.into()]).await.unwrap_err();
        assert!(format!("{err:#}").contains("schema"), "{bad}: {err:#}");
    }
    Ok(())
}

fn deployment(objects: &[Value]) -> &Value {
    find(objects, "Deployment").first().copied().expect("a Deployment")
}

fn container(objects: &[Value]) -> &Value {
    &deployment(objects)["spec"]["template"]["spec"]["containers"][0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendered_object_passes_server_side_dry_run_and_the_pod_is_restricted() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    let ca = base64::engine::general_purpose::STANDARD.encode(plane.serving_ca_pem());
    with_temp_ns(|ns| async move {
        let client = ns.client();
        install_our_crds(&client).await?;
        enforce_restricted(&client, ns.name()).await?;
        let watched = TestNamespace::create(client.clone()).await?;
        let cases: [(&str, Vec<String>); 3] = [
            ("default", vec![]),
            ("namespaced", namespaced_values(&[ns.name(), watched.name()])),
            ("aggregated+compat", aggregated_compat_values(&ca)),
        ];
        for (label, sets) in &cases {
            let objects = render(ns.name(), ns.name(), sets).await?;
            let sent = dry_run_all(&client, &objects).await.with_context(|| format!("{label} values"))?;
            for k in ["ServiceAccount", "Role", "RoleBinding", "Service", "Deployment", "PodDisruptionBudget"] {
                assert!(sent.contains(k), "{label}: no {k} dry-run");
            }
            // The Deployment's pod template is admitted under `restricted` (a real pod, dry run).
            let template = &deployment(&objects)["spec"]["template"];
            dry_run_pod(&client, ns.name(), template).await.with_context(|| format!("{label}: restricted pod"))?;
        }
        // Control: the same admission refuses a privileged pod, so the check above means something.
        let objects = render(ns.name(), ns.name(), &[]).await?;
        let mut template = deployment(&objects)["spec"]["template"].clone();
        template["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
        match dry_run_pod(&client, ns.name(), &template).await {
            Err(kube::Error::Api(ae)) => assert_eq!(ae.code, 403, "{ae:?}"),
            other => panic!("a privileged pod was not refused: {other:?}"),
        }
        let _ = watched.delete().await;
        Ok::<_, anyhow::Error>(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_plain_manifest_passes_server_side_dry_run() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    let client = plane.client()?;
    install_our_crds(&client).await?;
    let text = std::fs::read_to_string(repo_root().join("deploy/manifests/gitseal.yaml"))?;
    let objects = parse_yaml_stream(&text)?;
    // Its Namespace for real (dry-run objects cannot land in a namespace that is only dry-run).
    let namespace = objects.iter().find(|o| kind(o) == "Namespace").expect("the manifest creates its namespace");
    assert_eq!(name(namespace), "gitseal-system");
    server_side_apply(&client, namespace, false).await?;
    let sent = dry_run_all(&client, &objects).await?;
    assert!(sent.contains("Deployment") && sent.contains("CustomResourceDefinition"), "{sent:?}");
    dry_run_pod(&client, "gitseal-system", &deployment(&objects)["spec"]["template"]).await?;
    Ok(())
}

/// `target/debug/gitseal-controller`, next to this test's `deps/` directory.
fn controller_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(|d| d.parent()).context("no target directory")?;
    let bin = dir.join(format!("gitseal-controller{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!("{} is missing: run cargo build -p gitseal-controller", bin.display());
    }
    Ok(bin)
}

/// The chart's controller, on the harness: applies the rendered ServiceAccount and RBAC for
/// real and starts the binary with the Deployment's arguments (listeners moved to free
/// loopback ports), POD_NAME/POD_NAMESPACE as the downward API would set them, and a token of
/// the chart's ServiceAccount.
struct ChartController {
    process: ChildProcess,
    api: String,
    metrics: String,
    sa_client: kube::Client,
}

const RBAC_KINDS: [&str; 5] = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

impl ChartController {
    async fn start(plane: &ControlPlane, release_ns: &str, objects: &[Value]) -> anyhow::Result<ChartController> {
        let admin = plane.client()?;
        install_our_crds(&admin).await?;
        for obj in objects.iter().filter(|o| RBAC_KINDS.contains(&kind(o))) {
            server_side_apply(&admin, obj, false).await?;
        }
        let sa_name = name(find(objects, "ServiceAccount")[0]).to_string();
        assert_eq!(deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"], sa_name.as_str());
        let sa = plane.service_account_token(release_ns, &sa_name, &[]).await?;

        let c = container(objects);
        let env: BTreeMap<&str, &str> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?, e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?)))
            .collect();
        assert_eq!(env.get("POD_NAME"), Some(&"metadata.name"), "{env:?}");
        assert_eq!(env.get("POD_NAMESPACE"), Some(&"metadata.namespace"), "{env:?}");
        let (api_port, metrics_port) = (free_port()?, free_port()?);
        let mut args: Vec<String> =
            c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
        for a in &mut args {
            if a.starts_with("--listen-addr=") {
                *a = format!("--listen-addr=127.0.0.1:{api_port}");
            } else if a.starts_with("--metrics-addr=") {
                *a = format!("--metrics-addr=127.0.0.1:{metrics_port}");
            }
        }
        let env = [
            ("KUBECONFIG", sa.kubeconfig_path().display().to_string()),
            ("POD_NAME", format!("{sa_name}-7d9f8-abcde")),
            ("POD_NAMESPACE", release_ns.to_string()),
        ];
        let process = run_binary(controller_binary()?, &args, env)?;
        let mut c = ChartController {
            process,
            api: format!("http://127.0.0.1:{api_port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            sa_client: sa.client()?,
        };
        c.ready().await?;
        Ok(c)
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.api);
        let ready = wait_for("gitseal-controller /readyz", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(matches!(http_get(&url).await, Ok((200, _))).then_some(()))
        })
        .await;
        if ready.is_err() {
            self.process.print_log_tail();
        }
        Ok(ready?)
    }

    async fn cert(&self) -> anyhow::Result<Certificate> {
        let (code, body) = http_get(&format!("{}/v1/cert.pem", self.api)).await?;
        if code != 200 {
            bail!("GET /v1/cert.pem: {code}");
        }
        Ok(Certificate::from_pem(&String::from_utf8(body)?)?)
    }
}

/// A SealedSecret for `name` in `ns` holding `password`, sealed for `cert`.
fn seal(cert: &Certificate, ns: &str, name: &str, password: &str) -> Value {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns}, "stringData": {"password": password}});
    let plain = PlainSecret::from_value(&secret).expect("test Secret");
    let set = RecipientSet::new(vec![cert.recipient().expect("recipient")]).expect("recipients");
    let opts = SealOptions { api: ApiGroup::Gitseal, ..Default::default() };
    serde_json::to_value(seal_secret(&plain, &set, &opts).expect("seal")).expect("json")
}

async fn secret_value(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(wait_for(&format!("Secret {ns}/{name}"), TIMEOUT, || {
        let api = api.clone();
        async move {
            let s = api.get_opt(name).await?;
            Ok::<_, kube::Error>(s.and_then(|s| s.data?.remove("password")).map(|v| v.0))
        }
    })
    .await?)
}

/// The SealedSecret once its Synced condition is `status` for its current generation.
async fn synced(client: &kube::Client, ns: &str, name: &str, status: &str) -> anyhow::Result<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ApiGroup::Gitseal.api_resource());
    Ok(wait_for(&format!("SealedSecret {ns}/{name} Synced={status}"), TIMEOUT, || {
        let api = api.clone();
        async move {
            let v = api.get_opt(name).await?.map(|o| serde_json::to_value(o).unwrap_or_default());
            Ok::<_, kube::Error>(v.filter(|v| {
                let cond = v.pointer("/status/conditions").and_then(Value::as_array).and_then(|cs| {
                    cs.iter().find(|c| c["type"] == "Synced").map(|c| c["status"].as_str() == Some(status))
                });
                cond == Some(true) && v.pointer("/status/observedGeneration") == v.pointer("/metadata/generation")
            }))
        }
    })
    .await?)
}

/// Sample names on a Prometheus/OpenMetrics text page (`gitseal_x_total`, `…_bucket`, …).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every `gitseal_…` metric name in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("gitseal_") {
        let start = i + pos;
        let preceded_by_word = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end =
            text[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(text.len(), |e| start + e);
        if !preceded_by_word && end > start + "gitseal_".len() {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_own_service_account_and_arguments_unseal_a_sealed_secret() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let client = ns.client();
        // Cluster-wide RBAC (the default); the watch is narrowed to this namespace only so that
        // this controller leaves the other tests' SealedSecrets alone. Release = namespace name,
        // so the cluster-scoped names are this test's own.
        let sets = vec![format!("watchNamespaces={{{}}}", ns.name()), "controller.keySize=2048".into()];
        let objects = render(ns.name(), ns.name(), &sets).await?;
        assert_eq!(find(&objects, "ClusterRole").len(), 1, "cluster-wide mode has one ClusterRole");
        let mut controller = ChartController::start(plane, ns.name(), &objects).await?;

        // A SealedSecret sealed with the library for the served certificate becomes a Secret.
        let cert = controller.cert().await?;
        apply_json(&client, seal(&cert, ns.name(), "db", "hunter2")).await?;
        assert_eq!(secret_value(&client, ns.name(), "db").await?, b"hunter2");
        let obj = synced(&client, ns.name(), "db", "True").await?;
        assert_eq!(health_of(&obj)?.status, "Healthy", "Argo CD health of {obj}");

        // One sealed for another key fails, and Argo CD shows the controller's message.
        let other = gitseal_keys::generate_key_pair(
            gitseal_keys::RsaBits::Rsa2048,
            "",
            time::OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )?;
        apply_json(&client, seal(&other.cert, ns.name(), "stranger", "x")).await?;
        let obj = synced(&client, ns.name(), "stranger", "False").await?;
        let message = obj["status"]["conditions"][0]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(health_of(&obj)?, Health::new("Degraded", &message));
        assert!(!message.is_empty(), "{obj}");

        // The dashboard and the alerts use only metrics this controller exports.
        let (code, body) = http_get(&controller.metrics).await?;
        assert_eq!(code, 200);
        let exported = sample_names(&String::from_utf8(body)?);
        let rules = render(ns.name(), ns.name(), &["metrics.prometheusRule.enabled=true".into()]).await?;
        let rules = serde_json::to_string(find(&rules, "PrometheusRule")[0])?;
        let dashboard = std::fs::read_to_string(repo_root().join("deploy/dashboards/gitseal.json"))?;
        for (what, text) in [("PrometheusRule", &rules), ("dashboard", &dashboard)] {
            // gitseal_shard_* exist only with --shards > 1: the shards e2e test checks them.
            let used: BTreeSet<String> =
                metric_names_in(text).into_iter().filter(|m| !m.starts_with("gitseal_shard_")).collect();
            assert!(used.len() >= 5, "{what} uses too few metrics: {used:?}");
            let unknown: Vec<&String> = used.difference(&exported).collect();
            assert!(unknown.is_empty(), "{what} uses metrics the controller does not export: {unknown:?}");
        }
        controller.process.check_running()?;
        Ok::<_, anyhow::Error>(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_namespaced_mode_the_controller_is_refused_outside_its_namespaces() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let client = ns.client();
        let apps = TestNamespace::create(client.clone()).await?;
        let outside = TestNamespace::create(client.clone()).await?;
        let mut sets = namespaced_values(&[apps.name()]);
        sets.push("controller.keySize=2048".into());
        let objects = render(ns.name(), ns.name(), &sets).await?;
        assert!(find(&objects, "ClusterRole").is_empty() && find(&objects, "ClusterRoleBinding").is_empty());
        let mut controller = ChartController::start(plane, ns.name(), &objects).await?;

        // It unseals in the namespace it was given…
        let cert = controller.cert().await?;
        apply_json(&client, seal(&cert, apps.name(), "db", "in-scope")).await?;
        assert_eq!(secret_value(&client, apps.name(), "db").await?, b"in-scope");
        synced(&client, apps.name(), "db", "True").await?;

        // …and its identity may read nothing elsewhere.
        let me = controller.sa_client.clone();
        let ss = ApiGroup::Gitseal.api_resource();
        let lp = ListParams::default();
        let refused = |r: Result<(), kube::Error>, what: &str| match r {
            Err(kube::Error::Api(ae)) => assert_eq!(ae.code, 403, "{what}: {ae:?}"),
            other => panic!("{what}: expected 403, got {other:?}"),
        };
        refused(Api::<Secret>::namespaced(me.clone(), outside.name()).list(&lp).await.map(|_| ()), "Secrets outside");
        refused(
            Api::<DynamicObject>::namespaced_with(me.clone(), outside.name(), &ss).list(&lp).await.map(|_| ()),
            "SealedSecrets outside",
        );
        refused(Api::<Secret>::all(me.clone()).list(&lp).await.map(|_| ()), "Secrets in all namespaces");
        refused(
            Api::<DynamicObject>::all_with(me.clone(), &ss).list(&lp).await.map(|_| ()),
            "SealedSecrets in all namespaces",
        );
        // Where it works, the same calls succeed (so the 403s are about the namespace).
        Api::<Secret>::namespaced(me.clone(), apps.name()).list(&lp).await?;
        Api::<DynamicObject>::namespaced_with(me.clone(), apps.name(), &ss).list(&lp).await?;
        Api::<Secret>::namespaced(me.clone(), ns.name()).list(&lp).await?;

        controller.process.check_running()?;
        let _ = apps.delete().await;
        let _ = outside.delete().await;
        Ok::<_, anyhow::Error>(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shards_the_chart_passes_the_flag_and_grants_exactly_the_shard_leases() -> anyhow::Result<()> {
    let objects = render("gitseal-controller", "gs", &["shards=3".into(), "replicas=3".into()]).await?;
    let args = container(&objects)["args"].clone();
    assert!(args.as_array().unwrap().iter().any(|a| a == "--shards=3"), "{args}");
    let role = find(&objects, "Role").into_iter().find(|r| name(r).ends_with("-keys")).expect("the keys Role");
    let leases: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"][0] == "leases")
        .flat_map(|r| r["resourceNames"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let want = ["gitseal-controller", "gitseal-controller-shard-members"]
        .into_iter()
        .map(String::from)
        .chain((0..3).map(|i| format!("gitseal-controller-shard-{i}")))
        .collect::<Vec<_>>();
    assert_eq!(leases, want);
    // An alert for a shard nobody holds, after twice the lease duration (one past a dead holder's Lease).
    let alert = |objects: &[Value]| {
        find(objects, "PrometheusRule")[0]["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["alert"] == "GitsealShardWithoutHolder")
            .cloned()
    };
    let sets =
        ["shards=3".into(), "metrics.prometheusRule.enabled=true".into(), "leaderElection.leaseDuration=20s".into()];
    let rule = alert(&render("gitseal-controller", "gs", &sets).await?).expect("the shard alert");
    assert_eq!(rule["for"], "40s", "{rule}");
    assert!(rule["expr"].as_str().unwrap().starts_with("sum by (namespace, shard) (gitseal_shard_owned{"), "{rule}");
    // The default stays the single leader: no flag, only the leader Lease, no shard alert.
    let objects = render("gitseal-controller", "gs", &[]).await?;
    assert!(!container(&objects)["args"].to_string().contains("--shards"));
    let with_rules = render("gitseal-controller", "gs", &["metrics.prometheusRule.enabled=true".into()]).await?;
    assert!(alert(&with_rules).is_none());
    // More than the controller accepts, or shards without leader election, fail the render.
    let err = render("gitseal-controller", "gs", &["shards=65".into()]).await.unwrap_err();
    assert!(format!("{err:#}").contains("schema"), "{err:#}");
    let sets = ["shards=2".into(), "replicas=1".into(), "leaderElection.enabled=false".into()];
    let err = render("gitseal-controller", "gs", &sets).await.unwrap_err();
    assert!(format!("{err:#}").contains("needs leaderElection.enabled"), "{err:#}");
    Ok(())
}

/// Issue 11: the chart's `pkcs11` block becomes the token flags and the PIN volume; a label and
/// a slot together (which the controller refuses at start) fail the render instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_values_render_the_token_flags_and_a_label_with_a_slot_fails_the_render() -> anyhow::Result<()> {
    let base: Vec<String> = ["pkcs11.enabled=true", "pkcs11.pinSecretName=hsm-pin", "pkcs11.hostPath=/usr/lib/softhsm"]
        .map(String::from)
        .into();
    let args_of = |objects: &[Value]| -> Vec<String> {
        container(objects)["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    let by_label = render("g", "gs", &[base.clone(), vec!["pkcs11.tokenLabel=gitseal".into()]].concat()).await?;
    let args = args_of(&by_label);
    for flag in [
        "--pkcs11-module=/opt/pkcs11/libvendor-pkcs11.so",
        "--pkcs11-token-label=gitseal",
        "--pkcs11-pin-file=/etc/gitseal/pkcs11-pin/pin",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} missing from {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--pkcs11-slot")), "{args:?}");
    let volumes = &deployment(&by_label)["spec"]["template"]["spec"]["volumes"];
    let pin = volumes.as_array().unwrap().iter().find(|v| v["name"] == "pkcs11-pin").expect("the PIN volume");
    assert_eq!(pin["secret"]["secretName"], "hsm-pin");

    let by_slot = render("g", "gs", &[base.clone(), vec!["pkcs11.slot=0".into()]].concat()).await?;
    let args = args_of(&by_slot);
    assert!(args.iter().any(|a| a == "--pkcs11-slot=0"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--pkcs11-token-label")), "{args:?}");

    let both = [base, vec!["pkcs11.tokenLabel=gitseal".into(), "pkcs11.slot=0".into()]].concat();
    let err = render("g", "gs", &both).await.unwrap_err();
    assert!(format!("{err:#}").contains("pkcs11.tokenLabel and pkcs11.slot both name the token"), "{err:#}");
    Ok(())
}
