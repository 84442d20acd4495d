//! Pod rules: Kubernetes' pod defaults, pod spec validation, and the few spec changes an update
//! may make (container images, a shorter `activeDeadlineSeconds`, added tolerations, a negative
//! grace period raised to 1, and binding: setting `nodeName` once).

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{Pod, PodSpec, Toleration};

use crate::strategy::KindRules;
use crate::validation::pod_spec::checks::{
    inclusive_range, json_diff, semantic_json, GoValue, MAX_INT32,
};
use crate::validation::pod_spec::{validate_pod_spec, PodSpecOptions};
use crate::validation::{FieldError, FieldErrors, Path};

pub mod defaults;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

/// Kubernetes' list of what a pod update may change, as its message gives it.
const UPDATABLE_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// How many changed fields the `pod updates may not change ...` message lists.
const DIFF_LINES: usize = 10;

pub struct PodRules;

impl KindRules for PodRules {
    type Object = Pod;

    fn default(&self, pod: &mut Pod) {
        defaults::default_pod(pod);
    }

    fn validate(&self, pod: &Pod, errs: &mut FieldErrors) {
        let spec_path = Path::root("spec");
        let spec = spec_of(pod);
        validate_pod_spec(&spec, &spec_path, &PodSpecOptions::default(), errs);
        // Ephemeral containers are added to running pods through their own subresource.
        if spec
            .ephemeral_containers
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            errs.push(FieldError::forbidden(
                &spec_path.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
    }

    fn validate_update(&self, new: &Pod, old: &Pod, errs: &mut FieldErrors) {
        let spec_path = Path::root("spec");
        let (new_spec, old_spec) = (spec_of(new), spec_of(old));
        validate_pod_spec(&new_spec, &spec_path, &PodSpecOptions::default(), errs);
        validate_spec_update(&new_spec, &old_spec, &spec_path, errs);
    }
}

fn spec_of(pod: &Pod) -> Cow<'_, PodSpec> {
    match &pod.spec {
        Some(spec) => Cow::Borrowed(spec),
        None => Cow::Owned(PodSpec::default()),
    }
}

/// Kubernetes' `ValidatePodUpdate` for the spec: take the allowed changes over into a copy of
/// the old spec and require the rest to be equal.
fn validate_spec_update(new: &PodSpec, old: &PodSpec, path: &Path, errs: &mut FieldErrors) {
    let new_init = new.init_containers.as_deref().unwrap_or_default();
    let old_init = old.init_containers.as_deref().unwrap_or_default();
    for (new_c, old_c, field) in [
        (&new.containers[..], &old.containers[..], "containers"),
        (new_init, old_init, "initContainers"),
    ] {
        if new_c.len() != old_c.len() {
            errs.push(FieldError::forbidden(
                &path.child(field),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }

    let deadline_path = path.child("activeDeadlineSeconds");
    match (new.active_deadline_seconds, old.active_deadline_seconds) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            errs.push(FieldError::invalid(
                &deadline_path,
                n,
                &inclusive_range(0, MAX_INT32),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                &deadline_path,
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            &deadline_path,
            GoValue("null".to_string()),
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    let mut munged = new.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old.containers) {
        c.image.clone_from(&o.image);
    }
    for (c, o) in munged.init_containers.iter_mut().flatten().zip(old_init) {
        c.image.clone_from(&o.image);
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    validate_only_added_tolerations(
        new.tolerations.as_deref().unwrap_or_default(),
        old.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
        errs,
    );
    munged.tolerations.clone_from(&old.tolerations);
    // A negative grace period (no longer accepted) may be raised to 1.
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && new.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    // Binding: an unscheduled pod may be given a node once.
    if old.node_name.as_deref().unwrap_or_default().is_empty() {
        munged.node_name.clone_from(&old.node_name);
    }

    let (munged, old) = (semantic_json(&munged), semantic_json(old));
    if munged != old {
        let mut msg = format!(
            "pod updates may not change fields other than {}",
            UPDATABLE_FIELDS.join(",")
        );
        for line in json_diff(&old, &munged, path, DIFF_LINES) {
            msg.push_str("\n  ");
            msg.push_str(&line);
        }
        errs.push(FieldError::forbidden(path, &msg));
    }
}

/// Existing tolerations may not change (except their `tolerationSeconds`); new ones may be added.
fn validate_only_added_tolerations(
    new: &[Toleration],
    old: &[Toleration],
    path: &Path,
    errs: &mut FieldErrors,
) {
    for o in old {
        let found = new.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            semantic_json(&o) == semantic_json(n)
        });
        if !found {
            errs.push(FieldError::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
}
