//! `gitseal web` in a real headless Chromium: the page seals, the value opens with the
//! certificate's private key, no request carries it, and once loaded the page keeps sealing
//! after the server is gone. Writes the README's screenshot with `GITSEAL_WRITE_SCREENSHOT=1`.
//!
//! Run: `cargo test -p gitseal-cli --test web_browser` (needs chromium and chromium-driver,
//! which tests/peers/install.sh installs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gitseal_keys::parse_private_keys;
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::seal::unseal;
use gitseal_shared::types::sealed_secret_from_value;
use gitseal_tests::ChildProcess;
use gitseal_tests::browser::{Browser, log_mentions};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);
const PLAIN: &str = "pl41nT3xt-Vq8Zr5Lm";

fn testdata(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/kubeseal").join(file)
}

/// `gitseal web --cert …` on a free port, and the URL it printed.
fn serve(dir: &Path) -> (ChildProcess, String) {
    let log = dir.join("gitseal-web.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitseal"));
    cmd.arg("web").arg("--cert").arg(testdata("cert.pem"));
    let server = ChildProcess::spawn("gitseal web", cmd, &log).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(url) = text.lines().find(|l| l.starts_with("http://")) {
            return (server, url.to_string());
        }
        assert!(Instant::now() < deadline, "gitseal web printed no URL: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_page_seals_offline_after_load_and_no_request_carries_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = serve(dir.path());
    assert!(url.starts_with("http://127.0.0.1:"), "binds loopback by default: {url}");
    let started = Instant::now();
    let b = Browser::start(dir.path()).unwrap();
    b.goto(&url).unwrap();
    b.wait_until("the page to load its key", "return document.body.dataset.ready === 'true';", WAIT).unwrap();
    let key_id = b.execute("return document.getElementById('key-id').textContent;", json!([])).unwrap();
    assert!(key_id.as_str().unwrap().starts_with("SHA256:"), "{key_id}");

    // The network is gone: the page has all it needs.
    server.stop(Duration::from_secs(2));
    assert!(std::net::TcpStream::connect(url.trim_start_matches("http://").trim_end_matches("/seal/")).is_err());

    b.type_into("#name", "db").unwrap();
    b.type_into("#namespace", "app").unwrap();
    b.type_into("#key-1", "password").unwrap();
    b.type_into("#value-1", PLAIN).unwrap();
    b.click("#add").unwrap();
    b.type_into("#key-2", "note").unwrap();
    b.type_into("#value-2", "two\nlines").unwrap();
    b.click("#seal").unwrap();
    let yaml = b
        .wait_until("the sealed YAML", "return document.getElementById('output').value;", WAIT)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let status = b.execute("return document.getElementById('status').textContent;", json!([])).unwrap();
    assert!(status.as_str().unwrap().starts_with("Sealed 2 values"), "{status}");

    // A bad key is refused in the page, in one line that does not repeat the value.
    b.type_into("#key-2", "a/b").unwrap();
    b.click("#seal").unwrap();
    let refused = b
        .wait_until(
            "the refusal",
            "const s = document.getElementById('status').textContent; return s.startsWith('Not sealed') && s;",
            WAIT,
        )
        .unwrap();
    assert!(refused.as_str().unwrap().contains("invalid key"), "{refused}");
    if std::env::var_os("GITSEAL_WRITE_SCREENSHOT").is_some() {
        b.type_into("#key-2", "note").unwrap();
        b.click("#seal").unwrap();
        b.execute("document.getElementById('value-1').value = '••••••••'; window.scrollTo(0, 0);", json!([])).unwrap();
        let png = b.screenshot().unwrap();
        std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/seal-page.png"), png).unwrap();
    }
    let log = b.network_log().unwrap();
    // The page runs under its CSP without tripping it (no inline script or style, no other origin).
    let console = b.console_log().unwrap();
    assert!(!console.iter().any(|m| m.contains("Content Security Policy")), "{console:#?}");
    // …and the CSP is really enforced: an injected inline script is refused, and that shows.
    b.execute(
        "const s = document.createElement('script'); s.textContent = 'window.x = 1'; document.body.append(s);",
        json!([]),
    )
    .unwrap();
    let refused = b.console_log().unwrap();
    assert!(refused.iter().any(|m| m.contains("Content Security Policy")), "{refused:#?}");
    assert_eq!(b.execute("return window.x === undefined;", json!([])).unwrap(), json!(true));
    drop(b);
    eprintln!("browser test took {:?}", started.elapsed());

    // Nothing the page sent carried the value, though the log does show what it fetched.
    assert!(log.iter().any(|e| e.contains("Network.requestWillBeSent") && e.contains("seal.wasm")));
    assert!(!log_mentions(&log, PLAIN), "a request carried the plaintext");
    assert!(!yaml.contains(PLAIN));

    // And the SealedSecret opens with the certificate's private key.
    let key = parse_private_keys(&std::fs::read_to_string(testdata("key.pem")).unwrap()).unwrap().remove(0).key;
    let ss = sealed_secret_from_value(parse_documents(&yaml).unwrap().remove(0).value).unwrap();
    let secret = unseal(&ss, &[&key]).unwrap().secret;
    assert_eq!(secret.data["password"].expose(), PLAIN.as_bytes());
    assert_eq!(secret.data["note"].expose(), b"two\nlines");
}

#[test]
fn log_search_finds_plain_percent_encoded_and_base64_forms() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = "pl41nT3xt-Vq8Zr5Lm";
    for prefix in ["", "a", "ab", "abc"] {
        let entry = format!("{{\"postData\":\"{}\"}}", b64.encode(format!("{prefix}{secret}&more")));
        assert!(log_mentions(&[entry], secret), "base64 after {prefix:?}");
    }
    assert!(log_mentions(&["GET /x?v=pl41nT3xt%2DVq8Zr5Lm".into()], secret));
    assert!(!log_mentions(&["nothing here".into()], secret));
}
