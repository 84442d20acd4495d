//! The scheduling loop on the shared controller runtime: pending pods are queued, each is
//! placed by the algorithm against a cached snapshot (with the pods it bound but has not yet
//! seen confirmed "assumed" in it), and bound through the API with a resourceVersion
//! precondition, so a pod is never bound twice. Claims of the pod that wait for their first
//! consumer get the chosen node in `volume.kubernetes.io/selected-node` just before the binding.
//! Pods that fit nowhere get `PodScheduled=False` with Kubernetes' message and an Event, and are
//! retried with back-off when nodes or pods change; higher-priority pods may preempt
//! lower-priority ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rand::SeedableRng;
use rkube_controllers::controllers::volume::SELECTED_NODE_ANNOTATION;
use rkube_controllers::runtime::events::{NORMAL, WARNING};
use rkube_controllers::runtime::{
    Action, ApiExt, Change, Context, Controller, DeleteOptions, Informer, ObjectKey, Reconciler,
};
use rkube_controllers::Result;
use serde_json::json;

use crate::algorithm::{self, Snapshot};

/// The scheduler's name in pods' `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// First retry delay of an unschedulable pod (Kubernetes' podInitialBackoffSeconds).
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay (podMaxBackoffSeconds).
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Concurrent bindings in flight: decisions are serialized under the snapshot lock, the API
/// writes that record them overlap.
const WORKERS: usize = 32;

/// Build the scheduler as a controller of pending pods.
pub fn controller(ctx: &Context) -> Controller {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let pvs = ctx.informers.get::<PersistentVolume>();
    let pvcs = ctx.informers.get::<PersistentVolumeClaim>();
    let classes = ctx.informers.get::<PriorityClass>();
    let state = Arc::new(State {
        snapshot: Mutex::new(None),
        unschedulable: Mutex::new(HashMap::new()),
        rng: Mutex::new(rand::rngs::StdRng::from_os_rng()),
    });
    // The scheduler's Events name it as their source, as kube-scheduler's do.
    let mut own = ctx.clone();
    own.recorder = rkube_controllers::runtime::Recorder::new(SCHEDULER_NAME, ctx.api.clone());
    let sched = Scheduler {
        ctx: own,
        pods: pods.clone(),
        nodes: nodes.clone(),
        pvs: pvs.clone(),
        pvcs: pvcs.clone(),
        classes,
        state: state.clone(),
    };
    let c = Controller::new::<Pod>("scheduler", ctx, sched, WORKERS);
    let queue = c.queue.clone();
    {
        let state = state.clone();
        let queue = queue.clone();
        pods.on_change(move |change: &Change<Pod>| {
            let pod = change.object();
            let key = ObjectKey::of(pod.as_ref());
            let gone = matches!(change, Change::Deleted(_));
            let mut freed = false;
            if let Some(snapshot) = state.snapshot.lock().expect("snapshot lock").as_mut() {
                if gone || !counts_on_node(pod) {
                    freed = snapshot.remove_pod(&key.namespace, &key.name);
                } else {
                    snapshot.add_pod(pod);
                }
            }
            if gone {
                state
                    .unschedulable
                    .lock()
                    .expect("unschedulable lock")
                    .remove(&key);
            } else if is_pending(pod) {
                queue.add(key);
            }
            if freed {
                // Room was freed: pods that did not fit may fit now.
                state.retry_unschedulable(&queue);
            }
        });
    }
    let rebuild = {
        let state = state.clone();
        let queue = queue.clone();
        move || {
            *state.snapshot.lock().expect("snapshot lock") = None;
            state.retry_unschedulable(&queue);
        }
    };
    {
        let rebuild = rebuild.clone();
        nodes.on_change(move |change: &Change<Node>| {
            if node_changed(change) {
                rebuild();
            }
        });
    }
    {
        let rebuild = rebuild.clone();
        pvs.on_change(move |_| rebuild());
    }
    pvcs.on_change(move |_| rebuild());
    c
}

