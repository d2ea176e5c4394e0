//! Fetching a certificate from an `http(s)://` URL (`--cert https://…`), as kubeseal does.
//!
//! TLS is rustls on aws-lc-rs (the product's one crypto provider) with the operating system's
//! trust store, so a certificate endpoint behind a corporate CA works. `HTTP(S)_PROXY` and
//! `NO_PROXY` are honoured. The whole request is bounded by [`TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate is a few kilobytes; anything past this is not one.
const MAX_BODY: u64 = 1 << 20;

/// GET `url` and return its body. Any status but 2xx is an error.
pub fn get(url: &str) -> Result<Vec<u8>> {
    let advice = "check the URL, or download the certificate and pass it as a file (--cert cert.pem)";
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).timeout_global(Some(TIMEOUT)).build().into();
    let mut response = agent
        .get(url)
        .header("Accept", "application/x-pem-file, */*")
        .call()
        .map_err(|e| anyhow!("cannot fetch the certificate from {url} ({e}): {advice}"))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| anyhow!("cannot read the certificate from {url} ({e}): {advice}"))
}
