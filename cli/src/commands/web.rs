//! `gitseal web`: serve the sealing page and one certificate on a local address.
//!
//! A deliberately small HTTP/1.1 server on std: GET and HEAD of `/seal/…` (the embedded page),
//! `/v1/cert.pem` (the certificate, loaded once at start) and `/` (a redirect); one response
//! per connection; request heads capped at 8 KiB and 5 s; at most 32 connections at once. It
//! never reads a body, so nothing the page seals could reach it even by mistake.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use gitseal_keys::Certificate;
use gitseal_web::assets;

use crate::config::WebConfig;
use crate::material;

const MAX_HEAD: u64 = 8 * 1024;
const MAX_CONNECTIONS: usize = 32;
const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(cfg: &WebConfig) -> Result<()> {
    let cert = match &cfg.cert {
        Some(spec) => material::load_certificate(spec, "--cert")?,
        None => super::cert::fetch_certificate(&cfg.cluster)?,
    };
    cert.check_not_expired(time::OffsetDateTime::now_utc()).context("the certificate")?;
    let listener = TcpListener::bind(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr().context("cannot read the listening address")?;
    let created = cert.not_before().map(gitseal_keys::cert::fmt_time).unwrap_or_default();
    eprintln!("Sealing for key {} (created {created}). Stop with Ctrl-C; open pages keep working.", cert.key_id());
    let mut out = std::io::stdout();
    writeln!(out, "http://{addr}{}", assets::PREFIX).context("cannot print the URL")?;
    out.flush().context("cannot print the URL")?;

    let cert = Arc::new(cert);
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: the browser retries
        }
        let (cert, open) = (Arc::clone(&cert), Arc::clone(&open));
        std::thread::spawn(move || {
            let _ = serve(stream, &cert);
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

/// One request, one response.
fn serve(stream: TcpStream, cert: &Certificate) -> std::io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head is read and ignored (there is no body to wait for).
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let response = route(method, path, cert);
    write(stream, &response, method == "HEAD")
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    location: Option<&'static str>,
    body: Vec<u8>,
}

fn route(method: &str, path: &str, cert: &Certificate) -> Response {
    let text = |status, body: &str| Response {
        status,
        content_type: "text/plain; charset=utf-8",
        location: None,
        body: body.as_bytes().to_vec(),
    };
    let redirect = |status, to| Response { location: Some(to), ..text(status, "") };
    if method != "GET" && method != "HEAD" {
        return text("405 Method Not Allowed", "only GET\n");
    }
    if let Some(a) = assets::asset(path) {
        return Response { status: "200 OK", content_type: a.content_type, location: None, body: a.body.to_vec() };
    }
    match path {
        "/" => redirect("302 Found", "/seal/"),
        "/seal" => redirect("301 Moved Permanently", "seal/"),
        "/v1/cert.pem" => Response {
            status: "200 OK",
            content_type: "application/x-pem-file",
            location: None,
            body: cert.pem().as_bytes().to_vec(),
        },
        _ => text("404 Not Found", "not found\n"),
    }
}

fn write(mut stream: TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if let Some(to) = r.location {
        head.push_str(&format!("location: {to}\r\n"));
    }
    for (name, value) in assets::SECURITY_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&r.body)?;
    }
    stream.flush()
}
