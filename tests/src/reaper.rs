//! Cleanup that survives the test process: one watchdog per process.
//!
//! A `static` control plane is never dropped, and a test process can also die from SIGKILL, a
//! double panic or an abort. So the first use of the harness creates a root directory
//! (`$TMPDIR/gitseal-test-XXXXXX`) and starts a watchdog, `/bin/sh` with a pipe from this
//! process on its stdin. The watchdog blocks reading that pipe. The kernel closes the pipe when
//! this process exits, however it exits; the watchdog then stops every PID still listed in
//! `<root>/.pids/`, newest first (so kube-apiserver goes before the etcd it needs to shut down
//! cleanly): SIGTERM, up to 20 s, SIGKILL. Then it removes the root directory.
//!
//! Children are registered by [`crate::ChildProcess`] right after they are spawned and forgotten
//! once they have been stopped and reaped, so the watchdog never signals a recycled PID. The
//! watchdog ignores SIGINT, SIGHUP and SIGTERM, so a Ctrl-C in the terminal (which reaches the
//! whole process group) still ends with a clean directory. No `unsafe` is needed (no
//! `PR_SET_PDEATHSIG` in a `pre_exec` hook), which the workspace forbids.
//!
//! `GITSEAL_TEST_KEEP=1` keeps the root directory (logs, certificates, kubeconfigs).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
};

use tempfile::TempDir;

use crate::{Error, Result};

/// The watchdog: waits for EOF on stdin, then stops the listed PIDs (files `<seq>-<pid>`, newest
/// first) and removes the root.
const WATCHDOG: &str = r#"
trap '' INT HUP TERM
root=$1 keep=$2
cat >/dev/null
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
for f in $(ls -r "$root/.pids" 2>/dev/null); do
  p=${f#*-}
  alive "$p" || continue
  kill -TERM "$p" 2>/dev/null
  n=0
  while alive "$p" && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
  alive "$p" && kill -KILL "$p" 2>/dev/null
done
[ "$keep" = 1 ] || rm -rf "$root"
"#;

#[derive(Debug)]
struct Reaper {
    root: PathBuf,
    pids: PathBuf,
    // pid -> its file name in `pids`, which starts with a registration sequence number.
    files: Mutex<(u64, HashMap<u32, String>)>,
    // Held for the life of the process: closing it (at exit) is the watchdog's signal.
    _stdin: ChildStdin,
    _watchdog: Child,
}

static REAPER: OnceLock<std::result::Result<Reaper, String>> = OnceLock::new();

fn reaper() -> Result<&'static Reaper> {
    REAPER.get_or_init(|| start().map_err(|e| crate::error::chain(&e))).as_ref().map_err(|e| Error::Io {
        what: format!("starting the harness's cleanup watchdog failed earlier: {e}"),
        source: std::io::Error::other("watchdog unavailable"),
    })
}

fn start() -> Result<Reaper> {
    let root = tempfile::Builder::new()
        .prefix("gitseal-test-")
        .tempdir()
        .map_err(|e| Error::io("creating the harness's temporary directory", e))?
        .keep();
    let pids = root.join(".pids");
    std::fs::create_dir(&pids).map_err(|e| Error::io(format!("creating {}", pids.display()), e))?;
    let mut watchdog = Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("gitseal-test-watchdog")
        .arg(&root)
        .arg(if keep() { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("starting the cleanup watchdog (/bin/sh)", e))?;
    let stdin = watchdog
        .stdin
        .take()
        .ok_or_else(|| Error::io("opening the watchdog's stdin", std::io::Error::other("none")))?;
    Ok(Reaper { root, pids, files: Mutex::new((0, HashMap::new())), _stdin: stdin, _watchdog: watchdog })
}

/// Whether `GITSEAL_TEST_KEEP` asks to keep temporary files after the run.
pub fn keep() -> bool {
    std::env::var("GITSEAL_TEST_KEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// This process's harness directory; everything the harness writes lives below it.
pub fn root() -> Result<&'static Path> {
    Ok(&reaper()?.root)
}

/// A fresh directory below [`root`], removed on drop unless [`keep`] is set.
pub(crate) fn tempdir(prefix: &str) -> Result<TempDir> {
    let root = root()?;
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)
        .map_err(|e| Error::io(format!("creating a temporary directory in {}", root.display()), e))?;
    dir.disable_cleanup(keep());
    Ok(dir)
}

/// Lists `pid` for the watchdog to stop if this process dies first.
pub(crate) fn register(pid: u32) -> Result<()> {
    let r = reaper()?;
    let name = {
        let mut files = r.files.lock().unwrap_or_else(|p| p.into_inner());
        files.0 += 1;
        let name = format!("{:08}-{pid}", files.0);
        files.1.insert(pid, name.clone());
        name
    };
    std::fs::write(r.pids.join(name), b"").map_err(|e| Error::io(format!("registering pid {pid} with the watchdog"), e))
}

/// Takes `pid` off the watchdog's list (after the child has been reaped).
pub(crate) fn forget(pid: u32) {
    if let Ok(r) = reaper() {
        let name = r.files.lock().unwrap_or_else(|p| p.into_inner()).1.remove(&pid);
        if let Some(name) = name {
            // Already gone is fine.
            let _ = std::fs::remove_file(r.pids.join(name));
        }
    }
}
