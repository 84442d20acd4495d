//! Unit tests of the replica controllers over the fake API with synthetic pods and a fixed clock:
//! the fixtures and harness here, the cases in `scaling` and `ownership`.

mod ownership;
mod scaling;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, ReplicationController,
    ReplicationControllerSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use super::*;
use crate::runtime::fake::FakeApi;
use crate::runtime::{Informers, Object, Recorder};

const NS: &str = "default";

fn now() -> jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn ago(secs: i64) -> Time {
    Time(now() - jiff::SignedDuration::from_secs(secs))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(NS.into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        resource_version: Some("1".into()),
        generation: Some(1),
        ..Default::default()
    }
}

fn template(l: &[(&str, &str)]) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(l)),
            annotations: Some(labels(&[("note", "from-template")])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("nginx".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: meta(name, &format!("uid-{name}")),
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                match_expressions: None,
            },
            template: Some(template(&[("app", name), ("tier", "fe")])),
            min_ready_seconds: None,
        },
        status: None,
    }
}

/// A running pod labelled `app=<app>` on a node, created `age` seconds ago.
fn pod(name: &str, app: &str, age: i64) -> Pod {
    let mut m = meta(name, &format!("uid-{name}"));
    m.labels = Some(labels(&[("app", app), ("tier", "fe")]));
    m.creation_timestamp = Some(ago(age));
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

fn owned_by<K: Object>(mut p: Pod, owner: &K) -> Pod {
    p.metadata.owner_references = Some(vec![util::controller_ref(owner)]);
    p
}

fn ready_since(mut p: Pod, secs_ago: i64) -> Pod {
    let st = p.status.get_or_insert_with(Default::default);
    st.conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(ago(secs_ago)),
        ..Default::default()
    }]);
    p
}

struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    ctx: Context,
}

impl Harness {
    fn new() -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        Harness::with_api(informers, api.clone(), api)
    }

    fn with_api(informers: Informers, fake: Arc<FakeApi>, api: crate::runtime::ApiRef) -> Harness {
        let (recorder, events) = Recorder::memory("test");
        let ctx = Context {
            informers: informers.clone(),
            api,
            recorder,
            clock: Arc::new(now),
        };
        Harness {
            informers,
            api: fake,
            events,
            ctx,
        }
    }

    fn pods(&self) -> Informer<Pod> {
        self.informers.get::<Pod>()
    }

    fn rs(&self, name: &str) -> Arc<ReplicaSet> {
        self.informers.get::<ReplicaSet>().get(NS, name).unwrap()
    }

    fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    fn pod_names(&self) -> Vec<String> {
        self.pods()
            .list()
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    /// A ReplicaSet controller with its informers primed, its first reconciles done.
    async fn run_rs(&self, c: &Controller, name: &str) {
        c.queue.add(ObjectKey::new(NS, name));
        c.run_until_idle().await;
    }
}

fn replication_controller(
    name: &str,
    replicas: i32,
    selector: Option<&[(&str, &str)]>,
) -> ReplicationController {
    ReplicationController {
        metadata: meta(name, &format!("uid-{name}")),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(replicas),
            selector: selector.map(labels),
            template: Some(template(&[("app", name), ("tier", "fe")])),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

/// A reconciler of `K` whose queue nobody drains, to look at one reconcile's result.
fn reconciler<K: Replicated>(h: &Harness) -> ReplicaReconciler<K> {
    let expectations = Arc::new(Expectations::default());
    let owners = h.informers.get::<K>();
    watch_pods(&h.pods(), &owners, &WorkQueue::new(), expectations.clone());
    ReplicaReconciler {
        ctx: h.ctx.clone(),
        owners,
        pods: h.pods(),
        expectations,
        burst: Options::default().burst_replicas,
    }
}
