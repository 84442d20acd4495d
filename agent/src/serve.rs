//! The agent's own gRPC service (`rkube.agent.v1.Agent`): container logs, exec, port forwarding
//! and resource usage of the pods on this node, on a TLS listener of its own.
//!
//! Only API servers may call it: the agent serves with a self-signed certificate whose SHA-256
//! fingerprint it publishes on its Node ([`CERT_ANNOTATION`]; the API server pins it), and
//! requires a client certificate issued by the cluster CA (the CA of its own kubeconfig) that
//! carries the serverAuth usage, which only server certificates have: users' client
//! certificates (clientAuth only) and bearer tokens are refused.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use rkube_proto::agent::{
    self as pb,
    agent_server::{Agent, AgentServer},
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::runtime::Runtime;

pub mod logs;
pub mod pods;
pub mod stats;

pub use pods::NodePods;

/// The Node annotation holding the SHA-256 (lower-case hex) of the agent's serving certificate.
pub const CERT_ANNOTATION: &str = "rkube.io/serving-cert-sha256";
/// The Node annotation holding the agent service's `host:port` (also published as
/// `status.daemonEndpoints.kubeletEndpoint.Port` with the InternalIP).
pub const ADDRESS_ANNOTATION: &str = "rkube.io/agent-address";

/// Where the service listens and which certificate it serves, as published on the Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to dial.
    pub address: String,
    pub port: u16,
    pub cert_sha256: String,
}

/// A bound, not yet serving, agent service.
pub struct Listener {
    listener: tokio::net::TcpListener,
    cert_pem: String,
    key_pem: String,
    pub endpoint: Endpoint,
}

/// Bind `address` (port 0: any free port) and make the serving certificate. The published
/// host is `host_ip` when the address is unspecified (`0.0.0.0`), else the bound address.
pub async fn bind(address: &str, host_ip: &str, node_name: &str) -> Result<Listener> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on --serve-address {address}: {e}")))?;
    let local: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("serve address {address}: {e}")))?;
    let host = if local.ip().is_unspecified() {
        host_ip.to_string()
    } else {
        local.ip().to_string()
    };
    let address = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, local.port()).to_string(),
        Err(_) => format!("{host}:{}", local.port()),
    };
    let mut params = rcgen::CertificateParams::new(vec![format!("rkube-agent-{node_name}")])
        .map_err(|e| Error::Config(format!("serving certificate: {e}")))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("rkube-agent {node_name}"),
    );
    let key = rcgen::KeyPair::generate()
        .map_err(|e| Error::Config(format!("serving certificate key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Config(format!("serving certificate: {e}")))?;
    let cert_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert.der()));
    Ok(Listener {
        listener,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        endpoint: Endpoint {
            address,
            port: local.port(),
            cert_sha256,
        },
    })
}

/// What the service works with.
pub(crate) struct Shared {
    pub node_name: String,
    pub pods: Arc<NodePods>,
    pub runtime: Arc<dyn Runtime>,
}

/// Serve on `listener` until the task is dropped, trusting client certificates of `ca_pem`.
pub(crate) async fn serve(listener: Listener, ca_pem: String, shared: Shared) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            &listener.cert_pem,
            &listener.key_pem,
        ))
        .client_ca_root(tonic::transport::Certificate::from_pem(ca_pem));
    let service = AgentService {
        shared: Arc::new(shared),
        sampler: Arc::new(stats::Sampler::new("/proc")),
    };
    let incoming =
        tonic::transport::server::TcpIncoming::from(listener.listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(|e| Error::Config(format!("agent service TLS: {e}")))?
        .add_service(AgentServer::with_interceptor(service, require_api_server))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| Error::Runtime(format!("agent service failed: {e}")))
}

/// Admit only callers whose certificate (already verified against the cluster CA by the TLS
/// handshake) is a server certificate: it carries the serverAuth extended key usage.
#[allow(clippy::result_large_err)]
fn require_api_server(req: Request<()>) -> Result<Request<()>, Status> {
    let certs = req.peer_certs().ok_or_else(|| {
        Status::unauthenticated("the agent accepts API servers only: no client certificate")
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Status::unauthenticated("the agent accepts API servers only: no client certificate")
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| Status::unauthenticated(format!("unreadable client certificate: {e}")))?;
    let server_auth = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| eku.value.server_auth);
    if !server_auth {
        return Err(Status::permission_denied(
            "the agent accepts API servers only: the client certificate is not a server certificate",
        ));
    }
    Ok(req)
}

type Key = (String, String, String, String);

#[derive(Clone)]
struct AgentService {
    shared: Arc<Shared>,
    sampler: Arc<stats::Sampler<Key>>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

const CHUNK: usize = 32 * 1024;

impl AgentService {
    fn pod(&self, pod: Option<&pb::PodRef>) -> Result<(String, pods::PodEntry), Status> {
        let pod = pod.ok_or_else(|| Status::invalid_argument("the request names no pod"))?;
        let entry = self
            .shared
            .pods
            .get(&pod.namespace, &pod.name, &pod.uid)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "pod \"{}\" in namespace \"{}\" is not running on node {}",
                    pod.name, pod.namespace, self.shared.node_name
                ))
            })?;
        Ok((pod.name.clone(), entry))
    }
}

