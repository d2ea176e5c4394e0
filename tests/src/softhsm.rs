//! A fresh SoftHSM2 token for one test (Debian's `softhsm2`, installed by
//! `tests/peers/install.sh`): its own token directory and config under a temp dir, a PIN file,
//! and the controller flags and environment that use it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};

/// The PIN every test token gets.
pub const PIN: &str = "4321";

/// One initialised SoftHSM2 token.
#[derive(Debug, Clone)]
pub struct SoftHsmToken {
    /// The token's label (`--pkcs11-token-label`).
    pub label: String,
    /// `SOFTHSM2_CONF` for every process that uses the token.
    pub conf: PathBuf,
    /// Where SoftHSM keeps the token's objects (move it away to make the token vanish).
    pub tokens: PathBuf,
    /// A file holding the PIN (`--pkcs11-pin-file`).
    pub pin_file: PathBuf,
}

/// The SoftHSM2 PKCS#11 module: `$GITSEAL_SOFTHSM2_MODULE`, else Debian's path.
pub fn module() -> String {
    std::env::var("GITSEAL_SOFTHSM2_MODULE").unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into())
}

impl SoftHsmToken {
    /// Initialise a token labelled `label` in a fresh store under `dir`.
    pub fn init(dir: &Path, label: &str) -> Result<SoftHsmToken> {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = dir.join("softhsm2.conf");
        let text =
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
        std::fs::write(&conf, text)?;
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "8765"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("cannot run softhsm2-util (tests/peers/install.sh installs softhsm2)")?;
        ensure!(out.status.success(), "softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&out.stderr));
        let pin_file = dir.join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n"))?;
        Ok(SoftHsmToken { label: label.into(), conf, tokens, pin_file })
    }

    /// gitseal-controller's flags for this token: module, label, PIN file.
    pub fn controller_flags(&self) -> Vec<String> {
        vec![
            format!("--pkcs11-module={}", module()),
            format!("--pkcs11-token-label={}", self.label),
            format!("--pkcs11-pin-file={}", self.pin_file.display()),
        ]
    }

    /// `SOFTHSM2_CONF` as a string, for an environment list.
    pub fn conf_env(&self) -> String {
        self.conf.display().to_string()
    }
}
