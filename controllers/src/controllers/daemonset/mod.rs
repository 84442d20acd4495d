//! The DaemonSet controller (apps/v1, Kubernetes' `pkg/controller/daemon`): one pod on every
//! node the DaemonSet's template fits (nodeSelector, required node affinity, taints against the
//! tolerations plus the default daemon tolerations), following nodes as they join, leave and
//! change; failed pods replaced with back-off; duplicates trimmed; RollingUpdate (maxUnavailable,
//! maxSurge) and OnDelete updates; status counts.
//!
//! Pods are created unbound with a required node affinity `matchFields metadata.name In
//! [node]`, so the scheduler binds them (Kubernetes ≥ 1.12). rkube serves no ControllerRevision
//! objects: a pod's template is identified by its `controller-revision-hash` label, the
//! Deployment controller's hash of the DaemonSet's template ([`template_hash`]); pods also
//! carry the DaemonSet's generation in the `deprecated.daemonset.template.generation`
//! annotation. Pods on deleted nodes are the pod garbage collector's business, except unbound
//! ones, which this controller deletes.

mod backoff;
mod placement;
mod plan;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use rkube_client::KindRef;
use serde_json::{json, Value};

use crate::controllers::deployment::pod_template_hash;
use crate::error::Result;
use crate::expectations::{Expectations, Gate};
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{
    Action, ApiExt, Change, Context, Controller, DeleteOptions, Informer, ObjectKey, Reconciler,
    WorkQueue,
};
use crate::util;
use backoff::FailedPodBackoff;

pub use placement::{
    add_default_tolerations, fits_node_affinity, node_should_run, pod_for_node, target_node_name,
    tolerates, Placement, NODE_NAME_FIELD,
};

/// The label naming the template a daemon pod was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The pod annotation holding the DaemonSet's `metadata.generation` when the pod was made.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// How long a reconcile waits for the caches to show its own writes.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// Tuning of the DaemonSet controller, with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// DaemonSets reconciled concurrently (`--concurrent-daemonset-syncs`, 2).
    pub workers: usize,
    /// Most pods created, and most deleted, by one step of a reconcile (`BurstReplicas`, 250).
    pub burst_replicas: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 2,
            burst_replicas: 250,
        }
    }
}

/// The DaemonSet controller with Kubernetes' defaults.
pub fn controller(ctx: &Context) -> Controller {
    controller_with(ctx, Options::default())
}

/// The DaemonSet controller, reading DaemonSets, Pods and Nodes from `ctx`'s informers. It is
/// woken by DaemonSet changes, by changes of the pods a DaemonSet controls (or could adopt),
/// and by every node added, deleted, relabelled, retainted or cordoned.
pub fn controller_with(ctx: &Context, opts: Options) -> Controller {
    let daemonsets = ctx.informers.get::<DaemonSet>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let expectations = Arc::new(Expectations::default());
    let reconciler = DaemonSetReconciler {
        ctx: ctx.clone(),
        daemonsets: daemonsets.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        expectations: expectations.clone(),
        backoff: FailedPodBackoff::default(),
        burst: opts.burst_replicas.max(1),
    };
    let c = Controller::new::<DaemonSet>("daemonset", ctx, reconciler, opts.workers);
    util::enqueue_self(&daemonsets, &c.queue);
    watch_pods(&pods, &daemonsets, &c.queue, expectations);
    watch_nodes(&nodes, &daemonsets, &c.queue);
    c
}

/// The `controller-revision-hash` of the DaemonSet's current template.
pub fn template_hash(ds: &DaemonSet) -> String {
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    pod_template_hash(&ds.spec.template, collisions)
}