fn container_status(e: pods::ContainerError) -> Status {
    match e {
        pods::ContainerError::Ambiguous { .. } => Status::invalid_argument(e.to_string()),
        pods::ContainerError::NotFound { .. } => Status::not_found(e.to_string()),
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    type LogsStream = BoxStream<pb::LogChunk>;
    type ExecStream = BoxStream<pb::ExecOutput>;
    type PortForwardStream = BoxStream<pb::PortForwardFrame>;

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let r = req.into_inner();
        let (pod_name, pod) = self.pod(r.pod.as_ref())?;
        let container = pod
            .container(&pod_name, &r.container)
            .map_err(container_status)?
            .clone();
        let path = pod.log_path(&container.name, r.previous);
        if !path.exists() {
            return Err(Status::failed_precondition(if r.previous {
                format!(
                    "previous terminated container \"{}\" in pod \"{pod_name}\" not found",
                    container.name
                )
            } else {
                format!(
                    "container \"{}\" in pod \"{pod_name}\" is waiting to start",
                    container.name
                )
            }));
        }
        let tail = match r.tail_lines {
            Some(n) if n < 0 => {
                return Err(Status::invalid_argument(format!(
                    "tail_lines must not be negative, got {n}"
                )))
            }
            other => other.map(|n| n as u64),
        };
        let since = match (r.since_seconds, r.since_time.as_str()) {
            (Some(_), t) if !t.is_empty() => {
                return Err(Status::invalid_argument(
                    "at most one of since_seconds and since_time may be given",
                ))
            }
            (Some(n), _) if n <= 0 => {
                return Err(Status::invalid_argument(format!(
                    "since_seconds must be positive, got {n}"
                )))
            }
            (Some(n), _) => Some(
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(n))
                    .unwrap_or(jiff::Timestamp::MIN),
            ),
            (None, "") => None,
            (None, t) => Some(t.parse::<jiff::Timestamp>().map_err(|e| {
                Status::invalid_argument(format!("since_time {t:?} is not an RFC 3339 time: {e}"))
            })?),
        };
        let view = crate::container_log::Renderer::new(since, r.timestamps);
        let follow = r.follow && !r.previous && container.running.is_some();
        let (tx, rx) = mpsc::channel(8);
        let shared = self.shared.clone();
        let key = r.pod.clone().unwrap_or_default();
        let instance = container.running.clone();
        tokio::spawn(async move {
            let ended = || {
                shared
                    .pods
                    .get(&key.namespace, &key.name, &pod.uid)
                    .and_then(|p| p.containers.into_iter().find(|c| c.name == container.name))
                    .and_then(|c| c.running)
                    != instance
            };
            if let Err(e) = logs::stream(&path, tail, follow, view, ended, tx).await {
                tracing::debug!(log = %path.display(), error = %e, "cannot stream a container log");
            }
        });
        let stream = ReceiverStream::new(rx).map(|data| Ok(pb::LogChunk { data }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let start = match input.next().await {
            Some(Ok(pb::ExecInput {
                input: Some(pb::exec_input::Input::Start(start)),
            })) => start,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "an exec stream must start with ExecStart",
                ))
            }
        };
        let (pod_name, pod) = self.pod(start.pod.as_ref())?;
        let container = pod
            .container(&pod_name, &start.container)
            .map_err(container_status)?;
        let id = container.running.clone().ok_or_else(|| {
            Status::failed_precondition(format!(
                "container {} in pod {pod_name} is not running",
                container.name
            ))
        })?;
        if start.command.is_empty() {
            return Err(Status::invalid_argument("exec needs a command"));
        }
        let session = self
            .shared
            .runtime
            .exec_stream(&id, &start.command, start.stdin)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(run_exec(session, input, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn port_forward(
        &self,
        req: Request<Streaming<pb::PortForwardFrame>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        let mut input = req.into_inner();
        let start = match input.next().await {
            Some(Ok(pb::PortForwardFrame {
                start: Some(start), ..
            })) => start,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "a port-forward stream must start with PortForwardStart",
                ))
            }
        };
        let (pod_name, pod) = self.pod(start.pod.as_ref())?;
        let port = u16::try_from(start.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                Status::invalid_argument(format!("port {} is not a TCP port", start.port))
            })?;
        if pod.ip.is_empty() {
            return Err(Status::failed_precondition(format!(
                "pod {pod_name} has no address"
            )));
        }
        let tcp = tokio::net::TcpStream::connect((pod.ip.as_str(), port))
            .await
            .map_err(|e| {
                Status::failed_precondition(format!(
                    "cannot connect to port {port} of pod {pod_name} ({}): {e}",
                    pod.ip
                ))
            })?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(run_port_forward(tcp, input, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn stats(
        &self,
        _req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let all = self.shared.pods.all();
        let targets = all
            .iter()
            .flat_map(|((ns, name), pod)| {
                pod.containers.iter().filter_map(move |c| {
                    Some(stats::Target {
                        key: (ns.clone(), name.clone(), pod.uid.clone(), c.name.clone()),
                        pid: c.pid.filter(|_| c.running.is_some())?,
                    })
                })
            })
            .collect();
        let m = self
            .sampler
            .measure(targets)
            .await
            .map_err(|e| Status::internal(format!("cannot read /proc: {e}")))?;
        let usage = |u: &stats::Usage| pb::Usage {
            cpu_usage_core_nanoseconds: u.cpu_ns,
            cpu_usage_nano_cores: u.nano_cores,
            memory_working_set_bytes: u.memory_bytes,
        };
        let mut pods: Vec<pb::PodStats> = Vec::new();
        for ((ns, name, uid, container), u) in &m.containers {
            let same = |p: &pb::PodStats| {
                p.pod
                    .as_ref()
                    .is_some_and(|r| &r.namespace == ns && &r.name == name && &r.uid == uid)
            };
            if !pods.last().is_some_and(same) {
                pods.push(pb::PodStats {
                    pod: Some(pb::PodRef {
                        namespace: ns.clone(),
                        name: name.clone(),
                        uid: uid.clone(),
                    }),
                    containers: Vec::new(),
                });
            }
            if let Some(p) = pods.last_mut() {
                p.containers.push(pb::ContainerStats {
                    name: container.clone(),
                    usage: Some(usage(u)),
                });
            }
        }
        Ok(Response::new(pb::StatsResponse {
            node_name: self.shared.node_name.clone(),
            timestamp: m.timestamp.to_string(),
            window_nanos: m.window.as_nanos() as u64,
            node: Some(usage(&m.node)),
            pods,
        }))
    }
}

/// Pump an exec session: stdin from the caller, stdout/stderr to it, then the exit code. The
/// session (and with it the command) is dropped when the caller goes away.
async fn run_exec(
    session: crate::runtime::ExecSession,
    mut input: Streaming<pb::ExecInput>,
    tx: mpsc::Sender<Result<pb::ExecOutput, Status>>,
) {
    let crate::runtime::ExecSession {
        stdin,
        stdout,
        stderr,
        exit,
    } = session;
    let stdin_task = tokio::spawn(async move {
        let Some(mut stdin) = stdin else { return };
        while let Some(Ok(msg)) = input.next().await {
            let more = match msg.input {
                Some(pb::exec_input::Input::Stdin(data)) => stdin.write_all(&data).await.is_ok(),
                Some(pb::exec_input::Input::CloseStdin(true)) => false,
                _ => true,
            };
            if !more {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    let wrap_out = |data: Vec<u8>| pb::exec_output::Output::Stdout(data);
    let wrap_err = |data: Vec<u8>| pb::exec_output::Output::Stderr(data);
    let run = async {
        futures::join!(
            pump(stdout, tx.clone(), wrap_out),
            pump(stderr, tx.clone(), wrap_err)
        );
        exit.await
    };
    tokio::select! {
        code = run => {
            let msg = match code {
                Ok(code) => Ok(pb::ExecOutput { output: Some(pb::exec_output::Output::ExitCode(code)) }),
                Err(e) => Err(Status::internal(e.to_string())),
            };
            let _ = tx.send(msg).await;
        }
        _ = tx.closed() => {}
    }
    stdin_task.abort();
}

async fn pump(
    mut from: Pin<Box<dyn AsyncRead + Send>>,
    tx: mpsc::Sender<Result<pb::ExecOutput, Status>>,
    wrap: impl Fn(Vec<u8>) -> pb::exec_output::Output,
) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        let msg = pb::ExecOutput {
            output: Some(wrap(buf[..n].to_vec())),
        };
        if tx.send(Ok(msg)).await.is_err() {
            return;
        }
    }
}

/// Copy one forwarded connection both ways; the caller ending its stream closes our write
/// side, the pod closing its side ends the answer.
async fn run_port_forward(
    tcp: tokio::net::TcpStream,
    mut input: Streaming<pb::PortForwardFrame>,
    tx: mpsc::Sender<Result<pb::PortForwardFrame, Status>>,
) {
    let (mut read, mut write) = tcp.into_split();
    let upstream = tokio::spawn(async move {
        while let Some(Ok(frame)) = input.next().await {
            if write.write_all(&frame.data).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            n = read.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = pb::PortForwardFrame { start: None, data: buf[..n].to_vec() };
                    if tx.send(Ok(frame)).await.is_err() {
                        break;
                    }
                }
            },
            _ = tx.closed() => break,
        }
    }
    upstream.abort();
}
