//! Tables for the filters that depend on the pods already placed and on volumes: NodePorts,
//! NodeResourcesFit, VolumeBinding and InterPodAffinity.

use k8s_openapi::api::core::v1::{
    NodeSelector, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, Pod, VolumeNodeAffinity,
};

use super::super::{filter, node, node_term, pod, term, Snapshot, HOSTNAME, ZONE};
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
        ..Default::default()
    });
    claim
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
