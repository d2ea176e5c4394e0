//! Audit records, their signed hash chain, and the checkpoint that anchors it.
//!
//! Every unseal, drift repair, key operation and API call becomes one JSON line:
//!
//! ```text
//! {"time":…,"action":…,…,"seq":7,"prev":"<hash of seq 6>","hash":"<sha256 hex>","sig":"<ed25519 b64>"}
//! ```
//!
//! `hash` is the SHA-256 of the exact bytes of the line before `,"hash"` with a closing `}`
//! (the "body"), so any byte changed, added or removed in a line — an extra JSON field too —
//! breaks it. `sig` is the controller's Ed25519 audit key over that hash. `seq` counts records
//! across the whole cluster history and `prev` links each record to the one before, so a removed
//! or inserted record breaks the chain at the next one.
//!
//! **Why every record is signed** (not only checkpoints): an Ed25519 signature costs about
//! 20 µs, against milliseconds of RSA-OAEP and API-server round trips per unseal (measured by the
//! `audit_overhead` bench); in exchange a rewritten record is pinned to its own sequence number
//! and records written after the last checkpoint are still authenticated.
//!
//! A process that starts writes [`CHAIN_RESUMED`] first, linking the head it knows (the last
//! record of its file or the cluster [`Checkpoint`]); only a cluster with no history at all
//! writes [`CHAIN_STARTED`] from [`GENESIS`]. [`verify_log`] checks lines from one or more
//! sources against the public key and a checkpoint, and says at which sequence number trust ends.
//! Records never hold secret values.

mod sign;
mod verify;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use sign::{PublicKey, SigningKey};
pub use verify::{AUDIT_FILE_TRUNCATED, ChainBreak, RESUMED_FROM_FILE, Summary, verify_chain, verify_log};

/// The `prev` of the first record of a cluster's history.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Action of the first record of a cluster's history.
pub const CHAIN_STARTED: &str = "ChainStarted";
/// Action of the first record a process writes when a history exists: it links that head.
pub const CHAIN_RESUMED: &str = "ChainResumed";
/// Longest line taken as an audit record (real ones are well under 2 KiB).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const HASH_MARK: &str = ",\"hash\":\"";
const SIG_MARK: &str = "\",\"sig\":\"";
const RECORD_DOMAIN: &[u8] = b"gitseal-audit-record-v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"gitseal-audit-checkpoint-v1\0";

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

/// One audit record. `hash` and `sig` are filled when a line is read; the writer leaves them
/// empty and appends them to the serialized body (see the module docs).
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
    /// Position in the cluster's history (1 is the first record ever).
    #[serde(default)]
    pub seq: u64,
    pub prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
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
            seq: 0,
            prev: GENESIS.into(),
            hash: None,
            sig: None,
        }
    }
}

/// The head of a chain: the last record written (or [`GENESIS`] at sequence 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    seq: u64,
    last: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain { seq: 0, last: GENESIS.into() }
    }
}

impl Chain {
    /// Continue after the record `seq` whose hash is `hash`.
    pub fn at(seq: u64, hash: &str) -> Chain {
        Chain { seq, last: hash.into() }
    }

    /// Continue a chain whose last line is `last_line`, if it is a record signed by `key`.
    pub fn resume(last_line: &str, key: &PublicKey) -> Option<Chain> {
        let rec = parse_line(last_line).ok()?;
        rec.check_signature(key).ok()?;
        Some(Chain { seq: rec.record.seq, last: rec.hash })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn hash(&self) -> &str {
        &self.last
    }

    /// The line (without newline) that links `record` after this head, signed with `key`, and
    /// the head after it. Nothing changes here: the writer adopts the new head only once the
    /// line is written, so a failed write never advances the chain.
    pub fn next_line(&self, mut record: AuditRecord, key: &SigningKey) -> (String, Chain) {
        record.seq = self.seq.saturating_add(1);
        record.prev = self.last.clone();
        record.hash = None;
        record.sig = None;
        // Serializing a plain struct of strings and integers cannot fail.
        let body = serde_json::to_string(&record).unwrap_or_else(|_| "{}".into());
        let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
        let hash = hex(&digest);
        let sig = key.sign_record(&digest);
        let mut line = body;
        line.pop(); // the closing brace; the body is a JSON object
        line.push_str(HASH_MARK);
        line.push_str(&hash);
        line.push_str(SIG_MARK);
        line.push_str(&sig);
        line.push_str("\"}");
        (line, Chain { seq: record.seq, last: hash })
    }

    /// [`Self::next_line`] and adopt the new head at once (tests, benches, tools).
    pub fn seal(&mut self, record: AuditRecord, key: &SigningKey) -> String {
        let (line, next) = self.next_line(record, key);
        *self = next;
        line
    }
}

/// A record read back from a line, with the hash of its bytes.
#[derive(Debug, Clone)]
pub struct ParsedLine {
    pub record: AuditRecord,
    pub hash: String,
    digest: [u8; 32],
    sig: String,
}

impl ParsedLine {
    /// Whether `sig` is `key`'s signature of this record.
    pub fn check_signature(&self, key: &PublicKey) -> Result<(), &'static str> {
        key.verify_record(&self.digest, &self.sig)
    }
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not an audit record at all (a log line mixed in, a torn write, an over-long line).
    NotARecord,
    /// Claims to be a record (has `hash` or `seq`) but is not one as written: what is wrong.
    Broken(String),
}

