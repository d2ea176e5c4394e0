//! Checking audit logs: every line's hash and signature, the links between records, the links of
//! each `ChainResumed` to the head it continues, and the anchored head (checkpoint).

use std::collections::HashMap;

use super::{CHAIN_RESUMED, CHAIN_STARTED, Checkpoint, GENESIS, LineError, PublicKey, parse_line};

/// `ChainResumed.reason` when a process continues its own audit file: the link must then be the
/// line right before it.
pub const RESUMED_FROM_FILE: &str = "AuditFile";
/// `ChainResumed.reason` when a replica restarts on its own file and finds it ends before a
/// checkpoint it wrote: records were cut from the file's tail.
pub const AUDIT_FILE_TRUNCATED: &str = "AuditFileTruncated";

/// Where a log stops being trustworthy, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ChainBreak {
    /// The input (file name, `stdin`, `checkpoint`).
    pub input: String,
    /// 1-based line in that input; 0 when the problem is about the log as a whole.
    pub line: usize,
    /// Sequence number of the offending record, when it has one.
    pub seq: Option<u64>,
    /// The last sequence number that can still be trusted (`Some(0)`: none), when known.
    pub trusted_up_to: Option<u64>,
    pub problem: String,
}

impl ChainBreak {
    fn describe(&self) -> String {
        let mut s = self.input.clone();
        if self.line > 0 {
            s.push_str(&format!(": line {}", self.line));
        }
        if let Some(seq) = self.seq {
            s.push_str(&format!(" (seq {seq})"));
        }
        s.push_str(&format!(": {}", self.problem));
        match self.trusted_up_to {
            Some(0) => s.push_str("; trust ends before seq 1"),
            Some(n) => s.push_str(&format!("; trust ends at seq {n}")),
            None => {}
        }
        s
    }
}

/// What a log that verifies holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: usize,
    /// Lines that are not audit records (logs mixed in, torn writes).
    pub skipped: usize,
    /// Runs of linked records: one per process start or leadership change.
    pub segments: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub signatures_checked: bool,
    /// The checkpointed sequence number found in the log.
    pub checkpoint_seq: Option<u64>,
    /// Records after the checkpoint (signed, not yet anchored).
    pub after_checkpoint: usize,
    pub notes: Vec<String>,
}

struct Link {
    source: String,
    line: usize,
    seq: u64,
    prev: String,
}

