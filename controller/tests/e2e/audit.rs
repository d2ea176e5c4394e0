//! The audit trail a security team can trust (issue #10): signed records anchored by a
//! checkpoint, one history across SIGKILL restarts and failovers, tampering reported with the
//! sequence number where trust ends, and fail-closed on a failing sink.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitseal_shared::audit::{Checkpoint, PublicKey, Summary, parse_line, verify_log};
use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, TestNamespace, http_get, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use crate::fixture::{Gitseal, TIMEOUT, event_reasons, seal, secret_with};

const FAST_CHECKPOINTS: &str = "--audit-checkpoint-interval=300ms";

async fn checkpoint(ns: &TestNamespace) -> anyhow::Result<Option<Checkpoint>> {
    let cm = ns.api::<ConfigMap>().get_opt("gitseal-audit-checkpoint").await?;
    Ok(match cm.and_then(|c| c.data).and_then(|mut d| d.remove("checkpoint")) {
        Some(text) => Some(serde_json::from_str(&text)?),
        None => None,
    })
}

async fn audit_key(g: &Gitseal) -> anyhow::Result<PublicKey> {
    let (code, body) = http_get(&format!("{}/v1/audit-key", g.api)).await?;
    anyhow::ensure!(code == 200, "GET /v1/audit-key: {code}");
    PublicKey::from_pem(&String::from_utf8(body)?).map_err(|e| anyhow::anyhow!(e))
}

fn last_hash(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|l| parse_line(l).ok()).map(|p| p.hash)
}

/// Wait until the checkpoint names the last record of `log` (the leader caught up).
async fn checkpoint_at_head(ns: &TestNamespace, log: &Path) -> anyhow::Result<Checkpoint> {
    Ok(wait_for("the checkpoint to reach the head of the audit log", TIMEOUT, || async {
        let cp = checkpoint(ns).await?;
        Ok::<_, anyhow::Error>(cp.filter(|c| Some(&c.hash) == last_hash(log).as_ref()))
    })
    .await?)
}

fn verify(logs: &[&Path], key: &PublicKey, cp: &Checkpoint) -> Result<Summary, gitseal_shared::audit::ChainBreak> {
    let texts: Vec<(String, String)> =
        logs.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap_or_default())).collect();
    let sources: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    verify_log(&sources, Some(key), Some(cp))
}

async fn apply(ns: &TestNamespace, cert: &gitseal_keys::Certificate, name: &str, value: &str) -> anyhow::Result<()> {
    gitseal_tests::apply_json(&ns.client(), seal(cert, ns.name(), name, &[("k", value)], ApiGroup::Gitseal)).await?;
    Ok(())
}

