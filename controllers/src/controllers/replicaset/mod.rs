//! The ReplicaSet and ReplicationController controllers: one generic implementation that keeps
//! `spec.replicas` active pods matching the owner's selector — adopting matching orphans,
//! releasing pods that stopped matching, creating missing pods in slow-start batches, deleting
//! surplus pods in Kubernetes' order — and reports the counts in the owner's status.

mod kinds;
mod pods;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use rkube_client::KindRef;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::expectations::{Expectations, Gate};
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{
    Action, ApiExt, Change, Context, Controller, DeleteOptions, Informer, ObjectKey, Reconciler,
    WorkQueue,
};
use crate::util;

pub use kinds::{Failure, ReplicaStatus, Replicated, REPLICA_FAILURE};
pub use pods::{compare_for_deletion, pods_to_delete};

/// How long a reconcile waits for the pod cache to show its own creations and deletions.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// Tuning of a replica controller, with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Owners reconciled concurrently (`--concurrent-replicaset-syncs`, 5).
    pub workers: usize,
    /// Most pods created or deleted by one reconcile (`BurstReplicas`, 500).
    pub burst_replicas: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 5,
            burst_replicas: 500,
        }
    }
}

/// The apps/v1 ReplicaSet controller with Kubernetes' defaults.
pub fn replica_set_controller(ctx: &Context) -> Controller {
    replica_set_controller_with(ctx, Options::default())
}

/// The apps/v1 ReplicaSet controller.
pub fn replica_set_controller_with(ctx: &Context, opts: Options) -> Controller {
    controller::<ReplicaSet>("replicaset", ctx, opts)
}

/// The v1 ReplicationController controller with Kubernetes' defaults.
pub fn replication_controller_controller(ctx: &Context) -> Controller {
    replication_controller_controller_with(ctx, Options::default())
}

/// The v1 ReplicationController controller.
pub fn replication_controller_controller_with(ctx: &Context, opts: Options) -> Controller {
    controller::<ReplicationController>("replicationcontroller", ctx, opts)
}

fn controller<K: Replicated>(name: &'static str, ctx: &Context, opts: Options) -> Controller {
    let expectations = Arc::new(Expectations::default());
    let owners = ctx.informers.get::<K>();
    let reconciler = ReplicaReconciler::<K> {
        ctx: ctx.clone(),
        owners: owners.clone(),
        pods: ctx.informers.get::<Pod>(),
        expectations: expectations.clone(),
        burst: opts.burst_replicas.max(1),
    };
    let c = Controller::new::<K>(name, ctx, reconciler, opts.workers);
    util::enqueue_self(&owners, &c.queue);
    watch_pods(&ctx.informers.get::<Pod>(), &owners, &c.queue, expectations);
    c
}

/// Pod handlers: record observed creations, queue the controller owner (before and after the
/// change) and, for orphans whose labels or owners changed, every owner that could adopt them.
fn watch_pods<K: Replicated>(
    pods: &Informer<Pod>,
    owners: &Informer<K>,
    queue: &WorkQueue<ObjectKey>,
    expectations: Arc<Expectations>,
) {
    let owners = owners.clone();
    let q = queue.clone();
    // Registered before `enqueue_owner` so a queued owner already sees the observed creation.
    pods.on_change(move |c: &Change<Pod>| {
        let pod = c.object();
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let controller = util::controller_of(pod.as_ref())
            .filter(|r| r.kind == K::KIND && r.api_version == K::API_VERSION);
        if let (Change::Added(_), Some(r)) = (c, controller) {
            expectations.creation_observed(&ObjectKey::new(ns, &r.name), &r.uid);
        }
        let may_need_owner = match c {
            Change::Added(_) => true,
            Change::Modified { old, new } => {
                old.metadata.labels != new.metadata.labels
                    || old.metadata.owner_references != new.metadata.owner_references
            }
            Change::Deleted(_) => false,
        };
        if may_need_owner && util::controller_of(pod.as_ref()).is_none() && util::is_pod_active(pod)
        {
            for o in owners.list_namespace(ns) {
                if !util::is_terminating(o.as_ref()) && o.selects(pod.metadata.labels.as_ref()) {
                    q.add(ObjectKey::of(o.as_ref()));
                }
            }
        }
    });
    util::enqueue_owner::<Pod, K>(pods, queue);
}

