//! Namespace controller unit tests over the fake API: content deleted, then the finalizer
//! removed; terminating pods waited for and reported; failures reported.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, NamespaceSpec, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::runtime::fake::{Action as Write, FakeApi};
use crate::runtime::{Informers, Object, Recorder};

fn at() -> jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("timestamp")
}

struct Fixture {
    informers: Informers,
    fake: Arc<FakeApi>,
    controller: Controller,
}

fn fixture() -> Fixture {
    let informers = Informers::new();
    let fake = Arc::new(FakeApi::new(informers.clone()));
    let ctx = Context {
        informers: informers.clone(),
        api: fake.clone(),
        recorder: Recorder::memory("namespace").0,
        clock: Arc::new(at),
    };
    let controller = controller(&ctx, NamespaceOptions::default());
    Fixture {
        informers,
        fake,
        controller,
    }
}

impl Fixture {
    /// Mark the Namespace informer and every content kind's informer as synced.
    fn sync_all(&self) {
        use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
        use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
        use k8s_openapi::api::batch::v1::{CronJob, Job};
        use k8s_openapi::api::core::v1::{
            Endpoints, PersistentVolumeClaim, ReplicationController, Service,
        };
        let i = &self.informers;
        relist::<Namespace>(i);
        relist::<Pod>(i);
        relist::<ReplicaSet>(i);
        relist::<ReplicationController>(i);
        relist::<Deployment>(i);
        relist::<DaemonSet>(i);
        relist::<StatefulSet>(i);
        relist::<Job>(i);
        relist::<CronJob>(i);
        relist::<Service>(i);
        relist::<Endpoints>(i);
        relist::<ConfigMap>(i);
        relist::<Secret>(i);
        relist::<PersistentVolumeClaim>(i);
        relist::<HorizontalPodAutoscaler>(i);
        relist::<Lease>(i);
        relist::<Event>(i);
    }

    fn add<K: Object + Default>(&self, ns: &str, name: &str, edit: impl FnOnce(&mut K)) {
        let mut o = K::default();
        *o.metadata_mut() = ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(format!("{ns}-{name}-uid")),
            resource_version: Some("1".into()),
            ..Default::default()
        };
        edit(&mut o);
        self.informers.get::<K>().upsert(o);
    }

    fn namespace(&self, name: &str, terminating: bool) {
        self.informers.get::<Namespace>().upsert(Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("ns-{name}")),
                resource_version: Some("1".into()),
                deletion_timestamp: terminating.then(|| Time(at())),
                ..Default::default()
            },
            spec: Some(NamespaceSpec {
                finalizers: Some(vec![KUBERNETES_FINALIZER.into()]),
            }),
            status: Some(NamespaceStatus {
                phase: Some(if terminating { "Terminating" } else { "Active" }.into()),
                conditions: None,
            }),
        });
    }

    fn conditions(&self, ns: &str) -> Vec<String> {
        let n = self.informers.get::<Namespace>().get("", ns).unwrap();
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| {
                let t = c.last_transition_time.as_ref().map(|t| t.0);
                assert_eq!(t, Some(at()), "{}", c.type_);
                format!(
                    "{} {}: {}",
                    c.type_,
                    c.status,
                    c.message.as_deref().unwrap_or("")
                )
            })
            .collect()
    }

    async fn run(&self) -> Vec<Write> {
        self.controller.run_until_idle().await;
        self.fake.take_actions()
    }
}

fn relist<K: Object>(informers: &Informers) {
    let i = informers.get::<K>();
    i.replace(i.list().iter().map(|o| (**o).clone()).collect());
}

fn summaries(actions: &[Write]) -> Vec<String> {
    actions.iter().map(Write::summary).collect()
}

