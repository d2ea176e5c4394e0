//! The listener of the aggregated API and who may talk to it: TLS with an optional client
//! certificate, and the front-proxy check. Only a connection whose certificate chains to the
//! requestheader CA (and carries an allowed common name) is the kube-apiserver; only there are
//! the `X-Remote-User`/`X-Remote-Group` headers believed.

use std::sync::Arc;

use crate::error::Context as _;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use gitseal_shared::audit::Outcome as AuditOutcome;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::watch;

use super::{AppState, router, status};
use crate::Shared;
use crate::audit::{AuditLog, caller};
use crate::config::AggregatedConfig;

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
pub(super) struct Peer {
    /// The client presented a certificate that chains to the requestheader CA and whose CN is allowed.
    pub(super) front_proxy: bool,
}

fn parse_json_list(s: Option<&String>) -> Option<Vec<String>> {
    s.and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
}

/// Load the requestheader settings: from flags, else from kube-system/extension-apiserver-authentication.
pub async fn front_proxy(client: &kube::Client, cfg: &AggregatedConfig) -> crate::error::Result<FrontProxy> {
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
        return Err(crate::error::Error::invalid("the requestheader CA bundle holds no certificate"));
    }
    Ok(FrontProxy { roots: Arc::new(roots), allowed_names: allowed, user_headers: users, group_headers: groups })
}

fn load_tls(cfg: &AggregatedConfig, fp: &FrontProxy) -> crate::error::Result<ServerConfig> {
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
pub async fn serve(
    shared: Arc<Shared>,
    cfg: AggregatedConfig,
    stop: watch::Receiver<bool>,
) -> crate::error::Result<()> {
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

pub(super) async fn require_front_proxy(State((shared, _)): State<AppState>, req: Request, next: Next) -> Response {
    let ok = req.extensions().get::<Peer>().is_some_and(|p| p.front_proxy);
    if !ok {
        // Audited with the address and path only: no body, no headers the caller chose.
        let remote = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        // Within a per-address budget, as every free refusal (see `Shared::refusal_audits`).
        let audited = remote.is_none_or(|ip| shared.limits.refusal_audits.allow(ip, std::time::Instant::now()));
        let remote = remote.map(|ip| ip.to_string()).unwrap_or_default();
        let mut rec = AuditLog::record("ApiRequest", AuditOutcome::Failure);
        rec.caller = Some(caller(&format!("unauthenticated:{remote}"), &[]));
        rec.reason = Some("unauthenticated".into());
        rec.message = Some(format!("{} {}", req.method(), req.uri().path().chars().take(200).collect::<String>()));
        if audited {
            shared.audit.write(rec);
        }
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "this endpoint is served through the kube-apiserver: call it with kubectl or gitseal and your kubeconfig",
        );
    }
    next.run(req).await
}

/// The authenticated caller, from the front-proxy headers.
pub(super) fn caller_of(headers: &HeaderMap, fp: &FrontProxy) -> (String, Vec<String>) {
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
