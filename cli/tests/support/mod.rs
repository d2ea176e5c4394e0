//! Shared setup of the online CLI tests (`drill.rs`): gitseal-controller as a child process
//! with its authenticated API registered as an APIService, users with kubeconfig files, and the
//! `gitseal` binary run as one of them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use gitseal_tests::gitseal::{
    APISERVICE, GitsealController, Launch, ServingCert, apiservices, controller_binary, register_aggregated_api,
};
use gitseal_tests::{ControlPlane, TestNamespace, apply_json, free_port, http_get, wait_for};
use kube::api::DeleteParams;
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

pub const TIMEOUT: Duration = Duration::from_secs(45);

/// The APIService is cluster-scoped and names one Service: tests that use the authenticated
/// API take turns.
static API_TURN: Mutex<()> = Mutex::const_new(());

/// A controller in a test namespace, serving `api.gitseal.dev` through the kube-apiserver.
pub struct Controller {
    pub inner: GitsealController,
    plane: &'static ControlPlane,
    registered: bool,
    _turn: MutexGuard<'static, ()>,
}

impl Controller {
    /// Start gitseal-controller (keys and watched objects in `ns`) with `extra` flags, register
    /// its APIService and wait until the kube-apiserver reports it Available.
    pub async fn start(plane: &'static ControlPlane, ns: &TestNamespace, extra: &[&str]) -> anyhow::Result<Controller> {
        Self::start_with_env(plane, ns, extra, &[]).await
    }

    /// [`Self::start`] with extra environment variables (SOFTHSM2_CONF for a token).
    pub async fn start_with_env(
        plane: &'static ControlPlane,
        ns: &TestNamespace,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Controller> {
        let turn = API_TURN.lock().await;
        let port = free_port()?;
        let tls = ServingCert::generate(plane, ns.name())?;
        let mut args = vec![
            "--key-size=2048".to_string(),
            "--key-renew-period=0".to_string(),
            "--log-level=info,gitseal_controller=debug".to_string(),
        ];
        args.extend(tls.flags(port));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let binary = controller_binary()?;
        let how = Launch { watch: Some(ns.name()), flags: &args, env, ..Launch::new(ns.name(), "gitseal") };
        let inner = GitsealController::launch(plane, &binary, &how).await?;
        let ready = format!("{}/readyz", inner.api);
        let became_ready = wait_for("gitseal-controller /readyz", TIMEOUT, || async {
            Ok::<_, anyhow::Error>(matches!(http_get(&ready).await, Ok((200, _))).then_some(()))
        })
        .await;
        if became_ready.is_err() {
            inner.process.print_log_tail();
        }
        became_ready?;

        let available = register_aggregated_api(&plane.client()?, ns.name(), port, &tls, TIMEOUT).await;
        if available.is_err() {
            inner.process.print_log_tail();
            eprintln!("{}", plane.apiserver_log_tail(30));
        }
        available?;
        Ok(Controller { inner, plane, registered: true, _turn: turn })
    }

    /// `http://127.0.0.1:<port>/v1/cert.pem`.
    pub fn cert_url(&self) -> String {
        format!("{}/v1/cert.pem", self.inner.api)
    }

    /// The audit log's lines so far.
    pub fn audit_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.inner.audit_log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Unregister the APIService and stop the controller. An APIService without a server
    /// would stall namespace deletion (the namespace controller needs full discovery).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        apiservices(&self.plane.client()?).delete(APISERVICE, &DeleteParams::default()).await?;
        self.registered = false;
        self.inner.process.stop(Duration::from_secs(10));
        Ok(())
    }
}

impl Drop for Controller {
    /// A test that failed half-way still unregisters the APIService, from a thread of its own
    /// (this may run inside an async task that is unwinding).
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        let plane = self.plane;
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = plane.client().ok()?;
                apiservices(&client).delete(APISERVICE, &DeleteParams::default()).await.ok()
            })
        })
        .join();
    }
}

/// The kubeconfig file of a client-certificate user in `groups` (user names must be unique
/// per test binary: the file is found by name).
pub async fn user_kubeconfig(plane: &ControlPlane, user: &str, groups: &[&str]) -> anyhow::Result<PathBuf> {
    plane.user_config(user, groups).await?;
    let prefix = format!("user-{user}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(plane.dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".kubeconfig"))
        })
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop().with_context(|| format!("no kubeconfig written for user {user}"))
}

/// Apply `rules` as a Role in `ns`, bound to `subject` (a JSON RBAC subject).
pub async fn grant(admin: &kube::Client, ns: &str, name: &str, rules: Value, subject: Value) -> anyhow::Result<()> {
    apply_json(
        admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns}, "rules": rules}),
    )
    .await?;
    apply_json(
        admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [subject]}),
    )
    .await?;
    Ok(())
}

/// The `gitseal` binary acting as one user, against one controller namespace, in a work dir.
#[derive(Debug, Clone)]
pub struct Gitseal {
    pub kubeconfig: PathBuf,
    pub controller_ns: String,
    pub dir: PathBuf,
}

/// What one run gave.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(self) -> anyhow::Result<String> {
        if self.code != Some(0) {
            bail!("gitseal failed ({:?}): {}{}", self.code, self.stdout, self.stderr);
        }
        Ok(self.stdout)
    }

    /// A failed run's one `error:` line.
    pub fn error(&self) -> anyhow::Result<String> {
        if self.code != Some(1) {
            bail!("expected gitseal to fail with status 1, got {:?}: {}{}", self.code, self.stdout, self.stderr);
        }
        let lines: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        if lines.len() != 1 {
            bail!("expected one error line: {}", self.stderr);
        }
        Ok(lines[0].to_string())
    }
}

impl Gitseal {
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Ran> {
        self.run_with(args, None).await
    }

    pub async fn run_with(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Ran> {
        self.run_with_env(args, stdin, &[]).await
    }

    /// [`Self::run_with`] with extra environment variables (SOFTHSM2_CONF for a token).
    pub async fn run_with_env(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> anyhow::Result<Ran> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitseal"));
        cmd.envs(env.iter().copied());
        for (k, _) in std::env::vars() {
            if k.starts_with("GITSEAL_") || k.starts_with("SEALED_SECRETS_") || k == "KUBECONFIG" {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(&self.dir)
            .env("GITSEAL_KUBECONFIG", &self.kubeconfig)
            .env("GITSEAL_CONTROLLER_NAMESPACE", &self.controller_ns)
            .env("KUBECONFIG", "/nonexistent")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting gitseal")?;
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(bytes) = stdin {
                pipe.write_all(bytes).await?;
            }
            drop(pipe);
        }
        let out: Output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .with_context(|| format!("gitseal {args:?} timed out"))??;
        Ok(Ran {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout)?,
            stderr: String::from_utf8(out.stderr)?,
        })
    }

    /// Run and require success; stdout.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(args).await?.ok().with_context(|| format!("gitseal {}", args.join(" ")))
    }
}

/// Every document of a manifest file, as JSON.
pub fn documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(gitseal_shared::manifest::parse_documents(&text)?.into_iter().map(|d| d.value).collect())
}

/// Run `cmd` with `stdin`, isolated from the caller's settings: no `GITSEAL_*` or
/// `SEALED_SECRETS_*` variables, and a kubeconfig that does not exist.
pub fn run_isolated(cmd: &mut Command, stdin: &[u8]) -> Output {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("GITSEAL_") || k.starts_with("SEALED_SECRETS_") {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.env("KUBECONFIG", "/nonexistent/compat-kubeconfig");
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut pipe, &input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}
