//! The status of a rolling-out Deployment with its progress estimate (Kubernetes'
//! `progress.go`): the Progressing condition moves with every sign of progress and turns to
//! ProgressDeadlineExceeded after `progressDeadlineSeconds` without any; a sync that found no
//! progress asks to be run again when the deadline would pass.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DeploymentStatus;

use crate::error::Result;
use crate::runtime::events::WARNING;

use super::status::{
    self, condition, deployment_complete, deployment_progressing, deployment_timed_out,
    new_condition, reason, remove_condition, set_condition, PROGRESSING, REPLICA_FAILURE,
};
use super::sync::{Rollout, Sets};

impl Rollout<'_> {
    /// Compute and write the status of a rollout step, and set the progress check delay.
    pub async fn sync_rollout_status(&mut self, sets: &Sets) -> Result<()> {
        let now = self.now();
        let all = sets.all();
        let new_rs = sets.new.as_ref();
        let old = self.status();
        let mut status = status::calculate_status(&self.d, &self.params, &all, new_rs, now);
        if self.params.progress_deadline_seconds.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = condition(&old, PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| reason(c) == "NewReplicaSetAvailable");
        let subject = match new_rs.and_then(|rs| rs.metadata.name.clone()) {
            Some(rs) => format!("ReplicaSet {rs:?}"),
            None => format!(
                "Deployment {:?}",
                self.d.metadata.name.clone().unwrap_or_default()
            ),
        };
        if self.params.progress_deadline_seconds.is_some() && !complete_before {
            if deployment_complete(&self.d, &self.params, &status) {
                let message = format!("{subject} has successfully progressed.");
                let c = new_condition(PROGRESSING, "True", "NewReplicaSetAvailable", message, now);
                set_condition(&mut status, c);
            } else if deployment_progressing(&old, &status) {
                // Unlike other conditions, every sign of progress refreshes lastUpdateTime.
                let message = format!("{subject} is progressing.");
                let mut c = new_condition(PROGRESSING, "True", "ReplicaSetUpdated", message, now);
                if let Some(cur) = &current {
                    if cur.status.as_deref() == Some("True") {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.params, &status, now) {
                let message = format!("{subject} has timed out progressing.");
                if current
                    .as_ref()
                    .is_none_or(|c| reason(c) != "ProgressDeadlineExceeded")
                {
                    self.report_deadline_exceeded(&message);
                }
                let c = new_condition(
                    PROGRESSING,
                    "False",
                    "ProgressDeadlineExceeded",
                    message,
                    now,
                );
                set_condition(&mut status, c);
            }
        }
        match status::replica_failure(&all, new_rs) {
            Some(c) => set_condition(&mut status, c),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        self.requeue = self.progress_check(&status, now);
        self.write_status(status).await
    }

    fn report_deadline_exceeded(&self, message: &str) {
        tracing::info!(deployment = ?self.d.metadata.name, "{message}");
        self.recorder().event(
            &self.d,
            WARNING,
            "ProgressDeadlineExceeded",
            message.to_string(),
        );
    }

    /// When to look again for a rollout that may be stuck: when its Progressing condition's
    /// deadline passes (plus a second against clock skew, as Kubernetes does). None when there
    /// is nothing to watch: no deadline, complete, already timed out, or last seen complete.
    fn progress_check(&self, status: &DeploymentStatus, now: jiff::Timestamp) -> Option<Duration> {
        let deadline = self.params.progress_deadline_seconds?;
        let c = condition(status, PROGRESSING)?;
        if deployment_complete(&self.d, &self.params, status)
            || matches!(
                reason(c),
                "ProgressDeadlineExceeded" | "NewReplicaSetAvailable"
            )
        {
            return None;
        }
        let last = c.last_update_time.as_ref()?.0.as_second();
        let left = last + i64::from(deadline) - now.as_second();
        Some(Duration::from_secs(left.max(0) as u64 + 1))
    }
}
