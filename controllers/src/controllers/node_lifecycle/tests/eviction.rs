//! Unit tests of the taint manager: evictions as tolerations run out, force deletions on
//! unreachable nodes.

use super::*;

#[tokio::test]
async fn pods_are_evicted_when_their_tolerations_run_out() {
    let h = silent_node().await;
    h.add_node("n2", "True");
    h.add_pod("no-toleration", "n1", vec![]);
    h.add_pod(
        "tolerates-10s",
        "n1",
        vec![toleration(TAINT_UNREACHABLE, Some(10))],
    );
    h.add_pod(
        "tolerates-forever",
        "n1",
        vec![toleration(TAINT_UNREACHABLE, None)],
    );
    h.add_pod(
        "other-toleration",
        "n1",
        vec![toleration("dedicated", None)],
    );
    h.add_pod("elsewhere", "n2", vec![]);
    h.pass().await;
    // n2 keeps renewing; n1 went silent at 0.
    for s in (10..=40).step_by(10) {
        h.renew("n2", s);
        h.run_to(s).await;
    }
    assert_eq!(taint_keys(&h.node("n1")), [TAINT_UNREACHABLE]);
    h.events();
    h.renew("n2", 45);
    assert_eq!(h.run_to(49).await, none());
    h.renew("n2", 50);
    assert_eq!(
        h.actions_at(50).await,
        [FakeAction::Delete {
            kind: "Pod".into(),
            key: "default/tolerates-10s".into(),
            opts: DeleteOptions {
                precondition_uid: Some("uid-tolerates-10s".into()),
                ..Default::default()
            },
        }]
    );
    assert_eq!(
        h.events(),
        ["Normal TaintManagerEviction Marking for deletion Pod default/tolerates-10s"]
    );
    let mut writes = Vec::new();
    for s in (60..=339).step_by(10) {
        h.renew("n2", s);
        writes.extend(h.run_to(s).await);
    }
    assert_eq!(writes, none(), "the default toleration is 300 s");
    h.renew("n2", 340);
    assert_eq!(
        h.run_to(340).await,
        [
            "delete Pod default/no-toleration",
            "delete Pod default/other-toleration"
        ]
    );
    for s in (350..=1000).step_by(10) {
        h.renew("n2", s);
        writes.extend(h.run_to(s).await);
    }
    assert_eq!(writes, none());
    assert_eq!(h.pod_names(), ["elsewhere", "tolerates-forever"]);
}

#[tokio::test]
async fn untolerated_taints_evict_at_once_and_others_when_tolerated_time_ends() {
    let h = Harness::new();
    h.add_node("n1", "True");
    h.renew("n1", 0);
    let mut node = (*h.node("n1")).clone();
    node.spec.as_mut().unwrap().taints = Some(vec![
        Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(at(-5))),
        },
        Taint {
            key: "maintenance".into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        },
    ]);
    h.informers.get::<Node>().upsert(node);
    h.add_pod("plain", "n1", vec![]);
    h.add_pod("db", "n1", vec![toleration("dedicated", None)]);
    h.add_pod(
        "db-for-a-while",
        "n1",
        vec![toleration("dedicated", Some(20))],
    );
    assert_eq!(h.pass().await, ["delete Pod default/plain"]);
    h.renew("n1", 10);
    assert_eq!(h.run_to(19).await, none());
    assert_eq!(h.run_to(20).await, ["delete Pod default/db-for-a-while"]);
    assert_eq!(h.pod_names(), ["db"]);
    assert_eq!(
        taint_keys(&h.node("n1")),
        ["dedicated", "maintenance"],
        "not ours to remove"
    );
}

#[tokio::test]
async fn a_taint_without_time_added_counts_from_when_it_was_seen() {
    let h = Harness::new();
    h.add_node("n1", "True");
    h.renew("n1", 100);
    h.add_pod("db", "n1", vec![toleration("dedicated", Some(20))]);
    assert_eq!(h.run_to(10).await, none());
    let mut node = (*h.node("n1")).clone();
    node.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: "dedicated".into(),
        value: None,
        effect: NO_EXECUTE.into(),
        time_added: None,
    }]);
    node.metadata.resource_version = Some("2".into());
    h.informers.get::<Node>().upsert(node);
    assert_eq!(h.pass().await, none(), "first seen at 10");
    assert_eq!(h.run_to(29).await, none());
    assert_eq!(h.run_to(30).await, ["delete Pod default/db"]);
}

#[tokio::test]
async fn pods_stuck_terminating_on_an_unreachable_node_are_force_deleted() {
    let h = silent_node().await;
    h.add_pod("stuck", "n1", vec![toleration(TAINT_UNREACHABLE, None)]);
    let mut stuck = (*h.informers.get::<Pod>().get("default", "stuck").unwrap()).clone();
    stuck.metadata.deletion_timestamp = Some(Time(at(70)));
    h.informers.get::<Pod>().upsert(stuck.clone());
    // Already deleted with grace 0 and held by a finalizer: deleting again would not help.
    let mut held = stuck;
    held.metadata.name = Some("held".into());
    held.metadata.uid = Some("uid-held".into());
    held.metadata.deletion_timestamp = Some(Time(at(-10)));
    held.metadata.deletion_grace_period_seconds = Some(0);
    held.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    h.informers.get::<Pod>().upsert(held);
    h.pass().await;
    unreachable_at_40(&h).await;
    assert_eq!(h.run_to(69).await, none());
    assert_eq!(
        h.actions_at(70).await,
        [FakeAction::Delete {
            kind: "Pod".into(),
            key: "default/stuck".into(),
            opts: DeleteOptions {
                grace_period_seconds: Some(0),
                precondition_uid: Some("uid-stuck".into()),
                ..Default::default()
            },
        }]
    );
    assert_eq!(
        h.events(),
        ["Normal NodeNotReady Node n1 status is now: NodeNotReady"]
    );
    assert_eq!(h.run_to(100).await, none());
    assert_eq!(h.pod_names(), ["held"]);
}
