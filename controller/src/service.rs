//! Verify and re-seal: the operations behind `/v1/verify`, `/v1/rotate` and the authenticated
//! aggregated API, and the one audited call path both APIs take ([`call`]): request limit,
//! parse, private-operation budget, the shared pool, audit, metrics. Failures to open are
//! reported as one opaque answer, and [`ServiceError::answer`] is the one mapping to HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use gitseal_shared::KeyId;
use gitseal_shared::audit::{Caller, Outcome as AuditOutcome};
use gitseal_shared::keyid::KEY_ID_ANNOTATION;
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::scope::Scope;
use gitseal_shared::seal::{OpBudget, reseal_within, unseal_within};
use gitseal_shared::types::{SealedSecretObject, sealed_secret_from_value};
use gitseal_shared::value::RecipientSet;
use http_body_util::BodyExt as _;

use crate::Shared;
use crate::audit::{AuditLog, object_of};
use crate::budget::{ClientKey, Grant, WorkClass};
use crate::metrics::Endpoint;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    /// The request names a namespace other than the one it was made in.
    #[error("{0}")]
    WrongNamespace(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("request body was not received within {0:?}")]
    BodyTimeout(Duration),
    /// Opening it needs more private operations than one request may spend.
    #[error("{0}")]
    TooMuchWork(String),
    #[error("too many private-key operations from this client; retry in {0} s")]
    RateLimited(u64),
    #[error("the controller is busy with private-key work; retry in {0} s")]
    Busy(u64),
    /// Deliberately says nothing about which step failed.
    #[error("this controller cannot decrypt the SealedSecret for its namespace/name and scope")]
    CannotDecrypt,
    #[error("no sealing key is loaded yet")]
    NoKeys,
    /// A key's hardware token did not answer; nothing was learnt about the value.
    #[error("a sealing key's hardware token is unavailable; retry later")]
    KeyUnavailable,
    /// `--audit-required` and the audit sink is failing: no work that would go unaudited.
    #[error("{0}")]
    AuditUnavailable(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

/// How a [`ServiceError`] is answered on either API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: StatusCode,
    /// Kubernetes `Status.reason` (aggregated API).
    pub reason: &'static str,
    /// Metric and audit label.
    pub label: &'static str,
    pub retry_after: Option<u64>,
    /// Safe to show the caller (internal details are not).
    pub message: String,
}

impl ServiceError {
    /// The one mapping from a service failure to an HTTP answer, for both APIs.
    /// Refused before any private-key work: cheap for the caller to repeat.
    pub fn is_free_refusal(&self) -> bool {
        !matches!(self, ServiceError::CannotDecrypt | ServiceError::Internal(_))
    }

