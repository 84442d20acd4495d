//! The scheduler's view of the cluster: nodes with the pods assigned to them and per-node
//! aggregates (requested resources, used host ports) kept up to date incrementally, plus the
//! PersistentVolumes and claims that volume node affinity needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Taint};

use super::pod_info::{namespace_of, HostPort, PodInfo};
use super::resources::{Allocatable, Resources};
use super::selectors::NO_LABELS;

/// A point-in-time view of nodes, the pods bound (or assumed bound) to them, and the volumes
/// pods may claim.
///
/// Nodes are kept in name order. Pods in phase `Succeeded` or `Failed` hold no resources and are
/// left out; pods naming a node the snapshot does not know are left out too.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub(crate) nodes: Vec<NodeInfo>,
    node_index: HashMap<String, usize>,
    /// namespace → name → index of the pod's node.
    pod_nodes: HashMap<String, HashMap<String, usize>>,
    /// controller owner uid → node index → number of that owner's live pods on the node.
    owner_counts: HashMap<String, HashMap<usize, u32>>,
    /// How many pods have any inter-pod (anti-)affinity term, and how many a required
    /// anti-affinity term: when zero, whole passes over the pods are skipped.
    pub(crate) pods_with_affinity: usize,
    pub(crate) pods_with_required_anti_affinity: usize,
    /// How many distinct zones the nodes are in (see [`NodeInfo::zone`]).
    pub(crate) num_zones: usize,
    pvs: HashMap<String, PersistentVolume>,
    /// namespace → name → claim.
    pvcs: HashMap<String, HashMap<String, PersistentVolumeClaim>>,
}

impl Snapshot {
    /// Builds a snapshot. Pods with `spec.nodeName` are attached to that node; the others
    /// (pending pods) are ignored.
    pub fn new(
        nodes: impl IntoIterator<Item = Node>,
        pods: impl IntoIterator<Item = Pod>,
        pvs: impl IntoIterator<Item = PersistentVolume>,
        pvcs: impl IntoIterator<Item = PersistentVolumeClaim>,
    ) -> Self {
        let by_name: BTreeMap<String, Node> = nodes
            .into_iter()
            .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
            .collect();
        let mut snapshot = Snapshot::default();
        let mut zones: HashMap<(String, String), usize> = HashMap::new();
        for (index, (name, node)) in by_name.into_iter().enumerate() {
            let mut info = NodeInfo::new(node);
            if let Some((region, zone)) = zone_key(info.labels()) {
                let next = zones.len();
                info.zone = Some(*zones.entry((region.into(), zone.into())).or_insert(next));
            }
            snapshot.node_index.insert(name, index);
            snapshot.nodes.push(info);
        }
        snapshot.num_zones = zones.len();
        for pod in pods {
            snapshot.insert(pod);
        }
        for pv in pvs {
            snapshot
                .pvs
                .insert(pv.metadata.name.clone().unwrap_or_default(), pv);
        }
        for pvc in pvcs {
            let namespace = pvc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = pvc.metadata.name.clone().unwrap_or_default();
            snapshot
                .pvcs
                .entry(namespace)
                .or_default()
                .insert(name, pvc);
        }
        snapshot
    }

    /// Adds (or replaces) a pod on the node named by its `spec.nodeName`, typically a pod the
    /// scheduler has just bound ("assumed"). Returns whether the pod now counts: not when it
    /// names no known node or has terminated.
    pub fn add_pod(&mut self, pod: &Pod) -> bool {
        self.remove_pod(
            namespace_of(pod),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        self.insert(pod.clone())
    }

    /// Removes a pod wherever it is. Returns whether it was there.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> bool {
        let Some(index) = self
            .pod_nodes
            .get_mut(namespace)
            .and_then(|pods| pods.remove(name))
        else {
            return false;
        };
        if let Some(removed) = self.nodes[index].remove_pod(namespace, name) {
            self.count(&removed, index, -1);
        }
        true
    }