/// Read one line. Never panics, and reads at most [`MAX_LINE_BYTES`].
pub fn parse_line(line: &str) -> Result<ParsedLine, LineError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.len() > MAX_LINE_BYTES || !line.starts_with('{') {
        return Err(LineError::NotARecord);
    }
    let Some(at) = line.rfind(HASH_MARK) else {
        return Err(looks_like_record(line));
    };
    let (body_open, suffix) = line.split_at(at);
    let Some((hash, sig)) = split_suffix(suffix) else {
        return Err(LineError::Broken("its hash and signature are not in the form the controller writes".into()));
    };
    let body = format!("{body_open}}}");
    let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
    if hex(&digest) != hash {
        return Err(LineError::Broken("altered: its hash does not match its bytes".into()));
    }
    let mut record: AuditRecord =
        serde_json::from_str(&body).map_err(|e| LineError::Broken(format!("hashed, but not an audit record ({e})")))?;
    if record.hash.is_some() || record.sig.is_some() {
        return Err(LineError::Broken("carries a second hash or signature".into()));
    }
    record.hash = Some(hash.to_string());
    record.sig = Some(sig.to_string());
    Ok(ParsedLine { record, hash: hash.to_string(), digest, sig: sig.to_string() })
}

/// `,"hash":"<64 hex>","sig":"<base64>"}` → (hash, sig).
fn split_suffix(suffix: &str) -> Option<(&str, &str)> {
    let rest = suffix.strip_prefix(HASH_MARK)?;
    let (hash, rest) = (rest.get(..64)?, rest.get(64..)?);
    if !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let sig = rest.strip_prefix(SIG_MARK)?.strip_suffix("\"}")?;
    if sig.is_empty() || sig.len() > 128 || !sig.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
        return None;
    }
    Some((hash, sig))
}

/// A line without the hash mark is a record only if it still looks like one (was reformatted).
fn looks_like_record(line: &str) -> LineError {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(m)) if m.contains_key("hash") || m.contains_key("seq") => {
            LineError::Broken("not in the form the controller writes (reformatted?)".into())
        }
        _ => LineError::NotARecord,
    }
}

/// The anchored head of a cluster's history, kept in a Kubernetes object by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The replica that wrote record `seq`.
    pub replica: String,
    pub seq: u64,
    pub hash: String,
    /// RFC 3339 time the checkpoint was taken.
    pub time: String,
    /// Ed25519 signature (base64) by the audit key over the fields above.
    pub sig: String,
}

impl Checkpoint {
    fn signed_bytes(replica: &str, seq: u64, hash: &str, time: &str) -> Vec<u8> {
        let mut v = CHECKPOINT_DOMAIN.to_vec();
        v.extend_from_slice(format!("{replica}\n{seq}\n{hash}\n{time}").as_bytes());
        v
    }

    /// A checkpoint of `head`, written by `replica` at `time`.
    pub fn new(replica: &str, head: &Chain, time: &str, key: &SigningKey) -> Checkpoint {
        let sig = key.sign_raw(&Self::signed_bytes(replica, head.seq, &head.last, time));
        Checkpoint { replica: replica.into(), seq: head.seq, hash: head.last.clone(), time: time.into(), sig }
    }

    pub fn check_signature(&self, key: &PublicKey) -> Result<(), &'static str> {
        key.verify_raw(&Self::signed_bytes(&self.replica, self.seq, &self.hash, &self.time), &self.sig)
    }

    pub fn head(&self) -> Chain {
        Chain::at(self.seq, &self.hash)
    }
}

fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

#[cfg(test)]
mod tests;
