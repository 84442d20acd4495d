//! Where a DaemonSet's pods belong (Kubernetes' `NodeShouldRunDaemonPod`): the node must match
//! the template's `nodeSelector` and required node affinity, and the pod — with the default
//! daemon tolerations added — must tolerate the node's NoSchedule and NoExecute taints. Also the
//! pod stamped out for one node, pinned there by a `matchFields metadata.name` affinity term so
//! the scheduler binds it, and the node a daemon pod is meant for.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::util;

use super::{REVISION_HASH_LABEL, TEMPLATE_GENERATION_ANNOTATION};

/// The node field daemon pods are pinned by.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether a DaemonSet wants a pod on a node, and whether a pod already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// A daemon pod should run here (selector, affinity and every NoSchedule/NoExecute taint
    /// tolerated).
    pub should_run: bool,
    /// A daemon pod already here may keep running: it fits, or only NoSchedule taints are
    /// untolerated (they keep new pods away but do not evict).
    pub should_continue_running: bool,
}

/// Kubernetes' `NodeShouldRunDaemonPod` for `ds` and `node`.
pub fn node_should_run(ds: &DaemonSet, node: &Node) -> Placement {
    const NOWHERE: Placement = Placement {
        should_run: false,
        should_continue_running: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
    add_default_tolerations(&mut spec);
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return NOWHERE;
    }
    if !fits_node_affinity(&spec, node) {
        return NOWHERE;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints.iter().any(|taint| {
            effects.contains(&taint.effect.as_str())
                && !tolerations.iter().any(|t| tolerates(t, taint))
        })
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return Placement {
            should_run: false,
            should_continue_running: !untolerated(&["NoExecute"]),
        };
    }
    Placement {
        should_run: true,
        should_continue_running: true,
    }
}

/// Kubernetes' `AddOrUpdateDaemonPodTolerations`: daemon pods tolerate the node problems the
/// node lifecycle controller taints for (forever, so they are never evicted for them), and
/// unschedulable nodes; host-network pods also tolerate an unavailable network.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let mut defaults = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        defaults.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in defaults {
        let wanted = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            value: None,
            toleration_seconds: None,
        };
        // Kubernetes' `AddOrUpdateTolerationInPodSpec`: a toleration equal but for its
        // tolerationSeconds is replaced, so the default one holds forever.
        let same = |t: &Toleration| {
            t.key == wanted.key
                && t.operator == wanted.operator
                && t.effect == wanted.effect
                && t.value.as_deref().unwrap_or_default().is_empty()
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = wanted,
            None => tolerations.push(wanted),
        }
    }
}

/// Kubernetes' `Toleration.ToleratesTaint`: an empty key with `Exists` matches every key, an
/// empty effect every effect; the operator defaults to `Equal`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    let key = t.key.as_deref().unwrap_or_default();
    if (!effect.is_empty() && effect != taint.effect) || (!key.is_empty() && key != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// The node carries every `nodeSelector` label and matches one of the required node affinity
/// terms (Kubernetes' `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let selector_fits = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_fits
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| term_matches(t, name, labels))
        })
}

/// A node selector term: its expressions and fields ANDed. An empty term, or one with a
/// requirement that would not pass validation, matches no node.
fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| label_requirement_matches(r, labels) == Some(true))
        && fields
            .iter()
            .all(|r| field_requirement_matches(r, name) == Some(true))
}

/// One label expression (In, NotIn, Exists, DoesNotExist, Gt, Lt); `None` when invalid.
fn label_requirement_matches(
    r: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> Option<bool> {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    let bound = || match values {
        [v] => v.parse::<i64>().ok(),
        _ => None,
    };
    let number = || value.and_then(|v| v.parse::<i64>().ok());
    Some(match r.operator.as_str() {
        "In" if !values.is_empty() => value.is_some_and(|v| values.contains(v)),
        "NotIn" if !values.is_empty() => value.is_none_or(|v| !values.contains(v)),
        "Exists" if values.is_empty() => value.is_some(),
        "DoesNotExist" if values.is_empty() => value.is_none(),
        "Gt" => {
            let b = bound()?;
            number().is_some_and(|n| n > b)
        }
        "Lt" => {
            let b = bound()?;
            number().is_some_and(|n| n < b)
        }
        _ => return None,
    })
}

/// A field expression: only `metadata.name`, In or NotIn with exactly one value.
fn field_requirement_matches(r: &NodeSelectorRequirement, name: &str) -> Option<bool> {
    let [value] = r.values.as_deref()? else {
        return None;
    };
    if r.key != NODE_NAME_FIELD {
        return None;
    }
    match r.operator.as_str() {
        "In" => Some(value == name),
        "NotIn" => Some(value != name),
        _ => None,
    }
}

/// The node a daemon pod is meant for (Kubernetes' `GetTargetNodeName`): its `spec.nodeName`
/// once bound, before that the `matchFields metadata.name In [node]` term it was created with.
pub fn target_node_name(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    required
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([v]) => Some(v.as_str()),
            _ => None,
        })
}

/// The pod `ds` runs on `node`: the template's labels plus the `controller-revision-hash`
/// label, its annotations plus the DaemonSet's generation, the default tolerations, and a
/// required node affinity of exactly `matchFields metadata.name In [node]` (Kubernetes'
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`: the template's own required terms were already
/// checked against the node, so they are replaced). `spec.nodeName` stays empty: the scheduler
/// binds the pod.
pub fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let meta = &ds.metadata;
    let template = &ds.spec.template;
    let tm = template.metadata.clone().unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(
        TEMPLATE_GENERATION_ANNOTATION.into(),
        meta.generation.unwrap_or(0).to_string(),
    );
    let mut spec = template.spec.clone().unwrap_or_default();
    add_default_tolerations(&mut spec);
    pin_to_node(&mut spec, node);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", meta.name.as_deref().unwrap_or_default())),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            finalizers: tm.finalizers,
            owner_references: Some(vec![util::controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Replace the required node affinity terms with `matchFields metadata.name In [node]`,
/// keeping preferred terms and any pod (anti-)affinity.
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}
