//! Where a pod may run: tolerations, node and pod (anti-)affinity, and topology spread
//! constraints (Kubernetes' `ValidateTolerations`, `validateAffinity` and
//! `validateTopologySpreadConstraints`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};

use super::checks::optional_one_of;
use super::label_selector;
use crate::validation::common::{
    dns1123_label, dns1123_subdomain, label_value, push_all, qualified_name,
};
use crate::validation::{FieldError, FieldErrors, Path};

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const SCHEDULE_ACTIONS: &[&str] = &["DoNotSchedule", "ScheduleAnyway"];
const INCLUSION_POLICIES: &[&str] = &["Honor", "Ignore"];

pub(super) fn validate_tolerations(
    tolerations: &[Toleration],
    path: &Path,
    errs: &mut FieldErrors,
) {
    for (i, t) in tolerations.iter().enumerate() {
        let tp = path.index(i);
        let key = t.key.as_deref().unwrap_or_default();
        let operator = t.operator.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        if !key.is_empty() {
            push_all(errs, &tp.child("key"), key, qualified_name(key));
        }
        // An empty key with Exists matches every taint; with any other operator it is an error.
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                &tp.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &tp.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let problems = label_value(value);
                if !problems.is_empty() {
                    errs.push(FieldError::invalid(
                        &tp.child("operator"),
                        value,
                        &problems.join(";"),
                    ));
                }
            }
            "Exists" if !value.is_empty() => errs.push(FieldError::invalid(
                &tp.child("operator"),
                value,
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(FieldError::not_supported(
                &tp.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                &tp.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
}

pub(super) fn validate_affinity(affinity: &Affinity, path: &Path, errs: &mut FieldErrors) {
    if let Some(node) = &affinity.node_affinity {
        let np = path.child("nodeAffinity");
        if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
            let terms_path = np
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .child("nodeSelectorTerms");
            if required.node_selector_terms.is_empty() {
                errs.push(FieldError::required(
                    &terms_path,
                    "must have at least one node selector term",
                ));
            }
            for (i, term) in required.node_selector_terms.iter().enumerate() {
                validate_node_selector_term(term, &terms_path.index(i), errs);
            }
        }
        let preferred_path = np.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, term) in node
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let tp = preferred_path.index(i);
            validate_weight(term.weight, &tp, errs);
            validate_node_selector_term(&term.preference, &tp.child("preference"), errs);
        }
    }
    if let Some(a) = &affinity.pod_affinity {
        validate_pod_affinity(
            a.required_during_scheduling_ignored_during_execution
                .as_deref(),
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            &path.child("podAffinity"),
            errs,
        );
    }
    if let Some(a) = &affinity.pod_anti_affinity {
        validate_pod_affinity(
            a.required_during_scheduling_ignored_during_execution
                .as_deref(),
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            &path.child("podAntiAffinity"),
            errs,
        );
    }
}

/// The terms of a pod affinity or anti-affinity (both have the same shape).
fn validate_pod_affinity(
    required: Option<&[PodAffinityTerm]>,
    preferred: Option<&[WeightedPodAffinityTerm]>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let required_path = path.child("requiredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in required.unwrap_or_default().iter().enumerate() {
        validate_pod_affinity_term(term, &required_path.index(i), errs);
    }
    let preferred_path = path.child("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in preferred.unwrap_or_default().iter().enumerate() {
        let tp = preferred_path.index(i);
        validate_weight(term.weight, &tp, errs);
        validate_pod_affinity_term(&term.pod_affinity_term, &tp.child("podAffinityTerm"), errs);
    }
}

fn validate_weight(weight: i32, path: &Path, errs: &mut FieldErrors) {
    if !(1..=100).contains(&weight) {
        errs.push(FieldError::invalid(
            &path.child("weight"),
            weight,
            "must be in the range 1-100",
        ));
    }
}

pub(crate) fn validate_node_selector_term(
    term: &NodeSelectorTerm,
    path: &Path,
    errs: &mut FieldErrors,
) {
    for (i, req) in term.match_expressions.iter().flatten().enumerate() {
        validate_node_selector_requirement(req, &path.child("matchExpressions").index(i), errs);
    }
    for (i, req) in term.match_fields.iter().flatten().enumerate() {
        validate_node_field_requirement(req, &path.child("matchFields").index(i), errs);
    }
}

/// A node label requirement: In/NotIn need values, Exists/DoesNotExist take none, Gt/Lt take
/// exactly one integer.
fn validate_node_selector_requirement(
    req: &NodeSelectorRequirement,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let values = req.values.as_deref().unwrap_or_default();
    let vp = path.child("values");
    match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
            &vp,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
            &vp,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" if values.len() != 1 => errs.push(FieldError::required(
            &vp,
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        )),
        "Gt" | "Lt" if values[0].parse::<i64>().is_err() => errs.push(FieldError::invalid(
            &vp.index(0),
            &values[0],
            "must be an integer when `operator` is 'Lt' or 'Gt'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        op => errs.push(FieldError::invalid(
            &path.child("operator"),
            op,
            "not a valid selector operator",
        )),
    }
    push_all(errs, &path.child("key"), &req.key, qualified_name(&req.key));
    for (i, v) in values.iter().enumerate() {
        push_all(errs, &vp.index(i), v, label_value(v));
    }
}

