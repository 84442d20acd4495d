//! Shared harness for rkube black-box tests and benchmarks: in-process store clusters with fault
//! injection, and polling helpers.

pub mod agent;
pub mod api_cluster;
pub mod chaos;
pub mod process;
pub mod sim_node;
pub mod store_cluster;
pub mod wait;
