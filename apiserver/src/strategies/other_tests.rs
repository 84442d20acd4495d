//! Tests of the HorizontalPodAutoscaler, Lease and PriorityClass rules.

use serde_json::{json, Value};

use super::*;
use crate::strategies::fields::testing::{check_create_table, defaulted, update_errors};

fn hpa(spec: Value) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "default"},
           "spec": spec})
}

fn target() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

fn defaulted_hpa_spec(spec: Value) -> Value {
    serde_json::to_value(defaulted(&HorizontalPodAutoscalerRules, hpa(spec)).spec).unwrap()
}

#[test]
fn autoscaler_defaults_replicas_and_cpu_metric() {
    assert_eq!(
        defaulted_hpa_spec(json!({"scaleTargetRef": target(), "maxReplicas": 5})),
        json!({
            "scaleTargetRef": target(),
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        })
    );
}

#[test]
fn autoscaler_behavior_is_completed_when_given() {
    let got = defaulted_hpa_spec(json!({"scaleTargetRef": target(), "maxReplicas": 5,
        "behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}));
    assert_eq!(
        got["behavior"],
        json!({
            "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                     {"type": "Percent", "value": 100, "periodSeconds": 15}]},
        })
    );
}

#[test]
fn autoscaler_validation() {
    let cpu = |t: Value| json!({"type": "Resource", "resource": {"name": "cpu", "target": t}});
    check_create_table(
        &HorizontalPodAutoscalerRules,
        vec![
            ("minimal", hpa(json!({"scaleTargetRef": target(), "maxReplicas": 3})), vec![]),
            (
                "every metric source",
                hpa(json!({"scaleTargetRef": target(), "minReplicas": 2, "maxReplicas": 10, "metrics": [
                    cpu(json!({"type": "Utilization", "averageUtilization": 50})),
                    {"type": "ContainerResource", "containerResource": {"name": "memory", "container": "app",
                                                                        "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "requests-per-second"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Object", "object": {"describedObject": {"apiVersion": "v1", "kind": "Service", "name": "web"},
                                                  "metric": {"name": "hits"}, "target": {"type": "Value", "value": "10k"}}},
                    {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"queue": "jobs"}}},
                                                      "target": {"type": "AverageValue", "averageValue": "30"}}}]})),
                vec![],
            ),
            (
                "replica bounds and target",
                hpa(json!({"minReplicas": 0, "maxReplicas": 0, "scaleTargetRef": {"kind": "", "name": "a/b"}})),
                vec![
                    "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
                    "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                    "spec.scaleTargetRef.kind: Required value",
                    "spec.scaleTargetRef.name: Invalid value: \"a/b\": may not contain '/'",
                ],
            ),
            (
                "max below min",
                hpa(json!({"scaleTargetRef": target(), "minReplicas": 5, "maxReplicas": 2})),
                vec!["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"],
            ),
            (
                "bad metrics",
                hpa(json!({"scaleTargetRef": target(), "maxReplicas": 3, "metrics": [
                    cpu(json!({"type": "Utilization", "averageUtilization": 0})),
                    {"type": "Pods"},
                    {"type": "Magic"},
                    cpu(json!({"type": "AverageValue", "averageValue": "100m", "averageUtilization": 50})),
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                     "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "1"}}},
                    cpu(json!({"type": "Percent"})),
                    {"type": "External", "external": {"metric": {"name": ""}, "target": {"type": "Value", "value": "-1"}}}]})),
                vec![
                    "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
                    "spec.metrics[1].pods: Required value: must populate information for the given metric source",
                    "spec.metrics[2].type: Unsupported value: \"Magic\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
                    "spec.metrics[3].resource.target.averageValue: Forbidden: may not set both a target raw value and a target utilization",
                    "spec.metrics[4].pods: Forbidden: must populate the given metric source only",
                    "spec.metrics[5].resource.target.type: Invalid value: \"Percent\": must be either Utilization, Value, or AverageValue",
                    "spec.metrics[5].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization",
                    "spec.metrics[6].external.metric.name: Required value: must specify a metric name",
                    "spec.metrics[6].external.target.value: Invalid value: \"-1\": must be positive",
                ],
            ),
            (
                "bad behavior",
                hpa(json!({"scaleTargetRef": target(), "maxReplicas": 3, "behavior": {"scaleUp": {
                    "stabilizationWindowSeconds": 4000, "selectPolicy": "Random",
                    "policies": [{"type": "Pods", "value": 0, "periodSeconds": 0}, {"type": "Nodes", "value": 1, "periodSeconds": 1801}]}}})),
                vec![
                    "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 4000: must be less than or equal to 3600",
                    "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Random\": supported values: \"Disabled\", \"Max\", \"Min\"",
                    "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
                    "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 0: must be greater than zero",
                    "spec.behavior.scaleUp.policies[1].type: Unsupported value: \"Nodes\": supported values: \"Percent\", \"Pods\"",
                    "spec.behavior.scaleUp.policies[1].periodSeconds: Invalid value: 1801: must be less than or equal to 1800",
                ],
            ),
            (
                "empty policies",
                hpa(json!({"scaleTargetRef": target(), "maxReplicas": 3, "behavior": {"scaleDown": {"policies": [], "stabilizationWindowSeconds": -1}}})),
                vec![
                    "spec.behavior.scaleDown.stabilizationWindowSeconds: Invalid value: -1: must be greater than or equal to zero",
                    "spec.behavior.scaleDown.policies: Required value: must specify at least one Policy",
                ],
            ),
        ],
    );
}