/// Pod handlers: record observed creations, queue the controller owner (before and after the
/// change) and, for orphans that appeared or changed labels, every DaemonSet that could adopt
/// them.
fn watch_pods(
    pods: &Informer<Pod>,
    daemonsets: &Informer<DaemonSet>,
    queue: &WorkQueue<ObjectKey>,
    expectations: Arc<Expectations>,
) {
    let (daemonsets, q) = (daemonsets.clone(), queue.clone());
    // Registered before `enqueue_owner` so a queued DaemonSet already sees the creation.
    pods.on_change(move |c: &Change<Pod>| {
        let pod = c.object();
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let controller = util::controller_of(pod.as_ref());
        if let (Change::Added(_), Some(r)) = (c, controller) {
            if r.kind == "DaemonSet" && r.api_version == "apps/v1" {
                expectations.creation_observed(&ObjectKey::new(ns, &r.name), &r.uid);
            }
        }
        let may_need_owner = match c {
            Change::Added(_) => true,
            Change::Modified { old, new } => {
                old.metadata.labels != new.metadata.labels
                    || old.metadata.owner_references != new.metadata.owner_references
            }
            Change::Deleted(_) => false,
        };
        if may_need_owner && controller.is_none() && !util::is_terminating(pod.as_ref()) {
            for ds in daemonsets.list_namespace(ns) {
                if selects(&ds.spec.selector, pod) {
                    q.add(ObjectKey::of(ds.as_ref()));
                }
            }
        }
    });
    util::enqueue_owner::<Pod, DaemonSet>(pods, queue);
}

/// Node handlers: a node added or deleted, or whose labels, taints or unschedulable flag
/// changed, may change where every DaemonSet runs.
fn watch_nodes(
    nodes: &Informer<Node>,
    daemonsets: &Informer<DaemonSet>,
    queue: &WorkQueue<ObjectKey>,
) {
    let (daemonsets, queue) = (daemonsets.clone(), queue.clone());
    nodes.on_change(move |c: &Change<Node>| {
        let relevant = match c {
            Change::Added(_) | Change::Deleted(_) => true,
            Change::Modified { old, new } => {
                let spec = |n: &Node| {
                    let s = n.spec.as_ref();
                    (
                        s.and_then(|s| s.taints.clone()).unwrap_or_default(),
                        s.and_then(|s| s.unschedulable).unwrap_or(false),
                    )
                };
                old.metadata.labels != new.metadata.labels || spec(old) != spec(new)
            }
        };
        if relevant {
            for key in daemonsets.keys() {
                queue.add(key);
            }
        }
    });
}

/// A DaemonSet's selector matches the pod; an empty selector matches nothing here (the
/// controller refuses to run such a DaemonSet).
fn selects(selector: &LabelSelector, pod: &Pod) -> bool {
    !selector_is_empty(selector) && util::selector_matches(selector, pod.metadata.labels.as_ref())
}

fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

struct DaemonSetReconciler {
    ctx: Context,
    daemonsets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    expectations: Arc<Expectations>,
    backoff: FailedPodBackoff,
    burst: usize,
}

#[async_trait::async_trait]
impl Reconciler for DaemonSetReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(ds) = self.daemonsets.get(&key.namespace, &key.name) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        if util::is_terminating(ds.as_ref()) {
            return Ok(Action::Done);
        }
        if selector_is_empty(&ds.spec.selector) {
            self.ctx.recorder.event(
                ds.as_ref(),
                WARNING,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::Done);
        }
        let hash = template_hash(&ds);
        let nodes = self.nodes.list();
        self.claim_pods(&ds).await?;
        let satisfied = self.expectations.gate(key, &self.pods) == Gate::Open;
        let synced = if satisfied {
            self.sync(key, &ds, &nodes, &hash).await
        } else {
            tracing::debug!(%key, "earlier pod writes not in the cache yet");
            Ok(None)
        };
        let now = self.ctx.now();
        let by_node = plan::pods_by_node(&self.owned_pods(&ds));
        let new = status::compute(&ds, &nodes, &by_node, &hash, satisfied, now);
        if ds.status.as_ref() != Some(&new) {
            let mut updated = ds.as_ref().clone();
            updated.status = Some(new);
            self.ctx.api.update_object_status(&updated).await?;
        }
        let retry = synced?;
        let next = [
            retry,
            status::next_available_in(&ds, &by_node, now),
            match self.expectations.gate(key, &self.pods) {
                Gate::Wait(d) => Some(d),
                Gate::Open => None,
            },
        ];
        Ok(next
            .into_iter()
            .flatten()
            .min()
            .map_or(Action::Done, Action::RequeueAfter))
    }
}

