//! The NodePort service proxy: the agent watches Services and Endpoints in every namespace and,
//! for each port with a `nodePort` of a Service of type `NodePort` or `LoadBalancer` (TCP
//! only), listens on `<proxy address>:<nodePort>` ([`crate::AgentOptions::proxy_address`],
//! default `127.0.0.1`) and relays each accepted connection to one of the Service's ready
//! endpoints: the Endpoints' `addresses` (never `notReadyAddresses`) with the port whose name
//! matches the Service port's name (an unnamed port matches an unnamed one).
//!
//! Connections are spread round robin; with `sessionAffinity: ClientIP` a client IP keeps its
//! endpoint until it has been idle for `sessionAffinityConfig.clientIP.timeoutSeconds`
//! (default 10800). A Service without ready endpoints has its connections closed at once
//! (Kubernetes rejects them); an endpoint that refuses is skipped for another one. Endpoint
//! and affinity changes apply to new connections without rebinding; a removed Service or port
//! closes its listener (established connections run on), a changed one rebinds. A port that
//! cannot be bound (in use) is logged and retried every few seconds.
//!
//! Not served in this slice: ClusterIP addresses, headless Services, ExternalName, UDP/SCTP
//! ports and cluster DNS.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);
/// How long a listener waits before binding again after a failure.
const BIND_RETRY: Duration = Duration::from_secs(3);
/// How long connecting to an endpoint may take before another one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What one node port serves: a Service port and how its endpoints are chosen.
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
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s as u64))
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
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

/// The endpoint choice of one node port: round robin, and client IP affinity when enabled.
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

/// A running node port listener; dropping it closes the listener.
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

/// The last seen objects of one kind, keyed by `<namespace>/<name>`.
type Objects = Arc<Mutex<BTreeMap<String, Value>>>;

/// Run the proxy forever (the agent aborts it on shutdown).
pub async fn run(client: Client, address: IpAddr) {
    let changed = Arc::new(Notify::new());
    let services: Objects = Arc::default();
    let endpoints: Objects = Arc::default();
    let watchers = [
        tokio::spawn(watch_kind(
            client.clone(),
            KindRef::of::<Service>(),
            services.clone(),
            changed.clone(),
        )),
        tokio::spawn(watch_kind(
            client,
            KindRef::of::<Endpoints>(),
            endpoints.clone(),
            changed.clone(),
        )),
    ];
    struct AbortAll([tokio::task::JoinHandle<()>; 2]);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            self.0.iter().for_each(|t| t.abort());
        }
    }
    let _watchers = AbortAll(watchers);
    let mut listeners: HashMap<u16, Listener> = HashMap::new();
    tracing::info!(%address, "node port proxy started");
    loop {
        changed.notified().await;
        let services: BTreeMap<String, Service> = decode_all(&services);
        let endpoints: HashMap<String, Endpoints> = decode_all(&endpoints);
        let rules = desired_rules(&services, &endpoints);
        listeners.retain(|port, l| {
            let keep = rules.get(port).is_some_and(|r| r.service == l.service);
            if !keep {
                tracing::info!(port, service = %l.service, "closing node port");
            }
            keep
        });
        for (port, rule) in rules {
            if let Some(l) = listeners.get(&port) {
                let mut b = l.balancer.lock().expect("balancer lock");
                if b.backends != rule.backends || b.affinity != rule.affinity {
                    tracing::debug!(port, service = %rule.service, endpoints = rule.backends.len(), "node port endpoints updated");
                    b.update(rule.backends, rule.affinity);
                }
                continue;
            }
            tracing::info!(port, service = %rule.service, endpoints = rule.backends.len(), "opening node port");
            let balancer = Arc::new(Mutex::new(Balancer::new(rule.backends, rule.affinity)));
            let task = tokio::spawn(listen(
                SocketAddr::new(address, port),
                rule.service.clone(),
                balancer.clone(),
            ));
            listeners.insert(
                port,
                Listener {
                    service: rule.service,
                    balancer,
                    task,
                },
            );
        }
    }
}

fn decode_all<K: k8s_openapi::serde::de::DeserializeOwned, M: FromIterator<(String, K)>>(
    objects: &Objects,
) -> M {
    let objects = objects.lock().expect("objects lock").clone();
    objects
        .into_iter()
        .filter_map(|(key, obj)| match serde_json::from_value(obj) {
            Ok(k) => Some((key, k)),
            Err(e) => {
                tracing::warn!(object = %key, error = %e, "proxy cannot decode an object");
                None
            }
        })
        .collect()
}

fn object_key(obj: &Value) -> Option<String> {
    let meta = &obj["metadata"];
    Some(format!(
        "{}/{}",
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str()?
    ))
}

/// Mirror one kind into `objects`, notifying `changed` on every change. The watch resumes
/// across servers in the client; when it ends anyway it is opened again with a fresh list, and
/// objects missing from that list are dropped.
async fn watch_kind(client: Client, kind: KindRef, objects: Objects, changed: Arc<Notify>) {
    let params = ListParams::default();
    let mut retry = Duration::from_millis(200);
    loop {
        let mut stream = Box::pin(client.watch(&kind, &params, true));
        let mut listed: Option<Vec<String>> = Some(Vec::new());
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj)) => {
                    retry = Duration::from_millis(200);
                    if let Some(key) = object_key(&obj) {
                        if let Some(seen) = &mut listed {
                            seen.push(key.clone());
                        }
                        objects.lock().expect("objects lock").insert(key, obj);
                        changed.notify_one();
                    }
                }
                Ok(WatchEvent::Deleted(obj)) => {
                    if let Some(key) = object_key(&obj) {
                        objects.lock().expect("objects lock").remove(&key);
                        changed.notify_one();
                    }
                }
                Ok(WatchEvent::Bookmark {
                    initial_events_end: true,
                    ..
                }) => {
                    if let Some(seen) = listed.take() {
                        let seen: std::collections::HashSet<String> = seen.into_iter().collect();
                        objects
                            .lock()
                            .expect("objects lock")
                            .retain(|k, _| seen.contains(k));
                        changed.notify_one();
                    }
                }
                Ok(WatchEvent::Bookmark { .. }) => {}
                Err(e) => {
                    tracing::warn!(kind = ?kind, error = %e, "proxy watch ended; listing again");
                    break;
                }
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(10));
    }
}

/// Bind `addr` (retrying while that fails) and relay every accepted connection.
async fn listen(addr: SocketAddr, service: String, balancer: Arc<Mutex<Balancer>>) {
    let mut failures = 0u32;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                // Warn at the first failure and then now and again (another agent on this
                // host may hold the port for good).
                if failures.is_multiple_of(20) {
                    tracing::warn!(%addr, %service, error = %e, "cannot listen on the node port; retrying");
                } else {
                    tracing::debug!(%addr, %service, error = %e, "node port still unavailable");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(BIND_RETRY).await;
            }
        }
    };
    if failures > 0 {
        tracing::info!(%addr, %service, "node port listening after all");
    }
    loop {
        match listener.accept().await {
            Ok((conn, peer)) => {
                tokio::spawn(relay(conn, peer, service.clone(), balancer.clone()));
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "node port accept failed");
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
