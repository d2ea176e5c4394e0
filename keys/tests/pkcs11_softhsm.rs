//! Keys in a real PKCS#11 token: Debian's SoftHSM2 (installed by tests/peers/install.sh).
//!
//! SoftHSM reads SOFTHSM2_CONF when the library is initialised, once per process, and this
//! crate cannot set the environment of its own process (no unsafe code). So the test makes its
//! token under a tempdir and re-runs itself (this test binary, this test only) with
//! SOFTHSM2_CONF pointing there; the child does the checks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use gitseal_keys::Certificate;
use gitseal_keys::pkcs11::{ObjectRef, Token, TokenConfig, TokenKey};
use gitseal_shared::value::{DecryptionKey, RecipientSet, UnwrapKey, UnwrapPath, open};
use gitseal_shared::{Scope, Target};
use time::OffsetDateTime;
use zeroize::Zeroizing;

const PIN: &str = "1234";
const LABEL: &str = "gitseal-test";

fn softhsm_module() -> PathBuf {
    let path = std::env::var_os("GITSEAL_SOFTHSM2_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert!(path.exists(), "{} is missing: install softhsm2 (tests/peers/install.sh does)", path.display());
    path
}

/// A fresh SoftHSM token under `dir`; returns the SOFTHSM2_CONF path.
fn init_token(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", LABEL, "--pin", PIN, "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (install softhsm2)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    conf
}

/// Run `name` in a child of this test binary with SOFTHSM2_CONF set; true in the child.
fn in_child_with_token(name: &str) -> bool {
    if std::env::var_os("GITSEAL_IN_SOFTHSM_CHILD").is_some() {
        return true;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = init_token(dir.path());
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env("SOFTHSM2_CONF", &conf)
        .env("GITSEAL_IN_SOFTHSM_CHILD", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "child run failed:\n{text}");
    false
}

fn open_token(sessions: usize) -> Arc<Token> {
    Token::open(TokenConfig {
        module: softhsm_module(),
        token_label: Some(LABEL.into()),
        slot: None,
        pin: Zeroizing::new(PIN.into()),
        sessions,
    })
    .unwrap()
}

fn wrap(spki: &[u8], session: &[u8], label: &[u8]) -> Vec<u8> {
    let public = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    let label = (!label.is_empty()).then_some(label);
    public.encrypt(&OAEP_SHA256_MGF1SHA256, session, &mut out, label).unwrap();
    out
}

#[test]
fn softhsm_key_is_made_in_the_token_unwraps_through_the_seam_and_survives_a_restart() {
    if !in_child_with_token("softhsm_key_is_made_in_the_token_unwraps_through_the_seam_and_survives_a_restart") {
        return;
    }
    let token = open_token(2);
    // Debian's SoftHSM 2.6 refuses OAEP-SHA256 with a label: the probe picks raw RSA.
    assert_eq!(token.path(), UnwrapPath::TokenRawRsa, "{token:?}");

    let (cert, object) = token
        .generate(gitseal_keys::RsaBits::Rsa2048, "", OffsetDateTime::now_utc(), time::Duration::days(30))
        .unwrap();
    let key = token.key(&object, &cert).unwrap();
    assert_eq!(key.key_id(), cert.key_id());
    // The certificate's signature was made by the token with the key it certifies.
    let der = pem::parse(cert.pem()).unwrap().into_contents();
    let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
    let public = x.public_key().subject_public_key.data.as_ref();
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, public)
        .verify(x.tbs_certificate.as_ref(), x.signature_value.data.as_ref())
        .expect("self-signature verifies with the certified key");

    // Non-extractable: sensitive, not extractable, and the private numbers cannot be read.
    let (sensitive, extractable, readable) = key.custody().unwrap();
    assert!(sensitive && !extractable && !readable, "sensitive={sensitive} extractable={extractable}");
    assert!(key.export_pkcs8().is_none());

    // Seam vectors: session keys wrapped by aws-lc-rs under labels, unwrapped by the token.
    for (label, session) in [(&b"ns/name"[..], [1u8; 32]), (b"", [2u8; 32]), (b"gitseal.dev/v1/rsa-oaep", [3u8; 32])] {
        let wrapped = wrap(cert.spki_der(), &session, label);
        assert_eq!(key.unwrap(&wrapped, label).unwrap().expose(), &session);
        assert!(matches!(key.unwrap(&wrapped, b"other"), Err(gitseal_shared::Error::DecryptionFailed)));
    }

    // Both value formats open through DecryptionKey with the token key.
    let dk = DecryptionKey::from_rsa(key.clone(), None);
    assert!(!dk.exportable());
    let target = Target::new(Scope::Strict, Some("ns"), Some("s")).unwrap();
    let single = RecipientSet::new(vec![cert.recipient().unwrap()]).unwrap();
    let v = single.seal(&target, b"kubeseal format").unwrap();
    assert_eq!(open(&[&dk], &target, &v).unwrap().plaintext.expose(), b"kubeseal format");
    let recovery = age::x25519::Identity::generate();
    let multi =
        RecipientSet::new(vec![cert.recipient().unwrap(), gitseal_shared::value::Recipient::age(recovery.to_public())])
            .unwrap();
    let v2 = multi.seal(&target, b"age format").unwrap();
    let opened = open(&[&dk], &target, &v2).unwrap();
    assert_eq!((opened.plaintext.expose(), opened.private_ops), (&b"age format"[..], 1));

    // A token restart under the pool: the library is finalized; the next operation re-opens
    // it, logs in again and succeeds, from several threads at once.
    token.simulate_restart();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (dk, v) = (dk.clone(), v.clone());
            let target = target.clone();
            std::thread::spawn(move || open(&[&dk], &target, &v).unwrap().plaintext.expose().to_vec())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), b"kubeseal format");
    }
    assert!(token.reconnects() >= 1);

    // Import of a software key where the token allows it, then unwrap through the token.
    let pair = gitseal_keys::generate_key_pair(
        gitseal_keys::RsaBits::Rsa2048,
        "",
        OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .unwrap();
    let imported = token.import(pair.rsa.pkcs8_der(), &pair.cert).unwrap();
    let ikey = token.key(&imported, &pair.cert).unwrap();
    let (sensitive, extractable, readable) = ikey.custody().unwrap();
    assert!(sensitive && !extractable && !readable);
    let wrapped = wrap(pair.cert.spki_der(), &[9u8; 32], b"x");
    assert_eq!(ikey.unwrap(&wrapped, b"x").unwrap().expose(), &[9u8; 32]);

    // A Secret naming an object that holds another key is refused at load.
    assert!(token.key(&imported, &cert).is_err());
}

