//! The service proxy: from the agent's view of Services and Endpoints ([`crate::services`]) it
//! listens on
//! - `<proxy address>:<nodePort>` for each port with a `nodePort` of a Service of type
//!   `NodePort` or `LoadBalancer` ([`crate::AgentOptions::proxy_address`], default
//!   `127.0.0.1`), and
//! - `<clusterIP>:<port>` for every port of every Service with a cluster IP (unless
//!   [`crate::AgentOptions::cluster_ip`] is off or the service range could not be made local,
//!   see [`crate::service_cidr`]),
//!
//! (TCP only) and relays each accepted connection to one of the Service's ready endpoints: the
//! Endpoints' `addresses` (never `notReadyAddresses`) with the port whose name matches the
//! Service port's name (an unnamed port matches an unnamed one).
//!
//! # How pods reach Services
//! A pod on this node connects to `<clusterIP>:<port>` of the Service (found in the
//! `<SVC>_SERVICE_HOST` / `<SVC>_SERVICE_PORT` variables every container gets, see
//! [`crate::service_env`], or by DNS, see [`crate::dns`]). The agent makes the whole service
//! range local on the host (a `local` route on `lo`, like 127.0.0.0/8), so any cluster IP is a
//! local address this proxy can listen on without per-address setup. Cluster IP listeners set
//! `SO_REUSEADDR` and `SO_REUSEPORT`: several agents sharing one host all bind the same
//! `clusterIP:port`, the kernel spreads connections over them and each relays to the same
//! endpoints. Headless Services (`clusterIP: None`) have no listener (DNS returns their pods'
//! addresses) and ExternalName Services are never proxied, as in Kubernetes: DNS answers them
//! with a CNAME.
//!
//! Connections are spread round robin; with `sessionAffinity: ClientIP` a client IP keeps its
//! endpoint until it has been idle for `sessionAffinityConfig.clientIP.timeoutSeconds`
//! (default 10800). A Service without ready endpoints has its connections closed at once
//! (Kubernetes rejects them); an endpoint that refuses is skipped for another one. Endpoint
//! and affinity changes apply to new connections without rebinding; a removed Service or port
//! closes its listener (established connections run on), a changed one rebinds. A port that
//! cannot be bound (in use) is logged and retried every few seconds.
//!
//! Not served: UDP/SCTP ports (skipped).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service, ServiceSpec};
use tokio::net::{TcpListener, TcpStream};

use crate::services::ServiceView;

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);
/// How long a listener waits before binding again after a failure.
const BIND_RETRY: Duration = Duration::from_secs(3);
/// How long connecting to an endpoint may take before another one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What one service port (node port or cluster IP and port) serves: a Service port and how its endpoints are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// `<namespace>/<service>:<port name>`, for logs and to notice a port changing hands.
    pub service: String,
    /// Ready endpoint addresses with the matching target port.
    pub backends: Vec<SocketAddr>,
    /// `Some(timeout)` with `sessionAffinity: ClientIP`.
    pub affinity: Option<Duration>,
}

/// The rules every node port should serve, from the current Services and Endpoints (keyed by
/// `<namespace>/<name>`). When two Services claim one node port, the first by key wins.
pub fn desired_rules(
    services: &BTreeMap<String, Service>,
    endpoints: &HashMap<String, Endpoints>,
) -> BTreeMap<u16, PortRule> {
    let mut rules = BTreeMap::new();
    for (key, svc) in services {
        let Some(spec) = &svc.spec else { continue };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty != "NodePort" && ty != "LoadBalancer" {
            continue;
        }
        let affinity = session_affinity(spec);
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            if node_port == 0 {
                continue;
            }
            let name = port.name.clone().unwrap_or_default();
            let backends = endpoints
                .get(key)
                .map(|ep| ready_backends(ep, &name))
                .unwrap_or_default();
            rules.entry(node_port).or_insert_with(|| PortRule {
                service: format!("{key}:{name}"),
                backends,
                affinity,
            });
        }
    }
    rules
}

/// `Some(timeout)` when `spec` asks for `sessionAffinity: ClientIP`.
fn session_affinity(spec: &ServiceSpec) -> Option<Duration> {
    (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    })
}

