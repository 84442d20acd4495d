//! Tests of the scheduling algorithm, table-driven over synthetic nodes and pods made with the
//! small builders below.

mod filters;
mod preemption;
mod schedule;
mod scores;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeCondition, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus,
    PersistentVolumeClaimVolumeSource, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, PodSpec,
    PodStatus, PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration, Volume,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::filters::{run_filters, InterPodState, NodeView, PodQuery};
use super::Snapshot;

pub(super) const HOSTNAME: &str = "kubernetes.io/hostname";
pub(super) const ZONE: &str = "topology.kubernetes.io/zone";

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// A Ready node with 4 cpu, 8Gi memory, room for 110 pods and its hostname label.
pub(super) struct NodeBuilder(Node);

pub(super) fn node(name: &str) -> NodeBuilder {
    let mut node = Node::default();
    node.metadata.name = Some(name.to_string());
    node.metadata.labels = Some(BTreeMap::from([(HOSTNAME.to_string(), name.to_string())]));
    node.spec = Some(NodeSpec::default());
    node.status = Some(NodeStatus {
        allocatable: Some(quantities(&[
            ("cpu", "4"),
            ("memory", "8Gi"),
            ("pods", "110"),
        ])),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".to_string(),
            status: "True".to_string(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    NodeBuilder(node)
}

impl NodeBuilder {
    fn allocatable(mut self, name: &str, value: &str) -> Self {
        let status = self.0.status.as_mut().unwrap();
        let allocatable = status.allocatable.as_mut().unwrap();
        allocatable.insert(name.to_string(), Quantity(value.to_string()));
        self
    }

    pub fn cpu(self, value: &str) -> Self {
        self.allocatable("cpu", value)
    }

    pub fn memory(self, value: &str) -> Self {
        self.allocatable("memory", value)
    }

    pub fn max_pods(self, value: &str) -> Self {
        self.allocatable("pods", value)
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        let labels = self.0.metadata.labels.as_mut().unwrap();
        labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn zone(self, zone: &str) -> Self {
        self.label(ZONE, zone)
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.0.spec.as_mut().unwrap();
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.0.spec.as_mut().unwrap().unschedulable = Some(true);
        self
    }

    /// Sets the Ready condition's status, or removes the condition with `None`.
    pub fn ready(mut self, status: Option<&str>) -> Self {
        let conditions = self.0.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conditions.clear();
        if let Some(status) = status {
            conditions.push(NodeCondition {
                type_: "Ready".to_string(),
                status: status.to_string(),
                ..Default::default()
            });
        }
        self
    }

    pub fn build(self) -> Node {
        self.0
    }
}

/// A pod in namespace `default` with one container requesting nothing.
pub(super) struct PodBuilder(Pod);

pub(super) fn pod(name: &str) -> PodBuilder {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_string());
    pod.metadata.namespace = Some("default".to_string());
    pod.spec = Some(PodSpec {
        containers: vec![Container {
            name: "app".to_string(),
            ..Default::default()
        }],
        ..Default::default()
    });
    PodBuilder(pod)
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.as_mut().unwrap()
    }

    fn affinity(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_with(Default::default)
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        let labels = self.0.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the container's cpu and memory requests.
    pub fn requests(mut self, cpu: &str, memory: &str) -> Self {
        self.spec().containers[0].resources = Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
            ..Default::default()
        });
        self
    }

    pub fn on(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_string());
        self
    }

    pub fn owner(mut self, uid: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".to_string(),
            kind: "ReplicaSet".to_string(),
            name: format!("rs-{uid}"),
            uid: uid.to_string(),
            controller: Some(true),
            ..Default::default()
        }]);
        self
    }

    pub fn host_port(mut self, port: i32, protocol: &str, ip: &str) -> Self {
        let ports = self.spec().containers[0].ports.get_or_insert_with(Vec::new);
        ports.push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            protocol: (!protocol.is_empty()).then(|| protocol.to_string()),
            host_ip: (!ip.is_empty()).then(|| ip.to_string()),
            ..Default::default()
        });
        self
    }

    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: some(key),
                operator: some(operator),
                value: some(value),
                effect: some(effect),
                toleration_seconds: None,
            });
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        let selector = self.spec().node_selector.get_or_insert_with(BTreeMap::new);
        selector.insert(key.to_string(), value.to_string());
        self
    }

    pub fn required_node_affinity(mut self, terms: Vec<NodeSelectorTerm>) -> Self {
        let node_affinity = self
            .affinity()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: terms,
        });
        self
    }

    pub fn preferred_node_affinity(mut self, weight: i32, preference: NodeSelectorTerm) -> Self {
        let node_affinity = self
            .affinity()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        node_affinity
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm { preference, weight });
        self
    }

    pub fn pod_affinity(mut self, term: PodAffinityTerm) -> Self {
        let affinity = self
            .affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default);
        affinity
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub fn pod_anti_affinity(mut self, term: PodAffinityTerm) -> Self {
        let anti = self
            .affinity()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default);
        anti.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub fn preferred_pod_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        let affinity = self
            .affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default);
        affinity
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                pod_affinity_term: term,
                weight,
            });
        self
    }

    pub fn preferred_pod_anti_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        let anti = self
            .affinity()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default);
        anti.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                pod_affinity_term: term,
                weight,
            });
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.spec().priority = Some(priority);
        self
    }

    pub fn never_preempt(mut self) -> Self {
        self.spec().preemption_policy = Some("Never".to_string());
        self
    }

    pub fn claim(mut self, claim: &str) -> Self {
        self.spec()
            .volumes
            .get_or_insert_with(Vec::new)
            .push(Volume {
                name: format!("vol-{claim}"),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.to_string(),
                    read_only: None,
                }),
                ..Default::default()
            });
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_with(PodStatus::default).phase = Some(phase.to_string());
        self
    }

    /// Sets `status.startTime` to `seconds` after the Unix epoch.
    pub fn started(mut self, seconds: i64) -> Self {
        let time = jiff_timestamp(seconds);
        self.0
            .status
            .get_or_insert_with(PodStatus::default)
            .start_time = Some(Time(time));
        self
    }

    pub fn build(self) -> Pod {
        self.0
    }
}

fn jiff_timestamp(seconds: i64) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap()
}

/// A pod affinity term selecting pods labelled `key=value` (in the pod's own namespace).
pub(super) fn term(key: &str, value: &str, topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
            match_expressions: None,
        }),
        topology_key: topology_key.to_string(),
        ..Default::default()
    }
}

/// A node selector term with one label expression.
pub(super) fn node_term(key: &str, operator: &str, values: &[&str]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }]),
        match_fields: None,
    }
}

pub(super) fn snapshot(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
    Snapshot::new(nodes, pods, vec![], vec![])
}

/// Runs every filter for `pod` against the node named `node`; the reasons as text.
pub(super) fn filter(pod: &Pod, snapshot: &Snapshot, node: &str) -> Result<(), Vec<String>> {
    let query = PodQuery::new(pod, snapshot);
    if let Some(message) = query.pre_filter_rejection() {
        return Err(vec![message.to_string()]);
    }
    let inter_pod = InterPodState::new(&query, snapshot);
    let info = snapshot
        .nodes
        .iter()
        .find(|n| n.name() == node)
        .expect("the node is in the snapshot");
    run_filters(&query, &NodeView::of(info), &inter_pod)
        .map_err(|reasons| reasons.iter().map(ToString::to_string).collect())
}

pub(super) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
