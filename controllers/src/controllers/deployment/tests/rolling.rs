//! Rolling updates: the surge and availability bounds step by step, unhealthy old replicas
//! first, proportional scaling mid-rollout, and a rollout stuck past its progress deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::helpers::{annotation, available_replicas, spec_replicas, status_replicas};
use super::super::status::PROGRESSING;
use super::{deployment, name, reason_of, Harness};
use crate::controllers::deployment::{
    DeploymentReconciler, DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, REVISION_ANNOTATION,
};
use crate::runtime::{Action, ObjectKey, Reconciler};

/// The ReplicaSet controller with pods that become available only when the test says so:
/// `available[name]` pods of each ReplicaSet (a scale-down removes unavailable pods first).
fn sim_tracked(h: &Harness, available: &mut BTreeMap<String, i32>) {
    for rs in h.replica_sets() {
        let n = available.entry(name(&rs)).or_insert(0);
        *n = (*n).min(spec_replicas(&rs));
    }
    h.sim_rs(|rs| available.get(&name(rs)).copied().unwrap_or(0));
}

fn totals(h: &Harness) -> (i32, i32, i32) {
    let rss = h.replica_sets();
    (
        rss.iter().map(spec_replicas).sum(),
        rss.iter().map(status_replicas).sum(),
        rss.iter().map(available_replicas).sum(),
    )
}

#[tokio::test]
async fn six_replicas_at_25_percent_never_exceed_8_pods_or_drop_below_5_available() {
    let h = Harness::new();
    h.create(deployment(6, "web:v1")).await;
    h.settle().await;
    let old = name(&h.rs(1));
    h.events();

    h.set_image("web:v2").await;
    h.run().await;
    let new = name(&h.rs(2));
    assert_eq!(
        h.events(),
        [
            format!("Normal ScalingReplicaSet Scaled up replica set {new} from 0 to 2"),
            format!("Normal ScalingReplicaSet Scaled down replica set {old} from 6 to 5"),
            format!("Normal ScalingReplicaSet Scaled up replica set {new} from 2 to 3"),
        ]
    );

    let mut available = BTreeMap::from([(old.clone(), 6)]);
    let (mut most_pods, mut least_available) = (0, i32::MAX);
    for _ in 0..40 {
        let (specs, _, _) = totals(&h);
        assert!(specs <= 8, "{specs} replicas asked for");
        sim_tracked(&h, &mut available);
        let (_, pods, ready) = totals(&h);
        assert!(pods <= 8, "{pods} pods");
        assert!(ready >= 5, "only {ready} available");
        most_pods = most_pods.max(pods);
        least_available = least_available.min(ready);
        if spec_replicas(&h.rs(1)) == 0 && available[&new] == 6 {
            break;
        }
        // One more new pod becomes ready.
        *available.entry(new.clone()).or_insert(0) += 1;
        h.run().await;
    }
    sim_tracked(&h, &mut available);
    h.run().await;

    assert_eq!(
        (most_pods, least_available),
        (8, 5),
        "the rollout uses its whole budget"
    );
    let (old_rs, new_rs) = (h.rs(1), h.rs(2));
    assert_eq!((spec_replicas(&old_rs), spec_replicas(&new_rs)), (0, 6));
    assert_eq!(annotation(&new_rs, REVISION_ANNOTATION), Some("2"));
    assert_eq!(
        annotation(&new_rs, "kubernetes.io/change-cause"),
        Some("image web:v2")
    );
    let status = h.deployment().status.expect("status");
    assert_eq!(
        (status.updated_replicas, status.available_replicas),
        (Some(6), Some(6))
    );
    assert_eq!(
        reason_of(&h.condition(PROGRESSING)),
        "NewReplicaSetAvailable"
    );
    let revision = h
        .deployment()
        .metadata
        .annotations
        .and_then(|a| a.get(REVISION_ANNOTATION).cloned());
    assert_eq!(revision.as_deref(), Some("2"));
}

#[tokio::test]
async fn unavailable_old_replicas_are_removed_first() {
    let h = Harness::new();
    let mut d = deployment(4, "web:v1");
    let rolling = d
        .spec
        .strategy
        .as_mut()
        .and_then(|s| s.rolling_update.as_mut())
        .expect("rollingUpdate");
    rolling.max_surge = Some(IntOrString::Int(1));
    rolling.max_unavailable = Some(IntOrString::Int(0));
    h.create(d).await;
    h.run().await;
    // Two of the old pods crash.
    h.sim_rs(|_| 2);
    h.run().await;
    let old = name(&h.rs(1));

    h.set_image("web:v2").await;
    h.run().await;
    let new = name(&h.rs(2));
    assert_eq!((spec_replicas(&h.rs(1)), spec_replicas(&h.rs(2))), (4, 1));
    // The new pod becomes available: there is room for one pod less, and an unavailable old
    // replica goes although only 3 of the 4 required pods are available.
    h.events();
    h.sim_rs(|rs| if name(rs) == new { 1 } else { 2 });
    h.run().await;
    assert_eq!(spec_replicas(&h.rs(1)), 3);
    assert_eq!(
        h.events().first().cloned(),
        Some(format!(
            "Normal ScalingReplicaSet Scaled down replica set {old} from 4 to 3"
        ))
    );
}