/// `op` once it succeeds, retried every 100 ms while `again` says its error may pass; panics
/// after 5 s (the token re-opens the library at most once a second).
fn within_5s<T, E: std::fmt::Debug>(op: impl Fn() -> Result<T, E>, again: impl Fn(&E) -> bool) -> T {
    let started = std::time::Instant::now();
    loop {
        match op() {
            Ok(v) => return v,
            Err(e) if again(&e) && started.elapsed() < std::time::Duration::from_secs(5) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("the token did not come back within 5 s: {e:?}"),
        }
    }
}

/// A new RSA-2048 key in `token`: its certificate, object and key.
fn new_key(token: &Arc<Token>) -> (Certificate, ObjectRef, Arc<TokenKey>) {
    let (cert, object) = token
        .generate(gitseal_keys::RsaBits::Rsa2048, "", OffsetDateTime::now_utc(), time::Duration::days(30))
        .unwrap();
    let key = token.key(&object, &cert).unwrap();
    (cert, object, key)
}

/// The token directory of the SOFTHSM2_CONF this child runs with.
fn token_dir() -> PathBuf {
    let conf = std::fs::read_to_string(std::env::var_os("SOFTHSM2_CONF").unwrap()).unwrap();
    let dir = conf.lines().find_map(|l| l.strip_prefix("directories.tokendir = ")).unwrap();
    PathBuf::from(dir.trim())
}

/// Issue 11, "a token restart mid-run recovers": SoftHSM answers CKR_OBJECT_HANDLE_INVALID
/// while its token directory is gone (which once read as a decryption failure) and forgets
/// the object until the library is initialised again.
#[test]
fn a_token_that_goes_away_is_unavailable_never_a_decryption_failure_and_comes_back() {
    if !in_child_with_token("a_token_that_goes_away_is_unavailable_never_a_decryption_failure_and_comes_back") {
        return;
    }
    let token = open_token(2);
    let (cert, _, key) = new_key(&token);
    let wrapped = wrap(cert.spki_der(), &[7u8; 32], b"ns/name");
    assert_eq!(key.unwrap(&wrapped, b"ns/name").unwrap().expose(), &[7u8; 32]);

    let (dir, away) = (token_dir(), token_dir().with_extension("away"));
    std::fs::rename(&dir, &away).unwrap();
    for _ in 0..3 {
        let e = key.unwrap(&wrapped, b"ns/name").unwrap_err();
        assert!(matches!(e, gitseal_shared::Error::KeyUnavailable(_)), "{e:?}");
    }
    std::fs::rename(&away, &dir).unwrap();
    // Back without anything else happening: unwrapping re-opens the library (at most once a
    // second, so the first try may fall inside the second of the last failed re-open).
    let opened =
        within_5s(|| key.unwrap(&wrapped, b"ns/name"), |e| matches!(e, gitseal_shared::Error::KeyUnavailable(_)));
    assert_eq!(opened.expose(), &[7u8; 32]);
    assert!(token.reconnects() >= 1);
    // A wrong label is still a plain decryption failure.
    assert!(matches!(key.unwrap(&wrapped, b"other"), Err(gitseal_shared::Error::DecryptionFailed)));
}

/// The custody check (and the certificate signature, the same path) after the token was away:
/// the cached handle is stale and the object forgotten until the library is re-opened; it is
/// looked up again rather than reported gone.
#[test]
fn a_stale_handle_is_looked_up_again_for_the_custody_check() {
    if !in_child_with_token("a_stale_handle_is_looked_up_again_for_the_custody_check") {
        return;
    }
    let token = open_token(2);
    let (_, _, key) = new_key(&token);
    let (sensitive, _, readable) = key.custody().unwrap();
    assert!(sensitive && !readable);
    let (dir, away) = (token_dir(), token_dir().with_extension("away"));
    std::fs::rename(&dir, &away).unwrap();
    assert!(key.custody().is_err(), "gone while the token is away");
    std::fs::rename(&away, &dir).unwrap();
    // Back: the handle the key cached is stale and SoftHSM forgot the object until the library
    // is initialised again (at most once a second).
    let (sensitive, _, readable) = within_5s(|| key.custody(), |_| true);
    assert!(sensitive && !readable);
    assert!(token.reconnects() >= 1, "the library was re-opened to find it");
}
