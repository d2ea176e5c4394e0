//! Private-key work has a budget: one bounded pool runs every RSA private operation of the
//! controller, reconciliation first; API callers are rate-limited in private operations, not
//! requests, keyed on who they really are.
//!
//! - [`PrivatePool`]: a fixed set of worker threads. Reconcile jobs queue without bound (the
//!   controller's `--workers` bounds them) and are always taken first; API jobs wait in a short
//!   bounded queue (full → [`Busy`], answered 503 with `Retry-After`) and may occupy at most all
//!   threads but one, so an API flood cannot delay unsealing by more than the job a thread has
//!   just started, and that job is itself capped by its [`OpBudget`].
//! - [`OpLimiter`]: token buckets of private operations per [`ClientKey`]. A request reserves
//!   what it may spend before it runs (at most the per-request cap) and is refunded what it did
//!   not spend, so concurrent requests of one client cannot overdraw.
//! - [`client_of`]: the peer address, unless the peer is a configured trusted proxy; then the
//!   last `X-Forwarded-For` hop that is not itself a trusted proxy.
//!
//! [`OpBudget`]: gitseal_shared::seal::OpBudget

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use axum::http::HeaderMap;
use gitseal_shared::seal::private_ops_on_this_thread;

/// Who private-key work is done for: the label of `gitseal_private_key_operations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkClass {
    Reconcile,
    Api,
}

impl WorkClass {
    pub fn label(self) -> &'static str {
        match self {
            WorkClass::Reconcile => "reconcile",
            WorkClass::Api => "api",
        }
    }
}

/// The API queue is full: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the controller is busy with private-key work; retry later")]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Queues {
    reconcile: VecDeque<Job>,
    api: VecDeque<Job>,
    api_running: usize,
}

struct PoolInner {
    queues: Mutex<Queues>,
    wake: Condvar,
    max_api_queue: usize,
    max_api_running: usize,
}

/// The one pool in which every private-key operation of the controller runs.
pub struct PrivatePool {
    inner: Arc<PoolInner>,
    threads: usize,
}

impl std::fmt::Debug for PrivatePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivatePool")
            .field("threads", &self.threads)
            .field("max_api_queue", &self.inner.max_api_queue)
            .finish()
    }
}

impl PrivatePool {
    /// Start `threads` workers (at least one). API jobs may run on all but one of them (on
    /// all of one), and at most `max_api_queue` may wait.
    pub fn new(threads: usize, max_api_queue: usize) -> PrivatePool {
        let threads = threads.max(1);
        let inner = Arc::new(PoolInner {
            queues: Mutex::new(Queues::default()),
            wake: Condvar::new(),
            max_api_queue,
            max_api_running: (threads - 1).max(1),
        });
        for i in 0..threads {
            let inner = inner.clone();
            let spawned = std::thread::Builder::new().name(format!("private-key-{i}")).spawn(move || worker(&inner));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a private-key worker thread");
            }
        }
        PrivatePool { inner, threads }
    }

    /// API jobs waiting now.
    pub fn api_queued(&self) -> usize {
        self.inner.queues.lock().unwrap_or_else(|p| p.into_inner()).api.len()
    }

    /// Run `f` on a worker for `class` and return its result with the private-key operations it
    /// spent (failed ones included, counted on the worker thread). API work is refused with
    /// [`Busy`] when its queue is full; reconcile work always queues.
    pub async fn run<T: Send + 'static>(
        &self,
        class: WorkClass,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, u64), Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let before = private_ops_on_this_thread();
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let spent = private_ops_on_this_thread().saturating_sub(before);
            if let Ok(out) = out {
                let _ = tx.send((out, spent));
            }
        });
        {
            let mut q = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            match class {
                WorkClass::Reconcile => q.reconcile.push_back(job),
                WorkClass::Api => {
                    if q.api.len() >= self.inner.max_api_queue {
                        return Err(Busy);
                    }
                    q.api.push_back(job);
                }
            }
        }
        self.inner.wake.notify_all();
        // A job that panicked drops its sender: report it as busy rather than hang or panic here.
        rx.await.map_err(|_| Busy)
    }
}

fn worker(inner: &PoolInner) {
    loop {
        let (job, api) = {
            let mut q = inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = q.reconcile.pop_front() {
                    break (job, false);
                }
                if q.api_running < inner.max_api_running
                    && let Some(job) = q.api.pop_front()
                {
                    q.api_running += 1;
                    break (job, true);
                }
                q = inner.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        job();
        if api {
            inner.queues.lock().unwrap_or_else(|p| p.into_inner()).api_running -= 1;
            inner.wake.notify_all();
        }
    }
}

/// Who an API request is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An unauthenticated caller of the legacy endpoints, by address.
    Addr(IpAddr),
    /// An authenticated caller of the aggregated API, by user name.
    User(String),
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::Addr(a) => write!(f, "unauthenticated:{a}"),
            ClientKey::User(u) => f.write_str(u),
        }
    }
}

