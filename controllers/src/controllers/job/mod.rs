//! The Job controller (batch/v1, Kubernetes' `pkg/controller/job`): runs pods from a Job's
//! template until `completions` of them succeeded (or, without `completions`, until one
//! succeeded and the others finished), at most `parallelism` at a time, with exponential
//! back-off between re-creations after failures; fails the Job past `backoffLimit` or
//! `activeDeadlineSeconds`; stops its pods while `suspend` is set; gives Indexed Jobs one pod
//! per completion index; and deletes finished Jobs `ttlSecondsAfterFinished` later.
//!
//! Pods are counted from the pod cache (succeeded and failed counts never go down, so a counted
//! pod that is garbage-collected is not lost); Kubernetes' finalizer-based tracking of every
//! pod is not done.

mod expectations;
mod pods;
mod status;
mod sync;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use crate::error::{Error, Result};
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{
    Action, ApiExt, Change, Context, Controller, DeleteOptions, Informer, Object, ObjectKey,
    Propagation, Reconciler, WorkQueue,
};
use crate::util;
use expectations::Expectations;

pub use pods::{
    COMPLETION_INDEX_ANNOTATION, COMPLETION_INDEX_ENV, CONTROLLER_UID_LABEL, JOB_NAME_LABEL,
    LEGACY_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL,
};
pub use status::{backoff_delay, format_indexes, parse_indexes};

/// How long a reconcile waits for the pod cache to show its own creations and deletions.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// The `spec.managedBy` value of Jobs this controller runs (others belong to another one).
const MANAGED_BY: &str = "kubernetes.io/job-controller";

/// Tuning of the Job controller, with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    /// Jobs reconciled concurrently (`--concurrent-job-syncs`, 5).
    pub workers: usize,
    /// Delay before re-creating a pod after the first failure (`DefaultJobBackOff`, 10 s);
    /// doubles per further failure since the last success.
    pub backoff_base: Duration,
    /// Longest delay between re-creations (`MaxJobBackOff`, 6 min).
    pub backoff_max: Duration,
    /// Most pods created or deleted by one reconcile (`MaxPodCreateDeletePerSync`, 500).
    pub burst: usize,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            workers: 5,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(6 * 60),
            burst: 500,
        }
    }
}

/// The Job controller: reconciles Jobs, woken by changes of Jobs and of their pods.
pub fn controller(ctx: &Context, opts: JobOptions) -> Controller {
    let expectations = Arc::new(Expectations::default());
    let jobs = ctx.informers.get::<Job>();
    let pods = ctx.informers.get::<Pod>();
    let workers = opts.workers;
    let reconciler = JobReconciler::new(ctx, opts, expectations.clone());
    let c = Controller::new::<Job>("job", ctx, reconciler, workers);
    util::enqueue_self(&jobs, &c.queue);
    watch_pods(&pods, &jobs, &c.queue, expectations);
    c
}

/// Pod handlers: record observed creations, queue the controlling Job (before and after the
/// change) and, for active orphans, every Job whose selector matches them (it may adopt them).
fn watch_pods(
    pods: &Informer<Pod>,
    jobs: &Informer<Job>,
    queue: &WorkQueue<ObjectKey>,
    expectations: Arc<Expectations>,
) {
    let jobs = jobs.clone();
    let q = queue.clone();
    // Registered before `enqueue_owner` so a queued Job already sees the observed creation.
    pods.on_change(move |c: &Change<Pod>| {
        let pod = c.object();
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let owner = util::controller_of(pod.as_ref());
        if let (Change::Added(_), Some(r)) = (c, owner) {
            if r.kind == "Job" && r.api_version == "batch/v1" {
                expectations.observed(&ObjectKey::new(ns, &r.name), &ObjectKey::of(pod.as_ref()));
            }
        }
        if owner.is_none() && !matches!(c, Change::Deleted(_)) && util::is_pod_active(pod) {
            for j in jobs.list_namespace(ns) {
                if selects(&j, pod) {
                    q.add(ObjectKey::of(j.as_ref()));
                }
            }
        }
    });
    util::enqueue_owner::<Pod, Job>(pods, queue);
}

/// Whether the Job's selector (which must not be empty) matches the pod's labels.
fn selects(job: &Job, pod: &Pod) -> bool {
    let Some(sel) = job.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
    !empty && util::selector_matches(sel, pod.metadata.labels.as_ref())
}

