//! Template updates and status: RollingUpdate within maxUnavailable (counts and percentages,
//! unavailable old pods first, minReadySeconds), with maxSurge, and OnDelete; the status
//! counts of a mixed set of pods.

use std::time::Duration;

use super::*;

fn pod_writes(writes: &[String]) -> Vec<&str> {
    writes
        .iter()
        .filter(|w| w.contains(" Pod "))
        .map(|w| w.split(' ').next().unwrap())
        .collect()
}

/// Nodes n1..=n`count` labelled disk=ssd, running the example's pods, Ready.
async fn running(f: &Fixture, count: usize, ds: DaemonSet) {
    f.nodes(
        (1..=count)
            .map(|i| node(&format!("n{i}"), &[("disk", "ssd")], vec![]))
            .collect(),
    );
    f.daemon_set(ds);
    f.settle().await;
    f.run_pods();
    f.settle().await;
}

/// Nodes whose pod runs the current template.
fn updated_nodes(f: &Fixture) -> Vec<String> {
    let hash = template_hash(&f.ds());
    let mut out: Vec<String> = f
        .informers
        .get::<Pod>()
        .list()
        .iter()
        .filter(|p| plan::is_updated(p, &hash))
        .map(|p| target_node_name(p).unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_rolling_update_replaces_one_pod_at_a_time_by_default() {
    let f = fixture();
    running(&f, 3, example()).await;
    let old_hash = template_hash(&f.ds());
    f.edit(|ds| new_image(ds, "ssd-monitor:v2"));
    assert_ne!(template_hash(&f.ds()), old_hash);

    for step in 1..=3 {
        let writes = f.settle().await;
        assert_eq!(
            pod_writes(&writes),
            ["delete", "create"],
            "step {step}: {writes:?}"
        );
        assert_eq!(updated_nodes(&f).len(), step);
        assert_eq!(f.status().updated_number_scheduled, Some(step as i32));
        assert_eq!(f.status().observed_generation, Some(2));
        assert!(
            pod_writes(&f.run().await).is_empty(),
            "step {step}: the next waits for the new pod"
        );
        f.run_pods();
    }
    assert!(pod_writes(&f.settle().await).is_empty());
    assert_eq!(updated_nodes(&f), ["n1", "n2", "n3"]);
    let st = f.status();
    assert_eq!(
        (
            st.updated_number_scheduled,
            st.number_available,
            st.number_unavailable
        ),
        (Some(3), Some(3), Some(0))
    );
    assert!(
        f.run().await.is_empty(),
        "a second reconcile writes nothing"
    );
}

#[tokio::test]
async fn max_unavailable_as_a_percentage_rounds_up() {
    let f = fixture();
    let ds = with_strategy(
        example(),
        "RollingUpdate",
        Some(IntOrString::String("50%".into())),
    );
    running(&f, 3, ds).await;
    f.edit(|ds| new_image(ds, "ssd-monitor:v2"));
    let writes = f.settle().await;
    let mut kinds = pod_writes(&writes);
    kinds.sort();
    assert_eq!(
        kinds,
        ["create", "create", "delete", "delete"],
        "{writes:?}"
    );
    assert_eq!(updated_nodes(&f), ["n1", "n2"]);
}

#[tokio::test]
async fn unavailable_old_pods_are_replaced_beyond_the_budget() {
    let f = fixture();
    f.nodes(vec![
        node("n1", &[("disk", "ssd")], vec![]),
        node("n2", &[("disk", "ssd")], vec![]),
        node("n3", &[("disk", "ssd")], vec![]),
    ]);
    f.daemon_set(example());
    f.settle().await;
    // Only n1's pod ever becomes ready.
    let mut p = f.pods_on("n1").remove(0);
    p.spec.as_mut().unwrap().node_name = Some("n1".into());
    f.informers.get::<Pod>().upsert(ready(p, start()));
    f.settle().await;
    f.edit(|ds| new_image(ds, "ssd-monitor:v2"));
    f.settle().await;
    assert_eq!(updated_nodes(&f), ["n2", "n3"]);
}

#[tokio::test]
async fn min_ready_seconds_holds_the_rollout_until_the_new_pod_is_available() {
    let f = fixture();
    let mut ds = example();
    ds.spec.min_ready_seconds = Some(30);
    running(&f, 2, ds).await;
    f.advance(60);
    f.settle().await;
    f.edit(|ds| new_image(ds, "ssd-monitor:v2"));
    f.settle().await;
    f.run_pods();
    f.advance(10);
    assert!(pod_writes(&f.run().await).is_empty());
    let key = ObjectKey::new(NS, "ssd-monitor");
    assert_eq!(
        f.reconciler().reconcile(&key).await.unwrap(),
        Action::RequeueAfter(Duration::from_secs(20))
    );
    f.advance(20);
    assert_eq!(pod_writes(&f.run().await), ["delete", "create"]);
    assert_eq!(updated_nodes(&f), ["n1", "n2"]);
}

#[tokio::test]
async fn max_surge_starts_the_new_pod_before_the_old_one_goes() {
    let f = fixture();
    running(&f, 2, example()).await;
    f.edit(|ds| {
        new_image(ds, "ssd-monitor:v2");
        ds.spec.update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::Int(1)),
            }),
        });
    });
    let writes = f.settle().await;
    assert_eq!(pod_writes(&writes), ["create"], "{writes:?}");
    assert_eq!((f.pods_on("n1").len(), f.pods_on("n2").len()), (2, 1));
    assert!(
        pod_writes(&f.run().await).is_empty(),
        "one surge pod at a time"
    );

    f.run_pods();
    let writes = f.settle().await;
    assert_eq!(pod_writes(&writes), ["delete", "create"], "{writes:?}");
    assert_eq!((f.pods_on("n1").len(), f.pods_on("n2").len()), (1, 2));
    f.run_pods();
    assert_eq!(pod_writes(&f.settle().await), ["delete"]);
    assert_eq!(updated_nodes(&f), ["n1", "n2"]);
    assert_eq!(f.informers.get::<Pod>().len(), 2);
}

