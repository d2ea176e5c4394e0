//! kube-apiserver audit events (`audit.k8s.io/v1`) → `SecretRead` audit records.
//!
//! The kube-apiserver records who read a Secret; gitseal only needs to keep that account beside
//! its own trail. Two ways in, one parser: the controller's audit webhook receives `EventList`s
//! ([`parse_event_list`]), and `gitseal audit reads --apiserver-log` reads the apiserver's audit
//! log file, one `Event` per line ([`parse_event_line`]). [`secret_read`] turns one event into a
//! record, or `None` when the event is not a completed read of Secrets.
//!
//! Guarantees: no input panics; every string taken from an event is cut to a fixed size and every
//! list to a fixed length (an event is trusted only as far as its sender was authenticated, and
//! even then it must not grow the audit log without bound). Names longer than Kubernetes allows
//! make the event irrelevant rather than truncated, so two objects are never conflated. Pure:
//! no I/O, no clock (the caller passes the time to use when an event carries none).

use serde::{Deserialize, Deserializer};

use crate::audit::{AuditObject, AuditRecord, Caller, Outcome, ReadScope, SecretRead};

/// The action of the records [`secret_read`] makes.
pub const SECRET_READ: &str = "SecretRead";

/// Most events one webhook batch may carry (the apiserver's `--audit-webhook-batch-max-size`
/// defaults to 400).
pub const MAX_EVENTS: usize = 2000;
/// Longest object name or namespace Kubernetes allows (DNS subdomain).
pub const MAX_NAME: usize = 253;
pub const MAX_USER: usize = 512;
pub const MAX_GROUPS: usize = 64;
pub const MAX_GROUP: usize = 256;
pub const MAX_SOURCE_IPS: usize = 16;
pub const MAX_IP: usize = 64;
pub const MAX_USER_AGENT: usize = 512;
pub const MAX_AUDIT_ID: usize = 128;
pub const MAX_TIME: usize = 64;

/// Why a body or line is not audit events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("not an audit.k8s.io/v1 {expected}: {detail}")]
    Malformed { expected: &'static str, detail: String },
    #[error("{count} events in one batch, more than the {max} accepted (lower --audit-webhook-batch-max-size)")]
    TooManyEvents { count: usize, max: usize },
}

fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parts of an `audit.k8s.io/v1` `Event` gitseal reads; every other field is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Event {
    #[serde(rename = "auditID", default, deserialize_with = "nullable")]
    pub audit_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub stage: String,
    #[serde(default, deserialize_with = "nullable")]
    pub verb: String,
    #[serde(default, deserialize_with = "nullable")]
    pub user: UserInfo,
    #[serde(default)]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", default, deserialize_with = "nullable")]
    pub source_ips: Vec<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    #[serde(default)]
    pub stage_timestamp: Option<String>,
    #[serde(default)]
    pub request_received_timestamp: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct UserInfo {
    #[serde(default, deserialize_with = "nullable")]
    pub username: String,
    #[serde(default, deserialize_with = "nullable")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default)]
    pub subresource: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: Option<i32>,
}

#[derive(Deserialize)]
struct EventList {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    items: Vec<Event>,
}

/// A webhook body: an `EventList` of at most [`MAX_EVENTS`] events.
pub fn parse_event_list(body: &[u8]) -> Result<Vec<Event>, ParseError> {
    let malformed = |detail: String| ParseError::Malformed { expected: "EventList", detail };
    let list: EventList = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    if list.kind.as_deref().is_some_and(|k| k != "EventList") {
        return Err(malformed(format!("kind is {:?}", clip(list.kind.as_deref().unwrap_or_default(), 64))));
    }
    if list.items.len() > MAX_EVENTS {
        return Err(ParseError::TooManyEvents { count: list.items.len(), max: MAX_EVENTS });
    }
    Ok(list.items)
}

/// One line of the apiserver's audit log file (`--audit-log-path`, JSON format).
pub fn parse_event_line(line: &str) -> Result<Event, ParseError> {
    serde_json::from_str(line).map_err(|e| ParseError::Malformed { expected: "Event", detail: e.to_string() })
}

/// Cut `s` to at most `max` bytes on a character boundary, marking the cut with `…`.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn caller_of(u: &UserInfo) -> Caller {
    Caller {
        user: clip(&u.username, MAX_USER),
        groups: u.groups.iter().take(MAX_GROUPS).map(|g| clip(g, MAX_GROUP)).collect(),
    }
}

/// Which Secret or Secrets a read covered: `(namespace, name, scope)`.
pub type Covered<'a> = (Option<&'a str>, Option<&'a str>, ReadScope);

