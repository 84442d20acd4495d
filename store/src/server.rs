//! Starting a replica from its data directory: first start of a new cluster (CA, certificates,
//! join token), joining an existing cluster with a join token, resuming after a restart, and
//! serving the store's gRPC services over mutual TLS.
//!
//! Data directory layout: `cluster.json` (identity, written once the directory is usable),
//! `tls/` (CA, server and admin certificates), `join-token`, `db/` (RocksDB), `snapshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rkube_proto::store as pb;
use rkube_proto::store::cluster_client::ClusterClient;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::network::{endpoint, PeerPool};
use crate::node::{Store, StoreConfig};
use crate::service::Services;
use crate::tls::{self, CaBundle, CertKey, JoinToken, TlsDir};
use crate::types::NodeId;

/// How to start a replica.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    /// Raft node id; defaults to 1 for a new cluster and to a random id when joining.
    pub node_id: Option<NodeId>,
    /// Address other servers dial to reach this one; defaults to the listener's address.
    pub advertise_addr: Option<String>,
    /// Join the cluster served at this address instead of creating a new one.
    pub join: Option<String>,
    /// A join token (`rk1.<ca-hash>.<secret>` or a bare secret). For a new cluster it sets the
    /// secret others join with; when joining it is required.
    pub token: Option<String>,
    /// Extra names and addresses for this server's certificate.
    pub extra_sans: Vec<String>,
    /// When joining, stay a non-voting learner until promoted (`rkube cluster promote`).
    pub learner: bool,
    /// Overrides of the Raft timing (tests use short ones).
    pub tune: Option<fn(&mut StoreConfig)>,
    /// Start a new cluster from a backup instead of an empty state (see [`crate::restore`]).
    pub restore: Option<RestoreOptions>,
}

/// Starting a new cluster from a backup.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup file (`rkube cluster snapshot save`).
    pub backup: PathBuf,
    /// A `tls/` directory of the old cluster (any server's): its CA is kept, so clients, agents
    /// and kubeconfigs of the old cluster trust the new one. Without it a new CA is made.
    pub ca_dir: Option<PathBuf>,
    /// How far the revision jumps ([`crate::restore::DEFAULT_REVISION_BUMP`]).
    pub revision_bump: i64,
}

impl ServerOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerOptions {
        ServerOptions {
            data_dir: data_dir.into(),
            node_id: None,
            advertise_addr: None,
            join: None,
            token: None,
            extra_sans: Vec::new(),
            learner: false,
            tune: None,
            restore: None,
        }
    }
}

/// The identity a data directory belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub node_id: NodeId,
    pub advertise_addr: String,
    /// Set while this server has its certificates but is not yet a member: a restart retries
    /// adding itself through this address.
    #[serde(default)]
    pub pending_join: Option<String>,
}

const IDENTITY_FILE: &str = "cluster.json";
const TOKEN_FILE: &str = "join-token";

/// A running replica with its gRPC server.
pub struct RunningServer {
    pub store: Store,
    pub addr: SocketAddr,
    pub identity: Identity,
    pub token: JoinToken,
    /// PEM files an administrator (or the API server) uses to call the store directly.
    pub tls_dir: PathBuf,
    server: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningServer {
    /// Stop serving and stop the Raft node.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.store.shutdown().await;
        let _ = (&mut self.server).await;
    }

    /// Stop abruptly, as a crash would (no graceful hand-off), for tests.
    pub async fn kill(mut self) {
        self.server.abort();
        self.store.shutdown().await;
        self.stop.take();
    }
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("cannot {what} {}: {e}", path.display()))
}

fn write_file_synced(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err("write", &tmp, e))?;
    f.write_all(contents)
        .map_err(|e| io_err("write", &tmp, e))?;
    f.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err("chmod", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_err("rename", path, e))
}

fn read_identity(dir: &Path) -> Result<Option<Identity>> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Storage(format!(
                "{} is corrupt ({e}); refusing to start rather than reset this replica",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path, e)),
    }
}

fn write_identity(dir: &Path, id: &Identity) -> Result<()> {
    let json = serde_json::to_vec_pretty(id).map_err(|e| Error::Storage(e.to_string()))?;
    write_file_synced(&dir.join(IDENTITY_FILE), &json, 0o644)
}

