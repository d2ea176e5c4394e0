//! The HTTP API, Bitnami-compatible so the real `kubeseal` works unchanged:
//! `GET /v1/cert.pem`, `POST /v1/verify` (200 / 409), `POST /v1/rotate`, plus
//! `GET /v1/recipients`, `/healthz`, `/readyz`; `/metrics` on its own listener.
//!
//! verify and rotate are rate-limited per client and bounded in body size; they answer
//! failures to decrypt with one opaque message. These endpoints cannot know who calls them
//! (the API server's service proxy strips credentials): `--disable-legacy-endpoints` turns
//! them off, leaving the authenticated aggregated API.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gitseal_shared::audit::Outcome as AuditOutcome;
use gitseal_shared::manifest::{OutputFormat, write_documents};

use crate::Shared;
use crate::audit::{AuditLog, object_of};
use crate::metrics::Endpoint;
use crate::service::{ServiceError, parse_body, rotate, verify};

/// Token buckets per client address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

const MAX_TRACKED_CLIENTS: usize = 65_536;

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter { rate, burst: f64::from(burst), buckets: Mutex::new(HashMap::new()) }
    }

    /// Take one token for `client`; false when it is over its rate.
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED_CLIENTS && !b.contains_key(&client) {
            // Forget idle clients (a full bucket is the same as no entry).
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whole seconds after which a refused client surely has a token again: the `Retry-After`
    /// of a 429. client-go (so kubeseal) retries a 429 only when that header is present, as
    /// Bitnami's limiter sends it; without it `kubeseal --validate` of a stream fails.
    pub fn retry_after_secs(&self) -> u64 {
        (1.0 / self.rate).ceil().clamp(1.0, 3600.0) as u64
    }

    /// The answer to a refused request.
    fn too_many_requests(&self) -> Response {
        let mut resp = (StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down\n").into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after_secs()));
        resp
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/cert.pem", get(cert))
        .route("/v1/recipients", get(recipients))
        .route("/v1/audit-key", get(crate::audit::cluster::public_key_handler));
    if !shared.config.disable_legacy_endpoints {
        app = app.route("/v1/verify", post(verify_handler)).route("/v1/rotate", post(rotate_handler));
    }
    app.layer(DefaultBodyLimit::max(shared.config.max_body_bytes)).with_state(shared)
}

pub fn metrics_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<Shared>>| async move {
                crate::keys::update_key_metrics(&s);
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    s.metrics.encode(),
                )
            }),
        )
        .with_state(shared)
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.readiness() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn cert(State(s): State<Arc<Shared>>) -> Response {
    match s.registry.sealing() {
        Some(k) => {
            s.metrics.api(Endpoint::Cert, "ok");
            ([(header::CONTENT_TYPE, "application/x-pem-file")], k.pair.cert.pem().to_string()).into_response()
        }
        None => {
            s.metrics.api(Endpoint::Cert, "no_keys");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot get certificate: no sealing key is loaded yet\n")
                .into_response()
        }
    }
}

async fn recipients(State(s): State<Arc<Shared>>) -> Response {
    let Some(k) = s.registry.sealing() else {
        s.metrics.api(Endpoint::Recipients, "no_keys");
        return (StatusCode::INTERNAL_SERVER_ERROR, "no sealing key is loaded yet\n").into_response();
    };
    let Some(r) = k.decryption.age_recipient() else {
        s.metrics.api(Endpoint::Recipients, "no_age_key");
        return (StatusCode::NOT_FOUND, "the sealing key has no age identity (a Bitnami key); use /v1/cert.pem\n")
            .into_response();
    };
    s.metrics.api(Endpoint::Recipients, "ok");
    let created = k.not_before().map(gitseal_keys::cert::fmt_time).unwrap_or_default();
    let body = format!("# gitseal sealing key {} (created {created})\n{r}\n", k.id());
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The client a request is counted against: behind the kube-apiserver's service proxy, the
/// last `X-Forwarded-For` entry (the address the proxy itself saw and appended; earlier entries
/// are whatever the caller sent); otherwise the peer address.
fn client_of(headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(peer.ip())
}

fn service_error(e: &ServiceError) -> (StatusCode, &'static str) {
    match e {
        ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        ServiceError::CannotDecrypt => (StatusCode::CONFLICT, "cannot_decrypt"),
        ServiceError::NoKeys => (StatusCode::SERVICE_UNAVAILABLE, "no_keys"),
        ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "error"),
    }
}

