//! A DaemonSet's status counts (Kubernetes' `updateDaemonSetStatus`), computed from the cached
//! nodes and the DaemonSet's pods, and when the next pod turns available.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Node;

use crate::util;

use super::placement::node_should_run;
use super::plan::{is_updated, oldest_first, NodePods};

/// The status `ds` should report. Per node that should run a daemon pod, the oldest pod there
/// decides readiness, availability (`minReadySeconds`) and whether it is updated; a pod on a
/// node that should not run one is misscheduled. `observedGeneration` moves to the
/// DaemonSet's generation only when `observed` (the controller acted on this generation).
pub fn compute(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &NodePods,
    hash: &str,
    observed: bool,
    now: jiff::Timestamp,
) -> DaemonSetStatus {
    let old = ds.status.clone().unwrap_or_default();
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let pods = by_node.get(name).filter(|p| !p.is_empty());
        if !node_should_run(ds, node).should_run {
            misscheduled += i32::from(pods.is_some());
            continue;
        }
        desired += 1;
        let Some(pods) = pods else { continue };
        current += 1;
        let Some(pod) = pods.iter().min_by(|a, b| oldest_first(a, b)) else {
            continue;
        };
        if util::is_pod_ready(pod) {
            ready += 1;
            available += i32::from(util::is_pod_available(pod, min_ready, now));
        }
        updated += i32::from(is_updated(pod, hash));
    }
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        updated_number_scheduled: Some(updated),
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        observed_generation: if observed {
            ds.metadata.generation
        } else {
            old.observed_generation
        },
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

/// How long until the first ready pod that is not yet available turns available
/// (`minReadySeconds` after it became ready), so the counts and the rollout move on time.
pub fn next_available_in(
    ds: &DaemonSet,
    by_node: &NodePods,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    if min_ready <= 0 {
        return None;
    }
    by_node
        .values()
        .flatten()
        .filter(|p| util::is_pod_ready(p) && !util::is_pod_available(p, min_ready, now))
        .map(|p| {
            let since = util::pod_condition(p, "Ready")
                .and_then(|c| c.last_transition_time.as_ref())
                .map_or(0, |t| now.as_second() - t.0.as_second());
            let left = (i64::from(min_ready) - since).max(1);
            Duration::from_secs(u64::try_from(left).unwrap_or(1))
        })
        .min()
}