#[tokio::test]
async fn scaling_mid_rollout_is_shared_in_proportion() {
    let h = Harness::new();
    h.create(deployment(6, "web:v1")).await;
    h.settle().await;
    h.set_image("web:v2").await;
    h.run().await;
    let (old, new) = (h.rs(1), h.rs(2));
    assert_eq!((spec_replicas(&old), spec_replicas(&new)), (5, 3));
    h.sim_rs(|rs| {
        if name(rs) == name(&new) {
            0
        } else {
            spec_replicas(rs)
        }
    });
    h.run().await;
    h.events();

    // 12 replicas allow 15 pods: 7 more, shared 5:3 by the sizes the ReplicaSets had for 8.
    h.update(|d| d.spec.replicas = Some(12)).await;
    h.run().await;
    let (old, new) = (h.rs(1), h.rs(2));
    assert_eq!((spec_replicas(&old), spec_replicas(&new)), (9, 6));
    for rs in [&old, &new] {
        assert_eq!(annotation(rs, DESIRED_REPLICAS_ANNOTATION), Some("12"));
        assert_eq!(annotation(rs, MAX_REPLICAS_ANNOTATION), Some("15"));
    }
    assert_eq!(
        h.events(),
        [
            format!(
                "Normal ScalingReplicaSet Scaled up replica set {} from 5 to 9",
                name(&old)
            ),
            format!(
                "Normal ScalingReplicaSet Scaled up replica set {} from 3 to 6",
                name(&new)
            ),
        ]
    );

    // Scaling down shares the cut the same way, older ReplicaSets first on ties.
    h.update(|d| d.spec.replicas = Some(4)).await;
    h.run().await;
    let (old, new) = (spec_replicas(&h.rs(1)), spec_replicas(&h.rs(2)));
    assert_eq!(old + new, 5, "4 replicas + 1 surge");
    assert_eq!((old, new), (3, 2));
}

/// The rollout of /work/shared/examples/kubia-deployment-v3-with-readinesscheck.yaml when the
/// new pods never become ready: 3 replicas, minReadySeconds 10, maxSurge 1, maxUnavailable 0.
#[tokio::test]
async fn a_stuck_rollout_keeps_the_old_pods_and_exceeds_its_progress_deadline() {
    let h = Harness::new();
    let mut d = deployment(3, "kubia:v2");
    d.spec.min_ready_seconds = Some(10);
    let rolling = d
        .spec
        .strategy
        .as_mut()
        .and_then(|s| s.rolling_update.as_mut())
        .expect("rollingUpdate");
    rolling.max_surge = Some(IntOrString::Int(1));
    rolling.max_unavailable = Some(IntOrString::Int(0));
    h.create(d).await;
    h.settle().await;

    h.set_image("kubia:v3").await;
    h.run().await;
    let new = name(&h.rs(2));
    assert_eq!(h.rs(2).spec.min_ready_seconds, Some(10));
    let never_ready = |rs: &ReplicaSet| {
        if name(rs) == new {
            0
        } else {
            spec_replicas(rs)
        }
    };
    h.sim_rs(never_ready);
    h.run().await;
    assert_eq!((spec_replicas(&h.rs(1)), spec_replicas(&h.rs(2))), (3, 1));
    assert_eq!(reason_of(&h.condition(PROGRESSING)), "ReplicaSetUpdated");

    let reconciler = DeploymentReconciler::new(&h.ctx);
    let key = ObjectKey::new("default", "web");
    h.writes();
    assert_eq!(
        reconciler.reconcile(&key).await,
        Ok(Action::RequeueAfter(Duration::from_secs(601)))
    );
    h.advance(300);
    assert_eq!(
        reconciler.reconcile(&key).await,
        Ok(Action::RequeueAfter(Duration::from_secs(301)))
    );
    assert_eq!(
        h.writes(),
        Vec::<String>::new(),
        "no progress, nothing to write"
    );
    h.events();

    h.advance(301);
    assert_eq!(reconciler.reconcile(&key).await, Ok(Action::Done));
    let progressing = h.condition(PROGRESSING);
    assert_eq!(
        (
            progressing.status.as_deref(),
            reason_of(&progressing),
            progressing.message.as_deref()
        ),
        (
            Some("False"),
            "ProgressDeadlineExceeded",
            Some(format!("ReplicaSet {new:?} has timed out progressing.").as_str())
        )
    );
    assert_eq!(
        h.events(),
        [format!(
            "Warning ProgressDeadlineExceeded ReplicaSet {new:?} has timed out progressing."
        )]
    );
    assert_eq!(
        reason_of(&h.condition("Available")),
        "MinimumReplicasAvailable"
    );

    // The rollout stays where it is: the old pods are kept, nothing more is written.
    h.writes();
    h.advance(3600);
    h.controller.queue.add(key.clone());
    h.run().await;
    assert_eq!((spec_replicas(&h.rs(1)), spec_replicas(&h.rs(2))), (3, 1));
    assert_eq!(h.writes(), Vec::<String>::new());
    assert_eq!(h.events(), Vec::<String>::new());
}
