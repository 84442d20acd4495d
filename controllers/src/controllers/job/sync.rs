//! One step of an unfinished Job, as a pure function of the Job, its pods and the time: which
//! pods to create (with their completion indexes) and delete, the status to write, the events to
//! record and when to look again (Kubernetes' `syncJob` and `manageJob`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::pods::{completion_index, phase, restarts};
use super::status::{self, COMPLETE, FAILED, SUSPENDED};
use super::JobOptions;
use crate::controllers::replicaset::pods_to_delete;
use crate::runtime::events::{NORMAL, WARNING};
use crate::util;

/// What one reconcile of an unfinished Job does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Pods to create: one entry per pod, with its completion index in Indexed mode.
    pub create: Vec<Option<i32>>,
    pub delete: Vec<Arc<Pod>>,
    /// The status once the creations and deletions succeeded.
    pub status: JobStatus,
    /// (type, reason, message) of the events to record once the status is written.
    pub events: Vec<(&'static str, &'static str, String)>,
    pub requeue: Option<Duration>,
}

/// The plan for `job`, whose pods are `pods`, at `now`.
pub fn plan(job: &Job, pods: &[Arc<Pod>], now: jiff::Timestamp, opts: &JobOptions) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let mut st = job.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed") && spec.completions.is_some();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");

    let active: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| util::is_pod_active(p))
        .cloned()
        .collect();
    let finished: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| util::is_pod_terminated(p))
        .cloned()
        .collect();
    let count = |ph: &str| finished.iter().filter(|p| phase(p) == ph).count() as i32;
    let completions = spec.completions;
    let mut done_indexes = BTreeSet::new();
    if let (true, Some(c)) = (indexed, completions) {
        done_indexes = status::parse_indexes(st.completed_indexes.as_deref().unwrap_or(""), c);
        done_indexes.extend(
            finished
                .iter()
                .filter(|p| phase(p) == "Succeeded")
                .filter_map(|p| completion_index(p))
                .filter(|i| *i < c),
        );
    }
    // Counts never go down: a finished pod may be garbage-collected after it was counted.
    let succeeded = if indexed {
        done_indexes.len() as i32
    } else {
        st.succeeded.unwrap_or(0).max(count("Succeeded"))
    };
    let mut failed = st.failed.unwrap_or(0).max(count("Failed"));

    if st.start_time.is_none() && !suspended {
        st.start_time = Some(Time(now));
    }
    let mut conditions = st.conditions.take().unwrap_or_default();
    if !suspended
        && status::set_condition(
            &mut conditions,
            SUSPENDED,
            false,
            "JobResumed",
            "Job resumed",
            now,
        )
    {
        // The active deadline counts from the resumption.
        st.start_time = Some(Time(now));
        plan.events.push((NORMAL, "Resumed", "Job resumed".into()));
    }
    let restarted: i32 = active.iter().map(|p| restarts(p)).sum();
    let past_restart_limit = on_failure
        && if backoff_limit == 0 {
            restarted > 0
        } else {
            restarted >= backoff_limit
        };
    let deadline_in = match (spec.active_deadline_seconds, &st.start_time) {
        (Some(secs), Some(start)) if !suspended => {
            let deadline = start.0 + jiff::SignedDuration::from_secs(secs);
            Some(Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO))
        }
        _ => None,
    };
    let failure = if failed > backoff_limit || past_restart_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline_in == Some(Duration::ZERO) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };

    let mut kept = active.len();
    if let Some((reason, message)) = failure {
        // Kubernetes counts the pods a failed Job stops as failed.
        failed += active.len() as i32;
        plan.delete = active.clone();
        kept = 0;
        status::set_condition(&mut conditions, FAILED, true, reason, message, now);
        plan.events.push((WARNING, reason, message.into()));
    } else if suspended {
        plan.delete = active.clone();
        kept = 0;
        if status::set_condition(
            &mut conditions,
            SUSPENDED,
            true,
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            plan.events
                .push((NORMAL, "Suspended", "Job suspended".into()));
        }
    } else {
        let want = match completions {
            // Work-queue mode: once a pod succeeded, let the others finish without replacing them.
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
            Some(c) => (c - succeeded).clamp(0, parallelism),
        } as usize;
        if let (true, Some(c)) = (indexed, completions) {
            let (delete, pending) = indexed_changes(&active, &done_indexes, c, want);
            kept = active.len() - delete.len();
            plan.delete = delete;
            plan.create = pending.into_iter().map(Some).collect();
        } else if active.len() > want {
            plan.delete = pods_to_delete(&active, active.len() - want);
            kept = want;
        } else {
            plan.create = vec![None; want - active.len()];
        }
        plan.create.truncate(opts.burst);
        plan.delete.truncate(opts.burst);
        if !plan.create.is_empty() {
            let wait =
                status::backoff_remaining(&finished, now, opts.backoff_base, opts.backoff_max);
            if !wait.is_zero() {
                plan.create.clear();
                plan.requeue = Some(wait);
            }
        }
        let active_after = kept + plan.create.len();
        let complete = match completions {
            None => succeeded > 0 && active_after == 0,
            Some(c) => succeeded >= c && active_after == 0,
        };
        if complete {
            let msg = "Reached expected number of succeeded pods";
            status::set_condition(
                &mut conditions,
                COMPLETE,
                true,
                "CompletionsReached",
                msg,
                now,
            );
            st.completion_time = Some(Time(now));
            plan.events
                .push((NORMAL, "Completed", "Job completed".into()));
        } else if let Some(d) = deadline_in {
            plan.requeue = Some(plan.requeue.map_or(d, |r| r.min(d)));
        }
    }

    let deleted: BTreeSet<&str> = plan
        .delete
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let remaining = || {
        active
            .iter()
            .filter(|p| !deleted.contains(p.metadata.uid.as_deref().unwrap_or_default()))
    };
    let ready = remaining().filter(|p| util::is_pod_ready(p)).count() as i32;
    let terminating = pods
        .iter()
        .filter(|p| util::is_terminating(p.as_ref()) && !util::is_pod_terminated(p))
        .count() as i32;
    let nonzero = |n: i32| (n != 0).then_some(n);
    st.active = nonzero((kept + plan.create.len()) as i32);
    st.ready = Some(ready);
    st.terminating = Some(terminating);
    st.succeeded = nonzero(succeeded);
    st.failed = nonzero(failed);
    st.completed_indexes = Some(status::format_indexes(&done_indexes)).filter(|s| !s.is_empty());
    st.conditions = (!conditions.is_empty()).then_some(conditions);
    plan.status = st;
    plan
}

