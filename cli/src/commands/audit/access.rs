//! `gitseal audit access NAMESPACE/NAME`: every subject RBAC lets read a Secret, found from
//! the Roles, ClusterRoles and bindings ([`crate::rbac`]) and each confirmed with a
//! SubjectAccessReview, so the list is what the API server itself would allow. With `--log`,
//! who *did* read it is shown beside each subject (its `SecretRead` records, [`super::reads`]),
//! and readers no subject accounts for (system:masters, other authorizers) are listed after.

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use serde_json::{Value, json};

use gitseal_shared::audit::AuditRecord;

use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, Input, Output, ReadSource};
use crate::rbac::{self, Grant, Policy, Who};
use crate::{io, output, table};

/// One subject and what the API server said about each verb.
#[derive(Debug)]
struct Checked {
    grant: Grant,
    /// Verbs the SubjectAccessReview allowed.
    confirmed: Vec<&'static str>,
}

pub fn run(
    cfg: &ClusterConfig,
    namespace: &str,
    name: &str,
    all: bool,
    log: Option<&Input>,
    out: Output,
) -> Result<()> {
    let did = log
        .map(|input| super::reads::load(&ReadSource::Controller(input.clone()), namespace, name, false))
        .transpose()?;
    let (checked, hidden) = cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let policy = fetch(&cluster, namespace).await?;
        let grants = rbac::who_can_read(&policy, namespace, name);
        let hidden = if all { 0 } else { grants.iter().filter(|g| g.who.is_system()).count() };
        let shown: Vec<Grant> = grants.into_iter().filter(|g| all || !g.who.is_system()).collect();
        let cluster = &cluster;
        let checked: Vec<Checked> = futures::stream::iter(shown)
            .map(|grant| async move {
                let mut confirmed = Vec::new();
                for verb in grant.verbs.iter().copied() {
                    if review(cluster, &grant, verb, namespace, name).await? {
                        confirmed.push(verb);
                    }
                }
                Ok::<_, anyhow::Error>(Checked { grant, confirmed })
            })
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        Ok((checked, hidden))
    })?;
    print(&checked, namespace, name, hidden, did.as_deref(), out)
}

/// Whether `subject` made the read `rec` (for a Group: a member did).
fn read_by(who: &Who, ns: &str, rec: &AuditRecord) -> bool {
    let Some(c) = &rec.caller else { return false };
    match who.kind.as_str() {
        "Group" => c.groups.iter().any(|g| g == &who.name),
        "ServiceAccount" => {
            c.user == format!("system:serviceaccount:{}:{}", who.namespace.as_deref().unwrap_or(ns), who.name)
        }
        _ => c.user == who.name,
    }
}

/// Successful reads by `who`: how many, and the time of the last.
fn reads_of<'a>(who: &Who, ns: &str, did: &'a [AuditRecord]) -> (usize, Option<&'a str>) {
    let mine: Vec<&AuditRecord> =
        did.iter().filter(|r| r.outcome == gitseal_shared::audit::Outcome::Success && read_by(who, ns, r)).collect();
    (mine.len(), mine.iter().map(|r| r.time.as_str()).max())
}

/// Users who read the Secret but match no subject that RBAC lets read it.
fn unexplained<'a>(checked: &[Checked], ns: &str, did: &'a [AuditRecord]) -> Vec<(&'a str, usize, &'a str)> {
    let mut users: std::collections::BTreeMap<&str, (usize, &str)> = std::collections::BTreeMap::new();
    for r in did.iter().filter(|r| r.outcome == gitseal_shared::audit::Outcome::Success) {
        if checked.iter().any(|c| read_by(&c.grant.who, ns, r)) {
            continue;
        }
        let user = r.caller.as_ref().map_or("-", |c| c.user.as_str());
        let e = users.entry(user).or_insert((0, ""));
        e.0 += 1;
        e.1 = e.1.max(r.time.as_str());
    }
    users.into_iter().map(|(u, (n, t))| (u, n, t)).collect()
}