    pub fn answer(&self) -> Answer {
        let a =
            |code, reason, label, retry_after| Answer { code, reason, label, retry_after, message: self.to_string() };
        match self {
            ServiceError::BadRequest(_) => a(StatusCode::BAD_REQUEST, "BadRequest", "bad_request", None),
            ServiceError::WrongNamespace(_) => a(StatusCode::BAD_REQUEST, "BadRequest", "wrong_namespace", None),
            ServiceError::TooLarge(_) => a(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", "too_large", None),
            ServiceError::BodyTimeout(_) => a(StatusCode::REQUEST_TIMEOUT, "Timeout", "body_timeout", None),
            ServiceError::TooMuchWork(_) => a(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "too_much_work", None),
            ServiceError::RateLimited(s) => {
                a(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "rate_limited", Some(*s))
            }
            ServiceError::Busy(s) => a(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "busy", Some(*s)),
            ServiceError::CannotDecrypt => a(StatusCode::CONFLICT, "Conflict", "cannot_decrypt", None),
            ServiceError::NoKeys => a(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "no_keys", Some(5)),
            ServiceError::KeyUnavailable => {
                a(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "key_unavailable", Some(5))
            }
            ServiceError::AuditUnavailable(_) => {
                a(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "audit_unavailable", Some(5))
            }
            ServiceError::Internal(_) => Answer {
                code: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "InternalError",
                label: "error",
                retry_after: None,
                message: "internal error".into(),
            },
        }
    }
}

/// Read a request body of at most `limit` bytes within `timeout`.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ServiceError> {
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ServiceError::BodyTimeout(timeout)),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ServiceError::TooLarge(limit)),
        Ok(Err(_)) => Err(ServiceError::BadRequest("the request body could not be read".into())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Decode one SealedSecret from a request body (JSON or YAML; exactly one document).
pub fn parse_body(body: &[u8]) -> Result<SealedSecretObject, ServiceError> {
    let text = std::str::from_utf8(body).map_err(|_| ServiceError::BadRequest("body is not UTF-8".into()))?;
    let mut docs = parse_documents(text).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    if docs.len() != 1 {
        return Err(ServiceError::BadRequest(format!("expected exactly one SealedSecret, got {} objects", docs.len())));
    }
    let doc = docs.remove(0);
    sealed_secret_from_value(doc.value).map_err(|e| ServiceError::BadRequest(e.to_string()))
}

/// Map a core error of opening to the service's answer, within a grant of `grant` operations.
fn open_error(e: gitseal_shared::Error, grant: Grant, limiter: &crate::budget::OpLimiter) -> ServiceError {
    // A failure that depends on plaintext answers exactly as a decryption failure does.
    match e.for_remote() {
        gitseal_shared::Error::Undecryptable(_) | gitseal_shared::Error::DecryptionFailed => {
            ServiceError::CannotDecrypt
        }
        gitseal_shared::Error::PrivateOpBudget { .. } if grant.limited_by_rate => {
            ServiceError::RateLimited(limiter.seconds_until(1.0))
        }
        e @ gitseal_shared::Error::PrivateOpBudget { .. } => ServiceError::TooMuchWork(e.to_string()),
        // A token that does not answer is no verdict on the value (and no bad request).
        gitseal_shared::Error::KeyUnavailable(_) => ServiceError::KeyUnavailable,
        other => ServiceError::BadRequest(other.to_string()),
    }
}

/// `ss` without `template.data`. verify and rotate never render templates: the templates are
/// not covered by the ciphertext, so whether they render would tell a caller something about
/// values they cannot decrypt (Bitnami #2019/#2049, decryption oracles).
fn without_templates(ss: &SealedSecretObject) -> SealedSecretObject {
    let mut ss = ss.clone();
    if let Some(t) = ss.spec.template.as_mut() {
        t.data = None;
    }
    ss
}

/// Check that every value opens within `budget`; returns the keys that opened them.
pub fn verify(
    shared: &Shared,
    ss: &SealedSecretObject,
    budget: &mut OpBudget,
) -> Result<Vec<KeyId>, gitseal_shared::Error> {
    let usable = shared.registry.usable();
    let keys: Vec<_> = usable.iter().map(|k| &k.decryption).collect();
    unseal_within(&without_templates(ss), &keys, budget).map(|u| u.key_ids.into_iter().collect())
}

/// Re-seal every value with the latest key, within `budget`. The top-level metadata decides the
/// scope (as it does for unsealing), and the template's scope annotations are made to agree with
/// it, so a forged template annotation cannot widen the scope through a re-seal (Bitnami #1885).
pub fn rotate(
    shared: &Shared,
    ss: &SealedSecretObject,
    budget: &mut OpBudget,
) -> Result<(SealedSecretObject, Vec<KeyId>), RotateError> {
    let latest = shared.registry.sealing().ok_or(RotateError::Service(ServiceError::NoKeys))?;
    let internal = |e: &dyn std::fmt::Display| RotateError::Service(ServiceError::Internal(e.to_string()));
    let recipient = latest.cert.recipient().map_err(|e| internal(&e))?;
    let recipients = RecipientSet::new(vec![recipient]).map_err(|e| internal(&e))?;
    let usable = shared.registry.usable();
    let keys: Vec<_> = usable.iter().map(|k| &k.decryption).collect();
    let mut ss = ss.clone();
    if let Some(blob) = ss.spec.data.take() {
        // Convert the deprecated single-blob form into items on the way.
        let mut legacy = without_templates(&ss);
        legacy.spec.data = Some(blob);
        let u = unseal_within(&legacy, &keys, budget).map_err(RotateError::Open)?;
        let target = gitseal_shared::seal::target_of(&ss).map_err(RotateError::Open)?;
        for (k, v) in &u.secret.data {
            let sealed = recipients.seal(&target, v.expose()).map_err(|e| internal(&e))?;
            ss.spec.encrypted_data.insert(k.clone(), gitseal_shared::value::encode_base64(&sealed));
        }
    }
    let resealed = reseal_within(&ss, &keys, &recipients, budget).map_err(RotateError::Open)?;
    ss.spec.encrypted_data = resealed.encrypted_data;
    let scope = Scope::from_annotations(ss.metadata.annotations.as_ref());
    if let Some(meta) = ss.spec.template.as_mut().and_then(|t| t.metadata.as_mut()) {
        let ann = meta.annotations.get_or_insert_with(Default::default);
        scope.apply_to(ann);
        if ann.is_empty() {
            meta.annotations = None;
        }
    }
    ss.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(KEY_ID_ANNOTATION.into(), resealed.key_id_annotation);
    let m = &mut ss.metadata;
    m.creation_timestamp = None;
    m.deletion_timestamp = None;
    m.generation = None;
    m.resource_version = None;
    m.uid = None;
    m.managed_fields = None;
    ss.status = None;
    Ok((ss, resealed.old_key_ids.into_iter().collect()))
}

/// Why a re-seal failed: opening (mapped with the request's grant) or the service itself.
#[derive(Debug)]
pub enum RotateError {
    Open(gitseal_shared::Error),
    Service(ServiceError),
}

/// Which operation a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Verify,
    Rotate,
}

