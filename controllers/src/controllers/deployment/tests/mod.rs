//! Unit tests of the deployment controller over the fake API: a harness with a fixed clock and
//! a stand-in for the ReplicaSet controller (it sets ReplicaSet status), and the basic cases.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetStatus};
use serde_json::json;

use super::helpers::{annotation, revision, spec_replicas, status_replicas};
use super::status::{condition, PROGRESSING};
use super::*;
use crate::runtime::fake::FakeApi;
use crate::runtime::{ApiExt, Informers, Recorder};

mod arithmetic;
mod lifecycle;
mod rolling;

/// The fixed clock's start (2023-11-14).
const T0: i64 = 1_700_000_000;

pub(super) struct Harness {
    pub informers: Informers,
    pub api: Arc<FakeApi>,
    pub ctx: Context,
    pub controller: Controller,
    events: Arc<Mutex<Vec<String>>>,
    clock: Arc<AtomicI64>,
    versions: AtomicU64,
}

impl Harness {
    pub fn new() -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, events) = Recorder::memory("deployment-controller");
        let clock = Arc::new(AtomicI64::new(T0));
        let seconds = clock.clone();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || {
                jiff::Timestamp::from_second(seconds.load(Ordering::SeqCst)).expect("valid time")
            }),
        };
        let controller = controller(&ctx);
        Harness {
            informers,
            api,
            ctx,
            controller,
            events,
            clock,
            versions: AtomicU64::new(1),
        }
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    pub async fn create(&self, d: Deployment) {
        self.api.create_object(&d).await.expect("create deployment");
    }

    /// Change the Deployment's spec or metadata as a user would (an update: generation bumps).
    pub async fn update(&self, f: impl FnOnce(&mut Deployment)) {
        let mut d = self.deployment();
        f(&mut d);
        self.api.update_object(&d).await.expect("update deployment");
    }

    pub async fn set_image(&self, image: &str) {
        self.update(|d| {
            d.spec.template.spec.as_mut().expect("pod spec").containers[0].image =
                Some(image.into());
            d.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    "kubernetes.io/change-cause".into(),
                    format!("image {image}"),
                );
        })
        .await;
    }

    pub fn deployment(&self) -> Deployment {
        let d = self.informers.get::<Deployment>().get("default", "web");
        (*d.expect("deployment web")).clone()
    }

    /// Every ReplicaSet, by revision.
    pub fn replica_sets(&self) -> Vec<ReplicaSet> {
        let mut rss: Vec<ReplicaSet> = self
            .informers
            .get::<ReplicaSet>()
            .list()
            .iter()
            .map(|rs| (**rs).clone())
            .collect();
        rss.sort_by_key(|rs| revision(rs).unwrap_or(0));
        rss
    }

    pub fn rs(&self, rev: i64) -> ReplicaSet {
        self.replica_sets()
            .into_iter()
            .find(|rs| revision(rs) == Some(rev))
            .unwrap_or_else(|| panic!("no replica set of revision {rev}"))
    }

    pub async fn run(&self) {
        self.controller.run_until_idle().await;
    }

    /// The writes since the last call.
    pub fn writes(&self) -> Vec<String> {
        self.api.take_summaries()
    }

    /// The events since the last call.
    pub fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().expect("events"))
    }

    /// Stand in for the ReplicaSet controller: every ReplicaSet's status follows its spec, with
    /// `available(rs)` of its pods ready and available. Whether anything changed.
    pub fn sim_rs(&self, available: impl Fn(&ReplicaSet) -> i32) -> bool {
        let cache = self.informers.get::<ReplicaSet>();
        let mut changed = false;
        for rs in cache.list() {
            let spec = spec_replicas(&rs);
            let ready = available(&rs).clamp(0, spec);
            let status = ReplicaSetStatus {
                replicas: spec,
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                observed_generation: rs.metadata.generation,
                ..Default::default()
            };
            if rs.status.as_ref() != Some(&status) {
                let mut rs = (*rs).clone();
                rs.status = Some(status);
                let v = self.versions.fetch_add(1, Ordering::SeqCst);
                rs.metadata.resource_version = Some(format!("sim-{v}"));
                cache.upsert(rs);
                changed = true;
            }
        }
        changed
    }

    /// Run the controller and a ReplicaSet controller whose pods all become available at once,
    /// until neither has anything left to do.
    pub async fn settle(&self) {
        for _ in 0..100 {
            self.run().await;
            if !self.sim_rs(spec_replicas) {
                return;
            }
        }
        panic!("the rollout did not settle");
    }

    pub fn condition(&self, ty: &str) -> DeploymentCondition {
        let status = self.deployment().status.expect("status");
        condition(&status, ty)
            .cloned()
            .unwrap_or_else(|| panic!("no {ty} condition"))
    }
}

