//! HorizontalPodAutoscaler (`autoscaling/v2`) defaulting and validation: replica bounds, the
//! scale target, metric sources and targets, and scaling behavior, as Kubernetes has them.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, MetricIdentifier, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

use super::fields::{is_positive_quantity, path_segment_name, validate_label_selector};
use crate::strategy::KindRules;
use crate::validation::common::{dns1123_label, parse_quantity, push_all, qualified_name};
use crate::validation::{FieldError, FieldErrors, Path};

/// The CPU utilization target of an autoscaler that names no metrics.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;
/// How long a scale-down recommendation must hold before it is acted on (the Kubernetes
/// controller's `--horizontal-pod-autoscaler-downscale-stabilization` default).
pub const DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS: i32 = 300;
const MAX_PERIOD_SECONDS: i32 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;
const METRIC_SOURCE_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

/// HorizontalPodAutoscalers.
pub struct HorizontalPodAutoscalerRules;

impl KindRules for HorizontalPodAutoscalerRules {
    type Object = HorizontalPodAutoscaler;

    fn default(&self, hpa: &mut HorizontalPodAutoscaler) {
        let spec = &mut hpa.spec;
        spec.min_replicas.get_or_insert(1);
        if spec.metrics.as_ref().is_none_or(|m| m.is_empty()) {
            spec.metrics = Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]);
        }
        // Like Kubernetes, a behavior that is given is completed field by field.
        if let Some(behavior) = spec.behavior.as_mut() {
            behavior.scale_up = Some(complete_rules(behavior.scale_up.take(), default_scale_up()));
            behavior.scale_down = Some(complete_rules(
                behavior.scale_down.take(),
                default_scale_down(),
            ));
        }
    }

    fn validate(&self, hpa: &HorizontalPodAutoscaler, errs: &mut FieldErrors) {
        let spec = &hpa.spec;
        let sp = Path::root("spec");
        if let Some(min) = spec.min_replicas {
            if min < 1 {
                errs.push(FieldError::invalid(
                    &sp.child("minReplicas"),
                    min,
                    "must be greater than or equal to 1",
                ));
            }
        }
        if spec.max_replicas < 1 {
            errs.push(FieldError::invalid(
                &sp.child("maxReplicas"),
                spec.max_replicas,
                "must be greater than 0",
            ));
        }
        if spec.min_replicas.is_some_and(|min| spec.max_replicas < min) {
            errs.push(FieldError::invalid(
                &sp.child("maxReplicas"),
                spec.max_replicas,
                "must be greater than or equal to `minReplicas`",
            ));
        }
        validate_object_reference(&spec.scale_target_ref, &sp.child("scaleTargetRef"), errs);
        for (i, metric) in spec.metrics.iter().flatten().enumerate() {
            validate_metric(metric, &sp.child("metrics").index(i), errs);
        }
        if let Some(behavior) = &spec.behavior {
            validate_behavior(behavior, &sp.child("behavior"), errs);
        }
    }
}

fn default_scale_up() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".to_string()),
        policies: Some(vec![
            HPAScalingPolicy {
                type_: "Pods".to_string(),
                value: 4,
                period_seconds: 15,
            },
            HPAScalingPolicy {
                type_: "Percent".to_string(),
                value: 100,
                period_seconds: 15,
            },
        ]),
        tolerance: None,
    }
}

fn default_scale_down() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS),
        select_policy: Some("Max".to_string()),
        policies: Some(vec![HPAScalingPolicy {
            type_: "Percent".to_string(),
            value: 100,
            period_seconds: 15,
        }]),
        tolerance: None,
    }
}

/// The given rules with every unset field taken from `defaults`.
fn complete_rules(given: Option<HPAScalingRules>, defaults: HPAScalingRules) -> HPAScalingRules {
    let Some(given) = given else { return defaults };
    HPAScalingRules {
        stabilization_window_seconds: given
            .stabilization_window_seconds
            .or(defaults.stabilization_window_seconds),
        select_policy: given.select_policy.or(defaults.select_policy),
        policies: given.policies.or(defaults.policies),
        tolerance: given.tolerance.or(defaults.tolerance),
    }
}