/// Wait (up to [`CACHE_WAIT`]) until `informer` shows `written` or a later version of it (or
/// no longer has it), so the next reconcile does not act on the status this one replaced.
pub(crate) async fn wait_for_write<K: Object>(informer: &Informer<K>, written: &K) {
    let key = ObjectKey::of(written);
    let revision = |o: &K| {
        let rv = o.metadata().resource_version.as_deref()?;
        rv.parse::<u64>().ok()
    };
    let Some(want) = revision(written) else {
        return;
    };
    let shown = informer
        .wait_until(CACHE_WAIT, |c| {
            c.get(&key.namespace, &key.name)
                .is_none_or(|o| revision(o.as_ref()).is_some_and(|rv| rv >= want))
        })
        .await;
    if !shown {
        tracing::info!(kind = K::KIND, %key, "the cache lags this reconcile's status write");
    }
}

struct JobReconciler {
    ctx: Context,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
    opts: JobOptions,
}

#[async_trait::async_trait]
impl Reconciler for JobReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(job) = self.jobs.get(&key.namespace, &key.name) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
        if util::is_terminating(job.as_ref()) || managed_by.is_some_and(|m| m != MANAGED_BY) {
            return Ok(Action::Done);
        }
        let now = self.ctx.now();
        if let Some(cond) = status::finished(&job) {
            let finished_at = job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .or(cond.last_transition_time.as_ref())
                .map_or(now, |t| t.0);
            return self.finished(key, &job, finished_at, now).await;
        }
        if let Some(wait) = self.expectations.outstanding(key, &self.pods) {
            tracing::debug!(%key, "earlier pod writes are not in the cache yet");
            return Ok(Action::RequeueAfter(wait));
        }
        let pods = self.claim_pods(&job).await?;
        let plan = sync::plan(&job, &pods, now, &self.opts);
        let deleted = self.delete_pods(key, &job, &plan.delete).await;
        let (not_created, created) = self.create_pods(key, &job, &plan.create).await;
        if !plan.delete.is_empty() || !plan.create.is_empty() {
            let exp = self.expectations.clone();
            let shown = self
                .pods
                .wait_until(CACHE_WAIT, |c| exp.outstanding(key, c).is_none())
                .await;
            if !shown {
                tracing::info!(%key, "the pod cache lags this reconcile's writes");
            }
        }
        let mut st = plan.status;
        if not_created > 0 {
            let active = st.active.unwrap_or(0) - not_created as i32;
            st.active = (active > 0).then_some(active);
        }
        if job.status.as_ref() != Some(&st) {
            let mut updated = (*job).clone();
            updated.status = Some(st);
            let written = self.ctx.api.update_object_status(&updated).await?;
            wait_for_write(&self.jobs, &written).await;
        }
        for (ty, reason, message) in plan.events {
            self.ctx.recorder.event(job.as_ref(), ty, reason, message);
        }
        deleted?;
        created?;
        Ok(plan.requeue.map_or(Action::Done, Action::RequeueAfter))
    }
}

impl JobReconciler {
    fn new(ctx: &Context, opts: JobOptions, expectations: Arc<Expectations>) -> JobReconciler {
        JobReconciler {
            ctx: ctx.clone(),
            jobs: ctx.informers.get::<Job>(),
            pods: ctx.informers.get::<Pod>(),
            expectations,
            opts,
        }
    }

    /// A finished Job: stop pods a failure left running, and delete the Job once
    /// `ttlSecondsAfterFinished` has passed since it finished (Kubernetes' TTL-after-finished
    /// controller).
    async fn finished(
        &self,
        key: &ObjectKey,
        job: &Job,
        finished_at: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> Result<Action> {
        if self.expectations.outstanding(key, &self.pods).is_none() {
            let active: Vec<Arc<Pod>> = self
                .owned_pods(job)
                .into_iter()
                .filter(|p| util::is_pod_active(p))
                .collect();
            self.delete_pods(key, job, &active).await?;
        }
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(Action::Done);
        };
        let expires = finished_at + jiff::SignedDuration::from_secs(i64::from(ttl));
        if now < expires {
            let wait = Duration::try_from(expires.duration_since(now)).unwrap_or(Duration::ZERO);
            return Ok(Action::RequeueAfter(wait));
        }
        tracing::info!(%key, ttl, "deleting the finished job: ttlSecondsAfterFinished passed");
        let opts = DeleteOptions {
            propagation: Propagation::Background,
            precondition_uid: job.metadata.uid.clone(),
            ..Default::default()
        };
        self.ctx
            .api
            .delete_object::<Job>(&key.namespace, &key.name, opts)
            .await?;
        Ok(Action::Done)
    }

