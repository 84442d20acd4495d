//! The Deployment controller (apps/v1, Kubernetes' `pkg/controller/deployment`): one
//! ReplicaSet per pod template, rolled by the RollingUpdate or Recreate strategy, with revisions,
//! rollback by template, pause, proportional scaling, progress deadlines and status. Pods are
//! the ReplicaSet controller's business; this controller only sizes ReplicaSets.
//!
//! Decisions rest on the ReplicaSets' status (`availableReplicas`), as in Kubernetes; pods are
//! read only to learn when a Recreate rollout's old pods are gone.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::Resource;

use crate::error::Result;
use crate::runtime::events::WARNING;
use crate::runtime::{
    Action, ApiExt, Change, Context, Controller, Informer, ObjectKey, Reconciler, WorkQueue,
};
use crate::util;

mod helpers;
mod progress;
mod recreate;
mod rolling;
mod status;
mod sync;
#[cfg(test)]
mod tests;

pub use helpers::{equal_ignore_hash, pod_template_hash, resolve_fenceposts};

/// The rollout sequence number of a ReplicaSet (and the Deployment's current one).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The revisions a ReplicaSet served before a rollback made it current again.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `replicas` when the ReplicaSet was last sized.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's `replicas + maxSurge` when the ReplicaSet was last sized.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The label (and selector term) that tells a Deployment's ReplicaSets apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Concurrent reconciles (Kubernetes' `--concurrent-deployment-syncs`).
pub const WORKERS: usize = 5;

/// The deployment controller, reading Deployments, ReplicaSets and Pods from `ctx`'s informers.
pub fn controller(ctx: &Context) -> Controller {
    let deployments = ctx.informers.get::<Deployment>();
    let replica_sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let reconciler = DeploymentReconciler::new(ctx);
    let c = Controller::new::<Deployment>("deployment", ctx, reconciler, WORKERS);
    util::enqueue_self(&deployments, &c.queue);
    util::enqueue_owner::<ReplicaSet, Deployment>(&replica_sets, &c.queue);
    enqueue_adopters(&replica_sets, &deployments, &c.queue);
    enqueue_pod_deployment(&pods, &replica_sets, &c.queue);
    c
}

/// An orphan ReplicaSet is news for every Deployment whose selector matches it (one may adopt it).
fn enqueue_adopters(
    replica_sets: &Informer<ReplicaSet>,
    deployments: &Informer<Deployment>,
    queue: &WorkQueue<ObjectKey>,
) {
    let (deployments, queue) = (deployments.clone(), queue.clone());
    replica_sets.on_change(move |c: &Change<ReplicaSet>| {
        for rs in std::iter::once(c.object()).chain(c.old()) {
            if util::controller_of(rs.as_ref()).is_some() {
                continue;
            }
            let ns = rs.metadata.namespace.clone().unwrap_or_default();
            for d in deployments.list_namespace(&ns) {
                if selects(&d, rs.metadata.labels.as_ref()) {
                    queue.add(ObjectKey::of(d.as_ref()));
                }
            }
        }
    });
}

