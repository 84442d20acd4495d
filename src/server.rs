//! `rkube server`: one control-plane replica: the replicated store, the API server on top of
//! it, and the control loops (controllers and scheduler) that act while this replica leads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

/// Flags of `rkube server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Directory for this replica's data and certificates.
    #[arg(long, default_value = "./rkube-data", env = "RKUBE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Raft node id (default: 1 for a new cluster, random when joining).
    #[arg(long, env = "RKUBE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address to listen on for peer (store) traffic.
    #[arg(long, default_value = "127.0.0.1:6444", env = "RKUBE_LISTEN_PEER")]
    pub listen_peer: String,
    /// Address other servers dial to reach this one (default: the listen address).
    #[arg(long, env = "RKUBE_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// Address to listen on for the API (clients, controllers, agents).
    #[arg(long, default_value = "127.0.0.1:6443", env = "RKUBE_LISTEN_API")]
    pub listen_api: String,
    /// Address clients use to reach this server's API (default: the listen address).
    #[arg(long, env = "RKUBE_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// Join the cluster of the server at this peer address instead of creating a new cluster.
    #[arg(long, env = "RKUBE_JOIN")]
    pub join: Option<String>,
    /// Join token (contents of an existing server's `join-token` file). For a new cluster, sets
    /// the secret part others join with.
    #[arg(long, env = "RKUBE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// When joining, stay a non-voting learner until promoted (`rkube cluster promote ID`).
    #[arg(long, requires = "join")]
    pub learner: bool,
    /// Start a NEW cluster from this backup (`rkube cluster snapshot save FILE`) instead of an
    /// empty state; the data directory must be new. The other servers then join this one.
    /// Revisions jump past the old cluster's, which are marked compacted, so every client and
    /// agent relists instead of trusting what it cached from the old cluster.
    #[arg(long, value_name = "FILE", conflicts_with = "join")]
    pub restore_from: Option<PathBuf>,
    /// With --restore-from: keep the CA of the old cluster, from one of its servers' `tls/`
    /// directory (default: a new CA, so clients need the new admin kubeconfig).
    #[arg(long, value_name = "DIR", requires = "restore_from")]
    pub restore_ca_dir: Option<PathBuf>,
    /// With --restore-from: how far revisions jump.
    #[arg(long, default_value_t = rkube_store::restore::DEFAULT_REVISION_BUMP, requires = "restore_from")]
    pub restore_revision_bump: i64,
    /// Extra DNS names or IPs for this server's certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// IP range Services get cluster IPs from.
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cidr: String,
    /// Node ports Services of type NodePort get, as FIRST-LAST.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub node_port_range: (u16, u16),
    /// History older than this is compacted (watches must resume from newer revisions).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub compaction_interval: Duration,
    #[command(flatten)]
    pub control_plane: crate::control_plane::ControlPlaneArgs,
    /// Testing only (the chaos suite): a file listing the peer node ids (separated by spaces,
    /// commas or newlines) this server's Raft transport refuses to send to, re-read every
    /// 100 ms; a missing or empty file blocks nothing. Partitions and one-way drops are made by
    /// writing these files.
    #[arg(long, hide = true)]
    pub peer_fault_file: Option<PathBuf>,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or("expected FIRST-LAST, e.g. 30000-32767")?;
    let (a, b): (u16, u16) = (
        a.parse().map_err(|e| format!("{a}: {e}"))?,
        b.parse().map_err(|e| format!("{b}: {e}"))?,
    );
    if a > b {
        return Err(format!("{a} is above {b}"));
    }
    Ok((a, b))
}

impl ServerArgs {
    pub fn options(&self) -> rkube_store::ServerOptions {
        let mut o = rkube_store::ServerOptions::new(&self.data_dir);
        o.node_id = self.node_id;
        o.advertise_addr = self.advertise_peer.clone();
        o.join = self.join.clone();
        o.token = self.token.clone();
        o.extra_sans = self.tls_san.clone();
        o.learner = self.learner;
        o.restore = self
            .restore_from
            .clone()
            .map(|backup| rkube_store::RestoreOptions {
                backup,
                ca_dir: self.restore_ca_dir.clone(),
                revision_bump: self.restore_revision_bump,
            });
        if let Some(api) = &self.advertise_api {
            o.extra_sans.push(api.clone());
        }
        o
    }
}

