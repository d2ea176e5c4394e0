//! The key resources, served only in the controller's own namespace: `keys` (list) and the key
//! operations (KeyRotation, KeyRetirement, KeyRevocation, KeyBackup). The work and its audit
//! records live in [`crate::key_ops`]; this is the HTTP edge: namespace, audit readiness, the
//! request object, and the answer. Every refusal before the work is audited with its caller.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gitseal_shared::api::{BackupSpec, GROUP, KeyStateSpec, Resource, VERSION};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::listener::caller_of;
use super::{AppState, service_response, status, with_status};
use crate::Shared;
use crate::audit::{AuditLog, caller};
use crate::key_ops::{self, KeyOpError};
use crate::registry::KeyState;
use crate::service::read_body;

/// A key operation: what a POST to one of the key resources does.
#[derive(Debug, Clone, Copy)]
pub(super) enum KeyOp {
    Rotate,
    Retire,
    Revoke,
    Backup,
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

pub(super) async fn list(State((shared, _)): State<AppState>, Path(ns): Path<String>) -> Response {
    if let Err(r) = check_key_namespace(&shared, &ns) {
        return *r;
    }
    Json(key_ops::list(&shared)).into_response()
}

/// Audit a key operation refused before it ran: caller and reason, never the body.
fn refuse(
    shared: &Shared,
    who: &gitseal_shared::audit::Caller,
    resource: &str,
    reason: &str,
    resp: Response,
) -> Response {
    let mut rec = AuditLog::record("KeyOperation", gitseal_shared::audit::Outcome::Failure);
    rec.caller = Some(who.clone());
    rec.reason = Some(reason.into());
    rec.message = Some(resource.chars().take(64).collect());
    shared.audit.write(rec);
    resp
}

/// A POST to `namespaces/{ns}/{resource}` that names no resource of the API: refused and audited
/// as the key operations are, so probing for resources leaves a trace.
pub(super) async fn unknown(
    State(state): State<AppState>,
    Path((ns, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    operate(state, &ns, &resource, None, &headers, body).await
}

/// The handler of one key operation resource.
pub(super) async fn operation(
    op: KeyOp,
    resource: Resource,
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    operate(state, &ns, resource.plural(), Some((op, resource)), &headers, body).await
}

/// `spec` as `S`; an absent or null `spec` is the default one.
fn spec<S: DeserializeOwned + Default>(obj: &Value) -> Result<S, String> {
    match obj.get("spec") {
        None | Some(Value::Null) => Ok(S::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("spec: {e}")),
    }
}

/// A key operation's typed `status` as JSON.
fn as_value<T: serde::Serialize>(r: Result<T, KeyOpError>) -> Result<Value, KeyOpError> {
    r.map(|s| serde_json::to_value(s).unwrap_or_default())
}

async fn operate(
    (shared, fp): AppState,
    ns: &str,
    resource: &str,
    op: Option<(KeyOp, Resource)>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let (user, groups) = caller_of(headers, &fp);
    let who = caller(&user, &groups);
    if let Err(r) = check_key_namespace(&shared, ns) {
        return refuse(&shared, &who, resource, "wrong_namespace", *r);
    }
    if let Err(why) = shared.audit.ready_for_work() {
        let r = status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why);
        return refuse(&shared, &who, resource, "audit_unavailable", r);
    }
    let Some((op, res)) = op else {
        let r = status(StatusCode::NOT_FOUND, "NotFound", &format!("no such resource in {GROUP}/{VERSION}"));
        return refuse(&shared, &who, "unknown", "not_found", r);
    };
    let kind = res.kind();
    let bytes = match read_body(body, shared.config.max_body_bytes, shared.config.listener.body_timeout).await {
        Ok(b) => b,
        Err(e) => {
            let label = e.answer().label;
            return refuse(&shared, &who, resource, label, service_response(&e));
        }
    };
    // Only a JSON object of the resource's kind: anything else (an array, a string, another
    // kind) is refused before any key is touched.
    let bad = |message: &str| {
        let r = status(StatusCode::BAD_REQUEST, "BadRequest", message);
        refuse(&shared, &who, resource, "bad_request", r)
    };
    let obj = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) if v.get("kind").and_then(Value::as_str) == Some(kind) => v,
        Ok(_) => return bad(&format!("expected a JSON object of kind {kind}")),
        Err(e) => return bad(&format!("request is not JSON: {e}")),
    };
    let result = match op {
        KeyOp::Rotate => as_value(key_ops::rotate(&shared, &who).await),
        KeyOp::Retire | KeyOp::Revoke => {
            let state = if matches!(op, KeyOp::Retire) { KeyState::Retired } else { KeyState::Revoked };
            match spec::<KeyStateSpec>(&obj) {
                Ok(s) => as_value(key_ops::set_state(&shared, &who, &s.key_id, state).await),
                Err(m) => return bad(&m),
            }
        }
        KeyOp::Backup => match spec::<BackupSpec>(&obj) {
            Ok(s) => as_value(key_ops::backup(&shared, &who, &s.recipients).await),
            Err(m) => return bad(&m),
        },
    };
    match result {
        Ok(st) => (StatusCode::CREATED, Json(with_status(obj, &st))).into_response(),
        Err(e @ KeyOpError::NotFound(_)) => status(StatusCode::NOT_FOUND, "NotFound", &e.to_string()),
        Err(e @ KeyOpError::BadRequest(_)) => status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
        Err(e @ KeyOpError::Conflict(_)) => status(StatusCode::CONFLICT, "Conflict", &e.to_string()),
        Err(e @ KeyOpError::Forbidden(_)) => status(StatusCode::FORBIDDEN, "Forbidden", &e.to_string()),
        Err(e @ KeyOpError::Failed(_)) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
    }
}