struct ReplicaReconciler<K> {
    ctx: Context,
    owners: Informer<K>,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
    burst: usize,
}

#[async_trait::async_trait]
impl<K: Replicated> Reconciler for ReplicaReconciler<K> {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(owner) = self.owners.get(&key.namespace, &key.name) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        if util::is_terminating(owner.as_ref()) {
            return Ok(Action::Done);
        }
        let gate = self.expectations.gate(key, &self.pods);
        let pods = self.claim_pods(owner.as_ref()).await?;
        let managed = match gate {
            Gate::Open => self.manage_replicas(key, owner.as_ref(), &pods).await,
            Gate::Wait(_) => {
                tracing::debug!(kind = K::KIND, %key, "earlier writes not in the cache yet");
                Ok(())
            }
        };
        self.update_status(owner.as_ref(), &pods, managed.as_ref().err())
            .await?;
        managed?;
        let now = self.ctx.now();
        let available_in = pods::next_available_in(&pods, owner.min_ready_seconds(), now);
        let expires_in = match self.expectations.gate(key, &self.pods) {
            Gate::Open => None,
            Gate::Wait(d) => Some(d),
        };
        Ok(available_in
            .into_iter()
            .chain(expires_in)
            .min()
            .map_or(Action::Done, Action::RequeueAfter))
    }
}

