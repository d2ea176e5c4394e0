//! Who read gitseal's Secrets: a receiver for the kube-apiserver's audit webhook backend.
//!
//! Flow: the kube-apiserver POSTs `audit.k8s.io/v1` `EventList`s (`--audit-webhook-config-file`,
//! policy `deploy/audit/policy.yaml`) over TLS to `/audit`. A request is authenticated by a
//! client certificate that chains to `--audit-webhook-client-ca` or by the bearer token of
//! `--audit-webhook-token-file`; anything else gets 401 and its body is never read. An
//! authenticated body (at most `--audit-webhook-max-body-bytes`, [`MAX_EVENTS`] events) is parsed
//! by [`gitseal_shared::apiserver_audit`]; each completed `get`/`list`/`watch` of a Secret that
//! gitseal produced becomes one `SecretRead` audit record, once per audit ID.
//!
//! Which Secrets are gitseal's: those carrying the `gitseal.dev/managed` label the controller
//! sets, and those named like a SealedSecret in the same namespace (so removing the label does
//! not hide reads while the SealedSecret exists). Both are tracked by metadata-only watches of
//! the watched namespaces. A `get` names its Secret. A `list` or `watch` without a name returns
//! every Secret of its namespace (or of the cluster), so it is recorded once, without a name and
//! with scope `namespace`/`cluster`, when that namespace (or the cluster) holds at least one
//! gitseal Secret; `gitseal audit reads NS/NAME` shows such reads unless `--direct` is given.
//!
//! Errors: 401 unauthenticated (audited as `AuditWebhookRefused`, rate-limited per client), 413
//! too large, 400 not an `EventList`, 503 until the watches have listed (the apiserver retries).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::Context as _;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use futures::StreamExt as _;
use gitseal_shared::apiserver_audit::{self, Covered, MAX_EVENTS};
use gitseal_shared::audit::{Outcome, ReadScope};
use gitseal_shared::types::ApiGroup;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::watcher;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::Shared;
use crate::audit::{AuditLog, now_rfc3339};
use crate::config::AuditWebhookConfig;
use crate::decide::MANAGED_LABEL;

/// Metadata-only requests: gitseal never asks for a Secret's data here.
type MetaApi = Api<PartialObjectMeta<DynamicObject>>;

/// A client that has not finished its TLS handshake, or sent its request headers, by then is
/// dropped (no connection is held open by a silent peer).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an authenticated client may take to send its body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Audit IDs remembered for deduplication (a retried batch is recorded once).
const SEEN_CAPACITY: usize = 65_536;

/// Secrets gitseal produced, per watch source, as `(namespace, name)`.
#[derive(Debug)]
pub struct Known {
    sources: Mutex<Vec<HashSet<(String, String)>>>,
    /// Sources that have not listed yet.
    pending: AtomicUsize,
}

impl Known {
    pub fn new(sources: usize) -> Known {
        Known { sources: Mutex::new(vec![HashSet::new(); sources]), pending: AtomicUsize::new(sources) }
    }

    /// Every source has listed its objects once.
    pub fn synced(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<HashSet<(String, String)>>) -> T) -> T {
        f(&mut self.sources.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a read that covered `c` read at least one Secret gitseal produced.
    pub fn relevant(&self, c: Covered<'_>) -> bool {
        self.with(|sources| match c {
            (Some(ns), Some(name), _) => {
                let key = (ns.to_string(), name.to_string());
                sources.iter().any(|s| s.contains(&key))
            }
            (Some(ns), None, ReadScope::Namespace) => sources.iter().flatten().any(|(n, _)| n == ns),
            (None, None, ReadScope::Cluster) => sources.iter().any(|s| !s.is_empty()),
            _ => false,
        })
    }
}

/// Recently recorded audit IDs, oldest evicted first.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// True the first time `id` is offered (an empty id is never a duplicate).
    fn first(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return true;
        }
        if !self.set.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// The bearer token, kept only as its SHA-256 so comparing takes the same time for any guess.
#[derive(Clone)]
struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest")
    }
}