    /// The pods the Job controls.
    fn owned_pods(&self, job: &Job) -> Vec<Arc<Pod>> {
        let ns = job.metadata.namespace.as_deref().unwrap_or_default();
        let uid = job.metadata.uid.as_deref().unwrap_or_default();
        util::list_matching(&self.pods, ns, |p| {
            util::controller_of(p).is_some_and(|r| r.uid == uid)
        })
    }

    /// The pods the Job controls after adopting active orphans its selector matches. Every
    /// orphan is tried; the first error is returned.
    async fn claim_pods(&self, job: &Job) -> Result<Vec<Arc<Pod>>> {
        let ns = job.metadata.namespace.as_deref().unwrap_or_default();
        let mut pods = self.owned_pods(job);
        let orphans = util::list_matching(&self.pods, ns, |p| {
            util::controller_of(p).is_none() && util::is_pod_active(p) && selects(job, p)
        });
        let mut first_err = None;
        for pod in orphans {
            match self.adopt(job, &pod).await {
                Ok(Some(p)) => pods.push(p),
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(pods), Err)
    }

    /// Make the Job the pod's controller by a merge patch guarded by the cached
    /// resourceVersion; a pod that is gone is skipped.
    async fn adopt(&self, job: &Job, pod: &Pod) -> Result<Option<Arc<Pod>>> {
        let mut refs: Vec<OwnerReference> =
            pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(util::controller_ref(job));
        let patch = json!({ "metadata": {
            "ownerReferences": refs,
            "resourceVersion": pod.metadata.resource_version,
        }});
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        tracing::debug!(job = ?job.metadata.name, pod = name, "adopting pod");
        match self
            .ctx
            .api
            .merge_patch::<Pod>(ns, name, patch, false)
            .await
        {
            Ok(p) => Ok(Some(Arc::new(p))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create one pod per entry of `indexes` in batches of 1, 2, 4, … (Kubernetes' slow start),
    /// stopping after the first batch with a failure. Returns how many were not created, and
    /// the first error.
    async fn create_pods(
        &self,
        key: &ObjectKey,
        job: &Job,
        indexes: &[Option<i32>],
    ) -> (usize, Result<()>) {
        let (mut done, mut batch) = (0, 1);
        while done < indexes.len() {
            let size = batch.min(indexes.len() - done);
            let results = futures::future::join_all(
                indexes[done..done + size]
                    .iter()
                    .map(|ix| self.create_pod(key, job, *ix)),
            )
            .await;
            done += size;
            let failed = results.iter().filter(|r| r.is_err()).count();
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return (failed + indexes.len() - done, Err(e));
            }
            batch *= 2;
        }
        (0, Ok(()))
    }

    async fn create_pod(&self, key: &ObjectKey, job: &Job, index: Option<i32>) -> Result<()> {
        let created = match pods::new_pod(job, index) {
            Ok(pod) => self.ctx.api.create_object(&pod).await,
            Err(e) => Err(e),
        };
        match created {
            Ok(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                self.expectations
                    .created(key, ObjectKey::new(&key.namespace, &name));
                let msg = format!("Created pod: {name}");
                self.ctx
                    .recorder
                    .event(job, NORMAL, "SuccessfulCreate", msg);
                Ok(())
            }
            Err(e) => {
                let msg = format!("Error creating: {e}");
                self.ctx.recorder.event(job, WARNING, "FailedCreate", msg);
                Err(e)
            }
        }
    }

    /// Delete `victims` concurrently, each guarded by its uid; returns the first error.
    async fn delete_pods(&self, key: &ObjectKey, job: &Job, victims: &[Arc<Pod>]) -> Result<()> {
        let results = futures::future::join_all(victims.iter().map(|p| async move {
            let pod_key = ObjectKey::of(p.as_ref());
            let uid = p.metadata.uid.clone().unwrap_or_default();
            self.expectations.deleted(key, pod_key.clone(), uid.clone());
            let opts = DeleteOptions {
                precondition_uid: Some(uid),
                ..Default::default()
            };
            let r = self
                .ctx
                .api
                .delete_object::<Pod>(&pod_key.namespace, &pod_key.name, opts)
                .await;
            (pod_key, r)
        }))
        .await;
        let mut first_err: Option<Error> = None;
        for (pod_key, r) in results {
            match r {
                Ok(()) => {
                    let msg = format!("Deleted pod: {}", pod_key.name);
                    self.ctx
                        .recorder
                        .event(job, NORMAL, "SuccessfulDelete", msg);
                }
                Err(e) => {
                    self.expectations.deletion_failed(key, &pod_key);
                    let msg = format!("Error deleting: {e}");
                    self.ctx.recorder.event(job, WARNING, "FailedDelete", msg);
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
