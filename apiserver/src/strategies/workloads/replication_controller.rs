//! ReplicationController rules: a missing selector (and missing object labels) default to the
//! template's labels; the selector is a plain label map that must select the template.

use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};

use super::{
    forbid_active_deadline, or_default, template_labels, validate_always_running_template,
};
use crate::strategies::pod::defaults::default_pod_template;
use crate::strategy::KindRules;
use crate::validation::pod_spec::checks::{go_string_map, nonnegative};
use crate::validation::pod_spec::PodSpecOptions;
use crate::validation::{FieldError, FieldErrors, Path};

pub struct ReplicationControllerRules;

impl KindRules for ReplicationControllerRules {
    type Object = ReplicationController;

    fn default(&self, rc: &mut ReplicationController) {
        let spec = rc.spec.get_or_insert_with(Default::default);
        if let Some(labels) = spec.template.as_ref().and_then(template_labels) {
            if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                spec.selector = Some(labels.clone());
            }
            if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                rc.metadata.labels = Some(labels.clone());
            }
        }
        spec.replicas.get_or_insert(1);
        if let Some(template) = spec.template.as_mut() {
            default_pod_template(template);
        }
    }

    fn validate(&self, rc: &ReplicationController, errs: &mut FieldErrors) {
        let path = Path::root("spec");
        let spec = or_default(&rc.spec);
        nonnegative(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() {
            errs.push(FieldError::required(&path.child("selector"), ""));
        }
        nonnegative(spec.replicas, &path.child("replicas"), errs);
        let template_path = path.child("template");
        let Some(template) = &spec.template else {
            errs.push(FieldError::required(&template_path, ""));
            return;
        };
        let labels = template_labels(template);
        let selected = labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)));
        if !selector.is_empty() && !selected {
            let lp = template_path.child("metadata").child("labels");
            errs.push(FieldError::invalid(
                &lp,
                go_string_map(labels),
                super::SELECTOR_MISMATCH,
            ));
        }
        validate_template(template, &template_path, errs);
    }
}

fn validate_template(template: &PodTemplateSpec, path: &Path, errs: &mut FieldErrors) {
    validate_always_running_template(template, path, &PodSpecOptions::default(), errs);
    forbid_active_deadline(template, "ReplicationController", path, errs);
}
