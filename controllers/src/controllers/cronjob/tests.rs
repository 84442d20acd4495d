//! Unit tests of the CronJob controller over the fake API under an advancing fake clock:
//! schedules, concurrency policies, missed schedules after a downtime, history limits, time
//! zones, macros and suspension.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::runtime::fake::{Action as Write, FakeApi};
use crate::runtime::{Informers, Recorder};

const NS: &str = "default";

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn cron_job(name: &str, schedule: &str, created: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: CronJobSpec {
            schedule: schedule.into(),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([("app".into(), name.into())])),
                    ..Default::default()
                }),
                spec: Some(JobSpec::default()),
            },
            ..Default::default()
        },
        status: None,
    }
}

fn with_spec(mut cj: CronJob, f: impl FnOnce(&mut CronJobSpec)) -> CronJob {
    f(&mut cj.spec);
    cj
}

/// `minutes since the epoch` of an RFC 3339 time: the suffix of its Job's name.
fn job_for(cron_job: &str, at: &str) -> String {
    job_name(cron_job, ts(at))
}

struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    clock: Arc<Mutex<jiff::Timestamp>>,
    reconciler: CronJobReconciler,
    ctx: Context,
}

impl Harness {
    fn new(now: &str) -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, events) = Recorder::memory("test");
        let clock = Arc::new(Mutex::new(ts(now)));
        let c = clock.clone();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || *c.lock().unwrap()),
        };
        let reconciler = CronJobReconciler::new(&ctx);
        Harness {
            informers,
            api,
            events,
            clock,
            reconciler,
            ctx,
        }
    }

    fn set_now(&self, now: &str) {
        *self.clock.lock().unwrap() = ts(now);
    }

    fn add(&self, cj: CronJob) {
        self.informers.get::<CronJob>().upsert(cj);
    }

    fn cj(&self, name: &str) -> Arc<CronJob> {
        self.informers.get::<CronJob>().get(NS, name).unwrap()
    }

    fn status(&self, name: &str) -> CronJobStatus {
        self.cj(name).status.clone().unwrap_or_default()
    }

    fn active_names(&self, name: &str) -> Vec<String> {
        let st = self.status(name);
        st.active
            .iter()
            .flatten()
            .map(|r| r.name.clone().unwrap())
            .collect()
    }

    async fn reconcile(&self, name: &str) -> Action {
        self.reconciler
            .reconcile(&ObjectKey::new(NS, name))
            .await
            .unwrap()
    }

    fn job_names(&self) -> Vec<String> {
        self.informers
            .get::<Job>()
            .list()
            .iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect()
    }

    fn created_jobs(&self) -> Vec<String> {
        self.api
            .take_summaries()
            .into_iter()
            .filter_map(|s| s.strip_prefix("create Job default/").map(str::to_string))
            .collect()
    }

    /// The Job finishes (`how` is "Complete" or "Failed"), having started at `started`.
    fn finish_job(&self, name: &str, how: &str, started: &str, done: &str) {
        let jobs = self.informers.get::<Job>();
        let mut j = (*jobs.get(NS, name).unwrap()).clone();
        j.status = Some(JobStatus {
            start_time: Some(Time(ts(started))),
            completion_time: (how == "Complete").then(|| Time(ts(done))),
            conditions: Some(vec![JobCondition {
                type_: how.into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        j.metadata.resource_version = Some(format!("{}-done", name));
        jobs.upsert(j);
    }

    /// A finished Job of `cron_job` that exists already (left from earlier runs).
    fn old_job(&self, cron_job: &str, name: &str, how: &str, started: &str) {
        let cj = self.cj(cron_job);
        let mut j = jobs::job_for(&cj, ts(started), chrono_tz::Tz::UTC);
        j.metadata.name = Some(name.into());
        j.metadata.uid = Some(format!("uid-{name}"));
        self.informers.get::<Job>().upsert(j);
        self.finish_job(name, how, started, started);
    }

    fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn after_ms(ms: u64) -> Action {
    Action::RequeueAfter(Duration::from_millis(ms))
}

#[tokio::test]
async fn every_five_minutes_creates_a_job_at_each_boundary_only() {
    let h = Harness::new("2024-05-01T12:00:30Z");
    h.add(cron_job("tick", "*/5 * * * *", "2024-05-01T12:00:30Z"));
    assert_eq!(h.reconcile("tick").await, after_ms(270_100), "until 12:05");
    let mut started = Vec::new();
    for minute in 1..=21 {
        for second in [0, 30] {
            h.set_now(&format!("2024-05-01T12:{minute:02}:{second:02}Z"));
            h.reconcile("tick").await;
            for name in h.created_jobs() {
                started.push(format!("12:{minute:02}:{second:02} {name}"));
            }
        }
    }
    let want: Vec<String> = [5, 10, 15, 20]
        .iter()
        .map(|m| {
            let at = format!("2024-05-01T12:{m:02}:00Z");
            format!("12:{m:02}:00 {}", job_for("tick", &at))
        })
        .collect();
    assert_eq!(started, want);
    let last = job_for("tick", "2024-05-01T12:20:00Z");
    let st = h.status("tick");
    assert_eq!(
        st.last_schedule_time,
        Some(Time(ts("2024-05-01T12:20:00Z")))
    );
    assert_eq!(st.active.as_ref().unwrap().len(), 4, "Allow: all four run");

    let job = h.informers.get::<Job>().get(NS, &last).unwrap();
    let annotations = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations[SCHEDULED_TIMESTAMP_ANNOTATION],
        "2024-05-01T12:20:00Z"
    );
    assert_eq!(job.metadata.labels.as_ref().unwrap()["app"], "tick");
    assert_eq!(util::controller_of(job.as_ref()).unwrap().uid, "uid-tick");
    assert_eq!(
        h.reconcile("tick").await,
        after_ms(210_100),
        "12:21:30 → next at 12:25"
    );
    let events = h.take_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.contains("SuccessfulCreate"))
            .count(),
        4
    );
}

#[tokio::test]
async fn forbid_skips_a_schedule_while_a_job_runs() {
    let h = Harness::new("2024-05-01T12:05:00Z");
    h.add(with_spec(
        cron_job("solo", "*/5 * * * *", "2024-05-01T12:00:00Z"),
        |s| s.concurrency_policy = Some("Forbid".into()),
    ));
    h.reconcile("solo").await;
    let first = job_for("solo", "2024-05-01T12:05:00Z");
    assert_eq!(h.created_jobs(), [first.as_str()]);

    h.set_now("2024-05-01T12:10:00Z");
    assert_eq!(h.reconcile("solo").await, after_ms(300_100));
    assert!(h.created_jobs().is_empty(), "the 12:05 job still runs");
    assert!(h
        .take_events()
        .iter()
        .any(|e| e.starts_with("Normal JobAlreadyActive")));

    // The running job finishes after 12:15: the 12:15 run starts, the 12:10 one never did.
    h.set_now("2024-05-01T12:15:00Z");
    h.reconcile("solo").await;
    assert!(h.created_jobs().is_empty());
    h.finish_job(
        &first,
        "Complete",
        "2024-05-01T12:05:00Z",
        "2024-05-01T12:15:10Z",
    );
    h.set_now("2024-05-01T12:15:20Z");
    h.reconcile("solo").await;
    assert_eq!(h.created_jobs(), [job_for("solo", "2024-05-01T12:15:00Z")]);
    let st = h.status("solo");
    assert_eq!(
        st.last_successful_time,
        Some(Time(ts("2024-05-01T12:15:10Z")))
    );
    assert_eq!(
        h.active_names("solo"),
        [job_for("solo", "2024-05-01T12:15:00Z")]
    );
    assert!(h
        .take_events()
        .iter()
        .any(|e| e.starts_with("Normal SawCompletedJob Saw completed job:")));
}

#[tokio::test]
async fn replace_deletes_the_running_job_first() {
    let h = Harness::new("2024-05-01T12:05:00Z");
    h.add(with_spec(
        cron_job("swap", "*/5 * * * *", "2024-05-01T12:00:00Z"),
        |s| s.concurrency_policy = Some("Replace".into()),
    ));
    h.reconcile("swap").await;
    let first = job_for("swap", "2024-05-01T12:05:00Z");
    h.api.take_actions();
    h.set_now("2024-05-01T12:10:00Z");
    h.reconcile("swap").await;
    let writes = h.api.take_actions();
    let second = job_for("swap", "2024-05-01T12:10:00Z");
    let summaries: Vec<String> = writes.iter().map(Write::summary).collect();
    assert_eq!(
        summaries[..2],
        [
            format!("delete Job default/{first}"),
            format!("create Job default/{second}")
        ]
    );
    let Write::Delete { opts, .. } = &writes[0] else {
        unreachable!()
    };
    assert_eq!(opts.propagation, Propagation::Background);
    assert_eq!(h.job_names(), [second.as_str()]);
    assert_eq!(h.active_names("swap"), [second]);
}

#[tokio::test]
async fn after_a_downtime_only_the_latest_missed_schedule_starts() {
    let h = Harness::new("2024-05-01T13:02:00Z");
    h.add(cron_job("late", "*/5 * * * *", "2024-05-01T12:00:30Z"));
    assert_eq!(h.reconcile("late").await, after_ms(180_100));
    assert_eq!(h.created_jobs(), [job_for("late", "2024-05-01T13:00:00Z")]);
    let st = h.status("late");
    assert_eq!(
        st.last_schedule_time,
        Some(Time(ts("2024-05-01T13:00:00Z")))
    );
    assert!(h
        .take_events()
        .iter()
        .all(|e| !e.contains("TooManyMissedTimes")));
}

#[tokio::test]
async fn missed_schedules_past_the_starting_deadline_are_not_started() {
    let h = Harness::new("2024-05-01T13:02:00Z");
    h.add(with_spec(
        cron_job("strict", "*/5 * * * *", "2024-05-01T12:00:30Z"),
        |s| s.starting_deadline_seconds = Some(60),
    ));
    assert_eq!(
        h.reconcile("strict").await,
        after_ms(180_100),
        "wait for 13:05"
    );
    assert!(
        h.created_jobs().is_empty(),
        "13:00 is 120 s late, past the 60 s deadline"
    );

    h.add(with_spec(
        cron_job("lenient", "*/5 * * * *", "2024-05-01T12:00:30Z"),
        |s| s.starting_deadline_seconds = Some(200),
    ));
    h.reconcile("lenient").await;
    assert_eq!(
        h.created_jobs(),
        [job_for("lenient", "2024-05-01T13:00:00Z")]
    );
}

#[tokio::test]
async fn too_many_missed_schedules_are_reported() {
    let h = Harness::new("2024-05-03T12:01:00Z");
    h.add(cron_job("asleep", "*/5 * * * *", "2024-05-01T12:00:30Z"));
    h.reconcile("asleep").await;
    assert_eq!(
        h.created_jobs(),
        [job_for("asleep", "2024-05-03T12:00:00Z")]
    );
    let events = h.take_events();
    assert!(
        events.iter().any(|e| e.starts_with(
            "Warning TooManyMissedTimes too many missed start times. Set or decrease"
        )),
        "{events:?}"
    );
}

#[tokio::test]
async fn history_limits_delete_the_oldest_finished_jobs() {
    let h = Harness::new("2024-05-01T12:30:00Z");
    h.add(with_spec(
        cron_job("tidy", "0 0 1 1 *", "2024-05-01T12:00:00Z"),
        |s| {
            s.successful_jobs_history_limit = Some(2);
            s.failed_jobs_history_limit = Some(1);
        },
    ));
    for (name, how, started) in [
        ("tidy-ok-1", "Complete", "2024-05-01T12:01:00Z"),
        ("tidy-ok-2", "Complete", "2024-05-01T12:02:00Z"),
        ("tidy-ok-3", "Complete", "2024-05-01T12:03:00Z"),
        ("tidy-ok-4", "Complete", "2024-05-01T12:04:00Z"),
        ("tidy-bad-1", "Failed", "2024-05-01T12:05:00Z"),
        ("tidy-bad-2", "Failed", "2024-05-01T12:06:00Z"),
    ] {
        h.old_job("tidy", name, how, started);
    }
    h.reconcile("tidy").await;
    let mut deleted = h.api.take_summaries();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "delete Job default/tidy-bad-1",
            "delete Job default/tidy-ok-1",
            "delete Job default/tidy-ok-2",
            "update-status CronJob default/tidy",
        ]
    );
    assert_eq!(
        h.status("tidy").last_successful_time,
        Some(Time(ts("2024-05-01T12:04:00Z")))
    );
    let mut left = h.job_names();
    left.sort();
    assert_eq!(left, ["tidy-bad-2", "tidy-ok-3", "tidy-ok-4"]);
}

