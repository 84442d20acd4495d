//! Serving the API on its own TLS listener: the Resources and Cluster services, gRPC health and
//! reflection; plus the background duties every server has (record its API address, make sure
//! the built-in namespaces exist, write an admin kubeconfig, compact history periodically).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use rkube_proto::api::cluster_server::ClusterServer;
use rkube_proto::api::metrics_server::MetricsServer;
use rkube_proto::api::pods_server::PodsServer;
use rkube_proto::api::resources_server::ResourcesServer;
use rkube_store::tls::{self, CaBundle, CertKey};
use rkube_store::Store;
use serde_json::json;
use tokio::net::TcpListener;

use crate::allocator::ServiceAllocator;
use crate::auth::{generate_token, Authenticator, User};
use crate::error::{Error, Result};
use crate::kinds;
use crate::members;
use crate::registry::{Clock, Registry, MAX_OBJECT_BYTES};
use crate::service::ApiService;

/// Namespaces that exist from the start.
pub const BUILTIN_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-node-lease"];

/// How the API server runs.
pub struct ApiConfig {
    /// The address clients use to reach this server's API (host:port).
    pub advertise_addr: String,
    /// Where to write `admin.kubeconfig` (the server's data directory).
    pub data_dir: PathBuf,
    pub service_cidr: String,
    pub node_ports: std::ops::RangeInclusive<u16>,
    /// Compact history older than this (Kubernetes' default is 5 minutes).
    pub compaction_interval: Duration,
    pub clock: Clock,
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve(
    store: Store,
    ca: CaBundle,
    cert: CertKey,
    listener: TcpListener,
    config: ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let services = ServiceAllocator::new(&config.service_cidr, config.node_ports.clone())?;
    let registry = Registry::new(store.clone(), config.clock.clone(), services);
    let auth = Authenticator::new(store.clone());
    let api = ApiService {
        registry: registry.clone(),
        auth: auth.clone(),
    };
    let node_proxy = crate::node_proxy::NodeProxy {
        registry: registry.clone(),
        auth: auth.clone(),
        dialer: std::sync::Arc::new(crate::node_proxy::AgentDialer::new(&ca, &cert)?),
    };

    tokio::spawn(bootstrap(
        store.clone(),
        registry.clone(),
        auth,
        ca.clone(),
        config.advertise_addr.clone(),
        config.data_dir.clone(),
    ));
    tokio::spawn(compact_periodically(
        store.clone(),
        config.compaction_interval,
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ResourcesServer<ApiService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rkube_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    // Well above the object limit, so oversized objects get the registry's clear message
    // instead of the transport's.
    let limit = 4 * MAX_OBJECT_BYTES;
    // Accepted connections need TCP_NODELAY too (the builder's setting applies only when
    // tonic binds the socket itself); without it small responses wait for delayed ACKs.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .tls_config(tls::server_tls_config(&ca, &cert))
        .map_err(|e| Error::Internal(format!("API TLS: {e}")))?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(
            ResourcesServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(512 << 20),
        )
        .add_service(ClusterServer::new(api))
        .add_service(PodsServer::new(node_proxy.clone()))
        .add_service(MetricsServer::new(node_proxy))
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Internal(format!("API server failed: {e}")))
}

/// Duties that need a working cluster; retried until they succeed.
async fn bootstrap(
    store: Store,
    registry: Registry,
    auth: Authenticator,
    ca: CaBundle,
    api_addr: String,
    data_dir: PathBuf,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match bootstrap_once(&store, &registry, &auth, &ca, &api_addr, &data_dir).await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(error = %e, "API bootstrap not done yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn bootstrap_once(
    store: &Store,
    registry: &Registry,
    auth: &Authenticator,
    ca: &CaBundle,
    api_addr: &str,
    data_dir: &std::path::Path,
) -> Result<()> {
    members::register(store, api_addr).await?;
    let ns_info = kinds::resolve("namespaces").expect("served");
    for ns in BUILTIN_NAMESPACES {
        if registry.get(ns_info, "", ns, false).await.is_err() {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match registry.create(obj, "", false).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let path = data_dir.join("admin.kubeconfig");
    if !path.exists() {
        let token = generate_token();
        auth.add_token(
            &token,
            &User {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
            },
        )
        .await?;
        let servers: Vec<String> = members::members(store)
            .await?
            .members
            .into_iter()
            .filter(|m| !m.api_addr.is_empty())
            .map(|m| format!("https://{}", m.api_addr))
            .collect();
        write_kubeconfig(&path, api_addr, &servers, &ca.cert_pem, &token)?;
        tracing::info!(path = %path.display(), "wrote the admin kubeconfig");
    }
    Ok(())
}

/// Write a kubeconfig for the admin user. All known servers are listed in the `rkube.io/servers`
/// extension of the cluster entry; clients fail over between them and learn new ones from the
/// Cluster.Members RPC.
pub fn write_kubeconfig(
    path: &std::path::Path,
    api_addr: &str,
    servers: &[String],
    ca_pem: &str,
    token: &str,
) -> Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let first = format!("https://{api_addr}");
    let mut all = vec![first.clone()];
    all.extend(servers.iter().filter(|s| **s != first).cloned());
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "rkube",
            "cluster": {
                "server": format!("https://{api_addr}"),
                "certificate-authority-data": b64,
                "tls-server-name": tls::SERVER_NAME,
                "extensions": [{"name": "rkube.io/servers", "extension": {"servers": all}}],
            }
        }],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "rkube", "context": {"cluster": "rkube", "user": "admin", "namespace": "default"}}],
        "current-context": "rkube",
    });
    let yaml =
        yaml_serde::to_string(&config).map_err(|e| Error::Internal(format!("kubeconfig: {e}")))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", tmp.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
}

/// Every interval, the leader compacts history to the revision it saw one interval earlier, so
/// watches can resume from anything newer than that (Kubernetes' compactor does the same).
async fn compact_periodically(store: Store, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut previous: Option<i64> = None;
    loop {
        tick.tick().await;
        let current = store.applied_revision();
        if let Some(rev) = previous {
            if store.is_leader() && rev > 0 {
                match store.compact(rev).await {
                    Ok(_) => tracing::debug!(revision = rev, "compacted history"),
                    Err(rkube_store::Error::Compacted { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, "compaction failed"),
                }
            }
        }
        previous = Some(current);
    }
}
