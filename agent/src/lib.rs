//! The rkube node agent: registers its Node, heartbeats through a Lease and the Node's Ready
//! condition, watches the pods bound to it, runs their containers on a container runtime and
//! reports their status. An API client only (through `rkube-client`, which fails over between
//! servers and resumes watches); when no server answers, pods keep running and status catches
//! up once one does.
//!
//! This slice runs containers on the `process` runtime with `command`/`args`, `env` (`value`
//! and `fieldRef`), `workingDir`, init containers, restart policies with crash-loop back-off,
//! graceful termination, and liveness, readiness and startup probes (httpGet, tcpSocket,
//! exec), and a NodePort service proxy ([`proxy`]). Volumes, ConfigMap/Secret env, logs/exec
//! serving, metrics, ClusterIP service proxying and the docker runtime are later slices; pods
//! using them get a clear waiting reason or condition message instead of being silently mis-run.
//!
//! # Pod addresses on the process runtime
//! Containers share the host's network, so each pod gets its own loopback address
//! `127.<block>.<y>.<z>` (the block is per node, [`AgentOptions::pod_ip_block`]), exported to its
//! containers as `POD_IP` and reported as `status.podIP`. A pod must bind its listeners to
//! `POD_IP` (not `0.0.0.0`) for two replicas on one node not to collide on ports.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkube_client::Client;

pub mod backoff;
pub mod env;
pub mod error;
mod events;
pub mod node;
mod pods;
pub mod probe;
pub mod proxy;
mod report;
pub mod runtime;
pub mod status;
mod worker;

pub use backoff::BackoffPolicy;
pub use error::{Error, Result};

/// Which container runtime runs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Each container is a child process of the agent.
    Process,
    /// Docker Engine: not implemented in this slice; [`run`] refuses it.
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
    /// How often the Lease and the Node's Ready condition are renewed.
    pub heartbeat_interval: Duration,
    pub backoff: BackoffPolicy,
    /// Run the NodePort service proxy ([`proxy`]).
    pub proxy: bool,
    /// The address the proxy's node ports listen on (default `127.0.0.1`).
    pub proxy_address: String,
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
            heartbeat_interval: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
            proxy: true,
            proxy_address: "127.0.0.1".into(),
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
        if self.runtime == RuntimeKind::Docker {
            return Err(Error::Config(
                "the docker runtime is not implemented yet; use --runtime process".into(),
            ));
        }
        Ok(())
    }
}

/// Run the agent until `shutdown` resolves: register the Node, heartbeat, run the pods bound to
/// it and (unless [`AgentOptions::proxy`] is off) proxy NodePort services. On shutdown the
/// process runtime's containers are stopped (they are the agent's children) and the node ports
/// closed; the pods stay bound, and a restarted agent starts their containers again.
pub async fn run(
    client: Client,
    options: AgentOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    options.validate()?;
    let pods_dir = options.data_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(|e| Error::io(&pods_dir, e))?;
    let options = Arc::new(options);
    register_with_retry(&client, &options).await?;
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), options.clone()));
    let proxy = match options.proxy_address.parse() {
        Ok(address) if options.proxy => Some(tokio::spawn(proxy::run(client.clone(), address))),
        _ => None,
    };
    let ctx = Arc::new(worker::Context {
        client,
        runtime: Arc::new(runtime::ProcessRuntime::new()),
        ips: IpPool::new(options.pod_ip_block),
        options,
    });
    pods::run(ctx, shutdown).await;
    heartbeat.abort();
    if let Some(proxy) = proxy {
        proxy.abort();
    }
    Ok(())
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

/// Pod addresses: `127.<block>.<y>.<z>` from a per-node counter, skipping addresses in use.
pub(crate) struct IpPool {
    block: u8,
    state: Mutex<(u32, HashSet<String>)>,
}

/// Addresses per block: y and z each run 1..=254.
const BLOCK_SIZE: u32 = 254 * 254;

impl IpPool {
    fn new(block: u8) -> IpPool {
        IpPool {
            block,
            state: Mutex::new((0, HashSet::new())),
        }
    }

    /// An address for a pod: `previous` (its reported podIP, after an agent restart) when it is
    /// in this node's block and free, else the next free one.
    pub(crate) fn allocate(&self, previous: Option<&str>) -> Result<String> {
        let mut state = self.state.lock().expect("ip pool lock");
        let (counter, used) = &mut *state;
        if let Some(ip) = previous.filter(|ip| ip.starts_with(&format!("127.{}.", self.block))) {
            if used.insert(ip.to_string()) {
                return Ok(ip.to_string());
            }
        }
        for _ in 0..BLOCK_SIZE {
            let n = *counter % BLOCK_SIZE;
            *counter = counter.wrapping_add(1);
            let ip = format!("127.{}.{}.{}", self.block, 1 + n / 254, 1 + n % 254);
            if used.insert(ip.clone()) {
                return Ok(ip);
            }
        }
        Err(Error::Runtime(format!(
            "no free pod address left in 127.{}.0.0/16",
            self.block
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
    fn docker_is_refused_clearly() {
        let mut options = AgentOptions::new("n1", "/tmp/x".into());
        options.runtime = "docker".parse().unwrap();
        let err = options.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid agent configuration: the docker runtime is not implemented yet; use --runtime process"
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
