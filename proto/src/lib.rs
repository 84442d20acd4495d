//! rkube's gRPC contract: generated types and services for every `.proto` file under `proto/`.

/// The replicated key-value store: KV, Watch, Cluster and the Raft peer protocol.
pub mod store {
    tonic::include_proto!("rkube.store.v1");
}

/// The public resource API: Kubernetes objects as JSON with typed envelopes.
pub mod api {
    tonic::include_proto!("rkube.api.v1");
}

/// The encoded file descriptor set of every service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
