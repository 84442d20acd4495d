//! The agent's Node: registering it (create, or take over an existing one on restart; its
//! annotations publish the agent service and how resource limits are enforced, its
//! `spec.podCIDR` the node's pod range when it has one), and the
//! heartbeats the node lifecycle controller watches: the Lease `kube-node-lease/<node>` and the
//! Node's Ready condition, both renewed every heartbeat interval. A Node deleted while the agent
//! runs is registered again at the next heartbeat.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use rkube_client::{Client, Error as ApiError};

use crate::error::Result;
use crate::AgentOptions;

/// The namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The Node as this agent describes it: labels, capacity, addresses and a Ready condition.
/// `previous` keeps the Ready condition's transition time when it was already Ready.
pub fn node_object(options: &AgentOptions, previous: Option<&NodeStatus>, now: &Time) -> Node {
    let mut labels = options.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), options.node_name.clone());
    labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(options.cpu.clone())),
        ("memory".to_string(), Quantity(options.memory.clone())),
        ("pods".to_string(), Quantity(options.max_pods.to_string())),
    ]
    .into();
    let was_ready = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(options.node_name.clone()),
            labels: Some(labels),
            annotations: Some(annotations(options)).filter(|a| !a.is_empty()),
            ..Default::default()
        },
        spec: options.pod_cidr.map(|cidr| NodeSpec {
            pod_cidr: Some(cidr.to_string()),
            pod_cidrs: Some(vec![cidr.to_string()]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            daemon_endpoints: options.endpoint.as_ref().map(|e| NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(e.port),
                }),
            }),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: options.host_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: options.node_name.clone(),
                },
            ]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some(format!(
                    "rkube agent is posting ready status ({} runtime)",
                    options.runtime.name()
                )),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(was_ready.unwrap_or_else(|| now.clone())),
            }]),
            node_info: Some(NodeSystemInfo {
                architecture: go_arch().into(),
                operating_system: std::env::consts::OS.into(),
                kubelet_version: format!("rkube-agent/{}", env!("CARGO_PKG_VERSION")),
                container_runtime_version: format!("{}://rkube", options.runtime.name()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The agent service's address and certificate, and how resource limits are enforced.
fn annotations(options: &AgentOptions) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    if let Some(e) = &options.endpoint {
        annotations.insert(
            crate::serve::ADDRESS_ANNOTATION.to_string(),
            e.address.clone(),
        );
        annotations.insert(
            crate::serve::CERT_ANNOTATION.to_string(),
            e.cert_sha256.clone(),
        );
    }
    if let Some(enforcement) = &options.limits_enforcement {
        annotations.insert(
            crate::runtime::cgroups::ENFORCEMENT_ANNOTATION.to_string(),
            enforcement.clone(),
        );
    }
    annotations
}

/// Kubernetes names architectures as Go does.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Create the Node, or take over the existing one (labels merged, status replaced).
pub async fn register(client: &Client, options: &AgentOptions) -> Result<()> {
    let now = Time(jiff::Timestamp::now());
    let desired = node_object(options, None, &now);
    let mut current = match client.create_typed(&desired, "").await {
        Ok(created) => created,
        Err(ApiError::AlreadyExists(_)) => {
            let mut current: Node = client.get_typed("", &options.node_name).await?;
            let labels = current.metadata.labels.get_or_insert_with(Default::default);
            labels.extend(desired.metadata.labels.clone().unwrap_or_default());
            let annotations = current
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            annotations.extend(desired.metadata.annotations.clone().unwrap_or_default());
            if let Some(cidr) = options.pod_cidr {
                let spec = current.spec.get_or_insert_with(Default::default);
                spec.pod_cidr = Some(cidr.to_string());
                spec.pod_cidrs = Some(vec![cidr.to_string()]);
            }
            client.update_typed(&current).await?
        }
        Err(e) => return Err(e.into()),
    };
    let desired = node_object(options, current.status.as_ref(), &now);
    current.status = desired.status;
    client.update_status_typed(&current).await?;
    tracing::info!(node = %options.node_name, "node registered");
    Ok(())
}

/// Renew the Lease and the Ready condition every heartbeat interval, forever. Failures are
/// logged and retried at the next beat: pods keep running whatever the API does.
pub async fn heartbeat(client: Client, options: std::sync::Arc<AgentOptions>) {
    let mut tick = tokio::time::interval(options.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = renew_lease(&client, &options.node_name).await {
            tracing::warn!(node = %options.node_name, error = %e, "node lease not renewed");
        }
        if let Err(e) = post_status(&client, &options).await {
            tracing::warn!(node = %options.node_name, error = %e, "node status not posted");
        }
    }
}

async fn post_status(client: &Client, options: &AgentOptions) -> Result<()> {
    let mut current: Node = match client.get_typed("", &options.node_name).await {
        Ok(node) => node,
        Err(ApiError::NotFound(_)) => {
            tracing::warn!(node = %options.node_name, "node object is gone: registering again");
            return register(client, options).await;
        }
        Err(e) => return Err(e.into()),
    };
    let now = Time(jiff::Timestamp::now());
    let desired = node_object(options, current.status.as_ref(), &now);
    // Keep what others wrote into the status (conditions of other types, images, …).
    let status = current.status.get_or_insert_with(Default::default);
    let ours = desired.status.unwrap_or_default();
    let mut conditions = ours.conditions.unwrap_or_default();
    conditions.extend(
        status
            .conditions
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "Ready"),
    );
    status.conditions = Some(conditions);
    status.capacity = ours.capacity;
    status.allocatable = ours.allocatable;
    status.addresses = ours.addresses;
    status.node_info = ours.node_info;
    status.daemon_endpoints = ours.daemon_endpoints;
    client.update_status_typed(&current).await?;
    Ok(())
}

async fn renew_lease(client: &Client, node: &str) -> Result<()> {
    let now = MicroTime(jiff::Timestamp::now());
    match client.get_typed::<Lease>(LEASE_NAMESPACE, node).await {
        Ok(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(node.into());
            client.update_typed(&lease).await?;
        }
        Err(ApiError::NotFound(_)) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            client.create_typed(&lease, LEASE_NAMESPACE).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The number of CPUs of this machine.
pub fn detect_cpu() -> String {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string()
}

/// This machine's memory from `/proc/meminfo` (`MemTotal`), as a Kubernetes quantity.
pub fn detect_memory() -> Option<String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{kib}Ki"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_carries_labels_capacity_addresses_and_ready() {
        let mut options = AgentOptions::new("n1", "/tmp/x".into());
        options.cpu = "2".into();
        options.memory = "1Gi".into();
        options.max_pods = 20;
        options.labels.insert("zone".into(), "a".into());
        let now = Time("2024-01-01T00:00:00Z".parse().unwrap());
        let node = node_object(&options, None, &now);
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["zone"], "a");
        let status = node.status.unwrap();
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "1Gi");
        assert_eq!(capacity["pods"].0, "20");
        let addresses: Vec<(String, String)> = status
            .addresses
            .unwrap()
            .into_iter()
            .map(|a| (a.type_, a.address))
            .collect();
        assert_eq!(
            addresses,
            [
                ("InternalIP".to_string(), "127.0.0.1".to_string()),
                ("Hostname".to_string(), "n1".to_string())
            ]
        );
        let ready = &status.conditions.unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
    }
}
