//! The rkube node agent: registers its Node, heartbeats through a Lease and the Node's Ready
//! condition, watches the pods bound to it, runs their containers on a container runtime and
//! reports their status. An API client only (through `rkube-client`, which fails over between
//! servers and resumes watches); when no server answers, pods keep running and status catches
//! up once one does.
//!
//! This slice runs containers on the `process` runtime (or the `docker` runtime,
//! [`runtime::docker`]) with `command`/`args`, `env` and `envFrom` (values, fields, resources,
//! ConfigMap and Secret keys, [`env`]), volumes (emptyDir, hostPath, configMap, secret,
//! downwardAPI, claims of hostPath volumes, [`volumes`]), `workingDir`, init containers, restart policies with crash-loop back-off,
//! graceful termination, and liveness, readiness and startup probes (httpGet, tcpSocket,
//! exec), a service proxy for node ports and cluster IPs ([`proxy`]), Kubernetes' service
//! environment variables ([`service_env`]), a cluster DNS responder ([`dns`]), and logs, exec,
//! port forwarding and resource stats for the API servers ([`serve`]). What is not supported
//! gets a clear waiting reason or condition message instead of being silently mis-run.
//! On the docker runtime the pod IP is the pod sandbox's address on the Docker network.
//!
//! # How pods reach Services
//! A pod connects to a Service's `clusterIP:port`: the agent makes the whole service range
//! ([`AgentOptions::service_cidr`]) local on the host and the proxy listens on every cluster
//! IP and port ([`proxy`]). The address comes from the Kubernetes variables every container
//! gets (`{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT`, ... [`service_env`]) or from the cluster
//! DNS responder at [`AgentOptions::cluster_dns`] ([`dns`]), which also resolves headless
//! Services to their pods' addresses and ExternalName Services to a CNAME. Node ports are
//! served on [`AgentOptions::proxy_address`].
//!
//! # Pod addresses on the process runtime
//! Containers share the host's network, so each pod gets its own loopback address
//! `127.<block>.<y>.<z>` (the block is per node, [`AgentOptions::pod_ip_block`]), exported to its
//! containers as `POD_IP` and reported as `status.podIP`. A pod must bind its listeners to
//! `POD_IP` (not `0.0.0.0`) for two replicas on one node not to collide on ports. Loopback
//! addresses are reachable on this host only; agents on different hosts (containers) give
//! their pods addresses from their own [`AgentOptions::pod_cidr`] instead, routed between
//! nodes ([`pod_network`]).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkube_client::Client;

pub mod backoff;
pub mod container_log;
pub mod dns;
pub mod env;
pub mod error;
mod events;
pub mod node;
pub mod pod_network;
mod pods;
pub mod probe;
pub mod proxy;
mod report;
pub mod runtime;
pub mod serve;
pub mod service_cidr;
pub mod service_env;
pub mod services;
pub mod status;
pub mod volumes;
mod worker;

pub use backoff::BackoffPolicy;
pub use error::{Error, Result};

