//! The Kubernetes resource API: a generic registry over the replicated store with per-kind
//! strategies (defaulting, validation), resourceVersion concurrency, selectors, patch and watch,
//! served over TLS gRPC by every server replica.

pub mod allocator;
pub mod auth;
pub mod decode;
pub mod error;
pub mod kinds;
pub mod members;
pub mod node_proxy;
pub mod object;
pub mod patch;
pub mod registry;
pub mod selector;
pub mod server;
pub mod service;
pub mod strategies;
pub mod strategy;
pub mod validation;

pub use error::{Error, Result};
