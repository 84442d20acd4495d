//! A Deployment's life beyond one rolling update: Recreate, rollback by template, the revision
//! history limit, pause and resume, hash collisions and adopting orphan ReplicaSets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DeploymentStrategy, ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::super::helpers::{annotation, rs_template, spec_replicas};
use super::super::status::PROGRESSING;
use super::{deployment, name, reason_of, Harness};
use crate::controllers::deployment::{
    pod_template_hash, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
};
use crate::runtime::ObjectKey;
use crate::util;

fn pod_of(rs: &ReplicaSet, i: usize, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{}-{i}", name(rs))),
            namespace: Some("default".into()),
            uid: Some(format!("uid-pod-{i}")),
            resource_version: Some("1".into()),
            labels: rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone()),
            owner_references: Some(vec![util::controller_ref(rs)]),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn recreate_scales_down_waits_for_the_old_pods_then_scales_up() {
    let h = Harness::new();
    let mut d = deployment(3, "web:v1");
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    h.create(d).await;
    h.settle().await;
    let old = h.rs(1);
    let pods = h.informers.get::<Pod>();
    for i in 0..3 {
        pods.upsert(pod_of(&old, i, "Running"));
    }
    h.run().await;
    h.events();

    h.set_image("web:v2").await;
    h.run().await;
    assert_eq!(
        h.replica_sets().len(),
        1,
        "no new replica set while old pods run"
    );
    assert_eq!(spec_replicas(&h.rs(1)), 0);
    assert_eq!(
        h.events(),
        [format!(
            "Normal ScalingReplicaSet Scaled down replica set {} from 3 to 0",
            name(&old)
        )]
    );

    // The old ReplicaSet reports no replicas, but its pods are still there (terminating).
    h.sim_rs(spec_replicas);
    h.run().await;
    assert_eq!(h.replica_sets().len(), 1);
    pods.remove(&ObjectKey::new("default", &format!("{}-1", name(&old))));
    h.run().await;
    assert_eq!(h.replica_sets().len(), 1, "one old pod still runs");

    // A finished pod does not count; once the last running one is gone, the pod event brings
    // the Deployment back and the new ReplicaSet is created at full size.
    pods.upsert(pod_of(&old, 0, "Succeeded"));
    pods.remove(&ObjectKey::new("default", &format!("{}-2", name(&old))));
    h.run().await;
    let new = h.rs(2);
    assert_eq!(spec_replicas(&new), 3);
    assert_eq!(
        h.events(),
        [format!(
            "Normal ScalingReplicaSet Scaled up replica set {} from 0 to 3",
            name(&new)
        )]
    );
    h.settle().await;
    assert_eq!(
        reason_of(&h.condition(PROGRESSING)),
        "NewReplicaSetAvailable"
    );
}

#[tokio::test]
async fn rolling_back_to_an_old_template_reuses_its_replica_set_as_the_next_revision() {
    let h = Harness::new();
    h.create(deployment(2, "web:v1")).await;
    h.settle().await;
    h.set_image("web:v2").await;
    h.settle().await;
    let first = h.rs(1);
    assert_eq!(spec_replicas(&first), 0);

    // What `rollout undo` does: the old ReplicaSet's template, minus its hash label.
    let mut template = rs_template(&first);
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    h.update(|d| d.spec.template = template).await;
    h.settle().await;

    let rss = h.replica_sets();
    assert_eq!(rss.len(), 2, "no new replica set for a known template");
    let (second, reused) = (&rss[0], &rss[1]);
    assert_eq!(name(reused), name(&first));
    assert_eq!(annotation(reused, REVISION_ANNOTATION), Some("3"));
    assert_eq!(annotation(reused, REVISION_HISTORY_ANNOTATION), Some("1"));
    assert_eq!((spec_replicas(reused), spec_replicas(second)), (2, 0));
    assert_eq!(annotation(second, REVISION_ANNOTATION), Some("2"));
    let revision = h
        .deployment()
        .metadata
        .annotations
        .and_then(|a| a.get(REVISION_ANNOTATION).cloned());
    assert_eq!(revision.as_deref(), Some("3"));
}

#[tokio::test]
async fn the_revision_history_limit_deletes_the_oldest_revisions() {
    let h = Harness::new();
    let mut d = deployment(1, "web:v1");
    d.spec.revision_history_limit = Some(2);
    h.create(d).await;
    h.settle().await;
    let mut names = vec![name(&h.rs(1))];
    for v in 2..=5 {
        h.set_image(&format!("web:v{v}")).await;
        h.settle().await;
        names.push(name(&h.rs(v)));
    }
    let kept: Vec<String> = h.replica_sets().iter().map(name).collect();
    assert_eq!(kept, names[2..]);
    let writes = h.writes();
    for gone in &names[..2] {
        assert!(
            writes.contains(&format!("delete ReplicaSet default/{gone}")),
            "{writes:?}"
        );
    }
}

