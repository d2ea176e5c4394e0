//! The authenticated API: verify and re-seal as Kubernetes resources of `api.gitseal.dev/v1`,
//! served through the kube-apiserver by an APIService.
//!
//! Bitnami's `/v1/verify` and `/v1/rotate` sit behind the API server's service proxy, which
//! strips the caller's credentials (kubernetes#38775), so they cannot know who calls. Here the
//! kube-apiserver authenticates the caller by whatever the cluster uses, RBAC authorizes
//! `create` on `sealedsecretverifications` / `sealedsecretreseals` per namespace, and the
//! cluster's audit log records the call. gitseal trusts the `X-Remote-User`/`X-Remote-Group`
//! headers only on connections whose TLS client certificate chains to the requestheader CA
//! and carries an allowed common name; every other request is refused.

use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gitseal_shared::audit::Outcome as AuditOutcome;
use gitseal_shared::types::sealed_secret_from_value;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::Shared;
use crate::audit::{AuditLog, caller, object_of};
use crate::config::AggregatedConfig;
use crate::metrics::Endpoint;
use crate::service::{ServiceError, rotate, verify};

pub const GROUP: &str = "api.gitseal.dev";
pub const VERSION: &str = "v1";
pub const VERIFICATIONS: &str = "sealedsecretverifications";
pub const RESEALS: &str = "sealedsecretreseals";

/// How front-proxy requests are recognised.
#[derive(Debug, Clone)]
pub struct FrontProxy {
    pub roots: Arc<RootCertStore>,
    pub allowed_names: Vec<String>,
    pub user_headers: Vec<String>,
    pub group_headers: Vec<String>,
}

/// What the TLS layer learned about the peer, attached to each request.
#[derive(Debug, Clone, Default)]
struct Peer {
    /// The client presented a certificate that chains to the requestheader CA and whose CN is allowed.
    front_proxy: bool,
}

fn parse_json_list(s: Option<&String>) -> Option<Vec<String>> {
    s.and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
}

/// Load the requestheader settings: from flags, else from kube-system/extension-apiserver-authentication.
pub async fn front_proxy(client: &kube::Client, cfg: &AggregatedConfig) -> anyhow::Result<FrontProxy> {
    let (ca_pem, mut allowed, mut users, mut groups) = match &cfg.client_ca_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            (pem, Vec::new(), Vec::new(), Vec::new())
        }
        None => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
            let cm = api.get("extension-apiserver-authentication").await.context(
                "cannot read kube-system/extension-apiserver-authentication (bind the extension-apiserver-authentication-reader Role, or pass --requestheader-client-ca-file)",
            )?;
            let data = cm.data.unwrap_or_default();
            let pem = data
                .get("requestheader-client-ca-file")
                .cloned()
                .context("the kube-apiserver runs without --requestheader-client-ca-file: the aggregation layer is not configured")?;
            (
                pem,
                parse_json_list(data.get("requestheader-allowed-names")).unwrap_or_default(),
                parse_json_list(data.get("requestheader-username-headers")).unwrap_or_default(),
                parse_json_list(data.get("requestheader-group-headers")).unwrap_or_default(),
            )
        }
    };
    if !cfg.allowed_names.is_empty() {
        allowed.clone_from(&cfg.allowed_names);
    }
    if users.is_empty() {
        users = vec!["X-Remote-User".into()];
    }
    if groups.is_empty() {
        groups = vec!["X-Remote-Group".into()];
    }
    let mut roots = RootCertStore::empty();
    for block in pem::parse_many(ca_pem.as_bytes()).context("requestheader CA is not PEM")? {
        if block.tag() == "CERTIFICATE" {
            roots.add(CertificateDer::from(block.into_contents())).context("bad requestheader CA certificate")?;
        }
    }
    if roots.is_empty() {
        anyhow::bail!("the requestheader CA bundle holds no certificate");
    }
    Ok(FrontProxy { roots: Arc::new(roots), allowed_names: allowed, user_headers: users, group_headers: groups })
}

