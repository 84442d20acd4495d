//! `rkube server`: one control-plane replica. Today it runs the replicated store; the API server,
//! controllers and scheduler join it as their issues land.

use std::path::PathBuf;

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
    /// Join the cluster of the server at this peer address instead of creating a new cluster.
    #[arg(long, env = "RKUBE_JOIN")]
    pub join: Option<String>,
    /// Join token (contents of an existing server's `join-token` file). For a new cluster, sets
    /// the secret part others join with.
    #[arg(long, env = "RKUBE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra DNS names or IPs for this server's certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
}

impl ServerArgs {
    pub fn options(&self) -> rkube_store::ServerOptions {
        let mut o = rkube_store::ServerOptions::new(&self.data_dir);
        o.node_id = self.node_id;
        o.advertise_addr = self.advertise_peer.clone();
        o.join = self.join.clone();
        o.token = self.token.clone();
        o.extra_sans = self.tls_san.clone();
        o
    }
}

/// Run a server until `shutdown` resolves, then stop it cleanly.
pub async fn run(
    args: ServerArgs,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let server = rkube_store::start(args.options(), listener)
        .await
        .with_context(|| {
            format!(
                "cannot start the server with data directory {}",
                args.data_dir.display()
            )
        })?;
    let id = &server.identity;
    tracing::info!(
        node = id.node_id,
        cluster = format!("{:016x}", id.cluster_id),
        peer = %server.addr,
        advertise = %id.advertise_addr,
        data_dir = %args.data_dir.display(),
        "rkube server is ready"
    );
    tracing::info!(
        "other servers join with: rkube server --join {} --token $(cat {})",
        id.advertise_addr,
        args.data_dir.join("join-token").display()
    );
    let mut metrics = server.store.raft().metrics();
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        // A replica whose storage failed stops rather than keep serving.
        _ = metrics.wait_for(|m| m.state == openraft_state_shutdown()) => {
            server.shutdown().await;
            anyhow::bail!("the replica stopped (storage failure? see the log above)");
        }
    }
    server.shutdown().await;
    Ok(())
}

fn openraft_state_shutdown() -> rkube_store::types::ServerState {
    rkube_store::types::ServerState::Shutdown
}