/// Run a server on the given listeners until `shutdown` resolves, then stop it cleanly.
pub async fn run(
    args: ServerArgs,
    peer_listener: TcpListener,
    api_listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let api_local = api_listener.local_addr()?;
    let server = rkube_store::start(args.options(), peer_listener)
        .await
        .with_context(|| {
            format!(
                "cannot start the server with data directory {}",
                args.data_dir.display()
            )
        })?;
    let (ca, cert) = rkube_store::tls::TlsDir::new(server.tls_dir.clone())
        .load()
        .with_context(|| format!("cannot load certificates from {}", server.tls_dir.display()))?;
    let advertise_api = args
        .advertise_api
        .clone()
        .unwrap_or_else(|| api_local.to_string());
    let config = rkube_apiserver::server::ApiConfig {
        advertise_addr: advertise_api.clone(),
        data_dir: args.data_dir.clone(),
        service_cidr: args.service_cidr.clone(),
        node_ports: args.node_port_range.0..=args.node_port_range.1,
        compaction_interval: args.compaction_interval,
        clock: rkube_apiserver::registry::system_clock(),
    };
    let loops_ca = ca.clone();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(rkube_apiserver::server::serve(
        server.store.clone(),
        ca,
        cert,
        api_listener,
        config,
        async {
            let _ = api_stopped.await;
        },
    ));
    // The control loops reach this server's API over loopback (or its listen address).
    let loops_addr = if api_local.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), api_local.port())
    } else {
        api_local
    };
    let (stop_loops, loops_stopped) = tokio::sync::oneshot::channel::<()>();
    let loops = tokio::spawn(crate::control_plane::run(
        args.control_plane.clone(),
        loops_ca,
        loops_addr.to_string(),
        server.identity.node_id,
        async {
            let _ = loops_stopped.await;
        },
    ));
    let id = &server.identity;
    tracing::info!(
        node = id.node_id,
        cluster = format!("{:016x}", id.cluster_id),
        peer = %server.addr,
        api = %advertise_api,
        data_dir = %args.data_dir.display(),
        "rkube server is ready"
    );
    tracing::info!(
        "other servers join with: rkube server --join {} --token $(cat {})",
        id.advertise_addr,
        args.data_dir.join("join-token").display()
    );
    let fault_watcher = args
        .peer_fault_file
        .clone()
        .map(|path| tokio::spawn(watch_peer_faults(path, server.store.pool().faults.clone())));
    let mut metrics = server.store.raft().metrics();
    let outcome = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
        // A replica whose storage failed stops rather than keep serving.
        _ = metrics.wait_for(|m| m.state == rkube_store::types::ServerState::Shutdown) => {
            Err(anyhow::anyhow!("the replica stopped (storage failure? see the log above)"))
        }
        r = api => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::anyhow!("the API server stopped: {e}")),
            Err(e) => Err(anyhow::anyhow!("the API server task failed: {e}")),
        },
    };
    let _ = stop_loops.send(());
    match loops.await {
        Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "the control loops failed"),
        Err(e) => tracing::error!(error = %e, "the control loops task failed"),
        Ok(Ok(())) => {}
    }
    if let Some(w) = fault_watcher {
        w.abort();
    }
    let _ = stop_api.send(());
    server.shutdown().await;
    outcome
}

/// Keep `faults` equal to the peer ids listed in `path` (see `--peer-fault-file`).
async fn watch_peer_faults(path: PathBuf, faults: std::sync::Arc<rkube_store::network::Faults>) {
    tracing::warn!(file = %path.display(), "peer fault injection enabled (testing only)");
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the peer fault file");
                continue;
            }
        };
        let mut blocked = std::collections::HashSet::new();
        for word in text.split(|c: char| c.is_whitespace() || c == ',') {
            if word.is_empty() {
                continue;
            }
            match word.parse::<u64>() {
                Ok(id) => {
                    blocked.insert(id);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), word, error = %e, "not a peer id in the peer fault file");
                }
            }
        }
        if blocked != faults.blocked() {
            tracing::info!(blocked = ?blocked, "peer links blocked (fault injection)");
            faults.set_blocked(blocked);
        }
    }
}
