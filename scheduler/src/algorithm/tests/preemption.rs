//! `preempt()`: which node and which victims, and when preemption must not happen.

use k8s_openapi::api::core::v1::{Node, Pod};

use super::super::{preempt, Preemption};
use super::{node, pod, snapshot, term, HOSTNAME};

fn spec_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A pod of `priority` on `node` using `cpu` of its 4 cpus.
fn running(name: &str, node: &str, cpu: &str, priority: i32) -> Pod {
    pod(name)
        .on(node)
        .requests(cpu, "0")
        .priority(priority)
        .build()
}

fn preemption(node: &str, victims: &[&str]) -> Option<Preemption> {
    Some(Preemption {
        node: node.to_string(),
        victims: victims
            .iter()
            .map(|v| ("default".to_string(), v.to_string()))
            .collect(),
    })
}

fn two_nodes() -> Vec<Node> {
    vec![node("n1").build(), node("n2").build()]
}

#[test]
fn preemption_cases() {
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        pod: Pod,
        want: Option<Preemption>,
    }
    let needs_two_cpus = || pod("p").requests("2", "0").priority(100).build();
    let cases = vec![
        Case {
            name: "the node whose victims have the lowest priority",
            nodes: two_nodes(),
            pods: vec![running("a", "n1", "4", 10), running("b", "n2", "4", 5)],
            pod: needs_two_cpus(),
            want: preemption("n2", &["b"]),
        },
        Case {
            name: "lower-priority pods that can stay are reprieved, most important first",
            nodes: vec![node("n1").build()],
            pods: vec![
                running("p1", "n1", "1", 1),
                running("p2", "n1", "1", 2),
                running("p3", "n1", "1", 3),
                running("p4", "n1", "1", 4),
            ],
            pod: needs_two_cpus(),
            want: preemption("n1", &["p2", "p1"]),
        },
        Case {
            name: "equal highest priority: the smaller sum",
            nodes: two_nodes(),
            pods: vec![
                running("a1", "n1", "2", 7),
                running("a2", "n1", "2", 7),
                running("b1", "n2", "2", 7),
                running("b2", "n2", "2", 3),
            ],
            pod: pod("p").requests("4", "0").priority(100).build(),
            want: preemption("n2", &["b1", "b2"]),
        },
        Case {
            name: "fewer victims beat a smaller sum of negative priorities",
            nodes: two_nodes(),
            pods: vec![
                running("a1", "n1", "2", -5),
                running("a2", "n1", "2", -5),
                running("b1", "n2", "4", -5),
            ],
            pod: pod("p").requests("4", "0").priority(100).build(),
            want: preemption("n2", &["b1"]),
        },
        Case {
            name: "equal victims: the node whose victim started last",
            nodes: two_nodes(),
            pods: vec![
                pod("old").on("n1").requests("4", "0").started(100).build(),
                pod("new").on("n2").requests("4", "0").started(200).build(),
            ],
            pod: needs_two_cpus(),
            want: preemption("n2", &["new"]),
        },
        Case {
            name: "pods of equal priority are never victims",
            nodes: two_nodes(),
            pods: vec![running("a", "n1", "4", 100), running("b", "n2", "4", 100)],
            pod: needs_two_cpus(),
            want: None,
        },
        Case {
            name: "pods of higher priority are never victims",
            nodes: vec![node("n1").build()],
            pods: vec![
                running("low", "n1", "1", 1),
                running("high", "n1", "3", 200),
            ],
            pod: needs_two_cpus(),
            want: None,
        },
        Case {
            name: "preemptionPolicy Never",
            nodes: two_nodes(),
            pods: vec![running("a", "n1", "4", 0), running("b", "n2", "4", 0)],
            pod: pod("p")
                .requests("2", "0")
                .priority(100)
                .never_preempt()
                .build(),
            want: None,
        },
        Case {
            name: "a pod that fits needs no preemption",
            nodes: two_nodes(),
            pods: vec![running("a", "n1", "4", 0)],
            pod: needs_two_cpus(),
            want: None,
        },
        Case {
            name: "nodes rejected for their own sake are not candidates",
            nodes: vec![
                node("n1").taint("dedicated", "gpu", "NoSchedule").build(),
                node("n2").build(),
            ],
            pods: vec![running("a", "n1", "4", 0), running("b", "n2", "4", 500)],
            pod: needs_two_cpus(),
            want: None,
        },
        Case {
            name: "evicting makes room for anti-affinity",
            nodes: vec![node("n1").build()],
            pods: vec![
                pod("web").label("app", "web").on("n1").priority(1).build(),
                pod("other").on("n1").priority(1).build(),
            ],
            pod: pod("p")
                .priority(100)
                .pod_anti_affinity(term("app", "web", HOSTNAME))
                .build(),
            want: preemption("n1", &["web"]),
        },
        Case {
            name: "evicting frees host ports",
            nodes: vec![node("n1").build()],
            pods: vec![pod("old")
                .on("n1")
                .host_port(80, "", "")
                .priority(1)
                .build()],
            pod: pod("p").host_port(80, "", "").priority(100).build(),
            want: preemption("n1", &["old"]),
        },
        Case {
            name: "a missing claim makes preemption pointless",
            nodes: vec![node("n1").build()],
            pods: vec![running("a", "n1", "4", 0)],
            pod: pod("p")
                .requests("2", "0")
                .priority(100)
                .claim("data")
                .build(),
            want: None,
        },
    ];
    for case in cases {
        let snapshot = snapshot(case.nodes, case.pods);
        assert_eq!(
            preempt(&case.pod, &snapshot, spec_priority),
            case.want,
            "{}",
            case.name
        );
    }
}

#[test]
fn priority_of_decides_priorities() {
    let snapshot = snapshot(
        vec![node("n1").build()],
        vec![pod("victim")
            .label("class", "batch")
            .on("n1")
            .requests("4", "0")
            .build()],
    );
    let incoming = pod("p")
        .label("class", "critical")
        .requests("1", "0")
        .build();
    let by_class = |p: &Pod| match super::super::pod_info::labels_of(p)
        .get("class")
        .map(String::as_str)
    {
        Some("critical") => 1000,
        _ => 0,
    };
    assert_eq!(
        preempt(&incoming, &snapshot, by_class),
        preemption("n1", &["victim"])
    );
    assert_eq!(preempt(&incoming, &snapshot, spec_priority), None);
}
