//! The Raft type configuration and the commands that travel through the Raft log.

use std::io::Cursor;

use rkube_proto::store as pb;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Raft node ids are plain integers; the node record carries the peer address.
pub type NodeId = u64;
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The store's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub use openraft::ServerState;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;

/// One entry of the Raft log: a batch of writes proposed together by the leader.
///
/// Batching several client writes into one entry amortises the log fsync and the replication
/// round trip; each write still gets its own revision, in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Command {
    pub ops: Vec<Op>,
}

/// A single state-machine write.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Op {
    Put(pb::PutRequest),
    DeleteRange(pb::DeleteRangeRequest),
    Txn(pb::TxnRequest),
    Compact(i64),
}

impl Op {
    /// The fencing term stamped on the write, if any.
    pub fn fence(&self) -> Option<u64> {
        let fence = match self {
            Op::Put(r) => r.fence.as_ref(),
            Op::DeleteRange(r) => r.fence.as_ref(),
            Op::Txn(r) => r.fence.as_ref(),
            Op::Compact(_) => None,
        };
        fence.map(|f| f.raft_term)
    }
}

/// The state machine's answer to one `Op`. Errors here are deterministic outcomes of applying the
/// write (the same on every replica), not storage failures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum OpResult {
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compact(pb::CompactionResponse),
}

/// The results of one `Command`, one per op, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CommandResult {
    pub results: Vec<Result<OpResult, Error>>,
}