/// Check audit logs given as `(name, text)` — one per replica or file, each in write order —
/// with the audit public key (signatures) and the cluster checkpoint (truncation, rewriting).
/// Without a key only hashes and links are checked; without a checkpoint the tail is not.
pub fn verify_log(
    sources: &[(&str, &str)],
    key: Option<&PublicKey>,
    checkpoint: Option<&Checkpoint>,
) -> Result<Summary, ChainBreak> {
    if let (Some(k), Some(cp)) = (key, checkpoint) {
        cp.check_signature(k).map_err(|p| ChainBreak {
            input: "checkpoint".into(),
            line: 0,
            seq: Some(cp.seq),
            trusted_up_to: None,
            problem: format!("the checkpoint is not trustworthy: {p}"),
        })?;
    }
    let mut s = Summary { signatures_checked: key.is_some(), ..Summary::default() };
    let mut known: HashMap<String, u64> = HashMap::new();
    let mut by_replica: HashMap<(String, u64), String> = HashMap::new();
    let mut links: Vec<Link> = Vec::new();
    let mut starts = 0usize;
    for (name, text) in sources {
        let mut last: Option<(u64, String)> = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let trusted = last.as_ref().map(|(n, _)| *n);
            let brk = |seq: Option<u64>, trusted: Option<u64>, problem: String| ChainBreak {
                input: (*name).to_string(),
                line: i + 1,
                seq,
                trusted_up_to: trusted,
                problem,
            };
            let p = match parse_line(line) {
                Ok(p) => p,
                Err(LineError::NotARecord) => {
                    s.skipped += 1;
                    continue;
                }
                Err(LineError::Broken(why)) => {
                    return Err(brk(seq_hint(line), trusted.or(Some(0)), format!("record {why}")));
                }
            };
            let r = &p.record;
            if let Some(k) = key {
                p.check_signature(k).map_err(|why| brk(Some(r.seq), trusted.or(Some(0)), format!("record {why}")))?;
            }
            let from_file = r.action == CHAIN_RESUMED && r.reason.as_deref() == Some(RESUMED_FROM_FILE);
            match &last {
                None => {
                    s.segments += 1;
                    if r.action == CHAIN_STARTED {
                        starts += 1;
                        if r.prev != GENESIS || r.seq != 1 {
                            return Err(brk(
                                Some(r.seq),
                                Some(0),
                                "a chain start that is not seq 1 after GENESIS".into(),
                            ));
                        }
                    } else {
                        // A resumed chain, or a rotated file that continues another input.
                        links.push(Link { source: (*name).into(), line: i + 1, seq: r.seq, prev: r.prev.clone() });
                    }
                }
                Some(_) if r.action == CHAIN_RESUMED && !from_file => {
                    // A new leader (or a restart without its file) continues the anchored head.
                    s.segments += 1;
                    links.push(Link { source: (*name).into(), line: i + 1, seq: r.seq, prev: r.prev.clone() });
                }
                Some((ls, _)) if r.action == CHAIN_STARTED => {
                    return Err(brk(
                        Some(r.seq),
                        Some(*ls),
                        "the chain restarts from GENESIS here: what came before cannot be linked".into(),
                    ));
                }
                Some((ls, lh)) => {
                    if r.prev != *lh || Some(r.seq) != ls.checked_add(1) {
                        let problem = if r.seq > ls.saturating_add(1) && r.prev != *lh {
                            if Some(r.seq) == ls.checked_add(2) {
                                format!("record seq {} is missing (removed)", ls.saturating_add(1))
                            } else {
                                format!(
                                    "records seq {} to {} are missing (removed)",
                                    ls.saturating_add(1),
                                    r.seq.saturating_sub(1)
                                )
                            }
                        } else {
                            format!(
                                "chain broken: this record does not follow seq {ls} (inserted, reordered, or one before it altered)"
                            )
                        };
                        return Err(brk(Some(r.seq), Some(*ls), problem));
                    }
                    if from_file {
                        s.segments += 1;
                    }
                }
            }
            s.records += 1;
            if r.reason.as_deref() == Some(AUDIT_FILE_TRUNCATED) {
                s.notes.push(format!(
                    "{name} line {} (seq {}): the controller found records cut from its audit file: {}",
                    i + 1,
                    r.seq,
                    r.message.as_deref().unwrap_or_default()
                ));
            }
            s.first_seq = Some(s.first_seq.map_or(r.seq, |f| f.min(r.seq)));
            s.last_seq = Some(s.last_seq.map_or(r.seq, |l| l.max(r.seq)));
            if let Some(actor) = &r.actor {
                by_replica.insert((actor.clone(), r.seq), p.hash.clone());
            }
            known.insert(p.hash.clone(), r.seq);
            last = Some((r.seq, p.hash));
        }
    }
    for l in &links {
        if l.prev == GENESIS {
            continue;
        }
        match known.get(&l.prev) {
            Some(&seq) if seq.checked_add(1) == Some(l.seq) => {}
            Some(&seq) => {
                return Err(ChainBreak {
                    input: l.source.clone(),
                    line: l.line,
                    seq: Some(l.seq),
                    trusted_up_to: Some(l.seq.saturating_sub(1)),
                    problem: format!(
                        "resumes after seq {} but links the record with seq {seq}",
                        l.seq.saturating_sub(1)
                    ),
                });
            }
            None => s.notes.push(format!(
                "{} line {} continues after seq {}, which is not in this input",
                l.source,
                l.line,
                l.seq.saturating_sub(1)
            )),
        }
    }
    if starts > 1 {
        s.notes.push(format!("{starts} chains start from GENESIS: these logs hold more than one history"));
    }
    if let Some(cp) = checkpoint {
        check_checkpoint(&mut s, cp, &known, &by_replica)?;
    }
    Ok(s)
}

fn check_checkpoint(
    s: &mut Summary,
    cp: &Checkpoint,
    known: &HashMap<String, u64>,
    by_replica: &HashMap<(String, u64), String>,
) -> Result<(), ChainBreak> {
    let whole = |trusted_up_to: Option<u64>, problem: String| ChainBreak {
        input: "log".into(),
        line: 0,
        seq: Some(cp.seq),
        trusted_up_to,
        problem,
    };
    let at = format!("the checkpoint written by {} at {}", cp.replica, cp.time);
    match known.get(&cp.hash) {
        Some(&seq) if seq == cp.seq => {
            s.checkpoint_seq = Some(seq);
            s.after_checkpoint = by_replica.keys().filter(|(_, n)| *n > seq).count();
            Ok(())
        }
        Some(&seq) => Err(whole(None, format!("{at} names seq {} but that record has seq {seq}", cp.seq))),
        None if by_replica.contains_key(&(cp.replica.clone(), cp.seq)) => Err(whole(
            None,
            format!(
                "the record at seq {} differs from {at}: the log was rewritten at or before seq {}",
                cp.seq, cp.seq
            ),
        )),
        None => {
            let below = by_replica.keys().filter(|(_, n)| *n < cp.seq).map(|(_, n)| *n).max().unwrap_or(0);
            let above = by_replica.keys().any(|(_, n)| *n > cp.seq);
            if above {
                Err(whole(Some(below), format!("record seq {} that {at} anchors is missing", cp.seq)))
            } else {
                Err(whole(
                    Some(below),
                    format!(
                        "truncated: the log ends at seq {below}, but {at} anchors seq {}: records are missing from its end (a log captured before {} must be captured again)",
                        cp.seq, cp.time
                    ),
                ))
            }
        }
    }
}

/// The `seq` a broken line claims, for the message.
fn seq_hint(line: &str) -> Option<u64> {
    if line.len() > super::MAX_LINE_BYTES {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("seq")?.as_u64()
}

/// Check one log's hashes and links (no key, no checkpoint); the number of records.
pub fn verify_chain<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<usize, ChainBreak> {
    let text: String = lines.into_iter().flat_map(|l| [l, "\n"]).collect();
    verify_log(&[("log", &text)], None, None).map(|s| s.records)
}