impl TokenDigest {
    fn load(path: &Path) -> crate::error::Result<TokenDigest> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        );
        let token = text.trim();
        if token.is_empty() {
            return Err(crate::error::Error::invalid(format!("{} holds no token", path.display())));
        }
        Ok(TokenDigest(Sha256::digest(token.as_bytes()).into()))
    }

    fn matches(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let d: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        d.iter().zip(self.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// What the TLS layer learned: the client certificate chained to the client CA.
#[derive(Debug, Clone, Copy)]
struct Peer {
    client_cert: bool,
    remote: SocketAddr,
}

#[derive(Debug)]
struct Receiver {
    shared: Arc<Shared>,
    known: Arc<Known>,
    token: Option<TokenDigest>,
    seen: Mutex<Seen>,
    max_body: usize,
    /// Refusals audited per client: one a second, bursts of five (a flood costs log lines).
    refusals: crate::budget::RateLimiter,
}

fn load_roots(path: &Path) -> crate::error::Result<RootCertStore> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for block in pem::parse_many(&pem).context("the audit webhook client CA is not PEM")? {
        if block.tag() == "CERTIFICATE" {
            roots
                .add(CertificateDer::from(block.into_contents()))
                .context("bad audit webhook client CA certificate")?;
        }
    }
    if roots.is_empty() {
        return Err(crate::error::Error::invalid(format!("{} holds no certificate", path.display())));
    }
    Ok(roots)
}

fn tls_config(cfg: &AuditWebhookConfig) -> crate::error::Result<ServerConfig> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let certs: Vec<CertificateDer<'static>> = pem::parse_many(read(&cfg.tls_cert)?)
        .context("the audit webhook serving certificate is not PEM")?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    let key_block = pem::parse_many(zeroize::Zeroizing::new(read(&cfg.tls_key)?))
        .context("the audit webhook serving key is not PEM")?
        .into_iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .context("no private key in the audit webhook serving key file")?;
    let key: PrivateKeyDer<'static> = match key_block.tag() {
        "RSA PRIVATE KEY" => PrivatePkcs1KeyDer::from(key_block.into_contents()).into(),
        "EC PRIVATE KEY" => PrivateSec1KeyDer::from(key_block.into_contents()).into(),
        _ => PrivatePkcs8KeyDer::from(key_block.into_contents()).into(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            // Optional at the TLS layer so a token-only apiserver still connects; the handler
            // then requires the certificate or the token.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                .allow_unauthenticated()
                .build()
                .context("cannot build the client-certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certs, key).context("audit webhook serving certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The watches that tell which Secrets are gitseal's: per watched namespace (or all), Secrets
/// with the managed label and SealedSecrets of each served group.
fn sources(shared: &Shared) -> Vec<(MetaApi, watcher::Config)> {
    let mut kinds = vec![(ApiResource::erase::<Secret>(&()), Some(format!("{MANAGED_LABEL}=true")))];
    kinds.push((ApiGroup::Gitseal.api_resource(), None));
    if shared.config.bitnami_compat {
        kinds.push((ApiGroup::Bitnami.api_resource(), None));
    }
    let client = &shared.client;
    let namespaces = &shared.config.namespaces;
    let mut out = Vec::new();
    for (ar, labels) in kinds {
        let wc = match &labels {
            Some(l) => watcher::Config::default().labels(l),
            None => watcher::Config::default(),
        };
        if namespaces.is_empty() {
            out.push((Api::all_with(client.clone(), &ar), wc.clone()));
        }
        for ns in namespaces {
            out.push((Api::namespaced_with(client.clone(), ns, &ar), wc.clone()));
        }
    }
    out
}

async fn track(api: MetaApi, wc: watcher::Config, known: Arc<Known>, idx: usize) {
    let key = |m: &kube::api::ObjectMeta| (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
    let mut stream = watcher::watcher(api, wc).boxed();
    let mut building: HashSet<(String, String)> = HashSet::new();
    let mut listed = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => building.clear(),
            Ok(watcher::Event::InitApply(o)) => {
                building.insert(key(&o.metadata));
            }
            Ok(watcher::Event::InitDone) => {
                known.with(|s| s[idx] = std::mem::take(&mut building));
                if !listed {
                    listed = true;
                    known.pending.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Ok(watcher::Event::Apply(o)) => {
                known.with(|s| s[idx].insert(key(&o.metadata)));
            }
            Ok(watcher::Event::Delete(o)) => {
                known.with(|s| s[idx].remove(&key(&o.metadata)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit webhook: watch of gitseal's Secrets failed, retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}

/// Serve the audit webhook until `stop` turns true.
pub async fn serve(
    shared: Arc<Shared>,
    cfg: AuditWebhookConfig,
    mut stop: watch::Receiver<bool>,
) -> crate::error::Result<()> {
    let token = cfg.token_file.as_deref().map(TokenDigest::load).transpose()?;
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&cfg)?));
    let listener =
        tokio::net::TcpListener::bind(cfg.addr).await.with_context(|| format!("cannot listen on {}", cfg.addr))?;
    let watches = sources(&shared);
    let known = Arc::new(Known::new(watches.len()));
    let mut tasks = Vec::new();
    for (idx, (api, wc)) in watches.into_iter().enumerate() {
        tasks.push(tokio::spawn(track(api, wc, known.clone(), idx)));
    }
    let receiver = Arc::new(Receiver {
        shared,
        known,
        token,
        seen: Mutex::new(Seen::default()),
        max_body: cfg.max_body_bytes,
        refusals: crate::budget::RateLimiter::new(1.0, 5),
    });
    let app = router(receiver);
    tracing::info!(addr = %cfg.addr, "audit webhook receiver listening");
    let result = loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            _ = stop.wait_for(|s| *s) => break Ok(()),
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "audit webhook TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "audit webhook TLS handshake timed out");
                    return;
                }
            };
            // With a client CA configured, rustls has already checked any presented chain.
            let peer =
                Peer { client_cert: stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()), remote };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer);
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HANDSHAKE_TIMEOUT);
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%remote, error = %e, "audit webhook connection ended");
            }
        });
    };
    for t in tasks {
        t.abort();
    }
    result
}

