//! Describing the replicated workloads: Deployments, ReplicaSets and ReplicationControllers;
//! and the pod-template comparison that tells a Deployment's new ReplicaSet from its old ones.

use serde_json::Value;

use super::fields::{
    arr, format_label_selector, format_labels, int, int_or_string, label_selector_string,
    map_pairs, s, time,
};
use super::layout::{self, w, Clock, Out};
use super::pod;

/// The label every ReplicaSet a Deployment creates carries, and its template does not.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// How many of a controller's pods are in each phase.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PodCounts {
    pub running: usize,
    pub waiting: usize,
    pub succeeded: usize,
    pub failed: usize,
}

impl PodCounts {
    /// Count the pods controlled by the object with `uid`.
    pub fn of(pods: &[Value], uid: &str) -> PodCounts {
        let mut c = PodCounts::default();
        for p in pods {
            let controlled = arr(p, "/metadata/ownerReferences").iter().any(|r| {
                r.get("controller").and_then(Value::as_bool) == Some(true) && s(r, "/uid") == uid
            });
            if !controlled {
                continue;
            }
            match s(p, "/status/phase") {
                "Running" => c.running += 1,
                "Pending" => c.waiting += 1,
                "Succeeded" => c.succeeded += 1,
                "Failed" => c.failed += 1,
                _ => {}
            }
        }
        c
    }
}

/// A pod template without the pod-template-hash label, for comparing templates.
pub fn template_without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty() {
            if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("labels");
            }
        }
    }
    t
}

/// Whether two pod templates are equal apart from the pod-template-hash label.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    template_without_hash(a) == template_without_hash(b)
}

/// Split a Deployment's ReplicaSets into the new one (the oldest whose template matches the
/// Deployment's) and the old ones that still have replicas, as kubectl's deployment util does.
pub fn new_and_old_replica_sets<'a>(
    deployment: &Value,
    replica_sets: &'a [Value],
) -> (Option<&'a Value>, Vec<&'a Value>) {
    let mut sorted: Vec<&Value> = replica_sets.iter().collect();
    sorted.sort_by_key(|rs| {
        (
            time(rs, "/metadata/creationTimestamp"),
            s(rs, "/metadata/name").to_string(),
        )
    });
    let template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let new = sorted.iter().copied().find(|rs| {
        equal_ignore_hash(
            rs.pointer("/spec/template").unwrap_or(&Value::Null),
            &template,
        )
    });
    let old = sorted
        .into_iter()
        .filter(|rs| new.is_none_or(|n| s(n, "/metadata/uid") != s(rs, "/metadata/uid")))
        .filter(|rs| int(rs, "/spec/replicas") != 0)
        .collect();
    (new, old)
}

fn replica_sets_by_labels(list: &[&Value]) -> String {
    if list.is_empty() {
        return "<none>".into();
    }
    list.iter()
        .map(|rs| {
            format!(
                "{} ({}/{} replicas created)",
                s(rs, "/metadata/name"),
                int(rs, "/status/replicas"),
                int(rs, "/spec/replicas")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn conditions_table(w: &mut Out, obj: &Value) {
    let conditions = arr(obj, "/status/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n");
        w.write(1, "----\t------\t------\n");
        for c in conditions {
            w!(
                w,
                1,
                "{} \t{}\t{}\n",
                s(c, "/type"),
                s(c, "/status"),
                s(c, "/reason")
            );
        }
    }
}

/// `kubectl describe deployment`.
pub fn describe_deployment(
    d: &Value,
    new_rs: Option<&Value>,
    old_rss: &[&Value],
    events: Option<&[Value]>,
    clock: &Clock,
) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(d, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(d, "/metadata/namespace"));
    w!(
        w,
        0,
        "CreationTimestamp:\t{}\n",
        clock.rfc1123z(time(d, "/metadata/creationTimestamp"))
    );
    layout::labels_and_annotations(&mut w, d);
    w!(
        w,
        0,
        "Selector:\t{}\n",
        label_selector_string(d.pointer("/spec/selector").unwrap_or(&Value::Null))
    );
    w!(
        w,
        0,
        "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable\n",
        d.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        int(d, "/status/updatedReplicas"),
        int(d, "/status/replicas"),
        int(d, "/status/availableReplicas"),
        int(d, "/status/unavailableReplicas")
    );
    w!(w, 0, "StrategyType:\t{}\n", s(d, "/spec/strategy/type"));
    w!(
        w,
        0,
        "MinReadySeconds:\t{}\n",
        int(d, "/spec/minReadySeconds")
    );
    if d.pointer("/spec/strategy/rollingUpdate")
        .is_some_and(Value::is_object)
    {
        w!(
            w,
            0,
            "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
            int_or_string(d, "/spec/strategy/rollingUpdate/maxUnavailable"),
            int_or_string(d, "/spec/strategy/rollingUpdate/maxSurge")
        );
    }
    pod::pod_template(&mut w, d.pointer("/spec/template"));
    conditions_table(&mut w, d);
    if new_rs.is_some() || !old_rss.is_empty() {
        w!(
            w,
            0,
            "OldReplicaSets:\t{}\n",
            replica_sets_by_labels(old_rss)
        );
        w!(
            w,
            0,
            "NewReplicaSet:\t{}\n",
            replica_sets_by_labels(&new_rs.into_iter().collect::<Vec<_>>())
        );
    }
    layout::events(&mut w, events, clock);
    w.finish()
}

/// `kubectl describe replicaset` (and, with `selector_is_map`, replicationcontroller).
pub fn describe_replicated(
    obj: &Value,
    counts: Option<PodCounts>,
    events: Option<&[Value]>,
    clock: &Clock,
) -> String {
    let rc = s(obj, "/kind") == "ReplicationController";
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(obj, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(obj, "/metadata/namespace"));
    let selector = if rc {
        format_labels(&map_pairs(obj, "/spec/selector"))
    } else {
        format_label_selector(obj.pointer("/spec/selector").unwrap_or(&Value::Null))
    };
    w!(w, 0, "Selector:\t{selector}\n");
    layout::labels_and_annotations(&mut w, obj);
    if !rc {
        if let Some(owner) = layout::controlled_by(obj) {
            w!(w, 0, "Controlled By:\t{owner}\n");
        }
    }
    w!(
        w,
        0,
        "Replicas:\t{} current / {} desired\n",
        int(obj, "/status/replicas"),
        obj.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    );
    match counts {
        Some(c) => w!(
            w,
            0,
            "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed\n",
            c.running,
            c.waiting,
            c.succeeded,
            c.failed
        ),
        None => w.write(0, "Pods Status:\terror in fetching pods\n"),
    }
    pod::pod_template(&mut w, obj.pointer("/spec/template"));
    conditions_table(&mut w, obj);
    layout::events(&mut w, events, clock);
    w.finish()
}
