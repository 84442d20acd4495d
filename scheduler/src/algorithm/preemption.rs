//! Preemption (kube-scheduler's DefaultPreemption): find the node where evicting lower-priority
//! pods lets the pod fit, evicting as few and as unimportant pods as possible.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::filters::{run_filters, InterPodState, NodeView, PodQuery, Reason};
use super::find_feasible;
use super::pod_info::{HostPort, PodInfo};
use super::resources::Resources;
use super::snapshot::Snapshot;

/// Pods to evict so that a pod fits on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preemption {
    /// The node the pod will fit on once the victims are gone (its nominated node).
    pub node: String,
    /// The victims as (namespace, name), most important first.
    pub victims: Vec<(String, String)>,
}

/// Looks for a node where evicting pods of lower priority than `pod` makes it fit every filter.
///
/// On each node rejected only for reasons pods cause, all lower-priority pods are removed; if
/// the pod then fits, they are added back one by one, most important first (higher priority,
/// then earlier start), keeping each that still leaves room; the others are the victims. Among
/// such nodes the choice is kube-scheduler's: the lowest highest-victim priority, then the
/// smallest sum of victim priorities, then the fewest victims, then the latest start of the
/// highest-priority victims, then the first node by name.
///
/// `priority_of` gives a pod's priority (normally `spec.priority`, default 0) and is used for
/// `pod` as well. Returns `None` when the pod's `preemptionPolicy` is `Never`, when it already
/// fits somewhere, or when no eviction of lower-priority pods would help; pods of equal or
/// higher priority are never victims.
pub fn preempt(
    pod: &Pod,
    snapshot: &Snapshot,
    priority_of: impl Fn(&Pod) -> i32,
) -> Option<Preemption> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return None;
    }
    let query = PodQuery::new(pod, snapshot);
    if query.pre_filter_rejection().is_some() {
        return None;
    }
    let inter_pod = InterPodState::new(&query, snapshot);
    let (feasible, failures) = find_feasible(&query, snapshot, &inter_pod);
    if !feasible.is_empty() {
        return None;
    }
    let priority = priority_of(pod);
    let mut best: Option<Candidate<'_>> = None;
    for (index, reasons) in &failures {
        if !reasons.iter().all(Reason::preemption_might_help) {
            continue;
        }
        let Some(candidate) =
            select_victims(&query, snapshot, *index, &inter_pod, priority, &priority_of)
        else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|b| candidate.cmp_preference(b) == Ordering::Less)
        {
            best = Some(candidate);
        }
    }
    best.map(|candidate| Preemption {
        node: snapshot.nodes[candidate.node].name().to_string(),
        victims: candidate
            .victims
            .iter()
            .map(|v| (v.info.facts.namespace.clone(), v.info.facts.name.clone()))
            .collect(),
    })
}

/// A pod considered for eviction.
struct Victim<'a> {
    info: &'a Arc<PodInfo>,
    priority: i32,
}

impl Victim<'_> {
    /// The pod's start time; `None` (not started) counts as now, i.e. later than any time.
    fn start(&self) -> StartTime<'_> {
        StartTime(
            self.info
                .pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref()),
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct StartTime<'a>(Option<&'a Time>);

impl Ord for StartTime<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.0, other.0) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
}

impl PartialOrd for StartTime<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A node where preemption works, and its victims (most important first).
struct Candidate<'a> {
    node: usize,
    victims: Vec<Victim<'a>>,
}

impl Candidate<'_> {
    /// `Less` when `self` is the better choice (kube-scheduler's `pickOneNodeForPreemption`).
    fn cmp_preference(&self, other: &Self) -> Ordering {
        let highest = |c: &Self| c.victims[0].priority;
        // Kubernetes shifts each priority by MaxInt32 + 1 so that all are positive: fewer
        // victims win over a smaller sum of negative priorities.
        let sum = |c: &Self| -> i64 {
            c.victims
                .iter()
                .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
                .sum()
        };
        highest(self)
            .cmp(&highest(other))
            .then_with(|| sum(self).cmp(&sum(other)))
            .then_with(|| self.victims.len().cmp(&other.victims.len()))
            .then_with(|| {
                other
                    .earliest_highest_start()
                    .cmp(&self.earliest_highest_start())
            })
    }

    /// The earliest start among the highest-priority victims (the later, the better).
    fn earliest_highest_start(&self) -> Option<StartTime<'_>> {
        let top = self.victims[0].priority;
        self.victims
            .iter()
            .take_while(|v| v.priority == top)
            .map(Victim::start)
            .min()
    }
}

/// kube-scheduler's `SelectVictimsOnNode`: `None` when the pod does not fit even with every
/// lower-priority pod gone.
fn select_victims<'a>(
    query: &PodQuery<'_>,
    snapshot: &'a Snapshot,
    index: usize,
    inter_pod: &InterPodState,
    priority: i32,
    priority_of: &impl Fn(&Pod) -> i32,
) -> Option<Candidate<'a>> {
    let node = &snapshot.nodes[index];
    let mut potential: Vec<Victim<'a>> = node
        .pods
        .iter()
        .map(|info| Victim {
            info,
            priority: priority_of(&info.pod),
        })
        .filter(|v| v.priority < priority)
        .collect();
    if potential.is_empty() {
        return None;
    }
    // Most important first: higher priority, then earlier start.
    potential.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.start().cmp(&b.start()))
    });

    let mut state = WhatIf {
        requested: node.requested,
        pod_count: node.pods.len(),
        used_ports: node.used_ports.clone(),
        inter_pod: inter_pod.clone(),
    };
    for victim in &potential {
        state.remove(query, victim.info, node.labels());
    }
    let fits = |state: &WhatIf| {
        let view = NodeView {
            info: node,
            requested: state.requested,
            pod_count: state.pod_count,
            used_ports: &state.used_ports,
        };
        run_filters(query, &view, &state.inter_pod).is_ok()
    };
    if !fits(&state) {
        return None;
    }
    let mut victims = Vec::new();
    for victim in potential {
        state.add(query, victim.info, node.labels());
        if !fits(&state) {
            state.remove(query, victim.info, node.labels());
            victims.push(victim);
        }
    }
    // Every pod could stay: the pod fits without preemption, which the caller ruled out, so
    // this node is not a preemption candidate (Kubernetes expects at least one victim).
    if victims.is_empty() {
        return None;
    }
    Some(Candidate {
        node: index,
        victims,
    })
}

/// A node's state with some of its pods removed.
struct WhatIf {
    requested: Resources,
    pod_count: usize,
    used_ports: Vec<HostPort>,
    inter_pod: InterPodState,
}

impl WhatIf {
    fn remove(&mut self, query: &PodQuery<'_>, info: &PodInfo, labels: &BTreeMap<String, String>) {
        self.requested.sub(&info.facts.requests.requests);
        self.pod_count -= 1;
        for port in &info.facts.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        self.inter_pod.update_with_pod(query, info, labels, -1);
    }

    fn add(&mut self, query: &PodQuery<'_>, info: &PodInfo, labels: &BTreeMap<String, String>) {
        self.requested.add(&info.facts.requests.requests);
        self.pod_count += 1;
        self.used_ports
            .extend(info.facts.host_ports.iter().cloned());
        self.inter_pod.update_with_pod(query, info, labels, 1);
    }
}
