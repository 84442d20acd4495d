//! rkube's gRPC contract: generated types and services for every `.proto` file under `proto/`.

/// The replicated key-value store: KV, Watch, Cluster and the Raft peer protocol.
pub mod store {
    tonic::include_proto!("rkube.store.v1");
}

/// The public resource API: Kubernetes objects as JSON with typed envelopes, and the pod
/// logs/exec/port-forward and metrics services the API servers proxy to agents.
pub use packages::api::v1 as api;

/// The node agent's service (logs, exec, port forwarding, stats), called by API servers only.
pub use packages::agent::v1 as agent;

/// The packages nested as prost expects, so that `rkube.api.v1` can refer to `rkube.agent.v1`.
mod packages {
    pub mod api {
        pub mod v1 {
            tonic::include_proto!("rkube.api.v1");
        }
    }
    pub mod agent {
        pub mod v1 {
            tonic::include_proto!("rkube.agent.v1");
        }
    }
}

/// The encoded file descriptor set of every service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
