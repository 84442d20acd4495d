//! One module per controller, each built from the shared runtime's [`crate::runtime::Context`].

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod garbage_collector;
pub mod horizontal_pod_autoscaler;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod replicaset;
pub mod statefulset;
pub mod volume;
