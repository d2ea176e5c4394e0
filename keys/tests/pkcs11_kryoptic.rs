//! A token that does OAEP itself (issue 11, "a native-OAEP token where one builds here"):
//! kryoptic, the Rust PKCS#11 soft token, does CKM_RSA_PKCS_OAEP with SHA-256, MGF1-SHA-256
//! and the label as CKZ_DATA_SPECIFIED source data, so the probe picks `pkcs11-oaep` and the
//! padded session key never reaches the controller.
//!
//! Opt-in: kryoptic 1.5.4 took 17.5 minutes to build here (release, one core), too long for
//! every CI run. Build it once (`tests/peers/kryoptic.sh`, cached under
//! `~/.cache/gitseal-test/kryoptic-1.5.4/`; `tests/run.sh` then sets the variable itself):
//!
//! ```sh
//! GITSEAL_KRYOPTIC_MODULE=~/.cache/gitseal-test/kryoptic-1.5.4/libkryoptic_pkcs11.so \
//!   cargo test -p gitseal-keys --test pkcs11_kryoptic
//! ```
//!
//! Without the variable the test says so and passes (it proves nothing then). kryoptic reads
//! KRYOPTIC_CONF once per process, so, as with SoftHSM, the test re-runs itself in a child.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::PathBuf;
use std::process::Command;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use gitseal_keys::pkcs11::{Token, TokenConfig};
use gitseal_shared::value::{DecryptionKey, Recipient, RecipientSet, UnwrapKey, UnwrapPath, open};
use gitseal_shared::{Scope, Target};
use time::OffsetDateTime;
use zeroize::Zeroizing;

const PIN: &str = "1234";
const SO_PIN: &str = "5678";
const LABEL: &str = "gitseal-kryoptic";
const TEST: &str = "kryoptic_unwraps_with_native_oaep_sha256_and_the_label";

fn module() -> Option<PathBuf> {
    std::env::var_os("GITSEAL_KRYOPTIC_MODULE").map(PathBuf::from)
}

/// Initialise slot 42's token of this child's KRYOPTIC_CONF and set the user PIN.
fn init_token(module: &PathBuf) {
    let ctx = Pkcs11::new(module).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = ctx.get_all_slots().unwrap().into_iter().next().expect("the configured slot");
    ctx.init_token(slot, &AuthPin::from(SO_PIN.to_owned()), LABEL).unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session.login(UserType::So, Some(&AuthPin::from(SO_PIN.to_owned()))).unwrap();
    session.init_pin(&AuthPin::from(PIN.to_owned())).unwrap();
    drop(session);
    ctx.finalize().unwrap();
}

fn wrap(spki: &[u8], session: &[u8], label: &[u8]) -> Vec<u8> {
    let public = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    let label = (!label.is_empty()).then_some(label);
    public.encrypt(&OAEP_SHA256_MGF1SHA256, session, &mut out, label).unwrap();
    out
}

#[test]
fn kryoptic_unwraps_with_native_oaep_sha256_and_the_label() {
    let Some(module) = module() else {
        eprintln!("GITSEAL_KRYOPTIC_MODULE is not set: the native-OAEP token test is skipped (see this file's docs)");
        return;
    };
    assert!(module.exists(), "GITSEAL_KRYOPTIC_MODULE={} does not exist", module.display());
    if std::env::var_os("GITSEAL_IN_KRYOPTIC_CHILD").is_none() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("token.conf");
        let db = dir.path().join("token.sql");
        std::fs::write(&conf, format!("[[slots]]\nslot = 42\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n", db.display()))
            .unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
            .env("KRYOPTIC_CONF", &conf)
            .env("GITSEAL_IN_KRYOPTIC_CHILD", "1")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "child run failed:\n{text}");
        return;
    }
    init_token(&module);
    let token = Token::open(TokenConfig {
        module,
        token_label: Some(LABEL.into()),
        slot: None,
        pin: Zeroizing::new(PIN.into()),
        sessions: 2,
    })
    .unwrap();
    assert_eq!(token.path(), UnwrapPath::TokenOaep, "the probe finds native OAEP-SHA256 with a label: {token:?}");

    let (cert, object) = token
        .generate(gitseal_keys::RsaBits::Rsa2048, "", OffsetDateTime::now_utc(), time::Duration::days(30))
        .unwrap();
    let key = token.key(&object, &cert).unwrap();
    let (sensitive, extractable, readable) = key.custody().unwrap();
    assert!(sensitive && !extractable && !readable, "sensitive={sensitive} extractable={extractable}");
    for (label, session) in [(&b"ns/name"[..], [1u8; 32]), (b"", [2u8; 32]), (b"gitseal.dev/v1/rsa-oaep", [3u8; 32])] {
        let wrapped = wrap(cert.spki_der(), &session, label);
        assert_eq!(key.unwrap(&wrapped, label).unwrap().expose(), &session);
        assert!(matches!(key.unwrap(&wrapped, b"other"), Err(gitseal_shared::Error::DecryptionFailed)));
    }
    // Both value formats, through the seam.
    let dk = DecryptionKey::from_rsa(key.clone(), None);
    let target = Target::new(Scope::NamespaceWide, Some("ns"), None).unwrap();
    let v = RecipientSet::new(vec![cert.recipient().unwrap()]).unwrap().seal(&target, b"kubeseal format").unwrap();
    assert_eq!(open(&[&dk], &target, &v).unwrap().plaintext.expose(), b"kubeseal format");
    let recovery = age::x25519::Identity::generate();
    let multi = RecipientSet::new(vec![cert.recipient().unwrap(), Recipient::age(recovery.to_public())]).unwrap();
    let v2 = multi.seal(&target, b"age format").unwrap();
    assert_eq!(open(&[&dk], &target, &v2).unwrap().plaintext.expose(), b"age format");
}
