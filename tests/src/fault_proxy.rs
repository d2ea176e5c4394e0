//! A loopback TCP proxy that breaks connections on request, the way networks break watches.
//!
//! [`FaultProxy::start`] listens on a free port of 127.0.0.1 and forwards every connection to a
//! target (kube-apiserver); a client whose kubeconfig names [`FaultProxy::url`] talks to the
//! apiserver through it (TLS passes through untouched: the serving certificate names 127.0.0.1,
//! whatever the port). A test can then:
//! - [`pause`](FaultProxy::pause): hold every byte in both directions (connections stay open,
//!   requests and watch events stall) until [`resume`](FaultProxy::resume);
//! - [`hold_answers`](FaultProxy::hold_answers): let requests reach the server but hold its
//!   answers (the server acts, the client does not hear of it);
//! - [`cut`](FaultProxy::cut): close every connection now and refuse new ones (accepted, then
//!   closed at once) for a while;
//! - [`slow`](FaultProxy::slow): delay every chunk by a latency;
//! - [`restore`](FaultProxy::restore): all of that off.
//!
//! It runs on its own thread and runtime, so it outlives the tokio runtime of the test that
//! started it (each `#[tokio::test]` has its own) and needs none. Dropping the handle stops it.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::{Error, Result};

/// What the proxy does to bytes in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mode {
    paused: bool,
    /// Requests pass, answers are held: the apiserver acts, the client never hears of it.
    answers_held: bool,
    latency: Duration,
}

#[derive(Debug)]
struct State {
    mode: watch::Sender<Mode>,
    // Bumped by a cut: every connection closes when it changes.
    generation: watch::Sender<u64>,
    refuse_until: Mutex<Option<Instant>>,
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl State {
    fn refusing(&self) -> bool {
        let until = *self.refuse_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| Instant::now() < u)
    }
}

/// A running proxy; see the module documentation.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub fn start(target: SocketAddr) -> Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("binding the fault proxy on 127.0.0.1", e))?;
        listener.set_nonblocking(true).map_err(|e| Error::io("making the fault proxy's socket non-blocking", e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("reading the fault proxy's address", e))?;
        let state = Arc::new(State {
            mode: watch::channel(Mode::default()).0,
            generation: watch::channel(0).0,
            refuse_until: Mutex::new(None),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("building the fault proxy's runtime", e))?;
        let st = state.clone();
        std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => accept_loop(l, target, st, stopped).await,
                        Err(e) => tracing::error!(error = %e, "fault proxy cannot listen"),
                    }
                });
            })
            .map_err(|e| Error::io("starting the fault proxy's thread", e))?;
        tracing::debug!(%addr, %target, "fault proxy started");
        Ok(Self { addr, target, state, stop })
    }

    /// `https://127.0.0.1:<port>`: the server URL for a kubeconfig that goes through the proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Hold every byte in both directions until [`Self::resume`] (or [`Self::restore`]).
    pub fn pause(&self) {
        self.state.mode.send_modify(|m| m.paused = true);
    }

    /// Let held bytes through again.
    pub fn resume(&self) {
        self.state.mode.send_modify(|m| {
            m.paused = false;
            m.answers_held = false;
        });
    }

    /// Let requests through but hold every answer until [`Self::resume`]: what the server did
    /// for a client that dies now never reaches it.
    pub fn hold_answers(&self) {
        self.state.mode.send_modify(|m| m.answers_held = true);
    }

    /// Delay every chunk of bytes by `latency` (zero: no delay).
    pub fn slow(&self, latency: Duration) {
        self.state.mode.send_modify(|m| m.latency = latency);
    }

    /// Close every open connection now (bytes held by a pause are dropped, not delivered) and
    /// refuse new connections for `refuse_for` (each is accepted and closed at once).
    pub fn cut(&self, refuse_for: Duration) {
        *self.state.refuse_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + refuse_for);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// No pause, no latency, no refusal: a healthy network again.
    pub fn restore(&self) {
        *self.state.refuse_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.state.mode.send_replace(Mode::default());
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Connections accepted and forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused (closed at once) during cuts so far.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.state.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let inbound = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "fault proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        if state.refusing() {
            state.refused.fetch_add(1, Ordering::SeqCst);
            drop(inbound);
            continue;
        }
        state.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(connection(inbound, target, state.clone()));
    }
}