/// Which container runtime runs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Each container is a child process of the agent.
    Process,
    /// Docker Engine containers, one network namespace per pod ([`runtime::docker`]).
    Docker,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "process" => Ok(RuntimeKind::Process),
            "docker" => Ok(RuntimeKind::Docker),
            other => Err(Error::Config(format!(
                "unknown runtime {other:?}: expected \"process\" or \"docker\""
            ))),
        }
    }
}

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    /// Extra Node labels (`kubernetes.io/hostname` and the os/arch labels are always set).
    pub labels: BTreeMap<String, String>,
    /// Capacity (and allocatable) as Kubernetes quantities.
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    /// Pod directories (`pods/<namespace>_<name>_<uid>/`, holding container logs) live here.
    pub data_dir: PathBuf,
    pub runtime: RuntimeKind,
    /// The Node's InternalIP and every pod's `status.hostIP`.
    pub host_ip: String,
    /// The second octet of this node's pod addresses (1–254): agents sharing a host need
    /// different blocks. Default: derived from the node name.
    pub pod_ip_block: u8,
    /// This node's pod range (`--pod-cidr`): pods get addresses from it instead of loopback
    /// ones, and reach other nodes' pods over routes ([`pod_network`]). Needs CAP_NET_ADMIN.
    pub pod_cidr: Option<service_cidr::ServiceCidr>,
    /// How often the Lease and the Node's Ready condition are renewed.
    pub heartbeat_interval: Duration,
    pub backoff: BackoffPolicy,
    /// Run the NodePort service proxy ([`proxy`]).
    pub proxy: bool,
    /// The address the proxy's node ports listen on (default `127.0.0.1`).
    pub proxy_address: String,
    /// Serve Services on their cluster IPs (with [`AgentOptions::proxy`]): make
    /// [`AgentOptions::service_cidr`] local on the host and listen on `clusterIP:port`.
    pub cluster_ip: bool,
    /// The range cluster IPs are allocated from (the API server's `--service-cidr`).
    pub service_cidr: service_cidr::ServiceCidr,
    /// Where the cluster DNS responder ([`dns`]) listens, UDP and TCP; `None`: no DNS.
    pub cluster_dns: Option<std::net::SocketAddr>,
    /// The engine socket, pod network and sandbox image of the docker runtime.
    pub docker: runtime::DockerOptions,
    /// Where the process runtime puts containers' cgroups to enforce their limits
    /// ([`runtime::cgroups`]); [`runtime::cgroups::CgroupRoot::Disabled`] enforces none.
    pub cgroup_root: runtime::cgroups::CgroupRoot,
    /// Where the agent service ([`serve`]: logs, exec, port forwarding, stats for the API
    /// servers) listens; port 0 picks a free port. The address it got is published on the
    /// Node. `None`: not served.
    pub serve_address: Option<String>,
    /// The agent service as published on the Node (set by [`run`] once it is bound).
    pub(crate) endpoint: Option<serve::Endpoint>,
    /// How resource limits are enforced, as published on the Node (set by [`run`] once the
    /// runtime is up).
    pub(crate) limits_enforcement: Option<String>,
}

impl AgentOptions {
    /// Defaults for node `node_name`: this machine's CPUs and memory, 110 pods, the process
    /// runtime, 10 s heartbeats and the kubelet's back-off.
    pub fn new(node_name: &str, data_dir: PathBuf) -> AgentOptions {
        let hash = node_name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        AgentOptions {
            node_name: node_name.to_string(),
            labels: BTreeMap::new(),
            cpu: node::detect_cpu(),
            memory: node::detect_memory().unwrap_or_else(|| "1Gi".into()),
            max_pods: 110,
            data_dir,
            runtime: RuntimeKind::Process,
            host_ip: "127.0.0.1".into(),
            pod_ip_block: 1 + (hash % 254) as u8,
            pod_cidr: None,
            heartbeat_interval: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
            proxy: true,
            proxy_address: "127.0.0.1".into(),
            cluster_ip: true,
            service_cidr: service_cidr::DEFAULT_SERVICE_CIDR
                .parse()
                .expect("the default service CIDR is valid"),
            cluster_dns: Some(dns::DEFAULT_ADDRESS.parse().expect("a socket address")),
            docker: runtime::DockerOptions::default(),
            cgroup_root: runtime::cgroups::CgroupRoot::Auto,
            serve_address: Some("127.0.0.1:0".into()),
            endpoint: None,
            limits_enforcement: None,
        }
    }

    /// Check the options before running ([`run`] checks them too).
    pub fn validate(&self) -> Result<()> {
        if self.node_name.is_empty() {
            return Err(Error::Config("the node name must not be empty".into()));
        }
        if self.pod_ip_block == 0 || self.pod_ip_block == 255 {
            return Err(Error::Config(format!(
                "pod IP block {} is out of range: expected 1 to 254",
                self.pod_ip_block
            )));
        }
        if self.proxy_address.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::Config(format!(
                "proxy address {:?} is not an IP address",
                self.proxy_address
            )));
        }
        if self.runtime == RuntimeKind::Docker && self.pod_cidr.is_some() {
            return Err(Error::Config(
                "--pod-cidr is for the process runtime: docker runtime pods get their addresses from the docker network".into(),
            ));
        }
        if self.runtime == RuntimeKind::Docker && self.docker.network.is_empty() {
            return Err(Error::Config(
                "the docker runtime needs a network name (--docker-network)".into(),
            ));
        }
        Ok(())
    }
}

