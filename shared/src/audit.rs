//! Audit records and their hash chain.
//!
//! Every unseal, drift repair, key operation and API call becomes one JSON line. Each line
//! carries the SHA-256 of the previous line's record (`prev`) and its own (`hash`), computed
//! over the record serialized without `hash`; so an edited, inserted or deleted line breaks
//! the chain at that point, and [`verify_chain`] says where. Records never hold secret values.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// Who asked, for API calls: the identity the kube-apiserver authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What a read covered: the one Secret it named, or every Secret of a namespace or the cluster
/// (a `list`/`watch` without a name returns them all, gitseal's included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadScope {
    Object,
    Namespace,
    Cluster,
}

/// The kube-apiserver's account of one read of a Secret (`action: SecretRead`). The reader is
/// the record's `caller`, the time its `time` (the event's `stageTimestamp`), the Secret its
/// `object` (no name for a namespace- or cluster-wide read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRead {
    /// `get`, `list` or `watch`.
    pub verb: String,
    pub scope: ReadScope,
    /// The apiserver's audit ID: one request, however many times the event was delivered.
    pub audit_id: String,
    /// Named as in the apiserver's events.
    #[serde(rename = "sourceIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The identity the caller impersonated, if any (then `caller` is who authenticated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated: Option<Caller>,
    /// HTTP status the apiserver answered: a 403 is an attempt, not a read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

/// One audit record. Field order is the serialization order, which the hash depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339 UTC time.
    pub time: String,
    /// PascalCase action: `Unseal`, `DriftRepair`, `KeyGenerated`, `KeyLoaded`, `Verify`, `Rotate`, …
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<AuditObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
    /// For `SecretRead`: how the kube-apiserver says the Secret was read (see
    /// [`crate::apiserver_audit`]). Absent on every other action, so older lines hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<SecretRead>,
    /// Which controller replica wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl AuditRecord {
    pub fn new(time: String, action: &str, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            time,
            action: action.into(),
            object: None,
            key_id: None,
            outcome,
            reason: None,
            message: None,
            caller: None,
            read: None,
            actor: None,
            prev: GENESIS.into(),
            hash: None,
        }
    }

    fn digest(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = None;
        // Serializing a plain struct of strings cannot fail.
        let body = serde_json::to_vec(&unhashed).unwrap_or_default();
        hex(&Sha256::digest(&body))
    }
}

/// Appends records to a chain, one JSON line each.
#[derive(Debug, Clone)]
pub struct Chain {
    last: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain { last: GENESIS.into() }
    }
}

impl Chain {
    /// Continue a chain whose last line is `last_line` (e.g. an existing audit file).
    pub fn resume(last_line: &str) -> Option<Chain> {
        let rec: AuditRecord = serde_json::from_str(last_line.trim()).ok()?;
        Some(Chain { last: rec.hash? })
    }

    /// Link `record` into the chain and return its JSON line (without newline).
    pub fn seal(&mut self, mut record: AuditRecord) -> String {
        record.prev = self.last.clone();
        record.hash = None;
        let hash = record.digest();
        record.hash = Some(hash.clone());
        self.last = hash;
        serde_json::to_string(&record).unwrap_or_default()
    }
}

/// Why a chain does not verify: the 1-based line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ChainBreak {
    pub line: usize,
    pub problem: String,
}

/// Check every line of an audit log. The first record may continue an earlier chain (its
/// `prev` is taken as given); from then on each `prev` must be the previous `hash`. Blank
/// lines are ignored. Returns the number of records.
pub fn verify_chain<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<usize, ChainBreak> {
    let mut prev: Option<String> = None;
    let mut count = 0;
    for (i, line) in lines.into_iter().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let rec: AuditRecord = serde_json::from_str(line)
            .map_err(|e| ChainBreak { line: line_no, problem: format!("not an audit record ({e})") })?;
        let Some(hash) = rec.hash.clone() else {
            return Err(ChainBreak { line: line_no, problem: "record has no hash".into() });
        };
        if rec.digest() != hash {
            return Err(ChainBreak { line: line_no, problem: "record was altered (hash mismatch)".into() });
        }
        if let Some(p) = &prev
            && &rec.prev != p
        {
            return Err(ChainBreak {
                line: line_no,
                problem: "chain broken: a record before this one was removed, inserted or altered".into(),
            });
        }
        prev = Some(hash);
        count += 1;
    }
    Ok(count)
}

fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(n: usize) -> Vec<String> {
        let mut c = Chain::default();
        (0..n)
            .map(|i| {
                let mut r = AuditRecord::new(format!("2026-11-26T00:00:0{i}Z"), "Unseal", Outcome::Success);
                r.key_id = Some(format!("SHA256:k{i}"));
                c.seal(r)
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let lines = chain_of(4);
        assert_eq!(verify_chain(lines.iter().map(String::as_str)), Ok(4));
    }

    #[test]
    fn an_edited_line_breaks_the_chain_at_that_line() {
        let mut lines = chain_of(4);
        lines[2] = lines[2].replace("Success", "Failure").replace("success", "failure");
        let err = verify_chain(lines.iter().map(String::as_str)).unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn a_deleted_line_breaks_the_chain_at_the_next_line() {
        let mut lines = chain_of(4);
        lines.remove(1);
        let err = verify_chain(lines.iter().map(String::as_str)).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.problem.contains("removed"));
    }

    #[test]
    fn a_chain_resumes_from_its_last_line() {
        let lines = chain_of(2);
        let mut c = Chain::resume(&lines[1]).unwrap();
        let next = c.seal(AuditRecord::new("t".into(), "KeyLoaded", Outcome::Success));
        let all: Vec<&str> = lines.iter().map(String::as_str).chain([next.as_str()]).collect();
        assert_eq!(verify_chain(all), Ok(3));
    }
}