#[tokio::test]
async fn a_paused_rollout_stands_still_and_resumes() {
    let h = Harness::new();
    h.create(deployment(4, "web:v1")).await;
    h.settle().await;
    h.set_image("web:v2").await;
    h.run().await;
    // 4 replicas, surge 1, unavailable 1: the new ReplicaSet has 2, the old one 3.
    assert_eq!((spec_replicas(&h.rs(1)), spec_replicas(&h.rs(2))), (3, 2));

    h.update(|d| d.spec.paused = Some(true)).await;
    h.run().await;
    let progressing = h.condition(PROGRESSING);
    assert_eq!(
        (progressing.status.as_deref(), reason_of(&progressing)),
        (Some("Unknown"), "DeploymentPaused")
    );
    // Every new pod becomes available, yet nothing moves.
    h.settle().await;
    assert_eq!((spec_replicas(&h.rs(1)), spec_replicas(&h.rs(2))), (3, 2));
    assert_eq!(reason_of(&h.condition(PROGRESSING)), "DeploymentPaused");
    assert_eq!(
        h.deployment().status.and_then(|s| s.available_replicas),
        Some(5)
    );

    h.events();
    h.update(|d| d.spec.paused = Some(false)).await;
    h.run().await;
    assert_eq!(reason_of(&h.condition(PROGRESSING)), "DeploymentResumed");
    assert_eq!(
        spec_replicas(&h.rs(1)),
        1,
        "5 available, 3 required: the old one shrinks by 2"
    );
    h.settle().await;
    assert_eq!((spec_replicas(&h.rs(1)), spec_replicas(&h.rs(2))), (0, 4));
    assert_eq!(
        reason_of(&h.condition(PROGRESSING)),
        "NewReplicaSetAvailable"
    );
}

#[tokio::test]
async fn a_hash_collision_bumps_the_collision_count() {
    let h = Harness::new();
    let d = deployment(2, "web:v1");
    let taken = format!("web-{}", pod_template_hash(&d.spec.template, None));
    // A ReplicaSet with that name, another template and labels the Deployment does not select.
    let mut squatter = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(taken.clone()),
            namespace: Some("default".into()),
            uid: Some("uid-squatter".into()),
            resource_version: Some("1".into()),
            labels: Some(BTreeMap::from([("app".to_string(), "other".to_string())])),
            ..Default::default()
        },
        ..Default::default()
    };
    squatter.spec.replicas = Some(1);
    h.informers.get::<ReplicaSet>().upsert(squatter);

    h.create(d.clone()).await;
    h.run().await;
    assert_eq!(
        h.deployment().status.and_then(|s| s.collision_count),
        Some(1)
    );
    let expected = format!("web-{}", pod_template_hash(&d.spec.template, Some(1)));
    assert_ne!(expected, taken);
    let rs = h.rs(1);
    assert_eq!((name(&rs), spec_replicas(&rs)), (expected, 2));
    let squatter = h
        .informers
        .get::<ReplicaSet>()
        .get("default", &taken)
        .expect("squatter");
    assert_eq!(
        squatter.metadata.resource_version.as_deref(),
        Some("1"),
        "left alone"
    );
}

#[tokio::test]
async fn orphan_replica_sets_that_match_are_adopted() {
    let h = Harness::new();
    let d = deployment(2, "web:v1");
    let hash = pod_template_hash(&d.spec.template, None);
    let mut template = d.spec.template.clone();
    let mut labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels = Some(labels.clone());
    // Left behind by a Deployment deleted with --cascade=orphan.
    let orphan = |name: &str, image: &str, uid: &str| {
        let mut t = template.clone();
        t.spec.as_mut().expect("pod spec").containers[0].image = Some(image.into());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                resource_version: Some("1".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
            status: Some(ReplicaSetStatus {
                replicas: 1,
                available_replicas: Some(1),
                ready_replicas: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        rs.spec.replicas = Some(1);
        rs.spec.selector.match_labels = Some(labels.clone());
        rs.spec.template = Some(t);
        rs
    };
    let rss = h.informers.get::<ReplicaSet>();
    let mut current = orphan(&format!("web-{hash}"), "web:v1", "uid-current");
    current.spec.replicas = Some(2);
    rss.upsert(current);

    h.create(d).await;
    h.run().await;
    assert_eq!(h.replica_sets().len(), 1, "adopted, not created");
    let adopted = h.rs(1);
    let uid = h.deployment().metadata.uid;
    assert_eq!(util::controller_of(&adopted).map(|r| r.uid.clone()), uid);
    h.settle().await;
    h.events();

    // An orphan appearing later is news for the Deployment (no explicit enqueue here); being
    // an old template, it is adopted and scaled away.
    rss.upsert(orphan("web-legacy", "web:v0", "uid-legacy"));
    h.run().await;
    let legacy = rss.get("default", "web-legacy").expect("legacy");
    assert_eq!(
        util::controller_of(legacy.as_ref()).map(|r| r.uid.clone()),
        uid
    );
    assert_eq!(spec_replicas(&legacy), 0);
    assert_eq!(
        h.events(),
        ["Normal ScalingReplicaSet Scaled down replica set web-legacy from 1 to 0"]
    );
}

#[tokio::test]
async fn a_replica_set_that_stops_matching_is_released() {
    let h = Harness::new();
    h.create(deployment(2, "web:v1")).await;
    h.settle().await;
    let mut relabelled = h.rs(1);
    let first = name(&relabelled);
    relabelled.metadata.labels = Some(BTreeMap::from([("app".to_string(), "debug".to_string())]));
    relabelled.metadata.resource_version = Some("relabelled".into());
    h.informers.get::<ReplicaSet>().upsert(relabelled);
    h.run().await;

    let released = h
        .informers
        .get::<ReplicaSet>()
        .get("default", &first)
        .expect("released");
    assert_eq!(util::controller_of(released.as_ref()), None);
    // Its name is the template's hash: the replacement needs the next collisionCount.
    assert_eq!(
        h.deployment().status.and_then(|s| s.collision_count),
        Some(1)
    );
    let replacement = h.rs(1);
    assert_ne!(name(&replacement), first);
    assert_eq!(spec_replicas(&replacement), 2);
}
