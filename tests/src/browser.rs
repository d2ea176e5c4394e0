//! A real headless browser for tests: Debian's `chromium`, driven through `chromedriver` over
//! the W3C WebDriver HTTP API (plain JSON over loopback, no Selenium).
//!
//! The session records Chrome's performance log (`goog:loggingPrefs`), whose `Network.*`
//! events show every request the page made: URL, headers and body. [`Browser::network_log`]
//! returns it as text for searching. Binaries: `$GITSEAL_CHROMIUM` / `$GITSEAL_CHROMEDRIVER`,
//! else `chromium` and `chromedriver` on `PATH` (`tests/peers/install.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::{ChildProcess, free_port};

/// W3C's element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver with one headless Chromium session. Dropping it ends the session (and so the
/// browser) and stops the driver.
pub struct Browser {
    base: String,
    agent: ureq::Agent,
    _driver: ChildProcess,
    _profile: tempfile::TempDir,
}

fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

impl Browser {
    /// Start chromedriver on a free loopback port and open a headless session.
    pub fn start(log_dir: &Path) -> Result<Browser> {
        let driver = find("GITSEAL_CHROMEDRIVER", &["chromedriver"])
            .context("chromedriver not found: run tests/peers/install.sh (apt-get install chromium-driver)")?;
        let chromium = find("GITSEAL_CHROMIUM", &["chromium", "chromium-browser"])
            .context("chromium not found: run tests/peers/install.sh (apt-get install chromium)")?;
        let port = free_port()?;
        let mut cmd = Command::new(&driver);
        cmd.arg(format!("--port={port}")).arg("--allowed-ips=127.0.0.1");
        let driver = ChildProcess::spawn("chromedriver", cmd, log_dir.join("chromedriver.log"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok());
            if ready.as_ref().and_then(|v| v.pointer("/value/ready")).and_then(Value::as_bool) == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().context("a profile directory")?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1000,1400", "--no-first-run", "--no-default-browser-check",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-extensions", "--disable-features=Translate,OptimizationHints,MediaRouter",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "perfLoggingPrefs": {"enableNetwork": true, "enablePage": false},
            },
        }}});
        let mut this = Browser { base, agent, _driver: driver, _profile: profile };
        let session = this.send("POST", "/session", Some(caps)).context("starting a Chromium session")?;
        let id = session.get("sessionId").and_then(Value::as_str).ok_or_else(|| anyhow!("no session id: {session}"))?;
        this.base = format!("{}/session/{id}", this.base);
        Ok(this)
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(body.unwrap_or_else(|| json!({}))),
        }
        .with_context(|| format!("{method} {path}"))?;
        let v: Value = response.body_mut().read_json().with_context(|| format!("{method} {path}: reply"))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            let msg = value.get("message").and_then(Value::as_str).unwrap_or("");
            bail!("{method} {path}: {err}: {}", msg.lines().next().unwrap_or(""));
        }
        Ok(value)
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.send("POST", "/url", Some(json!({"url": url}))).map(drop)
    }

    /// Run `script` (a function body; `arguments` holds `args`) and return its result.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.send("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// Poll `script` until it returns something truthy.
    pub fn wait_until(&self, what: &str, script: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.execute(script, json!([]))?;
            if !matches!(v, Value::Null | Value::Bool(false)) && v != json!("") {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn element(&self, css: &str) -> Result<String> {
        let v = self.send("POST", "/element", Some(json!({"using": "css selector", "value": css})))?;
        v.get(ELEMENT).and_then(Value::as_str).map(str::to_string).ok_or_else(|| anyhow!("no element {css}: {v}"))
    }

    /// Clear a field and type `text` into it, as a user would (key events).
    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.element(css)?;
        self.send("POST", &format!("/element/{id}/clear"), None)?;
        self.send("POST", &format!("/element/{id}/value"), Some(json!({"text": text}))).map(drop)
    }

    pub fn click(&self, css: &str) -> Result<()> {
        let id = self.element(css)?;
        self.send("POST", &format!("/element/{id}/click"), None).map(drop)
    }

    /// Choose `value` in a `<select>`.
    pub fn select(&self, css: &str, value: &str) -> Result<()> {
        let id = self.element(css)?;
        let el = json!({ELEMENT: id});
        self.execute(
            "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
            json!([el, value]),
        )
        .map(drop)
    }

    /// The `value` of a form field.
    pub fn value(&self, css: &str) -> Result<String> {
        let v = self.execute("return document.querySelector(arguments[0]).value;", json!([css]))?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Every performance-log entry since the last call (Chrome hands each out once), as the raw
    /// JSON text of the DevTools events, for searching.
    pub fn network_log(&self) -> Result<Vec<String>> {
        let v = self.send("POST", "/se/log", Some(json!({"type": "performance"})))?;
        let entries = v.as_array().ok_or_else(|| anyhow!("performance log is not a list"))?;
        Ok(entries.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).map(str::to_string).collect())
    }

    /// The page's console messages since the last call (CSP violations show up here).
    pub fn console_log(&self) -> Result<Vec<String>> {
        let v = self.send("POST", "/se/log", Some(json!({"type": "browser"})))?;
        let entries = v.as_array().ok_or_else(|| anyhow!("browser log is not a list"))?;
        Ok(entries.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).map(str::to_string).collect())
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.send("GET", "/screenshot", None)?;
        let b64 = v.as_str().ok_or_else(|| anyhow!("screenshot is not a string"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("session", &self.base).finish()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.base.contains("/session/") {
            let _ = self.agent.delete(&self.base).call();
        }
    }
}

/// Whether `log` holds `secret` in a form a request could carry it: as is, percent-encoded, or
/// base64 at any of the three alignments.
pub fn log_mentions(log: &[String], secret: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![secret.to_string()];
    let pct: String = secret
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    forms.push(pct);
    for skip in 0..3 {
        let padded: Vec<u8> = std::iter::repeat_n(b'x', skip).chain(secret.bytes()).collect();
        let enc = b64.encode(&padded);
        // Only the characters that depend on the secret's bytes alone: none of the prefix's bits
        // (the first 0, 2 or 3), none of whatever would follow it (the last 2).
        let start = [0, 2, 3][skip];
        let end = enc.trim_end_matches('=').len().saturating_sub(2);
        if end > start + 8 {
            forms.push(enc[start..end].to_string());
        }
    }
    log.iter().any(|entry| forms.iter().any(|f| entry.contains(f.as_str())))
}
