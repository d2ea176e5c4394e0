//! `gitseal audit access NAMESPACE/NAME`: every subject RBAC lets read a Secret, found from
//! the Roles, ClusterRoles and bindings ([`crate::rbac`]) and each confirmed with a
//! SubjectAccessReview, so the list is what the API server itself would allow.

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, Output};
use crate::rbac::{self, Grant, Policy};
use crate::{io, output, table};

/// One subject and what the API server said about each verb.
#[derive(Debug)]
struct Checked {
    grant: Grant,
    /// Verbs the SubjectAccessReview allowed.
    confirmed: Vec<&'static str>,
}

pub fn run(cfg: &ClusterConfig, namespace: &str, name: &str, all: bool, out: Output) -> Result<()> {
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
    print(&checked, namespace, name, hidden, out)
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

fn print(checked: &[Checked], ns: &str, name: &str, hidden: usize, out: Output) -> Result<()> {
    let verbs = |v: &mut dyn Iterator<Item = &'static str>| v.collect::<Vec<_>>().join(",");
    match out {
        Output::Json | Output::Yaml => {
            let subjects: Vec<Value> = checked
                .iter()
                .map(|c| {
                    json!({
                        "kind": c.grant.who.kind, "name": c.grant.who.name, "namespace": c.grant.who.namespace,
                        "verbs": c.grant.verbs, "confirmed": c.confirmed, "via": c.grant.via,
                    })
                })
                .collect();
            let report = json!({"secret": {"namespace": ns, "name": name}, "subjects": subjects, "hiddenSystemSubjects": hidden});
            output::print_structured(&report, out == Output::Yaml)
        }
        Output::Table | Output::Wide => {
            let rows: Vec<[String; 6]> = checked
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
                    ]
                })
                .collect();
            let mut text = table::render(["KIND", "NAME", "NAMESPACE", "VERBS", "CONFIRMED", "VIA"], &rows);
            text.push_str(&format!("\n{} subject(s) may read Secret {ns}/{name}", checked.len()));
            if hidden > 0 {
                text.push_str(&format!("; {hidden} system subject(s) not shown (--all shows them)"));
            }
            text.push('\n');
            io::write_stdout(text.as_bytes())
        }
    }
}
