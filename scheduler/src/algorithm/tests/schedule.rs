//! `schedule()` end to end: FitError messages, spreading of replicas added one after another,
//! random tie-breaks among equals, required anti-affinity, and the snapshot's bookkeeping.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::super::{schedule, FitError, ScheduleResult};
use super::{node, node_term, pod, rng, snapshot, term, Snapshot, HOSTNAME};

fn fit_error(pod: &Pod, snapshot: &Snapshot) -> FitError {
    schedule(pod, snapshot, &mut rng(0)).expect_err("the pod should not fit")
}

/// Schedules `pod` and adds it to the snapshot on the chosen node, as the scheduler's loop does.
fn schedule_and_assume(pod: Pod, snapshot: &mut Snapshot, seed: u64) -> ScheduleResult {
    let result = schedule(&pod, snapshot, &mut rng(seed)).expect("the pod should fit");
    let mut assumed = pod;
    assumed.spec.as_mut().unwrap().node_name = Some(result.node.clone());
    assert!(snapshot.add_pod(&assumed));
    result
}

#[test]
fn fit_error_messages() {
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        pod: Pod,
        message: &'static str,
        preemption_might_help: bool,
    }
    let cases = vec![
        Case {
            name: "mixed reasons",
            nodes: vec![
                node("n1").build(),
                node("n2").label("tier", "x").cpu("1").build(),
                node("n3").label("tier", "x").cpu("1").build(),
            ],
            pods: vec![],
            pod: pod("p")
                .node_selector("tier", "x")
                .requests("2", "1Gi")
                .build(),
            message:
                "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
                      2 Insufficient cpu.",
            preemption_might_help: true,
        },
        Case {
            name: "taints and a cordon",
            nodes: vec![
                node("n1").taint("dedicated", "gpu", "NoSchedule").build(),
                node("n2").unschedulable().build(),
                node("n3").taint("dedicated", "gpu", "NoSchedule").build(),
            ],
            pods: vec![],
            pod: pod("p").build(),
            message: "0/3 nodes are available: 1 node(s) were unschedulable, \
                      2 node(s) had untolerated taint {dedicated: gpu}.",
            preemption_might_help: false,
        },
        Case {
            name: "anti-affinity",
            nodes: vec![node("n1").build(), node("n2").build()],
            pods: vec![
                pod("w1").label("app", "web").on("n1").build(),
                pod("w2").label("app", "web").on("n2").build(),
            ],
            pod: pod("p")
                .pod_anti_affinity(term("app", "web", HOSTNAME))
                .build(),
            message: "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.",
            preemption_might_help: true,
        },
        Case {
            name: "a node with two reasons counts for both",
            nodes: vec![node("n1").build()],
            pods: vec![],
            pod: pod("p").requests("8", "16Gi").build(),
            message: "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.",
            preemption_might_help: true,
        },
        Case {
            name: "counted reasons sort as strings",
            nodes: (0..12)
                .map(|i| {
                    let builder = node(&format!("n{i:02}")).cpu("1");
                    if i < 2 {
                        builder.ready(Some("False"))
                    } else {
                        builder
                    }
                    .build()
                })
                .collect(),
            pods: vec![],
            pod: pod("p").requests("2", "0").build(),
            message: "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were not ready.",
            preemption_might_help: true,
        },
        Case {
            name: "a missing claim rejects the pod before any node",
            nodes: vec![node("n1").build(), node("n2").build()],
            pods: vec![],
            pod: pod("p").claim("data").build(),
            message: "0/2 nodes are available: persistentvolumeclaim \"data\" not found.",
            preemption_might_help: false,
        },
        Case {
            name: "no nodes",
            nodes: vec![],
            pods: vec![],
            pod: pod("p").build(),
            message: "no nodes available to schedule pods",
            preemption_might_help: false,
        },
    ];
    for case in cases {
        let error = fit_error(&case.pod, &snapshot(case.nodes, case.pods));
        assert_eq!(error.to_string(), case.message, "{}", case.name);
        assert_eq!(
            error.preemption_might_help(),
            case.preemption_might_help,
            "{}: preemption might help",
            case.name
        );
    }
}

