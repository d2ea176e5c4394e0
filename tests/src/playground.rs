//! `gitseal-playground`: the test control plane in the foreground, for trying things by hand.
//!
//! [`Playground::start`] starts a private [`ControlPlane`] plus the requested [`Addon`]s and
//! [`Playground::instructions`] tells a person how to use them. Dropping it stops everything.
//!
//! A peer that dies (an operator's `kill -9` on etcd or kube-apiserver, a crash) does not end the
//! playground: [`Playground::supervise`], called every second by `gitseal-playground`, logs it
//! and starts it again in place (same flags, ports, certificates and data), waiting until it
//! serves; the addons keep running and reconnect by themselves. An addon that exits is logged,
//! not restarted (gitseal-controller is expected to survive its peers).
//!
//! [`Addon`] lists what can run next to the control plane: gitseal's controller (with its CRDs
//! and RBAC, in `gitseal-system`, watching every namespace) and Bitnami's.

use std::fmt::Write as _;

use crate::{
    ControlPlane, Peer, Result,
    bitnami::{BitnamiController, BitnamiOptions, Scope},
    install_crds_yaml,
};

/// Something to run next to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Addon {
    /// gitseal's CRDs and controller (namespace `gitseal-system`, all namespaces).
    Gitseal,
    /// Bitnami's CRD and controller (namespace `kube-system`, all namespaces, as its chart does).
    Bitnami,
    /// gitseal's controller with `--bitnami-compat`: it also serves `bitnami.com` SealedSecrets,
    /// so Bitnami's CRD is installed beside gitseal's.
    GitsealCompat,
}

/// A running control plane with its addons.
#[derive(Debug)]
pub struct Playground {
    // Declared first so they stop before the control plane.
    gitseal: Option<crate::gitseal::GitsealController>,
    bitnami: Option<BitnamiController>,
    /// Both `sealedsecrets.gitseal.dev` and `sealedsecrets.bitnami.com` exist.
    both_groups: bool,
    plane: ControlPlane,
}

impl Playground {
    /// Starts the control plane, then each addon in order.
    pub async fn start(addons: &[Addon]) -> Result<Self> {
        let plane = ControlPlane::start().await?;
        let mut bitnami = None;
        let mut gitseal = None;
        for addon in addons {
            match addon {
                Addon::Gitseal | Addon::GitsealCompat => {
                    let client = plane.client()?;
                    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gitseal-system"}});
                    crate::apply_json(&client, ns).await?;
                    // Only the CRDs of the mode: with Bitnami's CRD installed, kubectl resolves
                    // the plural `sealedsecrets` to bitnami.com (issue 12).
                    crate::gitseal::install_crd_file(&client, "gitseal.dev_sealedsecrets.yaml").await?;
                    let mut flags = vec!["--log-format=text"];
                    if *addon == Addon::GitsealCompat {
                        crate::gitseal::install_crd_file(&client, "bitnami.com_sealedsecrets.yaml").await?;
                        flags.push("--bitnami-compat");
                    }
                    let binary = crate::gitseal::controller_binary()?;
                    gitseal = Some(
                        crate::gitseal::GitsealController::launch(
                            &plane,
                            &binary,
                            &crate::gitseal::Launch {
                                flags: &flags,
                                install_crds: false,
                                ..crate::gitseal::Launch::new("gitseal-system", "playground")
                            },
                        )
                        .await?,
                    );
                }
                Addon::Bitnami => {
                    let crd = std::fs::read_to_string(Peer::BitnamiCrd.path()?)
                        .map_err(|e| crate::Error::io("reading the Bitnami CRD", e))?;
                    install_crds_yaml(&plane.client()?, &crd).await?;
                    let mut options = BitnamiOptions::new("kube-system");
                    options.scope = Scope::AllNamespaces;
                    bitnami = Some(BitnamiController::start(&plane, options).await?);
                }
            }
        }
        let both_groups = addons.contains(&Addon::Bitnami) || addons.contains(&Addon::GitsealCompat);
        Ok(Self { gitseal, bitnami, both_groups, plane })
    }

    /// `export …` lines for a shell: `KUBECONFIG`, and `GITSEAL_CERT` (the certificate URL
    /// `gitseal seal` reads) when gitseal's controller runs.
    pub fn env_exports(&self) -> String {
        let mut out = format!("export KUBECONFIG={}\n", self.plane.kubeconfig_path().display());
        if let Some(g) = &self.gitseal {
            let _ = writeln!(out, "export GITSEAL_CERT={}/v1/cert.pem", g.api);
        }
        out
    }

    /// The control plane.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// Restart any control-plane peer that died (waiting until it serves again) and report
    /// addons that exited. Returns one line per thing that happened.
    pub async fn supervise(&mut self) -> Result<Vec<String>> {
        let mut happened = Vec::new();
        for (peer, status) in self.plane.revive_dead_peers().await? {
            happened.push(format!(
                "{} had exited ({status}); restarted in place, serving again (pid {})",
                peer.name(),
                self.plane.peer_pid(peer).unwrap_or_default()
            ));
        }
        if let Some(g) = &mut self.gitseal
            && let Err(e) = g.process.check_running()
        {
            happened.push(format!("gitseal-controller exited: {e}"));
            self.gitseal = None;
        }
        if let Some(b) = &mut self.bitnami
            && let Err(e) = b.process_mut().check_running()
        {
            happened.push(format!("the Bitnami controller exited: {e}"));
            self.bitnami = None;
        }
        Ok(happened)
    }

    /// What to paste into a shell, and where the logs are.
    pub fn instructions(&self) -> String {
        let p = &self.plane;
        let pid = |peer| p.peer_pid(peer).unwrap_or_default();
        let mut out = format!(
            "# control plane ready in {:.1?}: kube-apiserver {} (pid {}), etcd {} (pid {})\n\
             # a peer killed by hand is restarted in place within a second\n\
             # logs, certificates and kubeconfigs: {}\n\
             export KUBECONFIG={}\n",
            p.startup_time(),
            p.server_url(),
            pid(crate::PlanePeer::KubeApiserver),
            p.etcd_url(),
            pid(crate::PlanePeer::Etcd),
            p.dir().display(),
            p.kubeconfig_path().display(),
        );
        if let Some(g) = &self.gitseal {
            let _ = write!(
                out,
                "# gitseal-controller in gitseal-system (log {}, audit {}):\n\
                 export GITSEAL_CERT={}/v1/cert.pem\n\
                 #   gitseal seal < secret.yaml | kubectl apply -f -     # seals for $GITSEAL_CERT\n\
                 #   kubectl get {},secrets -A     # or: kubectl get gitseal -A\n",
                g.process.log_path().display(),
                g.audit_log.display(),
                g.api,
                if self.both_groups { "sealedsecrets.gitseal.dev" } else { "sealedsecrets" },
            );
        }
        if let Some(b) = &self.bitnami {
            let _ = write!(
                out,
                "# Bitnami controller in {} (log {}):\n\
                 #   kubeseal --cert {} -o yaml < secret.yaml\n\
                 #   kubectl get sealedsecrets.bitnami.com -A\n",
                b.namespace(),
                b.process().log_path().display(),
                b.cert_url(),
            );
        }
        out.push_str("# Ctrl-C or SIGTERM stops everything and removes the directory.\n");
        out
    }
}
