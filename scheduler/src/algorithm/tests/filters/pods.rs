//! Tables for the filters that depend on the pods already placed and on volumes: NodePorts,
//! NodeResourcesFit, VolumeBinding and InterPodAffinity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, PersistentVolumeStatus, Pod, VolumeNodeAffinity,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rkube_controllers::controllers::volume::{LOCAL_CLASS, SELECTED_NODE_ANNOTATION};

use super::super::super::schedule;
use super::super::{filter, node, node_term, pod, rng, term, Snapshot, HOSTNAME, ZONE};
use super::{case, run};

#[test]
fn node_ports() {
    let reason = "node(s) didn't have free ports for the requested pod ports";
    let nodes = || vec![node("n1").build()];
    let used = || {
        vec![
            pod("web").on("n1").host_port(8080, "", "").build(),
            pod("local")
                .on("n1")
                .host_port(9090, "TCP", "127.0.0.1")
                .build(),
            pod("done")
                .on("n1")
                .host_port(7070, "", "")
                .phase("Succeeded")
                .build(),
        ]
    };
    let wanting = |port, protocol, ip| pod("p").host_port(port, protocol, ip).build();
    run(vec![
        case("no host ports", nodes(), used(), pod("p").build(), "n1"),
        case(
            "same port, defaults",
            nodes(),
            used(),
            wanting(8080, "", ""),
            "n1",
        )
        .fails(&[reason]),
        case(
            "same port on a specific address",
            nodes(),
            used(),
            wanting(8080, "TCP", "10.0.0.1"),
            "n1",
        )
        .fails(&[reason]),
        case(
            "same port, other protocol",
            nodes(),
            used(),
            wanting(8080, "UDP", ""),
            "n1",
        ),
        case("free port", nodes(), used(), wanting(8081, "", ""), "n1"),
        case(
            "all addresses against one in use",
            nodes(),
            used(),
            wanting(9090, "", "0.0.0.0"),
            "n1",
        )
        .fails(&[reason]),
        case(
            "same address",
            nodes(),
            used(),
            wanting(9090, "TCP", "127.0.0.1"),
            "n1",
        )
        .fails(&[reason]),
        case(
            "another address",
            nodes(),
            used(),
            wanting(9090, "TCP", "10.0.0.1"),
            "n1",
        ),
        case(
            "a finished pod's port is free",
            nodes(),
            used(),
            wanting(7070, "", ""),
            "n1",
        ),
    ]);
}

#[test]
fn node_resources_fit() {
    let busy = || vec![pod("busy").on("n1").requests("3", "7Gi").build()];
    let nodes = || vec![node("n1").build()];
    run(vec![
        case(
            "fits",
            nodes(),
            busy(),
            pod("p").requests("1", "1Gi").build(),
            "n1",
        ),
        case(
            "cpu short",
            nodes(),
            busy(),
            pod("p").requests("1100m", "1Gi").build(),
            "n1",
        )
        .fails(&["Insufficient cpu"]),
        case(
            "memory short",
            nodes(),
            busy(),
            pod("p").requests("100m", "1.5Gi").build(),
            "n1",
        )
        .fails(&["Insufficient memory"]),
        case(
            "both short",
            nodes(),
            busy(),
            pod("p").requests("2", "2Gi").build(),
            "n1",
        )
        .fails(&["Insufficient cpu", "Insufficient memory"]),
        case(
            "no requests fit a full node",
            vec![node("n1").cpu("3").memory("7Gi").build()],
            busy(),
            pod("p").build(),
            "n1",
        ),
        case(
            "pod count",
            vec![node("n1").max_pods("1").build()],
            busy(),
            pod("p").build(),
            "n1",
        )
        .fails(&["Too many pods"]),
        case(
            "pod count and cpu",
            vec![node("n1").max_pods("1").build()],
            busy(),
            pod("p").requests("2", "0").build(),
            "n1",
        )
        .fails(&["Too many pods", "Insufficient cpu"]),
        case(
            "finished pods hold nothing",
            nodes(),
            vec![pod("done")
                .on("n1")
                .requests("4", "8Gi")
                .phase("Failed")
                .build()],
            pod("p").requests("4", "8Gi").build(),
            "n1",
        ),
    ]);
}

