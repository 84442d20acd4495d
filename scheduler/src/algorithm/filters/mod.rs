//! The filters: whether a pod may run on a node, in kube-scheduler's plugin order, each with
//! Kubernetes' exact reason text. A node is rejected by the first filter that fails, as
//! kube-scheduler does.

mod inter_pod;
mod node;
mod volumes;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Pod, Toleration};

pub(crate) use inter_pod::InterPodState;
pub(crate) use node::tolerates;

use super::pod_info::{HostPort, PodFacts};
use super::resources::Resources;
use super::selectors::{NodeMatcher, NodeTermMatcher};
use super::snapshot::{NodeInfo, Snapshot};
pub(crate) use volumes::VolumeState;

/// Why a node cannot take a pod; `Display` gives kube-scheduler's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Unschedulable,
    NodeName,
    NotReady,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    NodePorts,
    TooManyPods,
    /// Not enough of a resource: `cpu`, `memory` or `ephemeral-storage`.
    Insufficient(&'static str),
    VolumeNodeAffinityConflict,
    BoundToMissingVolume,
    PodAffinity,
    PodAntiAffinity,
    ExistingPodsAntiAffinity,
}

impl Reason {
    /// Whether evicting pods could remove this reason (kube-scheduler's `Unschedulable` as
    /// opposed to `UnschedulableAndUnresolvable`).
    pub fn preemption_might_help(&self) -> bool {
        matches!(
            self,
            Reason::NodePorts
                | Reason::TooManyPods
                | Reason::Insufficient(_)
                | Reason::PodAntiAffinity
                | Reason::ExistingPodsAntiAffinity
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::NodePorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::VolumeNodeAffinityConflict => {
                f.write_str("node(s) had volume node affinity conflict")
            }
            Reason::BoundToMissingVolume => f.write_str(
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
            ),
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingPodsAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// Everything about the pod being scheduled that filters and scores need, computed once per
/// scheduling attempt.
pub(crate) struct PodQuery<'a> {
    pub pod: &'a Pod,
    pub facts: PodFacts,
    pub tolerations: &'a [Toleration],
    node_name: Option<&'a str>,
    node_selector: Option<&'a BTreeMap<String, String>>,
    required_node_affinity: Option<NodeMatcher>,
    pub preferred_node_affinity: Vec<(i64, NodeTermMatcher)>,
    /// Why no node can take the pod whatever its state (kube-scheduler's PreFilter rejection),
    /// or what the pod's volumes require of a node.
    volumes: Result<VolumeState, String>,
    tolerates_unschedulable: bool,
    tolerates_not_ready: bool,
    tolerates_unreachable: bool,
}

impl<'a> PodQuery<'a> {
    pub fn new(pod: &'a Pod, snapshot: &Snapshot) -> Self {
        let spec = pod.spec.as_ref();
        let tolerations = spec
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let node_affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref());
        let required_node_affinity = node_affinity
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| NodeMatcher::new(&s.node_selector_terms));
        let preferred_node_affinity = node_affinity
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), NodeTermMatcher::new(&t.preference)))
            .collect();
        let no_schedule = |key| tolerates(tolerations, key, "", "NoSchedule");
        PodQuery {
            pod,
            facts: PodFacts::new(pod),
            tolerations,
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty()),
            node_selector: spec.and_then(|s| s.node_selector.as_ref()),
            required_node_affinity,
            preferred_node_affinity,
            volumes: volumes::pre_filter(pod, snapshot),
            tolerates_unschedulable: no_schedule("node.kubernetes.io/unschedulable"),
            tolerates_not_ready: no_schedule("node.kubernetes.io/not-ready"),
            tolerates_unreachable: no_schedule("node.kubernetes.io/unreachable"),
        }
    }

    /// The message that makes every node unfit before any node is looked at, if any.
    pub fn pre_filter_rejection(&self) -> Option<&str> {
        self.volumes.as_ref().err().map(String::as_str)
    }

    /// The pod's claims that wait for their first consumer and have no node selected yet.
    pub fn claims_to_select(&self) -> &[String] {
        self.volumes
            .as_ref()
            .map(|v| v.claims_to_select.as_slice())
            .unwrap_or_default()
    }
}

/// The state of one node as the filters see it: normally the snapshot's, or, while preemption
/// tries evicting pods, the node with those pods removed.
pub(crate) struct NodeView<'a> {
    pub info: &'a NodeInfo,
    pub requested: Resources,
    pub pod_count: usize,
    pub used_ports: &'a [HostPort],
}

impl<'a> NodeView<'a> {
    pub fn of(info: &'a NodeInfo) -> Self {
        NodeView {
            info,
            requested: info.requested,
            pod_count: info.pods.len(),
            used_ports: &info.used_ports,
        }
    }
}

/// Runs the filters in kube-scheduler's order and returns the reasons of the first that fails.
/// The caller must have checked [`PodQuery::pre_filter_rejection`].
pub(crate) fn run_filters(
    query: &PodQuery<'_>,
    view: &NodeView<'_>,
    inter_pod: &InterPodState,
) -> Result<(), Vec<Reason>> {
    let info = view.info;
    let single = |r: Result<(), Reason>| r.map_err(|reason| vec![reason]);
    single(node::unschedulable(query, info))?;
    single(node::node_name(query, info))?;
    single(node::ready(query, info))?;
    single(node::taint_toleration(query, info))?;
    single(node::node_affinity(query, info))?;
    single(node::node_ports(query, view))?;
    node::resources_fit(query, view)?;
    if let Ok(state) = &query.volumes {
        single(volumes::filter(&state.requirements, info))?;
    }
    single(inter_pod.filter(query, info.labels()))
}