/// Check that a fresh start may use `dir`: it must be absent or empty.
fn ensure_fresh(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Invalid(format!(
                    "data directory {} is not empty but has no {IDENTITY_FILE}: it is not an rkube data directory or its \
                     initialization did not finish; move it away or remove it to start a new replica",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))
        }
        Err(e) => Err(io_err("read", dir, e)),
    }
}

/// Check the data directory is writable before anything is acknowledged from it.
fn probe_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(".write-probe");
    write_file_synced(&probe, b"ok", 0o600)?;
    std::fs::remove_file(&probe).map_err(|e| io_err("remove", &probe, e))
}

/// Start a replica on `listener` according to `opts` and its data directory.
pub async fn start(opts: ServerOptions, listener: TcpListener) -> Result<RunningServer> {
    tls::install_crypto_provider();
    let local = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("listener: {e}")))?;
    let dir = opts.data_dir.clone();
    let tls_dir = TlsDir::new(dir.join("tls"));
    let existing = read_identity(&dir)?;

    let (identity, ca, cert, token, fresh_bootstrap) = match existing {
        Some(id) => {
            if opts.restore.is_some() {
                return Err(Error::Invalid(format!(
                    "data directory {} already belongs to cluster {:016x}; restoring a backup needs a new, empty data directory",
                    dir.display(),
                    id.cluster_id
                )));
            }
            if let Some(want) = opts.node_id {
                if want != id.node_id {
                    return Err(Error::Invalid(format!(
                        "data directory {} belongs to node {} of cluster {:016x}, not node {want}",
                        dir.display(),
                        id.node_id,
                        id.cluster_id
                    )));
                }
            }
            probe_writable(&dir)?;
            let (ca, cert) = tls_dir.load().map_err(|e| Error::Storage(format!("{e}")))?;
            let token = read_token(&dir)?;
            if opts.join.is_some() && id.pending_join.is_none() {
                tracing::info!(
                    cluster = format!("{:016x}", id.cluster_id),
                    "already a member; resuming (ignoring --join)"
                );
            }
            (id, ca, cert, token, false)
        }
        None => {
            if opts.restore.is_some() && opts.join.is_some() {
                return Err(Error::Invalid(
                    "a backup is restored into the first server of a new cluster; the others join it (do not combine restoring with joining)".into(),
                ));
            }
            ensure_fresh(&dir)?;
            probe_writable(&dir)?;
            let advertise = opts
                .advertise_addr
                .clone()
                .unwrap_or_else(|| local.to_string());
            match &opts.join {
                None => {
                    let cluster_id = loop {
                        let id: u64 = rand::random();
                        if id != 0 {
                            break id;
                        }
                    };
                    let node_id = opts.node_id.unwrap_or(1);
                    let ca = match opts.restore.as_ref().and_then(|r| r.ca_dir.as_ref()) {
                        Some(ca_dir) => {
                            TlsDir::new(ca_dir.clone())
                                .load()
                                .map_err(|e| {
                                    Error::Invalid(format!(
                                        "cannot use the CA of {} for the restored cluster: {e}",
                                        ca_dir.display()
                                    ))
                                })?
                                .0
                        }
                        None => CaBundle::generate(cluster_id)
                            .map_err(|e| Error::Storage(e.to_string()))?,
                    };
                    let mut sans = opts.extra_sans.clone();
                    sans.push(advertise.clone());
                    let cert = ca
                        .issue_server(node_id, &sans)
                        .map_err(|e| Error::Storage(e.to_string()))?;
                    let secret = match &opts.token {
                        Some(t) => {
                            JoinToken::parse(t)
                                .map_err(|e| Error::Invalid(e.to_string()))?
                                .secret
                        }
                        None => JoinToken::generate_secret(),
                    };
                    let token = JoinToken::new(
                        ca.fingerprint()
                            .map_err(|e| Error::Storage(e.to_string()))?,
                        secret,
                    );
                    tls_dir
                        .save(&ca, &cert)
                        .map_err(|e| Error::Storage(e.to_string()))?;
                    write_admin_cert(&dir, &ca)?;
                    write_file_synced(
                        &dir.join(TOKEN_FILE),
                        format!("{token}\n").as_bytes(),
                        0o600,
                    )?;
                    let identity = Identity {
                        cluster_id,
                        node_id,
                        advertise_addr: advertise,
                        pending_join: None,
                    };
                    (identity, ca, cert, token, true)
                }
                Some(join_addr) => {
                    let node_id = opts
                        .node_id
                        .unwrap_or_else(|| rand::random::<u32>() as u64 + 1);
                    let raw = opts.token.as_deref().ok_or_else(|| {
                        Error::Invalid(
                            "--join needs --token (the join-token file of an existing server)"
                                .into(),
                        )
                    })?;
                    let token = JoinToken::parse(raw).map_err(|e| Error::Invalid(e.to_string()))?;
                    let resp =
                        request_join(join_addr, &token, node_id, &advertise, &opts.extra_sans)
                            .await?;
                    let ca = CaBundle {
                        cert_pem: resp.ca_pem,
                        key_pem: resp.ca_key_pem,
                    };
                    let cert = CertKey {
                        cert_pem: resp.cert_pem,
                        key_pem: resp.key_pem,
                    };
                    let token = JoinToken::new(
                        ca.fingerprint()
                            .map_err(|e| Error::Storage(e.to_string()))?,
                        token.secret,
                    );
                    tls_dir
                        .save(&ca, &cert)
                        .map_err(|e| Error::Storage(e.to_string()))?;
                    write_admin_cert(&dir, &ca)?;
                    write_file_synced(
                        &dir.join(TOKEN_FILE),
                        format!("{token}\n").as_bytes(),
                        0o600,
                    )?;
                    let identity = Identity {
                        cluster_id: resp.cluster_id,
                        node_id,
                        advertise_addr: advertise,
                        pending_join: Some(join_addr.clone()),
                    };
                    write_identity(&dir, &identity)?;
                    (identity, ca, cert, token, false)
                }
            }
        }
    };

    if let (true, Some(restore)) = (fresh_bootstrap, &opts.restore) {
        let backup = std::fs::read(&restore.backup)
            .map_err(|e| io_err("read the backup", &restore.backup, e))?;
        let restored =
            crate::restore::restore_backup(&dir.join("db"), &backup, restore.revision_bump)
                .map_err(|e| Error::Invalid(format!("{}: {e}", restore.backup.display())))?;
        tracing::info!(
            backup = %restore.backup.display(),
            backup_revision = restored.backup_revision,
            revision = restored.revision,
            "restored the backup; older revisions are compacted, so clients relist"
        );
    }

    let mut config = StoreConfig::new(
        identity.node_id,
        identity.cluster_id,
        identity.advertise_addr.clone(),
        dir.clone(),
    );
    if let Some(tune) = opts.tune {
        tune(&mut config);
    }
    let pool = PeerPool::new(tls::client_tls_config(&ca.cert_pem, Some(&cert)));
    let store = Store::open(config, pool).await?;

    let services = Services {
        store: store.clone(),
        ca: ca.clone(),
        token: token.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_tls = tls::server_tls_config(&ca, &cert);
    // Accepted connections need TCP_NODELAY too (the builder's setting applies only when
    // tonic binds the socket itself); without it small responses wait for delayed ACKs.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = tonic::transport::Server::builder()
        .tls_config(server_tls)
        .map_err(|e| Error::Invalid(format!("server TLS: {e}")))?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_routes(services.routes());
    let server = tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            })
            .await
        {
            tracing::error!(error = %e, "store gRPC server failed");
        }
    });

    let mut identity = identity;
    if fresh_bootstrap {
        store.initialize().await?;
        if opts.restore.is_some() {
            // The restored data is in no log entry: servers joining later must receive it as a
            // snapshot, so snapshot now and purge the log it covers.
            store.snapshot_and_purge_log().await?;
        }
        write_identity(&dir, &identity)?;
        tracing::info!(
            cluster = format!("{:016x}", identity.cluster_id),
            node = identity.node_id,
            "created a new cluster"
        );
    }
    if let Some(join_addr) = identity.pending_join.clone() {
        add_self(&store, &join_addr, &ca, &cert, &identity, opts.learner).await?;
        identity.pending_join = None;
        write_identity(&dir, &identity)?;
        tracing::info!(
            cluster = format!("{:016x}", identity.cluster_id),
            node = identity.node_id,
            "joined the cluster"
        );
    }
    Ok(RunningServer {
        store,
        addr: local,
        identity,
        token,
        tls_dir: dir.join("tls"),
        server,
        stop: Some(stop_tx),
    })
}

