//! StatefulSet controller unit tests over the fake API with a fixed clock: the fixtures and
//! harness here; creation, claims, scale-down and the one-pod-per-ordinal rule in `ordering`;
//! updates, status, the claim retention policy and ownership in `updates`.

mod ordering;
mod updates;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimSpec, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Volume,
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

/// The `web` StatefulSet of Kubernetes' documentation: nginx pods governed by the `nginx`
/// Service with one `www` claim each.
fn web(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some(NS.into()),
            uid: Some("uid-web".into()),
            resource_version: Some("1".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "nginx")])),
                match_expressions: None,
            },
            service_name: Some("nginx".into()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "nginx")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "nginx".into(),
                        image: Some("nginx:1.25".into()),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "www".into(),
                        empty_dir: Some(Default::default()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("www".into()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    ..Default::default()
                }),
                status: None,
            }]),
            ..Default::default()
        },
        status: None,
    }
}

struct Fixture {
    informers: Informers,
    fake: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    now: Arc<Mutex<jiff::Timestamp>>,
    controller: Controller,
}

fn fixture(set: StatefulSet) -> Fixture {
    let informers = Informers::new();
    let fake = Arc::new(FakeApi::new(informers.clone()));
    let (recorder, events) = Recorder::memory("statefulset-controller");
    let now = Arc::new(Mutex::new(start()));
    let clock_now = now.clone();
    let ctx = Context {
        informers: informers.clone(),
        api: fake.clone(),
        recorder,
        clock: Arc::new(move || *clock_now.lock().unwrap()),
    };
    let controller = controller(&ctx, Options::default());
    informers.get::<StatefulSet>().upsert(set);
    Fixture {
        informers,
        fake,
        events,
        now,
        controller,
    }
}

impl Fixture {
    /// Reconcile until idle; the writes made, without status updates.
    async fn run(&self) -> Vec<String> {
        self.controller.queue.add(ObjectKey::new(NS, "web"));
        self.controller.run_until_idle().await;
        self.fake
            .take_summaries()
            .into_iter()
            .filter(|s| !s.starts_with("update-status"))
            .collect()
    }

    fn set(&self) -> StatefulSet {
        let s = self.informers.get::<StatefulSet>().get(NS, "web").unwrap();
        s.as_ref().clone()
    }

    /// Change the spec as a user would: the generation moves on.
    fn edit(&self, f: impl FnOnce(&mut StatefulSet)) {
        let mut s = self.set();
        f(&mut s);
        s.metadata.generation = Some(s.metadata.generation.unwrap_or(1) + 1);
        self.informers.get::<StatefulSet>().upsert(s);
    }

    fn status(&self) -> StatefulSetStatus {
        self.set().status.unwrap()
    }

    fn pod(&self, name: &str) -> Pod {
        self.informers
            .get::<Pod>()
            .get(NS, name)
            .unwrap()
            .as_ref()
            .clone()
    }

    fn pod_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .informers
            .get::<Pod>()
            .list()
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        names
    }

    fn claim_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .informers
            .get::<PersistentVolumeClaim>()
            .list()
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The pod as the node agent reports it: Running and Ready since 100 s before now.
    fn ready(&self, name: &str) {
        let mut p = self.pod(name);
        let since = *self.now.lock().unwrap() - jiff::SignedDuration::from_secs(100);
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(since)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        self.informers.get::<Pod>().upsert(p);
    }

    fn phase(&self, name: &str, phase: &str) {
        let mut p = self.pod(name);
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        self.informers.get::<Pod>().upsert(p);
    }

    /// The pod being deleted gracefully (its node may be unreachable).
    fn terminating(&self, name: &str) {
        let mut p = self.pod(name);
        p.metadata.deletion_timestamp = Some(Time(start()));
        self.informers.get::<Pod>().upsert(p);
    }

    fn gone(&self, name: &str) {
        self.informers
            .get::<Pod>()
            .remove(&ObjectKey::new(NS, name));
    }

    /// Bring up every ordinal in order, each made Ready.
    async fn all_ready(&self, n: i32) {
        for o in 0..n {
            self.run().await;
            self.ready(&format!("web-{o}"));
        }
        self.run().await;
    }

    fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn spec_mut(s: &mut StatefulSet) -> &mut StatefulSetSpec {
    &mut s.spec
}

fn new_image(s: &mut StatefulSet) {
    let spec = spec_mut(s).template.spec.as_mut().unwrap();
    spec.containers[0].image = Some("nginx:1.26".into());
}

fn rolling(partition: i32) -> Option<StatefulSetUpdateStrategy> {
    Some(StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy {
            partition: Some(partition),
            max_unavailable: None,
        }),
    })
}
