//! Who RBAC lets read a Secret, decided purely from Roles, ClusterRoles and their bindings
//! (`gitseal audit access` fetches them and confirms each answer with a SubjectAccessReview).
//!
//! Covers what the RBAC authorizer does for a namespaced resource: rules with `*` in groups,
//! resources and verbs, `resourceNames`, RoleBindings to Roles or ClusterRoles (scoped to the
//! namespace), ClusterRoleBindings, and aggregated ClusterRoles (their selectors evaluated
//! here too, in case the aggregation controller has not filled the rules in yet).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The verbs that read a Secret.
pub const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

/// A user, group or ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Who {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    pub name: String,
    /// ServiceAccounts only.
    pub namespace: Option<String>,
}

impl Who {
    /// system:* users and groups, and ServiceAccounts of kube-system.
    pub fn is_system(&self) -> bool {
        self.name.starts_with("system:") || self.namespace.as_deref() == Some("kube-system")
    }
}

/// A subject, the read verbs RBAC grants it on the Secret, and through which bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub who: Who,
    pub verbs: BTreeSet<&'static str>,
    pub via: BTreeSet<String>,
}

/// Everything `who_can_read` looks at.
#[derive(Debug, Default)]
pub struct Policy {
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// Every subject that may get, list or watch Secret `name` in `namespace`.
pub fn who_can_read(p: &Policy, namespace: &str, name: &str) -> Vec<Grant> {
    let mut grants: BTreeMap<Who, Grant> = BTreeMap::new();
    let mut add =
        |subjects: &Option<Vec<Subject>>, default_ns: Option<&str>, verbs: &BTreeSet<&'static str>, via: String| {
            for s in subjects.iter().flatten() {
                let namespace = (s.kind == "ServiceAccount")
                    .then(|| s.namespace.clone().or(default_ns.map(str::to_string)))
                    .flatten();
                let who = Who { kind: s.kind.clone(), name: s.name.clone(), namespace };
                let g = grants.entry(who.clone()).or_insert_with(|| Grant {
                    who,
                    verbs: BTreeSet::new(),
                    via: BTreeSet::new(),
                });
                g.verbs.extend(verbs.iter().copied());
                g.via.insert(via.clone());
            }
        };
    for b in &p.cluster_role_bindings {
        let verbs = read_verbs(&cluster_role_rules(p, &b.role_ref.name), name);
        if !verbs.is_empty() {
            let via = format!(
                "ClusterRoleBinding {} → ClusterRole {}",
                b.metadata.name.as_deref().unwrap_or("?"),
                b.role_ref.name
            );
            add(&b.subjects, None, &verbs, via);
        }
    }
    for b in p.role_bindings.iter().filter(|b| b.metadata.namespace.as_deref() == Some(namespace)) {
        let rules = match b.role_ref.kind.as_str() {
            "ClusterRole" => cluster_role_rules(p, &b.role_ref.name),
            _ => p
                .roles
                .iter()
                .filter(|r| {
                    r.metadata.namespace.as_deref() == Some(namespace)
                        && r.metadata.name.as_deref() == Some(&b.role_ref.name)
                })
                .flat_map(|r| r.rules.clone().unwrap_or_default())
                .collect(),
        };
        let verbs = read_verbs(&rules, name);
        if !verbs.is_empty() {
            let via = format!(
                "RoleBinding {namespace}/{} → {} {}",
                b.metadata.name.as_deref().unwrap_or("?"),
                b.role_ref.kind,
                b.role_ref.name
            );
            add(&b.subjects, Some(namespace), &verbs, via);
        }
    }
    grants.into_values().collect()
}

/// The read verbs `rules` grant on Secret `name`.
fn read_verbs(rules: &[PolicyRule], name: &str) -> BTreeSet<&'static str> {
    READ_VERBS.iter().copied().filter(|verb| rules.iter().any(|r| grants(r, verb, name))).collect()
}

/// Whether one rule allows `verb` on Secret `name` (core group).
pub fn grants(rule: &PolicyRule, verb: &str, name: &str) -> bool {
    let has = |list: &[String], want: &str| list.iter().any(|v| v == want || v == "*");
    let names_ok = rule.resource_names.as_ref().is_none_or(|n| n.is_empty() || n.iter().any(|n| n == name));
    has(rule.api_groups.as_deref().unwrap_or_default(), "")
        && has(rule.resources.as_deref().unwrap_or_default(), "secrets")
        && has(&rule.verbs, verb)
        && names_ok
}

