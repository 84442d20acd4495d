//! The CronJob controller (batch/v1, Kubernetes' `pkg/controller/cronjob` v2): creates a Job
//! at each scheduled time of a CronJob (`schedule` in `timeZone`), honouring `suspend`,
//! `concurrencyPolicy` (Allow, Forbid, Replace) and `startingDeadlineSeconds`; after a downtime
//! it starts only the most recent missed schedule; it keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, deletes finished Jobs beyond the history limits,
//! and requeues each CronJob for its next scheduled time. Time comes from the context's clock.

mod jobs;
mod schedule;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::controllers::job::wait_for_write;
use crate::error::Result;
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{
    Action, ApiExt, Context, Controller, DeleteOptions, Informer, ObjectKey, Propagation,
    Reconciler,
};
use crate::util;

pub use jobs::{job_name, SCHEDULED_TIMESTAMP_ANNOTATION};
pub use schedule::{Schedule, ScheduleError, Unmet, MANY_MISSED};

/// How long a reconcile waits for the Job cache to show a Job it created or deleted.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// Added to the wait for the next schedule so the reconcile lands after it, not just before
/// (Kubernetes' `nextScheduleDelta`).
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Tuning of the CronJob controller, with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronJobOptions {
    /// CronJobs reconciled concurrently (`--concurrent-cron-job-syncs`, 5).
    pub workers: usize,
}

impl Default for CronJobOptions {
    fn default() -> Self {
        CronJobOptions { workers: 5 }
    }
}

/// The CronJob controller: reconciles CronJobs, woken by changes of CronJobs and their Jobs
/// and by its own requeue at each next scheduled time.
pub fn controller(ctx: &Context, opts: CronJobOptions) -> Controller {
    let cron_jobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    let reconciler = CronJobReconciler::new(ctx);
    let c = Controller::new::<CronJob>("cronjob", ctx, reconciler, opts.workers);
    util::enqueue_self(&cron_jobs, &c.queue);
    util::enqueue_owner::<Job, CronJob>(&jobs, &c.queue);
    c
}

struct CronJobReconciler {
    ctx: Context,
    cron_jobs: Informer<CronJob>,
    jobs: Informer<Job>,
}

/// What one reconcile decided besides the status.
struct Outcome {
    requeue: Option<Duration>,
    /// The Job created, to wait for in the cache.
    created: Option<ObjectKey>,
}

#[async_trait::async_trait]
impl Reconciler for CronJobReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(cj) = self.cron_jobs.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        let owned = self.owned_jobs(&cj);
        let mut status = cj.status.clone().unwrap_or_default();
        self.track_jobs(&cj, &owned, &mut status);
        let outcome = self.schedule(&cj, &mut status).await;
        let old = cj.status.clone().unwrap_or_default();
        if status != old {
            let mut updated = (*cj).clone();
            updated.status = Some(status);
            let written = self.ctx.api.update_object_status(&updated).await?;
            wait_for_write(&self.cron_jobs, &written).await;
        }
        let outcome = outcome?;
        if let Some(job) = &outcome.created {
            let shown = self
                .jobs
                .wait_until(CACHE_WAIT, |c| c.get(&job.namespace, &job.name).is_some())
                .await;
            if !shown {
                tracing::info!(%key, %job, "the job cache lags this reconcile's creation");
            }
        }
        self.delete_old_jobs(&cj, &owned).await?;
        Ok(outcome.requeue.map_or(Action::Done, Action::RequeueAfter))
    }
}

impl CronJobReconciler {
    fn new(ctx: &Context) -> CronJobReconciler {
        CronJobReconciler {
            ctx: ctx.clone(),
            cron_jobs: ctx.informers.get::<CronJob>(),
            jobs: ctx.informers.get::<Job>(),
        }
    }

    /// The Jobs the CronJob controls.
    fn owned_jobs(&self, cj: &CronJob) -> Vec<Arc<Job>> {
        let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
        let uid = cj.metadata.uid.as_deref().unwrap_or_default();
        util::list_matching(&self.jobs, ns, |j| {
            util::controller_of(j).is_some_and(|r| r.uid == uid)
        })
    }