fn load_tls(cfg: &AggregatedConfig, fp: &FrontProxy) -> anyhow::Result<ServerConfig> {
    let cert_pem = std::fs::read(&cfg.tls_cert).with_context(|| format!("cannot read {}", cfg.tls_cert.display()))?;
    let key_pem = std::fs::read(&cfg.tls_key).with_context(|| format!("cannot read {}", cfg.tls_key.display()))?;
    let certs: Vec<CertificateDer<'static>> = pem::parse_many(&cert_pem)
        .context("serving certificate is not PEM")?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    let key_block = pem::parse_many(&key_pem)
        .context("serving key is not PEM")?
        .into_iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .context("no private key in the serving key file")?;
    let key: PrivateKeyDer<'static> = match key_block.tag() {
        "RSA PRIVATE KEY" => PrivatePkcs1KeyDer::from(key_block.into_contents()).into(),
        "EC PRIVATE KEY" => PrivateSec1KeyDer::from(key_block.into_contents()).into(),
        _ => PrivatePkcs8KeyDer::from(key_block.into_contents()).into(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(fp.roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("cannot build the client-certificate verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("serving certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string)
}

/// Serve the aggregated API until `stop` turns true.
pub async fn serve(shared: Arc<Shared>, cfg: AggregatedConfig, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let fp = Arc::new(front_proxy(&shared.client, &cfg).await?);
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(load_tls(&cfg, &fp)?));
    let listener =
        tokio::net::TcpListener::bind(cfg.addr).await.with_context(|| format!("cannot listen on {}", cfg.addr))?;
    tracing::info!(addr = %cfg.addr, "aggregated API (api.gitseal.dev/v1) listening");
    let app = router(shared.clone(), fp.clone());
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let (tls, app, fp) = (tls.clone(), app.clone(), fp.clone());
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake refused");
                    return;
                }
            };
            let peer = {
                let (_, conn) = stream.get_ref();
                let leaf = conn.peer_certificates().and_then(|c| c.first());
                let cn = leaf.and_then(|c| common_name(c));
                let front_proxy = leaf.is_some()
                    && (fp.allowed_names.is_empty() || cn.as_ref().is_some_and(|n| fp.allowed_names.contains(n)));
                Peer { front_proxy }
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%remote, error = %e, "aggregated API connection ended");
            }
        });
    }
}

type AppState = (Arc<Shared>, Arc<FrontProxy>);

fn router(shared: Arc<Shared>, fp: Arc<FrontProxy>) -> Router {
    Router::new()
        .route("/apis", get(|| async { Json(group_list()) }))
        .route(&format!("/apis/{GROUP}"), get(|| async { Json(api_group()) }))
        .route(&format!("/apis/{GROUP}/{VERSION}"), get(|| async { Json(resource_list()) }))
        .route(&format!("/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{VERIFICATIONS}"), post(create_verification))
        .route(&format!("/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{RESEALS}"), post(create_reseal))
        .route(&format!("/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/keys"), get(list_keys))
        .route(&format!("/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{{resource}}"), post(key_operation))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn(require_front_proxy))
        .with_state((shared, fp))
}

async fn require_front_proxy(req: Request, next: Next) -> Response {
    let ok = req.extensions().get::<Peer>().is_some_and(|p| p.front_proxy);
    if !ok {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "this endpoint is served through the kube-apiserver: call it with kubectl or gitseal and your kubeconfig",
        );
    }
    next.run(req).await
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

fn group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]})
}

fn api_group() -> Value {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

fn resource_list() -> Value {
    let res = |name: &str, singular: &str, kind: &str| json!({"name": name, "singularName": singular, "namespaced": true, "kind": kind, "verbs": ["create"]});
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            res(VERIFICATIONS, "sealedsecretverification", "SealedSecretVerification"),
            res(RESEALS, "sealedsecretreseal", "SealedSecretReseal"),
            res("keyrotations", "keyrotation", "KeyRotation"),
            res("keyretirements", "keyretirement", "KeyRetirement"),
            res("keyrevocations", "keyrevocation", "KeyRevocation"),
            res("keybackups", "keybackup", "KeyBackup"),
            {"name": "keys", "singularName": "key", "namespaced": true, "kind": "Key", "verbs": ["list"]},
        ]
    })
}

