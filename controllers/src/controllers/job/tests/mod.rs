//! Unit tests of the Job controller over the fake API with an advancing clock: the fixtures and
//! harness here, the cases in `lifecycle` (completion, indexes, suspension, TTL, adoption) and
//! `failures` (back-off, restarts, deadlines, failed writes).

mod failures;
mod lifecycle;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use super::*;
use crate::runtime::fake::FakeApi;
use crate::runtime::{Informers, Recorder};

const NS: &str = "default";

fn start() -> jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Job as the API server stores it: selector and template labels generated from its uid.
fn job(name: &str, completions: Option<i32>, parallelism: i32) -> Job {
    let uid = format!("uid-{name}");
    let pod_labels = labels(&[(CONTROLLER_UID_LABEL, &uid), (JOB_NAME_LABEL, name)]);
    Job {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some(name.into()),
            uid: Some(uid.clone()),
            resource_version: Some("1".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(6),
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[(CONTROLLER_UID_LABEL, &uid)])),
                match_expressions: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "work".into(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn with_spec(mut j: Job, f: impl FnOnce(&mut JobSpec)) -> Job {
    f(j.spec.as_mut().unwrap());
    j
}

struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    clock: Arc<Mutex<jiff::Timestamp>>,
    reconciler: JobReconciler,
    revision: Mutex<u64>,
    ctx: Context,
}

impl Harness {
    fn new() -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, events) = Recorder::memory("test");
        let clock = Arc::new(Mutex::new(start()));
        let c = clock.clone();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || *c.lock().unwrap()),
        };
        let expectations = Arc::new(Expectations::default());
        let pods = informers.get::<Pod>();
        watch_pods(
            &pods,
            &informers.get::<Job>(),
            &WorkQueue::new(),
            expectations.clone(),
        );
        let reconciler = JobReconciler::new(&ctx, JobOptions::default(), expectations);
        Harness {
            informers,
            api,
            events,
            clock,
            reconciler,
            revision: Mutex::new(100),
            ctx,
        }
    }

    fn now(&self) -> jiff::Timestamp {
        *self.clock.lock().unwrap()
    }

    fn advance(&self, secs: i64) {
        let mut t = self.clock.lock().unwrap();
        *t += jiff::SignedDuration::from_secs(secs);
    }

    fn next_rv(&self) -> String {
        let mut r = self.revision.lock().unwrap();
        *r += 1;
        r.to_string()
    }

    fn add_job(&self, j: Job) {
        self.informers.get::<Job>().upsert(j);
    }

    fn job(&self, name: &str) -> Arc<Job> {
        self.informers.get::<Job>().get(NS, name).unwrap()
    }

    /// Change the stored Job's spec, as a user's update would.
    fn edit_job(&self, name: &str, f: impl FnOnce(&mut JobSpec)) {
        let mut j = (*self.job(name)).clone();
        f(j.spec.as_mut().unwrap());
        j.metadata.resource_version = Some(self.next_rv());
        self.add_job(j);
    }

    async fn reconcile(&self, name: &str) -> Action {
        self.reconciler
            .reconcile(&ObjectKey::new(NS, name))
            .await
            .unwrap()
    }

    fn pods(&self) -> Vec<Arc<Pod>> {
        self.informers.get::<Pod>().list()
    }

    fn active(&self) -> Vec<Arc<Pod>> {
        self.pods()
            .into_iter()
            .filter(|p| util::is_pod_active(p))
            .collect()
    }

    /// The pod ends now in `phase` ("Succeeded" or "Failed"), as the node agent reports it.
    fn finish(&self, pod: &Pod, phase: &str) {
        let mut p = terminated(pod, phase, self.now());
        p.metadata.resource_version = Some(self.next_rv());
        self.informers.get::<Pod>().upsert(p);
    }

    /// The pod runs, its containers restarted `restarts` times.
    fn running(&self, pod: &Pod, restarts: i32) {
        let mut p = pod.clone();
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "work".into(),
                restart_count: restarts,
                ..Default::default()
            }]),
            ..Default::default()
        });
        p.metadata.resource_version = Some(self.next_rv());
        self.informers.get::<Pod>().upsert(p);
    }

    fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    fn condition(&self, name: &str, ty: &str) -> Option<(String, String)> {
        status::condition(&self.job(name), ty)
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
    }

    fn status(&self, name: &str) -> k8s_openapi::api::batch::v1::JobStatus {
        self.job(name).status.clone().unwrap_or_default()
    }
}

/// `pod` ended at `at` in `phase` ("Succeeded" or "Failed").
fn terminated(pod: &Pod, phase: &str, at: jiff::Timestamp) -> Pod {
    let mut p = pod.clone();
    let exit_code = if phase == "Succeeded" { 0 } else { 1 };
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        container_statuses: Some(vec![ContainerStatus {
            name: "work".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code,
                    finished_at: Some(Time(at)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

fn count(events: &[String], prefix: &str) -> usize {
    events.iter().filter(|e| e.starts_with(prefix)).count()
}

fn secs(n: u64) -> Action {
    Action::RequeueAfter(Duration::from_secs(n))
}