/// A reference to an object by kind and name (the scale target, an Object metric's object).
fn validate_object_reference(r: &CrossVersionObjectReference, path: &Path, errs: &mut FieldErrors) {
    for (field, value) in [("kind", &r.kind), ("name", &r.name)] {
        if value.is_empty() {
            errs.push(FieldError::required(&path.child(field), ""));
        } else {
            push_all(errs, &path.child(field), value, path_segment_name(value));
        }
    }
}

/// One metric: a known source type with that source (and no other) populated.
fn validate_metric(m: &MetricSpec, path: &Path, errs: &mut FieldErrors) {
    let sources = [
        ("object", m.object.is_some()),
        ("external", m.external.is_some()),
        ("pods", m.pods.is_some()),
        ("resource", m.resource.is_some()),
        ("containerResource", m.container_resource.is_some()),
    ];
    if m.type_.is_empty() {
        errs.push(FieldError::required(
            &path.child("type"),
            "must specify a metric source type",
        ));
    } else if !METRIC_SOURCE_TYPES.contains(&m.type_.as_str()) {
        errs.push(FieldError::not_supported(
            &path.child("type"),
            &m.type_,
            METRIC_SOURCE_TYPES,
        ));
    }
    // Only the first populated source is checked in depth, as in Kubernetes.
    if let Some(o) = &m.object {
        let op = path.child("object");
        validate_object_reference(&o.described_object, &op.child("describedObject"), errs);
        validate_metric_identifier(&o.metric, &op.child("metric"), errs);
        validate_target(&o.target, &op.child("target"), errs);
        if o.target.value.is_none() && o.target.average_value.is_none() {
            errs.push(FieldError::required(
                &op.child("target").child("averageValue"),
                "must set either a target value or averageValue",
            ));
        }
    } else if let Some(e) = &m.external {
        let ep = path.child("external");
        validate_metric_identifier(&e.metric, &ep.child("metric"), errs);
        validate_target(&e.target, &ep.child("target"), errs);
        match (&e.target.value, &e.target.average_value) {
            (None, None) => errs.push(FieldError::required(
                &ep.child("target").child("averageValue"),
                "must set either a target value for metric or a per-pod target",
            )),
            (Some(_), Some(_)) => errs.push(FieldError::forbidden(
                &ep.child("target").child("value"),
                "may not set both a target value for metric and a per-pod target",
            )),
            _ => {}
        }
    } else if let Some(p) = &m.pods {
        let pp = path.child("pods");
        validate_metric_identifier(&p.metric, &pp.child("metric"), errs);
        validate_target(&p.target, &pp.child("target"), errs);
        if p.target.average_value.is_none() {
            errs.push(FieldError::required(
                &pp.child("target").child("averageValue"),
                "must specify a positive target averageValue",
            ));
        }
    } else if let Some(r) = &m.resource {
        let rp = path.child("resource");
        if r.name.is_empty() {
            errs.push(FieldError::required(
                &rp.child("name"),
                "must specify a resource name",
            ));
        } else {
            push_all(errs, &rp.child("name"), &r.name, qualified_name(&r.name));
        }
        validate_resource_target(&r.target, &rp.child("target"), errs);
    } else if let Some(c) = &m.container_resource {
        let cp = path.child("containerResource");
        if c.name.is_empty() {
            errs.push(FieldError::required(
                &cp.child("name"),
                "must specify a resource name",
            ));
        } else {
            push_all(errs, &cp.child("name"), &c.name, qualified_name(&c.name));
        }
        if c.container.is_empty() {
            errs.push(FieldError::required(
                &cp.child("container"),
                "must specify a container",
            ));
        } else {
            push_all(
                errs,
                &cp.child("container"),
                &c.container,
                dns1123_label(&c.container),
            );
        }
        validate_resource_target(&c.target, &cp.child("target"), errs);
    }

    let expected = match m.type_.as_str() {
        "Object" => "object",
        "External" => "external",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        _ => "",
    };
    if !expected.is_empty() && !sources.iter().any(|(name, set)| *name == expected && *set) {
        errs.push(FieldError::required(
            &path.child(expected),
            "must populate information for the given metric source",
        ));
    }
    if sources.iter().filter(|(_, set)| *set).count() > 1 {
        for (name, _) in sources
            .iter()
            .filter(|(name, set)| *set && *name != expected)
        {
            errs.push(FieldError::forbidden(
                &path.child(name),
                "must populate the given metric source only",
            ));
        }
    }
}

