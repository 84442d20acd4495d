//! Garbage collector unit tests over the fake API: background collection (only once the owners'
//! kinds have synced, by uid), foreground deletion and orphaning.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::Resource;
use rkube_client::KindRef;
use serde_json::Value;

use super::*;
use crate::runtime::fake::{Action as Write, FakeApi};
use crate::runtime::{Api, Informers, Object, Patch, Recorder};

struct Fixture {
    informers: Informers,
    fake: Arc<FakeApi>,
    controller: Controller,
}

fn fixture() -> Fixture {
    fixture_with(|fake| fake)
}

/// A fixture whose controller writes through `api` wrapped around the fake.
fn fixture_with(api: impl FnOnce(Arc<FakeApi>) -> ApiRef) -> Fixture {
    let informers = Informers::new();
    let fake = Arc::new(FakeApi::new(informers.clone()));
    let ctx = Context {
        informers: informers.clone(),
        api: api(fake.clone()),
        recorder: Recorder::memory("garbage-collector").0,
        clock: Arc::new(jiff::Timestamp::now),
    };
    let controller = controller(&ctx, GarbageCollectorOptions::default());
    Fixture {
        informers,
        fake,
        controller,
    }
}

impl Fixture {
    /// Mark every tracked kind's informer as having loaded its first list.
    fn sync_all(&self) {
        use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
        use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
        use k8s_openapi::api::batch::v1::{CronJob, Job};
        use k8s_openapi::api::core::v1::{
            Endpoints, PersistentVolumeClaim, ReplicationController, Secret, Service,
        };
        let i = &self.informers;
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
    }

    async fn run(&self) -> Vec<Write> {
        self.controller.run_until_idle().await;
        self.fake.take_actions()
    }
}

/// Replace an informer's content with itself, as its first list would: it is then synced.
fn relist<K: Object>(informers: &Informers) {
    let i = informers.get::<K>();
    i.replace(i.list().iter().map(|o| (**o).clone()).collect());
}

fn owner<K: Resource>(name: &str, uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::API_VERSION.into(),
        kind: K::KIND.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: block.then_some(true),
    }
}

fn meta(name: &str, uid: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        resource_version: Some("1".into()),
        owner_references: (!owners.is_empty()).then_some(owners),
        ..Default::default()
    }
}

/// `meta` of an object being deleted, holding `finalizer`.
fn deleting(mut m: ObjectMeta, finalizer: &str) -> ObjectMeta {
    m.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    m.finalizers = Some(vec![finalizer.to_string()]);
    m
}

fn obj<K: Object + Default>(metadata: ObjectMeta) -> K {
    let mut o = K::default();
    *o.metadata_mut() = metadata;
    o
}

fn summaries(actions: &[Write]) -> Vec<String> {
    actions.iter().map(Write::summary).collect()
}

