//! Child processes whose output lands in the test report when something fails.
//!
//! [`ChildProcess`] is a long-running peer (etcd, kube-apiserver, a controller): stdout and stderr
//! go to one log file, the PID is registered with the [`crate::reaper`] watchdog, and dropping the
//! handle stops it (SIGTERM, up to 20 s, SIGKILL). If the handle is dropped while the thread is
//! panicking (a failed assertion), the end of the log is printed first, so it shows up in
//! `cargo test`'s output for that test. [`exec_binary`] runs a command to completion (stdin in,
//! stdout out) and turns a failure into an error that carries its stderr.

use std::{
    collections::BTreeSet,
    ffi::{OsStr, OsString},
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use crate::{Error, Result, reaper};

/// How long [`ChildProcess`]'s drop waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(20);
/// How many log lines a failure prints.
const TAIL_LINES: usize = 60;

/// A running child process with its output captured to a log file.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    status: Option<ExitStatus>,
    // What was started, so [`ChildProcess::restart`] can start it again in place.
    launch: Launch,
    // The directory of the log when the handle owns it (see `run_binary`); dropped last.
    _dir: Option<TempDir>,
}

/// A command as spawned: program, arguments, environment changes, working directory.
#[derive(Debug, Clone)]
struct Launch {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
}

impl Launch {
    fn of(cmd: &Command) -> Self {
        Self {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(OsStr::to_owned).collect(),
            envs: cmd.get_envs().map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned))).collect(),
            dir: cmd.get_current_dir().map(Path::to_owned),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        cmd
    }

    /// Starts it with stdin closed and stdout + stderr appended to `log`.
    fn spawn(&self, name: &str, log: &Path) -> Result<Child> {
        let mut cmd = self.command();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("creating the log file {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| Error::io(format!("opening {} twice", log.display()), e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        cmd.spawn().map_err(|e| Error::io(format!("starting {name} ({:?})", cmd.get_program()), e))
    }
}

impl ChildProcess {
    /// Spawns `cmd` with stdin closed and stdout + stderr appended to `log`, and registers it
    /// with the watchdog. `name` is used in messages.
    pub fn spawn(name: impl Into<String>, cmd: Command, log: impl Into<PathBuf>) -> Result<Self> {
        let name = name.into();
        let log = log.into();
        let launch = Launch::of(&cmd);
        let child = launch.spawn(&name, &log)?;
        let pid = child.id();
        let mut this = Self { name, child, pid, log, status: None, launch, _dir: None };
        // If registering fails the handle still stops the child on drop.
        reaper::register(pid)?;
        tracing::debug!(name = %this.name, pid, log = %this.log.display(), "started");
        this.check_running()?;
        Ok(this)
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// The file that receives stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log (lossy UTF-8).
    pub fn log_tail(&self, lines: usize) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status if the process has ended, without blocking.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| Error::io(format!("checking whether {} still runs", self.name), e))?;
            if self.status.is_some() {
                reaper::forget(self.pid);
            }
        }
        Ok(self.status)
    }

    /// `Ok` while the process runs; [`Error::Exited`] with the end of its log once it has ended.
    pub fn check_running(&mut self) -> Result<()> {
        match self.try_status()? {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: self.log_tail(TAIL_LINES),
            }),
        }
    }

    /// Sends `signal` (for example [`Signal::USR1`], which makes the Bitnami controller rotate).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.pid as i32)
            .ok_or_else(|| Error::io("signalling a child", std::io::Error::other("pid 0")))?;
        rustix::process::kill_process(pid, signal)
            .map_err(|e| Error::io(format!("sending {signal:?} to {}", self.name), e.into()))
    }

    /// The process id (for reading `/proc/<pid>/stat` in benches).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Peak resident set size (`VmHWM` in `/proc/<pid>/status`) in KiB, while it runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Stops the process: SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_status() {
            return Some(status);
        }
        let _ = self.signal(Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.try_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(name = %self.name, "did not stop within {grace:?} of SIGTERM; sending SIGKILL");
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        reaper::forget(self.pid);
        self.status
    }

    /// SIGKILL and reap: the process is gone when this returns (a fault, not a shutdown).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_status() {
            return Some(status);
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        reaper::forget(self.pid);
        self.status
    }

    /// Starts the same command again in place (program, arguments, environment; the log file is
    /// appended to) once the previous process has ended — stop or kill it first.
    pub fn restart(&mut self) -> Result<()> {
        if self.try_status()?.is_none() {
            return Err(Error::invalid(format!("restarting {}", self.name), "it is still running; stop it first"));
        }
        let child = self.launch.spawn(&self.name, &self.log)?;
        self.pid = child.id();
        self.child = child;
        self.status = None;
        reaper::register(self.pid)?;
        tracing::info!(name = %self.name, pid = self.pid, "restarted in place");
        self.check_running()
    }

    /// Prints the end of the log to stderr (captured per test by `cargo test`).
    pub fn print_log_tail(&self) {
        eprintln!(
            "----- last {TAIL_LINES} lines of {} ({}) -----\n{}\n----- end of {} -----",
            self.name,
            self.log.display(),
            self.log_tail(TAIL_LINES),
            self.name
        );
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tail();
        }
        self.stop(STOP_GRACE);
    }
}