fn read_token(dir: &Path) -> Result<JoinToken> {
    let path = dir.join(TOKEN_FILE);
    let raw = std::fs::read_to_string(&path).map_err(|e| io_err("read", &path, e))?;
    JoinToken::parse(&raw).map_err(|e| Error::Storage(format!("{}: {e}", path.display())))
}

/// Write a client certificate for the administrator (CN admin, group system:masters).
fn write_admin_cert(dir: &Path, ca: &CaBundle) -> Result<()> {
    let admin = ca
        .issue_client("admin", &["system:masters"])
        .map_err(|e| Error::Storage(e.to_string()))?;
    write_file_synced(
        &dir.join("tls").join("admin.pem"),
        admin.cert_pem.as_bytes(),
        0o644,
    )?;
    write_file_synced(
        &dir.join("tls").join("admin.key"),
        admin.key_pem.as_bytes(),
        0o600,
    )
}

/// Verify the server at `addr` against the token's CA fingerprint, then present the secret.
async fn request_join(
    addr: &str,
    token: &JoinToken,
    id: NodeId,
    advertise: &str,
    sans: &[String],
) -> Result<pb::JoinResponse> {
    let chain = tls::fetch_presented_chain(addr)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot reach {addr} to join: {e}")))?;
    let ca_pem = match &token.ca_fingerprint {
        Some(fp) => {
            let mut found = None;
            for pem in &chain {
                if tls::pem_fingerprint(pem).map_err(|e| Error::Invalid(e.to_string()))? == *fp {
                    found = Some(pem.clone());
                }
            }
            found.ok_or_else(|| Error::Unauthenticated(format!(
                "the server at {addr} does not present the CA the join token names; refusing to send it the token"
            )))?
        }
        None => {
            tracing::warn!(%addr, "the join token has no CA fingerprint: trusting the CA the server presents (use the full rk1.<hash>.<secret> token to pin it)");
            chain
                .last()
                .cloned()
                .ok_or_else(|| Error::Unavailable(format!("{addr} presented no certificate")))?
        }
    };
    let ep = endpoint(addr, &tls::client_tls_config(&ca_pem, None))?;
    let channel = ep
        .connect()
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to {addr}: {e}")))?;
    let resp = ClusterClient::new(channel)
        .join(pb::JoinRequest {
            token_secret: token.secret.clone(),
            id,
            addr: advertise.to_string(),
            sans: sans.to_vec(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::PermissionDenied => Error::Unauthenticated(s.message().to_string()),
            tonic::Code::AlreadyExists | tonic::Code::InvalidArgument => {
                Error::Invalid(s.message().to_string())
            }
            _ => Error::Unavailable(format!("join through {addr} failed: {}", s.message())),
        })?;
    Ok(resp.into_inner())
}

/// Ask the cluster (through `join_addr`, which forwards to the leader) to add this replica.
async fn add_self(
    store: &Store,
    join_addr: &str,
    ca: &CaBundle,
    cert: &CertKey,
    id: &Identity,
    learner_only: bool,
) -> Result<()> {
    let ep = endpoint(join_addr, &tls::client_tls_config(&ca.cert_pem, Some(cert)))?
        .timeout(Duration::from_secs(120));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let attempt = async {
            let channel = ep
                .connect()
                .await
                .map_err(|e| Error::Unavailable(format!("cannot connect to {join_addr}: {e}")))?;
            ClusterClient::new(channel)
                .add_member(pb::AddMemberRequest {
                    id: id.node_id,
                    addr: id.advertise_addr.clone(),
                    learner_only,
                })
                .await
                .map_err(Error::from)
        };
        match attempt.await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "adding this server to the cluster failed; retrying");
                let mut m = store.raft().metrics();
                let _ = tokio::time::timeout(Duration::from_secs(1), m.changed()).await;
            }
            Err(e) => return Err(e),
        }
    }
}
