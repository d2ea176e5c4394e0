//! Two replicas with leader election: the standby serves the certificate, and takes over.

use std::time::Duration;

use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, http_get, wait_for, with_temp_ns};

use crate::fixture::{Gitseal, seal, secret_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_dies_the_standby_takes_over_and_no_secret_is_lost() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let args = ["--leader-elect", "--lease-duration=4s"];
        let mut a = Gitseal::start_named(plane, ns.name(), "replica-a", &args).await?;
        a.ready().await?;
        let mut b = Gitseal::start_named(plane, ns.name(), "replica-b", &args).await?;
        // The standby loads the key the leader made and serves it.
        b.ready().await?;
        let cert = a.cert().await?;
        assert_eq!(b.cert().await?.key_id(), cert.key_id());
        assert_eq!(a.metric("gitseal_leader").await? + b.metric("gitseal_leader").await?, 1.0);
        let (leader, standby) = if a.metric("gitseal_leader").await? == 1.0 { (a, b) } else { (b, a) };

        let client = ns.client();
        gitseal_tests::apply_json(&client, seal(&cert, ns.name(), "one", &[("k", "1")], ApiGroup::Gitseal)).await?;
        secret_with(&ns, "one", "k", "1").await?;

        // Kill the leader without letting it release the Lease.
        leader.process.signal(gitseal_tests::Signal::KILL)?;
        // A change made meanwhile is reconciled by the new leader.
        gitseal_tests::apply_json(&client, seal(&cert, ns.name(), "one", &[("k", "2")], ApiGroup::Gitseal)).await?;
        gitseal_tests::apply_json(&client, seal(&cert, ns.name(), "two", &[("k", "3")], ApiGroup::Gitseal)).await?;
        wait_for("the standby to lead", Duration::from_secs(30), || async {
            Ok::<_, anyhow::Error>((standby.metric("gitseal_leader").await? == 1.0).then_some(()))
        })
        .await?;
        secret_with(&ns, "one", "k", "2").await?;
        secret_with(&ns, "two", "k", "3").await?;
        assert!(standby.audit_lines().iter().any(|l| l.contains("LeadershipAcquired")));
        let mut standby = standby;
        standby.ready().await?;
        let (code, _) = http_get(&format!("{}/v1/cert.pem", standby.api)).await?;
        assert_eq!(code, 200);
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
