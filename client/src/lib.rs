//! The one API client every rkube component uses: kubeconfig loading, several servers with
//! failover, bearer-token or client-certificate authentication, typed and dynamic
//! get/list/create/update/patch/delete, and watches that resume from their last resourceVersion.

pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod node_proxy;

pub use client::{Client, KindRef, ListParams, WatchEvent};
pub use config::{ClientConfig, Kubeconfig};
pub use error::{Error, Result};
pub use metrics::{ContainerMetrics, NodeMetrics, PodMetrics};
pub use node_proxy::{ExecEvent, LogOptions};