#[test]
fn fit_error_lists_each_node_reasons() {
    let snapshot = snapshot(
        vec![
            node("n1").cpu("1").build(),
            node("n2").unschedulable().build(),
        ],
        vec![],
    );
    let error = fit_error(&pod("p").requests("2", "0").build(), &snapshot);
    assert_eq!(error.num_all_nodes(), 2);
    let reasons: Vec<(&str, Vec<&str>)> = error
        .node_reasons()
        .iter()
        .map(|(node, reasons)| (node.as_str(), reasons.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("n1", vec!["Insufficient cpu"]),
            ("n2", vec!["node(s) were unschedulable"]),
        ]
    );
}

#[test]
fn replicas_of_one_owner_spread_over_nodes() {
    for seed in 0..10 {
        let mut snapshot = snapshot(
            vec![node("n1").build(), node("n2").build(), node("n3").build()],
            vec![],
        );
        let chosen: BTreeSet<String> = (0..3)
            .map(|i| {
                let replica = pod(&format!("r{i}"))
                    .owner("rs")
                    .requests("100m", "128Mi")
                    .build();
                schedule_and_assume(replica, &mut snapshot, seed * 7 + i).node
            })
            .collect();
        assert_eq!(
            chosen.len(),
            3,
            "seed {seed}: replicas landed on {chosen:?}"
        );
    }
}

#[test]
fn replicas_of_one_owner_spread_over_zones() {
    for seed in 0..10 {
        let mut snapshot = snapshot(
            vec![
                node("a1").zone("a").build(),
                node("a2").zone("a").build(),
                node("a3").zone("a").build(),
                node("b1").zone("b").build(),
            ],
            vec![],
        );
        let zones: BTreeSet<char> = (0..2)
            .map(|i| {
                let replica = pod(&format!("r{i}"))
                    .owner("rs")
                    .requests("100m", "128Mi")
                    .build();
                let node = schedule_and_assume(replica, &mut snapshot, seed * 3 + i).node;
                node.chars().next().unwrap()
            })
            .collect();
        assert_eq!(zones, BTreeSet::from(['a', 'b']), "seed {seed}");
    }
}

#[test]
fn ties_are_broken_at_random_among_the_best() {
    // n4 is worse (an untolerated PreferNoSchedule taint); n1..n3 are equal.
    let snapshot = snapshot(
        vec![
            node("n1").build(),
            node("n2").build(),
            node("n3").build(),
            node("n4").taint("soft", "", "PreferNoSchedule").build(),
        ],
        vec![],
    );
    let chosen: BTreeSet<String> = (0..32)
        .map(|seed| {
            let result = schedule(&pod("p").build(), &snapshot, &mut rng(seed)).unwrap();
            assert_eq!(result.feasible_nodes, 4);
            result.node
        })
        .collect();
    assert!(
        !chosen.contains("n4"),
        "a worse node was chosen: {chosen:?}"
    );
    assert!(chosen.len() > 1, "seeds always gave {chosen:?}");
    let same_seed: BTreeSet<String> = (0..4)
        .map(|_| {
            schedule(&pod("p").build(), &snapshot, &mut rng(5))
                .unwrap()
                .node
        })
        .collect();
    assert_eq!(same_seed.len(), 1, "one seed must give one answer");
}

#[test]
fn the_best_node_wins_whatever_the_seed() {
    let snapshot = snapshot(
        vec![
            node("n1").build(),
            node("n2").label("disk", "ssd").build(),
            node("n3").build(),
        ],
        vec![],
    );
    let wants_ssd = pod("p")
        .preferred_node_affinity(1, node_term("disk", "In", &["ssd"]))
        .build();
    for seed in 0..8 {
        assert_eq!(
            schedule(&wants_ssd, &snapshot, &mut rng(seed))
                .unwrap()
                .node,
            "n2"
        );
    }
}

