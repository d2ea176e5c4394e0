//! The audit sink: one signed, hash-chained JSON line per unseal, drift repair, key operation
//! and API call, to stdout or to a file (appended; followed across rotation). Logs go to stderr,
//! so stdout carries nothing but the audit trail.
//!
//! Guarantees: the chain head advances only after a line is written and flushed, so a failed
//! write never leaves a hole; every failure counts in `gitseal_audit_write_errors_total`; with
//! `--audit-required`, [`AuditLog::ready_for_work`] fails while the sink does, and the callers
//! (reconcile, the APIs, `/readyz`) stop. [`cluster`] holds the Kubernetes side: the signing key
//! Secret, the checkpoint, and the tasks that keep them.

pub mod cluster;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gitseal_shared::audit::{
    AuditObject, AuditRecord, CHAIN_RESUMED, CHAIN_STARTED, Caller, Chain, Checkpoint, Outcome, RESUMED_FROM_FILE,
    SigningKey,
};
use gitseal_shared::types::SealedSecretObject;
use prometheus_client::metrics::counter::Counter;

pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| now.to_string())
}

/// How much of an existing audit file is read at start to find its head.
const TAIL_BYTES: u64 = 4 * 1024 * 1024;

enum Sink {
    Stdout,
    /// A file, reopened when its path points elsewhere (rotated, replaced) or after a failure.
    File {
        path: PathBuf,
        file: Option<(File, FileId)>,
    },
    /// Any writer (in-process tests).
    Writer(Box<dyn Write + Send>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

fn file_id(m: &std::fs::Metadata) -> FileId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        FileId(m.dev(), m.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        FileId(0, 0)
    }
}

/// Open for appending; a torn last line (no newline) is closed first, so the next record
/// starts on its own line.
fn open_append(path: &Path) -> std::io::Result<(File, FileId)> {
    let mut f = OpenOptions::new().create(true).append(true).read(true).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            f.write_all(b"\n")?;
        }
    }
    Ok((f, file_id(&meta)))
}

impl Sink {
    /// Make sure a writable target is open (file: the one the path names now).
    fn prepare(&mut self) -> std::io::Result<()> {
        if let Sink::File { path, file } = self {
            let current = std::fs::metadata(&*path).ok().map(|m| file_id(&m));
            let stale = match (file.as_ref(), current) {
                (Some((_, open)), Some(now)) => *open != now,
                _ => true,
            };
            if stale {
                *file = None;
                *file = Some(open_append(path)?);
            }
        }
        Ok(())
    }

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.prepare()?;
        let result = match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|()| out.flush())
            }
            Sink::File { file, .. } => match file {
                Some((f, _)) => writeln!(f, "{line}").and_then(|()| f.flush()),
                None => Err(std::io::Error::other("audit file not open")),
            },
            Sink::Writer(w) => writeln!(w, "{line}").and_then(|()| w.flush()),
        };
        if result.is_err()
            && let Sink::File { file, .. } = self
        {
            *file = None;
        }
        result
    }
}

struct Inner {
    chain: Chain,
    sink: Sink,
    /// Checkpoint hashes this chain already continues (newest last, a few kept).
    linked: Vec<String>,
}

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the audit record")]
pub struct AuditError(#[source] std::io::Error);

/// Checkpoint triggers, from the flags.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// Checkpoint after this many records (0: only on the timer).
    pub records: u64,
}

pub struct AuditLog {
    inner: Mutex<Inner>,
    actor: String,
    key: SigningKey,
    required: bool,
    healthy: AtomicBool,
    since_checkpoint: AtomicU64,
    policy: CheckpointPolicy,
    /// Woken when `policy.records` records were written since the last checkpoint.
    pub checkpoint_due: tokio::sync::Notify,
    /// `gitseal_audit_write_errors_total`.
    pub write_errors: Counter,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("actor", &self.actor).field("required", &self.required).finish()
    }
}

/// The head found in an existing audit file.
struct FileHead {
    chain: Chain,
    /// The file ends in lines that are not records signed by this key (torn or foreign).
    corrupt_tail: usize,
}

/// The last record signed by `key` in the last [`TAIL_BYTES`] of `path`.
fn file_head(path: &Path, key: &gitseal_shared::audit::PublicKey) -> (Option<FileHead>, bool) {
    let Ok(mut f) = File::open(path) else { return (None, false) };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return (None, false);
    }
    let start = len.saturating_sub(TAIL_BYTES);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return (None, true);
    }
    let text = String::from_utf8_lossy(&buf);
    for (corrupt, line) in text.lines().rev().filter(|l| !l.trim().is_empty()).enumerate() {
        if let Some(chain) = Chain::resume(line, key) {
            return (Some(FileHead { chain, corrupt_tail: corrupt }), true);
        }
    }
    (None, true)
}

