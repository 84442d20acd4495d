//! Following nodes and pods: the example lands on `disk=ssd` nodes only and follows
//! relabelling, joins and departures; taints; duplicates; failed pods with back-off; adoption
//! and release; DaemonSets the controller leaves alone.

use std::time::Duration;

use super::*;

fn creates(writes: &[String]) -> usize {
    writes
        .iter()
        .filter(|w| w.starts_with("create Pod"))
        .count()
}

fn deletes(writes: &[String]) -> Vec<String> {
    writes
        .iter()
        .filter_map(|w| w.strip_prefix("delete Pod default/"))
        .map(str::to_string)
        .collect()
}

fn ssd(name: &str) -> Node {
    node(name, &[("disk", "ssd")], vec![])
}

#[tokio::test]
async fn the_example_lands_only_on_nodes_labelled_disk_ssd() {
    let f = fixture();
    f.nodes(vec![
        ssd("n1"),
        node("n2", &[("disk", "hdd")], vec![]),
        ssd("n3"),
        node("n4", &[], vec![]),
    ]);
    f.daemon_set(example());
    let writes = f.settle().await;
    assert_eq!(creates(&writes), 2, "{writes:?}");
    assert_eq!(
        writes.last().map(String::as_str),
        Some("update-status DaemonSet default/ssd-monitor")
    );
    let placement = f.placement();
    assert_eq!(placement.keys().collect::<Vec<_>>(), ["n1", "n3"]);
    let hash = template_hash(&f.ds());
    for n in ["n1", "n3"] {
        let pods = f.pods_on(n);
        assert_eq!(pods.len(), 1, "one pod on {n}");
        let spec = pods[0].spec.as_ref().unwrap();
        assert_eq!(spec.node_name, None);
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .unwrap();
        let field = &required.node_selector_terms[0]
            .match_fields
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (
                field.key.as_str(),
                field.operator.as_str(),
                field.values.clone()
            ),
            (NODE_NAME_FIELD, "In", Some(vec![n.to_string()]))
        );
        assert_eq!(
            pods[0].metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL],
            hash
        );
        let keys: Vec<&str> = spec
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.as_deref())
            .collect();
        assert!(keys.contains(&"node.kubernetes.io/not-ready"), "{keys:?}");
        assert!(
            keys.contains(&"node.kubernetes.io/unschedulable"),
            "{keys:?}"
        );
    }
    let events = f.take_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e.starts_with("Normal SuccessfulCreate Created pod: ssd-monitor-")));
    let st = f.status();
    assert_eq!(
        (
            st.desired_number_scheduled,
            st.current_number_scheduled,
            st.number_ready,
            st.updated_number_scheduled,
            st.number_available,
            st.number_unavailable,
            st.number_misscheduled,
            st.observed_generation
        ),
        (2, 2, 0, Some(2), Some(0), Some(2), 0, Some(1))
    );
    assert!(
        f.run().await.is_empty(),
        "a second reconcile writes nothing"
    );

    f.run_pods();
    assert_eq!(
        f.settle().await,
        ["update-status DaemonSet default/ssd-monitor"]
    );
    let st = f.status();
    assert_eq!(
        (st.number_ready, st.number_available, st.number_unavailable),
        (2, Some(2), Some(0))
    );
    assert!(
        f.run().await.is_empty(),
        "a second reconcile writes nothing"
    );
}

#[tokio::test]
async fn relabelled_and_new_nodes_gain_or_lose_their_daemon_pod() {
    let f = fixture();
    f.nodes(vec![ssd("n1"), node("n2", &[("disk", "hdd")], vec![])]);
    f.daemon_set(example());
    f.settle().await;
    f.run_pods();
    f.settle().await;
    let on_n1 = f.pods_on("n1")[0].metadata.name.clone().unwrap();

    f.relabel("n2", &[("disk", "ssd")]);
    let writes = f.settle().await;
    assert_eq!(
        (creates(&writes), deletes(&writes).len()),
        (1, 0),
        "{writes:?}"
    );
    assert_eq!(f.pods_on("n2").len(), 1);

    f.relabel("n1", &[("disk", "hdd")]);
    let writes = f.settle().await;
    assert_eq!(deletes(&writes), std::slice::from_ref(&on_n1));
    assert_eq!(creates(&writes), 0);
    assert!(f.pods_on("n1").is_empty());

    f.nodes(vec![ssd("n3")]);
    let writes = f.settle().await;
    assert_eq!(creates(&writes), 1, "{writes:?}");
    assert_eq!(f.placement().keys().collect::<Vec<_>>(), ["n2", "n3"]);
    assert!(f
        .take_events()
        .contains(&format!("Normal SuccessfulDelete Deleted pod: {on_n1}")));
    assert_eq!(f.status().desired_number_scheduled, 2);

    // A change that cannot move daemon pods (node status) wakes nobody.
    let mut n3 = f.node("n3");
    n3.status = Some(Default::default());
    n3.metadata.resource_version = Some("2".into());
    f.informers.get::<Node>().upsert(n3);
    assert!(f.controller.queue.is_empty());
}

