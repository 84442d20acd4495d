//! The Deployment status arithmetic (Kubernetes' `deployment/util`, continued): conditions,
//! the counts the ReplicaSets add up to, and whether a rollout is complete, progressing or
//! past its deadline.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::helpers::{
    available_replicas, ready_replicas, spec_replicas, status_replicas, sum, Params,
};

pub(super) const PROGRESSING: &str = "Progressing";
pub(super) const AVAILABLE: &str = "Available";
pub(super) const REPLICA_FAILURE: &str = "ReplicaFailure";

pub(super) fn condition<'a>(
    status: &'a DeploymentStatus,
    ty: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some(ty))
}

pub(super) fn reason(c: &DeploymentCondition) -> &str {
    c.reason.as_deref().unwrap_or_default()
}

/// A condition stamped at `now` (whole seconds, as it is stored).
pub(super) fn new_condition(
    ty: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    let now = Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now));
    DeploymentCondition {
        type_: Some(ty.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Kubernetes' `SetDeploymentCondition`: a condition with the same status and reason is left
/// alone; a status that does not change keeps its transition time.
pub(super) fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let ty = c.type_.clone().unwrap_or_default();
    if let Some(cur) = condition(status, &ty) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(status, &ty);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

pub(super) fn remove_condition(status: &mut DeploymentStatus, ty: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_.as_deref() != Some(ty));
    }
}

/// The status the ReplicaSets add up to, with the Available condition (Kubernetes'
/// `calculateStatus`).
pub(super) fn calculate_status(
    d: &Deployment,
    params: &Params,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let available = sum(all, available_replicas);
    let total = sum(all, spec_replicas);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(all, status_replicas)),
        updated_replicas: Some(new_rs.map_or(0, status_replicas)),
        ready_replicas: Some(sum(all, ready_replicas)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    let c = if available >= params.replicas - params.max_unavailable {
        new_condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, c);
    status
}

/// The ReplicaFailure condition of the new ReplicaSet, else of any ReplicaSet.
pub(super) fn replica_failure(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        let c = rs
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_.as_deref() == Some(REPLICA_FAILURE))?;
        Some(DeploymentCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
    };
    new_rs
        .and_then(failure)
        .or_else(|| all.iter().find_map(|rs| failure(rs)))
}

fn int(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Every desired replica is updated and available, no old one runs, and the spec is observed.
pub(super) fn deployment_complete(d: &Deployment, params: &Params, s: &DeploymentStatus) -> bool {
    int(s.updated_replicas) == params.replicas
        && int(s.replicas) == params.replicas
        && int(s.available_replicas) == params.replicas
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// New pods were added, became ready or available, or old pods went away since `old`.
pub(super) fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = int(old.replicas) - int(old.updated_replicas);
    let new_old = int(new.replicas) - int(new.updated_replicas);
    int(new.updated_replicas) > int(old.updated_replicas)
        || new_old < old_old
        || int(new.ready_replicas) > int(old.ready_replicas)
        || int(new.available_replicas) > int(old.available_replicas)
}

/// The Progressing condition of `status` reported no progress for longer than the deadline.
pub(super) fn deployment_timed_out(
    params: &Params,
    status: &DeploymentStatus,
    now: jiff::Timestamp,
) -> bool {
    let (Some(deadline), Some(c)) = (
        params.progress_deadline_seconds,
        condition(status, PROGRESSING),
    ) else {
        return false;
    };
    match reason(c) {
        "NewReplicaSetAvailable" => false,
        "ProgressDeadlineExceeded" => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.as_second()),
    }
}