const MAX_TRACKED_CLIENTS: usize = 65_536;

/// What a client may spend on one request, reserved from its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Private operations this request may spend.
    pub ops: u32,
    /// True when the grant is smaller than the per-request cap because the client's bucket is
    /// low: running out of it is then a rate limit, not a too-large request.
    pub limited_by_rate: bool,
}

/// Token buckets of private-key operations per client.
#[derive(Debug)]
pub struct OpLimiter {
    rate: f64,
    burst: f64,
    per_request: u32,
    buckets: Mutex<HashMap<ClientKey, (f64, Instant)>>,
}

impl OpLimiter {
    /// `rate` operations per second per client, up to `burst` saved; at most `per_request` for
    /// one request.
    pub fn new(rate: f64, burst: u32, per_request: u32) -> OpLimiter {
        OpLimiter {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            per_request: per_request.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<T>(&self, client: &ClientKey, now: Instant, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED_CLIENTS && !b.contains_key(client) {
            // Forget idle clients (a full bucket is the same as no entry).
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(client.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        f(tokens)
    }

    /// Reserve what `client` may spend on one request, or say after how many whole seconds it
    /// will have at least one operation again (the `Retry-After` of a 429).
    pub fn admit(&self, client: &ClientKey, now: Instant) -> Result<Grant, u64> {
        let per_request = self.per_request;
        self.with_bucket(client, now, |tokens| {
            if *tokens < 1.0 {
                return Err(self.seconds_until(1.0 - *tokens));
            }
            let available = tokens.floor().min(f64::from(per_request));
            *tokens -= available;
            // Whole numbers between 1 and per_request: the cast is exact.
            let ops = available as u32;
            Ok(Grant { ops, limited_by_rate: ops < per_request })
        })
    }

    /// Return what a request reserved but did not spend. Every request costs at least one
    /// operation, so even work-free requests (bad bodies) are limited.
    pub fn settle(&self, client: &ClientKey, grant: Grant, spent: u64, now: Instant) {
        let spent = spent.max(1);
        let refund = f64::from(grant.ops) - spent as f64;
        self.with_bucket(client, now, |tokens| *tokens = (*tokens + refund).min(self.burst));
    }

    /// Whole seconds until `deficit` operations are back.
    pub fn seconds_until(&self, deficit: f64) -> u64 {
        if self.rate <= 0.0 {
            return 3600;
        }
        (deficit / self.rate).ceil().clamp(1.0, 3600.0) as u64
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`; a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address or CIDR network")]
    NotAnAddress(String),
    /// The part after `/` is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("{0:?}: bad prefix length")]
    BadPrefix(String),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::NotAnAddress(s.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| CidrError::BadPrefix(s.to_owned()))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Option<(u128, u8)> {
            match ip {
                IpAddr::V4(v) => Some((u128::from(u32::from(v)) << 96, 32)),
                IpAddr::V6(v) => match v.to_ipv4_mapped() {
                    Some(v4) => Some((u128::from(u32::from(v4)) << 96, 32)),
                    None => Some((u128::from(v), 128)),
                },
            }
        };
        let (Some((net, net_len)), Some((host, host_len))) = (bits(self.addr), bits(ip)) else { return false };
        if net_len != host_len {
            return false;
        }
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        net & mask == host & mask
    }
}

/// The address a legacy request is counted against: the peer, unless the peer is a trusted
/// proxy; then the right-most `X-Forwarded-For` entry that is not a trusted proxy (entries to
/// its left are whatever the caller wrote). With no trusted proxies the header is ignored, so a
/// caller that reaches the port directly cannot pick its own bucket.
pub fn client_of(headers: &HeaderMap, peer: SocketAddr, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.ip();
    if !is_trusted(client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // A garbled hop was written by someone untrusted: stop at the last good one.
            Err(_) => break,
        }
    }
    client
}

/// Token buckets per client address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter { rate, burst: f64::from(burst), buckets: Mutex::new(HashMap::new()) }
    }

    /// Take one token for `client`; false when it is over its rate.
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED_CLIENTS && !b.contains_key(&client) {
            // Forget idle clients (a full bucket is the same as no entry).
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whole seconds after which a refused client surely has a token again: the `Retry-After`
    /// of a 429. client-go (so kubeseal) retries a 429 only when that header is present, as
    /// Bitnami's limiter sends it; without it `kubeseal --validate` of a stream fails.
    pub fn retry_after_secs(&self) -> u64 {
        (1.0 / self.rate).ceil().clamp(1.0, 3600.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn cidrs_parse_and_match_both_families() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.9.9".parse().unwrap()), "v4-mapped peers match v4 networks");
        let host: Cidr = "fd00::1".parse().unwrap();
        assert!(host.contains("fd00::1".parse().unwrap()) && !host.contains("fd00::2".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0.0/x", "::/129"] {
            assert_eq!(bad.parse::<Cidr>(), Err(CidrError::BadPrefix(bad.into())), "{bad}");
        }
        for bad in ["nonsense", "10.0.0/8", ""] {
            assert_eq!(bad.parse::<Cidr>(), Err(CidrError::NotAnAddress(bad.into())), "{bad}");
        }
        assert_eq!(CidrError::BadPrefix("::/129".into()).to_string(), r#""::/129": bad prefix length"#);
    }

    fn xff(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static(v));
        h
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_does_not_change_the_client() {
        let peer: SocketAddr = "10.0.0.9:443".parse().unwrap();
        assert_eq!(client_of(&xff("1.2.3.4"), peer, &[]), peer.ip());
        let trusted = ["10.0.0.0/24".parse().unwrap()];
        let outsider: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert_eq!(client_of(&xff("1.2.3.4"), outsider, &trusted), outsider.ip());
    }

    #[test]
    fn behind_trusted_proxies_the_last_untrusted_hop_is_the_client() {
        let peer: SocketAddr = "10.0.0.9:443".parse().unwrap();
        let trusted = ["10.0.0.0/24".parse().unwrap()];
        assert_eq!(
            client_of(&xff("6.6.6.6, 192.0.2.7, 10.0.0.3"), peer, &trusted),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_of(&xff("garbage, 192.0.2.7"), peer, &trusted), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(
            client_of(&xff("192.0.2.7, garbage"), peer, &trusted),
            peer.ip(),
            "a garbled last hop stops the walk"
        );
        assert_eq!(client_of(&HeaderMap::new(), peer, &trusted), peer.ip());
    }

    #[test]
    fn the_limiter_counts_operations_reserves_them_and_refunds_what_was_not_spent() {
        let rl = OpLimiter::new(10.0, 30, 20);
        let a = ClientKey::Addr("10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        let g = rl.admit(&a, t0).unwrap();
        assert_eq!(g, Grant { ops: 20, limited_by_rate: false });
        let g2 = rl.admit(&a, t0).unwrap();
        assert_eq!(g2, Grant { ops: 10, limited_by_rate: true }, "a concurrent request gets what is left");
        assert_eq!(rl.admit(&a, t0), Err(1), "nothing left: retry after a second");
        rl.settle(&a, g, 2, t0);
        rl.settle(&a, g2, 0, t0);
        let g3 = rl.admit(&a, t0).unwrap();
        assert_eq!(g3.ops, 20, "27 back, 20 per request");
        assert!(rl.admit(&ClientKey::User("alice".into()), t0).is_ok(), "buckets are per client");
        rl.settle(&a, g3, 20, t0);
        assert_eq!(rl.admit(&a, t0).map(|g| g.ops), Ok(7));
        assert_eq!(rl.admit(&a, t0), Err(1));
        assert!(rl.admit(&a, t0 + Duration::from_millis(200)).is_ok(), "refills at the rate");
        assert_eq!(OpLimiter::new(0.0, 1, 1).seconds_until(1.0), 3600);
        assert_eq!(OpLimiter::new(0.5, 1, 1).seconds_until(3.0), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconcile_work_overtakes_a_queue_of_api_work() {
        let pool = Arc::new(PrivatePool::new(2, 64));
        let order = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let max_api_parallel = Arc::new(AtomicUsize::new(0));
        let mut api = Vec::new();
        for i in 0..8 {
            let (pool, order, running, max) = (pool.clone(), order.clone(), running.clone(), max_api_parallel.clone());
            api.push(tokio::spawn(async move {
                pool.run(WorkClass::Api, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                    order.lock().unwrap().push(format!("api{i}"));
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        let o = order.clone();
        pool.run(WorkClass::Reconcile, move || o.lock().unwrap().push("reconcile".into())).await.unwrap();
        let waited = started.elapsed();
        for j in api {
            j.await.unwrap().unwrap();
        }
        let order = order.lock().unwrap();
        let at = order.iter().position(|s| s == "reconcile").unwrap();
        assert!(at <= 1, "reconcile ran after at most the API job already running: {order:?}");
        assert!(waited < Duration::from_millis(25), "reconcile did not wait for the API queue: {waited:?}");
        assert_eq!(max_api_parallel.load(Ordering::SeqCst), 1, "API work leaves one thread for reconcile");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_api_queue_refuses_more_and_a_panicking_job_does_not_kill_the_pool() {
        let pool = Arc::new(PrivatePool::new(1, 2));
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(WorkClass::Api, move || gate_rx.recv().is_ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(WorkClass::Api, || 1).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool.api_queued(), 2);
        assert_eq!(pool.run(WorkClass::Api, || 1).await, Err(Busy));
        gate_tx.send(()).unwrap();
        assert_eq!(blocker.await.unwrap(), Ok((true, 0)));
        for q in queued {
            assert_eq!(q.await.unwrap(), Ok((1, 0)));
        }
        assert_eq!(pool.run(WorkClass::Reconcile, || panic!("job panics")).await, Err::<((), u64), _>(Busy));
        assert_eq!(pool.run(WorkClass::Reconcile, || 7).await, Ok((7, 0)), "the worker survived");
    }
}
