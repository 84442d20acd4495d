//! Unit tests of the node lifecycle controller over the fake API and a clock the tests move:
//! the harness and the node health tests (taint manager tests in `eviction`).

use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use super::*;
use crate::runtime::fake::{Action as FakeAction, FakeApi};
use crate::runtime::{DeleteOptions, Informers, Recorder};

const T0: &str = "2024-01-01T00:00:00Z";

/// A controller over the fake API whose clock the test moves; seconds are relative to `T0`.
struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    clock: Arc<Mutex<i64>>,
    controller: Controller,
}

fn at(secs: i64) -> Timestamp {
    let t0: Timestamp = T0.parse().unwrap();
    t0.checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap()
}

impl Harness {
    fn new() -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, events) = Recorder::memory("node-lifecycle-controller");
        let clock = Arc::new(Mutex::new(0i64));
        let c = clock.clone();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || at(*c.lock().unwrap())),
        };
        let controller = controller(&ctx, NodeLifecycleOptions::default());
        Harness {
            informers,
            api,
            events,
            clock,
            controller,
        }
    }

    fn now(&self) -> i64 {
        *self.clock.lock().unwrap()
    }

    /// A node whose agent last posted `ready` long ago (so only the Lease shows it alive).
    fn add_node(&self, name: &str, ready: &str) {
        let condition = |ty: &str, status: &str| NodeCondition {
            type_: ty.into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            message: None,
            last_heartbeat_time: Some(Time(at(-1000))),
            last_transition_time: Some(Time(at(-1000))),
        };
        self.informers.get::<Node>().upsert(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                creation_timestamp: Some(Time(at(-2000))),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![
                    condition("Ready", ready),
                    condition("MemoryPressure", "False"),
                ]),
                ..Default::default()
            }),
        });
    }

    fn node(&self, name: &str) -> Arc<Node> {
        self.informers.get::<Node>().get("", name).unwrap()
    }

    /// The agent posts its Ready condition (with a heartbeat now).
    fn post_ready(&self, name: &str, status: &str) {
        let mut node = (*self.node(name)).clone();
        let ready = node.status.as_mut().unwrap().conditions.as_mut().unwrap();
        let c = ready.iter_mut().find(|c| c.type_ == "Ready").unwrap();
        c.status = status.into();
        c.reason = Some("KubeletReady".into());
        c.last_heartbeat_time = Some(Time(at(self.now())));
        node.metadata.resource_version = Some(format!("agent-{}", self.now()));
        self.informers.get::<Node>().upsert(node);
    }

    fn renew(&self, name: &str, secs: i64) {
        self.informers.get::<Lease>().upsert(Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NODE_LEASE_NAMESPACE.into()),
                resource_version: Some(format!("lease-{secs}")),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.into()),
                renew_time: Some(MicroTime(at(secs))),
                lease_duration_seconds: Some(40),
                ..Default::default()
            }),
        });
    }

    fn add_pod(&self, name: &str, node: &str, tolerations: Vec<Toleration>) {
        self.informers.get::<Pod>().upsert(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            status: None,
        });
    }

    fn pod_names(&self) -> Vec<String> {
        let pods = self.informers.get::<Pod>().list();
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    /// One pass over every node at the current time; the writes it made.
    async fn pass(&self) -> Vec<String> {
        for key in self.informers.get::<Node>().keys() {
            self.controller.queue.add(key);
        }
        self.controller.run_until_idle().await;
        self.api.take_summaries()
    }

    /// Move the clock to `secs` a monitor period at a time, passing over every node at each step
    /// as the requeues would; the writes made on the way.
    async fn run_to(&self, secs: i64) -> Vec<String> {
        let mut writes = Vec::new();
        while self.now() < secs {
            let step = (secs - self.now()).min(5);
            *self.clock.lock().unwrap() += step;
            writes.extend(self.pass().await);
        }
        writes
    }

    /// One pass at `secs` (a step of at most a monitor period); the writes in full.
    async fn actions_at(&self, secs: i64) -> Vec<FakeAction> {
        assert!((0..=5).contains(&(secs - self.now())));
        *self.clock.lock().unwrap() = secs;
        for key in self.informers.get::<Node>().keys() {
            self.controller.queue.add(key);
        }
        self.controller.run_until_idle().await;
        self.api.take_actions()
    }

    fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(NO_EXECUTE.into()),
        value: None,
        toleration_seconds: seconds,
    }
}

fn taint_keys(node: &Node) -> Vec<String> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone());
    taints.iter().flatten().map(|t| t.key.clone()).collect()
}

fn none() -> Vec<String> {
    Vec::new()
}

/// A harness whose node n1 stopped renewing its Lease at 0 and is marked unreachable at 40.
async fn unreachable_at_40(h: &Harness) {
    assert_eq!(
        h.run_to(40).await,
        ["update-status Node n1", "update Node n1"]
    );
}

