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
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gitseal_shared::audit::Outcome as AuditOutcome;
use gitseal_shared::types::{SealedSecretObject, sealed_secret_from_value};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Shared;
use crate::audit::{AuditLog, caller};
use crate::budget::ClientKey;
use crate::config::AggregatedConfig;
use crate::metrics::Endpoint;
use crate::service::{self, Call, Done, Op, ServiceError, read_body};

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
pub async fn serve(shared: Arc<Shared>, cfg: AggregatedConfig, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let fp = Arc::new(front_proxy(&shared.client, &cfg).await?);
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(load_tls(&cfg, &fp)?));
    let listener =
        tokio::net::TcpListener::bind(cfg.addr).await.with_context(|| format!("cannot listen on {}", cfg.addr))?;
    tracing::info!(addr = %cfg.addr, "aggregated API (api.gitseal.dev/v1) listening");
    let app = router(shared.clone(), fp.clone());
    let handshake = move |tcp: tokio::net::TcpStream, remote: std::net::SocketAddr| {
        let (tls, fp) = (tls.clone(), fp.clone());
        async move {
            let stream = match tls.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake refused");
                    return None;
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
            Some((stream, peer))
        }
    };
    crate::serve::serve(listener, shared.config.listener, app, handshake, stop).await;
    Ok(())
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
        .layer(middleware::from_fn_with_state((shared.clone(), fp.clone()), require_front_proxy))
        .with_state((shared, fp))
}