/// The authenticated caller, from the front-proxy headers.
fn caller_of(headers: &HeaderMap, fp: &FrontProxy) -> (String, Vec<String>) {
    let first = |names: &[String]| {
        names.iter().find_map(|n| headers.get(n.as_str()).and_then(|v| v.to_str().ok()).map(str::to_string))
    };
    let user = first(&fp.user_headers).unwrap_or_default();
    let groups = fp
        .group_headers
        .iter()
        .flat_map(|n| {
            headers.get_all(n.as_str()).iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect::<Vec<_>>()
        })
        .collect();
    (user, groups)
}

/// Decode the request object and the SealedSecret inside it, checking its namespace.
fn parse_request(
    body: &[u8],
    ns: &str,
    kind: &str,
) -> Result<(Value, gitseal_shared::types::SealedSecretObject), Box<Response>> {
    let bad = |m: String| Box::new(status(StatusCode::BAD_REQUEST, "BadRequest", &m));
    let obj: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request is not JSON: {e}")))?;
    if obj.get("kind").and_then(Value::as_str) != Some(kind) {
        return Err(bad(format!("expected kind {kind}")));
    }
    let mut inner =
        obj.pointer("/spec/sealedSecret").cloned().ok_or_else(|| bad("spec.sealedSecret is required".into()))?;
    match inner.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(n) if n != ns => {
            return Err(bad(format!(
                "the SealedSecret is in namespace {n:?} but the request was made in {ns:?}: use --namespace {n}"
            )));
        }
        Some(_) => {}
        None => {
            if let Some(meta) = inner.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("namespace".into(), ns.into());
            }
        }
    }
    let ss = sealed_secret_from_value(inner).map_err(|e| bad(e.to_string()))?;
    Ok((obj, ss))
}

fn service_response(e: &ServiceError) -> (Response, &'static str) {
    match e {
        ServiceError::BadRequest(m) => (status(StatusCode::BAD_REQUEST, "BadRequest", m), "bad_request"),
        ServiceError::CannotDecrypt => (status(StatusCode::CONFLICT, "Conflict", &e.to_string()), "cannot_decrypt"),
        ServiceError::NoKeys => {
            (status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &e.to_string()), "no_keys")
        }
        ServiceError::Internal(_) => {
            (status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error"), "error")
        }
    }
}

/// What a SealedSecret operation produced: the `status` to answer with, and audit details.
struct Outcome {
    status: Value,
    metric: &'static str,
    key_id: Option<String>,
    reason: Option<&'static str>,
    message: Option<String>,
}

/// The shared shape of the SealedSecret operations: parse the request object in its namespace,
/// run `op`, answer 201 with `status` (or a Status error), audit with the caller, count it.
/// Which operation: its metric endpoint, audit action and request kind.
struct Operation {
    endpoint: Endpoint,
    action: &'static str,
    kind: &'static str,
}

const VERIFY: Operation =
    Operation { endpoint: Endpoint::AggregatedVerify, action: "Verify", kind: "SealedSecretVerification" };
const RESEAL: Operation =
    Operation { endpoint: Endpoint::AggregatedReseal, action: "Reseal", kind: "SealedSecretReseal" };

fn sealed_secret_call(
    (shared, fp): &AppState,
    what: &Operation,
    ns: &str,
    headers: &HeaderMap,
    body: &[u8],
    op: impl FnOnce(&Shared, &gitseal_shared::types::SealedSecretObject) -> Result<Outcome, ServiceError>,
) -> Response {
    let Operation { endpoint, action, kind } = *what;
    if let Err(why) = shared.audit.ready_for_work() {
        shared.metrics.api(endpoint, "audit_unavailable");
        return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why);
    }
    let (user, groups) = caller_of(headers, fp);
    let (mut obj, ss) = match parse_request(body, ns, kind) {
        Ok(x) => x,
        Err(r) => {
            shared.metrics.api(endpoint, "bad_request");
            return *r;
        }
    };
    let result = op(shared, &ss);
    let failed = result.as_ref().map_or(true, |o| o.reason.is_some());
    let mut rec = AuditLog::record(action, if failed { AuditOutcome::Failure } else { AuditOutcome::Success });
    rec.object = Some(object_of(&ss));
    rec.caller = Some(caller(&user, &groups));
    let response = match result {
        Ok(o) => {
            rec.key_id = o.key_id;
            rec.reason = o.reason.map(str::to_string);
            rec.message = o.message;
            shared.metrics.api(endpoint, o.metric);
            obj["status"] = o.status;
            (StatusCode::CREATED, Json(obj)).into_response()
        }
        Err(e) => {
            let (resp, label) = service_response(&e);
            rec.reason = Some(label.into());
            shared.metrics.api(endpoint, label);
            resp
        }
    };
    shared.audit.write(rec);
    response
}

