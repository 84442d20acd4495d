//! `batch/v1` rules: Jobs (run-to-completion pods, with a generated selector unless
//! `manualSelector` is set) and CronJobs (a schedule and a Job template).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{or_default, validate_immutable_selector, validate_selector_matches};
use crate::strategies::pod::defaults::default_pod_template;
use crate::strategy::KindRules;
use crate::validation::pod_spec::checks::{
    inclusive_range, json_value, nonnegative, semantic_json, IMMUTABLE_MSG, MAX_INT32,
};
use crate::validation::pod_spec::{
    label_selector, template_restart_policy, validate_pod_template, PodSpecOptions,
};
use crate::validation::{FieldError, FieldErrors, Path};

const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const MAX_PARALLELISM_FOR_INDEXED_JOB: i32 = 100_000;
/// A CronJob's name plus the 11-character suffix of its Jobs must fit a DNS-1035 label.
const CRONJOB_NAME_MAX: usize = 52;
const CRON_MACROS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

pub struct JobRules;

impl KindRules for JobRules {
    type Object = Job;

    fn default(&self, job: &mut Job) {
        let spec = job.spec.get_or_insert_with(Default::default);
        if spec.completions.is_none() && spec.parallelism.is_none() {
            spec.completions = Some(1);
        }
        spec.parallelism.get_or_insert(1);
        let backoff = if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        };
        spec.backoff_limit.get_or_insert(backoff);
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone());
        if let Some(labels) =
            template_labels.filter(|_| job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()))
        {
            job.metadata.labels = Some(labels);
        }
        spec.completion_mode
            .get_or_insert_with(|| "NonIndexed".to_string());
        spec.suspend.get_or_insert(false);
        for rule in spec
            .pod_failure_policy
            .iter_mut()
            .flat_map(|p| p.rules.iter_mut())
        {
            for pattern in rule.on_pod_conditions.iter_mut().flatten() {
                if pattern.status.as_deref().unwrap_or_default().is_empty() {
                    pattern.status = Some("True".to_string());
                }
            }
        }
        let replacement = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy
            .get_or_insert_with(|| replacement.to_string());
        default_pod_template(&mut spec.template);
        if spec.manual_selector != Some(true) && spec.selector.is_none() {
            let name = job.metadata.name.as_deref().unwrap_or_default();
            generate_selector(
                spec,
                name,
                job.metadata.uid.as_deref().filter(|u| !u.is_empty()),
            );
        }
    }

    fn validate(&self, job: &Job, errs: &mut FieldErrors) {
        let path = Path::root("spec");
        let spec = or_default(&job.spec);
        validate_job_spec(&spec, &path, errs);
        let sp = path.child("selector");
        let Some(sel) = &spec.selector else {
            errs.push(FieldError::required(&sp, ""));
            return;
        };
        label_selector::validate(sel, &sp, errs);
        validate_selector_matches(sel, &spec.template, &path.child("template"), errs);
        if spec.manual_selector != Some(true) {
            // Without `manualSelector` the selector must be the generated one, which selects
            // the Job's own labels.
            let generated = generated_labels(
                job.metadata.name.as_deref().unwrap_or_default(),
                job.metadata.uid.as_deref().filter(|u| !u.is_empty()),
            );
            if label_selector::matches(sel, Some(&generated)) == Some(false) {
                let value = label_selector::go_value(sel);
                errs.push(FieldError::invalid(
                    &sp,
                    value,
                    "`selector` not auto-generated",
                ));
            }
        }
    }

    fn validate_update(&self, new: &Job, old: &Job, errs: &mut FieldErrors) {
        self.validate(new, errs);
        let path = Path::root("spec");
        let (new, old) = (or_default(&new.spec), or_default(&old.spec));
        let empty = LabelSelector::default();
        validate_immutable_selector(
            new.selector.as_ref().unwrap_or(&empty),
            old.selector.as_ref().unwrap_or(&empty),
            &path.child("selector"),
            errs,
        );
        let indexed = new.completion_mode.as_deref() == Some("Indexed");
        if new.completions != old.completions {
            let cp = path.child("completions");
            // Indexed Jobs scale by changing completions and parallelism together.
            if !indexed {
                errs.push(FieldError::invalid(
                    &cp,
                    json_value(&new.completions),
                    IMMUTABLE_MSG,
                ));
            } else if new.completions.is_some() && new.completions != new.parallelism {
                let msg = "can only be modified in tandem with spec.parallelism";
                errs.push(FieldError::invalid(&cp, json_value(&new.completions), msg));
            }
        }
        let immutable = [
            (
                "template",
                semantic_json(&new.template),
                semantic_json(&old.template),
                json_value(&new.template),
            ),
            (
                "completionMode",
                semantic_json(&new.completion_mode),
                semantic_json(&old.completion_mode),
                json_value(&new.completion_mode),
            ),
            (
                "podFailurePolicy",
                semantic_json(&new.pod_failure_policy),
                semantic_json(&old.pod_failure_policy),
                json_value(&new.pod_failure_policy),
            ),
            (
                "backoffLimitPerIndex",
                semantic_json(&new.backoff_limit_per_index),
                semantic_json(&old.backoff_limit_per_index),
                json_value(&new.backoff_limit_per_index),
            ),
            (
                "managedBy",
                semantic_json(&new.managed_by),
                semantic_json(&old.managed_by),
                json_value(&new.managed_by),
            ),
            (
                "successPolicy",
                semantic_json(&new.success_policy),
                semantic_json(&old.success_policy),
                json_value(&new.success_policy),
            ),
            (
                "podReplacementPolicy",
                semantic_json(&new.pod_replacement_policy),
                semantic_json(&old.pod_replacement_policy),
                json_value(&new.pod_replacement_policy),
            ),
        ];
        for (field, new_value, old_value, shown) in immutable {
            if new_value != old_value {
                errs.push(FieldError::invalid(
                    &path.child(field),
                    shown,
                    IMMUTABLE_MSG,
                ));
            }
        }
    }
}

