//! The `Metrics` service: node and pod resource usage gathered from the agents' `Stats` (each
//! agent measures CPU over a window and memory at the end of it), like metrics-server serves
//! `metrics.k8s.io`. Nodes whose agent does not answer are listed as unavailable, not fatal.

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use rkube_proto::agent as agent_pb;
use rkube_proto::api;
use rkube_proto::api::metrics_server::Metrics;
use tonic::{Request, Response, Status};

use super::{agent_error, NodeProxy, STATS_TIMEOUT};
use crate::error::{Error, Result};
use crate::kinds;
use crate::registry::ListOptions;
use crate::validation::common::parse_quantity;

impl NodeProxy {
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        resource: &str,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<T>> {
        let info = kinds::resolve(resource).expect("served");
        let page = self
            .registry
            .list(
                info,
                &ListOptions {
                    namespace: Some(namespace.to_string()),
                    label_selector: label_selector.to_string(),
                    ..Default::default()
                },
            )
            .await?;
        page.items
            .into_iter()
            .map(|(v, _)| {
                serde_json::from_value(v)
                    .map_err(|e| Error::Internal(format!("stored {resource}: {e}")))
            })
            .collect()
    }

    /// The Stats of every node in `nodes`, concurrently: answers by node name, and why the
    /// others did not answer.
    async fn stats(
        &self,
        nodes: &[Node],
    ) -> (HashMap<String, agent_pb::StatsResponse>, Vec<String>) {
        let calls = nodes.iter().map(|node| async move {
            let name = node.metadata.name.clone().unwrap_or_default();
            let mut agent = match self.agent_of(node) {
                Ok(a) => a,
                Err(e) => return (name, Err(e.to_string())),
            };
            let answer =
                tokio::time::timeout(STATS_TIMEOUT, agent.stats(agent_pb::StatsRequest {})).await;
            let result = match answer {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(agent_error(&name, s).message().to_string()),
                Err(_) => Err(format!(
                    "the agent of node {name} did not answer within {STATS_TIMEOUT:?}"
                )),
            };
            (name, result)
        });
        let mut answers = HashMap::new();
        let mut unavailable = Vec::new();
        for (name, result) in join_all(calls).await {
            match result {
                Ok(r) => {
                    answers.insert(name, r);
                }
                Err(e) => unavailable.push(format!("{name}: {e}")),
            }
        }
        (answers, unavailable)
    }
}

/// A quantity in milli-units, 0 when absent or unparsable.
fn milli(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> u64 {
    q.and_then(|q| parse_quantity(&q.0).ok())
        .map_or(0, |m| m.max(0) as u64)
}

#[tonic::async_trait]
impl Metrics for NodeProxy {
    async fn list_node_metrics(
        &self,
        req: Request<api::ListNodeMetricsRequest>,
    ) -> Result<Response<api::ListNodeMetricsResponse>, Status> {
        self.auth.authenticate(&req).await?;
        let nodes: Vec<Node> = self.list("nodes", "", "").await?;
        let (answers, unavailable) = self.stats(&nodes).await;
        let items = nodes
            .iter()
            .filter_map(|node| {
                let name = node.metadata.name.clone().unwrap_or_default();
                let s = answers.get(&name)?;
                let allocatable = node
                    .status
                    .as_ref()
                    .and_then(|s| s.allocatable.clone())
                    .unwrap_or_default();
                Some(api::NodeMetrics {
                    name,
                    timestamp: s.timestamp.clone(),
                    window_nanos: s.window_nanos,
                    usage: s.node,
                    allocatable_cpu_millis: milli(allocatable.get("cpu")),
                    allocatable_memory_bytes: milli(allocatable.get("memory")) / 1000,
                })
            })
            .collect();
        Ok(Response::new(api::ListNodeMetricsResponse {
            items,
            unavailable,
        }))
    }

    async fn list_pod_metrics(
        &self,
        req: Request<api::ListPodMetricsRequest>,
    ) -> Result<Response<api::ListPodMetricsResponse>, Status> {
        self.auth.authenticate(&req).await?;
        let r = req.into_inner();
        let pods: Vec<Pod> = self.list("pods", &r.namespace, &r.label_selector).await?;
        let wanted: BTreeMap<String, &Pod> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.clone()?, p)))
            .collect();
        let node_names: std::collections::BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        let nodes: Vec<Node> = self
            .list::<Node>("nodes", "", "")
            .await?
            .into_iter()
            .filter(|n| {
                n.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| node_names.contains(n))
            })
            .collect();
        let (answers, unavailable) = self.stats(&nodes).await;
        let mut items: Vec<api::PodMetrics> = answers
            .values()
            .flat_map(|s| {
                s.pods.iter().filter_map(|p| {
                    let pod_ref = p.pod.as_ref()?;
                    wanted.get(&pod_ref.uid)?;
                    Some(api::PodMetrics {
                        namespace: pod_ref.namespace.clone(),
                        name: pod_ref.name.clone(),
                        timestamp: s.timestamp.clone(),
                        window_nanos: s.window_nanos,
                        containers: p
                            .containers
                            .iter()
                            .map(|c| api::ContainerMetrics {
                                name: c.name.clone(),
                                usage: c.usage,
                            })
                            .collect(),
                    })
                })
            })
            .collect();
        items.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(Response::new(api::ListPodMetricsResponse {
            items,
            unavailable,
        }))
    }
}