/// Run the agent until `shutdown` resolves: register the Node, heartbeat, run the pods bound to
/// it and (unless [`AgentOptions::proxy`] is off) proxy Services on node ports and cluster
/// IPs, and answer cluster DNS ([`AgentOptions::cluster_dns`]). On shutdown the
/// process runtime's containers are stopped (they are the agent's children) and the node ports
/// closed; the pods stay bound, and a restarted agent starts their containers again.
pub async fn run(
    client: Client,
    mut options: AgentOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    options.validate()?;
    let listener = match &options.serve_address {
        Some(address) => {
            let l = serve::bind(address, &options.host_ip, &options.node_name).await?;
            options.endpoint = Some(l.endpoint.clone());
            Some(l)
        }
        None => None,
    };
    let pods_dir = options.data_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(|e| Error::io(&pods_dir, e))?;
    let runtime: Arc<dyn runtime::Runtime> = match options.runtime {
        RuntimeKind::Process => {
            let cgroups =
                runtime::cgroups::Cgroups::detect(&options.cgroup_root, &options.node_name);
            Arc::new(runtime::ProcessRuntime::with_cgroups(Arc::new(cgroups)))
        }
        RuntimeKind::Docker => Arc::new(
            runtime::DockerRuntime::connect(&options.node_name, options.docker.clone()).await?,
        ),
    };
    options.limits_enforcement = Some(runtime.limits_enforcement());
    if let Some(cidr) = options.pod_cidr {
        pod_network::setup(cidr).await.map_err(|e| {
            Error::Config(format!(
                "the pod range --pod-cidr {cidr} cannot be used: {e}"
            ))
        })?;
        tracing::info!(%cidr, "pod range is local on this node");
    }
    let options = Arc::new(options);
    register_with_retry(&client, &options).await?;
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), options.clone()));
    let routes = options.pod_cidr.map(|cidr| {
        tokio::spawn(pod_network::sync_routes(
            client.clone(),
            options.node_name.clone(),
            cidr,
        ))
    });
    // The agent sets the node's `kubernetes.io/hostname` label to its name.
    let reclaim = tokio::spawn(volumes::reclaim::run(
        client.clone(),
        options.node_name.clone(),
    ));
    let (mut services, service_watch) = services::start(client.clone());
    let service_tasks = start_service_traffic(&client, &options, &services).await;
    // Containers get the Services of their namespace as variables: list them first.
    if !services::wait_synced(&mut services, SERVICE_SYNC_WAIT).await {
        tracing::warn!("services not listed yet; containers started now wait for them");
    }
    let node_pods = Arc::new(serve::NodePods::default());
    let agent_service = listener.map(|listener| {
        let shared = serve::Shared {
            node_name: options.node_name.clone(),
            pods: node_pods.clone(),
            runtime: runtime.clone(),
        };
        let ca_pem = client.ca_pem().to_string();
        tokio::spawn(async move {
            if let Err(e) = serve::serve(listener, ca_pem, shared).await {
                tracing::error!(error = %e, "the agent service stopped: no logs, exec, port forwarding or stats from this node");
            }
        })
    });
    let ctx = Arc::new(worker::Context {
        client,
        node_pods,
        runtime,
        ips: match options.pod_cidr {
            Some(cidr) => IpPool::range(cidr),
            None => IpPool::new(options.pod_ip_block),
        },
        options,
        services,
    });
    pods::run(ctx, shutdown).await;
    heartbeat.abort();
    reclaim.abort();
    if let Some(routes) = routes {
        routes.abort();
    }
    if let Some(task) = agent_service {
        task.abort();
    }
    service_tasks.iter().for_each(|t| t.abort());
    drop(service_watch);
    Ok(())
}

