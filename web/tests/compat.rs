//! What the page seals is what `gitseal seal` seals: the values open with shared's aws-lc-rs
//! decryption in every scope and only for their target, the object and its YAML are byte for
//! byte the ones `gitseal_shared::seal::seal_secret` and `write_documents` make (encrypted
//! values aside, which are random), and a vector pins the bytes for fixed randomness.
//!
//! Run: `cargo test -p gitseal-web --test compat`. Rewrite the vector (after a deliberate
//! format change only): `GITSEAL_WRITE_VECTORS=1 cargo test -p gitseal-web --test compat`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gitseal_keys::{Certificate, parse_private_keys};
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::manifest::{OutputFormat, parse_documents, write_documents};
use gitseal_shared::seal::{SealOptions, seal_secret, unseal};
use gitseal_shared::types::{ApiGroup, sealed_secret_from_value};
use gitseal_shared::value::{DecryptionKey, RecipientSet};
use gitseal_shared::{Scope, SecretBytes};
use gitseal_web::seal::{Item, RANDOM_BYTES_PER_VALUE, Request, seal, seal_json};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

const VALUES: [(&str, &str); 4] = [
    ("password", "correct horse battery staple"),
    ("empty", ""),
    ("unicode.txt", "grüße, 秘密 🔑\nline two\n"),
    ("config_json", "{\"user\":\"admin\",\"token\":\"s3cr3t\"}"),
];

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata")
}

fn cert_pem() -> String {
    std::fs::read_to_string(testdata().join("kubeseal/cert.pem")).unwrap()
}

fn key() -> DecryptionKey {
    let pem = std::fs::read_to_string(testdata().join("kubeseal/key.pem")).unwrap();
    parse_private_keys(&pem).unwrap().remove(0).key
}

fn request(scope: Scope, api: &str, namespace: &str) -> Request {
    Request {
        cert: cert_pem(),
        name: "db".into(),
        namespace: namespace.into(),
        scope: scope.as_str().into(),
        api: api.into(),
        type_: "Opaque".into(),
        data: VALUES.iter().map(|(k, v)| Item { key: k.to_string(), value: v.to_string() }).collect(),
    }
}

/// Fixed, distinct "random" bytes: enough for `n` values.
fn fixed_random(n: usize, salt: u8) -> Vec<u8> {
    (0..n * RANDOM_BYTES_PER_VALUE).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

/// What `gitseal seal` makes of the same Secret (random values: only the shape is compared).
fn gitseal_seal(req: &Request, scope: Scope, api: ApiGroup) -> Value {
    let cert = Certificate::from_pem(&req.cert).unwrap();
    let recipients = RecipientSet::new(vec![cert.recipient().unwrap()]).unwrap();
    let secret = PlainSecret {
        metadata: ObjectMeta {
            name: Some(req.name.clone()),
            namespace: (!req.namespace.is_empty()).then(|| req.namespace.clone()),
            ..Default::default()
        },
        type_: Some(req.type_.clone()),
        immutable: None,
        data: VALUES.iter().map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes()))).collect(),
    };
    let opts = SealOptions { scope: Some(scope), api, ..Default::default() };
    serde_json::to_value(seal_secret(&secret, &recipients, &opts).unwrap()).unwrap()
}

#[test]
fn every_scope_and_group_opens_with_shared_and_matches_gitseal_seal_byte_for_byte() {
    let key = key();
    for scope in Scope::ALL {
        for (api, group) in [("gitseal.dev", ApiGroup::Gitseal), ("bitnami.com", ApiGroup::Bitnami)] {
            let req = request(scope, api, "app");
            let sealed = seal(&req, &fixed_random(VALUES.len(), scope as u8)).unwrap();

            // Same object and YAML as `gitseal seal`, once its random values are swapped in.
            let mut expected = gitseal_seal(&req, scope, group);
            expected["spec"]["encryptedData"] = sealed.object["spec"]["encryptedData"].clone();
            assert_eq!(sealed.object, expected, "{scope} {api}");
            let yaml = write_documents(std::slice::from_ref(&expected), OutputFormat::Yaml).unwrap();
            assert_eq!(sealed.yaml, yaml, "{scope} {api}");

            // And it unseals with shared's aws-lc-rs decryption, to exactly the values.
            let doc = parse_documents(&sealed.yaml).unwrap().remove(0);
            let ss = sealed_secret_from_value(doc.value).unwrap();
            let unsealed = unseal(&ss, &[&key]).unwrap();
            let got: BTreeMap<_, _> =
                unsealed.secret.data.iter().map(|(k, v)| (k.as_str(), v.expose().to_vec())).collect();
            let want: BTreeMap<_, _> = VALUES.iter().map(|(k, v)| (*k, v.as_bytes().to_vec())).collect();
            assert_eq!(got, want, "{scope} {api}");
        }
    }
}

#[test]
fn values_open_only_for_their_target() {
    let key = key();
    for scope in [Scope::Strict, Scope::NamespaceWide] {
        let sealed = seal(&request(scope, "", "app"), &fixed_random(VALUES.len(), 7)).unwrap();
        let mut moved = sealed.object.clone();
        match scope {
            Scope::Strict => moved["metadata"]["name"] = "other".into(),
            _ => moved["metadata"]["namespace"] = "other".into(),
        }
        let ss = sealed_secret_from_value(moved).unwrap();
        assert!(unseal(&ss, &[&key]).is_err(), "{scope} value opened for another target");
    }
}