/// A Resource or ContainerResource target: a utilization or an average value, not both.
fn validate_resource_target(t: &MetricTarget, path: &Path, errs: &mut FieldErrors) {
    validate_target(t, path, errs);
    match (&t.average_utilization, &t.average_value) {
        (None, None) => errs.push(FieldError::required(
            &path.child("averageUtilization"),
            "must set either a target raw value or a target utilization",
        )),
        (Some(_), Some(_)) => errs.push(FieldError::forbidden(
            &path.child("averageValue"),
            "may not set both a target raw value and a target utilization",
        )),
        _ => {}
    }
}

fn validate_target(t: &MetricTarget, path: &Path, errs: &mut FieldErrors) {
    if t.type_.is_empty() {
        errs.push(FieldError::required(
            &path.child("type"),
            "must specify a metric target type",
        ));
    }
    if !["Utilization", "Value", "AverageValue"].contains(&t.type_.as_str()) {
        errs.push(FieldError::invalid(
            &path.child("type"),
            &t.type_,
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for (field, q) in [("value", &t.value), ("averageValue", &t.average_value)] {
        if let Some(q) = q {
            if !is_positive_quantity(&q.0) {
                errs.push(FieldError::invalid(
                    &path.child(field),
                    &q.0,
                    "must be positive",
                ));
            }
        }
    }
    if let Some(u) = t.average_utilization {
        if u < 1 {
            errs.push(FieldError::invalid(
                &path.child("averageUtilization"),
                u,
                "must be greater than 0",
            ));
        }
    }
}

fn validate_metric_identifier(id: &MetricIdentifier, path: &Path, errs: &mut FieldErrors) {
    if id.name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "must specify a metric name",
        ));
    } else {
        push_all(
            errs,
            &path.child("name"),
            &id.name,
            path_segment_name(&id.name),
        );
    }
    if let Some(sel) = &id.selector {
        validate_label_selector(sel, &path.child("selector"), errs);
    }
}

fn validate_behavior(b: &HorizontalPodAutoscalerBehavior, path: &Path, errs: &mut FieldErrors) {
    for (field, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
        let Some(rules) = rules else { continue };
        let rp = path.child(field);
        if let Some(w) = rules.stabilization_window_seconds {
            let wp = rp.child("stabilizationWindowSeconds");
            if w < 0 {
                errs.push(FieldError::invalid(
                    &wp,
                    w,
                    "must be greater than or equal to zero",
                ));
            } else if w > MAX_STABILIZATION_WINDOW_SECONDS {
                errs.push(FieldError::invalid(
                    &wp,
                    w,
                    &format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
                ));
            }
        }
        if let Some(sel) = &rules.select_policy {
            const SELECT: &[&str] = &["Disabled", "Max", "Min"];
            if !SELECT.contains(&sel.as_str()) {
                errs.push(FieldError::not_supported(
                    &rp.child("selectPolicy"),
                    sel,
                    SELECT,
                ));
            }
        }
        if let Some(tol) = &rules.tolerance {
            if parse_quantity(&tol.0).map_or(true, |v| v < 0) {
                errs.push(FieldError::invalid(
                    &rp.child("tolerance"),
                    &tol.0,
                    "must be greater than or equal to zero",
                ));
            }
        }
        let pp = rp.child("policies");
        let policies = rules.policies.as_deref().unwrap_or_default();
        if policies.is_empty() {
            errs.push(FieldError::required(
                &pp,
                "must specify at least one Policy",
            ));
        }
        for (i, p) in policies.iter().enumerate() {
            let ip = pp.index(i);
            if p.type_ != "Pods" && p.type_ != "Percent" {
                errs.push(FieldError::not_supported(
                    &ip.child("type"),
                    &p.type_,
                    &["Percent", "Pods"],
                ));
            }
            if p.value <= 0 {
                errs.push(FieldError::invalid(
                    &ip.child("value"),
                    p.value,
                    "must be greater than zero",
                ));
            }
            if p.period_seconds <= 0 {
                errs.push(FieldError::invalid(
                    &ip.child("periodSeconds"),
                    p.period_seconds,
                    "must be greater than zero",
                ));
            } else if p.period_seconds > MAX_PERIOD_SECONDS {
                errs.push(FieldError::invalid(
                    &ip.child("periodSeconds"),
                    p.period_seconds,
                    &format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
                ));
            }
        }
    }
}