#[tokio::test]
async fn taints_keep_daemon_pods_away_unless_tolerated() {
    let f = fixture();
    f.nodes(vec![
        node(
            "a",
            &[("disk", "ssd")],
            vec![taint("dedicated", "infra", "NoSchedule")],
        ),
        node(
            "b",
            &[("disk", "ssd")],
            vec![taint("dedicated", "infra", "NoExecute")],
        ),
        node(
            "c",
            &[("disk", "ssd")],
            vec![
                taint("node.kubernetes.io/not-ready", "", "NoExecute"),
                taint("node.kubernetes.io/unschedulable", "", "NoSchedule"),
            ],
        ),
        ssd("d"),
    ]);
    f.daemon_set(example());
    f.settle().await;
    assert_eq!(f.placement().keys().collect::<Vec<_>>(), ["c", "d"]);
    f.run_pods();
    f.settle().await;

    // A NoSchedule taint keeps new pods away but lets the running one stay (misscheduled).
    let mut d = f.node("d");
    d.spec.as_mut().unwrap().taints = Some(vec![taint("dedicated", "infra", "NoSchedule")]);
    f.informers.get::<Node>().upsert(d.clone());
    let writes = f.settle().await;
    assert_eq!(writes, ["update-status DaemonSet default/ssd-monitor"]);
    let st = f.status();
    assert_eq!(
        (st.desired_number_scheduled, st.number_misscheduled),
        (1, 1)
    );
    // A NoExecute taint evicts it.
    d.spec.as_mut().unwrap().taints = Some(vec![taint("dedicated", "infra", "NoExecute")]);
    f.informers.get::<Node>().upsert(d);
    let writes = f.settle().await;
    assert_eq!(deletes(&writes).len(), 1, "{writes:?}");
    assert!(f.pods_on("d").is_empty());

    // Tolerating the taint brings pods to a, b and d.
    f.edit(|ds| {
        ds.spec.template.spec.as_mut().unwrap().tolerations =
            Some(vec![toleration("dedicated", "Exists", "", "")]);
    });
    let writes = f.settle().await;
    assert_eq!(creates(&writes), 3, "{writes:?}");
    for n in ["a", "b", "c", "d"] {
        assert_eq!(f.pods_on(n).len(), 1, "one pod on {n}");
    }
}

