//! What the scheduler derives from a pod once, so that filtering and scoring never re-parse it:
//! requests, host ports, controller owner and compiled pod (anti-)affinity terms.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use super::resources::PodRequests;
use super::selectors::{LabelMatcher, NO_LABELS};

/// A pod held by the snapshot, with its derived facts.
#[derive(Debug)]
pub(crate) struct PodInfo {
    pub pod: Pod,
    pub facts: PodFacts,
}

impl PodInfo {
    pub fn new(pod: Pod) -> Self {
        let facts = PodFacts::new(&pod);
        PodInfo { pod, facts }
    }
}

/// The facts derived from a pod.
#[derive(Debug)]
pub(crate) struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub requests: PodRequests,
    pub host_ports: Vec<HostPort>,
    /// The uid of the controller owner (`ownerReferences[].controller: true`).
    pub owner_uid: Option<String>,
    pub terminating: bool,
    pub affinity: AffinityTerms,
}

impl PodFacts {
    pub fn new(pod: &Pod) -> Self {
        let namespace = namespace_of(pod).to_string();
        let spec = pod.spec.as_ref();
        let host_ports = spec
            .into_iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|port| *port > 0)?;
                Some(HostPort::new(
                    p.host_ip.as_deref(),
                    p.protocol.as_deref(),
                    port,
                ))
            })
            .collect();
        let owner_uid = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone());
        let affinity = AffinityTerms::new(pod, &namespace);
        PodFacts {
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace,
            requests: PodRequests::of(spec),
            host_ports,
            owner_uid,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            affinity,
        }
    }
}

/// A pod's namespace; Kubernetes' `default` when the object carries none.
pub(crate) fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// A pod's labels (empty when it has none).
pub(crate) fn labels_of(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// A host port a container binds: `hostIP` defaults to 0.0.0.0 and `protocol` to TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    ip: String,
    protocol: String,
    port: i32,
}

const BIND_ALL: &str = "0.0.0.0";

impl HostPort {
    pub fn new(ip: Option<&str>, protocol: Option<&str>, port: i32) -> Self {
        HostPort {
            ip: ip
                .filter(|ip| !ip.is_empty())
                .unwrap_or(BIND_ALL)
                .to_string(),
            protocol: protocol
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP")
                .to_string(),
            port,
        }
    }

    /// Kubernetes' `HostPortInfo.CheckConflict`: the same protocol and port conflict when either
    /// side binds 0.0.0.0 or both bind the same address.
    pub fn conflicts_with(&self, used: &HostPort) -> bool {
        self.port == used.port
            && self.protocol == used.protocol
            && (self.ip == BIND_ALL || used.ip == BIND_ALL || self.ip == used.ip)
    }
}

/// A pod's compiled inter-pod affinity and anti-affinity terms.
#[derive(Debug, Default)]
pub(crate) struct AffinityTerms {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
}

impl AffinityTerms {
    fn new(pod: &Pod, namespace: &str) -> Self {
        let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
            return AffinityTerms::default();
        };
        let required = |terms: Option<&Vec<PodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, namespace))
                .collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .filter(|t| t.weight != 0)
                .map(|t| WeightedAffinityTerm {
                    weight: i64::from(t.weight),
                    term: AffinityTerm::new(&t.pod_affinity_term, namespace),
                })
                .collect()
        };
        let pod_affinity = affinity.pod_affinity.as_ref();
        let anti_affinity = affinity.pod_anti_affinity.as_ref();
        AffinityTerms {
            required_affinity: required(pod_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(anti_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(pod_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(anti_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    /// Whether the pod has any inter-pod term (Kubernetes' "pod with affinity").
    pub fn any(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    pub fn any_preferred(&self) -> bool {
        !(self.preferred_affinity.is_empty() && self.preferred_anti_affinity.is_empty())
    }
}

/// A compiled `PodAffinityTerm`: which pods it selects and the topology it spans.
#[derive(Debug)]
pub(crate) struct AffinityTerm {
    namespaces: Vec<String>,
    /// An empty `namespaceSelector` (`{}`) selects every namespace. A non-empty one would need
    /// namespace labels, which the snapshot does not hold; it selects nothing beyond `namespaces`.
    all_namespaces: bool,
    selector: LabelMatcher,
    pub topology_key: String,
}

impl AffinityTerm {
    /// `namespace` is that of the pod owning the term: the default when the term names no
    /// namespace and has no namespace selector.
    fn new(term: &PodAffinityTerm, namespace: &str) -> Self {
        let listed = term.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            vec![namespace.to_string()]
        } else {
            listed
        };
        let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
        });
        AffinityTerm {
            namespaces,
            all_namespaces,
            selector: LabelMatcher::new(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether the term selects `pod` (namespace and labels; topology is checked by callers).
    pub fn matches(&self, pod: &Pod) -> bool {
        (self.all_namespaces || self.namespaces.iter().any(|n| n == namespace_of(pod)))
            && self.selector.matches(labels_of(pod))
    }
}

/// A preferred term and its weight.
#[derive(Debug)]
pub(crate) struct WeightedAffinityTerm {
    pub weight: i64,
    pub term: AffinityTerm,
}
