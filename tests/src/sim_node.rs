//! Simulated nodes for control-plane tests and benchmarks: each registers a Node through the API,
//! renews its Lease in `kube-node-lease`, and plays the agent's part for the pods bound to it
//! (Running and Ready with a pod IP, and confirming graceful deletions) without running anything.
//! Stopping one silences it, as a dead agent would be.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use serde_json::json;

/// What a simulated node offers.
#[derive(Debug, Clone)]
pub struct SimNodeSpec {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Pods whose first container image is listed here run but never become Ready (a failing
    /// readiness probe).
    pub never_ready_images: Vec<String>,
    /// Whether the node plays the agent's part for its pods (false: only the Node object).
    pub run_pods: bool,
}

impl SimNodeSpec {
    pub fn new(name: &str) -> SimNodeSpec {
        SimNodeSpec {
            name: name.to_string(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            never_ready_images: Vec::new(),
            run_pods: true,
        }
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    pub fn capacity(mut self, cpu: &str, memory: &str) -> Self {
        self.cpu = cpu.into();
        self.memory = memory.into();
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    /// The Node object this spec registers.
    pub fn node(&self) -> Node {
        let mut labels = self.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        let res: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), Quantity(self.cpu.clone())),
            ("memory".to_string(), Quantity(self.memory.clone())),
            ("pods".to_string(), Quantity(self.pods.to_string())),
        ]
        .into();
        let now = Time(jiff::Timestamp::now());
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(res.clone()),
                allocatable: Some(res),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: Some("KubeletReady".into()),
                    message: Some("simulated node is posting ready status".into()),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(now),
                }]),
                ..Default::default()
            }),
        }
    }
}

/// A running simulated node; dropping it (or [`SimNode::stop`]) silences it.
pub struct SimNode {
    pub name: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimNode {
    /// Register the node (create, or update an existing one) and start heartbeating.
    pub async fn start(client: Client, spec: SimNodeSpec) -> anyhow::Result<SimNode> {
        register(&client, &spec).await?;
        let mut tasks = vec![tokio::spawn(heartbeat(client.clone(), spec.name.clone()))];
        if spec.run_pods {
            tasks.push(tokio::spawn(run_pods(client, spec.clone())));
        }
        Ok(SimNode {
            name: spec.name,
            tasks,
        })
    }

    /// Stop heartbeating and handling pods, as if the node died.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn register(client: &Client, spec: &SimNodeSpec) -> anyhow::Result<()> {
    let node = spec.node();
    let value = serde_json::to_value(&node)?;
    match client.create(&value, "").await {
        Ok(_) => {}
        Err(rkube_client::Error::AlreadyExists(_)) => {
            let mut cur: Node = client.get_typed("", &spec.name).await?;
            cur.metadata.labels = node.metadata.labels.clone();
            cur.spec = node.spec.clone();
            let cur = client.update_typed(&cur).await?;
            let mut with_status = cur;
            with_status.status = node.status.clone();
            client.update_status_typed(&with_status).await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    // Status is a subresource: set it separately.
    let mut cur: Node = client.get_typed("", &spec.name).await?;
    cur.status = node.status;
    client.update_status_typed(&cur).await?;
    Ok(())
}

async fn heartbeat(client: Client, name: String) {
    loop {
        if let Err(e) = renew_lease(&client, &name).await {
            tracing::debug!(node = %name, error = %e, "simulated node: lease not renewed");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn renew_lease(client: &Client, name: &str) -> anyhow::Result<()> {
    let now = MicroTime(jiff::Timestamp::now());
    match client.get_typed::<Lease>("kube-node-lease", name).await {
        Ok(mut lease) => {
            lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
            client.update_typed(&lease).await?;
        }
        Err(rkube_client::Error::NotFound(_)) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("kube-node-lease".into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            client.create_typed(&lease, "kube-node-lease").await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn run_pods(client: Client, spec: SimNodeSpec) {
    let params = ListParams {
        field_selector: format!("spec.nodeName={}", spec.name),
        ..Default::default()
    };
    let mut next_ip = 2u32;
    let node_index = spec
        .name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    loop {
        let mut stream = Box::pin(client.watch(&KindRef::of::<Pod>(), &params, true));
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(WatchEvent::Added(o)) | Ok(WatchEvent::Modified(o)) => o,
                Ok(_) => continue,
                Err(_) => break,
            };
            let Ok(pod) = serde_json::from_value::<Pod>(obj) else {
                continue;
            };
            let ip = format!(
                "10.{}.{}.{}",
                100 + node_index % 100,
                next_ip / 250,
                1 + next_ip % 250
            );
            if let Err(e) = handle_pod(&client, &spec, pod, &ip).await {
                tracing::debug!(node = %spec.name, error = %e, "simulated node: pod update failed");
            } else {
                next_ip += 1;
            }
        }
    }
}

async fn handle_pod(client: &Client, spec: &SimNodeSpec, pod: Pod, ip: &str) -> anyhow::Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        // The containers "stopped": confirm the deletion.
        let req = rkube_proto::api::DeleteRequest {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match client.delete(&KindRef::of::<Pod>(), &ns, &name, req).await {
            Ok(_) | Err(rkube_client::Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let status = pod.status.clone().unwrap_or_default();
    if status.phase.as_deref() == Some("Running") || status.phase.as_deref() == Some("Succeeded") {
        return Ok(());
    }
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let ready = if spec.never_ready_images.contains(&image) {
        "False"
    } else {
        "True"
    };
    let now = Time(jiff::Timestamp::now());
    let cond = |ty: &str, status: &str| PodCondition {
        type_: ty.into(),
        status: status.into(),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    let patch = json!({
        "metadata": {"resourceVersion": pod.metadata.resource_version},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                cond("PodScheduled", "True"),
                cond("Initialized", "True"),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
        }
    });
    client
        .patch(
            &KindRef::of::<Pod>(),
            &ns,
            &name,
            rkube_proto::api::PatchType::Merge,
            &serde_json::to_vec(&patch)?,
            true,
        )
        .await?;
    Ok(())
}
