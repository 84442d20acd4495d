//! The control plane's members as API clients see them: Raft membership from the store plus
//! each server's API address, which every server records under `/rkube/members/<id>` at start.

use std::time::Duration;

use rkube_proto::api;
use rkube_proto::store as pb;
use rkube_store::encoding::prefix_end;
use rkube_store::Store;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const MEMBER_PREFIX: &str = "/rkube/members/";

/// What a server records about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberRecord {
    pub api_addr: String,
}

/// Record this server's API address (idempotent; done at every start).
pub async fn register(store: &Store, api_addr: &str) -> Result<()> {
    let value = serde_json::to_vec(&MemberRecord {
        api_addr: api_addr.to_string(),
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    let key = format!("{MEMBER_PREFIX}{}", store.id()).into_bytes();
    let current = store
        .range(pb::RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await?;
    if current.kvs.first().is_some_and(|kv| kv.value == value) {
        return Ok(());
    }
    store
        .put(pb::PutRequest {
            key,
            value,
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn api_addrs(store: &Store) -> Result<std::collections::HashMap<u64, String>> {
    let resp = store
        .range(pb::RangeRequest {
            key: MEMBER_PREFIX.as_bytes().to_vec(),
            range_end: prefix_end(MEMBER_PREFIX.as_bytes()),
            serializable: true,
            ..Default::default()
        })
        .await?;
    Ok(resp
        .kvs
        .iter()
        .filter_map(|kv| {
            let id = std::str::from_utf8(&kv.key[MEMBER_PREFIX.len()..])
                .ok()?
                .parse()
                .ok()?;
            let rec: MemberRecord = serde_json::from_slice(&kv.value).ok()?;
            Some((id, rec.api_addr))
        })
        .collect())
}

pub async fn members(store: &Store) -> Result<api::MembersResponse> {
    let (raft_members, leader) = store.members();
    let addrs = api_addrs(store).await?;
    let leader = leader.unwrap_or(0);
    Ok(api::MembersResponse {
        cluster_id: store.config().cluster_id,
        leader_id: leader,
        member_id: store.id(),
        raft_term: store.current_term(),
        members: raft_members
            .into_iter()
            .map(|m| api::ClusterMember {
                id: m.id,
                api_addr: addrs.get(&m.id).cloned().unwrap_or_default(),
                peer_addr: m.addr,
                voter: m.voter,
                leader: m.id == leader,
                ..Default::default()
            })
            .collect(),
    })
}

/// Ask every member for its status over the peer transport.
pub async fn health(store: &Store) -> Result<api::HealthResponse> {
    let base = members(store).await?;
    let mut out = Vec::new();
    for mut m in base.members {
        let status = async {
            let channel = store.pool().channel(&m.peer_addr).map_err(Error::from)?;
            let mut client = pb::cluster_client::ClusterClient::new(channel);
            let mut req = tonic::Request::new(pb::StatusRequestOptions {
                content_hash: false,
            });
            req.set_timeout(Duration::from_secs(2));
            client
                .status(req)
                .await
                .map_err(|s| Error::Unavailable(s.message().to_string()))
        };
        match tokio::time::timeout(Duration::from_secs(3), status).await {
            Ok(Ok(st)) => {
                let st = st.into_inner();
                m.healthy = true;
                m.applied_revision = st.header.map_or(0, |h| h.revision);
                m.raft_state = st.raft_state;
            }
            Ok(Err(e)) => m.error = e.to_string(),
            Err(_) => m.error = "no answer within 3s".into(),
        }
        out.push(m);
    }
    Ok(api::HealthResponse {
        cluster_id: base.cluster_id,
        leader_id: base.leader_id,
        members: out,
    })
}