/// A pod of a Deployment's ReplicaSet went away, finished, started terminating or changed
/// readiness: the Deployment hears of it (a Recreate rollout waits for old pods to be gone).
/// Other pod changes reach the Deployment through its ReplicaSets' status.
fn enqueue_pod_deployment(
    pods: &Informer<Pod>,
    replica_sets: &Informer<ReplicaSet>,
    queue: &WorkQueue<ObjectKey>,
) {
    let (replica_sets, queue) = (replica_sets.clone(), queue.clone());
    pods.on_change(move |c: &Change<Pod>| {
        let relevant = match c {
            Change::Added(_) => false,
            Change::Deleted(_) => true,
            Change::Modified { old, new } => {
                let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
                phase(old) != phase(new)
                    || util::is_pod_ready(old) != util::is_pod_ready(new)
                    || util::is_terminating(old.as_ref()) != util::is_terminating(new.as_ref())
            }
        };
        if !relevant {
            return;
        }
        let pod = c.object();
        let Some(owner) = util::controller_of(pod.as_ref()) else {
            return;
        };
        if owner.kind != ReplicaSet::KIND || owner.api_version != ReplicaSet::API_VERSION {
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(rs) = replica_sets.get(&ns, &owner.name) else {
            return;
        };
        if let Some(d) = util::controller_of(rs.as_ref()) {
            if d.kind == Deployment::KIND && d.api_version == Deployment::API_VERSION {
                queue.add(ObjectKey::new(&ns, &d.name));
            }
        }
    });
}

/// Whether the Deployment's selector is non-empty and matches `labels`.
fn selects(d: &Deployment, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    let selector = &d.spec.selector;
    !selector_is_empty(selector) && util::selector_matches(selector, labels)
}

fn selector_is_empty(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

struct DeploymentReconciler {
    ctx: Context,
    deployments: Informer<Deployment>,
    replica_sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
}

impl DeploymentReconciler {
    fn new(ctx: &Context) -> DeploymentReconciler {
        DeploymentReconciler {
            ctx: ctx.clone(),
            deployments: ctx.informers.get(),
            replica_sets: ctx.informers.get(),
            pods: ctx.informers.get(),
        }
    }

    /// The ReplicaSets this Deployment controls, adopting matching orphans and releasing owned
    /// ones whose labels no longer match (Kubernetes' `ClaimReplicaSets`).
    async fn claim_replica_sets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let mut claimed = Vec::new();
        for rs in self.replica_sets.list_namespace(&ns) {
            let matches = selects(d, rs.metadata.labels.as_ref());
            match util::controller_of(rs.as_ref()) {
                Some(owner) if owner.uid != uid => {}
                Some(_) if matches => claimed.push((*rs).clone()),
                Some(_) => {
                    let mut released = (*rs).clone();
                    if let Some(refs) = released.metadata.owner_references.as_mut() {
                        refs.retain(|r| r.uid != uid);
                    }
                    tracing::info!(
                        deployment = %ObjectKey::of(d),
                        replicaset = ?rs.metadata.name,
                        "releasing a replica set that no longer matches"
                    );
                    match self.ctx.api.update_object(&released).await {
                        Err(e) if !e.is_not_found() => return Err(e),
                        _ => {}
                    }
                }
                None if matches && !util::is_terminating(rs.as_ref()) => {
                    let mut adopted = (*rs).clone();
                    adopted
                        .metadata
                        .owner_references
                        .get_or_insert_with(Vec::new)
                        .push(util::controller_ref(d));
                    tracing::info!(
                        deployment = %ObjectKey::of(d),
                        replicaset = ?rs.metadata.name,
                        "adopting a replica set"
                    );
                    match self.ctx.api.update_object(&adopted).await {
                        Ok(rs) => claimed.push(rs),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                None => {}
            }
        }
        Ok(claimed)
    }

    /// The Deployment's pods grouped by the uid of their ReplicaSet.
    fn pods_by_replica_set(&self, d: &Deployment, rss: &[ReplicaSet]) -> Vec<(String, Arc<Pod>)> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uids: Vec<&str> = rss
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        self.pods
            .list_namespace(&ns)
            .into_iter()
            .filter_map(|p| {
                let owner = util::controller_of(p.as_ref())?;
                uids.contains(&owner.uid.as_str())
                    .then(|| (owner.uid.clone(), p.clone()))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Reconciler for DeploymentReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(d) = self.deployments.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        if util::is_terminating(d.as_ref()) {
            return Ok(Action::Done);
        }
        let mut d = (*d).clone();
        if selector_is_empty(&d.spec.selector) {
            // Reported once per generation (the status write marks it observed).
            let status = d.status.get_or_insert_with(Default::default);
            if status.observed_generation < d.metadata.generation {
                status.observed_generation = d.metadata.generation;
                self.ctx.recorder.event(
                    &d,
                    WARNING,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                );
                self.ctx.api.update_object_status(&d).await?;
            }
            return Ok(Action::Done);
        }
        let params = match helpers::Params::of(&d) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(deployment = %key, error = %e, "cannot roll out");
                self.ctx
                    .recorder
                    .event(&d, WARNING, "InvalidDeployment", e.to_string());
                return Ok(Action::Done);
            }
        };
        let rs_list = self.claim_replica_sets(&d).await?;
        let mut rollout = sync::Rollout::new(&self.ctx, &self.replica_sets, d, params);
        rollout.check_paused_conditions().await?;
        if rollout.params.paused || rollout.is_scaling_event(&rs_list) {
            rollout.sync(rs_list).await?;
        } else if rollout.params.rolling {
            rollout.rollout_rolling(rs_list).await?;
        } else {
            let pods = self.pods_by_replica_set(&rollout.d, &rs_list);
            rollout.rollout_recreate(rs_list, &pods).await?;
        }
        Ok(match rollout.requeue {
            Some(after) => Action::RequeueAfter(after),
            None => Action::Done,
        })
    }
}