#[test]
fn cluster_wide_needs_no_namespace_and_strict_does() {
    let sealed = seal(&request(Scope::ClusterWide, "", ""), &fixed_random(VALUES.len(), 1)).unwrap();
    assert!(sealed.object["metadata"].get("namespace").is_none());
    let ss = sealed_secret_from_value(sealed.object).unwrap();
    assert!(unseal(&ss, &[&key()]).is_ok());
    let err = seal(&request(Scope::Strict, "", ""), &fixed_random(VALUES.len(), 1)).unwrap_err().to_string();
    assert!(err.contains("needs a namespace"), "{err}");
}

#[test]
fn the_key_shown_is_the_key_gitseal_names_for_the_certificate() {
    let cert = Certificate::from_pem(&cert_pem()).unwrap();
    let sealed = seal(&request(Scope::Strict, "", "app"), &fixed_random(VALUES.len(), 0)).unwrap();
    assert_eq!(sealed.key.id, cert.key_id().as_str());
    assert_eq!(sealed.key.bits, 4096);
    assert_eq!(sealed.key.not_before as i64, cert.not_before().unwrap().unix_timestamp());
    assert_eq!(sealed.object["metadata"]["annotations"]["gitseal.dev/key-id"], cert.key_id().as_str());
}

#[test]
fn randomness_comes_only_from_the_caller() {
    let req = request(Scope::Strict, "", "app");
    let a = seal(&req, &fixed_random(VALUES.len(), 3)).unwrap();
    let b = seal(&req, &fixed_random(VALUES.len(), 3)).unwrap();
    let c = seal(&req, &fixed_random(VALUES.len(), 4)).unwrap();
    assert_eq!(a.yaml, b.yaml, "same random bytes, same output");
    assert_ne!(a.yaml, c.yaml, "other random bytes, other output");
    for n in [0, VALUES.len() - 1, VALUES.len() + 1] {
        let err = seal(&req, &fixed_random(n, 3)).unwrap_err().to_string();
        assert!(err.contains("random bytes given"), "{err}");
    }
}

#[test]
fn bad_requests_fail_with_one_line_that_never_quotes_a_value() {
    type Change = Box<dyn Fn(&mut Request)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|r| r.data[0].key = "a/b".into()), "invalid key"),
        (Box::new(|r| r.data[1].key = "password".into()), "given twice"),
        (Box::new(|r| r.data.clear()), "nothing to seal"),
        (Box::new(|r| r.namespace = "App".into()), "invalid namespace"),
        (Box::new(|r| r.name = "".into()), "invalid name"),
        (Box::new(|r| r.scope = "wide".into()), "invalid scope"),
        (Box::new(|r| r.api = "example.com".into()), "unknown API group"),
        (Box::new(|r| r.cert = "not a cert".into()), "certificate"),
        (Box::new(|r| r.cert = r.cert.replace("MII", "MIJ")), "certificate"),
    ];
    for (change, want) in cases {
        let mut req = request(Scope::Strict, "", "app");
        change(&mut req);
        let n = req.data.len();
        let err = seal(&req, &fixed_random(n, 0)).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
        assert!(!err.contains('\n'), "{err}");
        for (_, v) in VALUES.iter().filter(|(_, v)| !v.is_empty()) {
            assert!(!err.contains(v), "{err}");
        }
    }
    let mut big = request(Scope::Strict, "", "app");
    big.data = vec![Item { key: "k".into(), value: "x".repeat(1024 * 1024 + 1) }];
    assert!(seal(&big, &fixed_random(1, 0)).unwrap_err().to_string().contains("1 MiB"));
}

#[test]
fn the_json_abi_answers_errors_without_echoing_the_request() {
    let reply: Value = serde_json::from_str(&seal_json(b"{\"cert\": \"s3cr3t", &[])).unwrap();
    assert_eq!(reply["ok"], false);
    assert!(!reply["error"].as_str().unwrap().contains("s3cr3t"), "{reply}");
    let req = serde_json::json!({
        "cert": cert_pem(), "name": "db", "namespace": "app", "scope": "strict",
        "data": [{"key": "k", "value": "s3cr3t"}]
    });
    let reply: Value = serde_json::from_str(&seal_json(req.to_string().as_bytes(), &fixed_random(1, 0))).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply["yaml"].as_str().unwrap().starts_with("---\napiVersion: gitseal.dev/v1\n"));
}

/// tests/testdata/gitseal-web/strict.yaml: what the page writes for fixed inputs and fixed
/// randomness. A change here changes what every browser seals: deliberate only.
#[test]
fn the_vector_pins_the_bytes_for_fixed_randomness() {
    let path = testdata().join("gitseal-web/strict.yaml");
    let sealed = seal(&request(Scope::Strict, "", "app"), &fixed_random(VALUES.len(), 42)).unwrap();
    if std::env::var_os("GITSEAL_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &sealed.yaml).unwrap();
    }
    let pinned = std::fs::read_to_string(&path).expect("tests/testdata/gitseal-web/strict.yaml");
    assert_eq!(sealed.yaml, pinned);
    let ss = sealed_secret_from_value(parse_documents(&pinned).unwrap().remove(0).value).unwrap();
    assert_eq!(unseal(&ss, &[&key()]).unwrap().secret.data["password"].expose(), VALUES[0].1.as_bytes());
}