/// What a legacy endpoint did, for its audit record and its answer.
struct Done {
    response: Response,
    key_id: Option<String>,
    message: Option<String>,
}

/// The shared shape of `/v1/verify` and `/v1/rotate`: rate limit per client, parse one
/// SealedSecret, run `op`, audit the call (caller unknown: the service proxy strips it), count it.
fn legacy_call(
    s: &Shared,
    endpoint: Endpoint,
    action: &str,
    client: IpAddr,
    body: &[u8],
    op: impl FnOnce(&Shared, &gitseal_shared::types::SealedSecretObject) -> Result<Done, ServiceError>,
) -> Response {
    if let Err(why) = s.audit.ready_for_work() {
        s.metrics.api(endpoint, "audit_unavailable");
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    if !s.rate_limiter.allow(client, Instant::now()) {
        s.metrics.api(endpoint, "rate_limited");
        return s.rate_limiter.too_many_requests();
    }
    let ss = match parse_body(body) {
        Ok(ss) => ss,
        Err(e) => {
            s.metrics.api(endpoint, "bad_request");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let result = op(s, &ss);
    let mut rec = AuditLog::record(action, if result.is_ok() { AuditOutcome::Success } else { AuditOutcome::Failure });
    rec.object = Some(object_of(&ss));
    rec.caller = Some(crate::audit::caller(&format!("unauthenticated:{client}"), &[]));
    let response = match result {
        Ok(done) => {
            rec.key_id = done.key_id;
            rec.message = done.message;
            s.metrics.api(endpoint, "ok");
            done.response
        }
        Err(e) => {
            let (code, label) = service_error(&e);
            rec.reason = Some(label.into());
            s.metrics.api(endpoint, label);
            (code, format!("{e}\n")).into_response()
        }
    };
    s.audit.write(rec);
    response
}

async fn verify_handler(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    legacy_call(&s, Endpoint::Verify, "Verify", client_of(&headers, peer), &body, |s, ss| {
        let ids = verify(s, ss)?;
        Ok(Done {
            response: (StatusCode::OK, "OK\n").into_response(),
            key_id: Some(gitseal_shared::KeyId::join(ids)),
            message: None,
        })
    })
}

async fn rotate_handler(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let yaml_wanted = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("yaml"));
    legacy_call(&s, Endpoint::Rotate, "Rotate", client_of(&headers, peer), &body, |s, ss| {
        let (rotated, old) = rotate(s, ss)?;
        let json = serde_json::to_value(&rotated).unwrap_or_default();
        let (body, ctype) = if yaml_wanted {
            (write_documents(&[json], OutputFormat::Yaml).unwrap_or_default(), "application/yaml")
        } else {
            (write_documents(&[json], OutputFormat::Json).unwrap_or_default(), "application/json")
        };
        let mut response = (StatusCode::OK, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        Ok(Done {
            response,
            key_id: s.registry.sealing().map(|k| k.id().to_string()),
            message: Some(format!("re-sealed from {}", gitseal_shared::KeyId::join(old))),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limiter_allows_the_burst_then_refills_at_the_rate() {
        let rl = RateLimiter::new(2.0, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(rl.allow(ip, t0));
        assert!(rl.allow(ip, t0));
        assert!(!rl.allow(ip, t0));
        assert!(rl.allow(ip, t0 + Duration::from_millis(600)));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(rl.allow(other, t0), "buckets are per client");
    }

    #[test]
    fn a_forged_forwarded_for_entry_does_not_buy_a_new_bucket() {
        let peer: SocketAddr = "10.0.0.9:443".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4, 192.0.2.7"));
        assert_eq!(client_of(&h, peer), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_of(&HeaderMap::new(), peer), peer.ip());
    }

    #[test]
    fn a_refused_client_is_told_when_a_token_is_surely_back() {
        assert_eq!(RateLimiter::new(2.0, 4).retry_after_secs(), 1);
        assert_eq!(RateLimiter::new(0.3, 4).retry_after_secs(), 4);
        assert_eq!(RateLimiter::new(0.0, 4).retry_after_secs(), 3600);
        let resp = RateLimiter::new(2.0, 4).too_many_requests();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }
}
