//! The DaemonSet controller's decisions, computed from cached nodes and pods without writing
//! anything: which nodes need a daemon pod and which pods must go (Kubernetes'
//! `podsShouldBeOnNode`), and which old pods a rolling update replaces next (Kubernetes'
//! `rollingUpdate`, with and without surge).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::error::{Error, Result};
use crate::util;

use super::backoff::FailedPodBackoff;
use super::placement::{node_should_run, target_node_name};
use super::REVISION_HASH_LABEL;

/// A DaemonSet's pods grouped by the node each is meant for.
pub type NodePods = BTreeMap<String, Vec<Arc<Pod>>>;

/// Group `pods` by target node (Kubernetes' `getNodesToDaemonPods`), leaving out pods that
/// are both finished and being deleted — nothing is left to do with them — and pods that name
/// no node.
pub fn pods_by_node(pods: &[Arc<Pod>]) -> NodePods {
    let mut by_node = NodePods::new();
    for pod in pods {
        if util::is_pod_terminated(pod) && util::is_terminating(pod.as_ref()) {
            continue;
        }
        if let Some(node) = target_node_name(pod) {
            by_node
                .entry(node.to_string())
                .or_default()
                .push(pod.clone());
        }
    }
    by_node
}

/// Kubernetes' `podByCreationTimestampAndPhase`: bound pods first, then the oldest, then by
/// name.
pub fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    bound(b)
        .cmp(&bound(a))
        .then_with(|| {
            let ts = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ts(a).cmp(&ts(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Whether a pod runs the DaemonSet's current template.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .is_some_and(|h| h == hash)
}

/// What the core loop does this round.
#[derive(Debug, Default)]
pub struct ManagePlan {
    /// Nodes that get a new daemon pod.
    pub create_on: Vec<String>,
    /// Pods to delete: extras, pods on nodes that no longer want them, finished pods.
    pub delete: Vec<Arc<Pod>>,
    /// Failed pods among `delete`, with their node (reported as FailedDaemonPod).
    pub failed: Vec<(Arc<Pod>, String)>,
    /// Failed pods held back by the back-off: look again after this long.
    pub retry_after: Option<Duration>,
}

/// Kubernetes' `manage` decisions for every node, plus unbound pods meant for nodes that no
/// longer exist (the pod GC only removes bound ones).
pub fn manage(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &NodePods,
    hash: &str,
    surge: bool,
    now: jiff::Timestamp,
    backoff: &FailedPodBackoff,
) -> ManagePlan {
    let mut plan = ManagePlan::default();
    // Kubernetes keys the back-off by the DaemonSet's uid and observed generation, so an
    // update starts afresh.
    let generation = ds.status.as_ref().and_then(|s| s.observed_generation);
    let owner = format!(
        "{}/{}",
        ds.metadata.uid.as_deref().unwrap_or_default(),
        generation.unwrap_or(0)
    );
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let placement = node_should_run(ds, node);
        let pods = by_node.get(name);
        match pods {
            None if placement.should_run => plan.create_on.push(name.to_string()),
            Some(pods) if placement.should_continue_running => {
                let mut running = Vec::new();
                for pod in pods.iter().filter(|p| !util::is_terminating(p.as_ref())) {
                    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                        Some("Failed") => {
                            // The DaemonSet may be fighting a node agent that rejects its pods:
                            // back off instead of looping hot.
                            let key = (owner.clone(), name.to_string());
                            if let Some(delay) = backoff.in_backoff(&key, now) {
                                plan.retry_after = Some(
                                    plan.retry_after.map_or(delay, |d: Duration| d.min(delay)),
                                );
                                continue;
                            }
                            backoff.next(&key, now);
                            plan.failed.push((pod.clone(), name.to_string()));
                            plan.delete.push(pod.clone());
                        }
                        Some("Succeeded") => plan.delete.push(pod.clone()),
                        _ => running.push(pod.clone()),
                    }
                }
                running.sort_by(|a, b| oldest_first(a, b));
                if surge {
                    plan.delete
                        .extend(surge_extras(&running, hash, min_ready, now));
                } else {
                    plan.delete.extend(running.into_iter().skip(1));
                }
            }
            Some(pods) if !placement.should_continue_running => plan.delete.extend(
                pods.iter()
                    .filter(|p| !util::is_terminating(p.as_ref()))
                    .cloned(),
            ),
            _ => {}
        }
    }
    let known: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for (node, pods) in by_node {
        if known.contains(&node.as_str()) {
            continue;
        }
        plan.delete.extend(
            pods.iter()
                .filter(|p| {
                    let bound = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
                    bound.is_none_or(str::is_empty) && !util::is_terminating(p.as_ref())
                })
                .cloned(),
        );
    }
    plan
}

/// With surge, a node keeps two pods only while the oldest current-template pod is not yet
/// available and the oldest old-template pod is still ready; every other pod goes.
fn surge_extras(
    running: &[Arc<Pod>],
    hash: &str,
    min_ready: i32,
    now: jiff::Timestamp,
) -> Vec<Arc<Pod>> {
    let (mut oldest_new, mut oldest_old) = (None::<&Arc<Pod>>, None::<&Arc<Pod>>);
    let mut extras = Vec::new();
    for pod in running {
        let slot = if is_updated(pod, hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            extras.push(pod.clone());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !util::is_pod_ready(old) || util::is_pod_available(new, min_ready, now) {
            extras.push(old.clone());
        }
    }
    extras
}

/// The rolling update's fenceposts for `desired` nodes: (maxSurge, maxUnavailable), both
/// rounded up from percentages; when both come to 0, one pod may be unavailable.
pub fn fenceposts(ds: &DaemonSet, desired: i32) -> Result<(i32, i32)> {
    let strategy = ds.spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let surge = rolling
        .and_then(|r| r.max_surge.as_ref())
        .map_or(Ok(0), |v| scaled(v, desired))?;
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .map_or(Ok(1), |v| scaled(v, desired))?;
    if desired > 0 && surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// Whether a node may hold an old and a new pod at once during an update.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    is_rolling_update(ds) && fenceposts(ds, 1).is_ok_and(|(surge, _)| surge > 0)
}

/// The update strategy is RollingUpdate (the default) rather than OnDelete.
pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t.is_empty() || t == "RollingUpdate")
}