/// `default/web`: `replicas` pods of `image`, selected by `app=web`, with the API server's
/// defaults written out (RollingUpdate 25%/25%, history 10, deadline 600 s).
pub(super) fn deployment(replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {
            "name": "web",
            "namespace": "default",
            "annotations": {"kubernetes.io/change-cause": format!("image {image}")},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }))
    .expect("deployment fixture")
}

pub(super) fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

pub(super) fn reason_of(c: &DeploymentCondition) -> &str {
    c.reason.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn a_new_deployment_gets_a_hashed_replica_set_of_revision_one() {
    let h = Harness::new();
    let d = deployment(3, "web:v1");
    let hash = pod_template_hash(&d.spec.template, None);
    h.create(d).await;
    h.writes();
    h.run().await;

    let rss = h.replica_sets();
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    assert_eq!(name(rs), format!("web-{hash}"));
    assert!(
        hash.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{hash}"
    );
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("pod-template-hash"), Some(&hash));
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    let selector = rs.spec.selector.match_labels.clone().unwrap_or_default();
    assert_eq!(selector.get("pod-template-hash"), Some(&hash));
    let template_labels = rs
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    assert_eq!(
        template_labels.unwrap_or_default().get("pod-template-hash"),
        Some(&hash)
    );
    let d = h.deployment();
    let owner = crate::util::controller_of(rs).expect("controller reference");
    assert_eq!(
        (owner.kind.as_str(), &owner.name, &owner.uid),
        (
            "Deployment",
            &"web".to_string(),
            d.metadata.uid.as_ref().unwrap()
        )
    );
    assert_eq!(spec_replicas(rs), 3);
    // 25% of 3: surge rounds up to 1.
    for (key, want) in [
        (REVISION_ANNOTATION, "1"),
        (DESIRED_REPLICAS_ANNOTATION, "3"),
        (MAX_REPLICAS_ANNOTATION, "4"),
        ("kubernetes.io/change-cause", "image web:v1"),
    ] {
        assert_eq!(annotation(rs, key), Some(want), "{key}");
    }
    let revision = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION));
    assert_eq!(revision.map(String::as_str), Some("1"));
    assert_eq!(reason_of(&h.condition(PROGRESSING)), "NewReplicaSetCreated");
    assert_eq!(
        h.events(),
        [format!(
            "Normal ScalingReplicaSet Scaled up replica set web-{hash} from 0 to 3"
        )]
    );
    let writes = h.writes();
    assert!(
        writes.contains(&format!("create ReplicaSet default/web-{hash}")),
        "{writes:?}"
    );
}

