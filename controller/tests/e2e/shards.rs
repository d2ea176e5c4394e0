//! Shards across replicas (`--shards`): three replicas split six shards; one is SIGKILLed mid-run
//! and the other two take its shards. The audit logs prove every change was unsealed exactly
//! once, and the Leases show how long the dead replica's shards went without a holder.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, wait_for, with_temp_ns};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::Value;

use crate::fixture::{Gitseal, seal, secret_with};

const SHARDS: u16 = 6;
const OBJECTS: usize = 18;
const LEASE: Duration = Duration::from_secs(3);

/// How many shards a replica says it holds (`gitseal_shard_owned`).
async fn owned(g: &Gitseal) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for i in 0..SHARDS {
        sum += g.metric(&format!("gitseal_shard_owned{{shard=\"{i}\"}}")).await?;
    }
    Ok(sum)
}

/// Successful unseals per (object, generation) in the replicas' audit logs.
fn unseals(replicas: &[&Gitseal]) -> BTreeMap<(String, i64), usize> {
    let mut counts = BTreeMap::new();
    for g in replicas {
        for line in g.audit_lines() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if v["action"] == "Unseal" && v["outcome"] == "success" {
                let name = v["object"]["name"].as_str().unwrap_or_default().to_string();
                let generation = v["object"]["generation"].as_i64().unwrap_or_default();
                *counts.entry((name, generation)).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Holder and renew time of every shard Lease.
async fn holders(leases: &Api<Lease>) -> anyhow::Result<Vec<(Option<String>, Option<jiff::Timestamp>)>> {
    let mut out = Vec::new();
    for i in 0..SHARDS {
        let spec = leases.get_opt(&format!("gitseal-controller-shard-{i}")).await?.and_then(|l| l.spec);
        out.push(spec.map_or((None, None), |s| (s.holder_identity, s.renew_time.map(|t| t.0))));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_shards_and_the_survivors_take_a_killed_ones_without_unsealing_twice()
-> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let args = ["--leader-elect", "--lease-duration=3s", "--shards=6"];
        let mut a = Gitseal::start_named(plane, ns.name(), "shard-a", &args).await?;
        a.ready().await?;
        let mut b = Gitseal::start_named(plane, ns.name(), "shard-b", &args).await?;
        let mut c = Gitseal::start_named(plane, ns.name(), "shard-c", &args).await?;
        b.ready().await?;
        c.ready().await?;
        let cert = a.cert().await?;
        wait_for("two shards per replica", Duration::from_secs(20), || async {
            let n = [owned(&a).await?, owned(&b).await?, owned(&c).await?];
            Ok::<_, anyhow::Error>((n == [2.0, 2.0, 2.0]).then_some(()))
        })
        .await?;

        let client = ns.client();
        let names: Vec<String> = (0..OBJECTS).map(|i| format!("s{i:02}")).collect();
        for n in &names {
            gitseal_tests::apply_json(&client, seal(&cert, ns.name(), n, &[("k", "1")], ApiGroup::Gitseal)).await?;
        }
        for n in &names {
            secret_with(&ns, n, "k", "1").await?;
        }
        wait_for("an Unseal record per object", Duration::from_secs(10), || async {
            Ok::<_, anyhow::Error>((unseals(&[&a, &b, &c]).len() == OBJECTS).then_some(()))
        })
        .await?;
        // Every replica did part of the work.
        for g in [&a, &b, &c] {
            let started: f64 = {
                let mut s = 0.0;
                for i in 0..SHARDS {
                    s += g.metric(&format!("gitseal_shard_reconciles_total{{shard=\"{i}\"}}")).await?;
                }
                s
            };
            assert!(started > 0.0, "a replica reconciled nothing");
        }

        // The dashboard and the chart's alerts use only shard metrics a sharded replica exports.
        let (_, body) = gitseal_tests::http_get(&a.metrics).await?;
        let exported = String::from_utf8(body)?;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for file in ["deploy/dashboards/gitseal.json", "deploy/helm/gitseal/templates/prometheusrule.yaml"] {
            let text = std::fs::read_to_string(root.join(file))?;
            let used: std::collections::BTreeSet<&str> = text
                .match_indices("gitseal_shard_")
                .map(|(i, _)| {
                    let rest = &text[i..];
                    &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
                })
                .collect();
            assert!(!used.is_empty(), "{file} shows no shard metric");
            for m in used {
                assert!(exported.lines().any(|l| l.starts_with(m)), "{file} uses {m}, which is not exported");
            }
        }

        // Kill b (not the leader: a started first) without letting it release its Leases.
        assert_eq!(b.metric("gitseal_leader").await?, 0.0);
        let leases: Api<Lease> = Api::namespaced(client.clone(), ns.name());
        let before = holders(&leases).await?;
        let victim: Vec<usize> = (0..before.len()).filter(|i| before[*i].0.as_deref() == Some("shard-b")).collect();
        assert_eq!(victim.len(), 2, "{before:?}");
        b.process.signal(gitseal_tests::Signal::KILL)?;
        let killed = Instant::now();
        // Changes made meanwhile, to every object.
        for n in &names {
            gitseal_tests::apply_json(&client, seal(&cert, ns.name(), n, &[("k", "2")], ApiGroup::Gitseal)).await?;
        }
        // Watch the dead replica's Leases: its last renewal, and when a survivor took each.
        let mut last_renew: BTreeMap<usize, jiff::Timestamp> = BTreeMap::new();
        let mut taken: BTreeMap<usize, (Duration, jiff::Timestamp)> = BTreeMap::new();
        while taken.len() < victim.len() {
            assert!(killed.elapsed() < Duration::from_secs(20), "the survivors never took shards {victim:?}");
            for (i, (holder, renew)) in holders(&leases).await?.into_iter().enumerate() {
                if !victim.contains(&i) || taken.contains_key(&i) {
                    continue;
                }
                match holder.as_deref() {
                    Some("shard-b") => {
                        if let Some(t) = renew {
                            last_renew.insert(i, t);
                        }
                    }
                    Some(_) => {
                        let spec = leases.get(&format!("gitseal-controller-shard-{i}")).await?.spec.unwrap_or_default();
                        let acquired = spec.acquire_time.map_or_else(jiff::Timestamp::now, |t| t.0);
                        taken.insert(i, (killed.elapsed(), acquired));
                    }
                    None => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for n in &names {
            secret_with(&ns, n, "k", "2").await?;
        }

        // No shard went without a holder for longer than one lease duration: from the moment its
        // Lease ran out (last renewal + duration) to the survivor's acquireTime.
        let lease = jiff::SignedDuration::try_from(LEASE)?;
        for (i, (after_kill, acquired)) in &taken {
            let renewed = last_renew.get(i).copied().or(before[*i].1).expect("a renew time");
            let unowned = acquired.duration_since(renewed.checked_add(lease)?);
            println!("shard {i}: taken {after_kill:?} after the kill, {unowned:?} after its Lease ran out");
            assert!(unowned <= lease, "shard {i} unowned for {unowned:?}");
            assert!(*after_kill <= LEASE * 2, "shard {i} taken {after_kill:?} after the kill");
        }
        wait_for("the survivors to hold every shard", Duration::from_secs(10), || async {
            let n = [owned(&a).await?, owned(&c).await?];
            Ok::<_, anyhow::Error>((n == [3.0, 3.0]).then_some(()))
        })
        .await?;

        // Every change unsealed exactly once across all three audit logs (the dead one's too).
        wait_for("an Unseal record per change", Duration::from_secs(10), || async {
            Ok::<_, anyhow::Error>((unseals(&[&a, &b, &c]).len() == 2 * OBJECTS).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let counts = unseals(&[&a, &b, &c]);
        assert_eq!(counts.len(), 2 * OBJECTS, "{counts:?}");
        assert!(counts.values().all(|n| *n == 1), "unsealed more than once: {counts:?}");
        let mut fenced = 0.0;
        for g in [&a, &c] {
            for i in 0..SHARDS {
                fenced += g.metric(&format!("gitseal_shard_fenced_total{{shard=\"{i}\"}}")).await?;
            }
        }
        println!("Secret applies fenced on the survivors: {fenced}");
        a.process.check_running()?;
        c.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

/// Successful unseal records per object name in one audit log.
fn unseals_by_name(g: &Gitseal) -> BTreeMap<String, usize> {
    unseals(&[g]).into_iter().fold(BTreeMap::new(), |mut m, ((name, _), n)| {
        *m.entry(name).or_insert(0) += n;
        m
    })
}

/// Names of the Secrets gitseal made in the namespace.
async fn made(secrets: &Api<k8s_openapi::api::core::v1::Secret>) -> anyhow::Result<Vec<String>> {
    let lp = kube::api::ListParams::default().labels("gitseal.dev/managed=true");
    Ok(secrets.list_metadata(&lp).await?.items.into_iter().filter_map(|s| s.metadata.name).collect())
}

/// A replica whose traffic to the apiserver stalls mid-reconcile (a paused proxy) for two lease
/// durations: its shard Leases run out and another holder (the test) takes them. Every Secret
/// that replica applied — also those whose apply was on the wire when the shard was lost — has
/// its one audit record; while it does not hold the shards it applies nothing, and once it takes
/// them back every object is unsealed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_its_shards_mid_reconcile_leaves_no_secret_without_an_audit_record() -> anyhow::Result<()>
{
    use gitseal_tests::fault_proxy::FaultProxy;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use kube::api::PostParams;
    use std::net::{Ipv4Addr, SocketAddr};

    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_gitseal-controller"));
        // The leader (keys, digest key) is a replica without shards that watches another
        // namespace: it never writes here, and it keeps the sharded replica from leading (a
        // leader that stalls for two lease durations exits).
        let base =
            ["--key-size=2048", "--log-level=info,gitseal_controller=debug", "--leader-elect", "--lease-duration=3s"];
        let l = gitseal_tests::gitseal::GitsealController::start(
            plane,
            binary,
            ns.name(),
            Some("gitseal-nowhere"),
            "leader",
            &base,
        )
        .await?;
        let mut leader = Gitseal { process: l.process, api: l.api, metrics: l.metrics, audit_log: l.audit_log };
        leader.ready().await?;
        let cert = leader.cert().await?;
        let proxy = FaultProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, plane.port())))?;
        let args: Vec<&str> = base.iter().copied().chain(["--shards=2"]).collect();
        let url = proxy.url();
        let how = gitseal_tests::gitseal::Launch {
            watch: Some(ns.name()),
            server: Some(&url),
            flags: &args,
            ..gitseal_tests::gitseal::Launch::new(ns.name(), "shard-a")
        };
        let r = gitseal_tests::gitseal::GitsealController::launch(plane, binary, &how).await?;
        let mut a = Gitseal { process: r.process, api: r.api, metrics: r.metrics, audit_log: r.audit_log };
        a.ready().await?;
        let shards = |g: &Gitseal| {
            let url = g.metrics.clone();
            async move {
                let (_, body) = gitseal_tests::http_get(&url).await?;
                let text = String::from_utf8(body)?;
                let sum = |prefix: &str| -> f64 {
                    text.lines()
                        .filter(|l| l.starts_with(prefix))
                        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                        .sum()
                };
                anyhow::Ok((sum("gitseal_shard_owned{"), sum("gitseal_shard_fenced_total{")))
            }
        };
        wait_for("the replica to hold both shards", Duration::from_secs(20), || async {
            Ok::<_, anyhow::Error>((shards(&a).await?.0 == 2.0).then_some(()))
        })
        .await?;

        // Slow its traffic, and stall it the moment the first Secret is written: the answer to
        // that apply is then still in the proxy, so the reconcile is lost mid-apply.
        use futures::StreamExt as _;
        use kube::runtime::watcher;
        let client = ns.client();
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = ns.api();
        let mut written = watcher(secrets.clone(), watcher::Config::default()).boxed();
        while !matches!(written.next().await, Some(Ok(watcher::Event::InitDone))) {}
        proxy.slow(Duration::from_millis(150));
        let early: Vec<String> = (0..24).map(|i| format!("early-{i:02}")).collect();
        let docs: Vec<Value> =
            early.iter().map(|n| seal(&cert, ns.name(), n, &[("k", "1")], ApiGroup::Gitseal)).collect();
        let creating = {
            let client = client.clone();
            tokio::spawn(async move {
                for doc in docs {
                    gitseal_tests::apply_json(&client, doc).await?;
                }
                anyhow::Ok(())
            })
        };
        tokio::time::timeout(Duration::from_secs(20), async {
            while !matches!(written.next().await, Some(Ok(watcher::Event::Apply(_)))) {}
        })
        .await?;
        proxy.pause();
        creating.await??;
        let stalled = Instant::now();
        let at_pause = made(&secrets).await?.len();
        assert!(at_pause < early.len(), "every object was done before the stall: nothing was in flight");

        // Its Leases run out; another holder (the test) takes them for an hour.
        let leases: Api<Lease> = Api::namespaced(client.clone(), ns.name());
        let mut taken = 0;
        while taken < 2 {
            assert!(stalled.elapsed() < Duration::from_secs(15), "the shard Leases never ran out");
            taken = 0;
            for i in 0..2 {
                let name = format!("gitseal-controller-shard-{i}");
                let mut lease = leases.get(&name).await?;
                let spec = lease.spec.get_or_insert_default();
                if spec.holder_identity.as_deref() == Some("intruder") {
                    taken += 1;
                    continue;
                }
                if gitseal_controller::leader::expired(spec, jiff::Timestamp::now()) {
                    let now = MicroTime(jiff::Timestamp::now());
                    spec.holder_identity = Some("intruder".into());
                    spec.lease_duration_seconds = Some(3600);
                    spec.acquire_time = Some(now.clone());
                    spec.renew_time = Some(now);
                    // A conflict means the replica wrote it meanwhile: look again.
                    let _ = leases.replace(&name, &PostParams::default(), &lease).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // New objects while it does not hold the shards; then its traffic flows again.
        let late: Vec<String> = (0..8).map(|i| format!("late-{i:02}")).collect();
        for n in &late {
            gitseal_tests::apply_json(&client, seal(&cert, ns.name(), n, &[("k", "1")], ApiGroup::Gitseal)).await?;
        }
        proxy.restore();
        wait_for("the replica to see it holds no shard", Duration::from_secs(15), || async {
            Ok::<_, anyhow::Error>((shards(&a).await?.0 == 0.0).then_some(()))
        })
        .await?;
        // Time for the held requests to land, the watch to deliver the late objects, retries.
        tokio::time::sleep(LEASE).await;
        let out = made(&secrets).await?;
        let counts = unseals_by_name(&a);
        println!(
            "{at_pause} Secrets at the stall, {} after it; fenced applies {}; {counts:?}",
            out.len(),
            shards(&a).await?.1
        );
        assert!(late.iter().all(|n| !out.contains(n)), "applied without holding the shard: {out:?}");
        for n in &early {
            let want = usize::from(out.contains(n));
            assert_eq!(counts.get(n).copied().unwrap_or(0), want, "{n}: Secret present = {want}, audit {counts:?}");
        }

        // The other holder lets go: the replica takes the shards back and finishes, once each.
        for i in 0..2 {
            leases.delete(&format!("gitseal-controller-shard-{i}"), &Default::default()).await?;
        }
        for n in early.iter().chain(&late) {
            secret_with(&ns, n, "k", "1").await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let counts = unseals_by_name(&a);
        assert_eq!(counts.len(), early.len() + late.len(), "{counts:?}");
        assert!(counts.values().all(|n| *n == 1), "unsealed more than once: {counts:?}");
        assert!(unseals_by_name(&leader).is_empty());
        a.process.check_running()?;
        leader.process.check_running()?;
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
