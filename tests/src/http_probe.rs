//! A minimal plain-HTTP GET for loopback probes (etcd's `/health`, the Bitnami controller's
//! `/v1/cert.pem`), so the harness needs no HTTP client crate besides kube's.
//!
//! It speaks HTTP/1.0 with `Connection: close`, which Go's servers answer without chunked
//! encoding, and reads the whole response. Only `http://host:port/path` URLs are accepted.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{Error, Result};

/// How long one probe may take end to end.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `url` (`http://host:port/path`) and returns the status code and body.
pub async fn http_get(url: &str) -> Result<(u16, Vec<u8>)> {
    exchange(url, "GET", None).await
}

/// POSTs a JSON `body` to `url` (`http://host:port/path`, e.g. etcd's gRPC gateway) and returns
/// the status code and body.
pub async fn http_post_json(url: &str, body: &str) -> Result<(u16, Vec<u8>)> {
    exchange(url, "POST", Some(body)).await
}

async fn exchange(url: &str, method: &str, body: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::invalid(format!("probing {url}"), "only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n");
        match body {
            Some(b) => {
                request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()))
            }
            None => request.push_str("\r\n"),
        }
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            Error::io(
                format!("{method} {url}"),
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no response within 5 s"),
            )
        })?
        .map_err(|e| Error::io(format!("{method} {url}"), e))?;
    parse_response(&response).ok_or_else(|| Error::invalid(format!("{method} {url}"), "malformed HTTP response"))
}

fn parse_response(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..split]).ok()?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_splits_into_status_and_body() {
        let parsed = parse_response(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n{\"health\":\"true\"}");
        assert_eq!(parsed, Some((200, b"{\"health\":\"true\"}".to_vec())));
    }

    #[test]
    fn a_truncated_response_is_rejected() {
        assert!(parse_response(b"HTTP/1.0 200 OK\r\n").is_none());
    }
}