fn claim(name: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    let mut claim = PersistentVolumeClaim::default();
    claim.metadata.name = Some(name.to_string());
    claim.metadata.namespace = Some("default".to_string());
    claim.spec = Some(PersistentVolumeClaimSpec {
        volume_name: volume.map(str::to_string),
        // A class without a provisioner: an unbound claim of it is an immediate claim.
        storage_class_name: Some("manual".to_string()),
        ..Default::default()
    });
    claim
}

/// An unbound 1Gi ReadWriteOnce claim of the local provisioner's class, with the node the
/// scheduler selected for it, if any.
fn local_claim(name: &str, selected: Option<&str>) -> PersistentVolumeClaim {
    let mut claim = claim(name, None);
    let spec = claim.spec.as_mut().unwrap();
    spec.storage_class_name = Some(LOCAL_CLASS.to_string());
    spec.access_modes = Some(vec!["ReadWriteOnce".to_string()]);
    spec.resources = Some(VolumeResourceRequirements {
        requests: Some(BTreeMap::from([(
            "storage".to_string(),
            Quantity("1Gi".to_string()),
        )])),
        ..Default::default()
    });
    if let Some(node) = selected {
        claim.metadata.annotations = Some(BTreeMap::from([(
            SELECTED_NODE_ANNOTATION.to_string(),
            node.to_string(),
        )]));
    }
    claim
}

/// A volume of the local provisioner's class on `node`.
fn local_volume(name: &str, node: &str) -> PersistentVolume {
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some(name.to_string());
    pv.spec = Some(PersistentVolumeSpec {
        node_affinity: Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![node_term(HOSTNAME, "In", &[node])],
            }),
        }),
        storage_class_name: Some(LOCAL_CLASS.to_string()),
        ..Default::default()
    });
    pv
}

fn volume_in_zone(name: &str, zone: &str) -> PersistentVolume {
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some(name.to_string());
    pv.spec = Some(PersistentVolumeSpec {
        node_affinity: Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![node_term(ZONE, "In", &[zone])],
            }),
        }),
        ..Default::default()
    });
    pv
}

#[test]
fn volume_binding() {
    let nodes = vec![node("n1").zone("a").build(), node("n2").zone("b").build()];
    let volumes = vec![volume_in_zone("pv-a", "a")];
    let claims = vec![
        claim("data", Some("pv-a")),
        claim("pending", None),
        claim("dangling", Some("pv-gone")),
    ];
    let snapshot = Snapshot::new(nodes, vec![], volumes, claims);
    let cases: Vec<(&str, Pod, &str, Result<(), &str>)> = vec![
        ("no claims", pod("p").build(), "n2", Ok(())),
        (
            "volume's zone",
            pod("p").claim("data").build(),
            "n1",
            Ok(()),
        ),
        (
            "another zone",
            pod("p").claim("data").build(),
            "n2",
            Err("node(s) had volume node affinity conflict"),
        ),
        (
            "missing claim",
            pod("p").claim("nope").build(),
            "n1",
            Err("persistentvolumeclaim \"nope\" not found"),
        ),
        (
            "unbound claim",
            pod("p").claim("pending").build(),
            "n1",
            Err("pod has unbound immediate PersistentVolumeClaims"),
        ),
        (
            "a missing claim is reported before an unbound one",
            pod("p").claim("pending").claim("nope").build(),
            "n1",
            Err("persistentvolumeclaim \"nope\" not found"),
        ),
        (
            "bound to a missing volume",
            pod("p").claim("dangling").build(),
            "n1",
            Err("node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"),
        ),
        (
            "claims are looked up in the pod's namespace",
            pod("p").namespace("other").claim("data").build(),
            "n1",
            Err("persistentvolumeclaim \"data\" not found"),
        ),
    ];
    for (name, pod, node, want) in cases {
        let want = want.map_err(|reason| vec![reason.to_string()]);
        assert_eq!(filter(&pod, &snapshot, node), want, "{name}");
    }
}