fn router(receiver: Arc<Receiver>) -> Router {
    Router::new().route("/audit", post(receive)).route("/", post(receive)).with_state(receiver)
}

fn refuse(r: &Receiver, peer: &Peer, code: StatusCode, reason: &str, detail: &str) -> Response {
    if r.refusals.allow(peer.remote.ip(), Instant::now()) {
        let mut rec = AuditLog::record("AuditWebhookRefused", Outcome::Failure);
        rec.reason = Some(reason.into());
        rec.message = Some(format!("from {}: {detail}", peer.remote.ip()));
        r.shared.audit.write(rec);
    }
    tracing::warn!(remote = %peer.remote, reason, "audit webhook request refused");
    (code, format!("{reason}: {detail}\n")).into_response()
}

async fn receive(State(r): State<Arc<Receiver>>, Extension(peer): Extension<Peer>, req: Request) -> Response {
    let token_ok = r.token.as_ref().is_some_and(|t| t.matches(req.headers()));
    if !(peer.client_cert || token_ok) {
        return refuse(
            &r,
            &peer,
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "present the client certificate or bearer token of the webhook kubeconfig",
        );
    }
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(req.into_body(), r.max_body)).await;
    let body = match read {
        Ok(Ok(b)) => b,
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "body not received in time\n").into_response(),
        Ok(Err(_)) => {
            return refuse(
                &r,
                &peer,
                StatusCode::PAYLOAD_TOO_LARGE,
                "TooLarge",
                &format!("body over {} bytes: lower --audit-webhook-batch-max-size", r.max_body),
            );
        }
    };
    if !r.known.synced() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: still listing gitseal's Secrets\n").into_response();
    }
    let events = match apiserver_audit::parse_event_list(&body) {
        Ok(e) => e,
        Err(e) => return refuse(&r, &peer, StatusCode::BAD_REQUEST, "Malformed", &e.to_string()),
    };
    let now = now_rfc3339();
    let mut recorded = 0usize;
    for ev in &events {
        let Some(c) = apiserver_audit::covered(ev) else { continue };
        if !r.known.relevant(c) {
            continue;
        }
        let Some(rec) = apiserver_audit::secret_read(ev, &now) else { continue };
        let first = {
            let id = rec.read.as_ref().map(|x| x.audit_id.as_str()).unwrap_or_default();
            r.seen.lock().unwrap_or_else(|p| p.into_inner()).first(id)
        };
        if first {
            r.shared.audit.write(rec);
            recorded += 1;
        }
    }
    tracing::debug!(events = events.len(), recorded, max = MAX_EVENTS, "audit webhook batch");
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_id_is_recorded_once_and_the_memory_is_bounded() {
        let mut seen = Seen::default();
        assert!(seen.first("a"));
        assert!(!seen.first("a"));
        assert!(seen.first("") && seen.first(""), "events without an id are never merged");
        for i in 0..SEEN_CAPACITY + 10 {
            seen.first(&format!("id-{i}"));
        }
        assert!(seen.set.len() <= SEEN_CAPACITY && seen.order.len() <= SEEN_CAPACITY);
        assert!(seen.first("a"), "the oldest ids are forgotten first");
    }

    #[test]
    fn reads_are_relevant_only_when_they_reach_a_gitseal_secret() {
        let known = Known::new(2);
        known.with(|s| {
            s[0].insert(("app".into(), "db".into()));
        });
        assert!(known.relevant((Some("app"), Some("db"), ReadScope::Object)));
        assert!(!known.relevant((Some("app"), Some("other"), ReadScope::Object)));
        assert!(known.relevant((Some("app"), None, ReadScope::Namespace)));
        assert!(!known.relevant((Some("dev"), None, ReadScope::Namespace)));
        assert!(known.relevant((None, None, ReadScope::Cluster)));
        assert!(!Known::new(1).relevant((None, None, ReadScope::Cluster)));
        assert!(!known.synced());
    }

    #[test]
    fn only_the_configured_bearer_token_matches() {
        let dir = tempfile_dir();
        let path = dir.join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let t = TokenDigest::load(&path).unwrap();
        let mut h = HeaderMap::new();
        assert!(!t.matches(&h));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(t.matches(&h));
        h.insert("authorization", "Bearer s3cres".parse().unwrap());
        assert!(!t.matches(&h));
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(!t.matches(&h));
        assert_eq!(format!("{t:?}"), "TokenDigest");
        std::fs::write(&path, "  \n").unwrap();
        assert!(TokenDigest::load(&path).is_err());
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gitseal-audit-webhook-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
