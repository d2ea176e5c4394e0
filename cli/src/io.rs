//! Reading inputs and writing files safely.
//!
//! Writes are atomic: a temporary file in the target's directory, fsync, then a rename, so a
//! reader sees the old content or the new, never a half-written file. New files are never put
//! over existing ones ([`write_new`] renames with no-clobber); only the in-place rewrites
//! (`seal --merge-into`, `reseal`) replace a file, through [`replace`].

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use crate::config::Input;

/// The kubeseal hint shown when a manifest is expected on an interactive stdin.
pub const TTY_HINT: &str = "(tty detected: expecting json/yaml k8s resource in stdin)";

/// File modes for [`write_new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0644: certificates, SealedSecrets.
    Public,
    /// 0600: private keys, key Secrets.
    Private,
}

/// Read a manifest stream as text. Plaintext Secrets pass through here, so the buffer is
/// wiped when dropped.
pub fn read_text(input: &Input) -> Result<Zeroizing<String>> {
    read_text_hinted(input, TTY_HINT)
}

/// [`read_text`] with another hint for an interactive stdin.
pub fn read_text_hinted(input: &Input, hint: &str) -> Result<Zeroizing<String>> {
    let bytes = read_bytes(input, hint)?;
    let what = input.describe();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        match input {
            Input::Stdin => bail!("no input on stdin: pipe a manifest in, or pass -f FILE"),
            Input::File(_) => bail!("{what} is empty: expected a YAML or JSON manifest"),
        }
    }
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| anyhow::anyhow!("{what} is not UTF-8 text"))?;
    Ok(Zeroizing::new(text))
}

/// Read all bytes of an input; on an interactive stdin, print `hint` first.
pub fn read_bytes(input: &Input, hint: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    match input {
        Input::Stdin => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                eprintln!("{hint}");
            }
            stdin.read_to_end(&mut buf).context("cannot read stdin")?;
        }
        Input::File(path) => {
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
    }
    Ok(buf)
}

/// Read a small text file (a key, a certificate, a SealedSecret), wiped on drop.
pub fn read_file(path: &Path) -> Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text)
}

/// Write to stdout and flush. A closed pipe surfaces as an `io::Error` that
/// [`crate::output::finish`] treats as success.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Fail early, with a clear message, if `path` exists.
pub fn ensure_absent(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        bail!("{} already exists: gitseal never overwrites a file; remove it or choose another name", path.display());
    }
    Ok(())
}

/// Before any work: an output file must not exist (unless `force`), and its directory must.
/// Messages name the output, never the temporary file beside it.
pub fn check_output(path: &Path, force: bool) -> Result<()> {
    if !force && fs::symlink_metadata(path).is_ok() {
        bail!("{} already exists: pass --force to replace it, or choose another name", path.display());
    }
    let dir = parent_of(path);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("cannot create {}: {} is not a directory", path.display(), dir.display()),
        Err(_) => {
            bail!("cannot create {}: directory {} does not exist; create it first", path.display(), dir.display())
        }
    }
}

/// Write `path` atomically with `bytes`, replacing it if it exists (`--force`, kubeseal's `-w`):
/// a reader sees the old content or the new, never a partial file.
pub fn write_over(path: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    check_output(path, true)?;
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        bail!("cannot write {}: it is a directory", path.display());
    }
    let tmp = temp_beside(path)?;
    fill(&tmp, bytes, fs::Permissions::from_mode(perms_of(mode)), path)?;
    tmp.persist(path).map_err(|e| anyhow::Error::new(e.error).context(format!("cannot write {}", path.display())))?;
    sync_dir(path);
    Ok(())
}

fn perms_of(mode: Mode) -> u32 {
    match mode {
        Mode::Public => 0o644,
        Mode::Private => 0o600,
    }
}

/// Create `path` atomically with `bytes`; fails if it exists.
pub fn write_new(path: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    ensure_absent(path)?;
    check_output(path, true)?;
    let tmp = temp_beside(path)?;
    fill(&tmp, bytes, fs::Permissions::from_mode(perms_of(mode)), path)?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: gitseal never overwrites a file; remove it or choose another name",
                path.display()
            )
        } else {
            anyhow::Error::new(e.error).context(format!("cannot create {}", path.display()))
        }
    })?;
    sync_dir(path);
    Ok(())
}

/// Replace an existing file atomically, keeping its permissions.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    ensure_writable(path)?;
    let perms = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions();
    let tmp = temp_beside(path)?;
    fill(&tmp, bytes, perms, path)?;
    tmp.persist(path).map_err(|e| anyhow::Error::new(e.error).context(format!("cannot replace {}", path.display())))?;
    sync_dir(path);
    Ok(())
}

/// A file rewritten in place must be writable by its owner. The mode bits are checked as well
/// as access, because a rename would otherwise replace a read-only file (and root passes any
/// access check).
pub fn ensure_writable(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.permissions().mode() & 0o222 == 0 {
        bail!("{} is read-only: make it writable (chmod u+w) to rewrite it in place", path.display());
    }
    OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("{} is not writable: check its permissions to rewrite it in place", path.display()))?;
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The temporary file a write goes through. Its error names the output: tempfile's own
/// messages carry the temporary path, which means nothing to the user.
fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_of(path);
    tempfile::Builder::new().prefix(".gitseal-").suffix(".tmp").tempfile_in(dir).map_err(|e| {
        anyhow::anyhow!("cannot create {} in {}: {}", file_name(path), dir.display(), std::io::Error::from(e.kind()))
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

fn fill(tmp: &tempfile::NamedTempFile, bytes: &[u8], perms: fs::Permissions, path: &Path) -> Result<()> {
    let mut f = tmp.as_file();
    f.set_permissions(perms)
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Best effort: make the rename itself durable.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_never_written_over_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.yaml");
        write_new(&p, b"one", Mode::Public).unwrap();
        let err = write_new(&p, b"two", Mode::Public).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"one");
    }

    #[test]
    fn forced_writes_replace_whole_files_and_name_no_temporary_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.yaml");
        write_over(&p, b"one", Mode::Public).unwrap();
        write_over(&p, b"two", Mode::Public).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
        let missing = dir.path().join("new/dir/x.yaml");
        for err in [write_over(&missing, b"x", Mode::Public), write_new(&missing, b"x", Mode::Public)] {
            let err = err.unwrap_err().to_string();
            assert!(err.contains("does not exist") && !err.contains(".gitseal-"), "{err}");
        }
    }

    #[test]
    fn private_files_are_created_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_new(&p, b"key", Mode::Private).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn replacing_keeps_the_mode_and_refuses_read_only_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        replace(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        assert!(replace(&p, b"newer").unwrap_err().to_string().contains("read-only"));
        assert_eq!(fs::read(&p).unwrap(), b"new");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