/// How long the agent waits for its first list of Services before running pods.
const SERVICE_SYNC_WAIT: Duration = Duration::from_secs(10);

/// Start the service proxy and the cluster DNS responder as `options` ask, after making the
/// service range local (see [`service_cidr`]). When that fails, node ports still work and
/// cluster IPs are reported unavailable on this node (log and Node Event).
async fn start_service_traffic(
    client: &Client,
    options: &AgentOptions,
    view: &services::ServiceView,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let cidr = options.service_cidr;
    let range_local = if options.cluster_ip {
        match service_cidr::make_local(cidr).await {
            Ok(()) => {
                tracing::info!(%cidr, "service range is local on this host");
                true
            }
            Err(e) => {
                let message = format!(
                    "cluster IPs are unavailable on node {}: {e}; node ports still work",
                    options.node_name
                );
                tracing::warn!("{message}");
                service_cidr::report_unavailable(client, &options.node_name, message);
                false
            }
        }
    } else {
        false
    };
    if options.proxy {
        let node_port_address = options
            .proxy_address
            .parse()
            .expect("validated proxy address");
        tasks.push(tokio::spawn(proxy::run(
            view.clone(),
            proxy::ProxyOptions {
                node_port_address,
                cluster_ip: range_local,
            },
        )));
    }
    if let Some(addr) = options.cluster_dns {
        if cidr.contains(addr.ip()) && !range_local {
            tracing::warn!(%addr, "cluster DNS is unavailable on this node: its address is in the service range, which is not local here");
        } else {
            let domain = hickory_proto::rr::Name::from_ascii(format!("{}.", dns::DEFAULT_DOMAIN))
                .expect("the cluster domain is a domain name");
            tasks.push(tokio::spawn(dns::run(addr, view.clone(), domain)));
        }
    }
    tasks
}

/// Register, retrying while no server answers (the agent may start before the control plane).
async fn register_with_retry(client: &Client, options: &AgentOptions) -> Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        match node::register(client, options).await {
            Ok(()) => return Ok(()),
            Err(Error::Api(e))
                if e.is_retryable() || matches!(e, rkube_client::Error::Conflict(_)) =>
            {
                tracing::warn!(node = %options.node_name, error = %e, "cannot register the node yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pod addresses: from the loopback block or the pod range, by a per-node counter, skipping
/// addresses in use.
pub(crate) struct IpPool {
    addresses: PodAddresses,
    state: Mutex<(u32, HashSet<String>)>,
}

/// Where a node's pod addresses come from.
enum PodAddresses {
    /// `127.<block>.<y>.<z>`, y and z each 1..=254.
    Loopback(u8),
    /// A pod range's host addresses ([`pod_network::host_range`]).
    Range(service_cidr::ServiceCidr),
}

/// Addresses per loopback block: y and z each run 1..=254.
const BLOCK_SIZE: u32 = 254 * 254;

impl PodAddresses {
    fn size(&self) -> u32 {
        match self {
            PodAddresses::Loopback(_) => BLOCK_SIZE,
            PodAddresses::Range(cidr) => pod_network::host_range(*cidr).len() as u32,
        }
    }

    /// The `n`th address (`n < size()`).
    fn nth(&self, n: u32) -> String {
        match self {
            PodAddresses::Loopback(block) => format!("127.{block}.{}.{}", 1 + n / 254, 1 + n % 254),
            PodAddresses::Range(cidr) => {
                std::net::Ipv4Addr::from(pod_network::host_range(*cidr).start + n).to_string()
            }
        }
    }

    fn contains(&self, ip: &str) -> bool {
        match self {
            PodAddresses::Loopback(block) => ip.starts_with(&format!("127.{block}.")),
            PodAddresses::Range(cidr) => ip
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| pod_network::host_range(*cidr).contains(&u32::from(a))),
        }
    }
}

impl std::fmt::Display for PodAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodAddresses::Loopback(block) => write!(f, "127.{block}.0.0/16"),
            PodAddresses::Range(cidr) => write!(f, "{cidr}"),
        }
    }
}