/// A harness with node n1 whose Lease was renewed at 0, passed over once at 0.
async fn silent_node() -> Harness {
    let h = Harness::new();
    h.add_node("n1", "True");
    h.renew("n1", 0);
    assert_eq!(h.pass().await, none());
    h
}

#[tokio::test]
async fn a_node_renewing_its_lease_is_left_alone() {
    let h = silent_node().await;
    assert_eq!(h.pass().await, none());
    for s in (10..=200).step_by(10) {
        assert_eq!(h.run_to(s).await, none(), "at {s}");
        h.renew("n1", s);
    }
    assert_eq!(h.events(), none());
    assert_eq!(taint_keys(&h.node("n1")), none());
}

#[tokio::test]
async fn a_silent_node_becomes_unknown_and_unreachable() {
    let h = silent_node().await;
    h.pass().await;
    assert_eq!(h.run_to(39).await, none());
    unreachable_at_40(&h).await;
    let node = h.node("n1");
    let conditions = node.status.as_ref().unwrap().conditions.clone().unwrap();
    for c in &conditions {
        assert_eq!(c.status, "Unknown", "{}", c.type_);
        assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            c.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(c.last_transition_time, Some(Time(at(40))));
        assert_eq!(
            c.last_heartbeat_time,
            Some(Time(at(-1000))),
            "the old heartbeat stays"
        );
    }
    let taints = node.spec.as_ref().unwrap().taints.clone().unwrap();
    assert_eq!(
        taints,
        [Taint {
            key: TAINT_UNREACHABLE.into(),
            value: None,
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(at(40))),
        }]
    );
    assert_eq!(
        h.events(),
        ["Normal NodeNotReady Node n1 status is now: NodeNotReady"]
    );
    assert_eq!(h.run_to(100).await, none(), "marked once");
    assert_eq!(h.events(), none());
}

#[tokio::test]
async fn no_node_is_declared_unreachable_during_the_startup_grace() {
    let h = Harness::new();
    h.add_node("n1", "True");
    h.renew("n1", -600);
    assert_eq!(
        h.pass().await,
        none(),
        "the controller just started leading"
    );
    assert_eq!(h.run_to(39).await, none());
    assert_eq!(
        h.run_to(40).await,
        ["update-status Node n1", "update Node n1"]
    );
}

#[tokio::test]
async fn a_pause_in_leadership_restarts_the_startup_grace() {
    let h = silent_node().await;
    assert_eq!(h.run_to(20).await, none());
    // No reconcile for 80 s: another server led meanwhile (or nobody could).
    *h.clock.lock().unwrap() = 100;
    assert_eq!(h.pass().await, none());
    assert_eq!(h.run_to(139).await, none());
    assert_eq!(
        h.run_to(140).await,
        ["update-status Node n1", "update Node n1"]
    );
}

#[tokio::test]
async fn the_start_of_leadership_restarts_the_startup_grace() {
    let h = silent_node().await;
    assert_eq!(h.run_to(30).await, none());
    // The manager announces a new term (this server lost and regained leadership).
    h.controller.resync();
    assert_eq!(h.run_to(69).await, none());
    assert_eq!(
        h.run_to(70).await,
        ["update-status Node n1", "update Node n1"]
    );
}

#[tokio::test]
async fn an_unavailable_control_plane_restarts_the_startup_grace() {
    let h = silent_node().await;
    assert_eq!(h.run_to(35).await, none());
    h.api.fail_next(Error::Api(rkube_client::Error::Unavailable(
        "no quorum".into(),
    )));
    assert_eq!(h.run_to(40).await, none(), "the write failed");
    assert_eq!(h.controller.queue.failures(&ObjectKey::new("", "n1")), 1);
    assert_eq!(h.run_to(79).await, none());
    assert_eq!(
        h.run_to(80).await,
        ["update-status Node n1", "update Node n1"]
    );
}

#[tokio::test]
async fn a_node_reporting_not_ready_is_tainted_not_ready() {
    let h = Harness::new();
    h.add_node("n1", "False");
    h.renew("n1", 0);
    assert_eq!(h.pass().await, ["update Node n1"]);
    assert_eq!(taint_keys(&h.node("n1")), [TAINT_NOT_READY]);
    assert_eq!(
        h.events(),
        ["Normal NodeNotReady Node n1 status is now: NodeNotReady"]
    );
    // A pod being deleted on a reachable node is its agent's business.
    h.add_pod("leaving", "n1", vec![]);
    let mut leaving = (*h.informers.get::<Pod>().get("default", "leaving").unwrap()).clone();
    leaving.metadata.deletion_timestamp = Some(Time(at(1)));
    h.informers.get::<Pod>().upsert(leaving);
    assert_eq!(h.run_to(20).await, none());
    // Then it goes silent: the not-ready taint gives way to the unreachable one, and the pod
    // stuck terminating on a node that is now unreachable is force-deleted.
    assert_eq!(
        h.run_to(40).await,
        [
            "update-status Node n1",
            "update Node n1",
            "delete Pod default/leaving"
        ]
    );
    assert_eq!(taint_keys(&h.node("n1")), [TAINT_UNREACHABLE]);
    assert_eq!(h.events(), none(), "it was not ready already");
}

