//! The Jobs of a CronJob: the Job stamped out for a scheduled time (named after it, so one
//! scheduled time never gets two Jobs), how a Job finished, references kept in the CronJob's
//! status, and which finished Jobs the history limits delete.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{SecondsFormat, TimeZone};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::util;

/// The annotation with a Job's scheduled time (RFC 3339 in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Kubernetes' name of the Job for `scheduled`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cron_job: &str, scheduled: jiff::Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job `cj` runs for `scheduled` (Kubernetes' `getJobFromTemplate2`): the template's
/// labels, annotations and spec, `cj` as controller.
pub fn job_for(cj: &CronJob, scheduled: jiff::Timestamp, zone: Tz) -> Job {
    let template = &cj.spec.job_template;
    let tm = template.metadata.clone().unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let local = zone
        .timestamp_opt(scheduled.as_second(), 0)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| scheduled.to_string());
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), local);
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: Some(tm.labels.unwrap_or_default()),
            annotations: Some(annotations),
            owner_references: Some(vec![util::controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// "Complete" or "Failed" when the Job finished.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"].into_iter().find(|ty| {
        conditions
            .iter()
            .any(|c| c.type_ == *ty && c.status == "True")
    })
}

/// The reference to `job` kept in `status.active`.
pub fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The finished Jobs beyond the history limits, oldest first: `finished` (Jobs with their
/// finish condition) beyond `successful` Complete ones and `failed` Failed ones.
pub fn beyond_history(
    finished: &[(Arc<Job>, &'static str)],
    successful: i32,
    failed: i32,
) -> Vec<Arc<Job>> {
    let mut out = Vec::new();
    for (kind, limit) in [("Complete", successful), ("Failed", failed)] {
        let mut jobs: Vec<Arc<Job>> = finished
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(j, _)| j.clone())
            .collect();
        let excess = jobs
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        jobs.sort_by(|a, b| by_start_time(a, b));
        out.extend(jobs.into_iter().take(excess));
    }
    out
}

/// Kubernetes' `byJobStartTime`: earlier `status.startTime` first, Jobs without one last, ties
/// by name.
fn by_start_time(a: &Job, b: &Job) -> Ordering {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    }
}
