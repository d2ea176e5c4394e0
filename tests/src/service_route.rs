//! A real route from the kube-apiserver's service proxy to a process on this host, which is how
//! `kubeseal` reaches a sealed-secrets controller
//! (`/api/v1/namespaces/<ns>/services/http:<name>:<port>/proxy/...`).
//!
//! The proxy (k8s 1.36, `pkg/registry/core/service/storage/storage.go`, `ResourceLocation`)
//! resolves a Service through its v1 `Endpoints`, and only to an address whose `targetRef` is a
//! Pod of the same namespace listing that address in `status.podIPs`. Endpoints validation refuses
//! loopback, so a process on 127.0.0.1 cannot be a target. Two pieces make the route real:
//!
//! - [`HostLink`] (as root, once per test process): a network namespace holding one end of a veth
//!   pair; the end left in this namespace gets `198.18.<n>.1/30` (RFC 2544 benchmarking range), the
//!   other end `.2`. A process listening on `198.18.<n>.1` is reached locally, and nothing but
//!   that interface, which the harness made, is ever addressed.
//! - [`ServiceRoute`] (per test namespace): a selector-less Service with one port named `http`,
//!   a Pod that never runs (no scheduler, no kubelet) whose status the harness writes through
//!   `pods/status` (Running, Ready, `podIPs` = the host address), and an `Endpoints` object
//!   pointing at that Pod and the process's port.
//!
//! Cleanup: the network namespace exists only while its holder process (`unshare --net sleep
//! infinity`, a [`ChildProcess`]) runs, and the kernel deletes both ends of the veth pair with
//! it. The holder is registered with the [`crate::reaper`] watchdog, so the interface goes away
//! when the test process exits however it exits, and when a [`HostLink`] is dropped. Nothing is
//! left in `/run/netns`. The Kubernetes objects live in the test namespace and go with it.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use rand::Rng;
use serde_json::json;

use crate::{ChildProcess, Error, Result, apply_json, error::chain, run_binary};

/// The name of the Service's one port (Helm's; kubeseal proxies to the first port's name).
pub const PORT_NAME: &str = "http";
/// The Service's port number (the proxy uses the port's name, not this).
pub const SERVICE_PORT: u16 = 8080;

/// How long the holder may take to enter its new network namespace.
const UNSHARE_TIMEOUT: Duration = Duration::from_secs(10);

/// A veth pair between this network namespace and one the harness made; see the module docs.
#[derive(Debug)]
pub struct HostLink {
    host: Ipv4Addr,
    peer: Ipv4Addr,
    interface: String,
    // Holds the network namespace; stopping it deletes the namespace and both veth ends.
    holder: ChildProcess,
}

static SHARED: OnceLock<std::result::Result<HostLink, String>> = OnceLock::new();

