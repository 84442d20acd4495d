//! A Raft-replicated (openraft) MVCC key-value store on RocksDB, like etcd: revisions, ranges at
//! past revisions, transactions, compaction, watch with history replay, membership, snapshots,
//! and a mutual-TLS gRPC peer transport. It knows nothing about Kubernetes.

pub mod encoding;
pub mod error;
pub mod mvcc;
pub mod network;
pub mod node;
pub mod restore;
pub mod server;
pub mod service;
pub mod tls;
pub mod types;

mod db;
mod log_store;
mod state_machine;
mod watch;

pub use error::{Error, Result};
pub use node::{Store, StoreConfig};
pub use server::{start, Identity, RestoreOptions, RunningServer, ServerOptions};
pub use types::{NodeId, Op, OpResult};

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod mvcc_tests;
#[cfg(test)]
mod watch_tests;
