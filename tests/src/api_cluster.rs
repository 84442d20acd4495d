//! In-process rkube servers (store + API) on loopback for API tests: each server runs the same
//! `rkube::server::run` as the binary, on its own tokio runtime so that killing one drops all it
//! owns; clients come from the admin kubeconfig the first server writes.

use std::path::PathBuf;
use std::time::Duration;

use rkube::control_plane::ControlPlaneArgs;
use rkube::server::ServerArgs;
use rkube_client::{Client, ClientConfig, Kubeconfig};
use tokio::net::TcpListener;

use crate::wait::wait_until;

struct Server {
    args: ServerArgs,
    peer_addr: String,
    api_addr: String,
    runtime: Option<tokio::runtime::Runtime>,
}

/// A cluster of API servers with ids 1..=n.
pub struct ApiCluster {
    _base: tempfile::TempDir,
    servers: Vec<Server>,
    token: String,
    /// Threads finishing killed servers' runtimes: their blocking tasks (RocksDB writes) must end
    /// before the process exits, or RocksDB's static destructors race them.
    reapers: Vec<std::thread::JoinHandle<()>>,
}

/// Drop a server's runtime as a crash would (tasks are dropped at their next await), in a thread
/// that waits for its blocking tasks.
fn reap(rt: tokio::runtime::Runtime) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || rt.shutdown_timeout(Duration::from_secs(30)))
}

/// How the servers of an [`ApiCluster`] run.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// History older than this is compacted.
    pub compaction: Duration,
    /// The control loops' flags. By default none run: API tests see only their own writes.
    pub control_plane: ControlPlaneArgs,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            compaction: Duration::from_secs(300),
            control_plane: ControlPlaneArgs {
                controllers: Vec::new(),
                ..Default::default()
            },
        }
    }
}

impl ClusterOptions {
    /// Every control loop, with these node lifecycle settings.
    pub fn with_control_loops() -> ClusterOptions {
        ClusterOptions {
            control_plane: ControlPlaneArgs::default(),
            ..Default::default()
        }
    }

    /// The cronjob and autoscaler controllers' clock runs `rate` times faster than real time
    /// from the moment each server starts (`rkube server --clock-rate`, a test setting).
    pub fn with_clock_rate(mut self, rate: f64) -> ClusterOptions {
        self.control_plane.clock_rate = rate;
        self
    }

    /// The local provisioner creates its hostPath volumes under `dir` (`rkube server
    /// --volume-root`) instead of the machine-wide default.
    pub fn with_volume_root(mut self, dir: &std::path::Path) -> ClusterOptions {
        self.control_plane.volume_root = dir.to_string_lossy().into_owned();
        self
    }
}

fn args_for(dir: PathBuf, id: u64, opts: &ClusterOptions) -> ServerArgs {
    ServerArgs {
        data_dir: dir,
        node_id: Some(id),
        listen_peer: String::new(),
        advertise_peer: None,
        listen_api: String::new(),
        advertise_api: None,
        join: None,
        token: None,
        tls_san: vec![],
        learner: false,
        restore_from: None,
        restore_ca_dir: None,
        restore_revision_bump: rkube_store::restore::DEFAULT_REVISION_BUMP,
        service_cidr: "10.96.0.0/16".into(),
        node_port_range: (30000, 32767),
        compaction_interval: opts.compaction,
        control_plane: opts.control_plane.clone(),
        peer_fault_file: None,
    }
}

impl ApiCluster {
    pub async fn start(n: usize) -> ApiCluster {
        Self::start_with(n, Duration::from_secs(300)).await
    }

    /// Start `n` servers; history is compacted every `compaction`.
    pub async fn start_with(n: usize, compaction: Duration) -> ApiCluster {
        Self::start_opts(
            n,
            ClusterOptions {
                compaction,
                ..Default::default()
            },
        )
        .await
    }

    /// Start `n` servers with these options.
    pub async fn start_opts(n: usize, opts: ClusterOptions) -> ApiCluster {
        let base = tempfile::tempdir().expect("tempdir");
        let mut c = ApiCluster {
            servers: Vec::new(),
            token: String::new(),
            reapers: Vec::new(),
            _base: base,
        };
        for i in 0..n {
            let id = i as u64 + 1;
            let mut args = args_for(c._base.path().join(format!("server-{id}")), id, &opts);
            if i > 0 {
                args.join = Some(c.servers[0].peer_addr.clone());
                args.token = Some(c.token.clone());
            }
            let peer = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let api = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let peer_addr = peer.local_addr().expect("addr").to_string();
            let api_addr = api.local_addr().expect("addr").to_string();
            args.listen_peer = peer_addr.clone();
            args.listen_api = api_addr.clone();
            let mut server = Server {
                args,
                peer_addr,
                api_addr,
                runtime: None,
            };
            launch(&mut server, peer, api).await;
            if i == 0 {
                let token_file = server.args.data_dir.join("join-token");
                c.token = wait_until(Duration::from_secs(20), "the join token", || {
                    let f = token_file.clone();
                    async move {
                        std::fs::read_to_string(f)
                            .ok()
                            .map(|t| t.trim().to_string())
                    }
                })
                .await;
            }
            c.servers.push(server);
        }
        let kubeconfig = c.servers[0].args.data_dir.join("admin.kubeconfig");
        wait_until(Duration::from_secs(30), "the admin kubeconfig", || {
            let k = kubeconfig.clone();
            async move { k.exists().then_some(()) }
        })
        .await;
        // Every server has registered its API address and the built-in namespaces exist.
        let client = c.client();
        wait_until(
            Duration::from_secs(30),
            "every member with an API address",
            || {
                let client = client.clone();
                async move {
                    let m = client.members().await.ok()?;
                    (m.members.len() == n && m.members.iter().all(|m| !m.api_addr.is_empty()))
                        .then_some(())
                }
            },
        )
        .await;
        c
    }

