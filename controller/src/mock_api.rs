//! The middle tier of the controller's tests (STYLE §14): reconcile against a scripted API server.
//!
//! A [`Step`] list is one conversation: the requests reconcile must send, in order, each with
//! the answer the API server gives. [`MockApi::serve`] plays it on a `tower-test` mock behind
//! `kube::Client` (as kube-rs/controller-rs does in `src/fixtures.rs`) and hands back every
//! request it saw; a request the script does not expect, or one past its end, fails the test
//! with the conversation so far. Edge cases that a real API server produces only by races
//! (a conflict, a throttle, an object gone mid-reconcile) are one script each, in milliseconds.
//!
//! The pure decision is tested in `decide`; end-to-end behaviour against a real kube-apiserver
//! in `tests/`.

use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::BodyExt as _;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How long a finished script waits for a request it does not expect.
const TRAILING: Duration = Duration::from_millis(100);

/// One request reconcile must send next, and the answer.
#[derive(Debug)]
pub struct Step {
    method: Method,
    path: String,
    status: u16,
    /// `None`: answer with the request's own body (what create and apply return).
    body: Option<Value>,
}

impl Step {
    pub fn new(method: Method, path: &str, status: u16, body: Value) -> Step {
        Step { method, path: path.to_owned(), status, body: Some(body) }
    }

    /// Answer `status` with the object the request sent (create, server-side apply).
    pub fn echo(method: Method, path: &str, status: u16) -> Step {
        Step { method, path: path.to_owned(), status, body: None }
    }

    /// Answer with a Kubernetes `Status` failure of `code` (kube turns it into `Error::Api`).
    pub fn fail(method: Method, path: &str, code: u16, reason: &str) -> Step {
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "reason": reason, "message": format!("scripted {code}"), "code": code});
        Step::new(method, path, code, body)
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Seen {
    /// `METHOD path`, for comparing whole conversations.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The server side of a mocked client.
#[derive(Debug)]
pub struct MockApi(Handle);

/// A `kube::Client` whose requests go to the returned [`MockApi`].
pub fn client() -> (kube::Client, MockApi) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), MockApi(handle))
}

impl MockApi {
    /// Serve `script` in order on a task; its result is every request seen.
    pub fn serve(mut self, script: Vec<Step>) -> tokio::task::JoinHandle<Vec<Seen>> {
        tokio::spawn(async move {
            let mut seen: Vec<Seen> = Vec::new();
            for step in script {
                let Some((req, reply)) = self.0.next_request().await else {
                    panic!("client gone before {} {}; saw {:#?}", step.method, step.path, lines(&seen));
                };
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                seen.push(Seen {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body: body.clone(),
                });
                assert!(
                    parts.method == step.method && parts.uri.path() == step.path,
                    "expected {} {}, saw {:#?}",
                    step.method,
                    step.path,
                    lines(&seen)
                );
                let answer = step.body.unwrap_or(body);
                let response = Response::builder()
                    .status(step.status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()));
                reply.send_response(response.unwrap_or_else(|e| panic!("scripted response: {e}")));
            }
            if let Ok(Some((req, _))) = tokio::time::timeout(TRAILING, self.0.next_request()).await {
                panic!("unexpected {} {} after the script; saw {:#?}", req.method(), req.uri().path(), lines(&seen));
            }
            seen
        })
    }
}

fn lines(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(Seen::line).collect()
}

mod reconcile_tests;