async fn require_front_proxy(State((shared, _)): State<AppState>, req: Request, next: Next) -> Response {
    let ok = req.extensions().get::<Peer>().is_some_and(|p| p.front_proxy);
    if !ok {
        // Audited with the address and path only: no body, no headers the caller chose.
        let remote = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let mut rec = AuditLog::record("ApiRequest", AuditOutcome::Failure);
        rec.caller = Some(caller(&format!("unauthenticated:{remote}"), &[]));
        rec.reason = Some("unauthenticated".into());
        rec.message = Some(format!("{} {}", req.method(), req.uri().path().chars().take(200).collect::<String>()));
        shared.audit.write(rec);
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
fn parse_request(body: &[u8], ns: &str, kind: &str) -> Result<(Value, SealedSecretObject), ServiceError> {
    let bad = ServiceError::BadRequest;
    let obj: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request is not JSON: {e}")))?;
    if !obj.is_object() || obj.get("kind").and_then(Value::as_str) != Some(kind) {
        return Err(bad(format!("expected a JSON object of kind {kind}")));
    }
    let mut inner =
        obj.pointer("/spec/sealedSecret").cloned().ok_or_else(|| bad("spec.sealedSecret is required".into()))?;
    match inner.pointer("/metadata/namespace").map(Value::as_str) {
        Some(Some(n)) if n != ns => {
            return Err(ServiceError::WrongNamespace(format!(
                "the SealedSecret is in namespace {n:?} but the request was made in {ns:?}: use --namespace {n}"
            )));
        }
        Some(None) => return Err(bad("spec.sealedSecret.metadata.namespace must be a string".into())),
        Some(Some(_)) => {}
        None => {
            if let Some(meta) = inner.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("namespace".into(), ns.into());
            }
        }
    }
    let ss = sealed_secret_from_value(inner).map_err(|e| bad(e.to_string()))?;
    if ss.metadata.namespace.as_deref() != Some(ns) {
        return Err(ServiceError::WrongNamespace(format!("the SealedSecret must be in namespace {ns:?}")));
    }
    Ok((obj, ss))
}

/// A failure as a Kubernetes `Status`, with `Retry-After` when it helps.
fn service_response(e: &ServiceError) -> Response {
    let a = e.answer();
    let mut resp = status(a.code, a.reason, &a.message);
    if let Some(secs) = a.retry_after {
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    }
    resp
}

/// Which SealedSecret operation: its metric endpoint, audit action, request kind and work.
struct Operation {
    endpoint: Endpoint,
    action: &'static str,
    kind: &'static str,
    op: Op,
}

const VERIFY: Operation = Operation {
    endpoint: Endpoint::AggregatedVerify,
    action: "Verify",
    kind: "SealedSecretVerification",
    op: Op::Verify,
};
const RESEAL: Operation =
    Operation { endpoint: Endpoint::AggregatedReseal, action: "Reseal", kind: "SealedSecretReseal", op: Op::Rotate };

/// The SealedSecret operations: read and parse the request object in its namespace, then the
/// one audited call path of [`service::call`], keyed on the authenticated user.
async fn sealed_secret_call(
    (shared, fp): &AppState,
    what: &Operation,
    ns: &str,
    headers: &HeaderMap,
    body: Body,
) -> (Value, Result<Done, ServiceError>) {
    let (user, groups) = caller_of(headers, fp);
    let call = Call {
        endpoint: what.endpoint,
        action: what.action,
        caller: caller(&user, &groups),
        client: ClientKey::User(user),
    };
    let parsed = match read_body(body, shared.config.max_body_bytes, shared.config.listener.body_timeout).await {
        Ok(bytes) => parse_request(&bytes, ns, what.kind),
        Err(e) => Err(e),
    };
    let (obj, ss) = match parsed {
        Ok((obj, ss)) => (Some(obj), Ok(ss)),
        Err(e) => (None, Err(e)),
    };
    let done = service::call(shared, &call, ss, what.op).await;
    (obj.unwrap_or_default(), done)
}

async fn create_verification(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (mut obj, result) = sealed_secret_call(&state, &VERIFY, &ns, &headers, body).await;
    obj["status"] = match result {
        Ok(Done::Verified(ids)) => {
            let joined = gitseal_shared::KeyId::join(ids);
            json!({"valid": true, "keyIds": joined.split(',').collect::<Vec<_>>()})
        }
        // An answer, not an error: "this does not open here".
        Err(ServiceError::CannotDecrypt) => json!({"valid": false, "message": ServiceError::CannotDecrypt.to_string()}),
        Ok(_) => return service_response(&ServiceError::Internal("reseal answered a verification".into())),
        Err(e) => return service_response(&e),
    };
    (StatusCode::CREATED, Json(obj)).into_response()
}

async fn create_reseal(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let shared = state.0.clone();
    match sealed_secret_call(&state, &RESEAL, &ns, &headers, body).await {
        (mut obj, Ok(Done::Rotated(resealed, old))) => {
            let key_id = shared.registry.sealing().map(|k| k.id().to_string());
            obj["status"] = json!({
                "sealedSecret": serde_json::to_value(&*resealed).unwrap_or_default(),
                "oldKeyIds": old.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                "keyId": key_id,
            });
            (StatusCode::CREATED, Json(obj)).into_response()
        }
        (_, Ok(_)) => service_response(&ServiceError::Internal("verification answered a reseal".into())),
        (_, Err(e)) => service_response(&e),
    }
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

/// The request kind of each key operation resource.
fn key_op_kind(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "keyrotations" => "KeyRotation",
        "keyretirements" => "KeyRetirement",
        "keyrevocations" => "KeyRevocation",
        "keybackups" => "KeyBackup",
        _ => return None,
    })
}

/// Audit a key operation refused before it ran: caller and reason, never the body.
fn refuse_key_op(
    shared: &Shared,
    who: &gitseal_shared::audit::Caller,
    resource: &str,
    reason: &str,
    resp: Response,
) -> Response {
    let mut rec = AuditLog::record("KeyOperation", AuditOutcome::Failure);
    rec.caller = Some(who.clone());
    rec.reason = Some(reason.into());
    rec.message = Some(resource.chars().take(64).collect());
    shared.audit.write(rec);
    resp
}