/// The rules of ClusterRole `name`: its own, plus those of the ClusterRoles its aggregation
/// rule selects.
fn cluster_role_rules(p: &Policy, name: &str) -> Vec<PolicyRule> {
    let Some(role) = p.cluster_roles.iter().find(|r| r.metadata.name.as_deref() == Some(name)) else {
        return Vec::new();
    };
    let mut rules = role.rules.clone().unwrap_or_default();
    let selectors = role.aggregation_rule.as_ref().and_then(|a| a.cluster_role_selectors.clone()).unwrap_or_default();
    for other in &p.cluster_roles {
        if other.metadata.name.as_deref() == Some(name) {
            continue;
        }
        let labels = other.metadata.labels.clone().unwrap_or_default();
        if selectors.iter().any(|s| selects(s, &labels)) {
            rules.extend(other.rules.clone().unwrap_or_default());
        }
    }
    rules
}

/// Label selector semantics: every matchLabels pair and every expression must hold; an empty
/// selector selects nothing here (as the aggregation controller treats it).
pub fn selects(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = s.match_labels.clone().unwrap_or_default();
    let exprs = s.match_expressions.clone().unwrap_or_default();
    if pairs.is_empty() && exprs.is_empty() {
        return false;
    }
    pairs.iter().all(|(k, v)| labels.get(k) == Some(v))
        && exprs.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            roles: vec![
                from(json!({"metadata": {"name": "db-reader", "namespace": "prod"},
                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["db"], "verbs": ["get"]}]})),
                from(json!({"metadata": {"name": "other", "namespace": "prod"},
                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["cache"], "verbs": ["get"]}]})),
                from(json!({"metadata": {"name": "cm", "namespace": "prod"},
                    "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]})),
            ],
            cluster_roles: vec![
                from(
                    json!({"metadata": {"name": "everything"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
                ),
                from(
                    json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"read-secrets": "true"}}]}}),
                ),
                from(json!({"metadata": {"name": "piece", "labels": {"read-secrets": "true"}},
                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}]})),
            ],
            role_bindings: vec![
                from(
                    json!({"metadata": {"name": "alice", "namespace": "prod"}, "roleRef": {"kind": "Role", "name": "db-reader", "apiGroup": "rbac.authorization.k8s.io"},
                    "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "app"}]}),
                ),
                from(
                    json!({"metadata": {"name": "bob", "namespace": "prod"}, "roleRef": {"kind": "Role", "name": "other", "apiGroup": "rbac.authorization.k8s.io"},
                    "subjects": [{"kind": "User", "name": "bob"}]}),
                ),
                from(
                    json!({"metadata": {"name": "carol", "namespace": "prod"}, "roleRef": {"kind": "Role", "name": "cm", "apiGroup": "rbac.authorization.k8s.io"},
                    "subjects": [{"kind": "User", "name": "carol"}]}),
                ),
                from(
                    json!({"metadata": {"name": "elsewhere", "namespace": "dev"}, "roleRef": {"kind": "ClusterRole", "name": "everything", "apiGroup": "rbac.authorization.k8s.io"},
                    "subjects": [{"kind": "User", "name": "dave"}]}),
                ),
            ],
            cluster_role_bindings: vec![
                from(
                    json!({"metadata": {"name": "ops"}, "roleRef": {"kind": "ClusterRole", "name": "everything", "apiGroup": "rbac.authorization.k8s.io"},
                    "subjects": [{"kind": "Group", "name": "ops"}]}),
                ),
                from(
                    json!({"metadata": {"name": "auditors"}, "roleRef": {"kind": "ClusterRole", "name": "agg", "apiGroup": "rbac.authorization.k8s.io"},
                    "subjects": [{"kind": "Group", "name": "auditors"}, {"kind": "Group", "name": "system:masters"}]}),
                ),
            ],
        }
    }

    #[test]
    fn direct_group_wildcard_and_aggregated_grants_are_found_and_nothing_else() {
        let grants = who_can_read(&policy(), "prod", "db");
        let found: Vec<(String, String, Option<String>, Vec<&str>)> = grants
            .iter()
            .map(|g| {
                (g.who.kind.clone(), g.who.name.clone(), g.who.namespace.clone(), g.verbs.iter().copied().collect())
            })
            .collect();
        assert_eq!(
            found,
            vec![
                ("Group".into(), "auditors".into(), None, vec!["list", "watch"]),
                ("Group".into(), "ops".into(), None, vec!["get", "list", "watch"]),
                ("Group".into(), "system:masters".into(), None, vec!["list", "watch"]),
                ("ServiceAccount".into(), "app".into(), Some("prod".into()), vec!["get"]),
                ("User".into(), "alice".into(), None, vec!["get"]),
            ]
        );
        assert!(grants.iter().find(|g| g.who.name == "system:masters").unwrap().who.is_system());
    }

    #[test]
    fn selectors_follow_label_selector_semantics() {
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let s = |v: serde_json::Value| -> LabelSelector { from(v) };
        assert!(selects(&s(json!({"matchLabels": {"a": "1"}})), &labels));
        assert!(!selects(&s(json!({"matchLabels": {"a": "2"}})), &labels));
        assert!(selects(
            &s(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]})),
            &labels
        ));
        assert!(selects(&s(json!({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]})), &labels));
        assert!(!selects(&s(json!({})), &labels));
    }
}