impl DaemonSetReconciler {
    /// The core loop, then (RollingUpdate, once the cache shows the core loop's writes) the
    /// rolling update. Returns when to look again for failed pods held back by the back-off.
    async fn sync(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        hash: &str,
    ) -> Result<Option<Duration>> {
        let now = self.ctx.now();
        let by_node = plan::pods_by_node(&self.owned_pods(ds));
        let surge = plan::allows_surge(ds);
        let manage = plan::manage(ds, nodes, &by_node, hash, surge, now, &self.backoff);
        for (pod, node) in &manage.failed {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            tracing::info!(%key, pod = name, node, "deleting a failed daemon pod");
            self.ctx.recorder.event(
                ds,
                WARNING,
                "FailedDaemonPod",
                format!("Found failed daemon pod {ns}/{name} on node {node}, will try to kill it"),
            );
        }
        self.sync_nodes(key, ds, &manage.delete, &manage.create_on, hash)
            .await?;
        if plan::is_rolling_update(ds) && self.expectations.gate(key, &self.pods) == Gate::Open {
            let by_node = plan::pods_by_node(&self.owned_pods(ds));
            let rolling = plan::rolling_update(ds, nodes, &by_node, hash, now)?;
            self.sync_nodes(key, ds, &rolling.delete, &rolling.create_on, hash)
                .await?;
        }
        Ok(manage.retry_after)
    }

