//! Key renewal: a new key on schedule, the old one still decrypts, and the key-id hint means
//! one private-key operation per value.

use std::time::Duration;

use gitseal_shared::types::ApiGroup;
use gitseal_tests::{ControlPlane, wait_for, with_temp_ns};

use crate::fixture::{Gitseal, TIMEOUT, seal, secret_with, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_keys_keep_old_secrets_working_and_cost_one_private_op_per_value() -> anyhow::Result<()> {
    let plane = ControlPlane::shared().await?;
    with_temp_ns(|ns| async move {
        let mut g = Gitseal::start(plane, ns.name(), &["--key-renew-period=8s"]).await?;
        g.ready().await?;
        let first = g.cert().await?;
        let client = ns.client();
        gitseal_tests::apply_json(&client, seal(&first, ns.name(), "old", &[("a", "1")], ApiGroup::Gitseal)).await?;
        secret_with(&ns, "old", "a", "1").await?;

        // Renewal makes a second key; the certificate handed out changes.
        let second = wait_for("a renewed sealing key", Duration::from_secs(40), || async {
            let c = g.cert().await?;
            Ok::<_, anyhow::Error>((c.key_id() != first.key_id()).then_some(c))
        })
        .await?;
        assert!(g.metric("gitseal_keys{state=\"active\"}").await? >= 2.0);
        assert!(g.audit_lines().iter().any(|l| l.contains("\"action\":\"KeyGenerated\"") && l.contains("RenewPeriod")));

        // The old SealedSecret stays in sync (after the re-run every key change triggers).
        synced(&ns, ApiGroup::Gitseal, "old", "True").await?;

        // From here on a controller that does not renew, so no renewal (which also replaces the
        // digest key, costing in-sync objects one re-verification) lands in what is counted.
        drop(g);
        let mut g = Gitseal::start_named(plane, ns.name(), "gitseal-steady", &["--key-renew-period=0"]).await?;
        g.ready().await?;
        synced(&ns, ApiGroup::Gitseal, "old", "True").await?;
        // Its start-up look at "old" (a re-verification when the digest key was renewed) is over
        // before counting starts.
        wait_for("the start-up reconcile of old", TIMEOUT, || async {
            let mut n = 0.0;
            for outcome in ["in_sync", "unsealed", "drift_reverted", "failed"] {
                n += g.metric(&format!("gitseal_reconciles_total{{outcome=\"{outcome}\"}}")).await?;
            }
            let backlog = g.metric("gitseal_resync_backlog").await?;
            Ok::<_, anyhow::Error>((n >= 1.0 && backlog == 0.0).then_some(()))
        })
        .await?;

        // A new SealedSecret with three values, sealed for the new key: exactly three private ops.
        let before = g.metric("gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}").await?;
        gitseal_tests::apply_json(
            &client,
            seal(&second, ns.name(), "new", &[("x", "1"), ("y", "2"), ("z", "3")], ApiGroup::Gitseal),
        )
        .await?;
        secret_with(&ns, "new", "z", "3").await?;
        synced(&ns, ApiGroup::Gitseal, "new", "True").await?;
        let spent =
            g.metric("gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}").await? - before;
        assert_eq!(spent, 3.0, "one RSA private operation per value");

        // Restarting the controller costs no private operation for objects already in sync.
        drop(g);
        let mut g = Gitseal::start_named(plane, ns.name(), "gitseal-restarted", &["--key-renew-period=0"]).await?;
        g.ready().await?;
        let reconciled = wait_for("reconciles after restart", TIMEOUT, || async {
            let n = g.metric("gitseal_reconciles_total{outcome=\"in_sync\"}").await?;
            Ok::<_, anyhow::Error>((n >= 2.0).then_some(n))
        })
        .await?;
        assert!(reconciled >= 2.0);
        assert_eq!(g.metric("gitseal_private_key_operations_total{caller=\"reconcile\",outcome=\"ok\"}").await?, 0.0);
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}