/// Kubernetes' `GetScaledValueFromIntOrPercent`, rounding up.
fn scaled(v: &IntOrString, total: i32) -> Result<i32> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "daemonset spec.updateStrategy.rollingUpdate: invalid value {s:?}: want \
                         an integer or a percentage such as \"10%\""
                    ))
                })?;
            let value = (percent * i64::from(total) + 99).div_euclid(100);
            Ok(value.clamp(0, i64::from(i32::MAX)) as i32)
        }
    }
}

/// What the rolling update does this round.
#[derive(Debug, Default, PartialEq)]
pub struct RollingPlan {
    pub delete: Vec<Arc<Pod>>,
    /// Nodes that get a new-template pod next to their old one (surge only).
    pub create_on: Vec<String>,
}

/// Kubernetes' `rollingUpdate`. Without surge, old pods are deleted (the core loop then
/// creates their replacements) while fewer than maxUnavailable nodes are unavailable; an
/// unavailable old pod is replaced at once. With surge, new pods are created next to old ones,
/// at most maxSurge at a time, and an old pod goes once the new one is available.
pub fn rolling_update(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &NodePods,
    hash: &str,
    now: jiff::Timestamp,
) -> Result<RollingPlan> {
    let mut by_node = pods.clone();
    let mut desired = 0;
    let mut should_run = BTreeMap::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let run = node_should_run(ds, node).should_run;
        if run {
            desired += 1;
            by_node.entry(name.clone()).or_default();
        }
        should_run.insert(name, run);
    }
    let (max_surge, max_unavailable) = fenceposts(ds, desired)?;
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| util::is_pod_available(p, min_ready, now);
    if max_surge == 0 {
        let (mut unavailable, mut replace, mut candidates) = (0, Vec::new(), Vec::new());
        for pods in by_node.values() {
            let Some((new, old)) = split_by_template(pods, hash) else {
                // Extra pods: the core loop trims them; count the node as unavailable.
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => unavailable += i32::from(!available(new)),
                (None, Some(old)) if !available(old) => {
                    replace.push(old.clone());
                    unavailable += 1;
                }
                (None, Some(_)) if unavailable >= max_unavailable => {}
                (None, Some(old)) => candidates.push(old.clone()),
            }
        }
        let room = usize::try_from(max_unavailable - unavailable).unwrap_or(0);
        replace.extend(candidates.into_iter().take(room));
        return Ok(RollingPlan {
            delete: replace,
            create_on: Vec::new(),
        });
    }
    let mut plan = RollingPlan::default();
    let (mut surging, mut available_nodes) = (0, 0);
    let (mut allowed, mut candidates, mut sunset) = (Vec::new(), Vec::new(), Vec::new());
    for (name, pods) in &by_node {
        let Some((new, old)) = split_by_template(pods, hash) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(|p| available(p)) {
            available_nodes += 1;
        }
        let runs_here = should_run.get(name).copied().unwrap_or(false);
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if runs_here {
                    allowed.push(name.clone());
                } else {
                    plan.delete.push(old.clone());
                }
            }
            (None, Some(old)) if !runs_here => sunset.push(old.clone()),
            (None, Some(_)) if surging >= max_surge => {}
            (None, Some(_)) => candidates.push(name.clone()),
            (Some(new), Some(_)) if !available(new) => surging += 1,
            (Some(_), Some(old)) => plan.delete.push(old.clone()),
        }
    }
    // Pods on nodes the DaemonSet no longer wants go only as far as other nodes make up for
    // them, so the application never drops below its desired availability.
    let spare = usize::try_from(available_nodes - desired).unwrap_or(0);
    plan.delete.extend(sunset.into_iter().take(spare));
    let room = usize::try_from(max_surge - surging).unwrap_or(0);
    plan.create_on = allowed;
    plan.create_on.extend(candidates.into_iter().take(room));
    Ok(plan)
}

/// A node's current-template pod and old-template pod, each if any.
type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// The one current-template pod and the one old-template pod on a node (Kubernetes'
/// `findUpdatedPodsOnNode`), ignoring pods being deleted; `None` when there are more.
fn split_by_template<'a>(pods: &'a [Arc<Pod>], hash: &str) -> Option<NewAndOld<'a>> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !util::is_terminating(p.as_ref())) {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}
