//! The Argo CD health check `deploy/argocd/health.lua` for `gitseal.dev/SealedSecret`, run in a
//! real Lua 5.1 with only the libraries Argo CD opens (see `support`):
//! Healthy when Synced=True for the current generation, Degraded with the controller's message
//! when Synced=False, Progressing while the status is missing or stale.
//!
//! The cases in `deploy/argocd/health_test.yaml` (Argo CD's own layout, so the check can be
//! contributed upstream as is) run through one data-driven test; the named tests pin the four
//! behaviours above on objects built here.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde::Deserialize;
use serde_json::{Value, json};
use support::{Health, eval_health, health_lua, health_of, repo_root};

fn sealed_secret(generation: i64, status: Option<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
        "metadata": {"name": "db", "namespace": "app", "generation": generation},
        "spec": {"encryptedData": {"password": "AgBy3i4OJSWK"}}
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

fn synced(status: &str, reason: &str, message: Option<&str>, observed: i64) -> Value {
    json!({
        "observedGeneration": observed,
        "keyId": "3f2a9c1d",
        "conditions": [{"type": "Synced", "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": "2026-05-01T10:00:00Z"}]
    })
}

#[test]
fn synced_true_for_the_current_generation_is_healthy() {
    let obj = sealed_secret(4, Some(synced("True", "Unsealed", None, 4)));
    assert_eq!(health_of(&obj).unwrap(), Health::new("Healthy", "Unsealed with key 3f2a9c1d"));
}

#[test]
fn synced_false_is_degraded_with_the_controllers_message() {
    let message = "no sealing key can decrypt this SealedSecret";
    let obj = sealed_secret(2, Some(synced("False", "DecryptFailed", Some(message), 2)));
    assert_eq!(health_of(&obj).unwrap(), Health::new("Degraded", message));
    // Without a message the reason is shown rather than nothing.
    let obj = sealed_secret(2, Some(synced("False", "KeyRevoked", None, 2)));
    assert_eq!(health_of(&obj).unwrap(), Health::new("Degraded", "KeyRevoked"));
}

#[test]
fn a_status_for_an_older_generation_is_progressing_whatever_it_says() {
    for condition in ["True", "False"] {
        let obj = sealed_secret(3, Some(synced(condition, "Unsealed", Some("old news"), 2)));
        assert_eq!(
            health_of(&obj).unwrap(),
            Health::new(
                "Progressing",
                "Waiting for gitseal-controller to observe generation 3 (status is for generation 2)"
            ),
            "Synced={condition}"
        );
    }
    let mut obj = sealed_secret(1, Some(synced("True", "Unsealed", None, 1)));
    obj["status"].as_object_mut().unwrap().remove("observedGeneration");
    assert_eq!(
        health_of(&obj).unwrap(),
        Health::new("Progressing", "Waiting for gitseal-controller to observe generation 1")
    );
}

#[test]
fn a_missing_status_is_progressing() {
    let waiting = Health::new("Progressing", "Waiting for gitseal-controller to unseal");
    assert_eq!(health_of(&sealed_secret(1, None)).unwrap(), waiting);
    // A status with the generation but no Synced condition yet, and Synced=Unknown, too.
    assert_eq!(health_of(&sealed_secret(1, Some(json!({"observedGeneration": 1})))).unwrap(), waiting);
    let unknown = sealed_secret(1, Some(synced("Unknown", "Pending", None, 1)));
    assert_eq!(health_of(&unknown).unwrap(), waiting);
}

#[test]
fn a_sealed_secret_being_deleted_is_progressing_and_names_its_finalizers() {
    let mut obj = sealed_secret(2, Some(synced("True", "Unsealed", None, 2)));
    obj["metadata"]["deletionTimestamp"] = json!("2026-05-01T10:05:00Z");
    obj["metadata"]["finalizers"] = json!(["example.com/a", "example.com/b"]);
    assert_eq!(
        health_of(&obj).unwrap(),
        Health::new("Progressing", "Pending deletion; blocked by finalizers: example.com/a, example.com/b")
    );
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTests {
    tests: Vec<HealthCase>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthCase {
    health_status: ExpectedHealth,
    input_path: String,
}

#[derive(Debug, Deserialize)]
struct ExpectedHealth {
    status: String,
    #[serde(default)]
    message: String,
}

#[test]
fn every_case_in_health_test_yaml_gets_the_expected_status_and_message() {
    let dir = repo_root().join("deploy/argocd");
    let cases: HealthTests =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap()).unwrap();
    assert!(cases.tests.len() >= 4, "health_test.yaml has too few cases");
    let mut seen = std::collections::BTreeSet::new();
    for case in &cases.tests {
        let obj: Value = serde_saphyr::from_str(&std::fs::read_to_string(dir.join(&case.input_path)).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", case.input_path));
        let got = health_of(&obj).unwrap_or_else(|e| panic!("{}: {e:#}", case.input_path));
        assert_eq!(got, Health::new(&case.health_status.status, &case.health_status.message), "{}", case.input_path);
        seen.insert(got.status);
    }
    for status in ["Healthy", "Degraded", "Progressing"] {
        assert!(seen.contains(status), "no case in health_test.yaml is {status}");
    }
}

#[test]
fn the_argocd_cm_snippet_carries_health_lua_verbatim() {
    let text = std::fs::read_to_string(repo_root().join("deploy/argocd/argocd-cm.yaml")).unwrap();
    let cm: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let script = cm["data"]["resource.customizations.health.gitseal.dev_SealedSecret"].as_str().unwrap();
    assert_eq!(script, health_lua().unwrap(), "run deploy/generate.sh");
}

#[test]
fn the_script_needs_no_library_argo_cd_does_not_open() {
    // Argo CD opens no `string` or `math` library unless told to; calling one must fail here
    // too, or this harness would hide such a use.
    let probe = "local hs = {} hs.status = string.upper('healthy') return hs";
    assert!(eval_health(probe, &json!({})).is_err(), "the string library should not be loaded");
    // And a status Argo CD does not know is reported, not passed through.
    let bogus = "local hs = {} hs.status = 'Fine' return hs";
    assert!(eval_health(bogus, &json!({})).is_err());
}
