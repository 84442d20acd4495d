//! `rkube agent`: the node agent's flags, turned into [`rkube_agent::AgentOptions`]; the
//! kubeconfig comes from the global `--kubeconfig` flag (default `$RKUBECONFIG`, then
//! `~/.rkube/config`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rkube_agent::{AgentOptions, RuntimeKind};
use rkube_client::{Client, ClientConfig};

/// Flags of `rkube agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The Node's name (default: this machine's hostname).
    #[arg(long, env = "RKUBE_NODE_NAME")]
    pub node_name: Option<String>,
    /// Extra Node labels, as KEY=VALUE,... .
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// CPU capacity (a Kubernetes quantity; default: this machine's CPUs).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory capacity (a Kubernetes quantity; default: MemTotal of /proc/meminfo).
    #[arg(long)]
    pub memory: Option<String>,
    /// How many pods the node accepts.
    #[arg(long, default_value = "110")]
    pub max_pods: u32,
    /// Directory for pod directories and container logs.
    #[arg(
        long,
        default_value = "./rkube-agent-data",
        env = "RKUBE_AGENT_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Container runtime: `process` (runs each container's command as a child process) or
    /// `docker` (Docker Engine containers from local images, one network namespace per pod).
    #[arg(long, default_value = "process", value_parser = parse_runtime)]
    pub runtime: RuntimeKind,
    /// The Docker Engine's unix socket (docker runtime).
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
    /// The Docker network pods get their addresses on (docker runtime; created if missing).
    #[arg(long, default_value = "rkube")]
    pub docker_network: String,
    /// The local image whose `/rkube pause` holds each pod's network namespace (docker
    /// runtime; never pulled: build it with deploy/build-image.sh).
    #[arg(long, default_value = "rkube:dev")]
    pub docker_sandbox_image: String,
    /// The second octet of this node's pod addresses 127.N.x.y (1-254; default: derived from
    /// the node name). Agents sharing one host need different values.
    #[arg(long)]
    pub pod_ip_block: Option<u8>,
    /// This node's address as other nodes and the API servers reach it: the Node's InternalIP,
    /// pods' `status.hostIP`, and the host of an unspecified --serve-address.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: std::net::Ipv4Addr,
    /// This node's pod range (e.g. 10.244.1.0/24) when nodes are separate hosts (containers):
    /// pods get routable addresses from it instead of loopback ones, the range is published
    /// as the Node's podCIDR, and the agent routes other nodes' ranges via their InternalIP.
    /// Process runtime only; needs CAP_NET_ADMIN. Replaces --pod-ip-block.
    #[arg(long, value_parser = parse_cidr, conflicts_with = "pod_ip_block")]
    pub pod_cidr: Option<rkube_agent::service_cidr::ServiceCidr>,
    /// The address the NodePort service proxy listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub proxy_address: String,
    /// Where the process runtime puts containers' cgroups to enforce their memory and cpu
    /// limits: `auto` (a group `rkube-<node>` under the agent's own cgroup in each
    /// hierarchy; on cgroup v2 at the top when the agent's group holds processes), a cgroup path such as `/rkube` (under each hierarchy's mount), or `none`
    /// (limits unenforced). The Node's `rkube.io/resource-limits` annotation says what is
    /// enforced, and pods whose limits are not get a `ResourceLimitsUnenforced` Event.
    #[arg(long, default_value = "auto", value_parser = parse_cgroup_root)]
    pub cgroup_root: rkube_agent::runtime::cgroups::CgroupRoot,
    /// Where the agent service (logs, exec, port forwarding and stats, for API servers only)
    /// listens, HOST:PORT; port 0 picks a free port. The address is published on the Node.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub serve_address: String,
    /// Do not run the service proxy (node ports and cluster IPs).
    #[arg(long)]
    pub no_proxy: bool,
    /// The range cluster IPs are allocated from (the servers' --service-cidr). The agent makes
    /// it local on this host (a `local` route on lo; needs root or CAP_NET_ADMIN) to serve
    /// cluster IPs and the cluster DNS address.
    #[arg(long, default_value = rkube_agent::service_cidr::DEFAULT_SERVICE_CIDR, value_parser = parse_cidr)]
    pub service_cidr: rkube_agent::service_cidr::ServiceCidr,
    /// Do not serve Services on their cluster IPs (node ports only) or touch routes.
    #[arg(long)]
    pub no_cluster_ip: bool,
    /// Where the cluster DNS responder listens (UDP and TCP), IP:PORT.
    #[arg(long, default_value = rkube_agent::dns::DEFAULT_ADDRESS)]
    pub cluster_dns: std::net::SocketAddr,
    /// Do not run the cluster DNS responder.
    #[arg(long)]
    pub no_cluster_dns: bool,
    /// How often the node renews its Lease and posts its status (the kubelet's
    /// node-status-update-frequency); keep it well under the servers'
    /// --node-monitor-grace-period.
    #[arg(long, default_value = "10s", value_parser = parse_heartbeat)]
    pub heartbeat_interval: std::time::Duration,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_heartbeat(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_millis(100) {
        return Err(format!("{s} is too short: at least 100ms"));
    }
    Ok(d)
}

fn parse_cidr(s: &str) -> Result<rkube_agent::service_cidr::ServiceCidr, String> {
    s.parse()
}

fn parse_cgroup_root(s: &str) -> Result<rkube_agent::runtime::cgroups::CgroupRoot, String> {
    s.parse()
}

fn parse_runtime(s: &str) -> Result<RuntimeKind, String> {
    s.parse().map_err(|e: rkube_agent::Error| e.to_string())
}

/// Run the agent until `shutdown`.
pub async fn run(
    args: AgentArgs,
    kubeconfig: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let node_name = match args.node_name {
        Some(n) => n,
        None => hostname()?,
    };
    let mut options = AgentOptions::new(&node_name, args.data_dir);
    options.labels = args.labels.into_iter().collect::<BTreeMap<_, _>>();
    if let Some(cpu) = args.cpu {
        options.cpu = cpu;
    }
    if let Some(memory) = args.memory {
        options.memory = memory;
    }
    options.max_pods = args.max_pods;
    options.heartbeat_interval = args.heartbeat_interval;
    options.runtime = args.runtime;
    options.docker = rkube_agent::runtime::DockerOptions {
        socket: args.docker_socket,
        network: args.docker_network,
        sandbox_image: args.docker_sandbox_image,
    };
    options.cgroup_root = args.cgroup_root;
    if let Some(block) = args.pod_ip_block {
        options.pod_ip_block = block;
    }
    options.pod_cidr = args.pod_cidr;
    options.host_ip = args.node_ip.to_string();
    options.proxy_address = args.proxy_address;
    options.serve_address = Some(args.serve_address);
    options.proxy = !args.no_proxy;
    options.service_cidr = args.service_cidr;
    options.cluster_ip = !args.no_cluster_ip;
    options.cluster_dns = (!args.no_cluster_dns).then_some(args.cluster_dns);
    // Refuse bad flags before looking for a server.
    options.validate()?;
    let config = ClientConfig::locate(kubeconfig).context("cannot load the kubeconfig")?;
    let client = Client::new(config)?;
    rkube_agent::run(client, options, shutdown).await?;
    Ok(())
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read this machine's hostname; pass --node-name")?;
    Ok(name.trim().to_lowercase())
}
