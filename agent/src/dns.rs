//! The cluster DNS responder: answers `<svc>.<ns>.svc.cluster.local` and the other names of
//! Kubernetes' DNS specification for Services ([`answer`]) over UDP and TCP on
//! [`crate::AgentOptions::cluster_dns`] (default `10.96.0.10:53`, the conventional kube-dns
//! address, bindable because the agent makes the service range local, see
//! [`crate::service_cidr`]). Both sockets set `SO_REUSEADDR` and `SO_REUSEPORT` so every agent
//! sharing a host can bind the address; each answers from its own (identical) view.
//!
//! It is authoritative for the cluster domain only: other names are REFUSED, not forwarded.
//! Pods on the process runtime share the host's `/etc/resolv.conf`, so they query this
//! address explicitly (`dig @10.96.0.10 kubia.default.svc.cluster.local`).
//!
//! UDP answers larger than the client's payload size (512 bytes, or its EDNS size) are sent
//! truncated so the client retries over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::services::ServiceView;

pub mod answer;

/// Kubernetes' default cluster domain.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// The conventional kube-dns address in the default service range.
pub const DEFAULT_ADDRESS: &str = "10.96.0.10:53";
/// How long a listener waits before binding again after a failure.
const BIND_RETRY: Duration = Duration::from_secs(3);
/// How long a TCP client may take to send a query.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Bind the UDP socket and TCP listener on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`
/// (port 0: the TCP listener's port for both).
pub fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let tcp = crate::proxy::bind_tcp(addr, crate::proxy::Binding::Shared)?;
    let addr = tcp.local_addr()?;
    let udp = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    udp.set_reuse_address(true)?;
    udp.set_reuse_port(true)?;
    udp.set_nonblocking(true)?;
    udp.bind(&addr.into())?;
    Ok((UdpSocket::from_std(udp.into())?, tcp))
}

/// Serve on `addr` forever (the agent aborts it on shutdown), binding again every few
/// seconds while that fails.
pub async fn run(addr: SocketAddr, view: ServiceView, domain: Name) {
    let mut failures = 0u32;
    let (udp, tcp) = loop {
        match bind(addr) {
            Ok(sockets) => break sockets,
            Err(e) => {
                if failures.is_multiple_of(20) {
                    tracing::warn!(%addr, error = %e, "cannot listen for cluster DNS; retrying");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(BIND_RETRY).await;
            }
        }
    };
    tracing::info!(%addr, %domain, "cluster DNS responder listening");
    serve(udp, tcp, view, domain).await
}

/// Answer every query arriving on `udp` and `tcp`.
pub async fn serve(udp: UdpSocket, tcp: TcpListener, view: ServiceView, domain: Name) {
    let tcp_task = {
        let view = view.clone();
        let domain = domain.clone();
        tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((conn, _)) => {
                        tokio::spawn(serve_tcp(conn, view.clone(), domain.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster DNS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _tcp_task = AbortOnDrop(tcp_task);
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = match udp.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "cluster DNS receive failed");
                continue;
            }
        };
        let Some((request, response)) = handle(&buf[..len], &view, &domain) else {
            continue;
        };
        let mut bytes = encode(&response);
        if bytes.len() > usize::from(request.max_payload()) {
            bytes = encode(&response.truncate());
        }
        if let Err(e) = udp.send_to(&bytes, peer).await {
            tracing::debug!(%peer, error = %e, "cluster DNS reply failed");
        }
    }
}

/// Queries over one TCP connection: each message framed by a two-byte length.
async fn serve_tcp(mut conn: TcpStream, view: ServiceView, domain: Name) {
    loop {
        let read = async {
            let len = conn.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            conn.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let Ok(Ok(buf)) = tokio::time::timeout(TCP_IDLE, read).await else {
            return;
        };
        let Some((_, response)) = handle(&buf, &view, &domain) else {
            return;
        };
        let bytes = encode(&response);
        let Ok(len) = u16::try_from(bytes.len()) else {
            return;
        };
        if conn.write_u16(len).await.is_err() || conn.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Decode a query and answer it; `None` for what is not a DNS message (dropped, as servers do).
fn handle(bytes: &[u8], view: &ServiceView, domain: &Name) -> Option<(Message, Message)> {
    let request = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "dropping a malformed DNS message");
            return None;
        }
    };
    let snapshot = view.borrow().clone();
    let response = answer::respond(&request, &snapshot, domain);
    Some((request, response))
}

fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot encode a DNS answer");
        let mut failure = Message::error_msg(
            message.metadata.id,
            message.metadata.op_code,
            hickory_proto::op::ResponseCode::ServFail,
        );
        failure.add_queries(message.queries.iter().cloned());
        failure.to_vec().unwrap_or_default()
    })
}

#[cfg(test)]
mod tests;