#[test]
fn volume_binding_of_local_volumes_waiting_for_first_consumer() {
    let nodes = vec![node("n1").build(), node("n2").build()];
    let volumes = vec![local_volume("pvc-on-n1", "n1")];
    let claims = vec![
        claim("on-n1", Some("pvc-on-n1")),
        local_claim("waiting", None),
        local_claim("selected", Some("n2")),
    ];
    let snapshot = Snapshot::new(nodes, vec![], volumes, claims);
    let cases: Vec<(&str, Pod, &str, Result<(), &str>)> = vec![
        (
            "bound to a volume on n1: n1",
            pod("p").claim("on-n1").build(),
            "n1",
            Ok(()),
        ),
        (
            "bound to a volume on n1: not n2",
            pod("p").claim("on-n1").build(),
            "n2",
            Err("node(s) had volume node affinity conflict"),
        ),
        (
            "waiting for its first consumer: any node",
            pod("p").claim("waiting").build(),
            "n1",
            Ok(()),
        ),
        (
            "waiting for its first consumer: any node (n2)",
            pod("p").claim("waiting").build(),
            "n2",
            Ok(()),
        ),
        (
            "being provisioned on n2: n2",
            pod("p").claim("selected").build(),
            "n2",
            Ok(()),
        ),
        (
            "being provisioned on n2: not n1",
            pod("p").claim("selected").build(),
            "n1",
            Err("node(s) had volume node affinity conflict"),
        ),
    ];
    for (name, pod, node, want) in cases {
        let want = want.map_err(|reason| vec![reason.to_string()]);
        assert_eq!(filter(&pod, &snapshot, node), want, "{name}");
    }

    // Scheduling a pod with a waiting claim reports the claim, so the scheduler writes the
    // chosen node into it; claims with a node or a volume are not reported.
    let p = pod("p").claim("waiting").claim("on-n1").build();
    let result = schedule(&p, &snapshot, &mut rng(0)).unwrap();
    assert_eq!(result.node, "n1");
    assert_eq!(result.claims_to_select, ["waiting"]);
    let q = pod("q").claim("selected").build();
    let result = schedule(&q, &snapshot, &mut rng(0)).unwrap();
    assert_eq!(result.node, "n2");
    assert!(result.claims_to_select.is_empty());

    // A volume's node is gone: the pod stays pending with Kubernetes' reason.
    let gone = Snapshot::new(
        vec![node("n2").build()],
        vec![],
        vec![local_volume("pvc-on-n1", "n1")],
        vec![claim("on-n1", Some("pvc-on-n1"))],
    );
    let r = pod("r").claim("on-n1").build();
    assert_eq!(
        schedule(&r, &gone, &mut rng(0)).unwrap_err().to_string(),
        "0/1 nodes are available: 1 node(s) had volume node affinity conflict."
    );
}

#[test]
fn a_waiting_claim_that_an_existing_volume_fits_is_left_to_the_binder() {
    let mut available = local_volume("pv-free", "n1");
    {
        let spec = available.spec.as_mut().unwrap();
        spec.access_modes = Some(vec!["ReadWriteOnce".to_string()]);
        spec.capacity = Some(BTreeMap::from([(
            "storage".to_string(),
            Quantity("2Gi".to_string()),
        )]));
    }
    available.status = Some(PersistentVolumeStatus {
        phase: Some("Available".to_string()),
        ..Default::default()
    });
    let snapshot = Snapshot::new(
        vec![node("n1").build(), node("n2").build()],
        vec![],
        vec![available],
        vec![local_claim("waiting", None)],
    );
    assert_eq!(
        filter(&pod("p").claim("waiting").build(), &snapshot, "n1"),
        Err(vec![
            "pod has unbound immediate PersistentVolumeClaims".to_string()
        ])
    );
}

