//! A store replica: the Raft node with its storage, the write path (batching on the leader,
//! forwarding from followers), linearizable and serializable reads, watch, and membership.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use rkube_proto::store as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::log_store::LogStore;
use crate::mvcc;
use crate::network::{NetworkFactory, PeerPool};
use crate::state_machine::StateMachine;
use crate::types::{Command, NodeId, Op, OpResult, Raft};
use crate::watch::{self, WatchHub};

/// Tunables of a replica. `Default` suits a LAN or loopback cluster.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub node_id: NodeId,
    pub cluster_id: u64,
    /// The address peers and clients dial to reach this replica (host:port).
    pub advertise_addr: String,
    pub data_dir: PathBuf,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_logs: u64,
    /// Log entries kept after a snapshot, for followers slightly behind.
    pub logs_kept_after_snapshot: u64,
    /// How long a write or read waits for a leader before failing as unavailable.
    pub request_timeout: Duration,
    /// Free space kept on the data directory's file system: below it the replica stops instead
    /// of risking writes it cannot persist.
    pub disk_reserve_bytes: u64,
}

impl StoreConfig {
    pub fn new(
        node_id: NodeId,
        cluster_id: u64,
        advertise_addr: String,
        data_dir: PathBuf,
    ) -> StoreConfig {
        StoreConfig {
            node_id,
            cluster_id,
            advertise_addr,
            data_dir,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_after_logs: 20_000,
            logs_kept_after_snapshot: 2_000,
            request_timeout: Duration::from_secs(10),
            disk_reserve_bytes: 128 << 20,
        }
    }
}

/// What a follower asks the leader to do on its behalf.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Forwarded {
    Write(Vec<Op>),
    AddMember {
        id: NodeId,
        addr: String,
        learner_only: bool,
    },
    Promote(NodeId),
    Remove(NodeId),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ForwardedReply {
    Write(Vec<Result<OpResult>>),
    Members(Vec<pb::Member>),
}

struct Proposal {
    op: Op,
    reply: oneshot::Sender<Result<OpResult>>,
}

/// Most ops the leader packs into one log entry.
const MAX_BATCH_OPS: usize = 512;
/// Most value bytes the leader packs into one log entry.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// A replica of the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    raft: Raft,
    db: Db,
    hub: WatchHub,
    pool: PeerPool,
    proposals: mpsc::Sender<Proposal>,
}