/// What a successful call produced.
#[derive(Debug)]
pub enum Done {
    Verified(Vec<KeyId>),
    Rotated(Box<SealedSecretObject>, Vec<KeyId>),
}

/// Who made a call: its audit identity, the bucket it is counted against, and the endpoint.
#[derive(Debug, Clone)]
pub struct Call {
    pub endpoint: Endpoint,
    /// Audit action: Verify, Rotate, Reseal.
    pub action: &'static str,
    pub caller: Caller,
    pub client: ClientKey,
}

/// Audit and count a call refused or failed before or after its work; `ss` names the object when
/// it was parsed. Never records a body.
pub fn record(shared: &Shared, call: &Call, ss: Option<&SealedSecretObject>, result: Result<&Done, &ServiceError>) {
    let mut rec =
        AuditLog::record(call.action, if result.is_ok() { AuditOutcome::Success } else { AuditOutcome::Failure });
    rec.object = ss.map(object_of);
    rec.caller = Some(call.caller.clone());
    let label = match result {
        Ok(Done::Verified(ids)) => {
            rec.key_id = Some(KeyId::join(ids.iter().cloned()));
            "ok"
        }
        Ok(Done::Rotated(_, old)) => {
            rec.key_id = shared.registry.sealing().map(|k| k.id().to_string());
            rec.message = Some(format!("re-sealed from {}", KeyId::join(old.iter().cloned())));
            "ok"
        }
        Err(e) => {
            let a = e.answer();
            rec.reason = Some(a.label.into());
            a.label
        }
    };
    shared.metrics.api(call.endpoint, label);
    // A refusal that cost nothing, from a caller known only by address, is audited within a
    // per-address budget: anyone who reaches the port could otherwise grow the log at will.
    if let (Err(e), ClientKey::Addr(addr)) = (result, &call.client)
        && e.is_free_refusal()
        && !shared.limits.refusal_audits.allow(*addr, Instant::now())
    {
        return;
    }
    shared.audit.write(rec);
}

