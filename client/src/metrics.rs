//! Resource metrics of nodes and pods, as the API servers gather them from the agents (see
//! `rkube/api/v1/node_proxy.proto`, service `Metrics`): what `rkube top` prints and what a
//! HorizontalPodAutoscaler scales on.
//!
//! CPU is a rate: CPU time used over the measurement's `window` (which ends at `timestamp`),
//! in millicores (1000 = one full core busy for the whole window). Memory is the working set
//! in bytes at the end of the window (for a process-runtime container: the resident memory of
//! its processes).

use std::time::Duration;

use rkube_proto::api;
use rkube_proto::api::metrics_client::MetricsClient;

use crate::client::Client;
use crate::error::Result;

/// One container's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMetrics {
    pub name: String,
    /// CPU used over the window, in millicores.
    pub cpu_millicores: u64,
    /// Working set at the end of the window, in bytes.
    pub memory_bytes: u64,
}

/// One pod's usage: one entry per container that was running when measured (a pod whose
/// containers are not running has no metrics and is absent from lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetrics {
    pub namespace: String,
    pub name: String,
    /// When the measurement ended.
    pub timestamp: jiff::Timestamp,
    /// How long a window the CPU rates cover.
    pub window: Duration,
    pub containers: Vec<ContainerMetrics>,
}

impl PodMetrics {
    /// The pod's CPU: the sum over its containers, in millicores.
    pub fn cpu_millicores(&self) -> u64 {
        self.containers.iter().map(|c| c.cpu_millicores).sum()
    }

    /// The pod's memory: the sum over its containers, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.containers.iter().map(|c| c.memory_bytes).sum()
    }
}

/// One node's usage, with its allocatable resources for percentages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMetrics {
    pub name: String,
    pub timestamp: jiff::Timestamp,
    pub window: Duration,
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub allocatable_cpu_millicores: u64,
    pub allocatable_memory_bytes: u64,
}

/// A list of metrics, and the nodes whose agent did not answer (with why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsList<T> {
    pub items: Vec<T>,
    pub unavailable: Vec<String>,
}

fn timestamp(s: &str) -> jiff::Timestamp {
    s.parse().unwrap_or_else(|_| jiff::Timestamp::now())
}

fn millicores(usage: Option<&rkube_proto::agent::Usage>) -> (u64, u64) {
    usage.map_or((0, 0), |u| {
        (
            u.cpu_usage_nano_cores / 1_000_000,
            u.memory_working_set_bytes,
        )
    })
}

impl Client {
    /// The metrics of the pods in `namespace` (empty: every namespace) matching
    /// `label_selector` (empty: all). Pods on nodes whose agent did not answer are absent; use
    /// [`Client::list_pod_metrics`] to learn which nodes those were.
    pub async fn pod_metrics(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<PodMetrics>> {
        Ok(self
            .list_pod_metrics(namespace, label_selector)
            .await?
            .items)
    }

    /// [`Client::pod_metrics`], with the nodes that did not answer.
    pub async fn list_pod_metrics(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<MetricsList<PodMetrics>> {
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::ListPodMetricsRequest {
                    namespace: namespace.to_string(),
                    label_selector: label_selector.to_string(),
                });
                async move { MetricsClient::new(ch).list_pod_metrics(req).await }
            })
            .await?
            .into_inner();
        let items = resp
            .items
            .into_iter()
            .map(|p| PodMetrics {
                namespace: p.namespace,
                name: p.name,
                timestamp: timestamp(&p.timestamp),
                window: Duration::from_nanos(p.window_nanos),
                containers: p
                    .containers
                    .into_iter()
                    .map(|c| {
                        let (cpu, memory) = millicores(c.usage.as_ref());
                        ContainerMetrics {
                            name: c.name,
                            cpu_millicores: cpu,
                            memory_bytes: memory,
                        }
                    })
                    .collect(),
            })
            .collect();
        Ok(MetricsList {
            items,
            unavailable: resp.unavailable,
        })
    }

    /// The metrics of every node, and the nodes whose agent did not answer.
    pub async fn node_metrics(&self) -> Result<MetricsList<NodeMetrics>> {
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::ListNodeMetricsRequest {});
                async move { MetricsClient::new(ch).list_node_metrics(req).await }
            })
            .await?
            .into_inner();
        let items = resp
            .items
            .into_iter()
            .map(|n| {
                let (cpu, memory) = millicores(n.usage.as_ref());
                NodeMetrics {
                    name: n.name,
                    timestamp: timestamp(&n.timestamp),
                    window: Duration::from_nanos(n.window_nanos),
                    cpu_millicores: cpu,
                    memory_bytes: memory,
                    allocatable_cpu_millicores: n.allocatable_cpu_millis,
                    allocatable_memory_bytes: n.allocatable_memory_bytes,
                }
            })
            .collect();
        Ok(MetricsList {
            items,
            unavailable: resp.unavailable,
        })
    }
}