impl Store {
    /// Open the replica's storage under `config.data_dir` and start its Raft node (not yet part of
    /// any cluster unless its storage says so: see `initialize` and `add_member`).
    pub async fn open(config: StoreConfig, pool: PeerPool) -> Result<Store> {
        let db =
            Db::open(&config.data_dir.join("db"))?.with_disk_reserve(config.disk_reserve_bytes);
        let sm = StateMachine::open(db.clone(), config.data_dir.join("snapshots"))?;
        let hub = sm.hub();
        let raft_config = openraft::Config {
            cluster_name: format!("rkube-{:016x}", config.cluster_id),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout_min.as_millis() as u64,
            election_timeout_max: config.election_timeout_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_after_logs),
            max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
            max_payload_entries: 256,
            snapshot_max_chunk_size: 2 << 20,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Invalid(format!("raft configuration: {e}")))?;
        let network = NetworkFactory {
            pool: pool.clone(),
            id: config.node_id,
        };
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            LogStore::new(db.clone()),
            sm,
        )
        .await
        .map_err(|e| Error::Storage(format!("cannot start raft: {e}")))?;
        let (tx, rx) = mpsc::channel(4096);
        let store = Store {
            inner: Arc::new(Inner {
                config,
                raft: raft.clone(),
                db,
                hub,
                pool,
                proposals: tx,
            }),
        };
        tokio::spawn(run_batcher(raft, rx));
        Ok(store)
    }

    pub fn id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// Whether this replica is the Raft leader right now (as far as it knows).
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.id())
    }

    /// The current leader's id, if one is known.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// The Raft term this replica is in.
    pub fn current_term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    pub fn pool(&self) -> &PeerPool {
        &self.inner.pool
    }

    /// The raft handle, for the peer service and for tests' introspection.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Whether this replica's storage already belongs to a cluster.
    pub async fn is_initialized(&self) -> Result<bool> {
        self.inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::Stopped(e.to_string()))
    }

    /// Make this replica a single-member cluster (first start of the first server).
    pub async fn initialize(&self) -> Result<()> {
        let mut members = BTreeMap::new();
        members.insert(
            self.id(),
            BasicNode {
                addr: self.inner.config.advertise_addr.clone(),
            },
        );
        self.inner
            .raft
            .initialize(members)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot initialize the cluster: {e}")))
    }

    /// Build a snapshot of everything applied and purge the log it covers, so servers that join
    /// later receive the state as a snapshot rather than by replaying the log (used after a
    /// restore, whose data is in no log entry). Waits until this replica leads its new cluster.
    pub async fn snapshot_and_purge_log(&self) -> Result<()> {
        let raft = &self.inner.raft;
        let id = self.id();
        let timeout = Some(std::time::Duration::from_secs(60));
        let wait_err = |e: openraft::metrics::WaitError| Error::Unavailable(format!("{e}"));
        let m = raft
            .wait(timeout)
            .metrics(
                |m| {
                    m.current_leader == Some(id)
                        && m.last_applied.is_some()
                        && m.last_applied.map(|l| l.index) == m.last_log_index
                },
                "leading with the whole log applied",
            )
            .await
            .map_err(wait_err)?;
        let applied = m.last_applied.map_or(0, |l| l.index);
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Stopped(e.to_string()))?;
        raft.wait(timeout)
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "snapshot built",
            )
            .await
            .map_err(wait_err)?;
        raft.trigger()
            .purge_log(applied)
            .await
            .map_err(|e| Error::Stopped(e.to_string()))?;
        raft.wait(timeout)
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= applied),
                "log purged",
            )
            .await
            .map_err(wait_err)?;
        Ok(())
    }

    /// The header for responses from this replica.
    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.inner.config.cluster_id,
            member_id: self.id(),
            revision,
            raft_term: self.inner.raft.metrics().borrow().current_term,
        }
    }

    fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// Whether this replica is cut off from the cluster right now: a leader that no quorum has
    /// acknowledged for more than twice the longest election timeout (openraft does not make
    /// such a leader step down: it keeps believing it leads while a partition lasts), or a
    /// replica that knows no leader. A watch served here is then ended, so that its client
    /// resumes it on a replica that still receives the cluster's writes (etcd's
    /// `WithRequireLeader`).
    pub fn cut_off(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        match m.state {
            ServerState::Leader => {
                let limit = 2 * self.inner.config.election_timeout_max.as_millis() as u64;
                m.millis_since_quorum_ack.is_some_and(|ms| ms > limit)
            }
            ServerState::Shutdown => true,
            _ => m.current_leader.is_none(),
        }
    }

    /// Wait (bounded by the request timeout) until some leader is known.
    async fn wait_leader(&self) -> Result<(NodeId, String)> {
        let deadline = tokio::time::Instant::now() + self.inner.config.request_timeout;
        let mut metrics = self.inner.raft.metrics();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if metrics.borrow().state == ServerState::Shutdown {
                return Err(Error::Stopped("raft has stopped".into()));
            }
            if tokio::time::timeout_at(deadline, metrics.changed())
                .await
                .is_err()
            {
                return Err(Error::Unavailable(format!(
                    "no leader known to node {} after {:?} (quorum lost?)",
                    self.id(),
                    self.inner.config.request_timeout
                )));
            }
        }
    }

    // ---- writes --------------------------------------------------------------------------

    /// Commit one write through Raft and return its result. Any replica accepts writes: a
    /// follower forwards them to the leader.
    pub async fn write(&self, op: Op) -> Result<OpResult> {
        mvcc::validate_op(&op)?;
        let mut results = self.write_many(vec![op]).await?;
        results
            .pop()
            .unwrap_or_else(|| Err(Error::Storage("empty write result".into())))
    }

    pub async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse> {
        match self.write(Op::Put(req)).await? {
            OpResult::Put(mut r) => {
                r.header = Some(self.fill_header(r.header));
                Ok(r)
            }
            other => Err(Error::Storage(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn delete_range(
        &self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse> {
        match self.write(Op::DeleteRange(req)).await? {
            OpResult::DeleteRange(mut r) => {
                r.header = Some(self.fill_header(r.header));
                Ok(r)
            }
            other => Err(Error::Storage(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse> {
        match self.write(Op::Txn(req)).await? {
            OpResult::Txn(mut r) => {
                r.header = Some(self.fill_header(r.header));
                Ok(r)
            }
            other => Err(Error::Storage(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn compact(&self, revision: i64) -> Result<pb::CompactionResponse> {
        match self.write(Op::Compact(revision)).await? {
            OpResult::Compact(mut r) => {
                r.header = Some(self.fill_header(r.header));
                Ok(r)
            }
            other => Err(Error::Storage(format!("unexpected result {other:?}"))),
        }
    }

    fn fill_header(&self, h: Option<pb::ResponseHeader>) -> pb::ResponseHeader {
        self.header(h.map_or(0, |h| h.revision))
    }

    /// Commit several writes (each its own revision, in order). Used by forwarding followers.
    pub(crate) async fn write_many(&self, ops: Vec<Op>) -> Result<Vec<Result<OpResult>>> {
        let timeout = self.inner.config.request_timeout;
        match tokio::time::timeout(timeout, self.write_many_inner(ops)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(format!(
                "write not committed within {timeout:?} (no quorum reachable from node {}?); its outcome is unknown",
                self.id()
            ))),
        }
    }

    async fn write_many_inner(&self, ops: Vec<Op>) -> Result<Vec<Result<OpResult>>> {
        let deadline = tokio::time::Instant::now() + self.inner.config.request_timeout;
        loop {
            let (leader, addr) = self.wait_leader().await?;
            if leader == self.id() {
                match self.propose_local(ops.clone()).await {
                    // Not appended anywhere: safe to retry with the new leader.
                    Err(NotLeader) if tokio::time::Instant::now() < deadline => {
                        self.wait_leader_change(leader, deadline).await;
                        continue;
                    }
                    Err(NotLeader) => {
                        return Err(Error::Unavailable("leadership kept changing; retry".into()))
                    }
                    Ok(r) => return r,
                }
            }
            match self
                .forward(leader, &addr, Forwarded::Write(ops.clone()))
                .await?
            {
                ForwardedReply::Write(r) => return Ok(r),
                ForwardedReply::Members(_) => {
                    return Err(Error::Storage("unexpected forward reply".into()))
                }
            }
        }
    }

    async fn wait_leader_change(&self, old: NodeId, deadline: tokio::time::Instant) {
        let mut metrics = self.inner.raft.metrics();
        let _ = tokio::time::timeout_at(
            deadline,
            metrics.wait_for(|m| {
                m.current_leader.is_some_and(|l| l != old) || m.current_leader.is_none()
            }),
        )
        .await;
    }

    /// Propose on this replica (it believes it is the leader), through the batcher.
    async fn propose_local(
        &self,
        ops: Vec<Op>,
    ) -> Result<Result<Vec<Result<OpResult>>>, NotLeader> {
        let mut waits = Vec::with_capacity(ops.len());
        for op in ops {
            let (tx, rx) = oneshot::channel();
            if self
                .inner
                .proposals
                .send(Proposal { op, reply: tx })
                .await
                .is_err()
            {
                return Ok(Err(Error::Stopped("proposal queue closed".into())));
            }
            waits.push(rx);
        }
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            match rx.await {
                Ok(Err(Error::Unavailable(m))) if m == NOT_LEADER => return Err(NotLeader),
                Ok(r) => out.push(r),
                Err(_) => out.push(Err(Error::Stopped("proposal dropped".into()))),
            }
        }
        Ok(Ok(out))
    }

    async fn forward(&self, leader: NodeId, addr: &str, req: Forwarded) -> Result<ForwardedReply> {
        let mut client = self.inner.pool.raft_client(leader, addr)?;
        let data = postcard::to_stdvec(&req)
            .map_err(|e| Error::Invalid(format!("cannot encode forwarded request: {e}")))?;
        let mut request = tonic::Request::new(pb::RaftPayload { data });
        request.set_timeout(self.inner.config.request_timeout);
        let resp = client.forward(request).await.map_err(|s| {
            Error::Unavailable(format!(
                "forwarding to leader {leader} at {addr} failed: {}",
                s.message()
            ))
        })?;
        let reply: Result<ForwardedReply> = postcard::from_bytes(&resp.into_inner().data)
            .map_err(|e| Error::Unavailable(format!("bad reply from leader {leader}: {e}")))?;
        reply
    }

    /// Serve a request forwarded by a follower (this replica should be the leader).
    pub(crate) async fn handle_forwarded(&self, req: Forwarded) -> Result<ForwardedReply> {
        match req {
            Forwarded::Write(ops) => {
                for op in &ops {
                    mvcc::validate_op(op)?;
                }
                match self.propose_local(ops).await {
                    Ok(r) => r.map(ForwardedReply::Write),
                    Err(NotLeader) => Err(Error::Unavailable(format!(
                        "node {} is no longer the leader; retry",
                        self.id()
                    ))),
                }
            }
            Forwarded::AddMember {
                id,
                addr,
                learner_only,
            } => self
                .add_member(id, addr, learner_only)
                .await
                .map(ForwardedReply::Members),
            Forwarded::Promote(id) => self.promote_member(id).await.map(ForwardedReply::Members),
            Forwarded::Remove(id) => self.remove_member(id).await.map(ForwardedReply::Members),
        }
    }

    // ---- reads ---------------------------------------------------------------------------

    /// Make the next read linearizable: learn the leader's commit index (read index) and wait
    /// until this replica has applied it.
    pub async fn linearize(&self) -> Result<()> {
        let timeout = self.inner.config.request_timeout;
        match tokio::time::timeout(timeout, self.linearize_inner()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(format!(
                "could not confirm a linearizable read within {timeout:?} (no quorum reachable from node {}?)",
                self.id()
            ))),
        }
    }

    async fn linearize_inner(&self) -> Result<()> {
        let (leader, addr) = self.wait_leader().await?;
        let index = if leader == self.id() {
            self.read_index().await?
        } else {
            let mut client = self.inner.pool.raft_client(leader, &addr)?;
            let mut request = tonic::Request::new(pb::RaftPayload { data: vec![] });
            request.set_timeout(self.inner.config.request_timeout);
            let resp = client.read_index(request).await.map_err(|s| {
                Error::Unavailable(format!(
                    "read index from leader {leader} at {addr} failed: {}",
                    s.message()
                ))
            })?;
            let r: Result<u64> = postcard::from_bytes(&resp.into_inner().data)
                .map_err(|e| Error::Unavailable(format!("bad read index reply: {e}")))?;
            r?
        };
        self.inner
            .raft
            .wait(Some(self.inner.config.request_timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| Error::Timeout(format!("waiting to apply the read index {index}: {e}")))?;
        Ok(())
    }

    /// On the leader: confirm leadership with a quorum and return the index reads must wait for.
    pub(crate) async fn read_index(&self) -> Result<u64> {
        let (read_log_id, _) = self
            .inner
            .raft
            .get_read_log_id()
            .await
            .map_err(|e| match e {
                RaftError::APIError(e) => Error::Unavailable(format!("not the leader: {e}")),
                RaftError::Fatal(e) => Error::Stopped(e.to_string()),
            })?;
        Ok(read_log_id.map_or(0, |l| l.index))
    }

    pub async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse> {
        if !req.serializable {
            self.linearize().await?;
        }
        if req.revision > self.inner.hub.revision() {
            // A revision this replica has not applied yet: wait for it, briefly.
            self.inner
                .hub
                .wait_for_revision(req.revision, Duration::from_secs(3))
                .await?;
        }
        let db = self.inner.db.clone();
        let mut resp = tokio::task::spawn_blocking(move || mvcc::range(&db, &req))
            .await
            .map_err(|e| Error::Storage(format!("range task failed: {e}")))??;
        resp.header = Some(self.fill_header(resp.header));
        Ok(resp)
    }

    /// Watch a key or range from a revision. The stream ends with an error if the revision was
    /// compacted, the replica stops, or it stays cut off from the cluster (see
    /// [`Store::cut_off`]); otherwise it runs until dropped.
    pub fn watch(&self, req: pb::WatchRequest) -> ReceiverStream<Result<pb::WatchResponse>> {
        let (tx, rx) = mpsc::channel(256);
        let me = self.clone();
        let health = self.clone();
        tokio::spawn(watch::run_watch(
            self.inner.db.clone(),
            self.inner.hub.clone(),
            req,
            move |rev| me.header(rev),
            move || health.cut_off(),
            tx,
        ));
        ReceiverStream::new(rx)
    }

    /// The revision this replica has applied.
    pub fn applied_revision(&self) -> i64 {
        self.inner.hub.revision()
    }

    // ---- membership ----------------------------------------------------------------------

    pub fn members(&self) -> (Vec<pb::Member>, Option<NodeId>) {
        let m = self.inner.raft.metrics().borrow().clone();
        (
            members_of(m.membership_config.membership()),
            m.current_leader,
        )
    }

    /// Add a replica: as a learner that catches up, then (unless `learner_only`) as a voter.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: String,
        learner_only: bool,
    ) -> Result<Vec<pb::Member>> {
        let (leader, laddr) = self.wait_leader().await?;
        if leader != self.id() {
            return self
                .forward_members(
                    leader,
                    &laddr,
                    Forwarded::AddMember {
                        id,
                        addr,
                        learner_only,
                    },
                )
                .await;
        }
        self.inner
            .raft
            .add_learner(id, BasicNode { addr: addr.clone() }, true)
            .await
            .map_err(membership_err)?;
        if !learner_only {
            self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                .await?;
        }
        tracing::info!(node = id, %addr, learner_only, "added member");
        Ok(self.members().0)
    }

    pub async fn promote_member(&self, id: NodeId) -> Result<Vec<pb::Member>> {
        let (leader, laddr) = self.wait_leader().await?;
        if leader != self.id() {
            return self
                .forward_members(leader, &laddr, Forwarded::Promote(id))
                .await;
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await?;
        Ok(self.members().0)
    }

    /// Remove a replica (voter or learner) from the cluster.
    pub async fn remove_member(&self, id: NodeId) -> Result<Vec<pb::Member>> {
        let (leader, laddr) = self.wait_leader().await?;
        if leader != self.id() {
            return self
                .forward_members(leader, &laddr, Forwarded::Remove(id))
                .await;
        }
        let membership = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&id).is_none() {
            return Err(Error::Invalid(format!("node {id} is not a member")));
        }
        if membership.voter_ids().any(|v| v == id) {
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                .await?;
        } else {
            self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                .await?;
        }
        tracing::info!(node = id, "removed member");
        Ok(self.members().0)
    }

    async fn change(&self, change: ChangeMembers<NodeId, BasicNode>) -> Result<()> {
        self.inner
            .raft
            .change_membership(change, false)
            .await
            .map_err(membership_err)?;
        Ok(())
    }

    async fn forward_members(
        &self,
        leader: NodeId,
        addr: &str,
        req: Forwarded,
    ) -> Result<Vec<pb::Member>> {
        match self.forward(leader, addr, req).await? {
            ForwardedReply::Members(m) => Ok(m),
            ForwardedReply::Write(_) => Err(Error::Storage("unexpected forward reply".into())),
        }
    }

    /// This replica's view of the cluster and its own progress.
    pub async fn status(&self, with_hash: bool) -> Result<pb::StatusResponse> {
        let m = self.inner.raft.metrics().borrow().clone();
        let revs = mvcc::read_revisions(&self.inner.db)?;
        let (content_hash, revision) = if with_hash {
            let db = self.inner.db.clone();
            tokio::task::spawn_blocking(move || mvcc::content_hash(&db))
                .await
                .map_err(|e| Error::Storage(format!("hash task failed: {e}")))??
        } else {
            (String::new(), revs.current)
        };
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        Ok(pb::StatusResponse {
            header: Some(self.header(revision)),
            leader_id: m.current_leader.unwrap_or(0),
            raft_state: state.to_string(),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            compact_revision: revs.compacted,
            content_hash,
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
        })
    }

    /// A consistent backup of the whole state machine (the same format snapshots use), after
    /// a linearizable barrier so it includes every write acknowledged before the call.
    pub async fn backup(&self) -> Result<Vec<u8>> {
        self.linearize().await?;
        let db = self.inner.db.clone();
        let (_, data) = tokio::task::spawn_blocking(move || {
            crate::state_machine::dump_snapshot(&db)
                .map_err(|e| Error::Storage(format!("backup failed: {e}")))
        })
        .await
        .map_err(|e| Error::Storage(format!("backup task failed: {e}")))??;
        Ok(data)
    }

    /// Stop the Raft node. Pending requests fail as unavailable.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }
}

fn members_of(m: &openraft::Membership<NodeId, BasicNode>) -> Vec<pb::Member> {
    let voters: BTreeSet<NodeId> = m.voter_ids().collect();
    m.nodes()
        .map(|(id, n)| pb::Member {
            id: *id,
            addr: n.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

fn membership_err(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::Unavailable(format!(
            "leadership changed during the membership change (leader now {:?}); retry",
            f.leader_id
        )),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            e @ openraft::error::ChangeMembershipError::InProgress(_),
        )) => Error::Unavailable(format!(
            "another membership change is in progress; retry: {e}"
        )),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Error::Invalid(format!("membership change refused: {e}"))
        }
        RaftError::Fatal(e) => Error::Stopped(e.to_string()),
    }
}

struct NotLeader;
const NOT_LEADER: &str = "__not_leader__";

/// Log entries the batcher keeps in flight at once. Enough to pipeline replication and fsyncs;
/// few enough that proposals arriving meanwhile queue up and go out together in the next entry
/// (with no limit every proposal became its own entry and its own fsync).
const MAX_ENTRIES_IN_FLIGHT: usize = 2;

/// The leader's batcher: packs the proposals waiting in the queue into one log entry, hands it
/// to Raft without waiting for the previous one to commit (so entries pipeline, up to
/// `MAX_ENTRIES_IN_FLIGHT`), and routes each result back to its proposer.
async fn run_batcher(raft: Raft, mut rx: mpsc::Receiver<Proposal>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut bytes = op_size(&first.op);
        let mut ops = vec![first.op];
        let mut replies = vec![first.reply];
        while ops.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += op_size(&p.op);
                    ops.push(p.op);
                    replies.push(p.reply);
                }
                Err(_) => break,
            }
        }
        match raft.client_write_ff(Command { ops }).await {
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(Error::Stopped(e.to_string())));
                }
            }
            Ok(pending) => {
                tokio::spawn(async move {
                    let outcome = pending.await;
                    drop(permit);
                    match outcome {
                        Ok(Ok(resp)) => {
                            for (r, res) in replies.into_iter().zip(resp.data.results) {
                                let _ = r.send(res);
                            }
                        }
                        Ok(Err(ClientWriteError::ForwardToLeader(_))) => {
                            for r in replies {
                                let _ = r.send(Err(Error::Unavailable(NOT_LEADER.into())));
                            }
                        }
                        Ok(Err(e)) => {
                            for r in replies {
                                let _ = r.send(Err(Error::Unavailable(e.to_string())));
                            }
                        }
                        Err(_) => {
                            // The entry may or may not commit: the outcome is unknown.
                            for r in replies {
                                let _ = r.send(Err(Error::Unavailable("leader stepped down before the write was confirmed; its outcome is unknown".into())));
                            }
                        }
                    }
                });
            }
        }
    }
}

fn op_size(op: &Op) -> usize {
    match op {
        Op::Put(p) => p.key.len() + p.value.len(),
        Op::Txn(t) => {
            t.success.len() * 64
                + t.failure.len() * 64
                + t.success
                    .iter()
                    .chain(&t.failure)
                    .map(|o| match &o.request {
                        Some(pb::request_op::Request::Put(p)) => p.value.len(),
                        _ => 0,
                    })
                    .sum::<usize>()
        }
        _ => 64,
    }
}