/// The ready addresses of `ep` with the TCP port named `port_name` ("" for an unnamed one).
pub fn ready_backends(ep: &Endpoints, port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let port = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        });
        let Some(port) = port.and_then(|p| u16::try_from(p.port).ok()) else {
            continue;
        };
        for addr in subset.addresses.iter().flatten() {
            match addr.ip.parse::<IpAddr>() {
                Ok(ip) => out.push(SocketAddr::new(ip, port)),
                Err(_) => tracing::debug!(ip = %addr.ip, "skipping an endpoint that is not an IP"),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The endpoint choice of one service port: round robin, and client IP affinity when enabled.
#[derive(Debug, Default)]
pub struct Balancer {
    backends: Vec<SocketAddr>,
    affinity: Option<Duration>,
    next: usize,
    sticky: HashMap<IpAddr, (SocketAddr, Instant)>,
}

impl Balancer {
    pub fn new(backends: Vec<SocketAddr>, affinity: Option<Duration>) -> Balancer {
        Balancer {
            backends,
            affinity,
            ..Default::default()
        }
    }

    /// Take new endpoints and affinity; affinities to endpoints still present are kept.
    pub fn update(&mut self, backends: Vec<SocketAddr>, affinity: Option<Duration>) {
        if affinity.is_none() {
            self.sticky.clear();
        }
        self.sticky.retain(|_, (b, _)| backends.contains(b));
        self.backends = backends;
        self.affinity = affinity;
    }

    /// The endpoint for a new connection from `client` at `now`; `None` without endpoints.
    pub fn pick(&mut self, client: IpAddr, now: Instant) -> Option<SocketAddr> {
        if self.backends.is_empty() {
            return None;
        }
        if let Some(timeout) = self.affinity {
            self.sticky
                .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < timeout);
            if let Some((backend, seen)) = self.sticky.get_mut(&client) {
                *seen = now;
                return Some(*backend);
            }
        }
        let backend = self.backends[self.next % self.backends.len()];
        self.next = self.next.wrapping_add(1);
        if self.affinity.is_some() {
            self.sticky.insert(client, (backend, now));
        }
        Some(backend)
    }

    /// `backend` refused `client`: forget the affinity so the next pick moves on.
    pub fn failed(&mut self, client: IpAddr, backend: SocketAddr) {
        if self.sticky.get(&client).is_some_and(|(b, _)| *b == backend) {
            self.sticky.remove(&client);
        }
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

/// A running service port listener; dropping it closes the listener.
struct Listener {
    service: String,
    balancer: Arc<Mutex<Balancer>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the proxy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyOptions {
    /// The address node ports listen on.
    pub node_port_address: IpAddr,
    /// Serve `clusterIP:port` too (the service range must be local on this host, see
    /// [`crate::service_cidr`]).
    pub cluster_ip: bool,
}

/// The rules every listener should serve: node ports on `options.node_port_address` and, when
/// enabled, every Service port on its cluster IP.
pub fn all_rules(
    services: &BTreeMap<String, Service>,
    endpoints: &HashMap<String, Endpoints>,
    options: ProxyOptions,
) -> BTreeMap<SocketAddr, (PortRule, Binding)> {
    let mut rules: BTreeMap<SocketAddr, (PortRule, Binding)> = desired_rules(services, endpoints)
        .into_iter()
        .map(|(port, rule)| {
            (
                SocketAddr::new(options.node_port_address, port),
                (rule, Binding::Exclusive),
            )
        })
        .collect();
    if options.cluster_ip {
        for (addr, rule) in cluster_ip_rules(services, endpoints) {
            rules.entry(addr).or_insert((rule, Binding::Shared));
        }
    }
    rules
}

/// The rules for `clusterIP:port` of every TCP Service port whose Service has a cluster IP
/// (not headless, not ExternalName).
pub fn cluster_ip_rules(
    services: &BTreeMap<String, Service>,
    endpoints: &HashMap<String, Endpoints>,
) -> BTreeMap<SocketAddr, PortRule> {
    let mut rules = BTreeMap::new();
    for (key, svc) in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            // Headless ("None") or not allocated yet.
            continue;
        };
        let affinity = session_affinity(spec);
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let name = port.name.clone().unwrap_or_default();
            let backends = endpoints
                .get(key)
                .map(|ep| ready_backends(ep, &name))
                .unwrap_or_default();
            rules
                .entry(SocketAddr::new(ip, number))
                .or_insert_with(|| PortRule {
                    service: format!("{key}:{name}"),
                    backends,
                    affinity,
                });
        }
    }
    rules
}

/// How a listener binds its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// A plain bind: a node port belongs to one agent.
    Exclusive,
    /// `SO_REUSEADDR` + `SO_REUSEPORT`: every agent on a host binds the same cluster IP and
    /// port, and the kernel spreads connections over them (they all relay to the same
    /// endpoints).
    Shared,
}