async fn create_verification(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sealed_secret_call(&state, &VERIFY, &ns, &headers, &body, |s, ss| {
        match verify(s, ss) {
            Ok(ids) => {
                let joined = gitseal_shared::KeyId::join(ids);
                let status = json!({"valid": true, "keyIds": joined.split(',').collect::<Vec<_>>()});
                Ok(Outcome { status, metric: "ok", key_id: Some(joined), reason: None, message: None })
            }
            // An answer, not an error: "this does not open here".
            Err(ServiceError::CannotDecrypt) => Ok(Outcome {
                status: json!({"valid": false, "message": ServiceError::CannotDecrypt.to_string()}),
                metric: "invalid",
                key_id: None,
                reason: Some("cannot_decrypt"),
                message: None,
            }),
            Err(e) => Err(e),
        }
    })
}

async fn create_reseal(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sealed_secret_call(&state, &RESEAL, &ns, &headers, &body, |s, ss| {
        let (resealed, old) = rotate(s, ss)?;
        let key_id = s.registry.sealing().map(|k| k.id().to_string());
        let status = json!({
            "sealedSecret": serde_json::to_value(&resealed).unwrap_or_default(),
            "oldKeyIds": old.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            "keyId": key_id,
        });
        let message = Some(format!("re-sealed from {}", gitseal_shared::KeyId::join(old)));
        Ok(Outcome { status, metric: "ok", key_id, reason: None, message })
    })
}

/// Key operations are served only in the controller's own namespace.
fn check_key_namespace(shared: &Shared, ns: &str) -> Result<(), Box<Response>> {
    if ns == shared.config.namespace {
        return Ok(());
    }
    let msg = format!(
        "keys live in namespace {}: use --controller-namespace {}",
        shared.config.namespace, shared.config.namespace
    );
    Err(Box::new(status(StatusCode::NOT_FOUND, "NotFound", &msg)))
}

async fn list_keys(State((shared, _)): State<AppState>, Path(ns): Path<String>) -> Response {
    if let Err(r) = check_key_namespace(&shared, &ns) {
        return *r;
    }
    Json(crate::key_ops::list(&shared)).into_response()
}

async fn key_operation(
    State((shared, fp)): State<AppState>,
    Path((ns, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::key_ops::{KeyOpError, backup, rotate, set_state};
    use crate::registry::KeyState;
    if let Err(r) = check_key_namespace(&shared, &ns) {
        return *r;
    }
    if let Err(why) = shared.audit.ready_for_work() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why);
    }
    let (user, groups) = caller_of(&headers, &fp);
    let who = caller(&user, &groups);
    let mut obj: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &format!("request is not JSON: {e}")),
    };
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let key_id = spec.get("keyId").and_then(Value::as_str).unwrap_or_default().to_string();
    let result = match resource.as_str() {
        "keyrotations" => rotate(&shared, &who).await,
        "keyretirements" => set_state(&shared, &who, &key_id, KeyState::Retired).await,
        "keyrevocations" => set_state(&shared, &who, &key_id, KeyState::Revoked).await,
        "keybackups" => {
            let recipients: Vec<String> = spec
                .get("recipients")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            backup(&shared, &who, &recipients).await
        }
        other => {
            return status(StatusCode::NOT_FOUND, "NotFound", &format!("no resource {other} in {GROUP}/{VERSION}"));
        }
    };
    match result {
        Ok(st) => {
            obj["status"] = st;
            (StatusCode::CREATED, Json(obj)).into_response()
        }
        Err(e @ KeyOpError::NotFound(_)) => status(StatusCode::NOT_FOUND, "NotFound", &e.to_string()),
        Err(e @ KeyOpError::BadRequest(_)) => status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
        Err(e @ KeyOpError::Conflict(_)) => status(StatusCode::CONFLICT, "Conflict", &e.to_string()),
        Err(e @ KeyOpError::Failed(_)) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
    }
}
