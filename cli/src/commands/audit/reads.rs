//! `gitseal audit reads NAMESPACE/NAME`: who read a Secret, from the controller's `SecretRead`
//! records or straight from the kube-apiserver's audit log file (the same parser the
//! controller's webhook uses, [`gitseal_shared::apiserver_audit`]).
//!
//! Both logs are streamed line by line (an apiserver audit log can be gigabytes); a line longer
//! than [`MAX_LINE`] or that is not a record is counted and skipped. A read delivered twice (two
//! replicas, a retried batch) is shown once, by its audit ID.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, IsTerminal as _, Read};

use anyhow::{Context as _, Result};
use gitseal_shared::apiserver_audit::{self, SECRET_READ, covers};
use gitseal_shared::audit::{AuditRecord, ReadScope};

use crate::config::{Input, Output, ReadSource};
use crate::{io, output, table};

/// Longest line read; apiserver events at Metadata level are a few kilobytes.
const MAX_LINE: u64 = 1024 * 1024;

pub fn run(source: &ReadSource, namespace: &str, name: &str, direct: bool, all: bool, out: Output) -> Result<()> {
    let mut reads = load(source, namespace, name, direct)?;
    let before = reads.len();
    if !all {
        reads.retain(|r| !by_system(r));
    }
    print(&reads, namespace, name, before - reads.len(), out)
}

/// Made by a `system:` identity (a ServiceAccount, a node, a control-plane component).
fn by_system(r: &AuditRecord) -> bool {
    r.caller.as_ref().is_some_and(|c| c.user.starts_with("system:"))
}

/// The reads of `namespace/name` in `source`, oldest first as the log has them.
pub fn load(source: &ReadSource, namespace: &str, name: &str, direct: bool) -> Result<Vec<AuditRecord>> {
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let input = match source {
        ReadSource::Controller(i) | ReadSource::Apiserver(i) => i,
    };
    let skipped = each_line(input, |line| {
        // Unparsable lines count as skipped; records or events that are not reads do not.
        let rec = match source {
            ReadSource::Controller(_) => {
                let r: AuditRecord = serde_json::from_str(line).ok()?;
                if r.action != SECRET_READ {
                    return Some(());
                }
                r
            }
            ReadSource::Apiserver(_) => {
                let ev = apiserver_audit::parse_event_line(line).ok()?;
                let Some(r) = apiserver_audit::secret_read(&ev, "") else { return Some(()) };
                r
            }
        };
        if reads(&rec, namespace, name, direct) {
            let id = rec.read.as_ref().map(|r| r.audit_id.clone()).unwrap_or_default();
            if id.is_empty() || seen.insert(id) {
                kept.push(rec);
            }
        }
        Some(())
    })?;
    if skipped > 0 {
        let what = match source {
            ReadSource::Controller(_) => "audit records",
            ReadSource::Apiserver(_) => "audit.k8s.io/v1 Events",
        };
        eprintln!("note: {skipped} line(s) of {} are not {what} and were skipped", input.describe());
    }
    Ok(kept)
}

/// Whether `rec` is a read that covered `namespace/name` (`direct`: one that named it).
fn reads(rec: &AuditRecord, namespace: &str, name: &str, direct: bool) -> bool {
    let (Some(read), Some(o)) = (&rec.read, &rec.object) else { return false };
    if direct && read.scope != ReadScope::Object {
        return false;
    }
    covers((o.namespace.as_deref(), o.name.as_deref(), read.scope), namespace, name)
}

/// Call `f` with each non-blank line; returns how many lines `f` (or the reader) rejected.
fn each_line(input: &Input, mut f: impl FnMut(&str) -> Option<()>) -> Result<usize> {
    let reader: Box<dyn Read> = match input {
        Input::Stdin => {
            if std::io::stdin().is_terminal() {
                eprintln!("(tty detected: expecting audit log lines on stdin)");
            }
            Box::new(std::io::stdin())
        }
        Input::File(p) => Box::new(std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?),
    };
    let mut reader = BufReader::new(reader);
    let mut skipped = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {}", input.describe()))?;
        if n == 0 {
            return Ok(skipped);
        }
        if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            // Too long: drop the rest of the line.
            skipped += 1;
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest).ok();
            continue;
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            skipped += 1;
            continue;
        };
        if !line.trim().is_empty() && f(line.trim()).is_none() {
            skipped += 1;
        }
    }
}