#[tokio::test]
async fn schedules_follow_the_time_zone() {
    let h = Harness::new("2024-07-01T06:59:59Z");
    h.add(with_spec(
        cron_job("berlin", "0 9 * * *", "2024-07-01T00:00:00Z"),
        |s| s.time_zone = Some("Europe/Berlin".into()),
    ));
    assert_eq!(
        h.reconcile("berlin").await,
        after_ms(1_100),
        "09:00 CEST is 07:00 UTC"
    );
    assert!(h.created_jobs().is_empty());
    h.set_now("2024-07-01T07:00:00Z");
    h.reconcile("berlin").await;
    let name = job_for("berlin", "2024-07-01T07:00:00Z");
    assert_eq!(h.created_jobs(), [name.as_str()]);
    let job = h.informers.get::<Job>().get(NS, &name).unwrap();
    let annotations = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations[SCHEDULED_TIMESTAMP_ANNOTATION],
        "2024-07-01T09:00:00+02:00"
    );

    h.add(with_spec(
        cron_job("nowhere", "0 9 * * *", "2024-07-01T00:00:00Z"),
        |s| s.time_zone = Some("Europe/Atlantis".into()),
    ));
    h.take_events();
    assert_eq!(h.reconcile("nowhere").await, Action::Done);
    assert!(h.created_jobs().is_empty());
    let events = h.take_events();
    assert!(
        events[0].starts_with("Warning UnknownTimeZone invalid timeZone: \"Europe/Atlantis\""),
        "{events:?}"
    );
}

