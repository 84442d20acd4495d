//! One table per filter: a pod, a node (with the pods on it) and the expected verdict, with
//! kube-scheduler's exact reason text. Here the filters that look at the node itself;
//! `pods.rs` has those that depend on other pods and on volumes.

mod pods;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use super::{filter, node, node_term, pod, snapshot, ZONE};

struct Case {
    name: &'static str,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    pod: Pod,
    node: &'static str,
    want: Result<(), Vec<&'static str>>,
}

fn case(
    name: &'static str,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    pod: Pod,
    node: &'static str,
) -> Case {
    Case {
        name,
        nodes,
        pods,
        pod,
        node,
        want: Ok(()),
    }
}

impl Case {
    fn fails(mut self, reasons: &[&'static str]) -> Self {
        self.want = Err(reasons.to_vec());
        self
    }
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let snapshot = snapshot(case.nodes, case.pods);
        let got = filter(&case.pod, &snapshot, case.node);
        let want = case
            .want
            .map_err(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, want, "{}", case.name);
    }
}

#[test]
fn node_unschedulable() {
    let reason = "node(s) were unschedulable";
    run(vec![
        case(
            "schedulable node",
            vec![node("n1").build()],
            vec![],
            pod("p").build(),
            "n1",
        ),
        case(
            "cordoned node",
            vec![node("n1").unschedulable().build()],
            vec![],
            pod("p").build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "pod tolerating the unschedulable taint",
            vec![node("n1").unschedulable().build()],
            vec![],
            pod("p")
                .toleration(
                    "node.kubernetes.io/unschedulable",
                    "Exists",
                    "",
                    "NoSchedule",
                )
                .build(),
            "n1",
        ),
        case(
            "toleration for another effect does not help",
            vec![node("n1").unschedulable().build()],
            vec![],
            pod("p")
                .toleration(
                    "node.kubernetes.io/unschedulable",
                    "Exists",
                    "",
                    "NoExecute",
                )
                .build(),
            "n1",
        )
        .fails(&[reason]),
    ]);
}

#[test]
fn node_name() {
    let nodes = || vec![node("n1").build(), node("n2").build()];
    run(vec![
        case("no node name", nodes(), vec![], pod("p").build(), "n2"),
        case(
            "the named node",
            nodes(),
            vec![],
            pod("p").on("n1").build(),
            "n1",
        ),
        case(
            "another node",
            nodes(),
            vec![],
            pod("p").on("n1").build(),
            "n2",
        )
        .fails(&["node(s) didn't match the requested node name"]),
    ]);
}

#[test]
fn node_readiness() {
    let reason = "node(s) were not ready";
    let not_ready = |status| vec![node("n1").ready(status).build()];
    let tolerating = |key| pod("p").toleration(key, "Exists", "", "NoSchedule").build();
    run(vec![
        case(
            "ready",
            not_ready(Some("True")),
            vec![],
            pod("p").build(),
            "n1",
        ),
        case(
            "ready false",
            not_ready(Some("False")),
            vec![],
            pod("p").build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "ready unknown",
            not_ready(Some("Unknown")),
            vec![],
            pod("p").build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "never reported",
            not_ready(None),
            vec![],
            pod("p").build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "tolerates not-ready",
            not_ready(Some("False")),
            vec![],
            tolerating("node.kubernetes.io/not-ready"),
            "n1",
        ),
        case(
            "tolerates unreachable",
            not_ready(Some("Unknown")),
            vec![],
            tolerating("node.kubernetes.io/unreachable"),
            "n1",
        ),
        case(
            "not-ready toleration does not cover unreachable",
            not_ready(Some("Unknown")),
            vec![],
            tolerating("node.kubernetes.io/not-ready"),
            "n1",
        )
        .fails(&[reason]),
        case(
            "the default NoExecute toleration does not cover NoSchedule",
            not_ready(Some("False")),
            vec![],
            pod("p")
                .toleration("node.kubernetes.io/not-ready", "Exists", "", "NoExecute")
                .build(),
            "n1",
        )
        .fails(&[reason]),
    ]);
}

