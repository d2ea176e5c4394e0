//! Reconcile I/O edge cases, one scripted conversation each.

use std::sync::Arc;
use std::time::Duration;

use gitseal_shared::types::SealedSecretObject;
use http::Method;
use kube::runtime::controller::Action;
use serde_json::json;

use super::{Seen, Step, client};
use crate::Shared;
use crate::backoff::Backoff;
use crate::reconcile::{Error, error_policy, reconcile};
use crate::testing::{Lines, shared_on};

const SECRET: &str = "/api/v1/namespaces/app/secrets/db";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/app/events";
const STATUS: &str = "/apis/gitseal.dev/v1/namespaces/app/sealedsecrets/db/status";

/// A conversation's result: what reconcile returned and every request the server saw.
struct Run {
    result: Result<Action, Error>,
    seen: Vec<Seen>,
    shared: Arc<Shared>,
    ss: Arc<SealedSecretObject>,
    audit: Lines,
    /// What `error_policy` answered for a failed reconcile (a first failure).
    retry: Option<Duration>,
}

impl Run {
    fn lines(&self) -> Vec<String> {
        self.seen.iter().map(Seen::line).collect()
    }

    /// The value of the metric sample line starting with `sample` (`name{labels}`), 0 if absent.
    fn metric(&self, sample: &str) -> f64 {
        let text = self.shared.metrics.encode();
        text.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
    }
}

/// Reconcile one SealedSecret `app/db` (sealed to the fixture's key) against `script`.
async fn run(script: Vec<Step>, deleting: bool) -> Run {
    run_with(script, deleting, |_| {}).await
}

/// [`run`], after `setup` prepared the shared state (its registry).
async fn run_with(script: Vec<Step>, deleting: bool, setup: impl FnOnce(&Shared)) -> Run {
    let (client, api) = client();
    let audit = Lines::default();
    let shared = shared_on(client, &[], Box::new(audit.clone()));
    setup(&shared);
    let mut ss = crate::testing::sealed_db(&shared);
    if deleting {
        ss.metadata.deletion_timestamp = Some(serde_json::from_value(json!("2026-11-30T08:00:00Z")).expect("time"));
    }
    let ss = Arc::new(ss);
    let server = api.serve(script);
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(ss.clone(), shared.clone()))
        .await
        .expect("reconcile finishes");
    let seen = server.await.expect("the API server saw the scripted conversation");
    let retry = result.as_ref().err().map(|e| error_policy(ss.clone(), e, shared.clone(), &Backoff::default()));
    Run { result, seen, shared, ss, audit, retry }
}

/// The SealedSecret as the status subresource returns it.
fn status_ok() -> Step {
    // The body only has to parse as a SealedSecret; reconcile does not read it.
    let doc = json!({"apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
                     "metadata": {"name": "db", "namespace": "app"}, "spec": {"encryptedData": {}}});
    Step::new(Method::PATCH, STATUS, 200, doc)
}

/// A first unseal: no Secret yet, apply it, announce it, then `status` answers the status write.
fn unsealing(status: Step) -> Vec<Step> {
    vec![
        Step::fail(Method::GET, SECRET, 404, "NotFound"),
        Step::echo(Method::PATCH, SECRET, 201),
        Step::echo(Method::POST, EVENTS, 201),
        status,
    ]
}

