//! The gRPC services a replica serves on its peer address (KV, Watch, Cluster, Raft), with the
//! client-certificate check that guards all but the join flow.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use rkube_proto::store as pb;
use rkube_proto::store::cluster_server::{Cluster, ClusterServer};
use rkube_proto::store::kv_server::{Kv, KvServer};
use rkube_proto::store::raft_server::{Raft as RaftRpc, RaftServer};
use rkube_proto::store::watch_server::{Watch, WatchServer};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::mvcc::MAX_VALUE_BYTES;
use crate::network::MAX_PEER_MESSAGE_BYTES;
use crate::node::{Forwarded, Store};
use crate::tls::{CaBundle, JoinToken};

/// Largest client request accepted on the KV service (a maximal value plus room for the key).
pub const MAX_KV_MESSAGE_BYTES: usize = MAX_VALUE_BYTES + (64 << 10);

/// Everything the services need: the replica and the cluster's PKI (for joins).
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub ca: CaBundle,
    pub token: JoinToken,
}

/// Refuse callers without a client certificate issued by the cluster CA. (The TLS layer has
/// already verified any certificate presented; it only makes presenting one optional.)
#[allow(clippy::result_large_err)]
fn authenticated<T>(req: &Request<T>) -> Result<(), Status> {
    match req.peer_certs() {
        Some(certs) if !certs.is_empty() => Ok(()),
        _ => Err(Status::unauthenticated(
            "a client certificate issued by the cluster CA is required",
        )),
    }
}

impl Services {
    /// The tonic routes of every store service.
    pub fn routes(self) -> tonic::service::Routes {
        let kv = KvServer::new(self.clone()).max_decoding_message_size(MAX_KV_MESSAGE_BYTES);
        let watch = WatchServer::new(self.clone());
        let cluster = ClusterServer::new(self.clone());
        let raft = RaftServer::new(self)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        tonic::service::Routes::new(kv)
            .add_service(watch)
            .add_service(cluster)
            .add_service(raft)
    }
}

#[tonic::async_trait]
impl Kv for Services {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        authenticated(&req)?;
        Ok(Response::new(self.store.range(req.into_inner()).await?))
    }
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        authenticated(&req)?;
        Ok(Response::new(self.store.put(req.into_inner()).await?))
    }
    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        authenticated(&req)?;
        Ok(Response::new(
            self.store.delete_range(req.into_inner()).await?,
        ))
    }
    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        authenticated(&req)?;
        Ok(Response::new(self.store.txn(req.into_inner()).await?))
    }
    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        authenticated(&req)?;
        Ok(Response::new(
            self.store.compact(req.into_inner().revision).await?,
        ))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for Services {
    type WatchStream = WatchStream;
    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        authenticated(&req)?;
        let stream = self
            .store
            .watch(req.into_inner())
            .map(|r| r.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl Cluster for Services {
    async fn members(
        &self,
        req: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        authenticated(&req)?;
        let (members, leader) = self.store.members();
        Ok(Response::new(pb::MembersResponse {
            header: Some(self.store.header(self.store.applied_revision())),
            members,
            leader_id: leader.unwrap_or(0),
        }))
    }
    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        authenticated(&req)?;
        let r = req.into_inner();
        if r.id == 0 || r.addr.is_empty() {
            return Err(Error::Invalid("add_member needs a non-zero id and an addr".into()).into());
        }
        let members = self.store.add_member(r.id, r.addr, r.learner_only).await?;
        Ok(Response::new(pb::AddMemberResponse {
            header: Some(self.store.header(self.store.applied_revision())),
            members,
        }))
    }
    async fn promote_member(
        &self,
        req: Request<pb::PromoteMemberRequest>,
    ) -> Result<Response<pb::MemberChangeResponse>, Status> {
        authenticated(&req)?;
        let members = self.store.promote_member(req.into_inner().id).await?;
        Ok(Response::new(pb::MemberChangeResponse {
            header: Some(self.store.header(self.store.applied_revision())),
            members,
        }))
    }
    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MemberChangeResponse>, Status> {
        authenticated(&req)?;
        let members = self.store.remove_member(req.into_inner().id).await?;
        Ok(Response::new(pb::MemberChangeResponse {
            header: Some(self.store.header(self.store.applied_revision())),
            members,
        }))
    }
    async fn status(
        &self,
        req: Request<pb::StatusRequestOptions>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        authenticated(&req)?;
        Ok(Response::new(
            self.store.status(req.into_inner().content_hash).await?,
        ))
    }
    async fn get_ca(
        &self,
        _req: Request<pb::GetCaRequest>,
    ) -> Result<Response<pb::GetCaResponse>, Status> {
        Ok(Response::new(pb::GetCaResponse {
            ca_pem: self.ca.cert_pem.clone(),
        }))
    }
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let r = req.into_inner();
        if !self.token.secret_matches(&r.token_secret) {
            tracing::warn!(node = r.id, addr = %r.addr, "refused a join with a wrong token");
            return Err(Status::permission_denied(
                "the join token is not valid for this cluster",
            ));
        }
        if r.id == 0 || r.addr.is_empty() {
            return Err(
                Error::Invalid("join needs a non-zero id and the joiner's addr".into()).into(),
            );
        }
        if self.store.members().0.iter().any(|m| m.id == r.id) {
            return Err(Status::already_exists(format!(
                "node id {} is already a member; remove it first (rkube cluster remove {}) or choose another id",
                r.id, r.id
            )));
        }
        let mut sans = r.sans.clone();
        sans.push(r.addr.clone());
        let cert = self
            .ca
            .issue_server(r.id, &sans)
            .map_err(|e| Status::internal(format!("cannot issue a certificate: {e}")))?;
        tracing::info!(node = r.id, addr = %r.addr, "issued certificate to joining server");
        Ok(Response::new(pb::JoinResponse {
            cluster_id: self.store.config().cluster_id,
            ca_pem: self.ca.cert_pem.clone(),
            ca_key_pem: self.ca.key_pem.clone(),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            members: self.store.members().0,
        }))
    }
}

fn decode_payload<T: serde::de::DeserializeOwned>(
    req: Request<pb::RaftPayload>,
) -> Result<T, Status> {
    authenticated(&req)?;
    postcard::from_bytes(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

fn encode_payload<T: serde::Serialize>(v: &T) -> Result<Response<pb::RaftPayload>, Status> {
    let data = postcard::to_stdvec(v)
        .map_err(|e| Status::internal(format!("cannot encode raft payload: {e}")))?;
    Ok(Response::new(pb::RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftRpc for Services {
    async fn append_entries(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc = decode_payload(req)?;
        encode_payload(&self.store.raft().append_entries(rpc).await)
    }
    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc = decode_payload(req)?;
        encode_payload(&self.store.raft().vote(rpc).await)
    }
    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc = decode_payload(req)?;
        encode_payload(&self.store.raft().install_snapshot(rpc).await)
    }
    async fn forward(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let fwd: Forwarded = decode_payload(req)?;
        encode_payload(&self.store.handle_forwarded(fwd).await)
    }
    async fn read_index(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        authenticated(&req)?;
        encode_payload(&self.store.read_index().await)
    }
}
