//! The checkers of the chaos suite: pure functions over what a run recorded, with no cluster.
//!
//! A workload records a [`History`] of create / compare-and-swap update / get / delete operations
//! on ConfigMaps (one in flight per client, with invoke and completion times), the objects listed
//! after the faults healed ([`FinalState`]) and one [`WatchLog`] per replica. [`check_all`] runs
//! every checker and returns a [`Verdict`] whose table the suite prints; every part serializes to
//! JSON so the raw recordings can be kept next to it.
//!
//! - [`check_linearizability`]: per-key linearizability, a Wing & Gong / Lowe search with a time
//!   budget per key, where operations that never returned may take effect at any later time or
//!   never.
//! - [`check_final_state`]: no acknowledged write lost, by appending the read after healing.
//! - [`check_revisions`]: revisions are unique and follow real time across keys.
//! - [`check_watches`]: watch streams ordered, without duplicates or gaps, resumable, and
//!   identical across replicas.
//!
//! The run itself: [`runner`] starts a cluster through a [`faults::Backend`] (the docker
//! backend, [`docker`]: the compose deployment with docker kill/pause and iptables partitions;
//! or the process backend: `rkube server` children, SIGKILL/SIGSTOP and a fault-injecting peer
//! transport, where Docker is unavailable), runs
//! the [`workload`] (clients and one watch per replica) and a [`deployment`] being scaled and
//! rolled, injects faults on a seeded schedule, heals, and checks; [`report`] has the fault
//! table, the failover figures and the raw output files.

pub mod deployment;
pub mod docker;
pub mod faults;
mod history;
mod linearizability;
mod lost_writes;
mod membership;
mod model;
pub mod nodes;
pub mod report;
mod revisions;
pub mod runner;
mod settle;
mod verdict;
mod watch;
pub mod workload;

pub use history::{
    ClientId, Entry, EntryId, FinalState, History, Key, Nanos, ObjectState, Operation, Outcome,
    Revision,
};
pub use linearizability::{
    check_linearizability, CheckOptions, KeyReport, KeyResult, LinearizabilityReport, OpRef,
    Violation,
};
pub use lost_writes::{check_final_state, FinalKeyReport, FinalKeyResult, FinalStateReport};
pub use revisions::check_revisions;
pub use verdict::{check_all, CheckResult, Status, Verdict};
pub use watch::{
    check_watches, EventType, WatchAnomaly, WatchAnomalyKind, WatchEvent, WatchLog, WatchRecord,
    WatchReport,
};

#[cfg(test)]
mod tests;