fn lease(spec: Value) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "kube-node-lease"}, "spec": spec})
}

#[test]
fn lease_validation() {
    check_create_table(
        &LeaseRules,
        vec![
            (
                "valid",
                lease(json!({"holderIdentity": "n1", "leaseDurationSeconds": 40, "leaseTransitions": 0,
                             "renewTime": "2024-01-01T00:00:00.000000Z"})),
                vec![],
            ),
            ("no spec", json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}}), vec![]),
            (
                "bad",
                lease(json!({"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "n2"})),
                vec![
                    "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                    "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
                    "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
                ],
            ),
            (
                "strategy",
                lease(json!({"strategy": "Newest"})),
                vec!["spec.strategy: Unsupported value: \"Newest\": supported values: \"OldestEmulationVersion\""],
            ),
            ("custom strategy", lease(json!({"strategy": "example.com/newest", "preferredHolder": "n2"})), vec![]),
        ],
    );
}

fn priority_class(name: &str, value: i64, extra: Value) -> Value {
    let mut pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value});
    for (k, v) in extra.as_object().unwrap() {
        pc[k] = v.clone();
    }
    pc
}

#[test]
fn priority_class_defaults_preemption_policy() {
    let got = defaulted(&PriorityClassRules, priority_class("high", 1000, json!({})));
    assert_eq!(
        got.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
}

#[test]
fn priority_class_validation() {
    check_create_table(
        &PriorityClassRules,
        vec![
            ("user maximum", priority_class("high", 1_000_000_000, json!({"globalDefault": false})), vec![]),
            ("negative", priority_class("low", -10, json!({"preemptionPolicy": "Never"})), vec![]),
            ("system maximum", priority_class("system-node-critical", 2_000_001_000, json!({})), vec![]),
            (
                "user too high",
                priority_class("high", 1_000_000_001, json!({})),
                vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"],
            ),
            (
                "system too high",
                priority_class("system-special", 2_000_001_001, json!({})),
                vec!["value: Forbidden: maximum allowed value of a system priority is 2000001000"],
            ),
            (
                "preemption policy",
                priority_class("p", 1, json!({"preemptionPolicy": "Sometimes"})),
                vec!["preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"Never\", \"PreemptLowerPriority\""],
            ),
        ],
    );
}

#[test]
fn priority_class_value_and_policy_are_immutable() {
    let old = priority_class("p", 100, json!({}));
    let new = priority_class(
        "p",
        200,
        json!({"preemptionPolicy": "Never", "description": "changed"}),
    );
    assert_eq!(
        update_errors(&PriorityClassRules, old.clone(), new),
        vec![
            "value: Forbidden: may not be changed in an update.",
            "preemptionPolicy: Invalid value: \"Never\": field is immutable"
        ]
    );
    let described = priority_class("p", 100, json!({"description": "changed"}));
    assert!(update_errors(&PriorityClassRules, old, described).is_empty());
}