fn print(reads: &[AuditRecord], ns: &str, name: &str, hidden: usize, out: Output) -> Result<()> {
    match out {
        Output::Json | Output::Yaml => {
            // Reads taken from the apiserver's log are no part of gitseal's chain: no seq/prev.
            let values = reads
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r)?;
                    if r.hash.is_none()
                        && let Some(o) = v.as_object_mut()
                    {
                        o.remove("seq");
                        o.remove("prev");
                    }
                    Ok(v)
                })
                .collect::<Result<Vec<_>, serde_json::Error>>()?;
            output::print_structured(&serde_json::Value::Array(values), out == Output::Yaml)
        }
        Output::Table | Output::Wide => {
            let wide = out == Output::Wide;
            let rows: Vec<[String; 8]> = reads
                .iter()
                .map(|r| {
                    let read = r.read.as_ref();
                    let caller = r.caller.as_ref();
                    let mut user = caller.map_or("-".into(), |c| c.user.clone());
                    if let Some(imp) = read.and_then(|x| x.impersonated.as_ref()) {
                        user = format!("{} (as {})", user, imp.user);
                    }
                    let scope = read.map_or("-", |x| match x.scope {
                        ReadScope::Object => "object",
                        ReadScope::Namespace => "namespace",
                        ReadScope::Cluster => "cluster",
                    });
                    [
                        r.time.clone(),
                        user,
                        read.map_or("-".into(), |x| x.verb.clone()),
                        scope.into(),
                        read.map_or("-".into(), |x| x.code.map_or("-".into(), |c| c.to_string())),
                        read.map_or("-".into(), |x| x.source_ips.join(",")),
                        if wide { caller.map_or(String::new(), |c| c.groups.join(",")) } else { String::new() },
                        if wide { read.and_then(|x| x.user_agent.clone()).unwrap_or_default() } else { String::new() },
                    ]
                })
                .collect();
            let header = [
                "TIME",
                "USER",
                "VERB",
                "SCOPE",
                "CODE",
                "SOURCE",
                if wide { "GROUPS" } else { "" },
                if wide { "USER-AGENT" } else { "" },
            ];
            let mut text = table::render(header, &rows);
            text.push_str(&format!("\n{} read(s) of Secret {ns}/{name}", reads.len()));
            if hidden > 0 {
                text.push_str(&format!("; {hidden} by system identities not shown (--all shows them)"));
            }
            text.push('\n');
            io::write_stdout(text.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitseal_shared::audit::{AuditObject, SecretRead};

    fn read(ns: Option<&str>, name: Option<&str>, scope: ReadScope) -> AuditRecord {
        let mut r = AuditRecord::new("t".into(), SECRET_READ, gitseal_shared::audit::Outcome::Success);
        r.object =
            Some(AuditObject { namespace: ns.map(Into::into), name: name.map(Into::into), ..AuditObject::default() });
        r.read = Some(SecretRead {
            verb: "get".into(),
            scope,
            audit_id: "id".into(),
            source_ips: vec![],
            user_agent: None,
            impersonated: None,
            code: Some(200),
        });
        r
    }

    #[test]
    fn namespace_and_cluster_reads_count_unless_direct_is_asked() {
        let named = read(Some("app"), Some("db"), ReadScope::Object);
        let ns = read(Some("app"), None, ReadScope::Namespace);
        let all = read(None, None, ReadScope::Cluster);
        let other = read(Some("app"), Some("other"), ReadScope::Object);
        for r in [&named, &ns, &all] {
            assert!(reads(r, "app", "db", false));
        }
        assert!(reads(&named, "app", "db", true));
        assert!(!reads(&ns, "app", "db", true) && !reads(&all, "app", "db", true));
        assert!(!reads(&other, "app", "db", false));
        assert!(!reads(&ns, "dev", "db", false));
    }
}
