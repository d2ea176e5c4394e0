//! The SealedSecret operations: SealedSecretVerification and SealedSecretReseal. Each reads
//! the request object in its namespace and takes the one audited call path of
//! [`service::call`], keyed on the authenticated user.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gitseal_shared::api::{ResealStatus, Resource, VerificationStatus};
use gitseal_shared::types::{SealedSecretObject, sealed_secret_from_value};
use serde_json::Value;

use super::listener::caller_of;
use super::{AppState, service_response, with_status};
use crate::audit::caller;
use crate::budget::ClientKey;
use crate::metrics::Endpoint;
use crate::service::{self, Call, Done, Op, ServiceError, read_body};

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

/// Which SealedSecret operation: its resource, metric endpoint, audit action and work.
struct Operation {
    resource: Resource,
    endpoint: Endpoint,
    action: &'static str,
    op: Op,
}

const VERIFY: Operation = Operation {
    resource: Resource::SealedSecretVerifications,
    endpoint: Endpoint::AggregatedVerify,
    action: "Verify",
    op: Op::Verify,
};
const RESEAL: Operation = Operation {
    resource: Resource::SealedSecretReseals,
    endpoint: Endpoint::AggregatedReseal,
    action: "Reseal",
    op: Op::Rotate,
};

/// Read and parse the request object in its namespace, then the one audited call path of
/// [`service::call`], keyed on the authenticated user.
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
        Ok(bytes) => parse_request(&bytes, ns, what.resource.kind()),
        Err(e) => Err(e),
    };
    let (obj, ss) = match parsed {
        Ok((obj, ss)) => (Some(obj), Ok(ss)),
        Err(e) => (None, Err(e)),
    };
    let done = service::call(shared, &call, ss, what.op).await;
    (obj.unwrap_or_default(), done)
}

pub(super) async fn create_verification(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (obj, result) = sealed_secret_call(&state, &VERIFY, &ns, &headers, body).await;
    let answer = match result {
        Ok(Done::Verified(ids)) => {
            let joined = gitseal_shared::KeyId::join(ids);
            let key_ids = joined.split(',').map(str::to_string).collect();
            VerificationStatus { valid: true, key_ids, message: None }
        }
        // An answer, not an error: "this does not open here".
        Err(ServiceError::CannotDecrypt) => {
            VerificationStatus { valid: false, key_ids: vec![], message: Some(ServiceError::CannotDecrypt.to_string()) }
        }
        Ok(_) => return service_response(&ServiceError::Internal("reseal answered a verification".into())),
        Err(e) => return service_response(&e),
    };
    (StatusCode::CREATED, Json(with_status(obj, &answer))).into_response()
}

pub(super) async fn create_reseal(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let shared = state.0.clone();
    match sealed_secret_call(&state, &RESEAL, &ns, &headers, body).await {
        (obj, Ok(Done::Rotated(resealed, old))) => {
            let answer = ResealStatus {
                sealed_secret: *resealed,
                old_key_ids: old.iter().map(|k| k.to_string()).collect(),
                key_id: shared.registry.sealing().map(|k| k.id().to_string()),
            };
            (StatusCode::CREATED, Json(with_status(obj, &answer))).into_response()
        }
        (_, Ok(_)) => service_response(&ServiceError::Internal("verification answered a reseal".into())),
        (_, Err(e)) => service_response(&e),
    }
}