#[tokio::test]
async fn a_new_sealed_secret_is_read_applied_announced_and_reported_in_that_order() {
    let run = run(unsealing(status_ok()), false).await;
    assert_eq!(
        run.lines(),
        [format!("GET {SECRET}"), format!("PATCH {SECRET}"), format!("POST {EVENTS}"), format!("PATCH {STATUS}")]
    );
    assert!(matches!(run.result, Ok(ref a) if *a == Action::await_change()), "{:?}", run.result.as_ref().err());
    // Server-side apply under gitseal's field manager, owned by the SealedSecret.
    let apply = &run.seen[1];
    assert!(
        apply.query.contains("fieldManager=gitseal-controller") && apply.query.contains("force=true"),
        "{}",
        apply.query
    );
    assert_eq!(apply.body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(apply.body["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(apply.body["data"]["password"].is_string());
    assert_eq!(run.seen[2].body["reason"], "Unsealed");
    let status = &run.seen[3];
    assert!(status.query.contains("fieldManager=gitseal-controller"), "{}", status.query);
    assert_eq!(status.body["status"]["conditions"][0]["status"], "True");
    assert_eq!(run.metric(r#"gitseal_reconciles_total{outcome="unsealed"}"#), 1.0);
    let audit = run.audit.text();
    assert!(audit.contains(r#""action":"Unseal""#) && audit.contains(r#""outcome":"success""#), "{audit}");
    assert!(!audit.contains("hunter2") && !run.shared.metrics.encode().contains("hunter2"));
}

#[tokio::test]
async fn a_secret_that_someone_else_owns_is_not_touched_and_the_refusal_is_reported() {
    let theirs = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "app", "uid": "s-1",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                          "uid": "d-1", "controller": true}]},
        "data": {"password": "b3RoZXI="}});
    let run = run(
        vec![Step::new(Method::GET, SECRET, 200, theirs), Step::echo(Method::POST, EVENTS, 201), status_ok()],
        false,
    )
    .await;
    assert_eq!(run.lines(), [format!("GET {SECRET}"), format!("POST {EVENTS}"), format!("PATCH {STATUS}")]);
    assert_eq!(run.seen[1].body["reason"], "SecretNotOwned");
    assert_eq!(run.seen[1].body["type"], "Warning");
    assert_eq!(run.seen[2].body["status"]["conditions"][0]["status"], "False");
    assert!(matches!(run.result, Ok(ref a) if *a == Action::requeue(Duration::from_secs(600))));
    assert_eq!(run.metric(r#"gitseal_unseal_errors_total{reason="unmanaged"}"#), 1.0);
    assert_eq!(run.metric(r#"gitseal_reconciles_total{outcome="unsealed"}"#), 0.0);
}

#[tokio::test]
async fn an_apply_conflict_fails_the_reconcile_without_counting_an_unseal_or_writing_status() {
    let run = run(
        vec![Step::fail(Method::GET, SECRET, 404, "NotFound"), Step::fail(Method::PATCH, SECRET, 409, "Conflict")],
        false,
    )
    .await;
    assert_eq!(run.lines(), [format!("GET {SECRET}"), format!("PATCH {SECRET}")]);
    assert!(matches!(run.result, Err(Error::Apply(..))), "{:?}", run.result);
    assert_eq!(run.metric(r#"gitseal_reconcile_errors_total{error="apply"}"#), 1.0);
    assert_eq!(run.metric(r#"gitseal_reconciles_total{outcome="unsealed"}"#), 0.0);
    let audit = run.audit.text();
    assert!(audit.contains(r#""reason":"ApplyFailed""#) && audit.contains(r#""outcome":"failure""#), "{audit}");
}

#[tokio::test]
async fn a_failed_status_write_after_the_secret_was_applied_counts_the_unseal_and_retries() {
    let run = run(unsealing(Step::fail(Method::PATCH, STATUS, 500, "InternalError")), false).await;
    assert_eq!(run.seen.len(), 4);
    assert!(matches!(run.result, Err(Error::Status(..))), "{:?}", run.result);
    assert_eq!(run.metric(r#"gitseal_reconciles_total{outcome="unsealed"}"#), 1.0);
    assert_eq!(run.metric(r#"gitseal_reconcile_errors_total{error="status"}"#), 1.0);
}

#[tokio::test]
async fn a_sealed_secret_deleted_during_reconcile_ends_quietly_at_its_status() {
    let run = run(unsealing(Step::fail(Method::PATCH, STATUS, 404, "NotFound")), false).await;
    assert!(matches!(run.result, Ok(ref a) if *a == Action::await_change()), "{:?}", run.result.as_ref().err());
    assert_eq!(run.metric(r#"gitseal_reconcile_errors_total{error="status"}"#), 0.0);
}

#[tokio::test]
async fn a_sealed_secret_being_deleted_sends_no_request() {
    let run = run(vec![], true).await;
    assert!(run.seen.is_empty());
    assert!(matches!(run.result, Ok(ref a) if *a == Action::await_change()));
    assert!(run.ss.metadata.deletion_timestamp.is_some());
}

#[tokio::test]
async fn a_throttled_or_failing_first_read_stops_before_any_write() {
    for (code, reason) in [(429, "TooManyRequests"), (500, "InternalError"), (403, "Forbidden")] {
        let run = run(vec![Step::fail(Method::GET, SECRET, code, reason)], false).await;
        assert_eq!(run.lines(), [format!("GET {SECRET}")], "{code}");
        match &run.result {
            Err(Error::GetSecret(_, kube::Error::Api(ae))) => assert_eq!(ae.code, code),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(run.metric(r#"gitseal_reconcile_errors_total{error="get_secret"}"#), 1.0, "{code}");
        assert_eq!(run.metric(r#"gitseal_reconciles_total{outcome="unsealed"}"#), 0.0, "{code}");
        assert!(!run.audit.text().contains("Unseal"), "{code}: no unseal was attempted");
    }
}

#[tokio::test]
async fn a_token_gone_reports_key_unavailable_writes_no_secret_and_retries_within_a_second_or_so() {
    // The fixture key, its private operations now behind a token that does not answer.
    let behind_a_dead_token = |shared: &Shared| {
        let key = shared.registry.usable().first().cloned().expect("fixture key");
        let (_switch, decryption) = crate::testing::Switchable::wrap(&key.decryption, true);
        shared.registry.remove(&key.secret_name);
        shared.registry.upsert(crate::registry::LoadedKey {
            secret_name: key.secret_name.clone(),
            cert: gitseal_keys::Certificate::from_pem(key.cert.pem()).expect("certificate"),
            decryption,
            state: key.state,
            bitnami: key.bitnami,
            pending_backup: false,
            created: None,
            token_object: None,
        });
    };
    let script =
        vec![Step::fail(Method::GET, SECRET, 404, "NotFound"), Step::echo(Method::POST, EVENTS, 201), status_ok()];
    let run = run_with(script, false, behind_a_dead_token).await;
    assert_eq!(run.lines(), [format!("GET {SECRET}"), format!("POST {EVENTS}"), format!("PATCH {STATUS}")]);
    assert_eq!((&run.seen[1].body["reason"], &run.seen[1].body["type"]), (&json!("KeyUnavailable"), &json!("Warning")));
    let condition = &run.seen[2].body["status"]["conditions"][0];
    assert_eq!((&condition["status"], &condition["reason"]), (&json!("False"), &json!("KeyUnavailable")));
    assert!(matches!(run.result, Err(Error::KeyUnavailable(_))), "{:?}", run.result);
    // Retried with the per-object backoff (first failure: at most a second), not in 10 minutes.
    assert!(run.retry.is_some_and(|d| d <= Duration::from_secs(1)), "{:?}", run.retry);
    assert_eq!(run.metric(r#"gitseal_unseal_errors_total{reason="key_unavailable"}"#), 1.0);
    assert_eq!(run.metric(r#"gitseal_reconcile_errors_total{error="key_unavailable"}"#), 1.0);
    for not_this in ["decrypt_failed", "invalid"] {
        assert_eq!(run.metric(&format!(r#"gitseal_unseal_errors_total{{reason="{not_this}"}}"#)), 0.0, "{not_this}");
    }
    let audit = run.audit.text();
    assert!(audit.contains(r#""reason":"KeyUnavailable""#), "{audit}");
}