#[tokio::test]
async fn macros_and_suspension() {
    let h = Harness::new("2024-05-01T12:00:30Z");
    h.add(cron_job("hourly", "@hourly", "2024-05-01T12:00:30Z"));
    assert_eq!(h.reconcile("hourly").await, after_ms(3_570_100));
    h.set_now("2024-05-01T13:00:00Z");
    h.reconcile("hourly").await;
    assert_eq!(
        h.created_jobs(),
        [job_for("hourly", "2024-05-01T13:00:00Z")]
    );
    assert_eq!(h.reconcile("hourly").await, after_ms(3_600_100));

    h.add(with_spec(
        cron_job("paused", "@daily", "2024-05-01T12:00:30Z"),
        |s| s.suspend = Some(true),
    ));
    h.set_now("2024-05-03T13:00:00Z");
    assert_eq!(h.reconcile("paused").await, Action::Done);
    assert!(
        h.created_jobs().is_empty(),
        "a suspended CronJob starts nothing"
    );

    h.add(cron_job("broken", "every day", "2024-05-01T12:00:30Z"));
    assert_eq!(h.reconcile("broken").await, Action::Done);
    assert!(h
        .take_events()
        .iter()
        .any(|e| e.starts_with("Warning UnparseableSchedule")));
}

#[tokio::test]
async fn vanished_and_forgotten_jobs_are_tracked() {
    let h = Harness::new("2024-05-01T12:05:00Z");
    h.add(cron_job("track", "*/5 * * * *", "2024-05-01T12:00:00Z"));
    h.reconcile("track").await;
    let first = job_for("track", "2024-05-01T12:05:00Z");
    assert_eq!(h.created_jobs(), [first.as_str()]);
    h.informers.get::<Job>().remove(&ObjectKey::new(NS, &first));
    h.set_now("2024-05-01T12:06:00Z");
    h.reconcile("track").await;
    assert!(h.active_names("track").is_empty());
    assert!(h
        .take_events()
        .iter()
        .any(|e| e == &format!("Normal MissingJob Active job went missing: {first}")));
    assert!(h.created_jobs().is_empty(), "12:05 was started already");

    // A Job whose status write was lost joins the active list.
    let cj = h.cj("track");
    let mut stray = jobs::job_for(&cj, ts("2024-05-01T12:05:00Z"), chrono_tz::Tz::UTC);
    stray.metadata.name = Some("track-manual".into());
    stray.metadata.uid = Some("uid-manual".into());
    h.informers.get::<Job>().upsert(stray);
    h.reconcile("track").await;
    assert_eq!(h.active_names("track"), ["track-manual"]);
}

#[tokio::test]
async fn a_finishing_job_wakes_its_cron_job() {
    let h = Harness::new("2024-05-01T12:05:00Z");
    let c = controller(&h.ctx, CronJobOptions::default());
    h.add(with_spec(
        cron_job("woken", "*/5 * * * *", "2024-05-01T12:00:00Z"),
        |s| s.concurrency_policy = Some("Forbid".into()),
    ));
    c.run_until_idle().await;
    let first = job_for("woken", "2024-05-01T12:05:00Z");
    assert_eq!(h.active_names("woken"), [first.as_str()]);
    h.set_now("2024-05-01T12:10:00Z");
    h.finish_job(
        &first,
        "Complete",
        "2024-05-01T12:05:00Z",
        "2024-05-01T12:09:00Z",
    );
    c.run_until_idle().await;
    assert_eq!(
        h.active_names("woken"),
        [job_for("woken", "2024-05-01T12:10:00Z")]
    );
}
