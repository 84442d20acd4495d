//! Where daemon pods belong: nodeSelector, required node affinity (every operator and
//! `matchFields`), taints against tolerations and the default daemon tolerations; and the shape
//! of the pod stamped out for a node.

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PreferredSchedulingTerm,
};

use super::*;

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn labels_term(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(reqs),
        match_fields: None,
    }
}

fn fields_term(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(reqs),
    }
}

/// The example without its nodeSelector, with these required node affinity terms.
fn with_affinity(terms: Vec<NodeSelectorTerm>) -> DaemonSet {
    let mut ds = example();
    let spec = ds.spec.template.spec.as_mut().unwrap();
    spec.node_selector = None;
    spec.affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms,
            }),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    });
    ds
}

fn with_tolerations(mut ds: DaemonSet, tolerations: Vec<Toleration>) -> DaemonSet {
    ds.spec.template.spec.as_mut().unwrap().tolerations = Some(tolerations);
    ds
}

#[test]
fn nodes_are_chosen_by_selector_affinity_and_taints() {
    let ssd = |taints: Vec<Taint>| node("n1", &[("disk", "ssd")], taints);
    let host_network = {
        let mut ds = example();
        ds.spec.template.spec.as_mut().unwrap().host_network = Some(true);
        ds
    };
    let pinned_name = {
        let mut ds = example();
        ds.spec.template.spec.as_mut().unwrap().node_name = Some("n2".into());
        ds
    };
    let aff = |r: NodeSelectorRequirement| with_affinity(vec![labels_term(vec![r])]);
    let cases: Vec<(&str, DaemonSet, Node, (bool, bool))> = vec![
        ("nodeSelector matches", example(), ssd(vec![]), (true, true)),
        (
            "nodeSelector misses",
            example(),
            node("n1", &[("disk", "hdd")], vec![]),
            (false, false),
        ),
        (
            "unlabelled node",
            example(),
            node("n1", &[], vec![]),
            (false, false),
        ),
        (
            "In",
            aff(req("disk", "In", &["nvme", "ssd"])),
            ssd(vec![]),
            (true, true),
        ),
        (
            "NotIn on an absent label",
            aff(req("gpu", "NotIn", &["a100"])),
            ssd(vec![]),
            (true, true),
        ),
        (
            "NotIn hit",
            aff(req("disk", "NotIn", &["ssd"])),
            ssd(vec![]),
            (false, false),
        ),
        (
            "Exists",
            aff(req("disk", "Exists", &[])),
            ssd(vec![]),
            (true, true),
        ),
        (
            "DoesNotExist",
            aff(req("disk", "DoesNotExist", &[])),
            ssd(vec![]),
            (false, false),
        ),
        (
            "Gt",
            aff(req("cores", "Gt", &["4"])),
            node("n1", &[("cores", "8")], vec![]),
            (true, true),
        ),
        (
            "Lt",
            aff(req("cores", "Lt", &["4"])),
            node("n1", &[("cores", "8")], vec![]),
            (false, false),
        ),
        (
            "Gt on a label that is not a number",
            aff(req("cores", "Gt", &["4"])),
            node("n1", &[("cores", "many")], vec![]),
            (false, false),
        ),
        (
            "Gt with two values is invalid",
            aff(req("cores", "Gt", &["4", "5"])),
            node("n1", &[("cores", "8")], vec![]),
            (false, false),
        ),
        (
            "matchFields name In",
            with_affinity(vec![fields_term(vec![req(NODE_NAME_FIELD, "In", &["n1"])])]),
            ssd(vec![]),
            (true, true),
        ),
        (
            "matchFields name In another node",
            with_affinity(vec![fields_term(vec![req(NODE_NAME_FIELD, "In", &["n2"])])]),
            ssd(vec![]),
            (false, false),
        ),
        (
            "matchFields name NotIn another node",
            with_affinity(vec![fields_term(vec![req(
                NODE_NAME_FIELD,
                "NotIn",
                &["n2"],
            )])]),
            ssd(vec![]),
            (true, true),
        ),
        (
            "matchFields on another field is invalid",
            with_affinity(vec![fields_term(vec![req("metadata.uid", "In", &["n1"])])]),
            ssd(vec![]),
            (false, false),
        ),
        (
            "terms are ORed",
            with_affinity(vec![
                labels_term(vec![req("disk", "In", &["hdd"])]),
                labels_term(vec![req("disk", "In", &["ssd"])]),
            ]),
            ssd(vec![]),
            (true, true),
        ),
        (
            "an empty term matches nothing",
            with_affinity(vec![NodeSelectorTerm::default()]),
            ssd(vec![]),
            (false, false),
        ),
        (
            "template nodeName names another node",
            pinned_name,
            ssd(vec![]),
            (false, false),
        ),
        (
            "untolerated NoSchedule keeps new pods away only",
            example(),
            ssd(vec![taint("dedicated", "infra", "NoSchedule")]),
            (false, true),
        ),
        (
            "untolerated NoExecute evicts",
            example(),
            ssd(vec![taint("dedicated", "infra", "NoExecute")]),
            (false, false),
        ),
        (
            "PreferNoSchedule is no obstacle",
            example(),
            ssd(vec![taint("dedicated", "infra", "PreferNoSchedule")]),
            (true, true),
        ),
        (
            "Equal toleration",
            with_tolerations(
                example(),
                vec![toleration("dedicated", "Equal", "infra", "NoSchedule")],
            ),
            ssd(vec![taint("dedicated", "infra", "NoSchedule")]),
            (true, true),
        ),
        (
            "Equal toleration of another value",
            with_tolerations(
                example(),
                vec![toleration("dedicated", "Equal", "gpu", "NoSchedule")],
            ),
            ssd(vec![taint("dedicated", "infra", "NoSchedule")]),
            (false, true),
        ),
        (
            "Exists with an empty key and effect tolerates everything",
            with_tolerations(example(), vec![toleration("", "Exists", "", "")]),
            ssd(vec![taint("dedicated", "infra", "NoExecute")]),
            (true, true),
        ),
        (
            "default tolerations: not-ready, unreachable, pressure, unschedulable",
            example(),
            ssd(vec![
                taint("node.kubernetes.io/not-ready", "", "NoExecute"),
                taint("node.kubernetes.io/unreachable", "", "NoExecute"),
                taint("node.kubernetes.io/disk-pressure", "", "NoSchedule"),
                taint("node.kubernetes.io/memory-pressure", "", "NoSchedule"),
                taint("node.kubernetes.io/pid-pressure", "", "NoSchedule"),
                taint("node.kubernetes.io/unschedulable", "", "NoSchedule"),
            ]),
            (true, true),
        ),
        (
            "network-unavailable is tolerated by host-network pods only",
            example(),
            ssd(vec![taint(
                "node.kubernetes.io/network-unavailable",
                "",
                "NoSchedule",
            )]),
            (false, true),
        ),
        (
            "network-unavailable with hostNetwork",
            host_network,
            ssd(vec![taint(
                "node.kubernetes.io/network-unavailable",
                "",
                "NoSchedule",
            )]),
            (true, true),
        ),
    ];
    for (name, ds, node, (run, stay)) in cases {
        let p = node_should_run(&ds, &node);
        assert_eq!(
            (p.should_run, p.should_continue_running),
            (run, stay),
            "{name}"
        );
    }
}

