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
//!
//! - [`listener`]: TLS, the front-proxy check and the caller's identity;
//! - [`discovery`]: the group and resource documents;
//! - [`sealed_secrets`]: verification and re-sealing;
//! - [`keys`]: listing keys and the key operations.
//!
//! Routes, discovery and dispatch all come from [`Resource`]: a new resource is one arm in
//! `gitseal_shared::api` and one in [`handler`].

mod discovery;
mod keys;
mod listener;
mod sealed_secrets;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use gitseal_shared::api::{GROUP, Resource, Status, VERSION};
use serde::Serialize;
use serde_json::Value;

pub use listener::{FrontProxy, front_proxy, serve};

use crate::Shared;
use crate::service::ServiceError;

type AppState = (Arc<Shared>, Arc<FrontProxy>);

/// What serves each resource. Exhaustive: a new [`Resource`] does not compile without its handler.
fn handler(resource: Resource) -> MethodRouter<AppState> {
    use keys::KeyOp;
    let key_op = |op: KeyOp| post(move |s, p, h, b| keys::operation(op, resource, s, p, h, b));
    match resource {
        Resource::SealedSecretVerifications => post(sealed_secrets::create_verification),
        Resource::SealedSecretReseals => post(sealed_secrets::create_reseal),
        Resource::KeyRotations => key_op(KeyOp::Rotate),
        Resource::KeyRetirements => key_op(KeyOp::Retire),
        Resource::KeyRevocations => key_op(KeyOp::Revoke),
        Resource::KeyBackups => key_op(KeyOp::Backup),
        Resource::Keys => get(keys::list),
    }
}

fn router(shared: Arc<Shared>, fp: Arc<FrontProxy>) -> Router {
    let namespaced = format!("/apis/{GROUP}/{VERSION}/namespaces/{{ns}}");
    let mut routes = Router::new()
        .route("/apis", get(discovery::group_list))
        .route(&format!("/apis/{GROUP}"), get(discovery::group))
        .route(&format!("/apis/{GROUP}/{VERSION}"), get(discovery::resource_list));
    for resource in Resource::ALL {
        routes = routes.route(&format!("{namespaced}/{}", resource.plural()), handler(resource));
    }
    routes
        .route(&format!("{namespaced}/{{resource}}"), post(keys::unknown))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state((shared.clone(), fp.clone()), listener::require_front_proxy))
        .with_state((shared, fp))
}

/// A metav1 `Status` failure.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (code, Json(Status::failure(code.as_u16(), reason, message))).into_response()
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

/// The request object as the caller sent it, with `status` set: the answer of a create.
fn with_status(mut obj: Value, status: &impl Serialize) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.insert("status".into(), serde_json::to_value(status).unwrap_or_default());
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::listener::Peer;
    use super::*;
    use axum::body::Body;
    use proptest::prelude::*;
    use rustls::RootCertStore;
    use serde_json::json;
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

    /// Issue #13: discovery and routes come from one enum, so every resource discovery lists
    /// reaches its own handler (never the unknown-resource refusal), and the key list answers
    /// in the shared wire model.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_discovered_resource_is_routed_to_its_handler() {
        let app = app(crate::testing::shared_with(&[], Box::new(std::io::sink())));
        let get = |path: &str| {
            let mut req = axum::http::Request::get(path).body(Body::empty()).unwrap();
            req.extensions_mut().insert(Peer { front_proxy: true });
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await.unwrap();
                let code = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
                (code, serde_json::from_slice::<Value>(&bytes).unwrap())
            }
        };
        let (code, doc) = get("/apis/api.gitseal.dev/v1").await;
        assert_eq!(code, StatusCode::OK);
        let listed = doc["resources"].as_array().unwrap();
        assert_eq!(listed.len(), Resource::ALL.len());
        for r in listed {
            let name = r["name"].as_str().unwrap();
            let path = format!("/apis/api.gitseal.dev/v1/namespaces/gitseal-system/{name}");
            if r["verbs"] == json!(["list"]) {
                let (code, list) = get(&path).await;
                assert_eq!(code, StatusCode::OK, "{name}");
                let keys: gitseal_shared::api::KeyList = serde_json::from_value(list).unwrap();
                assert_eq!((keys.kind.as_str(), keys.items.len()), ("KeyList", 1));
                assert!(keys.items[0].latest && keys.items[0].extra.is_empty(), "{keys:?}");
            } else {
                // An empty object is of no kind: each handler refuses it as a bad request,
                // where the unknown-resource route would answer 404.
                assert_eq!(post(&app, &path, b"{}".to_vec(), true).await, StatusCode::BAD_REQUEST, "{name}");
            }
        }
        let unknown = "/apis/api.gitseal.dev/v1/namespaces/gitseal-system/secrets";
        assert_eq!(post(&app, unknown, b"{}".to_vec(), true).await, StatusCode::NOT_FOUND);
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