async fn leader_of(replicas: [&Gitseal; 2]) -> anyhow::Result<usize> {
    Ok(wait_for("one replica to lead", TIMEOUT, || async {
        for (i, r) in replicas.iter().enumerate() {
            if r.metric("gitseal_leader").await? == 1.0 {
                return Ok::<_, anyhow::Error>(Some(i));
            }
        }
        Ok(None)
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_log_across_a_sigkill_restart_and_a_failover_verifies_as_one_history() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let args = ["--leader-elect", "--lease-duration=3s", FAST_CHECKPOINTS];
        let mut a = Gitseal::start_named(plane, ns.name(), "replica-a", &args).await?;
        a.ready().await?;
        checkpoint_at_head(&ns, &a.audit_log).await?;
        let mut b = Gitseal::start_named(plane, ns.name(), "replica-b", &args).await?;
        b.ready().await?;
        let key = audit_key(&a).await?;
        assert_eq!(audit_key(&b).await?, key, "every replica signs with the one audit key");
        let cert = a.cert().await?;
        apply(&ns, &cert, "one", "1").await?;
        secret_with(&ns, "one", "k", "1").await?;
        assert_eq!(leader_of([&a, &b]).await?, 0);

        // SIGKILL the leader: the standby takes over and links the checkpointed head.
        a.process.signal(gitseal_tests::Signal::KILL)?;
        let (a_log, b_log) = (a.audit_log.clone(), b.audit_log.clone());
        drop(a);
        apply(&ns, &cert, "two", "2").await?;
        secret_with(&ns, "two", "k", "2").await?;
        // The SIGKILLed replica restarts on the same file.
        let mut a = Gitseal::start_named(plane, ns.name(), "replica-a", &args).await?;
        a.ready().await?;
        checkpoint_at_head(&ns, &b_log).await?;

        // And the new leader dies too: the restarted replica leads again.
        b.process.signal(gitseal_tests::Signal::KILL)?;
        drop(b);
        apply(&ns, &cert, "three", "3").await?;
        secret_with(&ns, "three", "k", "3").await?;
        let cp = checkpoint_at_head(&ns, &a_log).await?;
        assert_eq!(cp.replica, "replica-a");

        let s = verify(&[&a_log, &b_log], &key, &cp).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(s.signatures_checked && s.checkpoint_seq == Some(cp.seq), "{s:?}");
        assert!(s.notes.is_empty(), "every resumed segment links a record of the two logs: {:?}", s.notes);
        let text = std::fs::read_to_string(&a_log)?;
        assert!(text.contains("\"action\":\"ChainResumed\""), "{text}");
        assert_eq!(text.matches("\"action\":\"ChainStarted\"").count(), 1, "one history, started once");
        assert!(!std::fs::read_to_string(&b_log)?.contains("ChainStarted"));
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// A copy of `lines` with `edit` applied, written next to `log`.
fn tampered(log: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let mut lines: Vec<String> = std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect();
    edit(&mut lines);
    let p = log.with_extension(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap_or_default();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_a_real_log_is_reported_with_the_seq_where_trust_ends() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[FAST_CHECKPOINTS]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        for i in 0..4 {
            apply(&ns, &cert, &format!("s{i}"), "v").await?;
            secret_with(&ns, &format!("s{i}"), "k", "v").await?;
        }
        let cp = checkpoint_at_head(&ns, &g.audit_log).await?;
        let key = audit_key(&g).await?;
        let log = g.audit_log.clone();
        let n = verify(&[&log], &key, &cp).map_err(|e| anyhow::anyhow!("{e}"))?.records;
        assert!(n >= 6 && cp.seq == n as u64, "{n} records, checkpoint at {}", cp.seq);
        let seq_of = |l: &str| parse_line(l).map(|p| p.record.seq).unwrap_or(0);

        // Truncation at the tail.
        let cut = tampered(&log, "cut", |l| l.truncate(l.len() - 2));
        let e = verify(&[&cut], &key, &cp).unwrap_err();
        assert!(e.problem.contains("truncated"), "{e}");
        assert_eq!(e.trusted_up_to, Some(cp.seq - 2), "{e}");

        // Removal in the middle.
        let mut removed_seq = 0;
        let mid = tampered(&log, "mid", |l| removed_seq = seq_of(&l.remove(3)));
        let e = verify(&[&mid], &key, &cp).unwrap_err();
        assert_eq!((e.seq, e.trusted_up_to), (Some(removed_seq + 1), Some(removed_seq - 1)), "{e}");

        // An added JSON field.
        let added = tampered(&log, "added", |l| l[2] = l[2].replacen('{', "{\"approvedBy\":\"ciso\",", 1));
        let e = verify(&[&added], &key, &cp).unwrap_err();
        assert_eq!((e.seq, e.trusted_up_to), (Some(3), Some(2)), "{e}");

        // A forged signature on an otherwise intact record.
        let forged = tampered(&log, "forged", |l| {
            let at = l[4].rfind("\"sig\":\"").unwrap_or(0) + 7;
            let c = if l[4].as_bytes()[at] == b'A' { "B" } else { "A" };
            l[4].replace_range(at..=at, c);
        });
        let e = verify(&[&forged], &key, &cp).unwrap_err();
        assert_eq!((e.seq, e.trusted_up_to), (Some(5), Some(4)), "{e}");
        assert!(e.problem.contains("signature"), "{e}");

        // Rewritten from seq 3 on and re-hashed with another key: the signatures catch the first
        // forged record; without the key, the checkpoint still catches the rewrite.
        let forger = gitseal_shared::audit::SigningKey::generate().map_err(|e| anyhow::anyhow!(e))?.0;
        let rehashed = tampered(&log, "rehashed", |l| {
            let mut chain = gitseal_shared::audit::Chain::resume(&l[1], &key).expect("line 2 is signed");
            for line in l.iter_mut().skip(2) {
                let mut r = parse_line(line).expect("record").record;
                r.outcome = gitseal_shared::audit::Outcome::Success;
                r.message = Some("nothing to see".into());
                *line = chain.seal(r, &forger);
            }
        });
        let e = verify(&[&rehashed], &key, &cp).unwrap_err();
        assert_eq!((e.seq, e.trusted_up_to), (Some(3), Some(2)), "{e}");
        let text = std::fs::read_to_string(&rehashed)?;
        let e = verify_log(&[("rehashed", &text)], None, Some(&cp)).unwrap_err();
        assert!(e.problem.contains("rewritten"), "{e}");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// Replace the audit log's path by a directory (the file moves to `.1`): nothing can be written.
fn break_sink(log: &Path) -> anyhow::Result<PathBuf> {
    let moved = log.with_extension("log.1");
    std::fs::rename(log, &moved)?;
    std::fs::create_dir(log)?;
    Ok(moved)
}

/// The status code of a bare HTTP/1.0 POST to the controller's plain API.
async fn post_status(api: &str, path: &str, body: &[u8]) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = api.strip_prefix("http://").unwrap_or(api);
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    Ok(text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

async fn readyz(g: &Gitseal) -> anyhow::Result<u16> {
    Ok(http_get(&format!("{}/readyz", g.api)).await?.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_audit_required_a_failing_sink_stops_unsealing_and_readiness_until_it_recovers() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--audit-required", FAST_CHECKPOINTS]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        apply(&ns, &cert, "before", "1").await?;
        secret_with(&ns, "before", "k", "1").await?;

        let moved = break_sink(&g.audit_log)?;
        wait_for("/readyz to fail", TIMEOUT, || async {
            Ok::<_, anyhow::Error>((readyz(&g).await? == 503).then_some(()))
        })
        .await?;
        apply(&ns, &cert, "during", "2").await?;
        apply(&ns, &cert, "before", "changed").await?;
        let code = post_status(&g.api, "/v1/verify", b"{}").await?;
        assert_eq!(code, 503, "the verify API stops too");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let secrets = ns.api::<Secret>();
        assert!(secrets.get_opt("during").await?.is_none(), "no Secret is produced while the sink fails");
        let before = secrets.get("before").await?;
        assert_eq!(before.data.unwrap()["k"].0, b"1", "no Secret is changed while the sink fails");
        assert!(event_reasons(&ns, "gitseal").await?.iter().any(|r| r == "AuditSinkFailed"));

        std::fs::remove_dir(&g.audit_log)?;
        g.ready().await?;
        secret_with(&ns, "during", "k", "2").await?;
        secret_with(&ns, "before", "k", "changed").await?;
        wait_for("the AuditSinkRecovered event", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(
                event_reasons(&ns, "gitseal").await?.iter().any(|r| r == "AuditSinkRecovered").then_some(()),
            )
        })
        .await?;
        // The two files are one unbroken history: nothing was skipped while the sink failed.
        let cp = checkpoint_at_head(&ns, &g.audit_log).await?;
        let s = verify(&[&moved, &g.audit_log], &audit_key(&g).await?, &cp).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(s.notes.is_empty() && s.first_seq == Some(1) && s.last_seq == Some(cp.seq), "{s:?}");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_audit_required_a_failing_sink_is_counted_and_unsealing_goes_on() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        assert_eq!(g.metric("gitseal_audit_write_errors_total").await?, 0.0);
        break_sink(&g.audit_log)?;
        apply(&ns, &cert, "one", "1").await?;
        secret_with(&ns, "one", "k", "1").await?;
        wait_for("the write error to be counted", TIMEOUT, || async {
            Ok::<_, anyhow::Error>((g.metric("gitseal_audit_write_errors_total").await? >= 1.0).then_some(()))
        })
        .await?;
        assert_eq!(readyz(&g).await?, 200, "without --audit-required the controller stays ready");
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

/// Wait until Secret gitseal-audit-key holds `data` again.
async fn audit_key_secret_is(
    ns: &TestNamespace,
    data: &Option<std::collections::BTreeMap<String, k8s_openapi::ByteString>>,
) -> anyhow::Result<()> {
    let secrets: kube::Api<Secret> = ns.api();
    Ok(wait_for("the audit key Secret written back", TIMEOUT, || async {
        let now = secrets.get_opt("gitseal-audit-key").await?;
        Ok::<_, kube::Error>(now.filter(|s| &s.data == data).map(drop))
    })
    .await?)
}

async fn audited_with(g: &Gitseal, needles: &[&str]) -> anyhow::Result<String> {
    Ok(wait_for(&format!("an audit record with {needles:?}"), TIMEOUT, || async {
        Ok::<_, anyhow::Error>(g.audit_lines().into_iter().find(|l| needles.iter().all(|n| l.contains(n))))
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_key_secret_deleted_or_replaced_is_written_back_and_another_key_is_never_adopted()
-> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &[FAST_CHECKPOINTS]).await?;
        g.ready().await?;
        let key = audit_key(&g).await?;
        let secrets: kube::Api<Secret> = ns.api();
        let original = secrets.get("gitseal-audit-key").await?.data;

        // Deleted: the key in memory goes back under the same name.
        secrets.delete("gitseal-audit-key", &Default::default()).await?;
        audited_with(&g, &["\"action\":\"KeySecretDeleted\"", "gitseal-audit-key"]).await?;
        audit_key_secret_is(&ns, &original).await?;

        // Replaced by another Ed25519 key: not adopted, written back.
        let (_, theirs) = gitseal_shared::audit::SigningKey::generate().map_err(|e| anyhow::anyhow!(e))?;
        let mut swapped = secrets.get("gitseal-audit-key").await?;
        swapped.data = Some([("ed25519.pk8".to_string(), k8s_openapi::ByteString(theirs.to_vec()))].into());
        secrets.replace("gitseal-audit-key", &Default::default(), &swapped).await?;
        let line = audited_with(&g, &["\"action\":\"KeySecretReplaced\"", "gitseal-audit-key"]).await?;
        assert!(line.contains("\"reason\":\"OtherKey\""), "{line}");
        audit_key_secret_is(&ns, &original).await?;
        assert_eq!(audit_key(&g).await?, key, "the published key did not change");
        assert_eq!(g.metric("gitseal_key_secrets_deleted_total").await?, 1.0);
        assert_eq!(g.metric("gitseal_key_secrets_replaced_total").await?, 1.0);
        let reasons = event_reasons(&ns, "gitseal-audit-key").await?;
        assert!(
            reasons.iter().any(|r| r == "KeySecretDeleted") && reasons.iter().any(|r| r == "KeySecretReplaced"),
            "{reasons:?}"
        );
        // The whole history still verifies under the original key.
        let cp = checkpoint_at_head(&ns, &g.audit_log).await?;
        verify(&[&g.audit_log], &key, &cp).map_err(|e| anyhow::anyhow!("{e}"))?;

        // Replaced while no controller runs: a new start refuses to sign under it.
        drop(g);
        secrets
            .replace("gitseal-audit-key", &Default::default(), &{
                let mut s = secrets.get("gitseal-audit-key").await?;
                s.data = swapped.data.clone();
                s
            })
            .await?;
        let mut again = Gitseal::start_named(plane, ns.name(), "again", &[]).await?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = again.process.try_status()? {
                break status;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "a controller started under a replaced audit key");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(!status.success());
        let log = again.process.log_tail(20);
        assert!(log.contains("did not sign the last checkpoint"), "{log}");
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_cut_from_the_log_is_caught_because_the_default_checkpoint_follows_the_head_within_a_second()
-> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        // Default checkpoint settings: no FAST_CHECKPOINTS here.
        let mut g = Gitseal::start(plane, ns.name(), &[]).await?;
        g.ready().await?;
        let cert = g.cert().await?;
        let key = audit_key(&g).await?;
        for i in 0..3 {
            apply(&ns, &cert, &format!("t{i}"), "v").await?;
            secret_with(&ns, &format!("t{i}"), "k", "v").await?;
        }
        // A handful of records (far fewer than --audit-checkpoint-records) are anchored within
        // about a second, not only after the next 100 records or 10 s.
        let log = g.audit_log.clone();
        let head = last_hash(&log).expect("records were written");
        let cp = wait_for("the checkpoint to anchor the newest record", Duration::from_secs(4), || async {
            Ok::<_, anyhow::Error>(checkpoint(&ns).await?.filter(|c| c.hash == head))
        })
        .await?;
        verify(&[&log], &key, &cp).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Someone who can edit the log cuts its newest records: the anchored head is missing.
        let cut = tampered(&log, "tail", |l| l.truncate(l.len() - 3));
        let e = verify(&[&cut], &key, &cp).unwrap_err();
        assert!(e.problem.contains("truncated") && e.problem.contains("records are missing"), "{e}");
        assert_eq!(e.trusted_up_to, Some(cp.seq - 3), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
