//! Faults gitseal-controller must survive, on the real control plane (issue #15): kube-apiserver
//! SIGKILLed and restarted, etcd SIGKILLed and restarted, the controller SIGKILLed between writing
//! a Secret and writing its status, SIGKILLed after applies whose answers it never received, its
//! connections cut (and a watch that comes back "too old" after etcd compaction), its key
//! Secrets deleted while it runs.
//!
//! Each scenario runs one controller in its own namespace, its kubeconfig pointing at a
//! [`FaultProxy`] in front of kube-apiserver, with `GITSEAL_FAULTS_N` SealedSecrets (default 500,
//! one value each, 2048-bit keys as the other end-to-end tests). The objects are created while
//! the proxy holds the controller's traffic, so the fault always lands mid-run: once a fifth of
//! the Secrets exist. After recovery every scenario checks the same things:
//! - the controller process never exited on its own;
//! - every Secret exists with the right data, every status is Synced=True for its generation;
//! - no private-key operation was spent twice on an unchanged object: the
//!   `gitseal_private_key_operations_total` of the process equals the decryptions it owed, plus at
//!   most one per failed Secret apply (a decryption whose result never reached the API);
//! - the audit log verifies (hash chain and signatures), and every Secret made is mentioned in it
//!   (a successful `Unseal`/`DriftRepair`, or the `ApplyStarted` written before each apply).
//!
//! The scenarios stop and start shared peers, so they run one at a time (`SERIAL`). Each prints
//! the time from recovery to convergence (`--nocapture` shows it).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../e2e/fixture.rs"]
mod fixture;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use gitseal_keys::Certificate;
use gitseal_shared::audit::{PublicKey, verify_log};
use gitseal_shared::types::ApiGroup;
use gitseal_tests::fault_proxy::FaultProxy;
use gitseal_tests::gitseal::{GitsealController, Launch};
use gitseal_tests::{ControlPlane, PlanePeer, StopHow, TestNamespace, http_get, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};

use fixture::{Gitseal, ss_api};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Time allowed from recovery to convergence.
const CONVERGE: Duration = Duration::from_secs(120);