    /// Bring `status.active` and `lastSuccessfulTime` in line with the Jobs: finished Jobs
    /// leave the active list, vanished ones too, and an unfinished Job missing from it (its
    /// status write was lost) joins it.
    fn track_jobs(&self, cj: &CronJob, owned: &[Arc<Job>], status: &mut CronJobStatus) {
        let mut active = status.active.take().unwrap_or_default();
        for j in owned {
            let name = j.metadata.name.as_deref().unwrap_or_default();
            let pos = active.iter().position(|r| r.uid == j.metadata.uid);
            match (pos, jobs::finished(j)) {
                (None, None) if !util::is_terminating(j.as_ref()) => {
                    let msg =
                        format!("Saw a job that the controller did not create or forgot: {name}");
                    self.ctx.recorder.event(cj, WARNING, "UnexpectedJob", msg);
                    active.push(jobs::reference(j));
                }
                (Some(i), Some(how)) => {
                    active.remove(i);
                    let msg = format!("Saw completed job: {name}, condition: {how}");
                    self.ctx.recorder.event(cj, NORMAL, "SawCompletedJob", msg);
                }
                _ => {}
            }
            if jobs::finished(j) == Some("Complete") {
                let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                if done.as_ref().is_some_and(|d| {
                    status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|l| d.0 > l.0)
                }) {
                    status.last_successful_time = done;
                }
            }
        }
        active.retain(|r| {
            let found = owned.iter().any(|j| j.metadata.uid == r.uid);
            if !found {
                let name = r.name.as_deref().unwrap_or_default();
                let msg = format!("Active job went missing: {name}");
                self.ctx.recorder.event(cj, NORMAL, "MissingJob", msg);
            }
            found
        });
        status.active = (!active.is_empty()).then_some(active);
    }

    /// Start the Job of the most recent unmet scheduled time, if any is due and allowed, and
    /// say when to look again.
    async fn schedule(&self, cj: &CronJob, status: &mut CronJobStatus) -> Result<Outcome> {
        let mut outcome = Outcome {
            requeue: None,
            created: None,
        };
        if util::is_terminating(cj) {
            return Ok(outcome);
        }
        let spec = &cj.spec;
        if spec.schedule.contains("TZ") {
            let msg = format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, use timeZone",
                spec.schedule
            );
            self.ctx
                .recorder
                .event(cj, WARNING, "UnsupportedSchedule", msg);
        }
        let sched = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Ok(s) => s,
            Err(ScheduleError::UnknownTimeZone(e)) => {
                let zone = spec.time_zone.as_deref().unwrap_or_default();
                let msg = format!("invalid timeZone: {zone:?}: {e}");
                self.ctx.recorder.event(cj, WARNING, "UnknownTimeZone", msg);
                return Ok(outcome);
            }
            Err(ScheduleError::Unparseable(e)) => {
                let msg = format!("unparseable schedule: {:?} : {e}", spec.schedule);
                self.ctx
                    .recorder
                    .event(cj, WARNING, "UnparseableSchedule", msg);
                return Ok(outcome);
            }
        };
        if spec.suspend == Some(true) {
            return Ok(outcome);
        }
        let now = self.ctx.now();
        let created_at = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let mut earliest = status
            .last_schedule_time
            .as_ref()
            .map_or(created_at, |t| t.0);
        if let Some(d) = spec.starting_deadline_seconds {
            // Nothing before the starting deadline is started any more.
            earliest = earliest.max(now - jiff::SignedDuration::from_secs(d));
        }
        let unmet = match sched.most_recent(earliest, now) {
            Ok(u) => u,
            Err(e) => {
                let msg = format!("invalid schedule: {} : {e}", spec.schedule);
                self.ctx.recorder.event(cj, WARNING, "InvalidSchedule", msg);
                return Ok(outcome);
            }
        };
        let Some(scheduled) = unmet.most_recent else {
            outcome.requeue = next_in(&sched, cj, status, now);
            return Ok(outcome);
        };
        if unmet.missed > MANY_MISSED {
            let msg = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
            self.ctx
                .recorder
                .event(cj, WARNING, "TooManyMissedTimes", msg);
        }
        let cj_name = cj.metadata.name.as_deref().unwrap_or_default();
        let name = jobs::job_name(cj_name, scheduled);
        let active = status.active.clone().unwrap_or_default();
        let last = status.last_schedule_time.as_ref().map(|t| t.0);
        if active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || last == Some(scheduled)
        {
            // Already started (the status write after the creation may have been lost).
            if last.is_none_or(|l| l < scheduled) {
                status.last_schedule_time = Some(Time(scheduled));
            }
            outcome.requeue = next_in(&sched, cj, status, now);
            return Ok(outcome);
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active.is_empty() {
            let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
            self.ctx.recorder.event(cj, NORMAL, "JobAlreadyActive", msg);
            outcome.requeue = next_in(&sched, cj, status, now);
            return Ok(outcome);
        }
        if policy == "Replace" {
            for r in &active {
                let job_name = r.name.as_deref().unwrap_or_default();
                self.delete_job(cj, job_name, r.uid.clone()).await?;
                if let Some(list) = status.active.as_mut() {
                    list.retain(|a| a.uid != r.uid);
                }
            }
            if status.active.as_ref().is_some_and(|a| a.is_empty()) {
                status.active = None;
            }
        }
        let job = match self.create_job(cj, scheduled, &sched).await? {
            Some(j) => j,
            None => {
                outcome.requeue = next_in(&sched, cj, status, now);
                return Ok(outcome);
            }
        };
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(jobs::reference(&job));
        status.last_schedule_time = Some(Time(scheduled));
        outcome.created = Some(ObjectKey::of(&job));
        outcome.requeue = next_in(&sched, cj, status, now);
        Ok(outcome)
    }

    /// Create the Job for `scheduled`. A Job of that name that already exists is taken over if
    /// this CronJob controls it (None otherwise).
    async fn create_job(
        &self,
        cj: &CronJob,
        scheduled: jiff::Timestamp,
        sched: &Schedule,
    ) -> Result<Option<Job>> {
        let job = jobs::job_for(cj, scheduled, sched.zone());
        let name = job.metadata.name.clone().unwrap_or_default();
        match self.ctx.api.create_object(&job).await {
            Ok(created) => {
                let msg = format!("Created job {name}");
                self.ctx.recorder.event(cj, NORMAL, "SuccessfulCreate", msg);
                Ok(Some(created))
            }
            Err(e) if e.is_already_exists() => {
                let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
                let Some(existing) = self.jobs.get(ns, &name) else {
                    // Not in the cache yet: retry once it is.
                    return Err(e);
                };
                // Jobs in the active list were matched by name before creating, so this one
                // is not listed: take it over if it is ours.
                let ours = util::controller_of(existing.as_ref())
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                tracing::info!(cronjob = ?cj.metadata.name, job = name, ours, "job already exists");
                Ok(ours.then(|| (*existing).clone()))
            }
            Err(e) => {
                let msg = format!("Error creating job: {e}");
                self.ctx.recorder.event(cj, WARNING, "FailedCreate", msg);
                Err(e)
            }
        }
    }

    /// Delete a Job of the CronJob (with its pods, in the background).
    async fn delete_job(&self, cj: &CronJob, name: &str, uid: Option<String>) -> Result<()> {
        let ns = cj.metadata.namespace.as_deref().unwrap_or_default();
        let opts = DeleteOptions {
            propagation: Propagation::Background,
            precondition_uid: uid,
            ..Default::default()
        };
        if let Err(e) = self.ctx.api.delete_object::<Job>(ns, name, opts).await {
            let msg = format!("Deleted job {name} failed: {e}");
            self.ctx.recorder.event(cj, WARNING, "FailedDelete", msg);
            return Err(e);
        }
        let msg = format!("Deleted job {name}");
        self.ctx.recorder.event(cj, NORMAL, "SuccessfulDelete", msg);
        // A deleted Job still in the cache would look like a running Job this CronJob forgot.
        let gone = self
            .jobs
            .wait_until(CACHE_WAIT, |c| {
                c.get(ns, name)
                    .is_none_or(|j| util::is_terminating(j.as_ref()))
            })
            .await;
        if !gone {
            tracing::info!(job = name, "the job cache lags this reconcile's deletion");
        }
        Ok(())
    }

    /// Delete the oldest finished Jobs beyond `successfulJobsHistoryLimit` (3) and
    /// `failedJobsHistoryLimit` (1).
    async fn delete_old_jobs(&self, cj: &CronJob, owned: &[Arc<Job>]) -> Result<()> {
        let finished: Vec<(Arc<Job>, &'static str)> = owned
            .iter()
            .filter(|j| !util::is_terminating(j.as_ref()))
            .filter_map(|j| jobs::finished(j).map(|how| (j.clone(), how)))
            .collect();
        let successful = cj.spec.successful_jobs_history_limit.unwrap_or(3);
        let failed = cj.spec.failed_jobs_history_limit.unwrap_or(1);
        for j in jobs::beyond_history(&finished, successful, failed) {
            let name = j.metadata.name.as_deref().unwrap_or_default();
            self.delete_job(cj, name, j.metadata.uid.clone()).await?;
        }
        Ok(())
    }
}

/// How long until the scheduled time after the last one started (or, when some were missed
/// and will not be started, after now): Kubernetes' `nextScheduleTimeDuration`.
fn next_in(
    sched: &Schedule,
    cj: &CronJob,
    status: &CronJobStatus,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let created_at = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let earliest = status
        .last_schedule_time
        .as_ref()
        .map_or(created_at, |t| t.0);
    let from = match sched.most_recent(earliest, now) {
        Ok(Unmet {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Unmet { missed: 0, .. }) => earliest,
        _ => now,
    };
    let next = sched.next(from)?;
    let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}
