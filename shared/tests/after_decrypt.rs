//! Issue #9, item 9: every failure past a successful decryption gives one fixed message that
//! never quotes decoded text, and reads exactly like a decryption failure once turned into what
//! a remote caller sees ([`Error::for_remote`]). Templates are checked before any key is used.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use gitseal_shared::seal::{target_of, unseal};
use gitseal_shared::types::{SealedSecretObject, sealed_secret_from_value};
use gitseal_shared::value::{DecryptionKey, Recipient, RecipientSet, encode_base64};
use gitseal_shared::{Error, Result};
use serde_json::json;

/// Decoded text that no message may quote.
const MARKER: &str = "correct-horse-battery-staple";

struct Keys {
    ours: DecryptionKey,
    ours_set: RecipientSet,
    theirs_set: RecipientSet,
}

fn keys() -> Keys {
    let ours = age::x25519::Identity::generate();
    let theirs = age::x25519::Identity::generate();
    Keys {
        ours_set: RecipientSet::new(vec![Recipient::age(ours.to_public())]).unwrap(),
        theirs_set: RecipientSet::new(vec![Recipient::age(theirs.to_public())]).unwrap(),
        ours: DecryptionKey::from_age(ours),
    }
}

/// A SealedSecret whose deprecated `spec.data` blob holds `plaintext`, sealed with `set`.
fn legacy(set: &RecipientSet, plaintext: &[u8], templates: Option<BTreeMap<&str, &str>>) -> SealedSecretObject {
    let mut ss = sealed_secret_from_value(json!({
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "db", "namespace": "prod"},
        "spec": {"data": "", "template": {"data": templates}}
    }))
    .unwrap();
    let target = target_of(&ss).unwrap();
    ss.spec.data = Some(encode_base64(&set.seal(&target, plaintext).unwrap()));
    ss
}

fn open(k: &Keys, ss: &SealedSecretObject) -> Result<BTreeMap<String, Vec<u8>>> {
    let u = unseal(ss, &[&k.ours])?;
    Ok(u.secret.data.iter().map(|(k, v)| (k.clone(), v.expose().to_vec())).collect())
}

fn secret(data: serde_json::Value) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": data}).to_string().into_bytes()
}

#[test]
fn every_unusable_legacy_blob_gives_one_fixed_message_that_reads_remotely_as_a_decrypt_failure() {
    let k = keys();
    let undecryptable = open(&k, &legacy(&k.theirs_set, &secret(json!({})), None)).unwrap_err();
    assert!(matches!(&undecryptable, Error::Undecryptable(items) if items == &["data"]), "{undecryptable}");

    let not_json = format!("{MARKER} is not JSON").into_bytes();
    let not_a_secret = json!({"kind": MARKER}).to_string().into_bytes();
    let bad_base64 = secret(json!({"password": format!("{MARKER}!!")}));
    let not_utf8 = [b"{\"kind\": \"Secret\", \"data\": {\"k\": \"".as_slice(), &[0xff, 0xfe], b"\"}}"].concat();
    let not_strings = secret(json!({"password": [MARKER]}));
    let mut messages = Vec::new();
    for plaintext in [not_json, not_a_secret, bad_base64, not_utf8, not_strings] {
        let err = open(&k, &legacy(&k.ours_set, &plaintext, None)).unwrap_err();
        assert!(matches!(err, Error::UnusablePlaintext(_)), "{err:?}");
        messages.push(err.to_string());
        let remote = err.for_remote();
        assert_eq!(remote.to_string(), undecryptable.to_string());
    }
    messages.dedup();
    assert_eq!(messages, ["item data decrypted, but the decrypted content is not usable (nothing of it is shown)"]);
}

#[test]
fn templates_over_a_legacy_blob_fail_opaquely_when_the_blob_decides() {
    let k = keys();
    let blob = secret(json!({"password": encode_base64(MARKER.as_bytes())}));
    // The blob declares which items exist: naming a missing one would reveal its keys.
    let ss = legacy(&k.ours_set, &blob, Some(BTreeMap::from([("dsn", "{{ .user }}")])));
    let err = open(&k, &ss).unwrap_err();
    assert!(matches!(err, Error::UnusablePlaintext(_)), "{err:?}");
    assert!(!err.to_string().contains("user"), "{err}");
    // A template the blob satisfies renders.
    let ss = legacy(&k.ours_set, &blob, Some(BTreeMap::from([("dsn", "pw={{ .password }}")])));
    assert_eq!(open(&k, &ss).unwrap()["dsn"], format!("pw={MARKER}").as_bytes());
    // A syntax error depends on the template text alone and is said plainly.
    let ss = legacy(&k.ours_set, &blob, Some(BTreeMap::from([("dsn", "{{ .password | upper }}")])));
    let err = open(&k, &ss).unwrap_err();
    assert!(err.to_string().contains("unsupported template action"), "{err}");
}

#[test]
fn a_malformed_template_is_refused_before_any_key_is_used() {
    let k = keys();
    // Sealed for someone else: if decryption ran first, this would be Undecryptable.
    let ss = legacy(&k.theirs_set, &secret(json!({})), Some(BTreeMap::from([("x", "{{ .a")])));
    let err = open(&k, &ss).unwrap_err();
    assert!(matches!(err, Error::Template(_)), "{err:?}");
    let many: BTreeMap<String, String> = (0..2000).map(|i| (format!("k{i}"), String::new())).collect();
    let mut ss = legacy(&k.theirs_set, &secret(json!({})), None);
    ss.spec.template.as_mut().unwrap().data = Some(many);
    assert!(open(&k, &ss).unwrap_err().to_string().contains("at most 1024"));
}
