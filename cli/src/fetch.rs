//! Fetching a certificate from an `http(s)://` URL (`--cert https://…`), as kubeseal does.
//!
//! TLS is rustls on aws-lc-rs (the product's one crypto provider) with the operating system's
//! trust store, so a certificate endpoint behind a corporate CA works. `HTTP(S)_PROXY` and
//! `NO_PROXY` are honoured. The whole request is bounded by [`TIMEOUT`].
//!
//! A controller that has just started answers 503 with `Retry-After` until its first key is
//! loaded; [`get`] waits for it (saying so on stderr), at most [`WAIT_FOR_READY`] in all and at
//! most [`MAX_RETRY_AFTER`] per wait, whatever the server asks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate is a few kilobytes; anything past this is not one.
const MAX_BODY: u64 = 1 << 20;

/// How long [`get`] keeps retrying 503 answers in all.
pub const WAIT_FOR_READY: Duration = Duration::from_secs(30);

/// The longest single wait, whatever `Retry-After` says (a hostile server cannot park us).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An error body quoted in a message is cut to this many characters.
const MAX_QUOTED: usize = 200;

/// How long to wait before the next try after a 503: `Retry-After` in seconds (a date or
/// nonsense counts as one second), within [100 ms, [`MAX_RETRY_AFTER`]].
pub fn retry_delay(retry_after: Option<&str>) -> Duration {
    let secs = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(1);
    Duration::from_secs(secs).clamp(Duration::from_millis(100), MAX_RETRY_AFTER)
}

/// GET `url` and return its body. A 503 is retried (see the module docs); any other status but
/// 2xx is an error.
pub fn get(url: &str) -> Result<Vec<u8>> {
    get_waiting(url, WAIT_FOR_READY)
}

/// [`get`] with the total wait for a 503 to clear given.
pub fn get_waiting(url: &str, wait_for_ready: Duration) -> Result<Vec<u8>> {
    let advice = "check the URL, or download the certificate and pass it as a file (--cert cert.pem)";
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let start = std::time::Instant::now();
    let mut response = loop {
        let mut response = agent
            .get(url)
            .header("Accept", "application/x-pem-file, */*")
            .call()
            .map_err(|e| anyhow!("cannot fetch the certificate from {url} ({e}): {advice}"))?;
        let status = response.status();
        if status.is_success() {
            break response;
        }
        let said = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map(|t| t.lines().next().unwrap_or_default().chars().take(MAX_QUOTED).collect::<String>())
            .unwrap_or_default();
        let elapsed = start.elapsed();
        if status == ureq::http::StatusCode::SERVICE_UNAVAILABLE && elapsed < wait_for_ready {
            let asked = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
            let delay = retry_delay(asked).min(wait_for_ready - elapsed);
            eprintln!("gitseal: {url} is not ready yet ({said}); waiting {:.1}s", delay.as_secs_f32());
            std::thread::sleep(delay);
            continue;
        }
        let waited = if status == ureq::http::StatusCode::SERVICE_UNAVAILABLE {
            format!(", still after {}s", wait_for_ready.as_secs())
        } else {
            String::new()
        };
        return Err(anyhow!("cannot fetch the certificate from {url} (HTTP {status}{waited}: {said}): {advice}"));
    };
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| anyhow!("cannot read the certificate from {url} ({e}): {advice}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::TcpListener;

    /// A one-connection-at-a-time HTTP server answering `answers` in order, then closing.
    fn serve(answers: Vec<String>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/cert.pem", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = stream;
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        url
    }

    fn answer(status: &str, headers: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}", body.len())
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        assert_eq!(retry_delay(Some("2")), Duration::from_secs(2));
        assert_eq!(retry_delay(Some("0")), Duration::from_millis(100));
        assert_eq!(retry_delay(Some("86400")), MAX_RETRY_AFTER);
        assert_eq!(retry_delay(Some("Wed, 21 Oct 2015 07:28:00 GMT")), Duration::from_secs(1));
        assert_eq!(retry_delay(None), Duration::from_secs(1));
    }

    /// Issue 12: right after the playground starts, the controller has no key for a moment.
    #[test]
    fn a_503_is_waited_out_and_the_certificate_then_returned() {
        let busy = answer("503 Service Unavailable", "Retry-After: 0\r\n", "no sealing key is loaded yet\n");
        let url = serve(vec![busy.clone(), busy, answer("200 OK", "", "PEM")]);
        assert_eq!(get_waiting(&url, Duration::from_secs(5)).unwrap(), b"PEM");
    }

    #[test]
    fn a_503_that_does_not_clear_fails_after_the_bound_with_the_servers_words() {
        let busy = answer("503 Service Unavailable", "Retry-After: 0\r\n", "no sealing key is loaded yet\n");
        let url = serve(vec![busy; 50]);
        let start = std::time::Instant::now();
        let e = get_waiting(&url, Duration::from_millis(300)).unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(3), "bounded: {:?}", start.elapsed());
        assert!(e.contains("HTTP 503") && e.contains("no sealing key is loaded yet"), "{e}");
    }

    #[test]
    fn other_errors_are_not_retried() {
        let url = serve(vec![answer("404 Not Found", "", "nope\n")]);
        let e = get_waiting(&url, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(e.contains("HTTP 404") && e.contains("nope"), "{e}");
    }
}
