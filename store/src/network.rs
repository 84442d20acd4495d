//! The Raft peer transport: openraft's `RaftNetwork` over tonic gRPC with mutual TLS, a pool of
//! peer channels (also used to forward writes and read-index requests to the leader), and a
//! fault-injection switch that tests use to partition replicas.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rkube_proto::store as pb;
use rkube_proto::store::raft_client::RaftClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::{Error, Result};
use crate::types::{Node, NodeId, TypeConfig};

/// Largest message exchanged between peers (log batches, snapshot chunks).
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;

/// Links this replica refuses to use, to simulate partitions and one-way drops in tests.
#[derive(Default, Debug)]
pub struct Faults {
    blocked: RwLock<HashSet<NodeId>>,
}

impl Faults {
    /// Drop everything this replica sends to `peer` (requests fail as unreachable).
    pub fn block(&self, peer: NodeId) {
        self.blocked.write().expect("faults lock").insert(peer);
    }
    pub fn unblock(&self, peer: NodeId) {
        self.blocked.write().expect("faults lock").remove(&peer);
    }
    pub fn heal(&self) {
        self.blocked.write().expect("faults lock").clear();
    }
    /// Block exactly `peers` (and unblock every other link) in one step.
    pub fn set_blocked(&self, peers: HashSet<NodeId>) {
        *self.blocked.write().expect("faults lock") = peers;
    }
    /// The links blocked now.
    pub fn blocked(&self) -> HashSet<NodeId> {
        self.blocked.read().expect("faults lock").clone()
    }
    pub fn is_blocked(&self, peer: NodeId) -> bool {
        self.blocked.read().expect("faults lock").contains(&peer)
    }
}

/// Channels to peers by address, shared by Raft replication and leader forwarding.
#[derive(Clone)]
pub struct PeerPool {
    tls: ClientTlsConfig,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    pub faults: Arc<Faults>,
}

impl PeerPool {
    pub fn new(tls: ClientTlsConfig) -> PeerPool {
        PeerPool {
            tls,
            channels: Default::default(),
            faults: Default::default(),
        }
    }

    /// A lazily connected channel to `addr` ("host:port").
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let mut map = self.channels.lock().expect("peer pool lock");
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ch = endpoint(addr, &self.tls)?.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A Raft-service client for the peer `id` at `addr`, refusing blocked links.
    pub fn raft_client(&self, id: NodeId, addr: &str) -> Result<RaftClient<Channel>> {
        if self.faults.is_blocked(id) {
            return Err(Error::Unavailable(format!(
                "link to node {id} is blocked (fault injection)"
            )));
        }
        Ok(RaftClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
    }
}

/// A TLS endpoint for `addr` with connection and keepalive settings suited to peers.
pub fn endpoint(addr: &str, tls: &ClientTlsConfig) -> Result<Endpoint> {
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| Error::Invalid(format!("bad peer address {addr:?}: {e}")))?
        .tls_config(tls.clone())
        .map_err(|e| Error::Invalid(format!("bad TLS configuration for {addr}: {e}")))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true)
        })
}

/// Creates one `PeerClient` per target for openraft.
pub struct NetworkFactory {
    pub pool: PeerPool,
    /// This replica's id (reported in timeouts).
    pub id: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            id: self.id,
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
        }
    }
}

pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    addr: String,
    pool: PeerPool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        which: &'static str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let unreachable = |e: String| RPCError::Unreachable(Unreachable::new(&TransportError(e)));
        let mut client = self
            .pool
            .raft_client(self.target, &self.addr)
            .map_err(|e| unreachable(e.to_string()))?;
        let payload = pb::RaftPayload {
            data: postcard::to_stdvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?,
        };
        let mut request = tonic::Request::new(payload);
        request.set_timeout(ttl);
        let resp = match which {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let action = match which {
            "append" => RPCTypes::AppendEntries,
            "vote" => RPCTypes::Vote,
            _ => RPCTypes::InstallSnapshot,
        };
        let resp = resp.map_err(|s| match s.code() {
            // A slow answer is not a dead peer: openraft retries a timeout at once, while an
            // unreachable peer is backed off for half a second (stalling commits).
            tonic::Code::DeadlineExceeded => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: ttl,
            }),
            tonic::Code::Unavailable => unreachable(format!(
                "{which} to node {} at {}: {}",
                self.target,
                self.addr,
                s.message()
            )),
            _ => RPCError::Network(NetworkError::new(&TransportError(format!(
                "{which} to node {}: {s}",
                self.target
            )))),
        })?;
        let decoded: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&resp.into_inner().data)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
