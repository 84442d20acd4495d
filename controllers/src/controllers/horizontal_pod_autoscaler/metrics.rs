//! Where the autoscaler's resource metrics come from: the [`MetricsSource`] trait (the agents'
//! per-container usage, as the metrics API serves it), the per-pod sums the replica calculator
//! works on, and the label selector in its string form.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub use rkube_client::{ContainerMetrics, PodMetrics};

/// A resource the autoscaler scales on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    /// `cpu` or `memory`; any other resource name is an error naming it.
    pub fn parse(name: &str) -> Result<Resource, MetricsError> {
        match name {
            "cpu" => Ok(Resource::Cpu),
            "memory" => Ok(Resource::Memory),
            other => Err(MetricsError(format!(
                "unsupported resource {other:?} in a Resource metric: the autoscaler supports cpu and memory"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// Why metrics could not be read or used; the message ends up in the HPA's conditions and
/// Events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetricsError(pub String);

/// The source of pods' resource usage.
///
/// # Correctness
/// `pod_metrics` returns the latest sample of every pod in `namespace` matching `selector`
/// that has one; pods without a sample are simply absent (the replica calculator treats them
/// as missing, as Kubernetes does).
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync + 'static {
    async fn pod_metrics(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<PodMetrics>, MetricsError>;
}

/// One pod's usage of one resource in milli-units (millicores, or thousandths of a byte as
/// Kubernetes' `MilliValue`), with its sample time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: jiff::Timestamp,
    pub window: Duration,
}

/// Pod name → its usage of one resource.
pub type PodMetricsInfo = BTreeMap<String, PodMetric>;

/// The per-pod sums of `resource` over the containers measured (millicores, or bytes × 1000);
/// a pod with no container measured is left out (missing), like Kubernetes' resource metrics
/// client.
pub fn resource_metrics(usage: &[PodMetrics], resource: Resource) -> PodMetricsInfo {
    let mut out = PodMetricsInfo::new();
    for pod in usage.iter().filter(|p| !p.containers.is_empty()) {
        let value: u64 = pod
            .containers
            .iter()
            .map(|c| match resource {
                Resource::Cpu => c.cpu_millicores,
                Resource::Memory => c.memory_bytes.saturating_mul(1000),
            })
            .fold(0, u64::saturating_add);
        out.insert(
            pod.name.clone(),
            PodMetric {
                value: i64::try_from(value).unwrap_or(i64::MAX),
                timestamp: pod.timestamp,
                window: pod.window,
            },
        );
    }
    out
}

/// A label selector in Kubernetes' string form (`app=web,tier in (a,b),!legacy`), as the
/// metrics API's `labelSelector` takes it.
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let values = values.join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => format!("{} {op} ({values})", e.key),
        });
    }
    parts.join(",")
}

/// [`MetricsSource`] over the API server's pod metrics (which it gathers from the agents).
pub struct ClientMetrics {
    client: rkube_client::Client,
}

impl ClientMetrics {
    pub fn new(client: rkube_client::Client) -> ClientMetrics {
        ClientMetrics { client }
    }
}

#[async_trait::async_trait]
impl MetricsSource for ClientMetrics {
    async fn pod_metrics(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<PodMetrics>, MetricsError> {
        self.client
            .pod_metrics(namespace, &selector_string(selector))
            .await
            .map_err(|e| MetricsError(e.to_string()))
    }
}
