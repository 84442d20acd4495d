//! Filters that look at one node only: NodeUnschedulable, NodeName, readiness, TaintToleration,
//! NodeAffinity, NodePorts and NodeResourcesFit.

use k8s_openapi::api::core::v1::Toleration;

use super::{NodeView, PodQuery, Reason};
use crate::algorithm::snapshot::{NodeInfo, Readiness};

/// NodeUnschedulable: a cordoned node takes only pods tolerating
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub(crate) fn unschedulable(query: &PodQuery<'_>, node: &NodeInfo) -> Result<(), Reason> {
    if node.unschedulable() && !query.tolerates_unschedulable {
        return Err(Reason::Unschedulable);
    }
    Ok(())
}

/// NodeName: a pod naming a node fits only that node.
pub(crate) fn node_name(query: &PodQuery<'_>, node: &NodeInfo) -> Result<(), Reason> {
    match query.node_name {
        Some(name) if name != node.name() => Err(Reason::NodeName),
        _ => Ok(()),
    }
}

/// Readiness: kube-scheduler sees a node that is not Ready through the
/// `node.kubernetes.io/not-ready` (Ready False) or `node.kubernetes.io/unreachable` (Ready
/// Unknown) NoSchedule taint, so a pod tolerating that taint may still go there.
pub(crate) fn ready(query: &PodQuery<'_>, node: &NodeInfo) -> Result<(), Reason> {
    let tolerated = match node.readiness {
        Readiness::Ready => true,
        Readiness::NotReady => query.tolerates_not_ready,
        Readiness::Unreachable => query.tolerates_unreachable,
    };
    if tolerated {
        Ok(())
    } else {
        Err(Reason::NotReady)
    }
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated; the reason names the
/// first one that is not.
pub(crate) fn taint_toleration(query: &PodQuery<'_>, node: &NodeInfo) -> Result<(), Reason> {
    let untolerated = node.taints().iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerates(
                query.tolerations,
                &taint.key,
                taint.value.as_deref().unwrap_or_default(),
                &taint.effect,
            )
    });
    match untolerated {
        Some(taint) => Err(Reason::UntoleratedTaint {
            key: taint.key.clone(),
            value: taint.value.clone().unwrap_or_default(),
        }),
        None => Ok(()),
    }
}

/// Whether any toleration tolerates the taint `key=value:effect` (Kubernetes'
/// `Toleration.ToleratesTaint`): an empty toleration key with `Exists` matches every key, an
/// empty effect every effect, and the operator defaults to `Equal`.
pub(crate) fn tolerates(tolerations: &[Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|t| {
        let t_effect = t.effect.as_deref().unwrap_or_default();
        let t_key = t.key.as_deref().unwrap_or_default();
        if (!t_effect.is_empty() && t_effect != effect) || (!t_key.is_empty() && t_key != key) {
            return false;
        }
        match t.operator.as_deref().unwrap_or_default() {
            "" | "Equal" => t.value.as_deref().unwrap_or_default() == value,
            "Exists" => true,
            _ => false,
        }
    })
}

/// NodeAffinity: the node carries every `nodeSelector` label and matches one of the required
/// node affinity terms.
pub(crate) fn node_affinity(query: &PodQuery<'_>, node: &NodeInfo) -> Result<(), Reason> {
    let labels = node.labels();
    let selector_matches = query
        .node_selector
        .into_iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let affinity_matches = query
        .required_node_affinity
        .as_ref()
        .is_none_or(|m| m.matches(node.name(), labels));
    if selector_matches && affinity_matches {
        Ok(())
    } else {
        Err(Reason::NodeAffinity)
    }
}

/// NodePorts: none of the pod's host ports may be in use on the node.
pub(crate) fn node_ports(query: &PodQuery<'_>, view: &NodeView<'_>) -> Result<(), Reason> {
    let conflict = query.facts.host_ports.iter().any(|wanted| {
        view.used_ports
            .iter()
            .any(|used| wanted.conflicts_with(used))
    });
    if conflict {
        Err(Reason::NodePorts)
    } else {
        Ok(())
    }
}

/// NodeResourcesFit: room for one more pod, and for the pod's cpu, memory and ephemeral-storage
/// requests next to what the node's pods request. One reason per resource short.
pub(crate) fn resources_fit(query: &PodQuery<'_>, view: &NodeView<'_>) -> Result<(), Vec<Reason>> {
    let allocatable = &view.info.allocatable;
    let wanted = &query.facts.requests.requests;
    let mut reasons = Vec::new();
    if view.pod_count as i64 + 1 > allocatable.pods {
        reasons.push(Reason::TooManyPods);
    }
    let short =
        |want: i64, allocatable: i64, requested: i64| want > 0 && want > allocatable - requested;
    if short(
        wanted.milli_cpu,
        allocatable.resources.milli_cpu,
        view.requested.milli_cpu,
    ) {
        reasons.push(Reason::Insufficient("cpu"));
    }
    if short(
        wanted.memory,
        allocatable.resources.memory,
        view.requested.memory,
    ) {
        reasons.push(Reason::Insufficient("memory"));
    }
    if short(
        wanted.ephemeral_storage,
        allocatable.resources.ephemeral_storage,
        view.requested.ephemeral_storage,
    ) {
        reasons.push(Reason::Insufficient("ephemeral-storage"));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}