/// Starts `program` with `args` and extra `env`, its output captured to a log file in a fresh
/// directory below the harness root (removed with the handle).
pub fn run_binary<I, S, E, K, V>(program: impl AsRef<Path>, args: I, env: E) -> Result<ChildProcess>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    E: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let program = program.as_ref();
    let name = program.file_name().map_or_else(|| "process".to_owned(), |n| n.to_string_lossy().into_owned());
    let dir = reaper::tempdir(&format!("{name}-"))?;
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env);
    let mut child = ChildProcess::spawn(&name, cmd, dir.path().join(format!("{name}.log")))?;
    child._dir = Some(dir);
    Ok(child)
}

/// Runs `program` to completion with `stdin` as its input and returns its stdout.
///
/// A non-zero exit becomes [`Error::CommandFailed`] with the stderr; the process is killed if
/// it runs longer than `timeout`.
pub async fn exec_binary<I, S, E, K, V>(
    program: impl AsRef<Path>,
    args: I,
    env: E,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    E: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let program = program.as_ref();
    let args: Vec<S> = args.into_iter().collect();
    // The command line for messages; the environment is left out, it may hold credentials.
    let line = std::iter::once(program.as_os_str())
        .chain(args.iter().map(AsRef::as_ref))
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&args).envs(env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("starting {}", program.display()), e))?;
    let pid = child.id();
    if let Some(pid) = pid {
        reaper::register(pid)?;
    }
    let mut input = child.stdin.take();
    let write = async {
        if let Some(w) = input.as_mut() {
            w.write_all(stdin).await?;
            w.shutdown().await?;
        }
        drop(input);
        Ok::<_, std::io::Error>(())
    };
    let run = async { tokio::try_join!(write, child.wait_with_output()) };
    let result = tokio::time::timeout(timeout, run).await;
    if let Some(pid) = pid {
        reaper::forget(pid);
    }
    let (_, output) = result
        .map_err(|_| Error::Timeout { what: format!("{line} to finish"), waited: timeout, detail: String::new() })?
        .map_err(|e| Error::io(format!("running {line}"), e))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(Error::CommandFailed {
            command: line,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// A free TCP port on 127.0.0.1, never the same one twice in this process.
///
/// The port is free when returned; another process can still take it before the caller binds it,
/// which is why [`crate::ControlPlane::start`] retries on "address already in use".
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))?
            .port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::io(
        "finding a free port on 127.0.0.1",
        std::io::Error::other("100 tries returned ports already handed out"),
    ))
}
