//! Rules of the workload kinds that carry a pod template (ReplicationController, ReplicaSet,
//! Deployment, DaemonSet, StatefulSet, Job, CronJob): their defaults (Kubernetes'
//! `pkg/apis/{core,apps,batch}/v1/defaults.go`, plus the pod defaults inside every template)
//! and validation (`pkg/apis/{core,apps,batch}/validation`). This module holds what the
//! controllers share: a template checked as a pod spec and selected by the controller's selector.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validation::pod_spec::checks::{go_string_map, IMMUTABLE_MSG};
use crate::validation::pod_spec::{
    label_selector, template_restart_policy, validate_pod_template, PodSpecOptions,
};
use crate::validation::{FieldError, FieldErrors, Path};

mod apps;
mod batch;
mod replication_controller;

pub use apps::{DaemonSetRules, DeploymentRules, ReplicaSetRules, StatefulSetRules};
pub use batch::{CronJobRules, JobRules};
pub use replication_controller::ReplicationControllerRules;

#[cfg(test)]
mod apps_tests;
#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod examples_tests;

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// The value of an optional spec or template, or its default (Go's zero value) when absent.
fn or_default<T: Default + Clone>(v: &Option<T>) -> Cow<'_, T> {
    match v {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(T::default()),
    }
}

fn template_labels(template: &PodTemplateSpec) -> Option<&BTreeMap<String, String>> {
    template.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// A controller's structured selector: present, valid and not empty (`kind` names the kind in
/// Kubernetes' message, which says `deployment` for ReplicaSets too). Returns whether there is a
/// selector to match against the template's labels.
fn validate_required_selector(
    sel: &LabelSelector,
    kind: &str,
    path: &Path,
    errs: &mut FieldErrors,
) -> bool {
    if sel.match_labels.is_none() && sel.match_expressions.is_none() {
        errs.push(FieldError::required(path, ""));
        return false;
    }
    label_selector::validate(sel, path, errs);
    if label_selector::is_empty(sel) {
        let msg = format!("empty selector is invalid for {kind}");
        errs.push(FieldError::invalid(
            path,
            label_selector::go_value(sel),
            &msg,
        ));
        return false;
    }
    true
}

/// The selector must select the pods the template makes.
fn validate_selector_matches(
    sel: &LabelSelector,
    template: &PodTemplateSpec,
    template_path: &Path,
    errs: &mut FieldErrors,
) {
    let labels = template_labels(template);
    if label_selector::matches(sel, labels) == Some(false) {
        let path = template_path.child("metadata").child("labels");
        errs.push(FieldError::invalid(
            &path,
            go_string_map(labels),
            SELECTOR_MISMATCH,
        ));
    }
}

/// A template whose pods a controller keeps running: a valid pod template with restart policy
/// `Always`.
fn validate_always_running_template(
    template: &PodTemplateSpec,
    path: &Path,
    opts: &PodSpecOptions<'_>,
    errs: &mut FieldErrors,
) {
    validate_pod_template(template, path, opts, errs);
    let policy = template_restart_policy(template);
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            &path.child("spec").child("restartPolicy"),
            policy,
            &["Always"],
        ));
    }
}

/// A long-running controller's pods may not have a deadline.
fn forbid_active_deadline(
    template: &PodTemplateSpec,
    owner: &str,
    path: &Path,
    errs: &mut FieldErrors,
) {
    if template
        .spec
        .as_ref()
        .is_some_and(|s| s.active_deadline_seconds.is_some())
    {
        let msg = format!("activeDeadlineSeconds in {owner} is not Supported");
        errs.push(FieldError::forbidden(
            &path.child("spec").child("activeDeadlineSeconds"),
            &msg,
        ));
    }
}

/// `spec.selector: Invalid value: v1.LabelSelector{...}: field is immutable`.
fn validate_immutable_selector(
    new: &LabelSelector,
    old: &LabelSelector,
    path: &Path,
    errs: &mut FieldErrors,
) {
    if !label_selector::semantically_equal(new, old) {
        errs.push(FieldError::invalid(
            path,
            label_selector::go_value(new),
            IMMUTABLE_MSG,
        ));
    }
}
