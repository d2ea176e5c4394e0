//! `gitseal audit`: read the controller's audit records (JSON lines), keep those that match
//! the filters, print a table or JSON; `audit verify` checks hashes, links, signatures and the
//! checkpoint; `audit key` prints the public audit key; `audit access` answers who can read a
//! Secret, `audit reads` who did.

mod access;
mod reads;
mod verify;

use anyhow::Result;
use gitseal_shared::audit::{AuditRecord, Outcome};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::online::AuditFilter;
use crate::config::{AuditConfig, Input, Output};
use crate::{io, output, table};

pub fn run(cfg: &AuditConfig) -> Result<()> {
    match cfg {
        AuditConfig::Filter { input, filter, output } => show(input, filter, *output),
        AuditConfig::Verify { inputs, public_key, checkpoint, online } => {
            verify::run(inputs, public_key.as_deref(), checkpoint.as_deref(), online.as_ref())
        }
        AuditConfig::Key { fingerprint, cluster } => verify::key(*fingerprint, cluster),
        AuditConfig::Access { namespace, name, all, log, output, cluster } => {
            access::run(cluster, namespace, name, *all, log.as_ref(), *output)
        }
        AuditConfig::Reads { namespace, name, source, direct, all, output } => {
            reads::run(source, namespace, name, *direct, *all, *output)
        }
    }
}

/// Shown when stdin is a terminal.
const TTY_HINT: &str = "(tty detected: expecting the controller's audit records, JSON lines, on stdin)";

fn show(input: &Input, filter: &AuditFilter, out: Output) -> Result<()> {
    let text = io::read_text_hinted(input, TTY_HINT)?;
    let mut skipped = 0;
    let mut kept = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<AuditRecord>(line) {
            Ok(r) if matches(&r, filter) => kept.push(r),
            Ok(_) => {}
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        eprintln!("note: {skipped} line(s) of {} are not audit records and were skipped", input.describe());
    }
    match out {
        Output::Json | Output::Yaml => output::print_structured(&serde_json::to_value(&kept)?, out == Output::Yaml),
        Output::Table | Output::Wide => {
            let wide = out == Output::Wide;
            let key = |r: &AuditRecord| match &r.key_id {
                Some(k) if wide => k.clone(),
                Some(k) => k.split(',').map(crate::commands::keys::short_id).collect::<Vec<_>>().join(","),
                None => "-".into(),
            };
            let rows: Vec<[String; 8]> = kept
                .iter()
                .map(|r| {
                    [
                        r.time.clone(),
                        r.action.clone(),
                        outcome(r.outcome).into(),
                        object(r),
                        key(r),
                        r.caller.as_ref().map_or("-".into(), |c| c.user.clone()),
                        r.reason.clone().unwrap_or_else(|| "-".into()),
                        if wide { r.message.clone().unwrap_or_default() } else { String::new() },
                    ]
                })
                .collect();
            let header =
                ["TIME", "ACTION", "OUTCOME", "OBJECT", "KEY", "CALLER", "REASON", if wide { "MESSAGE" } else { "" }];
            let mut text = table::render(header, &rows);
            text.push_str(&format!("\n{} record(s)\n", kept.len()));
            io::write_stdout(text.as_bytes())
        }
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

fn object(r: &AuditRecord) -> String {
    match &r.object {
        Some(o) => match (&o.namespace, &o.name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.clone(),
            _ => "-".into(),
        },
        None => "-".into(),
    }
}

/// Whether a record passes every filter given (an empty filter passes everything).
pub fn matches(r: &AuditRecord, f: &AuditFilter) -> bool {
    let object_ok = f.objects.is_empty()
        || r.object.as_ref().is_some_and(|o| {
            f.objects.iter().any(|(ns, name)| {
                o.name.as_deref() == Some(name.as_str())
                    && ns.as_ref().is_none_or(|ns| o.namespace.as_deref() == Some(ns))
            })
        });
    let key_ok = f.key_ids.is_empty()
        || r.key_id.as_deref().is_some_and(|ids| {
            ids.split(',').map(str::trim).any(|id| f.key_ids.iter().any(|want| key_matches(id, want)))
        });
    let action_ok = f.actions.is_empty() || f.actions.contains(&r.action.to_ascii_lowercase());
    let outcome_ok = f.outcome.is_none_or(|o| o == outcome(r.outcome));
    let time = OffsetDateTime::parse(&r.time, &Rfc3339).ok();
    let since_ok = f.since.is_none_or(|s| time.is_some_and(|t| t >= s));
    let until_ok = f.until.is_none_or(|u| time.is_some_and(|t| t < u));
    object_ok && key_ok && action_ok && outcome_ok && since_ok && until_ok
}

/// `SHA256:abc…` matches itself and any prefix of its hash (`abc`, `SHA256:ab`).
fn key_matches(id: &str, want: &str) -> bool {
    let hash = id.strip_prefix("SHA256:").unwrap_or(id);
    let want = want.trim();
    let want_hash = want.strip_prefix("SHA256:").unwrap_or(want);
    id == want || (!want_hash.is_empty() && hash.starts_with(want_hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitseal_shared::audit::{AuditObject, Caller};

    fn record(action: &str, outcome: Outcome, ns: &str, name: &str, key: &str, time: &str) -> AuditRecord {
        let mut r = AuditRecord::new(time.into(), action, outcome);
        r.object = Some(AuditObject { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() });
        r.key_id = Some(key.into());
        r.caller = Some(Caller { user: "alice".into(), groups: vec![] });
        r
    }

    #[test]
    fn every_filter_must_hold() {
        let r = record("Unseal", Outcome::Failure, "prod", "db", "SHA256:abcdef,SHA256:xyz", "2026-01-31T12:00:00Z");
        let t = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        assert!(matches(&r, &AuditFilter::default()));
        let f = |edit: &dyn Fn(&mut AuditFilter)| {
            let mut f = AuditFilter::default();
            edit(&mut f);
            matches(&r, &f)
        };
        assert!(f(&|f| f.objects = vec![(Some("prod".into()), "db".into())]));
        assert!(f(&|f| f.objects = vec![(None, "db".into())]));
        assert!(!f(&|f| f.objects = vec![(Some("dev".into()), "db".into())]));
        assert!(f(&|f| f.key_ids = vec!["xy".into()]));
        assert!(f(&|f| f.key_ids = vec!["SHA256:abc".into()]));
        assert!(!f(&|f| f.key_ids = vec!["bcd".into()]));
        assert!(f(&|f| f.actions = vec!["unseal".into()]));
        assert!(!f(&|f| f.actions = vec!["verify".into()]));
        assert!(f(&|f| f.outcome = Some("failure")));
        assert!(!f(&|f| f.outcome = Some("success")));
        assert!(f(&|f| f.since = Some(t("2026-01-31T12:00:00Z"))));
        assert!(!f(&|f| f.since = Some(t("2026-01-31T12:00:01Z"))));
        assert!(!f(&|f| f.until = Some(t("2026-01-31T12:00:00Z"))));
        assert!(f(&|f| f.until = Some(t("2026-02-01T00:00:00Z"))));
    }
}
