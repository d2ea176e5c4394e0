//! One RSA private operation (unwrapping a kubeseal session key), in memory (aws-lc-rs) vs in a
//! SoftHSM2 token (raw RSA + constant-time OAEP decode), and opening a kubeseal value through
//! each: `cargo bench -p gitseal-keys --bench token_unwrap`. Bounded (a fixed number of
//! operations), loopback only; needs softhsm2 (tests/peers/install.sh). Like the tests, it makes
//! its token under a tempdir and re-runs itself with SOFTHSM2_CONF set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a failure is a crash

use std::process::Command;
use std::time::{Duration, Instant};

use gitseal_keys::pkcs11::{Token, TokenConfig};
use gitseal_shared::value::{DecryptionKey, RecipientSet, open};
use gitseal_shared::{Scope, Target};
use time::OffsetDateTime;
use zeroize::Zeroizing;

const OPS: usize = 200;

fn main() {
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(&conf, format!("directories.tokendir = {}\nlog.level = ERROR\n", tokens.display())).unwrap();
        let init = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"])
            .env("SOFTHSM2_CONF", &conf)
            .status()
            .expect("softhsm2-util (install softhsm2)");
        assert!(init.success());
        let status = Command::new(std::env::current_exe().unwrap()).env("SOFTHSM2_CONF", &conf).status().unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let module = std::env::var("GITSEAL_SOFTHSM2_MODULE").unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let token = Token::open(TokenConfig {
        module: module.into(),
        token_label: Some("bench".into()),
        slot: None,
        pin: Zeroizing::new("1234".into()),
        sessions: 2,
    })
    .unwrap();
    let target = Target::new(Scope::Strict, Some("ns"), Some("name")).unwrap();
    println!("unwrap path of the token: {}", token.path().as_str());
    for bits in [gitseal_keys::RsaBits::Rsa2048, gitseal_keys::RsaBits::Rsa4096] {
        let now = OffsetDateTime::now_utc();
        let t0 = Instant::now();
        let (cert, object) = token.generate(bits, "", now, time::Duration::days(1)).unwrap();
        let token_gen = t0.elapsed();
        let in_token = DecryptionKey::from_rsa(token.key(&object, &cert).unwrap(), None);
        let t0 = Instant::now();
        let pair = gitseal_keys::generate_key_pair(bits, "", now, time::Duration::days(1)).unwrap();
        let memory_gen = t0.elapsed();
        let in_memory = pair.decryption_key().unwrap();
        println!("RSA-{bits} key generation: token {token_gen:.2?}, memory {memory_gen:.2?}");
        for (name, key, c) in [("memory", &in_memory, &pair.cert), ("token ", &in_token, &cert)] {
            let set = RecipientSet::new(vec![c.recipient().unwrap()]).unwrap();
            let values: Vec<Vec<u8>> =
                (0..OPS).map(|i| set.seal(&target, format!("v{i}").as_bytes()).unwrap()).collect();
            let mut times: Vec<Duration> = Vec::with_capacity(OPS);
            for v in &values {
                let t = Instant::now();
                let opened = open(&[key], &target, v).unwrap();
                times.push(t.elapsed());
                assert_eq!(opened.private_ops, 1);
            }
            times.sort();
            let total: Duration = times.iter().sum();
            println!(
                "RSA-{bits} open one kubeseal value ({name}): p50 {:.2?}, p99 {:.2?}, {:.0} values/s single-threaded",
                times[OPS / 2],
                times[OPS * 99 / 100],
                OPS as f64 / total.as_secs_f64()
            );
        }
    }
}