/// The one path of verify and re-seal on both APIs: request limit, parse (`parsed`, already
/// read and decoded by the caller's wire format), private-operation grant, the pool, audit and
/// metrics. Every outcome, refusals included, is audited with the caller and a reason.
pub async fn call(
    shared: &Arc<Shared>,
    call: &Call,
    parsed: Result<SealedSecretObject, ServiceError>,
    op: Op,
) -> Result<Done, ServiceError> {
    let result = run(shared, call, parsed, op).await;
    let (ss, result) = match result {
        Ok((ss, r)) => (Some(ss), r),
        Err(e) => (None, Err(e)),
    };
    record(shared, call, ss.as_ref(), result.as_ref());
    result
}

async fn run(
    shared: &Arc<Shared>,
    call: &Call,
    parsed: Result<SealedSecretObject, ServiceError>,
    op: Op,
) -> Result<(SealedSecretObject, Result<Done, ServiceError>), ServiceError> {
    if let Err(why) = shared.audit.ready_for_work() {
        return Err(ServiceError::AuditUnavailable(why));
    }
    let now = Instant::now();
    let by_addr = match &call.client {
        ClientKey::Addr(a) => Some(*a),
        ClientKey::User(_) => None,
    };
    if let Some(addr) = by_addr
        && !shared.limits.requests.allow(addr, now)
    {
        return Err(ServiceError::RateLimited(shared.limits.requests.retry_after_secs()));
    }
    let ss = parsed?;
    if shared.registry.usable().is_empty() {
        return Ok((ss, Err(ServiceError::NoKeys)));
    }
    let limiter = &shared.limits.ops;
    let grant = limiter.admit(&call.client, now).map_err(ServiceError::RateLimited)?;
    let (job_shared, job_ss) = (shared.clone(), ss.clone());
    let ran = shared
        .limits
        .pool
        .run(WorkClass::Api, move || {
            let mut budget = OpBudget::new(grant.ops);
            match op {
                Op::Verify => verify(&job_shared, &job_ss, &mut budget).map(Done::Verified).map_err(RotateError::Open),
                Op::Rotate => rotate(&job_shared, &job_ss, &mut budget).map(|(s, old)| Done::Rotated(Box::new(s), old)),
            }
        })
        .await;
    let (result, spent) = match ran {
        Ok(x) => x,
        Err(crate::budget::Busy) => {
            limiter.settle(&call.client, grant, 0, Instant::now());
            return Ok((ss, Err(ServiceError::Busy(1))));
        }
    };
    limiter.settle(&call.client, grant, spent, Instant::now());
    shared.metrics.private_ops(WorkClass::Api, result.is_ok(), spent);
    let result = result.map_err(|e| match e {
        RotateError::Open(e) => open_error(e, grant, limiter),
        RotateError::Service(e) => e,
    });
    Ok((ss, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_4xx_or_503_answer_and_rate_limits_say_when_to_come_back() {
        let cases = [
            (ServiceError::BadRequest("x".into()), 400, None),
            (ServiceError::WrongNamespace("x".into()), 400, None),
            (ServiceError::TooLarge(10), 413, None),
            (ServiceError::BodyTimeout(Duration::from_secs(1)), 408, None),
            (ServiceError::TooMuchWork("x".into()), 422, None),
            (ServiceError::RateLimited(3), 429, Some(3)),
            (ServiceError::Busy(1), 503, Some(1)),
            (ServiceError::CannotDecrypt, 409, None),
            (ServiceError::NoKeys, 503, Some(5)),
            (ServiceError::KeyUnavailable, 503, Some(5)),
        ];
        for (e, code, retry) in cases {
            let a = e.answer();
            assert_eq!((a.code.as_u16(), a.retry_after), (code, retry), "{e:?}");
        }
        assert_eq!(ServiceError::Internal("secret detail".into()).answer().message, "internal error");
    }
}
