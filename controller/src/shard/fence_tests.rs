//! The audit gap of a shard lost mid-reconcile, against a hand-driven API server: an apply that
//! has started always gets its audit record and status, and one that would start too close to
//! the shard's deadline is not made.

use std::sync::Arc;
use std::time::Duration;

use gitseal_shared::types::SealedSecretObject;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::json;
use tokio::time::Instant;

use super::{Shards, plan};
use crate::Shared;
use crate::testing::{Lines, shared_on};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const SECRET: &str = "/api/v1/namespaces/app/secrets/db";

struct Setup {
    shared: Arc<Shared>,
    shards: Arc<Shards>,
    shard: u16,
    ss: Arc<SealedSecretObject>,
    api: Handle,
    audit: Lines,
}

/// One replica with `--shards 2` (lease 3 s: margin 0.5 s) and a SealedSecret `app/db` to unseal.
fn setup() -> Setup {
    let (service, api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let audit = Lines::default();
    let args = ["--leader-elect", "--shards=2", "--lease-duration=3s"];
    let shared = shared_on(client, &args, Box::new(audit.clone()));
    let ss = crate::testing::sealed_db(&shared);
    let shards = shared.standing.shards.clone().expect("sharded");
    assert_eq!(shards.margin, Duration::from_millis(500));
    let shard = plan::shard_of("app", "db", shards.count);
    Setup { shared, shards, shard, ss: Arc::new(ss), api, audit }
}

/// The next request, checked to be `method path`, and the means to answer it.
async fn expect(api: &mut Handle, method: Method, path: &str) -> tower_test::mock::SendResponse<Response<Body>> {
    let (req, reply) = tokio::time::timeout(Duration::from_secs(5), api.next_request())
        .await
        .unwrap_or_else(|_| panic!("no {method} {path}"))
        .expect("client alive");
    assert_eq!((req.method(), req.uri().path()), (&method, path));
    reply
}

fn answer(reply: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: serde_json::Value) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response");
    reply.send_response(response);
}

fn not_found() -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404})
}

fn applied() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "app"}})
}

fn status_body() -> serde_json::Value {
    json!({"apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
           "metadata": {"name": "db", "namespace": "app"}, "spec": {"encryptedData": {}}})
}

fn unseals(audit: &Lines) -> usize {
    audit.text().lines().filter(|l| l.contains(r#""action":"Unseal""#) && l.contains(r#""outcome":"success""#)).count()
}

#[tokio::test]
async fn a_secret_applied_while_the_shard_is_lost_still_gets_its_audit_record_and_status() {
    let Setup { shared, shards, shard, ss, mut api, audit } = setup();
    shards.hold(shard, Instant::now() + Duration::from_secs(10));
    let reconcile = tokio::spawn(super::reconcile_for(ss, shared.clone()));
    answer(expect(&mut api, Method::GET, SECRET).await, 404, not_found());
    let apply = expect(&mut api, Method::PATCH, SECRET).await;
    // The apply is on the wire when the shard is lost: the reconcile is abandoned at once ...
    shards.drop_now(shard, "lost");
    let abandoned = tokio::time::timeout(Duration::from_secs(2), reconcile).await.expect("abandoned").expect("task");
    assert_eq!(abandoned.expect("no error"), Some(Duration::from_secs(1)));
    assert_eq!(unseals(&audit), 0, "not yet applied");
    // ... but the apply goes on to its audit record, Event and status.
    answer(apply, 201, applied());
    answer(expect(&mut api, Method::POST, "/apis/events.k8s.io/v1/namespaces/app/events").await, 201, json!({}));
    let status = expect(&mut api, Method::PATCH, "/apis/gitseal.dev/v1/namespaces/app/sealedsecrets/db/status").await;
    assert_eq!(unseals(&audit), 1, "{}", audit.text());
    answer(status, 200, status_body());
}

#[tokio::test]
async fn a_shard_is_not_released_while_an_apply_of_it_runs() {
    let Setup { shared, shards, shard, ss, mut api, audit } = setup();
    shards.hold(shard, Instant::now() + Duration::from_secs(10));
    let reconcile = tokio::spawn(super::reconcile_for(ss, shared.clone()));
    answer(expect(&mut api, Method::GET, SECRET).await, 404, not_found());
    let apply = expect(&mut api, Method::PATCH, SECRET).await;
    // Giving the shard up: the grace runs out and the reconcile is abandoned, but the drain
    // (after which the Lease is released) waits for the apply it started.
    let drain = {
        let shards = shards.clone();
        tokio::spawn(async move { shards.drain(shard, Duration::from_millis(100)).await })
    };
    assert_eq!(reconcile.await.expect("task").expect("no error"), Some(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!drain.is_finished(), "released under a running apply");
    answer(apply, 201, applied());
    answer(expect(&mut api, Method::POST, "/apis/events.k8s.io/v1/namespaces/app/events").await, 201, json!({}));
    answer(
        expect(&mut api, Method::PATCH, "/apis/gitseal.dev/v1/namespaces/app/sealedsecrets/db/status").await,
        200,
        status_body(),
    );
    tokio::time::timeout(Duration::from_secs(2), drain).await.expect("released after the apply").expect("task");
    assert_eq!(unseals(&audit), 1);
    assert!(shards.owned().is_empty());
}

#[tokio::test]
async fn no_secret_is_applied_with_less_than_the_margin_left_on_the_shard() {
    let Setup { shared, shards, shard, ss, mut api, audit } = setup();
    // Held, but only half a margin before this replica must stop.
    shards.hold(shard, Instant::now() + Duration::from_millis(250));
    let reconcile = tokio::spawn(super::reconcile_for(ss, shared.clone()));
    answer(expect(&mut api, Method::GET, SECRET).await, 404, not_found());
    let result = tokio::time::timeout(Duration::from_secs(2), reconcile).await.expect("done").expect("task");
    assert_eq!(result.expect("no error"), Some(Duration::from_secs(1)));
    let next = tokio::time::timeout(Duration::from_millis(300), api.next_request()).await;
    assert!(next.is_err(), "a request after the fence refused: {:?}", next.map(|r| r.map(|(q, _)| q.uri().clone())));
    assert_eq!(unseals(&audit), 0);
    let fenced = shards.metrics.fenced.get_or_create(&super::ShardLabels { shard: super::label(shard) }).get();
    assert_eq!(fenced, 1);
    assert!(shared.metrics.encode().contains("gitseal_shard_fenced_total"));
}