/// Run the proxy forever (the agent aborts it on shutdown), following `view`.
pub async fn run(mut view: ServiceView, options: ProxyOptions) {
    let mut listeners: HashMap<SocketAddr, Listener> = HashMap::new();
    tracing::info!(address = %options.node_port_address, cluster_ip = options.cluster_ip, "service proxy started");
    loop {
        let snapshot = view.borrow_and_update().clone();
        let rules = all_rules(&snapshot.services, &snapshot.endpoints, options);
        listeners.retain(|addr, l| {
            let keep = rules.get(addr).is_some_and(|(r, _)| r.service == l.service);
            if !keep {
                tracing::info!(%addr, service = %l.service, "closing service port");
            }
            keep
        });
        for (addr, (rule, binding)) in rules {
            if let Some(l) = listeners.get(&addr) {
                let mut b = l.balancer.lock().expect("balancer lock");
                if b.backends != rule.backends || b.affinity != rule.affinity {
                    tracing::debug!(%addr, service = %rule.service, endpoints = rule.backends.len(), "service endpoints updated");
                    b.update(rule.backends, rule.affinity);
                }
                continue;
            }
            tracing::info!(%addr, service = %rule.service, endpoints = rule.backends.len(), "opening service port");
            let balancer = Arc::new(Mutex::new(Balancer::new(rule.backends, rule.affinity)));
            let task = tokio::spawn(listen(
                addr,
                binding,
                rule.service.clone(),
                balancer.clone(),
            ));
            listeners.insert(
                addr,
                Listener {
                    service: rule.service,
                    balancer,
                    task,
                },
            );
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}

/// A TCP listener on `addr`; with [`Binding::Shared`], `SO_REUSEADDR` and `SO_REUSEPORT` are
/// set first so other agents on this host can bind the same address.
pub fn bind_tcp(addr: SocketAddr, binding: Binding) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if binding == Binding::Shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Bind `addr` (retrying while that fails) and relay every accepted connection.
async fn listen(
    addr: SocketAddr,
    binding: Binding,
    service: String,
    balancer: Arc<Mutex<Balancer>>,
) {
    let mut failures = 0u32;
    let listener = loop {
        match bind_tcp(addr, binding) {
            Ok(l) => break l,
            Err(e) => {
                // Warn at the first failure and then now and again (another agent on this
                // host may hold the port for good).
                if failures.is_multiple_of(20) {
                    tracing::warn!(%addr, %service, error = %e, "cannot listen on the service port; retrying");
                } else {
                    tracing::debug!(%addr, %service, error = %e, "service port still unavailable");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(BIND_RETRY).await;
            }
        }
    };
    if failures > 0 {
        tracing::info!(%addr, %service, "service port listening after all");
    }
    loop {
        match listener.accept().await {
            Ok((conn, peer)) => {
                tokio::spawn(relay(conn, peer, service.clone(), balancer.clone()));
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "service port accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connect `conn` to an endpoint (trying others when one refuses) and copy both ways.
async fn relay(
    mut conn: TcpStream,
    peer: SocketAddr,
    service: String,
    balancer: Arc<Mutex<Balancer>>,
) {
    let attempts = balancer.lock().expect("balancer lock").len().clamp(1, 3);
    for _ in 0..attempts {
        let picked = balancer
            .lock()
            .expect("balancer lock")
            .pick(peer.ip(), Instant::now());
        let Some(backend) = picked else {
            tracing::debug!(%service, client = %peer, "no ready endpoints: closing");
            return;
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(mut upstream)) => {
                tracing::trace!(%service, client = %peer, %backend, "relaying");
                if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await {
                    tracing::debug!(%service, %backend, error = %e, "relay ended with an error");
                }
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(%service, %backend, error = %e, "endpoint refused a connection")
            }
            Err(_) => tracing::warn!(%service, %backend, "endpoint connect timed out"),
        }
        balancer
            .lock()
            .expect("balancer lock")
            .failed(peer.ip(), backend);
    }
}

#[cfg(test)]
mod tests;