    /// The number of nodes.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The pods counted on a node (empty for an unknown node).
    pub fn pods_on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.node_index
            .get(node)
            .into_iter()
            .flat_map(|i| self.nodes[*i].pods.iter().map(|p| &p.pod))
    }

    pub(crate) fn claim(&self, namespace: &str, name: &str) -> Option<&PersistentVolumeClaim> {
        self.pvcs.get(namespace).and_then(|claims| claims.get(name))
    }

    pub(crate) fn volume(&self, name: &str) -> Option<&PersistentVolume> {
        self.pvs.get(name)
    }

    pub(crate) fn volumes(&self) -> impl Iterator<Item = &PersistentVolume> {
        self.pvs.values()
    }

    /// Assume that claim `namespace/name` has `annotation` set to `value` (the scheduler wrote
    /// it and the cache does not show it yet), so the next decisions see it. Unknown claims are
    /// ignored.
    pub fn assume_claim_annotation(
        &mut self,
        namespace: &str,
        name: &str,
        annotation: &str,
        value: &str,
    ) {
        if let Some(claim) = self.pvcs.get_mut(namespace).and_then(|c| c.get_mut(name)) {
            claim
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(annotation.into(), value.into());
        }
    }

    /// The number of live pods of a controller owner on each node (by node index).
    pub(crate) fn owner_counts(&self, owner_uid: &str) -> Option<&HashMap<usize, u32>> {
        self.owner_counts.get(owner_uid)
    }

    fn insert(&mut self, pod: Pod) -> bool {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return false;
        }
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let Some(&index) = node_name.and_then(|n| self.node_index.get(n)) else {
            return false;
        };
        let info = Arc::new(PodInfo::new(pod));
        self.pod_nodes
            .entry(info.facts.namespace.clone())
            .or_default()
            .insert(info.facts.name.clone(), index);
        self.count(&info, index, 1);
        self.nodes[index].add_pod(info);
        true
    }

    /// Keeps the cluster-wide counters in step with a pod added (`delta` 1) or removed (-1).
    fn count(&mut self, info: &PodInfo, node: usize, delta: i32) {
        let apply = |counter: &mut usize| {
            *counter = counter.saturating_add_signed(delta as isize);
        };
        if info.facts.affinity.any() {
            apply(&mut self.pods_with_affinity);
        }
        if !info.facts.affinity.required_anti_affinity.is_empty() {
            apply(&mut self.pods_with_required_anti_affinity);
        }
        // Kubernetes' SelectorSpread skips terminating pods.
        if let Some(owner) = info
            .facts
            .owner_uid
            .as_ref()
            .filter(|_| !info.facts.terminating)
        {
            let per_node = self.owner_counts.entry(owner.clone()).or_default();
            let count = per_node.entry(node).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                per_node.remove(&node);
                if per_node.is_empty() {
                    self.owner_counts.remove(owner);
                }
            }
        }
    }
}

/// Kubernetes' zone key: the region and zone labels (current or legacy), `None` when neither
/// is set.
fn zone_key(labels: &BTreeMap<String, String>) -> Option<(&str, &str)> {
    let get = |current: &str, legacy: &str| {
        labels
            .get(current)
            .or_else(|| labels.get(legacy))
            .map(String::as_str)
            .unwrap_or_default()
    };
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    (!region.is_empty() || !zone.is_empty()).then_some((region, zone))
}

/// Whether a node reports itself Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    /// Ready is False, or absent (a node that has not reported yet).
    NotReady,
    /// Ready is Unknown: the node stopped reporting.
    Unreachable,
}

/// One node and what is assigned to it.
#[derive(Clone, Debug)]
pub(crate) struct NodeInfo {
    pub node: Node,
    pub allocatable: Allocatable,
    /// Sum of the pods' requests (what NodeResourcesFit compares with allocatable).
    pub requested: Resources,
    /// Sum of the pods' non-zero requests (what the resource scores use).
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    /// The host ports the pods bind, with repeats.
    pub used_ports: Vec<HostPort>,
    pub readiness: Readiness,
    /// The node's zone (region and zone labels) as a number below [`Snapshot::num_zones`].
    pub zone: Option<usize>,
}

impl NodeInfo {
    fn new(node: Node) -> Self {
        let status = node.status.as_ref();
        let allocatable = Allocatable::from_status(
            status.and_then(|s| s.allocatable.as_ref()),
            status.and_then(|s| s.capacity.as_ref()),
        );
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let readiness = match ready {
            Some("True") => Readiness::Ready,
            Some("Unknown") => Readiness::Unreachable,
            _ => Readiness::NotReady,
        };
        NodeInfo {
            node,
            allocatable,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
            used_ports: Vec::new(),
            readiness,
            zone: None,
        }
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    pub fn unschedulable(&self) -> bool {
        self.node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
    }

    fn add_pod(&mut self, info: Arc<PodInfo>) {
        self.requested.add(&info.facts.requests.requests);
        self.non_zero_requested.add(&info.facts.requests.non_zero);
        self.used_ports
            .extend(info.facts.host_ports.iter().cloned());
        if info.facts.affinity.any() {
            self.pods_with_affinity.push(Arc::clone(&info));
        }
        if !info.facts.affinity.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity
                .push(Arc::clone(&info));
        }
        self.pods.push(info);
    }

    fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let is_it = |p: &Arc<PodInfo>| p.facts.namespace == namespace && p.facts.name == name;
        let position = self.pods.iter().position(is_it)?;
        let info = self.pods.swap_remove(position);
        self.pods_with_affinity.retain(|p| !is_it(p));
        self.pods_with_required_anti_affinity.retain(|p| !is_it(p));
        self.requested.sub(&info.facts.requests.requests);
        self.non_zero_requested.sub(&info.facts.requests.non_zero);
        for port in &info.facts.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        Some(info)
    }
}