#[test]
fn default_tolerations_are_added_once_and_never_expire() {
    let mut spec = k8s_openapi::api::core::v1::PodSpec {
        tolerations: Some(vec![
            Toleration {
                toleration_seconds: Some(300),
                ..toleration("node.kubernetes.io/not-ready", "Exists", "", "NoExecute")
            },
            toleration("dedicated", "Equal", "infra", "NoSchedule"),
        ]),
        ..Default::default()
    };
    add_default_tolerations(&mut spec);
    let once = spec.clone();
    add_default_tolerations(&mut spec);
    assert_eq!(spec, once, "adding the defaults again changes nothing");
    let tolerations = spec.tolerations.unwrap();
    let described: Vec<String> = tolerations
        .iter()
        .map(|t| {
            format!(
                "{} {} {} {:?}",
                t.key.as_deref().unwrap_or_default(),
                t.operator.as_deref().unwrap_or_default(),
                t.effect.as_deref().unwrap_or_default(),
                t.toleration_seconds
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            "node.kubernetes.io/not-ready Exists NoExecute None",
            "dedicated Equal NoSchedule None",
            "node.kubernetes.io/unreachable Exists NoExecute None",
            "node.kubernetes.io/disk-pressure Exists NoSchedule None",
            "node.kubernetes.io/memory-pressure Exists NoSchedule None",
            "node.kubernetes.io/pid-pressure Exists NoSchedule None",
            "node.kubernetes.io/unschedulable Exists NoSchedule None",
        ]
    );
}

#[test]
fn a_daemon_pod_is_pinned_by_match_fields_and_left_for_the_scheduler_to_bind() {
    let mut ds = with_affinity(vec![labels_term(vec![req("disk", "In", &["ssd"])])]);
    let preferred = vec![PreferredSchedulingTerm {
        weight: 10,
        preference: labels_term(vec![req("zone", "In", &["a"])]),
    }];
    ds.spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .affinity
        .as_mut()
        .unwrap()
        .node_affinity
        .as_mut()
        .unwrap()
        .preferred_during_scheduling_ignored_during_execution = Some(preferred.clone());
    ds.metadata.generation = Some(4);
    let pod = pod_for_node(&ds, "n1", "abc123");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name, None, "the scheduler binds daemon pods");
    let na = spec
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap();
    assert_eq!(
        na.required_during_scheduling_ignored_during_execution,
        Some(NodeSelector {
            node_selector_terms: vec![fields_term(vec![req(NODE_NAME_FIELD, "In", &["n1"])])],
        }),
        "the template's required terms are replaced by the node pin"
    );
    assert_eq!(
        na.preferred_during_scheduling_ignored_during_execution,
        Some(preferred)
    );
    assert_eq!(target_node_name(&pod), Some("n1"));
    let meta = &pod.metadata;
    assert_eq!(meta.generate_name.as_deref(), Some("ssd-monitor-"));
    assert_eq!(
        meta.labels.as_ref().unwrap(),
        &labels(&[("app", "ssd-monitor"), (REVISION_HASH_LABEL, "abc123")])
    );
    assert_eq!(
        meta.annotations.as_ref().unwrap(),
        &labels(&[(TEMPLATE_GENERATION_ANNOTATION, "4")])
    );
    let owner = util::controller_of(&pod).unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("DaemonSet", "ssd-monitor", "uid-ssd-monitor")
    );
    assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(6));
}

#[test]
fn a_bound_pod_belongs_to_its_node_and_an_unpinned_pod_to_none() {
    let ds = example();
    let mut pod = pod_for_node(&ds, "n1", "h");
    pod.spec.as_mut().unwrap().node_name = Some("n2".into());
    assert_eq!(target_node_name(&pod), Some("n2"), "spec.nodeName wins");
    pod.spec.as_mut().unwrap().node_name = None;
    assert_eq!(target_node_name(&pod), Some("n1"));
    pod.spec.as_mut().unwrap().affinity = None;
    assert_eq!(target_node_name(&pod), None);
}
