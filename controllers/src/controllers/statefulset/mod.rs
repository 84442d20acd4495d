//! The StatefulSet controller (apps/v1, Kubernetes' `pkg/controller/statefulset`): pods with
//! stable ordinal names (`web-0`, `web-1`, …), hostnames and subdomains under the governing
//! Service, a PersistentVolumeClaim per pod and claim template that outlives the pod and is
//! reattached to the pod of the same ordinal, OrderedReady and Parallel pod management,
//! RollingUpdate (with `partition`) and OnDelete updates, the claim retention policy, and status.
//!
//! There is never more than one pod per ordinal: a pod that exists, even while it terminates
//! (say on an unreachable node), blocks the creation of its replacement until it is gone.
//! rkube serves no ControllerRevision objects: a pod's revision is its
//! `controller-revision-hash` label, the Deployment controller's hash of the set's template,
//! and pods are always created from the current template (Kubernetes recreates pods below the
//! partition from the old revision's template, which rkube does not keep).

mod identity;
mod sync;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use crate::error::Result;
use crate::runtime::{Action, ApiExt, Context, Controller, Informer, ObjectKey, Reconciler};
use crate::util;

pub use identity::{
    claim_name, new_claim, new_pod, ordinal_of, pod_name, update_revision, POD_INDEX_LABEL,
    POD_NAME_LABEL, REVISION_LABEL,
};

/// How long a reconcile waits for the caches to show its own writes.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// Tuning of the StatefulSet controller, with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// StatefulSets reconciled concurrently (`--concurrent-statefulset-syncs`, 5).
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { workers: 5 }
    }
}

/// The StatefulSet controller, reading StatefulSets, Pods and PersistentVolumeClaims from
/// `ctx`'s informers. It is woken by StatefulSet changes and by changes of the pods a
/// StatefulSet controls; claim changes do not wake it.
pub fn controller(ctx: &Context, opts: Options) -> Controller {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let reconciler = StatefulSetReconciler {
        ctx: ctx.clone(),
        sets: sets.clone(),
        pods: pods.clone(),
        claims,
    };
    let c = Controller::new::<StatefulSet>("statefulset", ctx, reconciler, opts.workers);
    util::enqueue_self(&sets, &c.queue);
    util::enqueue_owner::<Pod, StatefulSet>(&pods, &c.queue);
    c
}

struct StatefulSetReconciler {
    ctx: Context,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    claims: Informer<PersistentVolumeClaim>,
}

#[async_trait::async_trait]
impl Reconciler for StatefulSetReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(set) = self.sets.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        if util::is_terminating(set.as_ref()) {
            // The garbage collector deletes the pods (and, under whenDeleted: Delete, claims).
            return Ok(Action::Done);
        }
        let revision = update_revision(&set);
        let synced = self.sync(&set, &revision).await;
        let now = self.ctx.now();
        let pods = self.owned_pods(&set);
        let status = compute_status(&set, &pods, &revision, now);
        if set.status.as_ref() != Some(&status) {
            let mut updated = set.as_ref().clone();
            updated.status = Some(status);
            self.ctx.api.update_object_status(&updated).await?;
        }
        synced?;
        Ok(next_available_in(&set, &pods, now).map_or(Action::Done, Action::RequeueAfter))
    }
}

impl StatefulSetReconciler {
    /// The pods `set` controls.
    fn owned_pods(&self, set: &StatefulSet) -> Vec<Arc<Pod>> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        util::list_matching(&self.pods, ns, |p| {
            util::controller_of(p).is_some_and(|r| r.uid == uid)
        })
    }
}

/// Running with a True Ready condition.
fn is_running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && util::is_pod_ready(pod)
}

/// Running, Ready and available for `minReadySeconds`: what OrderedReady waits for.
fn is_healthy(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    is_running_and_ready(pod) && util::is_pod_available(pod, min_ready_seconds, now)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.min_ready_seconds.unwrap_or(0)
}

fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

/// The set's status from its pods (Kubernetes' `computeReplicaStatus` and
/// `completeRollingUpdate`): every existing pod counts towards `replicas`, the pods not being
/// deleted towards the current and updated counts by revision. The current revision becomes
/// the update revision once a rolling update has made every pod updated and ready.
fn compute_status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    update_revision: &str,
    now: jiff::Timestamp,
) -> StatefulSetStatus {
    let old = set.status.clone().unwrap_or_default();
    let mut current_revision = old
        .current_revision
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| update_revision.to_string());
    let count = |f: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| f(p)).count() as i32;
    let replicas = pods.len() as i32;
    let ready = count(&|p| is_running_and_ready(p));
    let available = count(&|p| is_healthy(p, min_ready_seconds(set), now));
    let live_at =
        |rev: &str| count(&|p| !util::is_terminating(p) && identity::revision_of(p) == Some(rev));
    let updated = live_at(update_revision);
    let mut current = live_at(&current_revision);
    if !is_on_delete(set) && updated == replicas && ready == replicas {
        current_revision = update_revision.to_string();
        current = updated;
    }
    StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update_revision.to_string()),
        observed_generation: set.metadata.generation,
        collision_count: Some(old.collision_count.unwrap_or(0)),
        conditions: old.conditions,
    }
}

/// How long until a Ready pod becomes available under `minReadySeconds`, if any is waiting.
fn next_available_in(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> Option<Duration> {
    let min_ready = i64::from(min_ready_seconds(set));
    if min_ready <= 0 {
        return None;
    }
    pods.iter()
        .filter(|p| is_running_and_ready(p) && !util::is_pod_available(p, min_ready as i32, now))
        .filter_map(|p| {
            util::pod_condition(p, "Ready")?
                .last_transition_time
                .clone()
        })
        .map(|t| {
            let left = min_ready - (now.as_second() - t.0.as_second());
            Duration::from_secs(left.max(1) as u64)
        })
        .min()
}
