//! What the replica controller needs from the kinds it manages: the ReplicaSet (label selector)
//! and the ReplicationController (label map, defaulting to the template's labels) both reduce to
//! a desired count, a selector, a pod template and a common status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    PodTemplateSpec, ReplicationController, ReplicationControllerCondition,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::runtime::Object;
use crate::util;

/// The condition type set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A kind that keeps a number of pod replicas running.
pub trait Replicated: Object {
    /// `spec.replicas` (Kubernetes defaults it to 1).
    fn desired_replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    /// Whether the selector selects pods with these labels. An empty selector selects nothing,
    /// so a malformed object never claims every pod of its namespace.
    fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool;
    fn pod_template(&self) -> Option<&PodTemplateSpec>;
    /// The status fields this controller owns.
    fn replica_status(&self) -> ReplicaStatus;
    /// A copy with the controller-owned status fields replaced (other conditions are kept).
    fn with_replica_status(&self, status: &ReplicaStatus) -> Self;
}

/// The status a replica controller writes, common to both kinds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: Option<i64>,
    /// The `ReplicaFailure` condition (status True), if set.
    pub failure: Option<Failure>,
}

/// Why pods could not be created or deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: String,
    pub message: String,
    pub last_transition_time: Option<Time>,
}

impl Replicated for ReplicaSet {
    fn desired_replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }

    fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let selector = &self.spec.selector;
        let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        !empty && util::selector_matches(selector, labels)
    }

    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.template.as_ref()
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = &self.status else {
            return ReplicaStatus::default();
        };
        let failure = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some(REPLICA_FAILURE))
            .map(|c| Failure {
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                last_transition_time: c.last_transition_time.clone(),
            });
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation,
            failure,
        }
    }

    fn with_replica_status(&self, st: &ReplicaStatus) -> Self {
        let mut out = self.clone();
        let old = out.status.take().unwrap_or_default();
        let mut conditions: Vec<ReplicaSetCondition> = old
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_.as_deref() != Some(REPLICA_FAILURE))
            .collect();
        if let Some(f) = &st.failure {
            conditions.push(ReplicaSetCondition {
                type_: Some(REPLICA_FAILURE.into()),
                status: Some("True".into()),
                reason: Some(f.reason.clone()),
                message: Some(f.message.clone()),
                last_transition_time: f.last_transition_time.clone(),
            });
        }
        out.status = Some(ReplicaSetStatus {
            replicas: st.replicas,
            fully_labeled_replicas: Some(st.fully_labeled_replicas),
            ready_replicas: Some(st.ready_replicas),
            available_replicas: Some(st.available_replicas),
            observed_generation: st.observed_generation,
            conditions: (!conditions.is_empty()).then_some(conditions),
            ..old
        });
        out
    }
}

/// An RC's `spec.selector`, or its template's labels when the selector is empty (the API's
/// default).
fn rc_selector(rc: &ReplicationController) -> Option<&BTreeMap<String, String>> {
    let spec = rc.spec.as_ref()?;
    match &spec.selector {
        Some(s) if !s.is_empty() => Some(s),
        _ => spec.template.as_ref()?.metadata.as_ref()?.labels.as_ref(),
    }
}

impl Replicated for ReplicationController {
    fn desired_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        rc_selector(self).is_some_and(|s| util::map_selector_matches(s, labels))
    }

    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = &self.status else {
            return ReplicaStatus::default();
        };
        let failure = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .map(|c| Failure {
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                last_transition_time: c.last_transition_time.clone(),
            });
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation,
            failure,
        }
    }

    fn with_replica_status(&self, st: &ReplicaStatus) -> Self {
        let mut out = self.clone();
        let old = out.status.take().unwrap_or_default();
        let mut conditions: Vec<ReplicationControllerCondition> = old
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != REPLICA_FAILURE)
            .collect();
        if let Some(f) = &st.failure {
            conditions.push(ReplicationControllerCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(f.reason.clone()),
                message: Some(f.message.clone()),
                last_transition_time: f.last_transition_time.clone(),
            });
        }
        out.status = Some(ReplicationControllerStatus {
            replicas: st.replicas,
            fully_labeled_replicas: Some(st.fully_labeled_replicas),
            ready_replicas: Some(st.ready_replicas),
            available_replicas: Some(st.available_replicas),
            observed_generation: st.observed_generation,
            conditions: (!conditions.is_empty()).then_some(conditions),
        });
        out
    }
}