struct State {
    /// Built from the informers on first use; pod changes are applied to it incrementally, node
    /// and volume changes drop it to be rebuilt.
    snapshot: Mutex<Option<Snapshot>>,
    /// Pods that fit nowhere, with their consecutive failures.
    unschedulable: Mutex<HashMap<ObjectKey, u32>>,
    rng: Mutex<rand::rngs::StdRng>,
}

impl State {
    fn retry_unschedulable(&self, queue: &rkube_controllers::runtime::WorkQueue<ObjectKey>) {
        let keys: Vec<ObjectKey> = self
            .unschedulable
            .lock()
            .expect("unschedulable lock")
            .keys()
            .cloned()
            .collect();
        for k in keys {
            queue.add(k);
        }
    }
}

struct Scheduler {
    ctx: Context,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    pvs: Informer<PersistentVolume>,
    pvcs: Informer<PersistentVolumeClaim>,
    classes: Informer<PriorityClass>,
    state: Arc<State>,
}

/// A pod this scheduler should place.
fn is_pending(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.node_name.as_deref().unwrap_or_default().is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
}

/// A pod that holds resources on its node.
fn counts_on_node(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
}

/// Whether a node change matters to scheduling (not a heartbeat).
fn node_changed(change: &Change<Node>) -> bool {
    let Change::Modified { old, new } = change else {
        return true;
    };
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || old.status.as_ref().map(|s| &s.allocatable)
            != new.status.as_ref().map(|s| &s.allocatable)
        || ready(old) != ready(new)
}

impl Scheduler {
    fn priority_of(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        match spec.and_then(|s| s.priority_class_name.as_deref()) {
            Some(name) if !name.is_empty() => self
                .classes
                .get("", name)
                .and_then(|c| c.value)
                .unwrap_or(0),
            _ => self
                .classes
                .list()
                .iter()
                .find(|c| c.global_default == Some(true))
                .and_then(|c| c.value)
                .unwrap_or(0),
        }
    }

    fn with_snapshot<T>(&self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        let mut guard = self.state.snapshot.lock().expect("snapshot lock");
        let snapshot = guard.get_or_insert_with(|| {
            Snapshot::new(
                self.nodes.list().iter().map(|n| (**n).clone()),
                self.pods
                    .list()
                    .iter()
                    .filter(|p| counts_on_node(p))
                    .map(|p| (**p).clone()),
                self.pvs.list().iter().map(|v| (**v).clone()),
                self.pvcs.list().iter().map(|v| (**v).clone()),
            )
        });
        f(snapshot)
    }

