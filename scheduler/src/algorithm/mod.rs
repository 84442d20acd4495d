//! The scheduling algorithm: pure functions from a pod and a snapshot of the cluster to a node.
//!
//! It follows kube-scheduler's default profile. [`schedule`] runs the filters (NodeUnschedulable,
//! NodeName, readiness, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! VolumeBinding (bound claims, and claims waiting for their first consumer), InterPodAffinity) over every node of a [`Snapshot`], scores
//! the feasible ones (LeastAllocated, BalancedAllocation, preferred node affinity, preferred
//! inter-pod affinity, spreading of a controller's pods over nodes and zones, PreferNoSchedule
//! taints) with kube-scheduler's weights, and breaks ties at random. When no node fits it
//! returns a [`FitError`] whose text is kube-scheduler's; [`preempt`] then looks for the node
//! where evicting the fewest, least important lower-priority pods makes room.
//!
//! Nothing here does I/O or keeps state between calls: the caller owns the snapshot and adds
//! the pods it binds ("assumes") to it.

mod filters;
mod fit_error;
mod pod_info;
mod preemption;
mod resources;
mod scores;
mod selectors;
mod snapshot;

#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::Pod;
use rand::Rng;

pub use fit_error::FitError;
pub use preemption::{preempt, Preemption};
pub use resources::{parse_milli, parse_value, QuantityError};
pub use snapshot::Snapshot;

use filters::{run_filters, InterPodState, NodeView, PodQuery, Reason};

/// Where a pod should go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node's name.
    pub node: String,
    /// How many nodes passed the filters.
    pub feasible_nodes: usize,
    /// The pod's claims (in its namespace) that wait for their first consumer: the chosen node
    /// goes into their `volume.kubernetes.io/selected-node` annotation before the pod is bound.
    pub claims_to_select: Vec<String>,
}

/// Chooses a node for `pod`: the feasible node with the highest weighted score, a random one
/// among equals (drawn from `rng`, so a seeded generator gives repeatable choices).
///
/// The pod's `spec.nodeName`, if set, restricts it to that node; pods already on nodes are
/// read from `snapshot`. Returns why every node was rejected when none fits.
pub fn schedule(
    pod: &Pod,
    snapshot: &Snapshot,
    rng: &mut impl Rng,
) -> Result<ScheduleResult, FitError> {
    if snapshot.nodes.is_empty() {
        return Err(FitError::no_nodes());
    }
    let query = PodQuery::new(pod, snapshot);
    if let Some(message) = query.pre_filter_rejection() {
        return Err(FitError::pre_filter(snapshot, message));
    }
    let inter_pod = InterPodState::new(&query, snapshot);
    let (feasible, failures) = find_feasible(&query, snapshot, &inter_pod);
    let chosen = match feasible.as_slice() {
        [] => return Err(FitError::filtered(snapshot, &failures)),
        [only] => *only,
        _ => feasible[select_host(&scores::total(&query, snapshot, &feasible), rng)],
    };
    Ok(ScheduleResult {
        node: snapshot.nodes[chosen].name().to_string(),
        feasible_nodes: feasible.len(),
        claims_to_select: query.claims_to_select().to_vec(),
    })
}

/// Node indices that pass every filter, and (index, reasons) for those that do not.
type Filtered = (Vec<usize>, Vec<(usize, Vec<Reason>)>);

fn find_feasible(query: &PodQuery<'_>, snapshot: &Snapshot, inter_pod: &InterPodState) -> Filtered {
    let mut feasible = Vec::with_capacity(snapshot.nodes.len());
    let mut failures = Vec::new();
    for (index, node) in snapshot.nodes.iter().enumerate() {
        match run_filters(query, &NodeView::of(node), inter_pod) {
            Ok(()) => feasible.push(index),
            Err(reasons) => failures.push((index, reasons)),
        }
    }
    (feasible, failures)
}

/// kube-scheduler's `selectHost`: the position of a highest score, each of the equal-highest
/// being equally likely (reservoir sampling).
fn select_host(scores: &[i64], rng: &mut impl Rng) -> usize {
    let mut selected = 0;
    let mut ties = 0u32;
    for (position, &score) in scores.iter().enumerate() {
        if score > scores[selected] {
            selected = position;
            ties = 1;
        } else if score == scores[selected] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                selected = position;
            }
        }
    }
    selected
}
