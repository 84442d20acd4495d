//! Unit tests of the scheduling loop over the fake API: what it writes for pods whose claims
//! wait for their first consumer or are bound to volumes with node affinity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, NodeCondition, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeStatus,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, PodSpec,
    Volume, VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rkube_controllers::controllers::volume::{HOSTNAME_LABEL, LOCAL_CLASS};
use rkube_controllers::runtime::fake::{Action as Write, FakeApi};
use rkube_controllers::runtime::{Informers, Recorder};
use serde_json::Value;

use super::*;

struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    controller: Controller,
}

impl Harness {
    fn new(nodes: &[&str]) -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, _) = Recorder::memory("test");
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || now),
        };
        let controller = controller(&ctx);
        for name in nodes {
            informers.get::<Node>().upsert(node(name));
        }
        Harness {
            informers,
            api,
            controller,
        }
    }

    /// Schedule what is pending; the patches written to claims and pods, in order.
    async fn run(&self) -> Vec<(String, String, Value)> {
        self.controller.run_until_idle().await;
        self.api
            .take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Write::Patch { kind, key, patch } if kind != "Event" => Some((kind, key, patch)),
                _ => None,
            })
            .collect()
    }

    fn claim(&self, name: &str) -> Arc<PersistentVolumeClaim> {
        self.informers
            .get::<PersistentVolumeClaim>()
            .get("default", name)
            .expect("the claim exists")
    }

    fn pod(&self, name: &str) -> Arc<Pod> {
        self.informers
            .get::<Pod>()
            .get("default", name)
            .expect("the pod exists")
    }
}

fn node(name: &str) -> Node {
    let mut node = Node::default();
    node.metadata.name = Some(name.into());
    node.metadata.resource_version = Some("1".into());
    node.metadata.labels = Some(BTreeMap::from([(HOSTNAME_LABEL.into(), name.into())]));
    node.status = Some(NodeStatus {
        allocatable: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
            ("pods".to_string(), Quantity("110".into())),
        ])),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    node
}

fn pod(name: &str, claim: &str) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.into());
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.metadata.resource_version = Some("1".into());
    pod.spec = Some(PodSpec {
        containers: vec![Container {
            name: "main".into(),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pod
}

/// An unbound claim of the local provisioner's class, or one bound to `volume`.
fn claim(name: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    let mut claim = PersistentVolumeClaim::default();
    claim.metadata.name = Some(name.into());
    claim.metadata.namespace = Some("default".into());
    claim.metadata.uid = Some(format!("uid-{name}"));
    claim.metadata.resource_version = Some("1".into());
    claim.spec = Some(PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity("1Gi".into()),
            )])),
            ..Default::default()
        }),
        storage_class_name: Some(LOCAL_CLASS.into()),
        volume_name: volume.map(str::to_string),
        ..Default::default()
    });
    if volume.is_some() {
        claim.metadata.annotations = Some(BTreeMap::from([(
            "pv.kubernetes.io/bind-completed".to_string(),
            "yes".to_string(),
        )]));
        claim.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
    }
    claim
}

/// A provisioned volume on node `node` (node affinity to its hostname).
fn volume_on(name: &str, node: &str) -> PersistentVolume {
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some(name.into());
    pv.metadata.resource_version = Some("1".into());
    pv.spec = Some(PersistentVolumeSpec {
        storage_class_name: Some(LOCAL_CLASS.into()),
        node_affinity: Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: HOSTNAME_LABEL.into(),
                        operator: "In".into(),
                        values: Some(vec![node.into()]),
                    }]),
                    ..Default::default()
                }],
            }),
        }),
        ..Default::default()
    });
    pv
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

#[tokio::test]
async fn a_waiting_claim_gets_the_chosen_node_before_the_pod_is_bound() {
    let h = Harness::new(&["n1"]);
    h.informers
        .get::<PersistentVolumeClaim>()
        .upsert(claim("data-web-0", None));
    h.informers.get::<Pod>().upsert(pod("web-0", "data-web-0"));
    let patches = h.run().await;
    assert_eq!(
        patches,
        [
            (
                "PersistentVolumeClaim".to_string(),
                "default/data-web-0".to_string(),
                json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n1"}}}),
            ),
            (
                "Pod".to_string(),
                "default/web-0".to_string(),
                json!({"metadata": {"resourceVersion": "1"}, "spec": {"nodeName": "n1"}}),
            ),
        ],
        "the claim is annotated first, then the pod bound"
    );
    let annotations = h.claim("data-web-0").metadata.annotations.clone().unwrap();
    assert_eq!(annotations[SELECTED_NODE_ANNOTATION], "n1");
    assert_eq!(node_name(&h.pod("web-0")), Some("n1"));
}

#[tokio::test]
async fn pods_sharing_a_waiting_claim_follow_its_selected_node() {
    let h = Harness::new(&["n1", "n2"]);
    h.informers
        .get::<PersistentVolumeClaim>()
        .upsert(claim("shared", None));
    h.informers.get::<Pod>().upsert(pod("a", "shared"));
    h.run().await;
    let chosen = node_name(&h.pod("a")).unwrap().to_string();
    h.informers.get::<Pod>().upsert(pod("b", "shared"));
    let patches = h.run().await;
    assert_eq!(patches.len(), 1, "only the binding: {patches:?}");
    assert_eq!(node_name(&h.pod("b")), Some(chosen.as_str()));
}

#[tokio::test]
async fn a_claim_bound_to_a_volume_on_a_node_keeps_its_pods_there() {
    let h = Harness::new(&["n1", "n2", "n3"]);
    h.informers
        .get::<PersistentVolume>()
        .upsert(volume_on("pvc-data", "n2"));
    h.informers
        .get::<PersistentVolumeClaim>()
        .upsert(claim("data", Some("pvc-data")));
    for i in 0..5 {
        let name = format!("p{i}");
        h.informers.get::<Pod>().upsert(pod(&name, "data"));
        let patches = h.run().await;
        assert_eq!(patches.len(), 1, "no claim is annotated: {patches:?}");
        assert_eq!(node_name(&h.pod(&name)), Some("n2"));
    }
}

#[tokio::test]
async fn a_pod_whose_volume_node_is_gone_stays_pending_with_the_conflict() {
    let h = Harness::new(&["n1", "n2"]);
    h.informers
        .get::<PersistentVolume>()
        .upsert(volume_on("pvc-data", "gone"));
    h.informers
        .get::<PersistentVolumeClaim>()
        .upsert(claim("data", Some("pvc-data")));
    h.informers.get::<Pod>().upsert(pod("web-1", "data"));
    assert!(h.run().await.is_empty(), "no binding");
    let p = h.pod("web-1");
    assert_eq!(node_name(&p), None);
    let condition = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .cloned()
        .expect("a PodScheduled condition");
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        condition.message.as_deref(),
        Some("0/2 nodes are available: 2 node(s) had volume node affinity conflict.")
    );
}
