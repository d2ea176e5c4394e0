//! Serving a router on a TCP listener with limits, for both the plain HTTP API and the
//! aggregated TLS listener: a cap on open connections (beyond it a new connection is closed as
//! soon as it is accepted), a TLS-handshake timeout, a header-read timeout (HTTP/1; hyper
//! starts it whenever it waits for a request head, so it also ends idle keep-alives), an idle
//! timeout (no request in flight: graceful close, for HTTP/1 and HTTP/2 alike, so a client
//! that trickles bytes without finishing a request is cut off too), and a cap on requests in
//! flight (beyond it 503 with `Retry-After`). Body timeouts are applied where bodies are read
//! ([`crate::service::read_body`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::config::ListenerLimits;

/// How long a connection asked to close gracefully may take to finish what it is doing.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Per-connection activity, for the idle timeout.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.last.lock().unwrap_or_else(|p| p.into_inner()).elapsed())
    }
}

/// Ends a request's in-flight count when dropped (also when the client goes away mid-request).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// Resolves when `stop` turns true (or its sender is gone), holding no borrow of it.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

fn busy() -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight; retry shortly\n").into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Serve `app` on `listener` until `stop` turns true. `handshake` turns an accepted stream into
/// the stream to speak HTTP on (TLS, or the TCP stream itself) and an extension attached to
/// every request of that connection; it runs under the handshake timeout. Requests also carry
/// [`ConnectInfo<SocketAddr>`].
pub async fn serve<H, Fut, Io, X>(
    listener: TcpListener,
    limits: ListenerLimits,
    app: Router,
    handshake: H,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<(Io, X)>> + Send + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    X: Clone + Send + Sync + 'static,
{
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let requests = Arc::new(Semaphore::new(limits.max_requests));
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "connection refused: --max-connections reached");
            drop(tcp);
            continue;
        };
        let (app, requests, handshake, stop) = (app.clone(), requests.clone(), handshake.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Some((io, extra))) = tokio::time::timeout(limits.handshake_timeout, handshake(tcp, remote)).await
            else {
                tracing::debug!(%remote, "handshake failed or timed out");
                return;
            };
            serve_connection(io, remote, extra, app, requests, limits, stop).await;
        });
    }
}

async fn serve_connection<Io, X>(
    io: Io,
    remote: SocketAddr,
    extra: X,
    app: Router,
    requests: Arc<Semaphore>,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    X: Clone + Send + Sync + 'static,
{
    let activity = Arc::new(Activity { in_flight: AtomicUsize::new(0), last: Mutex::new(Instant::now()) });
    let act = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        act.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(act.clone());
        req.extensions_mut().insert(ConnectInfo(remote));
        req.extensions_mut().insert(extra.clone());
        let permit = requests.clone().try_acquire_owned();
        let app = app.clone();
        async move {
            let _guard = guard;
            let Ok(_permit) = permit else { return Ok::<_, std::convert::Infallible>(busy()) };
            app.oneshot(req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(u32::try_from(limits.max_requests).unwrap_or(u32::MAX));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%remote, error = %e, "connection ended");
                }
                return;
            }
            _ = ticker.tick() => {
                match closing {
                    Some(since) if since.elapsed() > CLOSE_GRACE => return,
                    Some(_) => {}
                    None => {
                        if activity.idle_for().is_some_and(|d| d >= limits.idle_timeout) {
                            tracing::debug!(%remote, "closing idle connection");
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                    }
                }
            }
            () = stopped(&mut stop), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
        }
    }
}

/// Serve plain HTTP (the Bitnami-compatible API).
pub async fn serve_plain(listener: TcpListener, limits: ListenerLimits, app: Router, stop: watch::Receiver<bool>) {
    serve(listener, limits, app, |tcp, _| async move { Some((tcp, ())) }, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> ListenerLimits {
        ListenerLimits {
            handshake_timeout: Duration::from_millis(300),
            header_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            max_connections: 3,
            max_requests: 8,
        }
    }

    async fn start(limits: ListenerLimits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve_plain(listener, limits, app, rx));
        (addr, tx)
    }

    /// Read until EOF or `within`; true if the server closed the connection.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }

    async fn healthz(s: &mut TcpStream) -> String {
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_sends_headers_byte_by_byte_is_cut_off() {
        let (addr, _stop) = start(limits()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let mut cut = false;
        for b in
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .iter()
        {
            if s.write_all(&[*b]).await.is_err() {
                cut = true;
                break;
            }
            if closed_within(&mut s, Duration::from_millis(50)).await {
                cut = true;
                break;
            }
        }
        assert!(cut, "a slowloris client must be cut off");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "cut off after the header timeout: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_tx, rx) = watch::channel(false);
        // A handshake that waits for bytes the client never sends, like a stalled TLS hello.
        let handshake = |mut tcp: TcpStream, _| async move {
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await.ok()?;
            Some((tcp, ()))
        };
        tokio::spawn(serve(listener, limits(), Router::new(), handshake, rx));
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(2)).await, "closed after the handshake timeout");
    }

    #[tokio::test]
    async fn beyond_max_connections_new_ones_are_refused_while_existing_ones_still_answer() {
        let (addr, _stop) = start(limits()).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            assert!(healthz(&mut s).await.contains("200 OK"));
            held.push(s);
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut extra, Duration::from_millis(500)).await, "the fourth connection is refused");
        assert!(healthz(&mut held[0]).await.contains("ok"), "an existing connection still answers /healthz");
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut after = TcpStream::connect(addr).await.unwrap();
        assert!(healthz(&mut after).await.contains("200 OK"), "new connections work again after recovery");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let mut l = limits();
        l.header_timeout = Duration::from_secs(30);
        let (addr, _stop) = start(l).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(healthz(&mut s).await.contains("200 OK"));
        assert!(closed_within(&mut s, Duration::from_secs(3)).await, "closed after the idle timeout");
    }
}
