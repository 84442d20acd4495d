//! Pod garbage collector unit tests over the fake API with a fixed clock: the terminated-pod
//! threshold, orphaned pods after the quarantine, unscheduled terminating pods.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::runtime::fake::{Action as Write, FakeApi};
use crate::runtime::{Informers, Recorder};

fn start() -> jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("timestamp")
}

struct Fixture {
    informers: Informers,
    fake: Arc<FakeApi>,
    now: Arc<Mutex<jiff::Timestamp>>,
    controller: Controller,
}

fn fixture(opts: PodGcOptions) -> Fixture {
    let informers = Informers::new();
    let fake = Arc::new(FakeApi::new(informers.clone()));
    let now = Arc::new(Mutex::new(start()));
    let clock_now = now.clone();
    let ctx = Context {
        informers: informers.clone(),
        api: fake.clone(),
        recorder: Recorder::memory("pod-gc").0,
        clock: Arc::new(move || *clock_now.lock().unwrap()),
    };
    let controller = controller(&ctx, opts);
    Fixture {
        informers,
        fake,
        now,
        controller,
    }
}

impl Fixture {
    fn nodes(&self, names: &[&str]) {
        let nodes = names
            .iter()
            .map(|n| Node {
                metadata: ObjectMeta {
                    name: Some(n.to_string()),
                    uid: Some(format!("node-{n}")),
                    resource_version: Some("1".into()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        self.informers.get::<Node>().replace(nodes);
    }

    fn pods(&self, pods: Vec<Pod>) {
        self.informers.get::<Pod>().replace(pods);
    }

    fn advance_to(&self, secs: i64) {
        *self.now.lock().unwrap() = start() + jiff::SignedDuration::from_secs(secs);
    }

    /// Run a sweep now and return its deletes as `name (grace period)`.
    async fn sweep(&self) -> Vec<String> {
        self.controller.queue.add(sweep_key());
        self.controller.run_until_idle().await;
        self.fake
            .take_actions()
            .iter()
            .map(|a| match a {
                Write::Delete { key, opts, .. } => {
                    format!("{key} ({:?})", opts.grace_period_seconds)
                }
                other => panic!("unexpected write {}", other.summary()),
            })
            .collect()
    }
}

/// A pod created `age_rank` minutes after the start, bound to `node` (empty: unscheduled).
fn pod(name: &str, node: &str, phase: &str, age_rank: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            creation_timestamp: Some(Time(start() + jiff::SignedDuration::from_mins(age_rank))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(start()));
    p.metadata.deletion_grace_period_seconds = Some(30);
    p
}

#[tokio::test]
async fn the_oldest_terminated_pods_beyond_the_threshold_go_evicted_first() {
    let f = fixture(PodGcOptions {
        terminated_pod_gc_threshold: 2,
        ..Default::default()
    });
    f.nodes(&["n1"]);
    let mut evicted = pod("t4", "n1", "Failed", 4);
    evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
    f.pods(vec![
        pod("running", "n1", "Running", 0),
        pod("t1", "n1", "Succeeded", 1),
        pod("t2", "n1", "Failed", 2),
        pod("t3", "n1", "Succeeded", 3),
        evicted,
    ]);
    assert_eq!(
        f.sweep().await,
        ["default/t4 (Some(0))", "default/t1 (Some(0))"]
    );
    assert!(f.sweep().await.is_empty(), "now at the threshold");
}

#[tokio::test]
async fn a_zero_threshold_keeps_every_terminated_pod() {
    let f = fixture(PodGcOptions {
        terminated_pod_gc_threshold: 0,
        ..Default::default()
    });
    f.nodes(&["n1"]);
    f.pods(vec![
        pod("t1", "n1", "Succeeded", 1),
        pod("t2", "n1", "Failed", 2),
    ]);
    assert!(f.sweep().await.is_empty());
}

#[tokio::test]
async fn pods_of_a_missing_node_are_force_deleted_after_the_quarantine() {
    let f = fixture(PodGcOptions::default());
    f.pods(vec![
        pod("a", "n1", "Running", 0),
        pod("b", "gone", "Running", 1),
        pod("c", "gone", "Succeeded", 2),
        pod("d", "flaky", "Running", 3),
    ]);
    assert!(f.sweep().await.is_empty(), "the node cache has not synced");

    f.nodes(&["n1"]);
    assert!(f.sweep().await.is_empty(), "quarantine starts");
    f.advance_to(20);
    f.nodes(&["n1", "flaky"]);
    f.advance_to(39);
    assert!(f.sweep().await.is_empty(), "still in quarantine");
    f.advance_to(40);
    assert_eq!(
        f.sweep().await,
        ["default/b (Some(0))", "default/c (Some(0))"]
    );

    // A node that came back and went again starts a new quarantine.
    f.advance_to(41);
    f.nodes(&["n1"]);
    assert!(f.sweep().await.is_empty());
    f.advance_to(80);
    assert!(f.sweep().await.is_empty());
    f.advance_to(81);
    assert_eq!(f.sweep().await, ["default/d (Some(0))"]);
}

#[tokio::test]
async fn terminating_pods_that_were_never_scheduled_are_force_deleted() {
    let f = fixture(PodGcOptions::default());
    f.nodes(&["n1"]);
    f.pods(vec![
        terminating(pod("unscheduled", "", "Pending", 0)),
        terminating(pod("stopping", "n1", "Running", 1)),
        pod("waiting", "", "Pending", 2),
    ]);
    assert_eq!(f.sweep().await, ["default/unscheduled (Some(0))"]);
}