async fn connection(inbound: TcpStream, target: SocketAddr, state: Arc<State>) {
    let mut cut = state.generation.subscribe();
    cut.mark_unchanged();
    let Ok(outbound) = TcpStream::connect(target).await else { return };
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    state.open.fetch_add(1, Ordering::SeqCst);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    let up = pump(ri, wo, state.mode.subscribe(), |m| m.paused);
    let down = pump(ro, wi, state.mode.subscribe(), |m| m.paused || m.answers_held);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.changed() => {}
    }
    // Both halves of both sockets drop here: the peers see the connection close.
    state.open.fetch_sub(1, Ordering::SeqCst);
}

/// Copies `from` to `to` chunk by chunk, holding a chunk while `held` says so and delaying it by
/// the latency. Ends at EOF (passing it on) or on an error.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut mode: watch::Receiver<Mode>,
    held: fn(&Mode) -> bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let mut m = *mode.borrow_and_update();
        while held(&m) {
            if mode.changed().await.is_err() {
                return;
            }
            m = *mode.borrow_and_update();
        }
        if !m.latency.is_zero() {
            tokio::time::sleep(m.latency).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8], within: Duration) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(within, s.read_exact(&mut back))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no echo"))??;
        Ok(back)
    }

    #[tokio::test]
    async fn bytes_pass_pause_holds_them_and_resume_delivers_them() {
        let proxy = FaultProxy::start(echo_server().await).unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello", Duration::from_secs(5)).await.unwrap(), b"hello");
        proxy.pause();
        assert!(round_trip(&mut s, b"held", Duration::from_millis(300)).await.is_err(), "a pause holds bytes");
        proxy.resume();
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(&back, b"held");
    }

    #[tokio::test]
    async fn held_answers_let_the_request_reach_the_server_and_keep_its_answer() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (mut r, mut w) = s.into_split();
            let mut buf = [0u8; 64];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let _ = got_tx.send(buf[..n].to_vec());
                let _ = w.write_all(&buf[..n]).await;
            }
        });
        let proxy = FaultProxy::start(addr).unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.hold_answers();
        assert!(round_trip(&mut s, b"apply", Duration::from_millis(300)).await.is_err(), "no answer");
        let arrived = tokio::time::timeout(Duration::from_secs(5), got.recv()).await.unwrap().unwrap();
        assert_eq!(arrived, b"apply", "but the server has the request");
        proxy.resume();
        let mut back = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(&back, b"apply");
    }

    #[tokio::test]
    async fn a_cut_closes_connections_and_refuses_new_ones_until_it_ends() {
        let proxy = FaultProxy::start(echo_server().await).unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut s, b"x", Duration::from_secs(5)).await.unwrap();
        proxy.cut(Duration::from_millis(400));
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "the open connection is closed");
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut refused, b"y", Duration::from_secs(2)).await.is_err(), "refused during the cut");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"z", Duration::from_secs(5)).await.unwrap(), b"z");
        assert!(proxy.refused() >= 1);
    }

    #[tokio::test]
    async fn slow_adds_latency() {
        let proxy = FaultProxy::start(echo_server().await).unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.slow(Duration::from_millis(200));
        let t = Instant::now();
        round_trip(&mut s, b"slow", Duration::from_secs(5)).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(400), "both directions delayed: {:?}", t.elapsed());
        proxy.restore();
        let t = Instant::now();
        round_trip(&mut s, b"fast", Duration::from_secs(5)).await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    }
}