    /// The pods `ds` controls whose labels still match its selector.
    fn owned_pods(&self, ds: &DaemonSet) -> Vec<Arc<Pod>> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        util::list_matching(&self.pods, ns, |p| {
            util::controller_of(p).is_some_and(|r| r.uid == uid) && selects(&ds.spec.selector, p)
        })
    }

    /// Adopt matching orphans and release owned pods that no longer match (Kubernetes'
    /// `ClaimPods`), then wait for the cache to show it. Every pod is tried; the first error
    /// is returned.
    async fn claim_pods(&self, ds: &DaemonSet) -> Result<()> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let mut changed = Vec::new();
        let mut first_err = None;
        for pod in self.pods.list_namespace(ns) {
            let matches = selects(&ds.spec.selector, &pod);
            let adopt = match util::controller_of(pod.as_ref()) {
                Some(r) if r.uid == uid && !matches => false,
                None if matches && !util::is_terminating(pod.as_ref()) => true,
                _ => continue,
            };
            match self.set_owner_refs(ds, &pod, adopt).await {
                Ok(()) => changed.push((ObjectKey::of(pod.as_ref()), adopt)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if !changed.is_empty() {
            let shown = self
                .pods
                .wait_until(CACHE_WAIT, |c| {
                    changed.iter().all(|(k, adopt)| {
                        c.get(&k.namespace, &k.name).is_none_or(|p| {
                            let owned =
                                util::controller_of(p.as_ref()).is_some_and(|r| r.uid == uid);
                            owned == *adopt
                        })
                    })
                })
                .await;
            if !shown {
                tracing::info!(daemonset = ?ds.metadata.name, "pod cache lags adoptions");
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Adopt (add `ds` as controller) or release (remove `ds`) `pod` by a JSON merge patch
    /// that keeps the pod's other owner references and is guarded by the cached
    /// resourceVersion. A pod that is gone is skipped.
    async fn set_owner_refs(&self, ds: &DaemonSet, pod: &Pod, adopt: bool) -> Result<()> {
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let mut refs: Vec<OwnerReference> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .cloned()
            .collect();
        if adopt {
            refs.push(util::controller_ref(ds));
        }
        let mut meta = json!({
            "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
        });
        if let Some(rv) = &pod.metadata.resource_version {
            meta["resourceVersion"] = json!(rv);
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let verb = if adopt { "adopting" } else { "releasing" };
        tracing::debug!(daemonset = ?ds.metadata.name, pod = name, "{verb} pod");
        match self
            .ctx
            .api
            .merge_patch::<Pod>(ns, name, json!({ "metadata": meta }), false)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Delete `delete` and create a pod on each node of `create_on` (each at most the burst
    /// size), then wait for the pod cache to show it.
    async fn sync_nodes(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        delete: &[Arc<Pod>],
        create_on: &[String],
        hash: &str,
    ) -> Result<()> {
        let delete = &delete[..delete.len().min(self.burst)];
        let create_on = &create_on[..create_on.len().min(self.burst)];
        if delete.is_empty() && create_on.is_empty() {
            return Ok(());
        }
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let expected = delete
            .iter()
            .map(|p| {
                (
                    ObjectKey::of(p.as_ref()),
                    p.metadata.uid.clone().unwrap_or_default(),
                )
            })
            .collect();
        self.expectations
            .expect(key, uid, create_on.len(), expected);
        let created = self.create_pods(key, ds, create_on, hash).await;
        let deleted = self.delete_pods(key, ds, delete).await;
        let exp = self.expectations.clone();
        let shown = self
            .pods
            .wait_until(CACHE_WAIT, |c| exp.gate(key, c) == Gate::Open)
            .await;
        if !shown {
            tracing::info!(%key, "pod cache lags this reconcile's writes");
        }
        created.and(deleted)
    }

    /// Create one pod per node in batches of 1, 2, 4, … (Kubernetes' slow start), stopping
    /// after the first batch with a failure so an invalid template costs few requests.
    async fn create_pods(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        nodes: &[String],
        hash: &str,
    ) -> Result<()> {
        let (mut done, mut batch) = (0, 1);
        while done < nodes.len() {
            let chunk = &nodes[done..(done + batch).min(nodes.len())];
            let pods: Vec<Pod> = chunk.iter().map(|n| pod_for_node(ds, n, hash)).collect();
            let results =
                futures::future::join_all(pods.iter().map(|p| self.ctx.api.create_object(p))).await;
            done += chunk.len();
            let mut first_err = None;
            let mut failed = 0;
            for (node, r) in chunk.iter().zip(results) {
                match r {
                    Ok(pod) => {
                        let name = pod.metadata.name.unwrap_or_default();
                        tracing::debug!(%key, pod = name, node, "created daemon pod");
                        self.ctx.recorder.event(
                            ds,
                            NORMAL,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        self.ctx.recorder.event(
                            ds,
                            WARNING,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                self.expectations
                    .creations_failed(key, failed + (nodes.len() - done));
                return Err(e);
            }
            batch *= 2;
        }
        Ok(())
    }

    /// Delete `victims` concurrently, each guarded by its uid.
    async fn delete_pods(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        victims: &[Arc<Pod>],
    ) -> Result<()> {
        let kind = KindRef::of::<Pod>();
        let results = futures::future::join_all(victims.iter().map(|p| {
            let opts = DeleteOptions {
                precondition_uid: p.metadata.uid.clone(),
                ..Default::default()
            };
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            let name = p.metadata.name.as_deref().unwrap_or_default();
            self.ctx.api.delete(&kind, ns, name, opts)
        }))
        .await;
        let mut first_err = None;
        for (pod, r) in victims.iter().zip(results) {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            match r {
                Ok(_) => self.ctx.recorder.event(
                    ds,
                    NORMAL,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                // Already gone: the cache will show it.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    self.expectations
                        .deletion_failed(key, &ObjectKey::of(pod.as_ref()));
                    self.ctx.recorder.event(
                        ds,
                        WARNING,
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