#[tokio::test]
async fn on_delete_replaces_only_the_pods_the_user_deleted() {
    let f = fixture();
    running(&f, 2, with_strategy(example(), "OnDelete", None)).await;
    f.edit(|ds| new_image(ds, "ssd-monitor:v2"));
    let writes = f.settle().await;
    assert_eq!(writes, ["update-status DaemonSet default/ssd-monitor"]);
    let st = f.status();
    assert_eq!(
        (st.updated_number_scheduled, st.observed_generation),
        (Some(0), Some(2))
    );

    let victim = f.pods_on("n1").remove(0);
    f.informers.get::<Pod>().remove(&ObjectKey::of(&victim));
    let writes = f.settle().await;
    assert_eq!(pod_writes(&writes), ["create"], "{writes:?}");
    assert_eq!(updated_nodes(&f), ["n1"]);
    assert_eq!(f.status().updated_number_scheduled, Some(1));
}

#[tokio::test]
async fn the_status_counts_desired_current_ready_available_updated_and_misscheduled() {
    let f = fixture();
    let mut ds = with_strategy(example(), "OnDelete", None);
    ds.spec.min_ready_seconds = Some(30);
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| node(&format!("n{i}"), &[("disk", "ssd")], vec![]))
        .collect();
    nodes.push(node(
        "n4",
        &[("disk", "ssd")],
        vec![taint("dedicated", "infra", "NoSchedule")],
    ));
    f.nodes(nodes);
    let available = ready(
        daemon_pod(&ds, "p1", "n1", true, -100),
        start() - jiff::SignedDuration::from_secs(60),
    );
    let mut old_ready = ready(
        daemon_pod(&ds, "p2", "n2", true, -100),
        start() - jiff::SignedDuration::from_secs(10),
    );
    old_ready
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(REVISION_HASH_LABEL.into(), "older".into());
    let starting = daemon_pod(&ds, "p3", "n3", true, -100);
    let misscheduled = ready(daemon_pod(&ds, "p4", "n4", true, -100), start());
    for p in [available, old_ready, starting, misscheduled] {
        f.informers.get::<Pod>().upsert(p);
    }
    f.daemon_set(ds);
    assert_eq!(
        f.settle().await,
        ["update-status DaemonSet default/ssd-monitor"]
    );
    let st = f.status();
    assert_eq!(
        (
            st.desired_number_scheduled,
            st.current_number_scheduled,
            st.number_misscheduled,
            st.number_ready,
            st.number_available,
            st.updated_number_scheduled,
            st.number_unavailable,
        ),
        (3, 3, 1, 2, Some(1), Some(2), Some(2))
    );
    let key = ObjectKey::new(NS, "ssd-monitor");
    assert_eq!(
        f.reconciler().reconcile(&key).await.unwrap(),
        Action::RequeueAfter(Duration::from_secs(20)),
        "look again when p2 turns available"
    );
    assert!(f.run().await.is_empty());
}
