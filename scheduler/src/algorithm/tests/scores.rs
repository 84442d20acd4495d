//! Each score on its own: the value per node (which fixes the ordering) and the 0..=100 bounds.

use k8s_openapi::api::core::v1::{Node, Pod};

use super::super::filters::PodQuery;
use super::super::scores::{
    balanced_allocation, inter_pod_affinity, least_allocated, node_affinity, owner_spread,
    taint_toleration, MAX_NODE_SCORE,
};
use super::{node, node_term, pod, snapshot, term, Snapshot, HOSTNAME, ZONE};

type ScoreFn = fn(&PodQuery<'_>, &Snapshot, &[usize]) -> Vec<i64>;

struct Case {
    name: &'static str,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    pod: Pod,
    /// The expected score of each node, in node name order.
    want: Vec<i64>,
}

fn run(score: ScoreFn, cases: Vec<Case>) {
    for case in cases {
        let snapshot = snapshot(case.nodes, case.pods);
        let query = PodQuery::new(&case.pod, &snapshot);
        let all: Vec<usize> = (0..snapshot.num_nodes()).collect();
        let got = score(&query, &snapshot, &all);
        assert_eq!(got, case.want, "{}", case.name);
        assert!(
            got.iter().all(|s| (0..=MAX_NODE_SCORE).contains(s)),
            "{}: {got:?} out of 0..=100",
            case.name
        );
    }
}

fn three_nodes() -> Vec<Node> {
    vec![node("n1").build(), node("n2").build(), node("n3").build()]
}

#[test]
fn least_allocated_prefers_free_nodes() {
    let loaded = || {
        vec![
            pod("half").on("n2").requests("2", "4Gi").build(),
            pod("over").on("n3").requests("5", "8Gi").build(),
        ]
    };
    run(
        least_allocated,
        vec![
            Case {
                name: "requests counted, over-committed node scores 0",
                nodes: three_nodes(),
                pods: loaded(),
                pod: pod("p").requests("1", "2Gi").build(),
                want: vec![75, 25, 0],
            },
            Case {
                name: "a pod without requests counts as 100m and 200Mi",
                nodes: three_nodes(),
                pods: vec![],
                pod: pod("p").build(),
                want: vec![97, 97, 97],
            },
            Case {
                name: "cpu and memory weigh the same",
                nodes: vec![node("n1").build(), node("n2").build()],
                pods: vec![
                    pod("cpu").on("n1").requests("3", "0").build(),
                    pod("mem").on("n2").requests("0", "6Gi").build(),
                ],
                pod: pod("p").requests("1", "2Gi").build(),
                // Explicit zero requests stay zero: n1 cpu 0 and memory (8-2)/8 → 75,
                // n2 cpu (4-1)/4 → 75 and memory 0.
                want: vec![37, 37],
            },
        ],
    );
}

#[test]
fn balanced_allocation_prefers_even_use() {
    run(
        balanced_allocation,
        vec![
            Case {
                name: "even cpu and memory use scores 100",
                nodes: vec![node("n1").build(), node("n2").build(), node("n3").build()],
                pods: vec![
                    pod("even").on("n2").requests("1", "3Gi").build(),
                    pod("cpu-heavy").on("n3").requests("3", "0").build(),
                ],
                pod: pod("p").requests("1", "1Gi").build(),
                // n1: 1/4 vs 1/8 → 1 - 0.0625; n2: 2/4 vs 4/8; n3: 4/4 vs 1/8 → 1 - 0.4375.
                want: vec![93, 100, 56],
            },
            Case {
                name: "a pod requesting nothing is not scored",
                nodes: three_nodes(),
                pods: vec![pod("cpu-heavy").on("n3").requests("3", "0").build()],
                pod: pod("p").build(),
                want: vec![0, 0, 0],
            },
        ],
    );
}

#[test]
fn node_affinity_sums_preferred_weights() {
    let nodes = || {
        vec![
            node("n1").zone("a").label("disk", "ssd").build(),
            node("n2").zone("a").build(),
            node("n3").label("disk", "ssd").build(),
            node("n4").build(),
        ]
    };
    run(
        node_affinity,
        vec![
            Case {
                name: "weights add up and are normalised to the best node",
                nodes: nodes(),
                pods: vec![],
                pod: pod("p")
                    .preferred_node_affinity(5, node_term(ZONE, "In", &["a"]))
                    .preferred_node_affinity(1, node_term("disk", "In", &["ssd"]))
                    .build(),
                want: vec![100, 83, 16, 0],
            },
            Case {
                name: "no preferences",
                nodes: nodes(),
                pods: vec![],
                pod: pod("p").build(),
                want: vec![0, 0, 0, 0],
            },
        ],
    );
}

#[test]
fn taint_toleration_avoids_prefer_no_schedule() {
    let nodes = || {
        vec![
            node("n1").taint("hard", "x", "NoSchedule").build(),
            node("n2").taint("soft", "x", "PreferNoSchedule").build(),
            node("n3")
                .taint("soft", "x", "PreferNoSchedule")
                .taint("softer", "", "PreferNoSchedule")
                .build(),
        ]
    };
    run(
        taint_toleration,
        vec![
            Case {
                name: "fewer untolerated PreferNoSchedule taints score higher",
                nodes: nodes(),
                pods: vec![],
                pod: pod("p").build(),
                want: vec![100, 50, 0],
            },
            Case {
                name: "tolerated taints do not count",
                nodes: nodes(),
                pods: vec![],
                pod: pod("p")
                    .toleration("soft", "Exists", "", "PreferNoSchedule")
                    .build(),
                want: vec![100, 100, 0],
            },
            Case {
                name: "no such taints anywhere",
                nodes: three_nodes(),
                pods: vec![],
                pod: pod("p").build(),
                want: vec![100, 100, 100],
            },
        ],
    );
}

#[test]
fn inter_pod_affinity_weighs_preferences() {
    let nodes = || {
        vec![
            node("n1").zone("a").build(),
            node("n2").zone("a").build(),
            node("n3").zone("b").build(),
        ]
    };
    run(
        inter_pod_affinity,
        vec![
            Case {
                name: "preferred affinity credits the matching pod's zone",
                nodes: nodes(),
                pods: vec![pod("db").label("app", "db").on("n1").build()],
                pod: pod("p")
                    .preferred_pod_affinity(10, term("app", "db", ZONE))
                    .build(),
                want: vec![100, 100, 0],
            },
            Case {
                name: "preferred anti-affinity subtracts",
                nodes: nodes(),
                pods: vec![
                    pod("db").label("app", "db").on("n1").build(),
                    pod("web").label("app", "web").on("n2").build(),
                ],
                pod: pod("p")
                    .preferred_pod_affinity(10, term("app", "db", ZONE))
                    .preferred_pod_anti_affinity(5, term("app", "web", HOSTNAME))
                    .build(),
                // raw: n1 10, n2 10 - 5, n3 0.
                want: vec![100, 50, 0],
            },
            Case {
                name: "placed pods' terms that select the incoming pod count too",
                nodes: nodes(),
                pods: vec![
                    pod("fan")
                        .on("n3")
                        .preferred_pod_affinity(20, term("app", "p", HOSTNAME))
                        .build(),
                    pod("hard")
                        .on("n2")
                        .pod_affinity(term("app", "p", HOSTNAME))
                        .build(),
                    pod("shy")
                        .on("n1")
                        .preferred_pod_anti_affinity(4, term("app", "p", ZONE))
                        .build(),
                ],
                pod: pod("p").label("app", "p").build(),
                // raw: n1 -4, n2 -4 + 1, n3 20; min-max normalised.
                want: vec![0, 4, 100],
            },
            Case {
                name: "no terms anywhere",
                nodes: nodes(),
                pods: vec![pod("db").label("app", "db").on("n1").build()],
                pod: pod("p").build(),
                want: vec![0, 0, 0],
            },
        ],
    );
}

#[test]
fn owner_spread_prefers_nodes_and_zones_with_fewer_siblings() {
    let siblings = || {
        vec![
            pod("r1").owner("rs").on("n1").build(),
            pod("r2").owner("rs").on("n1").build(),
            pod("r3").owner("rs").on("n2").build(),
            pod("other").owner("other-rs").on("n3").build(),
        ]
    };
    run(
        owner_spread,
        vec![
            Case {
                name: "without zones",
                nodes: three_nodes(),
                pods: siblings(),
                pod: pod("p").owner("rs").build(),
                want: vec![0, 50, 100],
            },
            Case {
                name: "with zones, the zone weighs 2/3",
                nodes: vec![
                    node("n1").zone("a").build(),
                    node("n2").zone("a").build(),
                    node("n3").zone("b").build(),
                ],
                pods: siblings(),
                pod: pod("p").owner("rs").build(),
                want: vec![0, 16, 100],
            },
            Case {
                name: "a pod without a controller owner is indifferent",
                nodes: three_nodes(),
                pods: siblings(),
                pod: pod("p").build(),
                want: vec![100, 100, 100],
            },
        ],
    );
}
