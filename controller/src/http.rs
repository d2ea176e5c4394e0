//! The HTTP API, Bitnami-compatible so the real `kubeseal` works unchanged:
//! `GET /v1/cert.pem`, `POST /v1/verify` (200 / 409), `POST /v1/rotate`, plus
//! `GET /v1/recipients`, `/healthz`, `/readyz`, the sealing page under `/seal/`
//! ([`crate::seal_page`]); `/metrics` on its own listener.
//!
//! verify and rotate take the one audited path of [`service::call`]: limited per client in
//! requests and in private-key operations (the client is the peer address unless the peer is a
//! `--trusted-proxies` proxy), bounded in body size and time, run in the private-key pool, and
//! they answer failures to decrypt with one opaque message. These endpoints cannot know who
//! calls them (the API server's service proxy strips credentials): `--disable-legacy-endpoints`
//! turns them off, leaving the authenticated aggregated API.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gitseal_shared::manifest::{OutputFormat, write_documents};

use crate::Shared;
use crate::budget::ClientKey;
use crate::metrics::Endpoint;
use crate::service::{self, Call, Done, Op, ServiceError, parse_body, read_body};

pub fn router(shared: Arc<Shared>) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/cert.pem", get(cert))
        .route("/v1/recipients", get(recipients))
        .route("/v1/audit-key", get(crate::audit::cluster::public_key_handler));
    if !shared.config.disable_seal_page {
        app = app
            .route("/seal", get(crate::seal_page::redirect))
            .route("/seal/", get(crate::seal_page::asset))
            .route("/seal/{file}", get(crate::seal_page::asset));
    }
    if !shared.config.disable_legacy_endpoints {
        app = app.route("/v1/verify", post(verify_handler)).route("/v1/rotate", post(rotate_handler));
    }
    app.with_state(shared)
}

pub fn metrics_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<Shared>>| async move {
                crate::keys::update_key_metrics(&s);
                let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
                s.metrics.tokio_alive_tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
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
            ([(header::CONTENT_TYPE, "application/x-pem-file")], k.cert.pem().to_string()).into_response()
        }
        None => {
            s.metrics.api(Endpoint::Cert, "no_keys");
            no_key_yet("cannot get certificate: no sealing key is loaded yet\n")
        }
    }
}

