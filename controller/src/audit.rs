//! The audit sink: one hash-chained JSON line per unseal, drift repair, key operation and API
//! call, to stdout or to a file (appended; the chain resumes from its last line). Logs go to
//! stderr, so stdout carries nothing but the audit trail.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use gitseal_shared::audit::{AuditObject, AuditRecord, Caller, Chain, Outcome};
use gitseal_shared::types::SealedSecretObject;

pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| now.to_string())
}

pub struct AuditLog {
    inner: Mutex<(Chain, Box<dyn Write + Send>)>,
    actor: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("actor", &self.actor).finish()
    }
}

impl AuditLog {
    /// Open the sink: `None` is stdout.
    pub fn open(path: Option<&Path>, actor: &str) -> std::io::Result<AuditLog> {
        let (chain, out): (Chain, Box<dyn Write + Send>) = match path {
            None => (Chain::default(), Box::new(std::io::stdout())),
            Some(p) => {
                let chain = match std::fs::File::open(p) {
                    Ok(f) => BufReader::new(f)
                        .lines()
                        .map_while(Result::ok)
                        .filter(|l| !l.trim().is_empty())
                        .last()
                        .and_then(|l| Chain::resume(&l))
                        .unwrap_or_default(),
                    Err(_) => Chain::default(),
                };
                (chain, Box::new(OpenOptions::new().create(true).append(true).open(p)?))
            }
        };
        Ok(AuditLog { inner: Mutex::new((chain, out)), actor: actor.into() })
    }

    /// A sink that keeps lines in memory (tests).
    pub fn to_writer(out: Box<dyn Write + Send>, actor: &str) -> AuditLog {
        AuditLog { inner: Mutex::new((Chain::default(), out)), actor: actor.into() }
    }

    /// Write one record. A failing sink is logged, never fatal for the caller.
    pub fn write(&self, mut record: AuditRecord) {
        record.actor = Some(self.actor.clone());
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (chain, out) = &mut *guard;
        let line = chain.seal(record);
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::error!(error = %e, "cannot write audit record");
        }
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