impl<K: Replicated> ReplicaReconciler<K> {
    /// The active pods `owner` controls after adopting matching orphans and releasing owned
    /// pods that no longer match (Kubernetes' `ClaimPods`). Every pod is tried; the first
    /// error is returned.
    async fn claim_pods(&self, owner: &K) -> Result<Vec<Arc<Pod>>> {
        let ns = owner.metadata().namespace.clone().unwrap_or_default();
        let uid = owner.metadata().uid.clone().unwrap_or_default();
        let mut claimed = Vec::new();
        let mut first_err = None;
        for pod in self.pods.list_namespace(&ns) {
            if !util::is_pod_active(&pod) {
                continue;
            }
            let matches = owner.selects(pod.metadata.labels.as_ref());
            let outcome = match util::controller_of(pod.as_ref()) {
                Some(r) if r.uid == uid && matches => {
                    claimed.push(pod);
                    Ok(())
                }
                Some(r) if r.uid == uid => self.set_owner_refs(owner, &pod, false).await.map(drop),
                Some(_) => Ok(()),
                None if matches => self
                    .set_owner_refs(owner, &pod, true)
                    .await
                    .map(|adopted| claimed.extend(adopted)),
                None => Ok(()),
            };
            if let Err(e) = outcome {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(claimed), Err)
    }

    /// Adopt (add `owner` as controller) or release (remove `owner`) `pod` by a JSON merge
    /// patch that keeps the pod's other owner references and is guarded by the cached
    /// resourceVersion. A pod that is gone is skipped.
    async fn set_owner_refs(&self, owner: &K, pod: &Pod, adopt: bool) -> Result<Option<Arc<Pod>>> {
        let uid = owner.metadata().uid.as_deref().unwrap_or_default();
        let mut refs: Vec<OwnerReference> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .cloned()
            .collect();
        if adopt {
            refs.push(util::controller_ref(owner));
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
        tracing::debug!(kind = K::KIND, owner = ?owner.metadata().name, pod = name, "{verb} pod");
        match self
            .ctx
            .api
            .merge_patch::<Pod>(ns, name, json!({ "metadata": meta }), false)
            .await
        {
            Ok(p) => Ok(Some(Arc::new(p))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create or delete pods so that `pods` (the active pods `owner` controls) number
    /// `spec.replicas`, then wait for the cache to show it.
    async fn manage_replicas(&self, key: &ObjectKey, owner: &K, pods: &[Arc<Pod>]) -> Result<()> {
        let want = usize::try_from(owner.desired_replicas()).unwrap_or(0);
        let uid = owner.metadata().uid.as_deref().unwrap_or_default();
        let result = if pods.len() < want {
            let n = (want - pods.len()).min(self.burst);
            self.expectations.expect(key, uid, n, Vec::new());
            self.create_pods(key, owner, n).await
        } else if pods.len() > want {
            let victims = pods_to_delete(pods, (pods.len() - want).min(self.burst));
            let expected = victims
                .iter()
                .map(|p| {
                    let pod_uid = p.metadata.uid.clone().unwrap_or_default();
                    (ObjectKey::of(p.as_ref()), pod_uid)
                })
                .collect();
            self.expectations.expect(key, uid, 0, expected);
            self.delete_pods(key, owner, &victims).await
        } else {
            return Ok(());
        };
        let exp = self.expectations.clone();
        let shown = self
            .pods
            .wait_until(CACHE_WAIT, |c| exp.gate(key, c) == Gate::Open)
            .await;
        if !shown {
            tracing::info!(kind = K::KIND, %key, "pod cache lags this reconcile's writes");
        }
        result
    }

    /// Create `n` pods in batches of 1, 2, 4, … (Kubernetes' slow start), stopping after the
    /// first batch with a failure so a quota or an invalid template costs few requests.
    async fn create_pods(&self, key: &ObjectKey, owner: &K, n: usize) -> Result<()> {
        let template = match pods::pod_from_template(owner) {
            Ok(t) => t,
            Err(e) => {
                self.expectations.creations_failed(key, n);
                self.ctx.recorder.event(
                    owner,
                    WARNING,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                );
                return Err(e);
            }
        };
        let (mut done, mut batch) = (0, 1);
        while done < n {
            let size = batch.min(n - done);
            let results =
                futures::future::join_all((0..size).map(|_| self.ctx.api.create_object(&template)))
                    .await;
            done += size;
            let mut first_err = None;
            let mut failed = 0;
            for r in results {
                match r {
                    Ok(pod) => {
                        let name = pod.metadata.name.unwrap_or_default();
                        self.ctx.recorder.event(
                            owner,
                            NORMAL,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        self.ctx.recorder.event(
                            owner,
                            WARNING,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                self.expectations.creations_failed(key, failed + (n - done));
                return Err(e);
            }
            batch *= 2;
        }
        Ok(())
    }

    /// Delete `victims` concurrently, each guarded by its uid.
    async fn delete_pods(&self, key: &ObjectKey, owner: &K, victims: &[Arc<Pod>]) -> Result<()> {
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
                    owner,
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
                        owner,
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

    /// Write the counts of `pods` and the `ReplicaFailure` condition (set when sizing failed,
    /// removed once it succeeds) unless the status already says so.
    async fn update_status(&self, owner: &K, pods: &[Arc<Pod>], err: Option<&Error>) -> Result<()> {
        let now = self.ctx.now();
        let old = owner.replica_status();
        let mut status = pods::count_pods(owner, pods, now);
        status.observed_generation = owner.metadata().generation;
        status.failure = match (err, old.failure.clone()) {
            (Some(_), Some(kept)) => Some(kept),
            (Some(e), None) => {
                let short = pods.len() < usize::try_from(owner.desired_replicas()).unwrap_or(0);
                Some(Failure {
                    reason: if short {
                        "FailedCreate"
                    } else {
                        "FailedDelete"
                    }
                    .into(),
                    message: e.to_string(),
                    last_transition_time: Some(Time(now)),
                })
            }
            (None, _) => None,
        };
        if status == old {
            return Ok(());
        }
        self.ctx
            .api
            .update_object_status(&owner.with_replica_status(&status))
            .await?;
        Ok(())
    }
}