fn delete_opts(actions: &[Write]) -> Vec<(Propagation, Option<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Write::Delete { opts, .. } => Some((opts.propagation, opts.precondition_uid.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn background_collects_pods_of_a_deleted_replicaset_only_once_its_kind_has_synced() {
    let f = fixture();
    let rs_ref = || vec![owner::<ReplicaSet>("web", "rs-1", true)];
    f.informers.get::<Pod>().replace(vec![
        obj(meta("web-1", "p-1", rs_ref())),
        obj(meta("web-2", "p-2", rs_ref())),
        obj(meta("solo", "p-3", vec![])),
    ]);
    assert!(
        f.run().await.is_empty(),
        "the ReplicaSet informer has not synced"
    );

    f.informers
        .get::<ReplicaSet>()
        .replace(vec![obj(meta("web", "rs-1", vec![]))]);
    f.controller.resync();
    assert!(f.run().await.is_empty(), "the owner exists");

    f.informers
        .get::<ReplicaSet>()
        .remove(&ObjectKey::new("default", "web"));
    let actions = f.run().await;
    assert_eq!(
        summaries(&actions),
        ["delete Pod default/web-1", "delete Pod default/web-2"]
    );
    assert_eq!(
        delete_opts(&actions),
        [
            (Propagation::Background, Some("p-1".into())),
            (Propagation::Background, Some("p-2".into()))
        ]
    );
    assert!(f.informers.get::<Pod>().get("default", "solo").is_some());
}

#[tokio::test]
async fn an_owner_recreated_under_the_same_name_is_a_different_owner() {
    let f = fixture();
    let replicasets = f.informers.get::<ReplicaSet>();
    replicasets.upsert(obj(meta("web", "rs-1", vec![])));
    let pods = f.informers.get::<Pod>();
    pods.upsert(obj(meta(
        "old",
        "p-1",
        vec![owner::<ReplicaSet>("web", "rs-1", true)],
    )));
    f.sync_all();
    assert!(f.run().await.is_empty());

    // Deleted and recreated between two lists: the cache sees a modification with a new uid.
    replicasets.upsert(obj(meta("web", "rs-2", vec![])));
    pods.upsert(obj(meta(
        "new",
        "p-2",
        vec![owner::<ReplicaSet>("web", "rs-2", true)],
    )));
    assert_eq!(summaries(&f.run().await), ["delete Pod default/old"]);
    assert!(pods.get("default", "new").is_some());
}

#[tokio::test]
async fn status_only_changes_queue_nothing() {
    let f = fixture();
    let pods = f.informers.get::<Pod>();
    pods.upsert(obj(meta(
        "web-1",
        "p-1",
        vec![owner::<ReplicaSet>("web", "rs-1", true)],
    )));
    f.controller.run_until_idle().await;
    let mut changed: Pod = obj(meta(
        "web-1",
        "p-1",
        vec![owner::<ReplicaSet>("web", "rs-1", true)],
    ));
    changed.metadata.resource_version = Some("2".into());
    changed.status = Some(Default::default());
    pods.upsert(changed);
    assert!(f.controller.queue.is_empty());
}

#[tokio::test]
async fn owners_of_untracked_kinds_leave_the_dependent_alone() {
    let f = fixture();
    let widget = OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "w".into(),
        uid: "w-1".into(),
        ..Default::default()
    };
    let pods = f.informers.get::<Pod>();
    pods.upsert(obj(meta("a", "p-1", vec![widget.clone()])));
    pods.upsert(obj(meta(
        "b",
        "p-2",
        vec![widget, owner::<ReplicaSet>("gone", "rs-9", true)],
    )));
    f.sync_all();
    assert!(f.run().await.is_empty());
    assert_eq!(pods.len(), 2);
}

#[tokio::test]
async fn a_dependent_with_a_remaining_owner_only_loses_the_dangling_reference() {
    let f = fixture();
    f.informers
        .get::<Deployment>()
        .upsert(obj(meta("app", "d-1", vec![])));
    f.informers.get::<ConfigMap>().upsert(obj(meta(
        "cfg",
        "cm-1",
        vec![
            owner::<ReplicaSet>("gone", "rs-9", false),
            owner::<Deployment>("app", "d-1", false),
        ],
    )));
    f.sync_all();
    assert_eq!(summaries(&f.run().await), ["update ConfigMap default/cfg"]);
    let cm = f
        .informers
        .get::<ConfigMap>()
        .get("default", "cfg")
        .unwrap();
    let uids: Vec<&str> = cm
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.as_str())
        .collect();
    assert_eq!(uids, ["d-1"]);
}

#[tokio::test]
async fn foreground_deletion_deletes_dependents_then_removes_the_finalizer() {
    let f = fixture();
    f.informers.get::<Deployment>().upsert(obj(deleting(
        meta("web", "d-1", vec![]),
        FOREGROUND_FINALIZER,
    )));
    f.informers.get::<ReplicaSet>().upsert(obj(meta(
        "web-abc",
        "rs-1",
        vec![owner::<Deployment>("web", "d-1", true)],
    )));
    f.informers.get::<ConfigMap>().upsert(obj(meta(
        "web-cfg",
        "cm-1",
        vec![owner::<Deployment>("web", "d-1", false)],
    )));
    f.sync_all();
    let actions = f.run().await;
    assert_eq!(
        summaries(&actions),
        [
            "delete ReplicaSet default/web-abc",
            "delete ConfigMap default/web-cfg",
            "update Deployment default/web"
        ]
    );
    assert_eq!(
        delete_opts(&actions),
        [
            (Propagation::Foreground, Some("rs-1".into())),
            (Propagation::Background, Some("cm-1".into()))
        ]
    );
    let d = f
        .informers
        .get::<Deployment>()
        .get("default", "web")
        .unwrap();
    assert_eq!(d.metadata.finalizers, None);
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents_being_deleted() {
    let f = fixture();
    f.informers.get::<Deployment>().upsert(obj(deleting(
        meta("web", "d-1", vec![]),
        FOREGROUND_FINALIZER,
    )));
    // Already being deleted in the foreground itself (waiting for its own pods).
    f.informers.get::<ReplicaSet>().upsert(obj(deleting(
        meta(
            "web-abc",
            "rs-1",
            vec![owner::<Deployment>("web", "d-1", true)],
        ),
        FOREGROUND_FINALIZER,
    )));
    f.informers.get::<ConfigMap>().upsert(obj(meta(
        "web-cfg",
        "cm-1",
        vec![owner::<Deployment>("web", "d-1", false)],
    )));
    f.sync_all();
    assert_eq!(
        summaries(&f.run().await),
        [
            "delete ConfigMap default/web-cfg",
            "update ReplicaSet default/web-abc"
        ],
        "the ReplicaSet has no dependents, so it is let go; the Deployment still waits for it"
    );
    let d = f
        .informers
        .get::<Deployment>()
        .get("default", "web")
        .unwrap();
    assert_eq!(
        d.metadata.finalizers.as_deref(),
        Some(&[FOREGROUND_FINALIZER.to_string()][..])
    );

    // The server removes the ReplicaSet once its finalizer is gone; the owner hears of it.
    f.informers
        .get::<ReplicaSet>()
        .remove(&ObjectKey::new("default", "web-abc"));
    assert_eq!(summaries(&f.run().await), ["update Deployment default/web"]);
    let d = f
        .informers
        .get::<Deployment>()
        .get("default", "web")
        .unwrap();
    assert_eq!(d.metadata.finalizers, None);
}

#[tokio::test]
async fn orphan_deletion_strips_owner_references_and_keeps_the_dependents() {
    let f = fixture();
    f.informers
        .get::<ReplicaSet>()
        .upsert(obj(deleting(meta("web", "rs-1", vec![]), ORPHAN_FINALIZER)));
    f.informers
        .get::<Deployment>()
        .upsert(obj(meta("app", "d-1", vec![])));
    let pods = f.informers.get::<Pod>();
    pods.upsert(obj(meta(
        "web-1",
        "p-1",
        vec![owner::<ReplicaSet>("web", "rs-1", true)],
    )));
    pods.upsert(obj(meta(
        "web-2",
        "p-2",
        vec![
            owner::<ReplicaSet>("web", "rs-1", true),
            owner::<Deployment>("app", "d-1", false),
        ],
    )));
    f.sync_all();
    assert_eq!(
        summaries(&f.run().await),
        [
            "update Pod default/web-1",
            "update Pod default/web-2",
            "update ReplicaSet default/web"
        ]
    );
    assert_eq!(
        pods.get("default", "web-1")
            .unwrap()
            .metadata
            .owner_references,
        None
    );
    let rest = pods
        .get("default", "web-2")
        .unwrap()
        .metadata
        .owner_references
        .clone();
    assert_eq!(rest, Some(vec![owner::<Deployment>("app", "d-1", false)]));
    let rs = f
        .informers
        .get::<ReplicaSet>()
        .get("default", "web")
        .unwrap();
    assert_eq!(rs.metadata.finalizers, None);
}

/// Acknowledges pod updates without applying them, as a server whose watch lags would.
struct LaggingPodUpdates {
    fake: Arc<FakeApi>,
    acknowledged: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Api for LaggingPodUpdates {
    async fn create(&self, obj: Value, namespace: &str) -> Result<Value> {
        self.fake.create(obj, namespace).await
    }

    async fn update(&self, obj: Value) -> Result<Value> {
        if obj["kind"] == "Pod" {
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.acknowledged.lock().unwrap().push(name);
            return Ok(obj);
        }
        self.fake.update(obj).await
    }

    async fn update_status(&self, obj: Value) -> Result<Value> {
        self.fake.update_status(obj).await
    }

    async fn patch(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        patch: Patch,
        status: bool,
    ) -> Result<Value> {
        self.fake.patch(kind, namespace, name, patch, status).await
    }

    async fn delete(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Option<Value>> {
        self.fake.delete(kind, namespace, name, opts).await
    }
}

#[tokio::test(start_paused = true)]
async fn orphaning_keeps_the_finalizer_until_the_cache_shows_the_dependents_released() {
    let lagging = Arc::new(Mutex::new(None::<Arc<LaggingPodUpdates>>));
    let slot = lagging.clone();
    let f = fixture_with(move |fake| {
        let api = Arc::new(LaggingPodUpdates {
            fake,
            acknowledged: Mutex::new(Vec::new()),
        });
        *slot.lock().unwrap() = Some(api.clone());
        api
    });
    let api = lagging.lock().unwrap().clone().unwrap();
    f.informers
        .get::<ReplicaSet>()
        .upsert(obj(deleting(meta("web", "rs-1", vec![]), ORPHAN_FINALIZER)));
    f.informers.get::<Pod>().upsert(obj(meta(
        "web-1",
        "p-1",
        vec![owner::<ReplicaSet>("web", "rs-1", true)],
    )));
    f.sync_all();
    assert!(
        f.run().await.is_empty(),
        "the ReplicaSet keeps its finalizer"
    );
    assert_eq!(*api.acknowledged.lock().unwrap(), ["web-1"]);
    let rs = f
        .informers
        .get::<ReplicaSet>()
        .get("default", "web")
        .unwrap();
    assert_eq!(
        rs.metadata.finalizers.as_deref(),
        Some(&[ORPHAN_FINALIZER.to_string()][..])
    );
}