async fn recipients(State(s): State<Arc<Shared>>) -> Response {
    let Some(k) = s.registry.sealing() else {
        s.metrics.api(Endpoint::Recipients, "no_keys");
        return no_key_yet("no sealing key is loaded yet\n");
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

/// Seconds a client is asked to wait while the controller has no sealing key yet (first start:
/// the key is made or loaded within seconds of the HTTP listener coming up).
pub const NO_KEY_RETRY_AFTER_SECS: u32 = 2;

/// The answer while no sealing key is loaded: a temporary condition (503 + `Retry-After`), not a
/// server fault, so clients such as `gitseal seal --cert URL` know to wait (issue 12).
fn no_key_yet(message: &'static str) -> Response {
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(NO_KEY_RETRY_AFTER_SECS));
    resp
}

/// The legacy endpoints' caller: unauthenticated, known only by address.
fn legacy_call(s: &Shared, endpoint: Endpoint, action: &'static str, peer: SocketAddr, headers: &HeaderMap) -> Call {
    let client = crate::budget::client_of(headers, peer, &s.config.budget.trusted_proxies);
    let key = ClientKey::Addr(client);
    Call { endpoint, action, caller: crate::audit::caller(&key.to_string(), &[]), client: key }
}

/// A failure as the legacy endpoints answer it: plain text, `Retry-After` when it helps.
fn legacy_error(e: &ServiceError) -> Response {
    let a = e.answer();
    let mut resp = (a.code, format!("{}\n", a.message)).into_response();
    if let Some(secs) = a.retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Read and parse a legacy body within the listener's size and time limits.
async fn legacy_body(s: &Shared, body: Body) -> Result<gitseal_shared::types::SealedSecretObject, ServiceError> {
    let bytes = read_body(body, s.config.max_body_bytes, s.config.listener.body_timeout).await?;
    parse_body(&bytes)
}

async fn verify_handler(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let c = legacy_call(&s, Endpoint::Verify, "Verify", peer, &headers);
    let parsed = legacy_body(&s, body).await;
    match service::call(&s, &c, parsed, Op::Verify).await {
        Ok(_) => (StatusCode::OK, "OK\n").into_response(),
        Err(e) => legacy_error(&e),
    }
}

async fn rotate_handler(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let yaml_wanted = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("yaml"));
    let c = legacy_call(&s, Endpoint::Rotate, "Rotate", peer, &headers);
    let parsed = legacy_body(&s, body).await;
    match service::call(&s, &c, parsed, Op::Rotate).await {
        Ok(Done::Rotated(rotated, _)) => {
            let json = serde_json::to_value(&*rotated).unwrap_or_default();
            let (body, ctype) = if yaml_wanted {
                (write_documents(&[json], OutputFormat::Yaml).unwrap_or_default(), "application/yaml")
            } else {
                (write_documents(&[json], OutputFormat::Json).unwrap_or_default(), "application/json")
            };
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
            response
        }
        Ok(Done::Verified(_)) => legacy_error(&ServiceError::Internal("verify answered a rotate".into())),
        Err(e) => legacy_error(&e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::budget::RateLimiter;
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

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
    fn a_refused_client_is_told_when_a_token_is_surely_back() {
        assert_eq!(RateLimiter::new(2.0, 4).retry_after_secs(), 1);
        assert_eq!(RateLimiter::new(0.3, 4).retry_after_secs(), 4);
        assert_eq!(RateLimiter::new(0.0, 4).retry_after_secs(), 3600);
        let resp = legacy_error(&ServiceError::RateLimited(RateLimiter::new(2.0, 4).retry_after_secs()));
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }

    /// Any JSON value, a few levels deep.
    pub(crate) fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[a-zA-Z0-9:/._ -]{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("SealedSecret"),
                Just("bitnami.com/v1alpha1"),
                Just("gitseal.dev/v1"),
                Just("AgAB"),
                Just("metadata"),
                Just("encryptedData"),
                Just("template"),
                Just("data"),
                Just("namespace"),
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("apiVersion".to_string()),
                Just("kind".to_string()),
                Just("metadata".to_string()),
                Just("spec".to_string()),
                Just("name".to_string()),
                Just("namespace".to_string()),
                Just("annotations".to_string()),
                Just("encryptedData".to_string()),
                Just("template".to_string()),
                Just("data".to_string()),
                Just("sealedSecret".to_string()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Legacy bodies: arbitrary bytes, arbitrary JSON, and JSON shaped like a SealedSecret.
    fn legacy_body() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            any_json().prop_map(|v| v.to_string().into_bytes()),
            (any_json(), any_json(), any_json()).prop_map(|(meta, data, tmpl)| {
                serde_json::json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": meta,
                    "spec": {"encryptedData": data, "template": tmpl}})
                .to_string()
                .into_bytes()
            }),
        ]
    }

    async fn post(app: &Router, path: &str, body: Vec<u8>) -> StatusCode {
        use tower::ServiceExt as _;
        let mut req = axum::http::Request::post(path).body(Body::from(body)).unwrap();
        req.extensions_mut().insert(ConnectInfo("10.1.2.3:4567".parse::<SocketAddr>().unwrap()));
        app.clone().oneshot(req).await.unwrap().status()
    }

    #[test]
    fn legacy_handlers_answer_any_body_with_a_4xx_or_2xx_and_never_panic() {
        use proptest::prelude::*;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let _in_runtime = rt.enter();
        let flags = ["--rate-limit=100000", "--rate-limit-burst=100000", "--api-private-ops-burst=100000"];
        let shared = crate::testing::shared_with(&flags, Box::new(std::io::sink()));
        let app = router(shared);
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 192,
            failure_persistence: None,
            rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
            ..Default::default()
        });
        runner
            .run(&(legacy_body(), any::<bool>()), |(body, rotate)| {
                let path = if rotate { "/v1/rotate" } else { "/v1/verify" };
                let code = rt.block_on(post(&app, path, body));
                prop_assert!(code.is_client_error() || code.is_success(), "{path} answered {code}");
                Ok(())
            })
            .unwrap();
    }

    /// Issue 12: right after start the key may not be loaded yet; that is "try again shortly".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn certificate_and_recipients_answer_503_with_retry_after_until_a_key_is_loaded() {
        use tower::ServiceExt as _;
        let shared = crate::testing::shared_without_keys(&[], Box::new(std::io::sink()));
        let app = router(shared);
        for path in ["/v1/cert.pem", "/v1/recipients"] {
            let req = axum::http::Request::get(path).body(Body::empty()).unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(resp.headers()[header::RETRY_AFTER], NO_KEY_RETRY_AFTER_SECS.to_string().as_str(), "{path}");
        }
        let app = router(crate::testing::shared_with(&[], Box::new(std::io::sink())));
        let req = axum::http::Request::get("/v1/cert.pem").body(Body::empty()).unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_and_unparsable_calls_are_audited_with_caller_and_reason_but_no_body() {
        let lines = crate::testing::Lines::default();
        let shared = crate::testing::shared_with(&["--rate-limit=1", "--rate-limit-burst=2"], Box::new(lines.clone()));
        let app = router(shared);
        let secret_marker = b"not-a-sealed-secret-4b1d".to_vec();
        assert_eq!(post(&app, "/v1/verify", secret_marker.clone()).await, StatusCode::BAD_REQUEST);
        let _ = post(&app, "/v1/verify", b"{}".to_vec()).await;
        assert_eq!(post(&app, "/v1/rotate", b"{}".to_vec()).await, StatusCode::TOO_MANY_REQUESTS);
        let text = lines.text();
        assert!(!text.contains("4b1d"), "a body never reaches the audit log: {text}");
        let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len(), 3, "{text}");
        assert_eq!(records[0]["reason"], "bad_request");
        assert_eq!(records[2]["reason"], "rate_limited");
        assert_eq!(records[2]["action"], "Rotate");
        for r in &records {
            assert_eq!(r["caller"]["user"], "unauthenticated:10.1.2.3", "{r}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_refused_calls_from_one_address_cannot_grow_the_audit_log_at_will() {
        let lines = crate::testing::Lines::default();
        let shared = crate::testing::shared_with(&["--rate-limit=1", "--rate-limit-burst=1"], Box::new(lines.clone()));
        let app = router(shared.clone());
        for _ in 0..200 {
            let _ = post(&app, "/v1/verify", b"{}".to_vec()).await;
        }
        let records = lines.text().lines().count();
        let burst = crate::context::REFUSAL_AUDITS_BURST as usize;
        assert!(records >= burst, "the first refusals are audited: {records}");
        assert!(records <= burst + 3, "200 refusals wrote {records} audit records");
        // They are still counted.
        let metrics = shared.metrics.encode();
        let counted: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("gitseal_api_requests_total{") && l.contains("verify"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(counted >= 200.0, "{metrics}");
    }
}