async fn key_operation(
    State((shared, fp)): State<AppState>,
    Path((ns, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use crate::key_ops::{KeyOpError, backup, rotate, set_state};
    use crate::registry::KeyState;
    let (user, groups) = caller_of(&headers, &fp);
    let who = caller(&user, &groups);
    if let Err(r) = check_key_namespace(&shared, &ns) {
        return refuse_key_op(&shared, &who, &resource, "wrong_namespace", *r);
    }
    if let Err(why) = shared.audit.ready_for_work() {
        let r = status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why);
        return refuse_key_op(&shared, &who, &resource, "audit_unavailable", r);
    }
    let Some(kind) = key_op_kind(&resource) else {
        let r = status(StatusCode::NOT_FOUND, "NotFound", &format!("no such resource in {GROUP}/{VERSION}"));
        return refuse_key_op(&shared, &who, "unknown", "not_found", r);
    };
    let bytes = match read_body(body, shared.config.max_body_bytes, shared.config.listener.body_timeout).await {
        Ok(b) => b,
        Err(e) => {
            let label = e.answer().label;
            return refuse_key_op(&shared, &who, &resource, label, service_response(&e));
        }
    };
    // Only a JSON object of the resource's kind: anything else (an array, a string, another
    // kind) is refused before any key is touched.
    let mut obj = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) if v.get("kind").and_then(Value::as_str) == Some(kind) => v,
        Ok(_) => {
            let r = status(StatusCode::BAD_REQUEST, "BadRequest", &format!("expected a JSON object of kind {kind}"));
            return refuse_key_op(&shared, &who, &resource, "bad_request", r);
        }
        Err(e) => {
            let r = status(StatusCode::BAD_REQUEST, "BadRequest", &format!("request is not JSON: {e}"));
            return refuse_key_op(&shared, &who, &resource, "bad_request", r);
        }
    };
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let key_id = spec.get("keyId").and_then(Value::as_str).unwrap_or_default().to_string();
    let result = match kind {
        "KeyRotation" => rotate(&shared, &who).await,
        "KeyRetirement" => set_state(&shared, &who, &key_id, KeyState::Retired).await,
        "KeyRevocation" => set_state(&shared, &who, &key_id, KeyState::Revoked).await,
        _ => {
            let recipients: Vec<String> = spec
                .get("recipients")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            backup(&shared, &who, &recipients).await
        }
    };
    match result {
        Ok(st) => {
            if let Some(o) = obj.as_object_mut() {
                o.insert("status".into(), st);
            }
            (StatusCode::CREATED, Json(obj)).into_response()
        }
        Err(e @ KeyOpError::NotFound(_)) => status(StatusCode::NOT_FOUND, "NotFound", &e.to_string()),
        Err(e @ KeyOpError::BadRequest(_)) => status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
        Err(e @ KeyOpError::Conflict(_)) => status(StatusCode::CONFLICT, "Conflict", &e.to_string()),
        Err(e @ KeyOpError::Forbidden(_)) => status(StatusCode::FORBIDDEN, "Forbidden", &e.to_string()),
        Err(e @ KeyOpError::Failed(_)) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tower::ServiceExt as _;

    fn app(shared: Arc<Shared>) -> Router {
        let fp = FrontProxy {
            roots: Arc::new(RootCertStore::empty()),
            allowed_names: vec![],
            user_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
        };
        router(shared, Arc::new(fp))
    }

    async fn post(app: &Router, path: &str, body: Vec<u8>, front_proxy: bool) -> StatusCode {
        let mut req = axum::http::Request::post(path).header("X-Remote-User", "alice").body(Body::from(body)).unwrap();
        req.extensions_mut().insert(Peer { front_proxy });
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo("10.9.8.7:443".parse::<std::net::SocketAddr>().unwrap()));
        app.clone().oneshot(req).await.unwrap().status()
    }

    /// Request bodies: bytes, any JSON, and request objects of every kind around any JSON.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let json = crate::http::tests::any_json;
        let kinds = prop_oneof![
            Just("SealedSecretVerification"),
            Just("SealedSecretReseal"),
            Just("KeyRetirement"),
            Just("KeyRevocation"),
            Just("KeyBackup"),
        ];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            json().prop_map(|v| v.to_string().into_bytes()),
            (kinds.clone(), json()).prop_map(|(k, spec)| json!({"kind": k, "spec": spec}).to_string().into_bytes()),
            (kinds, json(), json()).prop_map(|(k, meta, data)| {
                json!({"kind": k, "spec": {"sealedSecret": {"metadata": meta, "spec": {"encryptedData": data}}}})
                    .to_string()
                    .into_bytes()
            }),
        ]
    }

    fn path() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("/apis/api.gitseal.dev/v1/namespaces/app/sealedsecretverifications"),
            Just("/apis/api.gitseal.dev/v1/namespaces/app/sealedsecretreseals"),
            Just("/apis/api.gitseal.dev/v1/namespaces/gitseal-system/keyretirements"),
            Just("/apis/api.gitseal.dev/v1/namespaces/gitseal-system/keyrevocations"),
            Just("/apis/api.gitseal.dev/v1/namespaces/gitseal-system/keybackups"),
            Just("/apis/api.gitseal.dev/v1/namespaces/gitseal-system/keyrotations"),
            Just("/apis/api.gitseal.dev/v1/namespaces/gitseal-system/nonsense"),
            Just("/apis/api.gitseal.dev/v1/namespaces/app/keybackups"),
        ]
    }

    /// Issue #9: a non-object JSON body on a key operation panicked the handler.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_non_object_body_on_a_key_operation_is_a_bad_request() {
        let app = app(crate::testing::shared_with(&[], Box::new(std::io::sink())));
        for body in ["[1,2]", "\"KeyRotation\"", "3", "null", "{\"kind\":[\"KeyRotation\"]}"] {
            for res in ["keyrotations", "keyretirements", "keyrevocations", "keybackups"] {
                let path = format!("/apis/api.gitseal.dev/v1/namespaces/gitseal-system/{res}");
                let code = post(&app, &path, body.as_bytes().to_vec(), true).await;
                assert_eq!(code, StatusCode::BAD_REQUEST, "{res} {body}");
            }
        }
    }

    #[test]
    fn aggregated_handlers_answer_any_body_with_a_4xx_or_2xx_and_never_panic() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let _in_runtime = rt.enter();
        let shared = crate::testing::shared_with(&["--api-private-ops-burst=100000"], Box::new(std::io::sink()));
        let app = app(shared);
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
            ..Default::default()
        });
        runner
            .run(&(path(), body()), |(path, body)| {
                // A KeyRotation request is valid input (it makes a key): not what this feeds.
                prop_assume!(
                    !path.ends_with("/keyrotations") || !String::from_utf8_lossy(&body).contains("KeyRotation")
                );
                let code = rt.block_on(post(&app, path, body, true));
                prop_assert!(code.is_client_error() || code.is_success(), "{path} answered {code}");
                Ok(())
            })
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unauthenticated_and_wrong_namespace_calls_are_refused_and_audited() {
        let lines = crate::testing::Lines::default();
        let app = app(crate::testing::shared_with(&[], Box::new(lines.clone())));
        let verify = "/apis/api.gitseal.dev/v1/namespaces/app/sealedsecretverifications";
        assert_eq!(post(&app, verify, b"{}".to_vec(), false).await, StatusCode::UNAUTHORIZED);
        let elsewhere = json!({"kind": "SealedSecretVerification", "spec": {"sealedSecret": {
            "apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "other"}, "spec": {"encryptedData": {}}}}});
        assert_eq!(post(&app, verify, elsewhere.to_string().into_bytes(), true).await, StatusCode::BAD_REQUEST);
        let records: Vec<Value> = lines.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(
            (records[0]["reason"].as_str(), records[0]["caller"]["user"].as_str()),
            (Some("unauthenticated"), Some("unauthenticated:10.9.8.7"))
        );
        assert_eq!(
            (records[1]["reason"].as_str(), records[1]["caller"]["user"].as_str()),
            (Some("wrong_namespace"), Some("alice"))
        );
        assert_eq!(records[1]["action"], "Verify");
    }
}