/// What a completed read of Secrets covered, or `None` when `ev` is anything else (another
/// stage, verb or resource, a subresource, or names longer than Kubernetes allows).
pub fn covered(ev: &Event) -> Option<Covered<'_>> {
    if ev.stage != "ResponseComplete" || !matches!(ev.verb.as_str(), "get" | "list" | "watch") {
        return None;
    }
    let o = ev.object_ref.as_ref()?;
    let core = o.api_group.as_deref().is_none_or(str::is_empty);
    if !core || o.resource.as_deref() != Some("secrets") || o.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let ns = o.namespace.as_deref().filter(|s| !s.is_empty());
    let name = o.name.as_deref().filter(|s| !s.is_empty());
    if ns.is_some_and(|s| s.len() > MAX_NAME) || name.is_some_and(|s| s.len() > MAX_NAME) {
        return None;
    }
    let scope = match (ns, name) {
        (_, Some(_)) => ReadScope::Object,
        (Some(_), None) => ReadScope::Namespace,
        (None, None) => ReadScope::Cluster,
    };
    Some((ns, name, scope))
}

/// Whether a read that covered `c` read Secret `namespace/name`.
pub fn covers(c: Covered<'_>, namespace: &str, name: &str) -> bool {
    match c {
        (ns, Some(n), ReadScope::Object) => n == name && ns.is_none_or(|ns| ns == namespace),
        (Some(ns), _, ReadScope::Namespace) => ns == namespace,
        (_, _, ReadScope::Cluster) => true,
        _ => false,
    }
}