impl AuditLog {
    /// Open the sink (`None`: stdout) and write the first record: `ChainResumed` linking the
    /// newest head known — this file's last record or the cluster `anchor` — or `ChainStarted`
    /// when there is no history at all.
    pub fn open(
        path: Option<&Path>,
        actor: &str,
        key: SigningKey,
        anchor: Option<&Checkpoint>,
        required: bool,
        policy: CheckpointPolicy,
    ) -> Result<AuditLog, AuditError> {
        let (head, had_content) = match path {
            Some(p) => file_head(p, &key.public_key()),
            None => (None, false),
        };
        let sink = match path {
            None => Sink::Stdout,
            Some(p) => Sink::File { path: p.to_path_buf(), file: None },
        };
        let mut first = Self::record(CHAIN_RESUMED, Outcome::Success);
        // This replica's own file ends before a checkpoint this replica wrote: records it had
        // written were cut from the file's tail (another replica going on is no such sign).
        let cut_from = match (&head, anchor) {
            (Some(h), Some(a)) if a.replica == actor && h.chain.seq() < a.seq => Some(h.chain.seq()),
            _ => None,
        };
        // The file's head wins unless the checkpoint is ahead of it (another replica went on).
        let head = head.filter(|h| anchor.is_none_or(|a| h.chain.seq() >= a.seq));
        let chain = match (head, anchor) {
            (Some(h), _) => {
                first.reason = Some(RESUMED_FROM_FILE.into());
                first.message = Some(if h.corrupt_tail > 0 {
                    tracing::warn!(lines = h.corrupt_tail, "the audit file ends in lines that are not signed records");
                    format!(
                        "after seq {} of the audit file; {} line(s) after it are not records signed by this key",
                        h.chain.seq(),
                        h.corrupt_tail
                    )
                } else {
                    format!("after seq {} of the audit file", h.chain.seq())
                });
                h.chain
            }
            (_, Some(a)) => {
                first.reason = Some("Checkpoint".into());
                first.message = Some(format!("after seq {} of {} (checkpoint of {})", a.seq, a.replica, a.time));
                if let Some(end) = cut_from {
                    tracing::error!(
                        file_ends_at = end,
                        checkpoint = a.seq,
                        "records this replica wrote were cut from its audit file"
                    );
                    first.outcome = Outcome::Failure;
                    first.reason = Some(gitseal_shared::audit::AUDIT_FILE_TRUNCATED.into());
                    first.message = Some(format!(
                        "after seq {} of {} (checkpoint of {}); the audit file ends at seq {end}: records {} to {} were cut from it",
                        a.seq,
                        a.replica,
                        a.time,
                        end + 1,
                        a.seq
                    ));
                }
                a.head()
            }
            (None, None) => {
                first.action = CHAIN_STARTED.into();
                if had_content {
                    tracing::error!(
                        "the audit file holds no record signed by the audit key and no checkpoint exists: starting a new chain"
                    );
                    first.outcome = Outcome::Failure;
                    first.reason = Some("UnreadableHistory".into());
                    first.message =
                        Some("the audit file holds no record signed by this key and there is no checkpoint".into());
                }
                Chain::default()
            }
        };
        let log = AuditLog {
            inner: Mutex::new(Inner { chain, sink, linked: anchor.map(|a| a.hash.clone()).into_iter().collect() }),
            actor: actor.into(),
            key,
            required,
            healthy: AtomicBool::new(true),
            since_checkpoint: AtomicU64::new(0),
            policy,
            checkpoint_due: tokio::sync::Notify::new(),
            write_errors: Counter::default(),
        };
        log.try_write(first)?;
        Ok(log)
    }

    /// A sink that writes to `out` (in-process tests): a fresh signing key, no history, no
    /// checkpoints.
    pub fn to_writer(out: Box<dyn Write + Send>, actor: &str) -> Result<AuditLog, AuditError> {
        let (key, _) = SigningKey::generate().map_err(|e| AuditError(std::io::Error::other(e)))?;
        Ok(AuditLog {
            inner: Mutex::new(Inner { chain: Chain::default(), sink: Sink::Writer(out), linked: Vec::new() }),
            actor: actor.into(),
            key,
            required: false,
            healthy: AtomicBool::new(true),
            since_checkpoint: AtomicU64::new(0),
            policy: CheckpointPolicy { records: 0 },
            checkpoint_due: tokio::sync::Notify::new(),
            write_errors: Counter::default(),
        })
    }

    /// Write one record. A failing sink is logged and counted, never fatal for the caller
    /// (with `--audit-required`, [`Self::ready_for_work`] is what stops the work).
    pub fn write(&self, record: AuditRecord) {
        let _ = self.try_write(record);
    }