async fn fetch(cluster: &Cluster, ns: &str) -> Result<Policy> {
    let c = &cluster.client;
    let lp = ListParams::default();
    let denied = |what: &str, e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
            "you may not list {what}: audit access reads RBAC (ask for list on roles, rolebindings, clusterroles and clusterrolebindings)"
        ),
        _ => cluster.fail(&format!("listing {what}"), e),
    };
    Ok(Policy {
        roles: kube::Api::<Role>::namespaced(c.clone(), ns).list(&lp).await.map_err(|e| denied("roles", e))?.items,
        role_bindings: kube::Api::<RoleBinding>::namespaced(c.clone(), ns)
            .list(&lp)
            .await
            .map_err(|e| denied("rolebindings", e))?
            .items,
        cluster_roles: kube::Api::<ClusterRole>::all(c.clone())
            .list(&lp)
            .await
            .map_err(|e| denied("clusterroles", e))?
            .items,
        cluster_role_bindings: kube::Api::<ClusterRoleBinding>::all(c.clone())
            .list(&lp)
            .await
            .map_err(|e| denied("clusterrolebindings", e))?
            .items,
    })
}

/// Ask the API server whether `grant`'s subject may `verb` the Secret.
async fn review(cluster: &Cluster, grant: &Grant, verb: &str, ns: &str, name: &str) -> Result<bool> {
    let who = &grant.who;
    let mut spec = json!({"resourceAttributes": {"namespace": ns, "verb": verb, "group": "", "resource": "secrets", "name": name}});
    match who.kind.as_str() {
        "Group" => spec["groups"] = json!([who.name]),
        "ServiceAccount" => {
            spec["user"] =
                format!("system:serviceaccount:{}:{}", who.namespace.as_deref().unwrap_or(ns), who.name).into()
        }
        _ => spec["user"] = who.name.clone().into(),
    }
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
    let request = http::Request::post("/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body)?)?;
    match cluster.client.request::<Value>(request).await {
        Ok(v) => Ok(v.pointer("/status/allowed").and_then(Value::as_bool).unwrap_or(false)),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(anyhow::anyhow!(
            "you may not create subjectaccessreviews: audit access confirms each subject with one (ask for create on subjectaccessreviews.authorization.k8s.io)"
        )),
        Err(e) => Err(cluster.fail("reviewing access", e)),
    }
}

fn print(
    checked: &[Checked],
    ns: &str,
    name: &str,
    hidden: usize,
    did: Option<&[AuditRecord]>,
    out: Output,
) -> Result<()> {
    let verbs = |v: &mut dyn Iterator<Item = &'static str>| v.collect::<Vec<_>>().join(",");
    match out {
        Output::Json | Output::Yaml => {
            let subjects: Vec<Value> = checked
                .iter()
                .map(|c| {
                    let mut v = json!({
                        "kind": c.grant.who.kind, "name": c.grant.who.name, "namespace": c.grant.who.namespace,
                        "verbs": c.grant.verbs, "confirmed": c.confirmed, "via": c.grant.via,
                    });
                    if let Some(did) = did {
                        let (n, last) = reads_of(&c.grant.who, ns, did);
                        v["reads"] = n.into();
                        v["lastRead"] = last.into();
                    }
                    v
                })
                .collect();
            let mut report = json!({"secret": {"namespace": ns, "name": name}, "subjects": subjects, "hiddenSystemSubjects": hidden});
            if let Some(did) = did {
                report["otherReaders"] = unexplained(checked, ns, did)
                    .into_iter()
                    .map(|(user, n, last)| json!({"user": user, "reads": n, "lastRead": last}))
                    .collect();
            }
            output::print_structured(&report, out == Output::Yaml)
        }
        Output::Table | Output::Wide => {
            let rows: Vec<[String; 8]> = checked
                .iter()
                .map(|c| {
                    let confirmed = if c.confirmed.len() == c.grant.verbs.len() {
                        "yes".to_string()
                    } else if c.confirmed.is_empty() {
                        "no".to_string()
                    } else {
                        format!("only {}", c.confirmed.join(","))
                    };
                    let via: Vec<&str> = c.grant.via.iter().map(String::as_str).collect();
                    let via = if out == Output::Wide || via.len() == 1 {
                        via.join("; ")
                    } else {
                        format!("{} (+{} more, -o wide)", via[0], via.len() - 1)
                    };
                    [
                        c.grant.who.kind.clone(),
                        c.grant.who.name.clone(),
                        c.grant.who.namespace.clone().unwrap_or_else(|| "-".into()),
                        verbs(&mut c.grant.verbs.iter().copied()),
                        confirmed,
                        via,
                        did.map_or(String::new(), |d| reads_of(&c.grant.who, ns, d).0.to_string()),
                        did.map_or(String::new(), |d| reads_of(&c.grant.who, ns, d).1.unwrap_or("-").to_string()),
                    ]
                })
                .collect();
            let (reads_h, last_h) = if did.is_some() { ("READS", "LAST-READ") } else { ("", "") };
            let mut text =
                table::render(["KIND", "NAME", "NAMESPACE", "VERBS", "CONFIRMED", "VIA", reads_h, last_h], &rows);
            text.push_str(&format!("\n{} subject(s) may read Secret {ns}/{name}", checked.len()));
            if hidden > 0 {
                text.push_str(&format!("; {hidden} system subject(s) not shown (--all shows them)"));
            }
            text.push('\n');
            if let Some(did) = did {
                let other = unexplained(checked, ns, did);
                if !other.is_empty() {
                    let rows: Vec<[String; 3]> =
                        other.iter().map(|(u, n, t)| [(*u).to_string(), n.to_string(), (*t).to_string()]).collect();
                    text.push_str("\nRead it without a subject listed above (system:masters, another authorizer, or a system subject --all shows):\n");
                    text.push_str(&table::render(["USER", "READS", "LAST-READ"], &rows));
                }
            }
            io::write_stdout(text.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitseal_shared::audit::{Caller, Outcome};

    fn read(user: &str, groups: &[&str], outcome: Outcome, time: &str) -> AuditRecord {
        let mut r = AuditRecord::new(time.into(), "SecretRead", outcome);
        r.caller = Some(Caller { user: user.into(), groups: groups.iter().map(|g| (*g).to_string()).collect() });
        r
    }

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Checked {
        let who = Who { kind: kind.into(), name: name.into(), namespace: namespace.map(Into::into) };
        Checked { grant: Grant { who, verbs: ["get"].into(), via: Default::default() }, confirmed: vec!["get"] }
    }

    #[test]
    fn reads_are_counted_per_subject_and_the_unexplained_readers_listed() {
        let did = [
            read("alice", &["devs"], Outcome::Success, "2026-01-01T00:00:01Z"),
            read("alice", &["devs"], Outcome::Success, "2026-01-01T00:00:03Z"),
            read("bob", &["devs"], Outcome::Success, "2026-01-01T00:00:02Z"),
            read("system:serviceaccount:app:ci", &[], Outcome::Success, "2026-01-01T00:00:04Z"),
            read("root", &["system:masters"], Outcome::Success, "2026-01-01T00:00:05Z"),
            read("mallory", &[], Outcome::Failure, "2026-01-01T00:00:06Z"),
        ];
        let checked =
            [subject("User", "alice", None), subject("Group", "devs", None), subject("ServiceAccount", "ci", None)];
        assert_eq!(reads_of(&checked[0].grant.who, "app", &did), (2, Some("2026-01-01T00:00:03Z")));
        assert_eq!(reads_of(&checked[1].grant.who, "app", &did).0, 3, "a group counts its members' reads");
        assert_eq!(reads_of(&checked[2].grant.who, "app", &did).0, 1, "a ServiceAccount of the Secret's namespace");
        assert_eq!(
            unexplained(&checked, "app", &did),
            vec![("root", 1, "2026-01-01T00:00:05Z")],
            "refused attempts are not reads; readers outside RBAC are"
        );
    }
}
