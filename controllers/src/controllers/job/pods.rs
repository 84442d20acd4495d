//! A Job's pods: the pod its template stamps out (with the Job's labels and, in Indexed mode,
//! the completion index as annotation, label, environment variable and hostname) and what the
//! controller reads from a pod (phase, completion index, restarts, when it finished).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::{Error, Result};
use crate::util;

/// The label with the Job's name on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The pre-1.27 spelling of [`JOB_NAME_LABEL`], still set by Kubernetes.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// The label with the Job's uid on its pods (what a generated selector selects).
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The pre-1.27 spelling of [`CONTROLLER_UID_LABEL`].
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The annotation (and label) with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable with the completion index, in every container of an Indexed pod.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The pod's phase ("" when it has none yet).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The completion index of an Indexed Job's pod, from its annotation (or label).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX_ANNOTATION))
        .or_else(|| m.labels.as_ref()?.get(COMPLETION_INDEX_ANNOTATION))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|i| *i >= 0)
}

/// Container restarts of a pending or running pod (init containers included): what
/// `restartPolicy: OnFailure` counts towards `backoffLimit`.
pub fn restarts(pod: &Pod) -> i32 {
    if !matches!(phase(pod), "Pending" | "Running") {
        return 0;
    }
    let Some(s) = &pod.status else { return 0 };
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// When a terminated pod finished (Kubernetes' `getFinishedTime`): the last container
/// termination, else when it stopped being ready, else its deletion, else its creation.
pub fn finish_time(pod: &Pod) -> jiff::Timestamp {
    let from_containers = pod.status.as_ref().and_then(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .map(|t| t.0)
            .max()
    });
    let not_ready = || {
        util::pod_condition(pod, "Ready")
            .filter(|c| c.status == "False")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    from_containers
        .or_else(not_ready)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The pod `job`'s template describes, controlled by `job`, named `<job>-<random>` (or
/// `<job>-<index>-<random>` for completion index `index`).
pub fn new_pod(job: &Job, index: Option<i32>) -> Result<Pod> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| &s.template);
    let Some(spec) = template.and_then(|t| t.spec.clone()) else {
        return Err(Error::Invalid(format!(
            "job {name}: spec.template.spec is required to create pods"
        )));
    };
    let tm = template
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    for key in [JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL] {
        labels.entry(key.into()).or_insert_with(|| name.clone());
    }
    if let Some(uid) = job.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        for key in [CONTROLLER_UID_LABEL, LEGACY_CONTROLLER_UID_LABEL] {
            labels.entry(key.into()).or_insert_with(|| uid.into());
        }
    }
    let mut pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![util::controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    if let Some(ix) = index {
        add_completion_index(&mut pod, &name, ix);
    }
    Ok(pod)
}

fn add_completion_index(pod: &mut Pod, job_name: &str, ix: i32) {
    let value = ix.to_string();
    let m = &mut pod.metadata;
    m.generate_name = Some(format!("{job_name}-{ix}-"));
    let annotations = m.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(COMPLETION_INDEX_ANNOTATION.into(), value.clone());
    let labels = m.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(COMPLETION_INDEX_ANNOTATION.into(), value);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if spec.hostname.as_deref().unwrap_or_default().is_empty() {
        spec.hostname = Some(format!("{job_name}-{ix}"));
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    containers.for_each(add_index_env);
}

/// The index reaches the container through the downward API, as in Kubernetes.
fn add_index_env(c: &mut Container) {
    let env = c.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: format!("metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
            }),
            ..Default::default()
        }),
    });
}