#[test]
fn taint_toleration() {
    let gpu = || vec![node("n1").taint("dedicated", "gpu", "NoSchedule").build()];
    let gpu_reason = "node(s) had untolerated taint {dedicated: gpu}";
    run(vec![
        case("untolerated taint", gpu(), vec![], pod("p").build(), "n1").fails(&[gpu_reason]),
        case(
            "taint without value",
            vec![node("n1").taint("dedicated", "", "NoExecute").build()],
            vec![],
            pod("p").build(),
            "n1",
        )
        .fails(&["node(s) had untolerated taint {dedicated: }"]),
        case(
            "Equal toleration",
            gpu(),
            vec![],
            pod("p")
                .toleration("dedicated", "Equal", "gpu", "NoSchedule")
                .build(),
            "n1",
        ),
        case(
            "operator defaults to Equal",
            gpu(),
            vec![],
            pod("p").toleration("dedicated", "", "gpu", "").build(),
            "n1",
        ),
        case(
            "Equal toleration with another value",
            gpu(),
            vec![],
            pod("p")
                .toleration("dedicated", "Equal", "cpu", "NoSchedule")
                .build(),
            "n1",
        )
        .fails(&[gpu_reason]),
        case(
            "Exists toleration",
            gpu(),
            vec![],
            pod("p")
                .toleration("dedicated", "Exists", "", "NoSchedule")
                .build(),
            "n1",
        ),
        case(
            "empty key with Exists tolerates everything",
            gpu(),
            vec![],
            pod("p").toleration("", "Exists", "", "").build(),
            "n1",
        ),
        case(
            "toleration for another effect",
            gpu(),
            vec![],
            pod("p")
                .toleration("dedicated", "Exists", "", "NoExecute")
                .build(),
            "n1",
        )
        .fails(&[gpu_reason]),
        case(
            "PreferNoSchedule does not filter",
            vec![node("n1")
                .taint("dedicated", "gpu", "PreferNoSchedule")
                .build()],
            vec![],
            pod("p").build(),
            "n1",
        ),
        case(
            "the first untolerated taint is named",
            vec![node("n1")
                .taint("dedicated", "gpu", "NoSchedule")
                .taint("maintenance", "true", "NoExecute")
                .build()],
            vec![],
            pod("p").toleration("dedicated", "Exists", "", "").build(),
            "n1",
        )
        .fails(&["node(s) had untolerated taint {maintenance: true}"]),
    ]);
}

#[test]
fn node_affinity() {
    let reason = "node(s) didn't match Pod's node affinity/selector";
    let ssd = || vec![node("n1").label("disk", "ssd").zone("a").build()];
    let name_term = |operator: &str| NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".to_string(),
            operator: operator.to_string(),
            values: Some(vec!["n1".to_string()]),
        }]),
    };
    run(vec![
        case(
            "nodeSelector matches",
            ssd(),
            vec![],
            pod("p").node_selector("disk", "ssd").build(),
            "n1",
        ),
        case(
            "nodeSelector misses",
            ssd(),
            vec![],
            pod("p").node_selector("disk", "hdd").build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "nodeSelector labels are ANDed",
            ssd(),
            vec![],
            pod("p")
                .node_selector("disk", "ssd")
                .node_selector("gpu", "yes")
                .build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "required affinity In",
            ssd(),
            vec![],
            pod("p")
                .required_node_affinity(vec![node_term(ZONE, "In", &["a", "b"])])
                .build(),
            "n1",
        ),
        case(
            "required affinity NotIn",
            ssd(),
            vec![],
            pod("p")
                .required_node_affinity(vec![node_term(ZONE, "NotIn", &["a"])])
                .build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "terms are ORed",
            ssd(),
            vec![],
            pod("p")
                .required_node_affinity(vec![
                    node_term(ZONE, "In", &["b"]),
                    node_term("disk", "Exists", &[]),
                ])
                .build(),
            "n1",
        ),
        case(
            "selector and affinity must both match",
            ssd(),
            vec![],
            pod("p")
                .node_selector("disk", "ssd")
                .required_node_affinity(vec![node_term(ZONE, "In", &["b"])])
                .build(),
            "n1",
        )
        .fails(&[reason]),
        case(
            "matchFields on the node name",
            ssd(),
            vec![],
            pod("p")
                .required_node_affinity(vec![name_term("In")])
                .build(),
            "n1",
        ),
        case(
            "matchFields excluding the node",
            ssd(),
            vec![],
            pod("p")
                .required_node_affinity(vec![name_term("NotIn")])
                .build(),
            "n1",
        )
        .fails(&[reason]),
    ]);
}