/// For an Indexed Job: the active pods to delete (with an invalid or already completed index,
/// duplicates of one index, and the highest indexes beyond `want`) and the lowest pending
/// indexes to start so that `want` indexes run.
fn indexed_changes(
    active: &[Arc<Pod>],
    done: &BTreeSet<i32>,
    completions: i32,
    want: usize,
) -> (Vec<Arc<Pod>>, Vec<i32>) {
    let mut delete = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in active {
        match completion_index(p) {
            Some(i) if i < completions && !done.contains(&i) => {
                by_index.entry(i).or_default().push(p.clone())
            }
            _ => delete.push(p.clone()),
        }
    }
    for pods in by_index.values_mut() {
        if pods.len() > 1 {
            // Keep the pod furthest along; delete the others.
            let extra = pods_to_delete(pods, pods.len() - 1);
            delete.extend(extra);
        }
    }
    let running: Vec<i32> = by_index.keys().copied().collect();
    if running.len() > want {
        for i in running.iter().rev().take(running.len() - want) {
            let keep = by_index[i]
                .iter()
                .find(|p| !delete.iter().any(|d| Arc::ptr_eq(d, p)));
            delete.extend(keep.cloned());
        }
        return (delete, Vec::new());
    }
    let pending = (0..completions)
        .filter(|i| !done.contains(i) && !by_index.contains_key(i))
        .take(want - running.len())
        .collect();
    (delete, pending)
}