/// The `SecretRead` record of `ev`, or `None` when [`covered`] says it is not a read of
/// Secrets. `now` is the time used when the event carries no timestamp.
pub fn secret_read(ev: &Event, now: &str) -> Option<AuditRecord> {
    let (ns, name, scope) = covered(ev)?;
    let time = ev.stage_timestamp.as_deref().or(ev.request_received_timestamp.as_deref()).unwrap_or(now);
    let code = ev.response_status.as_ref().and_then(|s| s.code);
    let outcome = if code.is_some_and(|c| (200..300).contains(&c)) { Outcome::Success } else { Outcome::Failure };
    let mut rec = AuditRecord::new(clip(time, MAX_TIME), SECRET_READ, outcome);
    rec.object = Some(AuditObject {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        ..AuditObject::default()
    });
    rec.caller = Some(caller_of(&ev.user));
    rec.read = Some(SecretRead {
        verb: ev.verb.clone(),
        scope,
        audit_id: clip(&ev.audit_id, MAX_AUDIT_ID),
        source_ips: ev.source_ips.iter().take(MAX_SOURCE_IPS).map(|ip| clip(ip, MAX_IP)).collect(),
        user_agent: ev.user_agent.as_deref().map(|ua| clip(ua, MAX_USER_AGENT)),
        impersonated: ev.impersonated_user.as_ref().map(caller_of),
        code,
    });
    Some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(verb: &str, ns: Option<&str>, name: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": "0b1c2d3e-aaaa-bbbb-cccc-000000000001", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/app/secrets/db", "verb": verb,
            "user": {"username": "alice", "groups": ["dev", "system:authenticated"]},
            "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.36.0",
            "objectRef": {"resource": "secrets", "namespace": ns, "name": name, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2026-11-30T05:00:00.000001Z",
            "stageTimestamp": "2026-11-30T05:00:00.004000Z",
        })
    }

    #[test]
    fn a_completed_get_of_a_secret_becomes_a_secret_read_with_identity_and_source() {
        let ev: Event = serde_json::from_value(event("get", Some("app"), Some("db"))).unwrap();
        let r = secret_read(&ev, "now").unwrap();
        assert_eq!(
            (r.action.as_str(), r.outcome, r.time.as_str()),
            (SECRET_READ, Outcome::Success, "2026-11-30T05:00:00.004000Z")
        );
        let o = r.object.unwrap();
        assert_eq!(
            (o.namespace.as_deref(), o.name.as_deref(), o.kind.as_deref()),
            (Some("app"), Some("db"), Some("Secret"))
        );
        let c = r.caller.unwrap();
        assert_eq!((c.user.as_str(), c.groups.len()), ("alice", 2));
        let read = r.read.unwrap();
        assert_eq!((read.verb.as_str(), read.scope, read.code), ("get", ReadScope::Object, Some(200)));
        assert_eq!(read.source_ips, vec!["10.0.0.7"]);
        assert_eq!(read.user_agent.as_deref(), Some("kubectl/v1.36.0"));
    }

    #[test]
    fn other_stages_verbs_resources_and_subresources_are_not_reads() {
        let base = event("get", Some("app"), Some("db"));
        let variants: [(&str, serde_json::Value); 5] = [
            ("/stage", "ResponseStarted".into()),
            ("/verb", "delete".into()),
            ("/objectRef/resource", "configmaps".into()),
            ("/objectRef/apiGroup", "example.com".into()),
            ("/objectRef/subresource", "status".into()),
        ];
        for (ptr, v) in variants {
            let mut e = base.clone();
            let (parent, key) = ptr.rsplit_once('/').unwrap();
            e.pointer_mut(if parent.is_empty() { "" } else { parent }).unwrap()[key] = v;
            let ev: Event = serde_json::from_value(e).unwrap();
            assert!(secret_read(&ev, "now").is_none(), "{ptr} must make it irrelevant");
        }
    }

    #[test]
    fn a_list_without_a_name_covers_its_namespace_and_a_cluster_list_covers_all() {
        let ns_list: Event = serde_json::from_value(event("list", Some("app"), None)).unwrap();
        let all: Event = serde_json::from_value(event("watch", None, None)).unwrap();
        let c = covered(&ns_list).unwrap();
        assert_eq!(c.2, ReadScope::Namespace);
        assert!(covers(c, "app", "db") && !covers(c, "other", "db"));
        let c = covered(&all).unwrap();
        assert_eq!(c.2, ReadScope::Cluster);
        assert!(covers(c, "any", "thing"));
        let get: Event = serde_json::from_value(event("get", Some("app"), Some("db"))).unwrap();
        let c = covered(&get).unwrap();
        assert!(covers(c, "app", "db") && !covers(c, "app", "db2") && !covers(c, "dev", "db"));
    }

    #[test]
    fn a_refused_read_is_a_failure_and_oversized_fields_are_cut() {
        let mut e = event("get", Some("app"), Some("db"));
        e["responseStatus"]["code"] = 403.into();
        e["userAgent"] = "é".repeat(2000).into();
        e["user"]["groups"] = serde_json::Value::Array((0..500).map(|i| format!("g{i}").into()).collect());
        let r = secret_read(&serde_json::from_value(e).unwrap(), "now").unwrap();
        assert_eq!(r.outcome, Outcome::Failure);
        let read = r.read.unwrap();
        assert!(read.user_agent.unwrap().len() <= MAX_USER_AGENT);
        assert_eq!(r.caller.unwrap().groups.len(), MAX_GROUPS);
        let mut e = event("get", Some("app"), Some("db"));
        e["objectRef"]["name"] = "x".repeat(MAX_NAME + 1).into();
        assert!(secret_read(&serde_json::from_value(e).unwrap(), "now").is_none());
    }

    #[test]
    fn an_event_list_is_parsed_and_a_huge_or_foreign_one_is_refused() {
        let list = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
            "items": [event("get", Some("app"), Some("db")), event("list", Some("app"), None)]});
        assert_eq!(parse_event_list(&serde_json::to_vec(&list).unwrap()).unwrap().len(), 2);
        let foreign = serde_json::json!({"kind": "Status", "items": []});
        assert!(matches!(parse_event_list(&serde_json::to_vec(&foreign).unwrap()), Err(ParseError::Malformed { .. })));
        let many = serde_json::json!({"kind": "EventList", "items": vec![serde_json::json!({}); MAX_EVENTS + 1]});
        assert!(matches!(parse_event_list(&serde_json::to_vec(&many).unwrap()), Err(ParseError::TooManyEvents { .. })));
        assert!(parse_event_list(b"{\"items\": null}").unwrap().is_empty());
        assert!(parse_event_line("not json").is_err());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            "[a-zA-Z0-9é/:._-]{0,12}".prop_map(Into::into),
            prop_oneof![
                Just("ResponseComplete"),
                Just("get"),
                Just("list"),
                Just("secrets"),
                Just("EventList"),
                Just("")
            ]
            .prop_map(Into::into),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let keys = prop_oneof![
                Just("kind"),
                Just("items"),
                Just("stage"),
                Just("verb"),
                Just("user"),
                Just("username"),
                Just("groups"),
                Just("objectRef"),
                Just("resource"),
                Just("namespace"),
                Just("name"),
                Just("sourceIPs"),
                Just("responseStatus"),
                Just("code"),
                Just("stageTimestamp"),
                Just("auditID"),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(keys.prop_map(str::to_string), inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics_the_parser(v in json_value()) {
            let body = serde_json::to_vec(&v).unwrap();
            if let Ok(events) = parse_event_list(&body) {
                for e in &events {
                    let _ = secret_read(e, "now");
                }
            }
            if let Ok(e) = parse_event_line(&String::from_utf8_lossy(&body)) {
                let _ = secret_read(&e, "now");
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_parser(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_event_list(&body);
            let _ = parse_event_line(&String::from_utf8_lossy(&body));
        }

        #[test]
        fn clipping_respects_the_limit_and_char_boundaries(s in "\\PC{0,80}", max in 4usize..40) {
            let c = clip(&s, max);
            prop_assert!(c.len() <= max);
            if s.len() <= max {
                prop_assert_eq!(c, s);
            }
        }
    }
}