#[tokio::test]
async fn a_node_that_posts_ready_again_loses_the_taint() {
    let h = silent_node().await;
    h.add_pod("web", "n1", vec![]);
    h.pass().await;
    unreachable_at_40(&h).await;
    // The Lease alone ends the silence but the node is not Ready yet.
    *h.clock.lock().unwrap() = 50;
    h.renew("n1", 50);
    assert_eq!(h.pass().await, none());
    assert_eq!(taint_keys(&h.node("n1")), [TAINT_UNREACHABLE]);
    h.post_ready("n1", "True");
    assert_eq!(h.pass().await, ["update Node n1"]);
    assert_eq!(taint_keys(&h.node("n1")), none());
    // The pod's default toleration would have run out at 340: it stays.
    for s in (60..=400).step_by(10) {
        h.renew("n1", s);
        assert_eq!(h.run_to(s).await, none());
    }
    assert_eq!(h.pod_names(), ["web"]);
}

#[tokio::test]
async fn a_node_that_never_posted_status_gets_a_ready_unknown_condition() {
    let h = Harness::new();
    h.informers.get::<Node>().upsert(Node {
        metadata: ObjectMeta {
            name: Some("bare".into()),
            resource_version: Some("1".into()),
            creation_timestamp: Some(Time(at(-100))),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(h.pass().await, none());
    assert_eq!(h.run_to(39).await, none());
    assert_eq!(
        h.run_to(40).await,
        ["update-status Node bare", "update Node bare"]
    );
    let ready = condition(&h.node("bare"), "Ready").unwrap().clone();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    assert_eq!(taint_keys(&h.node("bare")), [TAINT_UNREACHABLE]);
}

#[tokio::test]
async fn leases_and_pods_on_tainted_nodes_wake_the_node() {
    let h = silent_node().await;
    h.add_node("n2", "True");
    h.renew("n2", 100);
    h.pass().await;
    let queued = |h: &Harness| {
        let mut keys = Vec::new();
        while let Some(k) = h.controller.queue.try_get() {
            h.controller.queue.done(&k);
            keys.push(k.name);
        }
        keys
    };
    h.renew("n1", 0);
    assert_eq!(queued(&h), ["n1"]);
    h.add_pod("p", "n2", vec![]);
    assert_eq!(queued(&h), none(), "n2 has no NoExecute taint");
    unreachable_at_40(&h).await;
    queued(&h);
    h.add_pod("q", "n1", vec![]);
    assert_eq!(queued(&h), ["n1"]);
    // Other namespaces' Leases are not heartbeats.
    let mut other = (*h
        .informers
        .get::<Lease>()
        .get(NODE_LEASE_NAMESPACE, "n1")
        .unwrap())
    .clone();
    other.metadata.namespace = Some("kube-system".into());
    h.informers.get::<Lease>().upsert(other);
    assert_eq!(queued(&h), none());
}

#[tokio::test]
async fn requeues_meet_the_next_deadline_within_the_monitor_period() {
    let h = silent_node().await;
    let key = ObjectKey::new("", "n1");
    let reconciler = |h: &Harness| NodeLifecycle {
        ctx: Context {
            informers: h.informers.clone(),
            api: h.api.clone(),
            recorder: Recorder::memory("t").0,
            clock: {
                let c = h.clock.clone();
                Arc::new(move || at(*c.lock().unwrap()))
            },
        },
        opts: NodeLifecycleOptions::default(),
        nodes: h.informers.get::<Node>(),
        leases: h.informers.get::<Lease>(),
        pods: h.informers.get::<Pod>(),
        state: Mutex::new(State::default()),
    };
    let r = reconciler(&h);
    let after = |secs| Ok(Action::RequeueAfter(Duration::from_secs(secs)));
    assert_eq!(r.reconcile(&key).await, after(5));
    *h.clock.lock().unwrap() = 38;
    // A reconciler that never saw a node starts its term (and its startup grace) now.
    let fresh = reconciler(&h);
    assert_eq!(fresh.reconcile(&key).await, after(5));
    *h.clock.lock().unwrap() = 5;
    assert_eq!(r.reconcile(&key).await, after(5));
    for s in [10, 15, 20, 25, 30, 35] {
        *h.clock.lock().unwrap() = s;
        r.reconcile(&key).await.unwrap();
    }
    *h.clock.lock().unwrap() = 38;
    assert_eq!(r.reconcile(&key).await, after(2), "the lease expires at 40");
    assert_eq!(
        r.reconcile(&ObjectKey::new("", "gone")).await,
        Ok(Action::Done)
    );
}

mod eviction;
