//! The pod garbage collector (Kubernetes' `pkg/controller/podgc`): a periodic sweep that deletes
//! the oldest terminated pods beyond a threshold, force-deletes pods bound to nodes that no longer
//! exist (after a quarantine, so a node that was only briefly missing from the cache keeps its
//! pods), and force-deletes terminating pods that were never scheduled.
//!
//! The sweep is one fixed work-queue key that re-queues itself every `interval`; informer
//! handlers queue it early when a node is deleted or a pod becomes collectable.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::error::Result;
use crate::runtime::{
    Action, ApiExt, ApiRef, Change, Clock, Context, Controller, DeleteOptions, Informer, ObjectKey,
    Reconciler,
};
use crate::util::{is_pod_terminated, is_terminating};

/// How long to wait before sweeping when the caches have not synced.
const UNSYNCED_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct PodGcOptions {
    /// Terminated pods kept before the oldest are deleted; 0 disables this part
    /// (Kubernetes' `--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
    /// Time between sweeps (Kubernetes' `gcCheckPeriod`).
    pub interval: Duration,
    /// How long a node must be missing before its pods count as orphaned (Kubernetes'
    /// `quarantineTime`).
    pub quarantine: Duration,
}

impl Default for PodGcOptions {
    fn default() -> Self {
        PodGcOptions {
            terminated_pod_gc_threshold: 12500,
            interval: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

/// The pod garbage collector.
///
/// Its primary kind for the runtime is Node; the runtime's resync queues node keys, which carry
/// no work of their own: the sweep key, queued here once, re-queues itself for good.
pub fn controller(ctx: &Context, opts: PodGcOptions) -> Controller {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let threshold = opts.terminated_pod_gc_threshold;
    let reconciler = PodGc {
        api: ctx.api.clone(),
        clock: ctx.clock.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        opts,
        missing_since: Mutex::new(BTreeMap::new()),
        next_sweep: Mutex::new(None),
    };
    let controller = Controller::new::<Node>("pod-garbage-collector", ctx, reconciler, 1);
    controller.queue.add(sweep_key());
    let queue = controller.queue.clone();
    nodes.on_change(move |c: &Change<Node>| {
        if matches!(c, Change::Deleted(_)) {
            queue.add(sweep_key());
        }
    });
    let queue = controller.queue.clone();
    let all_pods = pods.clone();
    pods.on_change(move |c: &Change<Pod>| {
        if matches!(c, Change::Deleted(_)) {
            return;
        }
        let pod = c.object();
        let unscheduled_terminating = is_terminating(pod.as_ref()) && node_name(pod).is_empty();
        // Only worth a sweep when there may be more terminated pods than the threshold.
        let newly_terminated = is_pod_terminated(pod)
            && !c.old().is_some_and(|o| is_pod_terminated(o))
            && threshold > 0
            && all_pods.len() > threshold;
        if unscheduled_terminating || newly_terminated {
            queue.add(sweep_key());
        }
    });
    controller
}

/// The one key the sweep runs under (no node key has a namespace, so it cannot collide).
fn sweep_key() -> ObjectKey {
    ObjectKey::new("pod-gc", "sweep")
}

struct PodGc {
    api: ApiRef,
    clock: Clock,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    opts: PodGcOptions,
    /// Node names pods are bound to that the node cache lacks, and when each was first seen
    /// missing (by the injected clock).
    missing_since: Mutex<BTreeMap<String, jiff::Timestamp>>,
    /// When the pending delayed re-queue fires. The runtime starts one timer per
    /// `RequeueAfter`, so a sweep woken early by a handler must not start a second chain.
    next_sweep: Mutex<Option<tokio::time::Instant>>,
}

#[async_trait::async_trait]
impl Reconciler for PodGc {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if *key != sweep_key() {
            return Ok(Action::Done);
        }
        if !self.pods.has_synced() || !self.nodes.has_synced() {
            tracing::debug!("pod gc: waiting for the pod and node caches to sync");
            return Ok(self.schedule(UNSYNCED_RETRY));
        }
        let pods = self.pods.list();
        let mut deleted = HashSet::new();
        self.gc_terminated(&pods, &mut deleted).await?;
        let quarantine_left = self.gc_orphaned(&pods, &mut deleted).await?;
        self.gc_unscheduled_terminating(&pods, &mut deleted).await?;
        let next = quarantine_left.map_or(self.opts.interval, |q| q.min(self.opts.interval));
        Ok(self.schedule(next))
    }
}

impl PodGc {
    /// Delete the oldest terminated pods beyond the threshold (evicted ones first, as
    /// Kubernetes does).
    async fn gc_terminated(
        &self,
        pods: &[std::sync::Arc<Pod>],
        deleted: &mut HashSet<String>,
    ) -> Result<()> {
        let threshold = self.opts.terminated_pod_gc_threshold;
        if threshold == 0 {
            return Ok(());
        }
        let mut terminated: Vec<&Pod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| is_pod_terminated(p))
            .collect();
        if terminated.len() <= threshold {
            return Ok(());
        }
        let excess = terminated.len() - threshold;
        terminated.sort_by_key(|p| {
            let evicted = p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted");
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (
                !evicted,
                created,
                p.metadata.namespace.clone(),
                p.metadata.name.clone(),
            )
        });
        tracing::info!(
            terminated = terminated.len(),
            threshold,
            excess,
            "pod gc: deleting the oldest terminated pods"
        );
        for pod in &terminated[..excess] {
            self.force_delete(pod, "terminated beyond the threshold", deleted)
                .await?;
        }
        Ok(())
    }

    /// Force-delete the pods of nodes missing for at least the quarantine; returns how long
    /// until the next node's quarantine ends, if one is running.
    async fn gc_orphaned(
        &self,
        pods: &[std::sync::Arc<Pod>],
        deleted: &mut HashSet<String>,
    ) -> Result<Option<Duration>> {
        let now = (self.clock)();
        let missing: HashSet<&str> = pods
            .iter()
            .map(|p| node_name(p))
            .filter(|n| !n.is_empty() && self.nodes.get("", n).is_none())
            .collect();
        let mut gone = HashSet::new();
        let mut next: Option<Duration> = None;
        {
            let mut since = self.missing_since.lock().expect("missing nodes lock");
            since.retain(|n, _| missing.contains(n.as_str()));
            for n in &missing {
                let first = *since.entry(n.to_string()).or_insert(now);
                let waited = Duration::from_millis(
                    u64::try_from(now.as_millisecond() - first.as_millisecond()).unwrap_or(0),
                );
                if waited >= self.opts.quarantine {
                    gone.insert(*n);
                } else {
                    let left = self.opts.quarantine - waited;
                    next = Some(next.map_or(left, |x| x.min(left)));
                }
            }
        }
        for pod in pods.iter().filter(|p| gone.contains(node_name(p))) {
            self.force_delete(pod, "bound to a node that no longer exists", deleted)
                .await?;
        }
        Ok(next)
    }

    /// Force-delete pods being deleted that no node will ever stop.
    async fn gc_unscheduled_terminating(
        &self,
        pods: &[std::sync::Arc<Pod>],
        deleted: &mut HashSet<String>,
    ) -> Result<()> {
        for pod in pods
            .iter()
            .filter(|p| is_terminating(p.as_ref()) && node_name(p).is_empty())
        {
            self.force_delete(pod, "terminating but never scheduled", deleted)
                .await?;
        }
        Ok(())
    }

    /// Delete `pod` with a zero grace period unless this sweep already did. Failures other
    /// than lost leadership are logged and left to the next sweep, as Kubernetes does.
    async fn force_delete(
        &self,
        pod: &Pod,
        why: &str,
        deleted: &mut HashSet<String>,
    ) -> Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !deleted.insert(uid.clone()) {
            return Ok(());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: (!uid.is_empty()).then_some(uid),
            ..Default::default()
        };
        tracing::info!(pod = %format!("{ns}/{name}"), reason = why, "pod gc: force-deleting a pod");
        match self.api.delete_object::<Pod>(ns, name, opts).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_fenced() => Err(e),
            Err(e) => {
                tracing::warn!(
                    pod = %format!("{ns}/{name}"),
                    error = %e,
                    "pod gc: delete failed; the next sweep retries"
                );
                Ok(())
            }
        }
    }

    /// Sweep again after `delay`, unless an earlier or equal wake-up is already pending.
    fn schedule(&self, delay: Duration) -> Action {
        let now = tokio::time::Instant::now();
        let due = now + delay;
        let mut next = self.next_sweep.lock().expect("next sweep lock");
        match *next {
            Some(at) if at > now && at <= due => Action::Done,
            _ => {
                *next = Some(due);
                Action::RequeueAfter(delay)
            }
        }
    }
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}