#[tokio::test]
async fn a_terminating_namespace_is_emptied_then_finalized() {
    let f = fixture();
    f.namespace("team", true);
    f.namespace("other", false);
    f.add::<Pod>("team", "web", |_| {});
    f.add::<Deployment>("team", "app", |_| {});
    f.add::<ConfigMap>("team", "cfg", |_| {});
    f.add::<Lease>("team", "lock", |_| {});
    f.add::<Event>("team", "web.1", |_| {});
    f.add::<ConfigMap>("other", "keep", |_| {});
    f.sync_all();
    let actions = f.run().await;
    assert_eq!(
        summaries(&actions),
        [
            "delete Pod team/web",
            "delete Deployment team/app",
            "delete ConfigMap team/cfg",
            "delete Lease team/lock",
            "delete Event team/web.1",
            "update Namespace team"
        ]
    );
    let Write::Delete { opts, .. } = &actions[0] else {
        panic!("a delete first")
    };
    assert_eq!(opts.propagation, Propagation::Background);
    assert_eq!(
        opts.grace_period_seconds, None,
        "pods are deleted gracefully"
    );
    assert_eq!(opts.precondition_uid.as_deref(), Some("team-web-uid"));
    let team = f.informers.get::<Namespace>().get("", "team").unwrap();
    assert_eq!(team.spec.as_ref().unwrap().finalizers, Some(vec![]));
    assert!(f
        .informers
        .get::<ConfigMap>()
        .get("other", "keep")
        .is_some());
}

#[tokio::test]
async fn a_namespace_waits_for_terminating_pods_and_says_what_remains() {
    let f = fixture();
    f.namespace("team", true);
    f.add::<Pod>("team", "web", |p| {
        p.metadata.deletion_timestamp = Some(Time(at()));
        p.metadata.finalizers = Some(vec!["example.com/drain".into()]);
    });
    f.add::<Secret>("team", "token", |_| {});
    f.sync_all();
    assert_eq!(
        summaries(&f.run().await),
        ["delete Secret team/token", "update-status Namespace team"],
        "the terminating pod is not deleted again"
    );
    assert_eq!(
        f.conditions("team"),
        [
            "NamespaceDeletionContentFailure False: All content successfully deleted, may be waiting on finalization",
            "NamespaceContentRemaining True: Some resources are remaining: pods has 1 resource instances",
            "NamespaceFinalizersRemaining True: Some content in the namespace has finalizers remaining: example.com/drain in 1 resource instances",
        ]
    );

    // Nothing changed: no write.
    f.controller.queue.add(ObjectKey::new("", "team"));
    assert!(f.run().await.is_empty());

    // The pod's deletion wakes the namespace, which is now empty.
    f.informers
        .get::<Pod>()
        .remove(&ObjectKey::new("team", "web"));
    assert_eq!(summaries(&f.run().await), ["update Namespace team"]);
}

#[tokio::test]
async fn a_failed_delete_is_reported_and_retried() {
    let f = fixture();
    f.namespace("team", true);
    f.add::<ConfigMap>("team", "cfg", |_| {});
    f.sync_all();
    f.fake
        .fail_next(Error::Api(rkube_client::Error::Unavailable(
            "no leader".into(),
        )));
    assert_eq!(
        summaries(&f.run().await),
        [
            "update-status Namespace team",
            "delete ConfigMap team/cfg",
            "update Namespace team"
        ],
        "the status write wakes the namespace, and the retry succeeds"
    );
    assert_eq!(
        f.conditions("team")[0],
        "NamespaceDeletionContentFailure True: Failed to delete all resource types, 1 remaining: ConfigMap cfg: no leader"
    );
}

#[tokio::test]
async fn active_namespaces_and_unsynced_caches_are_left_alone() {
    let f = fixture();
    f.namespace("dev", false);
    f.add::<ConfigMap>("dev", "cfg", |_| {});
    f.namespace("team", true);
    f.add::<ConfigMap>("team", "cfg", |_| {});
    assert!(
        f.run().await.is_empty(),
        "the content caches have not synced"
    );
    f.sync_all();
    f.controller.resync();
    assert_eq!(
        summaries(&f.run().await),
        ["delete ConfigMap team/cfg", "update Namespace team"]
    );
    assert!(f.informers.get::<ConfigMap>().get("dev", "cfg").is_some());
}