    /// The admin client configuration, listing every server (in id order).
    pub fn client_config(&self) -> ClientConfig {
        let path = self.servers[0].args.data_dir.join("admin.kubeconfig");
        let mut config = Kubeconfig::load(&path)
            .expect("kubeconfig")
            .client_config()
            .expect("client config");
        config.servers = self.servers.iter().map(|s| s.api_addr.clone()).collect();
        config
    }

    /// A client whose first choice is server `id` (then the others).
    pub fn client_to(&self, id: usize) -> Client {
        let mut config = self.client_config();
        config.servers.rotate_left(id - 1);
        Client::new(config).expect("client")
    }

    /// Write a kubeconfig listing every server (in id order) and return its path, for running
    /// the CLI against this cluster.
    pub fn kubeconfig(&self) -> PathBuf {
        let config = self.client_config();
        let path = self._base.path().join("kubeconfig");
        let servers: Vec<String> = config
            .servers
            .iter()
            .map(|s| format!("https://{s}"))
            .collect();
        rkube_apiserver::server::write_kubeconfig(
            &path,
            &config.servers[0],
            &servers,
            &config.ca_pem,
            config.token.as_deref().unwrap_or(""),
        )
        .expect("write kubeconfig");
        path
    }

    pub fn client(&self) -> Client {
        self.client_to(1)
    }

    pub fn api_addr(&self, id: usize) -> &str {
        &self.servers[id - 1].api_addr
    }

    pub fn data_dir(&self, id: usize) -> &std::path::Path {
        &self.servers[id - 1].args.data_dir
    }

    /// The id of the server the others follow (the Raft leader), once one is elected.
    pub async fn leader(&self) -> usize {
        let client = self.client();
        wait_until(Duration::from_secs(20), "a leader", || {
            let client = client.clone();
            async move {
                let m = client.members().await.ok()?;
                (m.leader_id != 0).then_some(m.leader_id as usize)
            }
        })
        .await
    }

    /// Whether server `id` is still running.
    pub fn is_running(&self, id: usize) -> bool {
        self.servers[id - 1].runtime.is_some()
    }

    /// Kill server `id` as a crash would.
    pub fn kill(&mut self, id: usize) {
        if let Some(rt) = self.servers[id - 1].runtime.take() {
            self.reapers.push(reap(rt));
        }
    }

    /// Start killed server `id` again from its data directory, on the same peer and API
    /// addresses (so clients that know the old address find it again).
    pub async fn restart(&mut self, id: usize) {
        assert!(!self.is_running(id), "server {id} is running");
        // The killed runtimes must be gone, with their sockets, before the addresses are reused.
        for r in self.reapers.drain(..) {
            let _ = r.join();
        }
        let bind = |addr: String| async move {
            wait_until(
                Duration::from_secs(20),
                &format!("{addr} free again"),
                || {
                    let addr = addr.clone();
                    async move { TcpListener::bind(&addr).await.ok() }
                },
            )
            .await
        };
        let server = &mut self.servers[id - 1];
        let peer = bind(server.peer_addr.clone()).await;
        let api = bind(server.api_addr.clone()).await;
        // Joining again is not wanted: the data directory already says it is a member.
        launch(server, peer, api).await;
    }
}

async fn launch(server: &mut Server, peer: TcpListener, api: TcpListener) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let args = server.args.clone();
    let (peer, api) = (peer.into_std().expect("std"), api.into_std().expect("std"));
    let log = server.args.data_dir.with_extension("log");
    runtime.spawn(async move {
        let peer = TcpListener::from_std(peer).expect("listener");
        let api = TcpListener::from_std(api).expect("listener");
        if let Err(e) = rkube::server::run(args, peer, api, std::future::pending()).await {
            let _ = std::fs::write(log, format!("{e:#}"));
            eprintln!("server stopped: {e:#}");
        }
    });
    server.runtime = Some(runtime);
}

impl Drop for ApiCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(rt) = s.runtime.take() {
                self.reapers.push(reap(rt));
            }
        }
        for r in self.reapers.drain(..) {
            let _ = r.join();
        }
    }
}