/// Kubernetes' `generateSelector`: label the template with the Job's name and uid and select
/// the uid, so that the Job's pods are its own. The registry assigns the uid after defaulting a
/// new object, so a Job created without one selects its name instead; either way the selector
/// is stored with the Job and later updates keep it.
fn generate_selector(spec: &mut JobSpec, name: &str, uid: Option<&str>) {
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    for (key, value) in generated_labels(name, uid) {
        labels.entry(key).or_insert(value);
    }
    let (key, value) = match uid {
        Some(uid) => (CONTROLLER_UID_LABEL, uid),
        None => (JOB_NAME_LABEL, name),
    };
    let selector = spec.selector.get_or_insert_with(Default::default);
    let match_labels = selector.match_labels.get_or_insert_with(Default::default);
    match_labels
        .entry(key.to_string())
        .or_insert_with(|| value.to_string());
}

/// The labels selector generation gives a Job's pods.
fn generated_labels(name: &str, uid: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        labels.insert(key.to_string(), name.to_string());
    }
    for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
        if let Some(uid) = uid {
            labels.insert(key.to_string(), uid.to_string());
        }
    }
    labels
}

/// What Jobs and CronJobs' Job templates share (Kubernetes' `validateJobSpec`).
fn validate_job_spec(spec: &JobSpec, path: &Path, errs: &mut FieldErrors) {
    nonnegative(spec.parallelism, &path.child("parallelism"), errs);
    nonnegative(spec.completions, &path.child("completions"), errs);
    if let Some(deadline) = spec
        .active_deadline_seconds
        .filter(|d| !(1..=MAX_INT32).contains(d))
    {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            deadline,
            &inclusive_range(1, MAX_INT32),
        ));
    }
    nonnegative(spec.backoff_limit, &path.child("backoffLimit"), errs);
    nonnegative(
        spec.ttl_seconds_after_finished,
        &path.child("ttlSecondsAfterFinished"),
        errs,
    );
    let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
    let indexed = mode == "Indexed";
    if let Some(per_index) = spec.backoff_limit_per_index {
        let bp = path.child("backoffLimitPerIndex");
        nonnegative(Some(per_index), &bp, errs);
        if !indexed {
            errs.push(FieldError::forbidden(
                &bp,
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(max_failed) = spec.max_failed_indexes {
        nonnegative(Some(max_failed), &path.child("maxFailedIndexes"), errs);
        if spec.backoff_limit_per_index.is_none() {
            errs.push(FieldError::required(
                &path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    match mode {
        "NonIndexed" => {}
        "Indexed" => {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    &path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = spec
                .parallelism
                .filter(|p| *p > MAX_PARALLELISM_FOR_INDEXED_JOB)
            {
                let msg = format!(
                    "must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"
                );
                errs.push(FieldError::invalid(&path.child("parallelism"), p, &msg));
            }
        }
        other => errs.push(FieldError::not_supported(
            &path.child("completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    if let Some(policy) = spec.pod_replacement_policy.as_deref() {
        let rp = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() && policy != "Failed" {
            errs.push(FieldError::not_supported(&rp, policy, &["Failed"]));
        } else if policy != "TerminatingOrFailed" && policy != "Failed" {
            errs.push(FieldError::not_supported(
                &rp,
                policy,
                &["TerminatingOrFailed", "Failed"],
            ));
        }
    }
    let template_path = path.child("template");
    validate_pod_template(
        &spec.template,
        &template_path,
        &PodSpecOptions::default(),
        errs,
    );
    let restart = template_restart_policy(&spec.template);
    if restart != "OnFailure" && restart != "Never" {
        let rp = template_path.child("spec").child("restartPolicy");
        errs.push(FieldError::not_supported(
            &rp,
            restart,
            &["OnFailure", "Never"],
        ));
    }
}

pub struct CronJobRules;

impl KindRules for CronJobRules {
    type Object = CronJob;

    fn default(&self, cj: &mut CronJob) {
        let spec = &mut cj.spec;
        if spec
            .concurrency_policy
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            spec.concurrency_policy = Some("Allow".to_string());
        }
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        // The Job template gets the pod defaults only; Job defaults apply to the Jobs created.
        let job_spec = spec.job_template.spec.get_or_insert_with(Default::default);
        default_pod_template(&mut job_spec.template);
    }

    fn validate(&self, cj: &CronJob, errs: &mut FieldErrors) {
        validate_cron_job(cj, None, errs);
    }

    fn validate_update(&self, new: &CronJob, old: &CronJob, errs: &mut FieldErrors) {
        validate_cron_job(new, Some(&old.spec), errs);
    }
}

fn validate_cron_job(cj: &CronJob, old: Option<&CronJobSpec>, errs: &mut FieldErrors) {
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    if name.len() > CRONJOB_NAME_MAX {
        let msg = format!("must be no more than {CRONJOB_NAME_MAX} characters");
        errs.push(FieldError::invalid(
            &Path::root("metadata").child("name"),
            name,
            &msg,
        ));
    }
    let path = Path::root("spec");
    let spec = &cj.spec;
    let schedule_path = path.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(&schedule_path, ""));
    } else {
        // A schedule that already used TZ may keep it; new ones use the timeZone field.
        let allow_tz = old.is_some_and(|o| o.schedule.contains("TZ"));
        validate_schedule(
            &spec.schedule,
            allow_tz,
            spec.time_zone.is_some(),
            &schedule_path,
            errs,
        );
    }
    nonnegative(
        spec.starting_deadline_seconds,
        &path.child("startingDeadlineSeconds"),
        errs,
    );
    let policy_path = path.child("concurrencyPolicy");
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(&policy_path, "")),
        other => errs.push(FieldError::not_supported(
            &policy_path,
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let template_path = path.child("jobTemplate").child("spec");
    let job_spec = or_default(&spec.job_template.spec);
    validate_job_spec(&job_spec, &template_path, errs);
    if let Some(sel) = &job_spec.selector {
        let sp = template_path.child("selector");
        errs.push(FieldError::invalid(
            &sp,
            label_selector::go_value(sel),
            "`selector` will be auto-generated",
        ));
    }
    if job_spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            &template_path.child("manualSelector"),
            "true",
            &["nil", "false"],
        ));
    }
    nonnegative(
        spec.successful_jobs_history_limit,
        &path.child("successfulJobsHistoryLimit"),
        errs,
    );
    nonnegative(
        spec.failed_jobs_history_limit,
        &path.child("failedJobsHistoryLimit"),
        errs,
    );
}

/// The schedule's shape: five fields or a macro (`@daily`, `@every 1h`). The CronJob controller
/// parses the fields themselves.
fn validate_schedule(
    schedule: &str,
    allow_tz: bool,
    has_time_zone: bool,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let mut fields: Vec<&str> = schedule.split_whitespace().collect();
    // A leading TZ=... or CRON_TZ=... names a time zone, not a field.
    if fields
        .first()
        .is_some_and(|f| f.starts_with("TZ=") || f.starts_with("CRON_TZ="))
    {
        fields.remove(0);
    }
    match fields.first() {
        Some(first) if first.starts_with('@') => {
            let every = *first == "@every" && fields.len() == 2;
            if !CRON_MACROS.contains(first) && !every {
                errs.push(FieldError::invalid(
                    path,
                    schedule,
                    &format!("unrecognized descriptor: {first}"),
                ));
            }
        }
        _ if fields.len() != 5 => {
            let msg = format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            );
            errs.push(FieldError::invalid(path, schedule, &msg));
        }
        _ => {}
    }
    if schedule.contains("TZ") {
        if !allow_tz {
            errs.push(FieldError::invalid(
                path,
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        } else if has_time_zone {
            errs.push(FieldError::invalid(
                path,
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        }
    }
}