    async fn bind(&self, pod: &Pod, node: &str) -> Result<()> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({
            "metadata": {"resourceVersion": pod.metadata.resource_version},
            "spec": {"nodeName": node},
        });
        self.ctx
            .api
            .merge_patch::<Pod>(ns, name, patch, false)
            .await
            .map(|_| ())
    }

    /// Kubernetes' VolumeBinding PreBind for claims waiting for their first consumer: write the
    /// chosen node into each claim's selected-node annotation, so the local provisioner creates
    /// its volume there. The pod is bound right after; its agent waits for the claim to be Bound
    /// before starting the containers.
    async fn select_node(&self, pod: &Pod, result: &algorithm::ScheduleResult) -> Result<()> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        for claim in &result.claims_to_select {
            let patch = json!({
                "metadata": {"annotations": {SELECTED_NODE_ANNOTATION: result.node}},
            });
            self.ctx
                .api
                .merge_patch::<PersistentVolumeClaim>(ns, claim, patch, false)
                .await?;
            tracing::debug!(namespace = ns, claim = %claim, node = %result.node, "selected the node of a claim waiting for its first consumer");
        }
        Ok(())
    }

    async fn mark_unschedulable(&self, pod: &Pod, message: &str) -> Result<()> {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message)) {
            return Ok(());
        }
        let mut updated = pod.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.phase.get_or_insert_with(|| "Pending".into());
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "PodScheduled");
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(self.ctx.now())),
            ..Default::default()
        });
        self.ctx
            .api
            .update_object_status(&updated)
            .await
            .map(|_| ())
    }

    async fn try_preempt(&self, pod: &Pod) -> Result<bool> {
        let preemption =
            self.with_snapshot(|s| algorithm::preempt(pod, s, |p| self.priority_of(p)));
        let Some(p) = preemption else {
            return Ok(false);
        };
        let pod_key = ObjectKey::of(pod);
        for (ns, name) in &p.victims {
            if let Some(victim) = self.pods.get(ns, name) {
                self.ctx.recorder.event(
                    victim.as_ref(),
                    NORMAL,
                    "Preempted",
                    format!("Preempted by pod {} on node {}", pod_key, p.node),
                );
            }
            self.ctx
                .api
                .delete_object::<Pod>(ns, name, DeleteOptions::default())
                .await?;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.ctx
            .api
            .merge_patch::<Pod>(
                ns,
                name,
                json!({"status": {"nominatedNodeName": p.node}}),
                true,
            )
            .await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Reconciler for Scheduler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(pod) = self.pods.get(&key.namespace, &key.name) else {
            self.state
                .unschedulable
                .lock()
                .expect("unschedulable lock")
                .remove(key);
            return Ok(Action::Done);
        };
        if !is_pending(&pod) {
            self.state
                .unschedulable
                .lock()
                .expect("unschedulable lock")
                .remove(key);
            return Ok(Action::Done);
        }
        // Decide and assume under the snapshot lock, so concurrent workers see each other's
        // choices; the binding itself is written outside the lock.
        let decision = {
            let mut rng = self.state.rng.lock().expect("rng lock");
            self.with_snapshot(|s| {
                let result = algorithm::schedule(&pod, s, &mut *rng);
                if let Ok(r) = &result {
                    let mut assumed = (*pod).clone();
                    assumed.spec.get_or_insert_with(Default::default).node_name =
                        Some(r.node.clone());
                    s.add_pod(&assumed);
                    for claim in &r.claims_to_select {
                        s.assume_claim_annotation(
                            &key.namespace,
                            claim,
                            SELECTED_NODE_ANNOTATION,
                            &r.node,
                        );
                    }
                }
                result
            })
        };
        match decision {
            Ok(r) => {
                let written = match self.select_node(&pod, &r).await {
                    Ok(()) => self.bind(&pod, &r.node).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    // Forget the assumptions; the pod is retried from the cache.
                    let mut guard = self.state.snapshot.lock().expect("snapshot lock");
                    if r.claims_to_select.is_empty() {
                        if let Some(s) = guard.as_mut() {
                            s.remove_pod(&key.namespace, &key.name);
                        }
                    } else {
                        *guard = None;
                    }
                    return Err(e);
                }
                self.state
                    .unschedulable
                    .lock()
                    .expect("unschedulable lock")
                    .remove(key);
                self.ctx.recorder.event(
                    pod.as_ref(),
                    NORMAL,
                    "Scheduled",
                    format!("Successfully assigned {key} to {}", r.node),
                );
                // Wait until the cache shows the binding, so the next look at this pod (if any)
                // does not schedule it again.
                self.pods
                    .wait_until(Duration::from_secs(5), |c| {
                        c.get(&key.namespace, &key.name)
                            .is_none_or(|p| !is_pending(&p))
                    })
                    .await;
                Ok(Action::Done)
            }
            Err(fit) => {
                let message = fit.to_string();
                let failures = {
                    let mut u = self.state.unschedulable.lock().expect("unschedulable lock");
                    let n = u.entry(key.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if failures == 1 || failures.is_power_of_two() {
                    self.ctx.recorder.event(
                        pod.as_ref(),
                        WARNING,
                        "FailedScheduling",
                        message.clone(),
                    );
                }
                self.mark_unschedulable(&pod, &message).await?;
                if fit.preemption_might_help() && self.try_preempt(&pod).await? {
                    return Ok(Action::RequeueAfter(INITIAL_BACKOFF));
                }
                let backoff = INITIAL_BACKOFF
                    .saturating_mul(1 << failures.saturating_sub(1).min(4))
                    .min(MAX_BACKOFF);
                Ok(Action::RequeueAfter(backoff))
            }
        }
    }
}

#[cfg(test)]
mod tests;