#[tokio::test]
async fn duplicate_pods_are_trimmed_to_the_oldest_bound_one() {
    let f = fixture();
    f.nodes(vec![ssd("n1"), ssd("n2")]);
    let ds = example();
    for p in [
        daemon_pod(&ds, "n1-old", "n1", true, -100),
        daemon_pod(&ds, "n1-young", "n1", true, -10),
        daemon_pod(&ds, "n2-unbound", "n2", false, -100),
        daemon_pod(&ds, "n2-bound", "n2", true, -10),
    ] {
        f.informers.get::<Pod>().upsert(p);
    }
    f.daemon_set(ds);
    let mut writes = deletes(&f.settle().await);
    writes.sort();
    assert_eq!(writes, ["n1-young", "n2-unbound"]);
    assert_eq!(f.pods_on("n1")[0].metadata.name.as_deref(), Some("n1-old"));
    assert_eq!(
        f.pods_on("n2")[0].metadata.name.as_deref(),
        Some("n2-bound")
    );
    assert!(f.run().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn failed_pods_are_replaced_with_back_off() {
    let f = fixture();
    f.nodes(vec![ssd("n1")]);
    f.daemon_set(example());
    f.settle().await;
    f.run_pods();
    f.settle().await;
    let fail = |f: &Fixture| {
        let mut p = f.pods_on("n1").remove(0);
        p.status.get_or_insert_with(Default::default).phase = Some("Failed".into());
        p.metadata.resource_version = Some("99".into());
        let name = p.metadata.name.clone().unwrap();
        f.informers.get::<Pod>().upsert(p);
        name
    };

    let first = fail(&f);
    let writes = f.settle().await;
    assert_eq!(deletes(&writes), std::slice::from_ref(&first));
    assert_eq!(creates(&writes), 1);
    let events = f.take_events();
    assert!(
        events.contains(&format!(
            "Warning FailedDaemonPod Found failed daemon pod default/{first} on node n1, will \
             try to kill it"
        )),
        "{events:?}"
    );

    // Failing again at once: held back for the back-off's second, then replaced.
    let second = fail(&f);
    let writes = f.settle().await;
    assert!(deletes(&writes).is_empty(), "{writes:?}");
    assert!(f.controller.queue.is_empty());
    f.advance(1);
    tokio::time::advance(Duration::from_millis(1001)).await;
    tokio::task::yield_now().await;
    assert!(
        !f.controller.queue.is_empty(),
        "requeued after the back-off"
    );
    let writes = f.settle().await;
    assert_eq!(deletes(&writes), [second]);
    assert_eq!(creates(&writes), 1);
}

#[tokio::test]
async fn unbound_pods_of_deleted_nodes_go_while_bound_ones_are_left_to_the_pod_gc() {
    let f = fixture();
    f.nodes(vec![ssd("n1"), ssd("n2")]);
    f.daemon_set(example());
    f.settle().await;
    let mut bound = f.pods_on("n1").remove(0);
    bound.spec.as_mut().unwrap().node_name = Some("n1".into());
    f.informers.get::<Pod>().upsert(bound.clone());
    let unbound = f.pods_on("n2").remove(0);
    f.settle().await;

    let nodes = f.informers.get::<Node>();
    nodes.remove(&ObjectKey::new("", "n1"));
    nodes.remove(&ObjectKey::new("", "n2"));
    let writes = f.settle().await;
    assert_eq!(deletes(&writes), [unbound.metadata.name.unwrap()]);
    assert_eq!(f.pods_on("n1").len(), 1);
    let st = f.status();
    assert_eq!(
        (st.desired_number_scheduled, st.current_number_scheduled),
        (0, 0)
    );
}

#[tokio::test]
async fn matching_orphans_are_adopted_and_pods_that_stopped_matching_released() {
    let f = fixture();
    f.nodes(vec![ssd("n1"), ssd("n2")]);
    let ds = example();
    let mut orphan = daemon_pod(&ds, "orphan", "n1", true, -50);
    orphan.metadata.owner_references = None;
    let mut stray = daemon_pod(&ds, "stray", "n2", true, -50);
    stray.metadata.labels = Some(labels(&[("app", "debugging")]));
    f.informers.get::<Pod>().upsert(orphan);
    f.informers.get::<Pod>().upsert(stray);
    f.daemon_set(ds);
    let writes = f.settle().await;
    assert!(
        writes.contains(&"patch Pod default/orphan".to_string()),
        "{writes:?}"
    );
    assert!(
        writes.contains(&"patch Pod default/stray".to_string()),
        "{writes:?}"
    );
    assert_eq!(creates(&writes), 1, "only n2 needs a new pod: {writes:?}");
    let owner = util::controller_of(&f.pod("orphan")).map(|r| r.uid.clone());
    assert_eq!(owner.as_deref(), Some("uid-ssd-monitor"));
    assert_eq!(f.pod("stray").metadata.owner_references, None);
    assert_eq!(f.pods_on("n2").len(), 2, "the released pod and the new one");
    assert!(f.run().await.is_empty());
}

#[tokio::test]
async fn daemon_sets_selecting_everything_or_being_deleted_are_left_alone() {
    let f = fixture();
    f.nodes(vec![ssd("n1")]);
    let mut everything = example();
    everything.spec.selector = Default::default();
    f.daemon_set(everything);
    assert!(f.settle().await.is_empty());
    assert_eq!(
        f.take_events(),
        [
            "Warning SelectingAll This daemon set is selecting all pods. A non-empty selector is \
          required."
        ]
    );

    let mut deleting = example();
    deleting.metadata.deletion_timestamp = Some(at(0));
    deleting.metadata.resource_version = Some("7".into());
    f.daemon_set(deleting);
    assert!(f.settle().await.is_empty());
}
