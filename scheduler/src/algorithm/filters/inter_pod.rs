//! InterPodAffinity's required terms: the incoming pod's affinity and anti-affinity, and the
//! anti-affinity of pods already placed, counted per topology pair once per scheduling attempt
//! (kube-scheduler's PreFilter state) so that each node is checked with a few lookups.

use std::collections::{BTreeMap, HashMap};

use super::{PodQuery, Reason};
use crate::algorithm::pod_info::PodInfo;
use crate::algorithm::snapshot::Snapshot;

/// topology key → topology value → number of matching pods (entries never hold zero).
type TopologyCounts = HashMap<String, HashMap<String, i64>>;

/// The counts the required inter-pod filter checks nodes against.
#[derive(Clone, Debug, Default)]
pub(crate) struct InterPodState {
    /// Pods matching all of the incoming pod's required affinity terms, per term's topology.
    affinity: TopologyCounts,
    /// Pods matching each of the incoming pod's required anti-affinity terms.
    anti_affinity: TopologyCounts,
    /// Placed pods whose required anti-affinity terms match the incoming pod.
    existing_anti_affinity: TopologyCounts,
    /// Whether the incoming pod matches all of its own required affinity terms.
    self_affine: bool,
}

impl InterPodState {
    pub fn new(query: &PodQuery<'_>, snapshot: &Snapshot) -> Self {
        let terms = &query.facts.affinity;
        let mut state = InterPodState {
            self_affine: !terms.required_affinity.is_empty()
                && terms.required_affinity.iter().all(|t| t.matches(query.pod)),
            ..Default::default()
        };
        if snapshot.pods_with_required_anti_affinity > 0 {
            for node in &snapshot.nodes {
                for existing in &node.pods_with_required_anti_affinity {
                    state.count_existing_anti_affinity(query, existing, node.labels(), 1);
                }
            }
        }
        if !terms.required_affinity.is_empty() || !terms.required_anti_affinity.is_empty() {
            for node in &snapshot.nodes {
                for existing in &node.pods {
                    state.count_incoming_terms(query, existing, node.labels(), 1);
                }
            }
        }
        state
    }

    /// Adds (`delta` 1) or removes (-1) a placed pod's contribution, for preemption's what-ifs
    /// (kube-scheduler's PreFilter AddPod / RemovePod).
    pub fn update_with_pod(
        &mut self,
        query: &PodQuery<'_>,
        existing: &PodInfo,
        node_labels: &BTreeMap<String, String>,
        delta: i64,
    ) {
        self.count_existing_anti_affinity(query, existing, node_labels, delta);
        self.count_incoming_terms(query, existing, node_labels, delta);
    }

    fn count_existing_anti_affinity(
        &mut self,
        query: &PodQuery<'_>,
        existing: &PodInfo,
        node_labels: &BTreeMap<String, String>,
        delta: i64,
    ) {
        for term in &existing.facts.affinity.required_anti_affinity {
            if term.matches(query.pod) {
                bump(
                    &mut self.existing_anti_affinity,
                    &term.topology_key,
                    node_labels,
                    delta,
                );
            }
        }
    }

    fn count_incoming_terms(
        &mut self,
        query: &PodQuery<'_>,
        existing: &PodInfo,
        node_labels: &BTreeMap<String, String>,
        delta: i64,
    ) {
        let terms = &query.facts.affinity;
        if !terms.required_affinity.is_empty()
            && terms
                .required_affinity
                .iter()
                .all(|t| t.matches(&existing.pod))
        {
            for term in &terms.required_affinity {
                bump(&mut self.affinity, &term.topology_key, node_labels, delta);
            }
        }
        for term in &terms.required_anti_affinity {
            if term.matches(&existing.pod) {
                bump(
                    &mut self.anti_affinity,
                    &term.topology_key,
                    node_labels,
                    delta,
                );
            }
        }
    }

    /// InterPodAffinity Filter, checked in kube-scheduler's order: the pod's affinity, its
    /// anti-affinity, then the anti-affinity of pods already placed.
    pub fn filter(
        &self,
        query: &PodQuery<'_>,
        node_labels: &BTreeMap<String, String>,
    ) -> Result<(), Reason> {
        let terms = &query.facts.affinity;
        if !terms.required_affinity.is_empty() {
            let mut pods_exist = true;
            for term in &terms.required_affinity {
                let Some(value) = node_labels.get(&term.topology_key) else {
                    return Err(Reason::PodAffinity);
                };
                if count(&self.affinity, &term.topology_key, value) <= 0 {
                    pods_exist = false;
                }
            }
            // The first pod of a group with affinity to itself may go anywhere its topology
            // labels exist, as long as no pod matches the terms yet.
            let first_of_its_group = self.affinity.is_empty() && self.self_affine;
            if !pods_exist && !first_of_its_group {
                return Err(Reason::PodAffinity);
            }
        }
        if !self.anti_affinity.is_empty() {
            for term in &terms.required_anti_affinity {
                if let Some(value) = node_labels.get(&term.topology_key) {
                    if count(&self.anti_affinity, &term.topology_key, value) > 0 {
                        return Err(Reason::PodAntiAffinity);
                    }
                }
            }
        }
        if !self.existing_anti_affinity.is_empty()
            && node_labels
                .iter()
                .any(|(key, value)| count(&self.existing_anti_affinity, key, value) > 0)
        {
            return Err(Reason::ExistingPodsAntiAffinity);
        }
        Ok(())
    }
}

fn count(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts
        .get(key)
        .and_then(|values| values.get(value))
        .copied()
        .unwrap_or(0)
}

/// Adds `delta` to the pair (key, the node's value for key); nodes without the key add nothing.
fn bump(
    counts: &mut TopologyCounts,
    key: &str,
    node_labels: &BTreeMap<String, String>,
    delta: i64,
) {
    let Some(value) = node_labels.get(key) else {
        return;
    };
    let values = counts.entry(key.to_string()).or_default();
    let entry = values.entry(value.clone()).or_default();
    *entry += delta;
    if *entry == 0 {
        values.remove(value);
        if values.is_empty() {
            counts.remove(key);
        }
    }
}