#[test]
fn inter_pod_affinity() {
    let affinity = "node(s) didn't match pod affinity rules";
    let anti = "node(s) didn't match pod anti-affinity rules";
    let existing = "node(s) didn't satisfy existing pods anti-affinity rules";
    let zoned = || {
        vec![
            node("n1").zone("a").build(),
            node("n2").zone("a").build(),
            node("n3").zone("b").build(),
            node("bare").build(),
        ]
    };
    let db_on_n1 = || vec![pod("db").label("app", "db").on("n1").build()];
    let web_on_n1 = || vec![pod("web").label("app", "web").on("n1").build()];
    let near_db = |key| pod("p").pod_affinity(term("app", "db", key)).build();
    let self_affine = || {
        pod("p")
            .label("app", "web")
            .pod_affinity(term("app", "web", ZONE))
            .build()
    };
    let away_from_web = |key| pod("p").pod_anti_affinity(term("app", "web", key)).build();
    let repels_web = || {
        vec![pod("guard")
            .on("n1")
            .pod_anti_affinity(term("app", "web", ZONE))
            .build()]
    };
    let web = || pod("p").label("app", "web").build();
    run(vec![
        case(
            "affinity, same host",
            zoned(),
            db_on_n1(),
            near_db(HOSTNAME),
            "n1",
        ),
        case(
            "affinity, other host",
            zoned(),
            db_on_n1(),
            near_db(HOSTNAME),
            "n2",
        )
        .fails(&[affinity]),
        case(
            "affinity, same zone",
            zoned(),
            db_on_n1(),
            near_db(ZONE),
            "n2",
        ),
        case(
            "affinity, other zone",
            zoned(),
            db_on_n1(),
            near_db(ZONE),
            "n3",
        )
        .fails(&[affinity]),
        case(
            "affinity, node without the topology label",
            zoned(),
            db_on_n1(),
            near_db(ZONE),
            "bare",
        )
        .fails(&[affinity]),
        case(
            "affinity, no matching pod anywhere",
            zoned(),
            vec![],
            near_db(ZONE),
            "n1",
        )
        .fails(&[affinity]),
        case(
            "affinity counts only the pod's namespace",
            zoned(),
            vec![pod("db")
                .namespace("other")
                .label("app", "db")
                .on("n1")
                .build()],
            near_db(ZONE),
            "n1",
        )
        .fails(&[affinity]),
        case(
            "first pod of a self-affine group",
            zoned(),
            vec![],
            self_affine(),
            "n3",
        ),
        case(
            "self-affine pod still needs the topology label",
            zoned(),
            vec![],
            self_affine(),
            "bare",
        )
        .fails(&[affinity]),
        case(
            "self-affine pod joins its group",
            zoned(),
            web_on_n1(),
            self_affine(),
            "n2",
        ),
        case(
            "self-affine pod stays with its group",
            zoned(),
            web_on_n1(),
            self_affine(),
            "n3",
        )
        .fails(&[affinity]),
        case(
            "anti-affinity, same host",
            zoned(),
            web_on_n1(),
            away_from_web(HOSTNAME),
            "n1",
        )
        .fails(&[anti]),
        case(
            "anti-affinity, other host",
            zoned(),
            web_on_n1(),
            away_from_web(HOSTNAME),
            "n2",
        ),
        case(
            "anti-affinity, same zone",
            zoned(),
            web_on_n1(),
            away_from_web(ZONE),
            "n2",
        )
        .fails(&[anti]),
        case(
            "anti-affinity, node without the topology label",
            zoned(),
            web_on_n1(),
            away_from_web(ZONE),
            "bare",
        ),
        case(
            "anti-affinity ignores other namespaces by default",
            zoned(),
            vec![pod("web")
                .namespace("other")
                .label("app", "web")
                .on("n1")
                .build()],
            away_from_web(HOSTNAME),
            "n1",
        ),
        case(
            "anti-affinity with a namespace list",
            zoned(),
            vec![pod("web")
                .namespace("other")
                .label("app", "web")
                .on("n1")
                .build()],
            pod("p")
                .pod_anti_affinity({
                    let mut t = term("app", "web", HOSTNAME);
                    t.namespaces = Some(vec!["other".to_string()]);
                    t
                })
                .build(),
            "n1",
        )
        .fails(&[anti]),
        case(
            "existing pod's anti-affinity, its node",
            zoned(),
            repels_web(),
            web(),
            "n1",
        )
        .fails(&[existing]),
        case(
            "existing pod's anti-affinity, its zone",
            zoned(),
            repels_web(),
            web(),
            "n2",
        )
        .fails(&[existing]),
        case(
            "existing pod's anti-affinity, other zone",
            zoned(),
            repels_web(),
            web(),
            "n3",
        ),
        case(
            "existing pod's anti-affinity, unselected pod",
            zoned(),
            repels_web(),
            pod("p").build(),
            "n1",
        ),
    ]);
}