/// A node field requirement: `metadata.name` In/NotIn exactly one node name.
fn validate_node_field_requirement(
    req: &NodeSelectorRequirement,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" if values.len() != 1 => errs.push(FieldError::required(
            &path.child("values"),
            "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
        )),
        "In" | "NotIn" => {}
        op => errs.push(FieldError::invalid(
            &path.child("operator"),
            op,
            "not a valid selector operator",
        )),
    }
    if req.key != "metadata.name" {
        errs.push(FieldError::invalid(
            &path.child("key"),
            &req.key,
            "not a valid field selector key",
        ));
    } else {
        for (i, v) in values.iter().enumerate() {
            push_all(
                errs,
                &path.child("values").index(i),
                v,
                dns1123_subdomain(v),
            );
        }
    }
}

fn validate_pod_affinity_term(term: &PodAffinityTerm, path: &Path, errs: &mut FieldErrors) {
    if let Some(sel) = &term.label_selector {
        label_selector::validate(sel, &path.child("labelSelector"), errs);
    }
    if let Some(sel) = &term.namespace_selector {
        label_selector::validate(sel, &path.child("namespaceSelector"), errs);
    }
    for (i, ns) in term.namespaces.iter().flatten().enumerate() {
        push_all(
            errs,
            &path.child("namespaces").index(i),
            ns,
            dns1123_label(ns),
        );
    }
    let kp = path.child("topologyKey");
    if term.topology_key.is_empty() {
        errs.push(FieldError::required(&kp, "can not be empty"));
    } else {
        push_all(
            errs,
            &kp,
            &term.topology_key,
            qualified_name(&term.topology_key),
        );
    }
}

pub(super) fn validate_topology_spread_constraints(
    constraints: &[TopologySpreadConstraint],
    path: &Path,
    errs: &mut FieldErrors,
) {
    let mut seen = BTreeSet::new();
    for (i, c) in constraints.iter().enumerate() {
        let cp = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                &cp.child("maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                &cp.child("topologyKey"),
                "can not be empty",
            ));
        }
        let action = c.when_unsatisfiable.as_str();
        if !SCHEDULE_ACTIONS.contains(&action) {
            errs.push(FieldError::not_supported(
                &cp.child("whenUnsatisfiable"),
                action,
                SCHEDULE_ACTIONS,
            ));
        }
        // The pair {topologyKey, whenUnsatisfiable} names one kind of constraint.
        let pair = format!("{{{}, {}}}", c.topology_key, action);
        if !seen.insert((c.topology_key.as_str(), action)) {
            errs.push(FieldError::duplicate(
                &cp.child("{topologyKey, whenUnsatisfiable}"),
                &pair,
            ));
        }
        if let Some(min) = c.min_domains {
            if min <= 0 {
                errs.push(FieldError::invalid(
                    &cp.child("minDomains"),
                    min,
                    "must be greater than 0",
                ));
            } else if action != "DoNotSchedule" {
                let msg = format!(
                    "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                );
                errs.push(FieldError::invalid(&cp.child("minDomains"), min, &msg));
            }
        }
        if let Some(sel) = &c.label_selector {
            label_selector::validate(sel, &cp.child("labelSelector"), errs);
        }
        optional_one_of(
            c.node_affinity_policy.as_deref(),
            INCLUSION_POLICIES,
            &cp.child("nodeAffinityPolicy"),
            errs,
        );
        optional_one_of(
            c.node_taints_policy.as_deref(),
            INCLUSION_POLICIES,
            &cp.child("nodeTaintsPolicy"),
            errs,
        );
    }
}