impl HostLink {
    /// The link of this test process, made by the first caller. A failure is not retried: later
    /// callers get a copy of the first error.
    pub fn shared() -> Result<&'static HostLink> {
        SHARED.get_or_init(|| Self::create().map_err(|e| chain(&e))).as_ref().map_err(|e| Error::Io {
            what: format!("creating the test network link failed earlier: {e}"),
            source: std::io::Error::other("host link unavailable"),
        })
    }

    /// Makes a new link (a new network namespace, veth pair and /30), removed on drop.
    pub fn create() -> Result<HostLink> {
        if !rustix::process::geteuid().is_root() {
            return Err(Error::io(
                "creating a network namespace and a veth pair for the service-proxy route",
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, "this needs root (CAP_NET_ADMIN)"),
            ));
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let interface = format!("gs{}-{seq}", std::process::id());
        if interface.len() > 15 {
            return Err(Error::invalid("naming the veth interface", format!("{interface} is longer than 15 bytes")));
        }
        let mut holder =
            run_binary("unshare", ["--net", "--", "sleep", "infinity"], std::iter::empty::<(&str, &str)>())?;
        let pid = holder.id();
        wait_for_own_netns(&mut holder)?;
        let peer_if = format!("{interface}p");
        // The peer end is born inside the namespace, so it never exists here.
        run("ip", &["link", "add", &interface, "type", "veth", "peer", "name", &peer_if, "netns", &pid.to_string()])?;
        let mut last = None;
        for _ in 0..16 {
            let block = free_block()?;
            let host = Ipv4Addr::new(198, 18, block, 1);
            let peer = Ipv4Addr::new(198, 18, block, 2);
            match run("ip", &["addr", "add", &format!("{host}/30"), "dev", &interface]) {
                Ok(_) => {
                    let netns = format!("--net=/proc/{pid}/ns/net");
                    run("ip", &["link", "set", &interface, "up"])?;
                    run("nsenter", &[&netns, "ip", "addr", "add", &format!("{peer}/30"), "dev", &peer_if])?;
                    run("nsenter", &[&netns, "ip", "link", "set", &peer_if, "up"])?;
                    run("nsenter", &[&netns, "ip", "link", "set", "lo", "up"])?;
                    tracing::debug!(%interface, %host, %peer, pid, "made the test network link");
                    return Ok(HostLink { host, peer, interface, holder });
                }
                // Another process took the block between the check and the add.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::invalid("choosing a 198.18.x.0/30 block", "none was free")))
    }

    /// The address on this host's end, where a process must listen to be proxied to.
    pub fn address(&self) -> Ipv4Addr {
        self.host
    }

    /// The address of the other end, inside the harness's network namespace.
    pub fn peer_address(&self) -> Ipv4Addr {
        self.peer
    }

    /// The name of this host's end of the veth pair.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The PID of the process holding the network namespace (`nsenter -t <pid> -n` enters it).
    pub fn namespace_pid(&self) -> u32 {
        self.holder.id()
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // Deleting one end deletes both; stopping the holder (next) deletes the namespace.
        if let Err(e) = run("ip", &["link", "del", &self.interface]) {
            tracing::debug!("{}", chain(&e));
        }
    }
}

/// Waits until `holder` has left this process's network namespace (unshare runs before exec).
fn wait_for_own_netns(holder: &mut ChildProcess) -> Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/net").map_err(|e| Error::io("reading /proc/self/ns/net", e))?;
    let theirs = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
    let deadline = Instant::now() + UNSHARE_TIMEOUT;
    loop {
        holder.check_running()?;
        if std::fs::read_link(&theirs).is_ok_and(|ns| ns != ours) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: "`unshare --net` to enter a new network namespace".into(),
                waited: UNSHARE_TIMEOUT,
                detail: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A random `198.18.<n>.0/24` with no address on any interface here (we use its first /30).
fn free_block() -> Result<u8> {
    let listing = run("ip", &["-4", "-o", "addr", "show"])?;
    let used: Vec<u8> = listing
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|a| a.octets()[..2] == [198, 18])
        .map(|a| a.octets()[2])
        .collect();
    let mut rng = rand::thread_rng();
    (0..256)
        .map(|_| rng.gen_range(0..=255u8))
        .find(|b| !used.contains(b))
        .ok_or_else(|| Error::invalid("choosing a 198.18.x.0/30 block", "all 256 are in use"))
}

/// Runs a short command; its stdout, or [`Error::CommandFailed`] with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let line = format!("{program} {}", args.join(" "));
    let out = Command::new(program).args(args).output().map_err(|e| Error::io(format!("running {line}"), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::CommandFailed {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A Service in a test namespace that the API server's service proxy routes to a port on a
/// [`HostLink`]; see the module docs.
#[derive(Clone)]
pub struct ServiceRoute {
    client: Client,
    namespace: String,
    service: String,
    pod: String,
    target: SocketAddrV4,
}

impl std::fmt::Debug for ServiceRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRoute")
            .field("namespace", &self.namespace)
            .field("service", &self.service)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ServiceRoute {
    /// Applies Service `service`, Pod `<service>-route` and the Endpoints routing port
    /// [`PORT_NAME`] to `link`'s address and `port`. Applying again with the same arguments is
    /// fine; another `port` needs another `service` (a Pod's container ports are immutable).
    ///
    /// Something should listen there; [`ServiceRoute::wait_until_served`] checks the route end
    /// to end through the API server.
    pub async fn create(client: &Client, namespace: &str, service: &str, link: &HostLink, port: u16) -> Result<Self> {
        let ip = link.address().to_string();
        let pod = format!("{service}-route");
        let labels = json!({"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": "gitseal-tests"});
        apply_json(
            client,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": namespace, "labels": labels},
                "spec": {"automountServiceAccountToken": false, "containers": [{
                    "name": "stand-in", "image": "gitseal.invalid/never-runs:0",
                    "ports": [{"name": PORT_NAME, "containerPort": port}]}]}}),
        )
        .await?;
        // What a kubelet would report for a running, ready Pod with this address.
        let status = json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let running = pods
            .patch_status(&pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(|e| Error::kube(format!("setting the status of Pod {namespace}/{pod}"), e))?;
        let uid = running.metadata.uid.unwrap_or_default();
        apply_json(
            client,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": service, "namespace": namespace, "labels": labels},
                "spec": {"type": "ClusterIP", "ports": [{
                    "name": PORT_NAME, "protocol": "TCP", "port": SERVICE_PORT, "targetPort": port}]}}),
        )
        .await?;
        apply_json(
            client,
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": service, "namespace": namespace, "labels": labels},
                "subsets": [{
                    "addresses": [{"ip": ip,
                        "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod, "uid": uid}}],
                    "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}]}),
        )
        .await?;
        Ok(Self {
            client: client.clone(),
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            pod,
            target: SocketAddrV4::new(link.address(), port),
        })
    }

    /// The Service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The namespace of the Service, Pod and Endpoints.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name of the stand-in Pod the Endpoints point at.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Where the proxy connects.
    pub fn target(&self) -> SocketAddrV4 {
        self.target
    }

    /// The API server path that proxies to `path` (which starts with `/`) on the target, as
    /// kubeseal builds it: `/api/v1/namespaces/<ns>/services/http:<service>:http/proxy<path>`.
    pub fn proxy_path(&self, path: &str) -> String {
        format!("/api/v1/namespaces/{}/services/http:{}:{PORT_NAME}/proxy{path}", self.namespace, self.service)
    }

    /// GETs `path` on the target through the API server's service proxy (what
    /// `kubectl get --raw <proxy path>` does); a non-2xx answer is an error.
    pub async fn get(&self, path: &str) -> Result<String> {
        let what = format!("GET {}", self.proxy_path(path));
        let request = http::Request::get(self.proxy_path(path))
            .header(http::header::ACCEPT, "*/*")
            .body(Vec::new())
            .map_err(|e| Error::invalid(&what, e))?;
        self.client.request_text(request).await.map_err(|e| Error::kube(what, e))
    }

    /// Polls [`ServiceRoute::get`] until it succeeds, and returns the body.
    pub async fn wait_until_served(&self, path: &str, timeout: Duration) -> Result<String> {
        let what = format!("{}:{PORT_NAME} to proxy {path} to {}", self.service, self.target);
        crate::wait_for(&what, timeout, || async { self.get(path).await.map(Some) }).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// Answers every request with the path it asked for.
    async fn echo_paths(listener: TcpListener) {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let path = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
                let body = format!("you asked for {path}");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listener_on_the_host_link_is_reached_through_the_service_proxy() {
        let link = HostLink::shared().unwrap();
        let listener = TcpListener::bind((link.address(), 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(echo_paths(listener));
        crate::with_temp_ns(|ns| async move {
            let route = ServiceRoute::create(&ns.client(), ns.name(), "echo", link, port).await.unwrap();
            assert_eq!(route.target(), SocketAddrV4::new(link.address(), port));
            let body = route.wait_until_served("/v1/hello", Duration::from_secs(30)).await.unwrap();
            assert_eq!(body, "you asked for /v1/hello");
            // Applying again is fine.
            ServiceRoute::create(&ns.client(), ns.name(), "echo", link, port).await.unwrap();
            assert_eq!(route.get("/again").await.unwrap(), "you asked for /again");
        })
        .await
        .unwrap();
    }

    #[test]
    fn a_dropped_host_link_leaves_no_interface_behind() {
        let link = HostLink::create().unwrap();
        let name = link.interface().to_owned();
        let shown = run("ip", &["-4", "-o", "addr", "show", "dev", &name]).unwrap();
        assert!(shown.contains(&format!("{}/30", link.address())), "{shown}");
        drop(link);
        assert!(run("ip", &["link", "show", "dev", &name]).is_err(), "{name} is still there");
    }

    #[test]
    fn the_interface_goes_with_its_namespace_holder_as_at_process_exit() {
        let mut link = HostLink::create().unwrap();
        let name = link.interface().to_owned();
        // What the reaper's watchdog does at exit: stop the holder, nothing else.
        link.holder.stop(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(10);
        while run("ip", &["link", "show", "dev", &name]).is_ok() {
            assert!(Instant::now() < deadline, "{name} outlived its network namespace");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
