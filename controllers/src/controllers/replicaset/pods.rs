//! Pure pod logic of the replica controllers: which pods to delete first when scaling down
//! (Kubernetes' `ActivePodsWithRanks` without the co-location ranks), the pod a template
//! stamps out, and the status counts of a set of pods.

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::controllers::replicaset::kinds::{ReplicaStatus, Replicated};
use crate::error::{Error, Result};
use crate::util;

/// Orders pods so that the ones to delete first come first, as Kubernetes does:
/// 1. unassigned (no `spec.nodeName`) before assigned;
/// 2. phase Pending before Unknown before Running;
/// 3. not ready before ready;
/// 4. of two ready pods, the more recently ready first (an unknown ready time first);
/// 5. higher container restart counts first;
/// 6. newer `creationTimestamp` first (an unknown one first).
pub fn compare_for_deletion(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let ready_a = util::is_pod_ready(a);
    let ready_b = util::is_pod_ready(b);
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| ready_a.cmp(&ready_b))
        .then_with(|| {
            if ready_a && ready_b {
                later_or_unknown_first(ready_time(a), ready_time(b))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| {
            later_or_unknown_first(
                a.metadata.creation_timestamp.as_ref(),
                b.metadata.creation_timestamp.as_ref(),
            )
        })
}

/// The first `n` pods to delete of `pods`.
pub fn pods_to_delete(pods: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut ranked = pods.to_vec();
    ranked.sort_by(|a, b| compare_for_deletion(a, b));
    ranked.truncate(n);
    ranked
}

/// Kubernetes' `podPhaseToOrdinal`: Pending 0, Unknown 1, Running 2 (anything else 0).
fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn ready_time(p: &Pod) -> Option<&Time> {
    util::pod_condition(p, "Ready")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
}

/// Kubernetes' `afterOrZero`: an unknown time sorts first, otherwise the later time does.
fn later_or_unknown_first(a: Option<&Time>, b: Option<&Time>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.0.cmp(&a.0),
    }
}

fn max_restarts(p: &Pod) -> i32 {
    let Some(s) = &p.status else { return 0 };
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// The pod `owner`'s template describes: named `<owner>-<random>`, with the template's labels,
/// annotations and finalizers, and `owner` as its controller.
pub fn pod_from_template<K: Replicated>(owner: &K) -> Result<Pod> {
    let meta = owner.metadata();
    let name = meta.name.clone().unwrap_or_default();
    let template = owner.pod_template().ok_or_else(|| {
        Error::Invalid(format!(
            "{} {name}: spec.template is required to create pods",
            K::KIND.to_lowercase()
        ))
    })?;
    let tm = template.metadata.clone().unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: meta.namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![util::controller_ref(owner)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// The counts of `status` for the pods `owner` controls (`failure` and `observed_generation`
/// are left to the caller).
pub fn count_pods<K: Replicated>(
    owner: &K,
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> ReplicaStatus {
    let template_labels = owner
        .pod_template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = owner.min_ready_seconds();
    let mut st = ReplicaStatus {
        replicas: pods.len() as i32,
        ..Default::default()
    };
    for p in pods {
        let labels = p.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            st.fully_labeled_replicas += 1;
        }
        if util::is_pod_ready(p) {
            st.ready_replicas += 1;
            if util::is_pod_available(p, min_ready, now) {
                st.available_replicas += 1;
            }
        }
    }
    st
}

/// How long until the first ready-but-not-yet-available pod becomes available, if any will.
pub fn next_available_in(
    pods: &[Arc<Pod>],
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    pods.iter()
        .filter(|p| !util::is_pod_available(p, min_ready_seconds, now))
        .filter_map(|p| ready_time(p))
        .map(|t| {
            let ready_for = now.as_second() - t.0.as_second();
            let left = (i64::from(min_ready_seconds) - ready_for).max(1);
            std::time::Duration::from_secs(left as u64)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    /// An assigned, running, not-ready pod created at `t(0)` with no restarts.
    fn base(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(t(0)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    fn with(name: &str, f: impl FnOnce(&mut Pod)) -> Pod {
        let mut p = base(name);
        f(&mut p);
        p
    }

    fn ready_at(p: &mut Pod, at: Option<Time>) {
        p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: at,
            ..Default::default()
        }]);
    }

    fn phase(p: &mut Pod, ph: &str) {
        p.status.as_mut().unwrap().phase = Some(ph.into());
    }

    fn restarts(p: &mut Pod, n: i32) {
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            restart_count: n,
            ..Default::default()
        }]);
    }

    #[test]
    fn deletion_order_follows_kubernetes() {
        // (deleted first, deleted later, rule)
        let cases = [
            (
                with("a", |p| p.spec.as_mut().unwrap().node_name = None),
                base("b"),
                "unassigned before assigned",
            ),
            (
                with("a", |p| phase(p, "Pending")),
                with("b", |p| phase(p, "Unknown")),
                "Pending before Unknown",
            ),
            (
                with("a", |p| phase(p, "Unknown")),
                base("b"),
                "Unknown before Running",
            ),
            (
                base("a"),
                with("b", |p| ready_at(p, Some(t(5)))),
                "not ready before ready",
            ),
            (
                with("a", |p| ready_at(p, Some(t(50)))),
                with("b", |p| ready_at(p, Some(t(5)))),
                "recently ready before long ready",
            ),
            (
                with("a", |p| ready_at(p, None)),
                with("b", |p| ready_at(p, Some(t(5)))),
                "unknown ready time first",
            ),
            (
                with("a", |p| restarts(p, 3)),
                with("b", |p| restarts(p, 1)),
                "more restarts first",
            ),
            (
                with("a", |p| p.metadata.creation_timestamp = Some(t(9))),
                base("b"),
                "newer before older",
            ),
            (
                with("a", |p| p.metadata.creation_timestamp = None),
                base("b"),
                "unknown creation time first",
            ),
            (
                with("a", |p| p.spec.as_mut().unwrap().node_name = None),
                with("b", |p| phase(p, "Pending")),
                "assignment outranks phase",
            ),
            (
                with("a", |p| restarts(p, 1)),
                with("b", |p| {
                    restarts(p, 0);
                    p.metadata.creation_timestamp = Some(t(99));
                }),
                "restarts outrank age",
            ),
        ];
        for (first, later, rule) in cases {
            assert_eq!(
                compare_for_deletion(&first, &later),
                Ordering::Less,
                "{rule}"
            );
            assert_eq!(
                compare_for_deletion(&later, &first),
                Ordering::Greater,
                "{rule}"
            );
        }
        assert_eq!(
            compare_for_deletion(&base("a"), &base("b")),
            Ordering::Equal
        );
    }

    #[test]
    fn pods_to_delete_takes_the_first_ranked() {
        let pods: Vec<Arc<Pod>> = [
            base("running"),
            with("pending", |p| phase(p, "Pending")),
            with("ready", |p| ready_at(p, Some(t(1)))),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let names = |v: Vec<Arc<Pod>>| -> Vec<String> {
            v.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
        };
        assert_eq!(names(pods_to_delete(&pods, 2)), ["pending", "running"]);
        assert_eq!(names(pods_to_delete(&pods, 5)).len(), 3);
    }
}