impl IpPool {
    fn new(block: u8) -> IpPool {
        IpPool {
            addresses: PodAddresses::Loopback(block),
            state: Mutex::new((0, HashSet::new())),
        }
    }

    /// Addresses from a pod range (`--pod-cidr`).
    fn range(cidr: service_cidr::ServiceCidr) -> IpPool {
        IpPool {
            addresses: PodAddresses::Range(cidr),
            state: Mutex::new((0, HashSet::new())),
        }
    }

    /// An address for a pod: `previous` (its reported podIP, after an agent restart) when it is
    /// one of this node's and free, else the next free one.
    pub(crate) fn allocate(&self, previous: Option<&str>) -> Result<String> {
        let mut state = self.state.lock().expect("ip pool lock");
        let (counter, used) = &mut *state;
        if let Some(ip) = previous.filter(|ip| self.addresses.contains(ip)) {
            if used.insert(ip.to_string()) {
                return Ok(ip.to_string());
            }
        }
        let size = self.addresses.size();
        for _ in 0..size {
            let n = *counter % size;
            *counter = counter.wrapping_add(1);
            let ip = self.addresses.nth(n);
            if used.insert(ip.clone()) {
                return Ok(ip);
            }
        }
        Err(Error::Runtime(format!(
            "no free pod address left in {}",
            self.addresses
        )))
    }

    pub(crate) fn release(&self, ip: &str) {
        self.state.lock().expect("ip pool lock").1.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_are_distinct_and_reused_after_release() {
        let pool = IpPool::new(7);
        let a = pool.allocate(None).unwrap();
        let b = pool.allocate(None).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("127.7.1.1", "127.7.1.2"));
        assert_eq!(pool.allocate(Some("127.7.9.9")).unwrap(), "127.7.9.9");
        // Taken, or outside the block: a fresh one.
        assert_eq!(pool.allocate(Some("127.7.9.9")).unwrap(), "127.7.1.3");
        assert_eq!(pool.allocate(Some("10.0.0.1")).unwrap(), "127.7.1.4");
        pool.release(&a);
        assert_eq!(pool.allocate(Some(&a)).unwrap(), a);
    }

    #[test]
    fn pod_addresses_from_a_pod_range_skip_network_gateway_and_broadcast() {
        let pool = IpPool::range("10.244.3.0/29".parse().unwrap());
        let got: Vec<String> = (0..5).map(|_| pool.allocate(None).unwrap()).collect();
        assert_eq!(
            got,
            [
                "10.244.3.2",
                "10.244.3.3",
                "10.244.3.4",
                "10.244.3.5",
                "10.244.3.6"
            ]
        );
        let full = pool.allocate(None).unwrap_err().to_string();
        assert!(
            full.contains("no free pod address left in 10.244.3.0/29"),
            "{full}"
        );
        pool.release("10.244.3.4");
        // After a restart a pod keeps its address when it is in the range and free.
        assert_eq!(pool.allocate(Some("10.244.3.4")).unwrap(), "10.244.3.4");
        pool.release("10.244.3.5");
        assert_eq!(pool.allocate(Some("10.244.3.7")).unwrap(), "10.244.3.5");
    }

    #[test]
    fn docker_needs_a_network_and_unknown_runtimes_are_refused() {
        let mut options = AgentOptions::new("n1", "/tmp/x".into());
        options.runtime = "docker".parse().unwrap();
        assert!(options.validate().is_ok());
        options.docker.network.clear();
        let err = options.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid agent configuration: the docker runtime needs a network name (--docker-network)"
        );
        assert!("podman".parse::<RuntimeKind>().is_err());
    }

    #[test]
    fn proxy_address_must_be_an_ip() {
        let mut options = AgentOptions::new("n1", "/tmp/x".into());
        assert!(options.proxy && options.validate().is_ok());
        options.proxy_address = "localhost".into();
        let err = options.validate().unwrap_err().to_string();
        assert!(err.contains("is not an IP address"), "{err}");
    }
}