#[tokio::test]
async fn a_settled_deployment_reports_its_status_and_a_second_reconcile_writes_nothing() {
    let h = Harness::new();
    h.create(deployment(3, "web:v1")).await;
    h.settle().await;

    let d = h.deployment();
    let status = d.status.clone().expect("status");
    assert_eq!(status.observed_generation, d.metadata.generation);
    assert_eq!(
        [
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ],
        [Some(3), Some(3), Some(3), Some(3), Some(0)]
    );
    let available = h.condition("Available");
    assert_eq!(
        (available.status.as_deref(), reason_of(&available)),
        (Some("True"), "MinimumReplicasAvailable")
    );
    let progressing = h.condition(PROGRESSING);
    assert_eq!(
        (progressing.status.as_deref(), reason_of(&progressing)),
        (Some("True"), "NewReplicaSetAvailable")
    );

    h.writes();
    h.events();
    h.controller.queue.add(ObjectKey::new("default", "web"));
    h.run().await;
    assert_eq!(h.writes(), Vec::<String>::new());
    assert_eq!(h.events(), Vec::<String>::new());
}

#[tokio::test]
async fn an_unavailable_deployment_says_so() {
    let h = Harness::new();
    h.create(deployment(4, "web:v1")).await;
    h.run().await;
    // 2 of 4 available; maxUnavailable is 1.
    h.sim_rs(|_| 2);
    h.run().await;
    let available = h.condition("Available");
    assert_eq!(
        (available.status.as_deref(), reason_of(&available)),
        (Some("False"), "MinimumReplicasUnavailable")
    );
    let status = h.deployment().status.expect("status");
    assert_eq!(
        (status.available_replicas, status.unavailable_replicas),
        (Some(2), Some(2))
    );
    assert_eq!(status_replicas(&h.rs(1)), 4);
}

#[tokio::test]
async fn a_deleted_or_terminating_deployment_is_left_alone() {
    let h = Harness::new();
    let reconciler = DeploymentReconciler::new(&h.ctx);
    let key = ObjectKey::new("default", "web");
    assert_eq!(reconciler.reconcile(&key).await, Ok(Action::Done));

    let mut d = deployment(2, "web:v1");
    d.metadata.uid = Some("uid-web".into());
    d.metadata.resource_version = Some("1".into());
    d.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        h.ctx.now(),
    ));
    h.informers.get::<Deployment>().upsert(d);
    assert_eq!(reconciler.reconcile(&key).await, Ok(Action::Done));
    assert_eq!(h.writes(), Vec::<String>::new());
    assert!(h.replica_sets().is_empty());
}

#[tokio::test]
async fn an_empty_selector_is_refused_with_an_event() {
    let h = Harness::new();
    let mut d = deployment(2, "web:v1");
    d.spec.selector = Default::default();
    h.create(d).await;
    h.writes();
    h.run().await;
    assert!(h.replica_sets().is_empty());
    assert_eq!(
        h.events(),
        [
            "Warning SelectingAll This deployment is selecting all pods. \
          A non-empty selector is required."
        ]
    );
    assert_eq!(h.writes(), ["update-status Deployment default/web"]);
    assert_eq!(
        h.deployment().status.and_then(|s| s.observed_generation),
        Some(1)
    );
}

#[tokio::test]
async fn replica_set_failures_surface_on_the_deployment() {
    let h = Harness::new();
    h.create(deployment(2, "web:v1")).await;
    h.run().await;
    let mut rs = h.rs(1);
    rs.status = Some(ReplicaSetStatus {
        replicas: 1,
        conditions: Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            reason: Some("FailedCreate".into()),
            message: Some("exceeded quota".into()),
            last_transition_time: None,
        }]),
        ..Default::default()
    });
    rs.metadata.resource_version = Some("failing".into());
    h.informers.get::<ReplicaSet>().upsert(rs);
    h.run().await;
    let failure = h.condition("ReplicaFailure");
    assert_eq!(
        (
            failure.status.as_deref(),
            reason_of(&failure),
            failure.message.as_deref()
        ),
        (Some("True"), "FailedCreate", Some("exceeded quota"))
    );

    h.settle().await;
    let status = h.deployment().status.expect("status");
    assert_eq!(condition(&status, "ReplicaFailure"), None);
}