    /// Write one record; the chain advances only if it was written.
    pub fn try_write(&self, mut record: AuditRecord) -> Result<(), AuditError> {
        record.actor = Some(self.actor.clone());
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let (line, next) = inner.chain.next_line(record, &self.key);
        match inner.sink.write_line(&line) {
            Ok(()) => {
                inner.chain = next;
                drop(guard);
                self.healthy.store(true, Ordering::SeqCst);
                let n = self.since_checkpoint.fetch_add(1, Ordering::SeqCst) + 1;
                if self.policy.records > 0 && n >= self.policy.records {
                    self.checkpoint_due.notify_one();
                }
                Ok(())
            }
            Err(e) => {
                drop(guard);
                self.healthy.store(false, Ordering::SeqCst);
                self.write_errors.inc();
                tracing::error!(error = %e, "cannot write audit record");
                Err(AuditError(e))
            }
        }
    }

    /// Whether the sink can take a record now: for a file, the path still names a writable
    /// file (reopened if it was rotated or came back); for stdout, the last write or probe worked.
    pub fn healthy(&self) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ok = match &guard.sink {
            Sink::File { .. } => guard.sink.prepare().is_ok(),
            // After a failure, probe stdout with an empty line (verifiers skip blank lines).
            Sink::Stdout if !self.healthy.load(Ordering::SeqCst) => {
                let mut out = std::io::stdout().lock();
                writeln!(out).and_then(|()| out.flush()).is_ok()
            }
            Sink::Stdout | Sink::Writer(_) => true,
        };
        drop(guard);
        self.healthy.store(ok, Ordering::SeqCst);
        ok
    }

    /// With `--audit-required`, refuse work while the sink fails.
    pub fn ready_for_work(&self) -> Result<(), &'static str> {
        if !self.required || self.healthy() { Ok(()) } else { Err("the audit sink is failing (--audit-required)") }
    }

    /// The head: the last record written.
    pub fn head(&self) -> Chain {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).chain.clone()
    }

    /// A signed checkpoint of the current head; resets the record trigger.
    pub fn checkpoint(&self) -> Checkpoint {
        let head = self.head();
        self.since_checkpoint.store(0, Ordering::SeqCst);
        Checkpoint::new(&self.actor, &head, &now_rfc3339(), &self.key)
    }

    /// Continue the cluster history at `anchor` (a new leader): write `ChainResumed` linking
    /// it. Nothing changes when this chain already continues it, or when the write fails.
    pub fn relink(&self, anchor: &Checkpoint) -> Result<bool, AuditError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let own = anchor.replica == self.actor && anchor.seq <= guard.chain.seq();
        if own || anchor.hash == guard.chain.hash() || guard.linked.contains(&anchor.hash) {
            return Ok(false);
        }
        let mut rec = Self::record(CHAIN_RESUMED, Outcome::Success);
        rec.reason = Some("Checkpoint".into());
        rec.message = Some(format!("after seq {} of {} (checkpoint of {})", anchor.seq, anchor.replica, anchor.time));
        rec.actor = Some(self.actor.clone());
        let (line, next) = anchor.head().next_line(rec, &self.key);
        match guard.sink.write_line(&line) {
            Ok(()) => {
                guard.chain = next;
                guard.linked.push(anchor.hash.clone());
                if guard.linked.len() > 8 {
                    guard.linked.remove(0);
                }
                Ok(true)
            }
            Err(e) => {
                drop(guard);
                self.healthy.store(false, Ordering::SeqCst);
                self.write_errors.inc();
                Err(AuditError(e))
            }
        }
    }

    pub fn public_key(&self) -> gitseal_shared::audit::PublicKey {
        self.key.public_key()
    }

    /// The signing key's PKCS#8, to write its Secret back ([`cluster::watch_key`]).
    pub fn key_pkcs8(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, &'static str> {
        self.key.to_pkcs8()
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Start a record stamped now.
    pub fn record(action: &str, outcome: Outcome) -> AuditRecord {
        AuditRecord::new(now_rfc3339(), action, outcome)
    }
}

/// The audit description of a SealedSecret.
pub fn object_of(ss: &SealedSecretObject) -> AuditObject {
    AuditObject {
        api_version: ss.types.as_ref().map(|t| t.api_version.clone()),
        kind: Some(gitseal_shared::types::KIND.into()),
        namespace: ss.metadata.namespace.clone(),
        name: ss.metadata.name.clone(),
        uid: ss.metadata.uid.clone(),
        generation: ss.metadata.generation,
    }
}

pub fn caller(user: &str, groups: &[String]) -> Caller {
    Caller { user: user.into(), groups: groups.to_vec() }
}

#[cfg(test)]
mod tests;
