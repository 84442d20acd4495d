//! Helpers every controller needs: label selector matching, controller owner references, pod
//! readiness and availability, and enqueueing an owner when one of its dependents changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};

use crate::runtime::{Change, Informer, Object, ObjectKey, WorkQueue};

/// Whether `labels` match `selector` (Kubernetes semantics: matchLabels AND matchExpressions;
/// an empty selector matches everything).
pub fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(ml) = &selector.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a selector of matchLabels only (`spec.selector` of a ReplicationController, Service)
/// matches `labels`. An empty map matches nothing, as for Services.
pub fn map_selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    !selector.is_empty()
        && labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of<K: Object>(obj: &K) -> Option<&OwnerReference> {
    obj.metadata()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// An owner reference to `owner` with `controller: true` and `blockOwnerDeletion: true`.
pub fn controller_ref<K: Object>(owner: &K) -> OwnerReference {
    let m = owner.metadata();
    OwnerReference {
        api_version: K::API_VERSION.into(),
        kind: K::KIND.into(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the object is being deleted.
pub fn is_terminating<K: Object>(obj: &K) -> bool {
    obj.metadata().deletion_timestamp.is_some()
}

/// The pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    let Some(c) = pod_condition(pod, "Ready").filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    c.last_transition_time
        .as_ref()
        .is_some_and(|t| now.as_second() - t.0.as_second() >= i64::from(min_ready_seconds))
}

pub fn pod_condition<'a>(
    pod: &'a Pod,
    ty: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

/// The pod has finished (Succeeded or Failed) and will not run again.
pub fn is_pod_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// A pod counts towards a replica count: not terminated and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_pod_terminated(pod) && !is_terminating(pod)
}

/// When a dependent of kind `D` changes, queue its controller owner if that owner is of kind
/// `O` (before and after the change, so an owner that lost a dependent hears of it too).
pub fn enqueue_owner<D: Object, O: Object>(dependents: &Informer<D>, queue: &WorkQueue<ObjectKey>) {
    let queue = queue.clone();
    dependents.on_change(move |c: &Change<D>| {
        let mut owners = Vec::with_capacity(2);
        for obj in std::iter::once(c.object()).chain(c.old()) {
            if let Some(r) = controller_of(obj.as_ref()) {
                if r.kind == O::KIND && r.api_version == O::API_VERSION {
                    let ns = obj.metadata().namespace.clone().unwrap_or_default();
                    owners.push(ObjectKey::new(&ns, &r.name));
                }
            }
        }
        for o in owners {
            queue.add(o);
        }
    });
}

/// Queue the key of every changed object of the informer's kind.
pub fn enqueue_self<K: Object>(informer: &Informer<K>, queue: &WorkQueue<ObjectKey>) {
    let queue = queue.clone();
    informer.on_change(move |c: &Change<K>| queue.add(ObjectKey::of(c.object().as_ref())));
}

/// The objects of `K` in `namespace` whose labels match `pred`.
pub fn list_matching<K: Object>(
    informer: &Informer<K>,
    namespace: &str,
    pred: impl Fn(&K) -> bool,
) -> Vec<Arc<K>> {
    informer
        .list_namespace(namespace)
        .into_iter()
        .filter(|o| pred(o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_follow_kubernetes() {
        let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        };
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["a", "b"]),
                req("env", "NotIn", &["prod"]),
                req("track", "Exists", &[]),
                req("legacy", "DoesNotExist", &[]),
            ]),
        };
        let cases = [
            (vec![("app", "web"), ("tier", "a"), ("track", "x")], true),
            (vec![("app", "web"), ("tier", "c"), ("track", "x")], false),
            (vec![("app", "api"), ("tier", "a"), ("track", "x")], false),
            (
                vec![
                    ("app", "web"),
                    ("tier", "b"),
                    ("env", "prod"),
                    ("track", "x"),
                ],
                false,
            ),
            (vec![("app", "web"), ("tier", "b")], false),
            (
                vec![
                    ("app", "web"),
                    ("tier", "b"),
                    ("track", "x"),
                    ("legacy", "1"),
                ],
                false,
            ),
        ];
        for (l, want) in cases {
            assert_eq!(selector_matches(&sel, Some(&labels(&l))), want, "{l:?}");
        }
        assert!(selector_matches(&LabelSelector::default(), None));
        assert!(!map_selector_matches(
            &BTreeMap::new(),
            Some(&labels(&[("a", "b")]))
        ));
        assert!(map_selector_matches(
            &labels(&[("a", "b")]),
            Some(&labels(&[("a", "b"), ("c", "d")]))
        ));
    }
}