#[test]
fn scores_use_kube_scheduler_weights() {
    // n1 matches the preferred node affinity (weight 2) but has an untolerated PreferNoSchedule
    // taint (weight 3): 2 × 100 + 3 × 0 loses to n2's 2 × 0 + 3 × 100.
    let snapshot = snapshot(
        vec![
            node("n1")
                .label("disk", "ssd")
                .taint("soft", "", "PreferNoSchedule")
                .build(),
            node("n2").build(),
        ],
        vec![],
    );
    let wants_ssd = pod("p")
        .preferred_node_affinity(1, node_term("disk", "In", &["ssd"]))
        .build();
    for seed in 0..8 {
        assert_eq!(
            schedule(&wants_ssd, &snapshot, &mut rng(seed))
                .unwrap()
                .node,
            "n2"
        );
    }
}

#[test]
fn required_anti_affinity_allows_one_replica_per_host() {
    let mut snapshot = snapshot(
        vec![node("n1").build(), node("n2").build(), node("n3").build()],
        vec![],
    );
    let replica = |i: usize| {
        pod(&format!("web-{i}"))
            .label("app", "web")
            .owner("rs")
            .pod_anti_affinity(term("app", "web", HOSTNAME))
            .build()
    };
    let hosts: BTreeSet<String> = (0..3)
        .map(|i| schedule_and_assume(replica(i), &mut snapshot, i as u64).node)
        .collect();
    assert_eq!(hosts.len(), 3);
    let error = fit_error(&replica(3), &snapshot);
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
    assert!(error.preemption_might_help());
}

#[test]
fn snapshot_add_and_remove_keep_resources_in_step() {
    let mut snapshot = snapshot(vec![node("n1").cpu("1").build()], vec![]);
    let big = pod("big").requests("1", "0").build();
    let placed = pod("placed").requests("600m", "0").on("n1").build();
    assert!(snapshot.add_pod(&placed));
    assert!(
        snapshot.add_pod(&placed),
        "adding again replaces, it does not double"
    );
    assert_eq!(snapshot.pods_on_node("n1").count(), 1);
    assert_eq!(
        fit_error(&big, &snapshot).to_string(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert!(snapshot.remove_pod("default", "placed"));
    assert!(!snapshot.remove_pod("default", "placed"));
    assert_eq!(schedule(&big, &snapshot, &mut rng(0)).unwrap().node, "n1");

    let finished = pod("done")
        .requests("1", "0")
        .on("n1")
        .phase("Succeeded")
        .build();
    assert!(!snapshot.add_pod(&finished), "finished pods hold nothing");
    assert!(
        !snapshot.add_pod(&pod("lost").on("nowhere").build()),
        "unknown node"
    );
    assert!(!snapshot.add_pod(&pod("pending").build()), "no node name");
    assert_eq!(snapshot.pods_on_node("n1").count(), 0);
}

#[test]
fn a_pod_naming_a_node_goes_there() {
    let snapshot = snapshot(vec![node("n1").build(), node("n2").build()], vec![]);
    let result = schedule(&pod("p").on("n2").build(), &snapshot, &mut rng(0)).unwrap();
    assert_eq!(
        result,
        ScheduleResult {
            node: "n2".to_string(),
            feasible_nodes: 1,
            claims_to_select: Vec::new(),
        }
    );
}

#[test]
fn schedules_over_a_thousand_nodes() {
    let nodes: Vec<Node> = (0..1000)
        .map(|i| {
            node(&format!("node-{i:04}"))
                .zone(&format!("zone-{}", i % 3))
                .build()
        })
        .collect();
    let pods: Vec<Pod> = (0..5000)
        .map(|i| {
            pod(&format!("existing-{i}"))
                .owner(&format!("rs-{}", i % 50))
                .requests("100m", "64Mi")
                .on(&format!("node-{:04}", i % 1000))
                .build()
        })
        .collect();
    let mut snapshot = Snapshot::new(nodes, pods, vec![], vec![]);
    for i in 0..20 {
        let replica = pod(&format!("new-{i}"))
            .owner("rs-new")
            .requests("250m", "256Mi")
            .build();
        let result = schedule_and_assume(replica, &mut snapshot, i);
        assert_eq!(result.feasible_nodes, 1000);
    }
}