fn count() -> usize {
    std::env::var("GITSEAL_FAULTS_N").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

fn name(i: usize) -> String {
    format!("s{i:05}")
}

/// The index of an object name `sNNNNN` (other Secrets — keys, the digest key — are not objects).
fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix('s').filter(|d| d.len() == 5 && d.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
}

fn value(i: usize, version: u32) -> String {
    format!("value-{i}-{version}")
}

/// One controller behind a proxy, `n` SealedSecrets and what each Secret must hold.
struct Run {
    plane: &'static ControlPlane,
    ns: TestNamespace,
    proxy: FaultProxy,
    g: Gitseal,
    cert: Certificate,
    n: usize,
    /// Expected value of `key0` per object index.
    want: BTreeMap<usize, String>,
    /// LIST requests for SealedSecrets this test made (to tell the controller's apart).
    own_lists: u64,
}

impl Run {
    async fn start(plane: &'static ControlPlane, ns: TestNamespace) -> anyhow::Result<Run> {
        let proxy = FaultProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, plane.port())))?;
        let binary = Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
        let args = ["--key-size=2048", "--key-renew-period=0", "--log-level=info"];
        let url = proxy.url();
        let how =
            Launch { watch: Some(ns.name()), server: Some(&url), flags: &args, ..Launch::new(ns.name(), "gitseal") };
        let c = GitsealController::launch(plane, binary, &how).await?;
        let mut g = Gitseal { process: c.process, api: c.api, metrics: c.metrics, audit_log: c.audit_log };
        g.ready().await?;
        let cert = g.cert().await?;
        Ok(Run { plane, ns, proxy, g, cert, n: count(), want: BTreeMap::new(), own_lists: 0 })
    }

    fn sealed(&self, i: usize, version: u32) -> Value {
        let mut v =
            fixture::seal(&self.cert, self.ns.name(), &name(i), &[("key0", &value(i, version))], ApiGroup::Gitseal);
        v["metadata"]["labels"] = json!({"version": version.to_string()});
        v
    }

    /// Apply version `version` of objects `range`, 16 at a time.
    async fn apply(&mut self, range: std::ops::Range<usize>, version: u32) -> anyhow::Result<()> {
        let client = self.ns.client();
        let docs: Vec<Value> = range.clone().map(|i| self.sealed(i, version)).collect();
        futures::stream::iter(docs)
            .map(|d| {
                let client = client.clone();
                async move { gitseal_tests::apply_json(&client, d).await }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        for i in range {
            self.want.insert(i, value(i, version));
        }
        Ok(())
    }

    /// Create every object while the controller's traffic is held, then let it go and wait
    /// until a fifth of the Secrets exist: the fault then hits a run in progress.
    async fn populate_and_start_unsealing(&mut self) -> anyhow::Result<()> {
        self.proxy.pause();
        let created = self.apply(0..self.n, 1).await;
        self.proxy.resume();
        created?;
        let (api, fifth) = (self.ns.api::<Secret>(), self.n / 5);
        wait_for("a fifth of the Secrets", CONVERGE, || {
            let api = api.clone();
            async move {
                let n = api.list_metadata(&ListParams::default()).await?.items.len();
                Ok::<_, kube::Error>((n >= fifth).then_some(()))
            }
        })
        .await?;
        Ok(())
    }

    /// Objects whose Secret is right and whose status is Synced=True for their generation.
    async fn converged(&mut self) -> anyhow::Result<(usize, usize)> {
        let secrets = self.ns.api::<Secret>().list(&ListParams::default()).await?;
        let mut right_data = 0;
        for s in &secrets.items {
            let Some(i) = s.metadata.name.as_deref().and_then(index_of) else {
                continue;
            };
            let got = s.data.as_ref().and_then(|d| d.get("key0")).map(|b| b.0.as_slice());
            if self.want.get(&i).is_some_and(|w| got == Some(w.as_bytes())) {
                right_data += 1;
            }
        }
        self.own_lists += 1;
        let sss = ss_api(&self.ns.client(), self.ns.name(), ApiGroup::Gitseal).list(&ListParams::default()).await?;
        let synced = sss
            .items
            .iter()
            .filter(|o| {
                let v = serde_json::to_value(o).unwrap_or_default();
                v.pointer("/status/conditions/0/type").and_then(Value::as_str) == Some("Synced")
                    && v.pointer("/status/conditions/0/status").and_then(Value::as_str) == Some("True")
                    && v.pointer("/status/observedGeneration") == v.pointer("/metadata/generation")
            })
            .count();
        Ok((right_data, synced))
    }

    /// Wait until every object converged; returns the time it took from now.
    async fn converge(&mut self, scenario: &str) -> anyhow::Result<Duration> {
        let begin = Instant::now();
        let mut last = (0, 0);
        while begin.elapsed() < CONVERGE {
            match self.converged().await {
                Ok(c) if c == (self.n, self.n) => {
                    let took = begin.elapsed();
                    eprintln!("[faults] {scenario}: {} SealedSecrets converged {took:.1?} after recovery", self.n);
                    return Ok(took);
                }
                Ok(c) => last = c,
                Err(e) => eprintln!("[faults] {scenario}: listing failed (retrying): {e}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.g.process.print_log_tail();
        anyhow::bail!(
            "{scenario}: not converged within {CONVERGE:?}: {} of {} Secrets right, {} statuses Synced",
            last.0,
            self.n,
            last.1
        )
    }

    async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        self.g.metric(series).await
    }

    /// Private-key operations the current process spent, against what it owed (`owed`
    /// decryptions, one key so one operation each): never less, never more than one extra per
    /// failed Secret apply. Then the process, the audit chain.
    async fn verify(&mut self, scenario: &str, owed: usize) -> anyhow::Result<()> {
        self.verify_between(scenario, owed, owed).await
    }

    /// [`Self::verify`] when the process may have owed between `owed` and `most` decryptions
    /// (a version it still had cached, decrypted once, before the newer one arrived).
    async fn verify_between(&mut self, scenario: &str, owed: usize, most: usize) -> anyhow::Result<()> {
        self.g.process.check_running().map_err(|e| anyhow::anyhow!("{scenario}: the controller exited: {e}"))?;
        let ok = self.metric("gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}").await?;
        let failed =
            self.metric("gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"failed\"}").await?;
        let apply_errors = self.metric("gitseal_reconcile_errors_total{error=\"apply\"}").await?;
        eprintln!(
            "[faults] {scenario}: private ops {ok} (owed {owed}..={most}), failed {failed}, apply errors {apply_errors}, \
             other reconcile errors: get {} status {}",
            self.metric("gitseal_reconcile_errors_total{error=\"get_secret\"}").await?,
            self.metric("gitseal_reconcile_errors_total{error=\"status\"}").await?,
        );
        assert_eq!(failed, 0.0, "{scenario}: no decryption failed");
        assert!(ok >= owed as f64, "{scenario}: {ok} private operations for {owed} owed decryptions");
        assert!(
            ok <= most as f64 + apply_errors,
            "{scenario}: {ok} private operations for at most {most} owed decryptions and {apply_errors} failed applies: \
             an unchanged object was decrypted twice"
        );
        let (code, body) = http_get(&format!("{}/v1/audit-key", self.g.api)).await?;
        anyhow::ensure!(code == 200, "GET /v1/audit-key: {code}");
        let key = PublicKey::from_pem(&String::from_utf8(body)?).map_err(|e| anyhow::anyhow!(e))?;
        let text = std::fs::read_to_string(&self.g.audit_log)?;
        let summary =
            verify_log(&[("audit", &text)], Some(&key), None).map_err(|e| anyhow::anyhow!("{scenario}: {e}"))?;
        let unseals = text.lines().filter(|l| l.contains("\"action\":\"Unseal\"")).count();
        eprintln!("[faults] {scenario}: audit chain verifies: {} records, {unseals} unseals", summary.records);
        // Every Secret made is in the trail, even one whose process died right after applying it:
        // a successful Unseal or DriftRepair, or at least the ApplyStarted written before it.
        let mentioned = self.audited(&["Unseal", "DriftRepair", "ApplyStarted"])?;
        let unmentioned: Vec<String> =
            self.secret_names().await?.into_iter().filter(|n| !mentioned.contains(n)).collect();
        anyhow::ensure!(unmentioned.is_empty(), "{scenario}: Secrets the audit trail never mentions: {unmentioned:?}");
        Ok(())
    }

    /// SIGKILL the controller and drop what the proxy held for it: none of it may reach the
    /// apiserver.
    async fn kill(&mut self) {
        self.g.process.kill();
        self.proxy.cut(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Start the killed controller again on a healthy network; the run must converge with
    /// `owed` decryptions.
    async fn restart_and_verify(&mut self, scenario: &str, owed: usize) -> anyhow::Result<()> {
        self.proxy.restore();
        self.g.process.restart()?;
        self.g.ready().await?;
        self.converge(scenario).await?;
        self.verify(scenario, owed).await
    }

    /// Names of the objects the audit log has a successful record of one of `actions` for.
    fn audited(&self, actions: &[&str]) -> anyhow::Result<std::collections::HashSet<String>> {
        let text = std::fs::read_to_string(&self.g.audit_log)?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["outcome"] == "success" && actions.iter().any(|a| r["action"] == *a))
            .filter_map(|r| r["object"]["name"].as_str().map(str::to_string))
            .collect())
    }

    /// The scenario's Secrets that exist, as admin sees them now.
    async fn secret_names(&self) -> anyhow::Result<Vec<String>> {
        let secrets = self.ns.api::<Secret>().list_metadata(&ListParams::default()).await?;
        Ok(secrets.items.into_iter().filter_map(|s| s.metadata.name).filter(|n| index_of(n).is_some()).collect())
    }

    /// Objects whose Secret exists but whose status was never written, and objects without a
    /// Secret, as admin sees them now.
    async fn secrets_without_status(&mut self) -> anyhow::Result<(usize, usize)> {
        let secrets: Vec<String> = self
            .ns
            .api::<Secret>()
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .filter(|n| index_of(n).is_some())
            .collect();
        self.own_lists += 1;
        let sss = ss_api(&self.ns.client(), self.ns.name(), ApiGroup::Gitseal).list(&ListParams::default()).await?;
        let with_status: Vec<String> = sss
            .items
            .iter()
            .filter(|o| o.data.get("status").is_some_and(|s| s.get("conditions").is_some()))
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        let between = secrets.iter().filter(|s| !with_status.contains(s)).count();
        Ok((between, self.n - secrets.len()))
    }

    /// LIST requests for SealedSecrets in namespaces that kube-apiserver has served since it
    /// started, from its own metrics.
    async fn apiserver_sealedsecret_lists(&self) -> anyhow::Result<u64> {
        let req = http::Request::get("/metrics").body(Vec::new())?;
        let text = self.plane.client()?.request_text(req).await?;
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with("apiserver_request_total{")
                    && l.contains("resource=\"sealedsecrets\"")
                    && l.contains("verb=\"LIST\"")
                    && l.contains("scope=\"namespace\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }
}

async fn scenario<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce(&'static ControlPlane, TestNamespace) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let _one_at_a_time = SERIAL.lock().await;
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| f(plane, ns)).await??;
    Ok(())
}

/// A control-plane peer SIGKILLed while 500 objects unseal, restarted 2 s later in place.
async fn peer_killed_mid_run(peer: PlanePeer, name: &'static str) -> anyhow::Result<()> {
    scenario(move |plane, ns| async move {
        let mut r = Run::start(plane, ns).await?;
        r.populate_and_start_unsealing().await?;
        plane.stop_peer(peer, StopHow::Kill)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let restart = plane.start_peer(peer).await?;
        eprintln!("[faults] {name} serves again {restart:.1?} after its restart");
        let label = format!("{name} SIGKILL");
        r.converge(&label).await?;
        let n = r.n;
        r.verify(&label, n).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apiserver_sigkill_and_restart_mid_run() -> anyhow::Result<()> {
    peer_killed_mid_run(PlanePeer::KubeApiserver, "kube-apiserver").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_sigkill_and_restart_mid_run() -> anyhow::Result<()> {
    peer_killed_mid_run(PlanePeer::Etcd, "etcd").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_sigkill_between_secret_and_status_then_restart() -> anyhow::Result<()> {
    scenario(|plane, ns| async move {
        let mut r = Run::start(plane, ns).await?;
        r.populate_and_start_unsealing().await?;
        // Freeze the controller's traffic and look, as admin, for objects whose Secret is written
        // and whose status is not: the controller is between the two writes for them.
        let mut attempt = 0;
        loop {
            attempt += 1;
            r.proxy.pause();
            // Requests already past the proxy finish first.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (between, _) = r.secrets_without_status().await?;
            if between > 0 || attempt >= 30 {
                break;
            }
            r.proxy.resume();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        r.kill().await;
        // What the restarted process finds: nothing can write for the dead one any more.
        let (between, without_secret) = r.secrets_without_status().await?;
        assert!(between > 0, "never caught the controller between a Secret and its status");
        eprintln!(
            "[faults] controller SIGKILL: {between} Secrets written without their status, {without_secret} not written yet"
        );
        r.restart_and_verify("controller SIGKILL between Secret and status", without_secret).await
    })
    .await
}

/// The apiserver applies Secrets whose answers never reach the controller, which then dies: the
/// audit trail still mentions each of them (the `ApplyStarted` written before every apply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_sigkill_after_applies_it_never_heard_back_from() -> anyhow::Result<()> {
    scenario(|plane, ns| async move {
        let mut r = Run::start(plane, ns).await?;
        r.populate_and_start_unsealing().await?;
        // Hold the answers until the apiserver has a Secret whose Unseal record the controller
        // could not write yet (it waits for the apply's answer).
        let mut attempt = 0;
        let unheard = loop {
            attempt += 1;
            r.proxy.hold_answers();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let unsealed = r.audited(&["Unseal"])?;
            let unheard = r.secret_names().await?.into_iter().filter(|n| !unsealed.contains(n)).count();
            if unheard > 0 || attempt >= 30 {
                break unheard;
            }
            r.proxy.resume();
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        r.kill().await;
        let (_, without_secret) = r.secrets_without_status().await?;
        assert!(attempt < 30, "never caught the apiserver applying a Secret while its answer was held");
        eprintln!(
            "[faults] answers held, controller SIGKILL after {attempt} tries: {unheard} Secrets without an Unseal record, {without_secret} not written yet"
        );
        r.restart_and_verify("controller SIGKILL with answers held", without_secret).await
    })
    .await
}

fn cut_for() -> Duration {
    Duration::from_secs(std::env::var("GITSEAL_FAULTS_CUT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_then_a_watch_too_old_after_compaction_forces_a_relist() -> anyhow::Result<()> {
    scenario(|plane, ns| async move {
        let mut r = Run::start(plane, ns).await?;
        r.populate_and_start_unsealing().await?;
        let cut = cut_for();
        let begin = Instant::now();
        r.proxy.cut(cut);
        // While the controller is away: a tenth of the objects change, etcd forgets the history
        // its watches would resume from, and kube-apiserver restarts (its watch cache then starts
        // after the compacted revision, as after any restart): the watches come back 410 Gone.
        let changed = r.n / 10;
        // Requests already past the proxy finish first; then see which of the objects about to
        // change were unsealed already (those owe a second decryption, the others only one).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let unsealed_before: usize =
            r.ns.api::<Secret>()
                .list_metadata(&ListParams::default())
                .await?
                .items
                .iter()
                .filter_map(|s| s.metadata.name.as_deref().and_then(index_of))
                .filter(|i| *i < changed)
                .count();
        r.apply(0..changed, 2).await?;
        let revision = plane.compact_etcd().await?;
        plane.restart_peer(PlanePeer::KubeApiserver, StopHow::Kill).await?;
        let lists_before = r.apiserver_sealedsecret_lists().await?;
        tokio::time::sleep(cut.saturating_sub(begin.elapsed())).await;
        r.proxy.restore();
        eprintln!("[faults] connections cut for {:.1?}; etcd compacted at revision {revision}", begin.elapsed());
        r.converge("connections cut + compaction").await?;
        let relists = r.apiserver_sealedsecret_lists().await? - lists_before;
        let own = r.own_lists;
        eprintln!(
            "[faults] connections cut: {relists} SealedSecret LISTs since the restart, {own} of them this test's"
        );
        assert!(relists > own, "the controller re-listed SealedSecrets after its watch came back too old");
        // Each version of each object is owed one decryption at most; a changed object that was
        // not unsealed before the cut may be unsealed at its cached old version first.
        r.verify_between("connections cut + compaction", r.n + unsealed_before, r.n + changed).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_secrets_deleted_while_running_are_restored_from_memory_and_reported() -> anyhow::Result<()> {
    scenario(|plane, ns| async move {
        let mut r = Run::start(plane, ns).await?;
        let secrets = r.ns.api::<Secret>();
        let keys = ListParams::default().labels("gitseal.dev/key");
        let before: BTreeMap<String, Option<Vec<u8>>> = secrets
            .list(&keys)
            .await?
            .items
            .into_iter()
            .map(|s| {
                (
                    s.metadata.name.clone().unwrap_or_default(),
                    s.data.and_then(|d| d.get("tls.crt").map(|b| b.0.clone())),
                )
            })
            .collect();
        assert_eq!(before.len(), 2, "one sealing key and the digest key: {:?}", before.keys());
        r.populate_and_start_unsealing().await?;
        secrets.delete_collection(&DeleteParams::default(), &keys).await?;
        let restored = wait_for("the key Secrets to be written back", fixture::TIMEOUT, || {
            let (secrets, keys, before) = (secrets.clone(), keys.clone(), before.clone());
            async move {
                let now: BTreeMap<String, Option<Vec<u8>>> = secrets
                    .list(&keys)
                    .await?
                    .items
                    .into_iter()
                    .map(|s| {
                        (
                            s.metadata.name.clone().unwrap_or_default(),
                            s.data.and_then(|d| d.get("tls.crt").map(|b| b.0.clone())),
                        )
                    })
                    .collect();
                Ok::<_, kube::Error>((now == before).then_some(now))
            }
        })
        .await?;
        assert_eq!(restored, before, "the same Secrets, the same certificate: no new key");
        r.converge("key Secrets deleted").await?;
        assert_eq!(r.g.cert().await?.key_id(), r.cert.key_id(), "still sealing with the same key");
        assert_eq!(r.metric("gitseal_key_secrets_deleted_total").await?, 2.0);
        assert_eq!(r.metric("gitseal_keys{state=\"active\"}").await?, 1.0);
        let audit = r.g.audit_lines();
        assert_eq!(audit.iter().filter(|l| l.contains("\"action\":\"KeySecretDeleted\"")).count(), 2);
        assert!(audit.iter().any(|l| l.contains("\"action\":\"KeyRestored\"")));
        let generated = audit.iter().filter(|l| l.contains("\"action\":\"KeyGenerated\"")).count();
        assert_eq!(generated, 1, "only the very first key was ever generated");
        let events = wait_for("a KeySecretDeleted Event", fixture::TIMEOUT, || {
            let client = r.ns.client();
            let ns = r.ns.name().to_string();
            async move {
                let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, &ns);
                let reasons: Vec<String> =
                    api.list(&ListParams::default()).await?.items.into_iter().filter_map(|e| e.reason).collect();
                Ok::<_, kube::Error>(reasons.iter().any(|r| r == "KeySecretDeleted").then_some(reasons))
            }
        })
        .await?;
        assert!(events.iter().any(|r| r == "KeySecretRestored"), "{events:?}");
        // A later change still unseals with the restored key.
        r.apply(0..1, 3).await?;
        r.converge("key Secrets deleted (after a change)").await?;
        let n = r.n;
        r.verify("key Secrets deleted", n + 1).await
    })
    .await
}
