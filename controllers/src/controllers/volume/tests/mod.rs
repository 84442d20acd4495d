//! Unit tests of the PersistentVolume controller over the fake API: binding here, the rest of a
//! volume's life in `lifecycle`.

mod lifecycle;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, PersistentVolumeStatus, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::binder::claim_reference;
use super::*;
use crate::runtime::fake::FakeApi;
use crate::runtime::{Informers, Recorder};

struct Harness {
    informers: Informers,
    api: Arc<FakeApi>,
    events: Arc<Mutex<Vec<String>>>,
    controller: Controller,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(VolumeOptions::default())
    }

    fn with(opts: VolumeOptions) -> Harness {
        let informers = Informers::new();
        let api = Arc::new(FakeApi::new(informers.clone()));
        let (recorder, events) = Recorder::memory("persistentvolume-controller");
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let ctx = Context {
            informers: informers.clone(),
            api: api.clone(),
            recorder,
            clock: Arc::new(move || now),
        };
        let controller = controller(&ctx, opts);
        // Listed (empty), as the manager's informers are before workers run.
        informers.get::<Node>().replace(Vec::new());
        Harness {
            informers,
            api,
            events,
            controller,
        }
    }

    fn add_pv(&self, pv: PersistentVolume) {
        self.informers.get::<PersistentVolume>().upsert(pv);
    }

    fn add_claim(&self, claim: PersistentVolumeClaim) {
        self.informers.get::<PersistentVolumeClaim>().upsert(claim);
    }

    /// A node named `name` whose `kubernetes.io/hostname` label is `host-<name>`.
    fn add_node(&self, name: &str) {
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node.metadata.labels = Some(BTreeMap::from([(
            HOSTNAME_LABEL.to_string(),
            format!("host-{name}"),
        )]));
        self.informers.get::<Node>().upsert(node);
    }

    fn delete_node(&self, name: &str) {
        self.informers
            .get::<Node>()
            .remove(&ObjectKey::new("", name));
    }

    /// What the scheduler does when it places the claim's first pod on `node`.
    fn select_node(&self, claim: &str, node: &str) {
        let mut c = (*self.claim(claim)).clone();
        c.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SELECTED_NODE_ANNOTATION.into(), node.into());
        self.add_claim(c);
    }

    fn delete_claim(&self, name: &str) {
        self.informers
            .get::<PersistentVolumeClaim>()
            .remove(&ObjectKey::new("default", name));
    }

    async fn sync(&self) -> Vec<String> {
        self.controller.run_until_idle().await;
        self.api.take_summaries()
    }

    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.informers.get::<PersistentVolume>().get("", name)
    }

    fn claim(&self, name: &str) -> Arc<PersistentVolumeClaim> {
        self.informers
            .get::<PersistentVolumeClaim>()
            .get("default", name)
            .expect("claim exists")
    }

    fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn modes(m: &[&str]) -> Option<Vec<String>> {
    Some(m.iter().map(|s| s.to_string()).collect())
}

fn storage(q: &str) -> Option<BTreeMap<String, Quantity>> {
    Some(BTreeMap::from([(
        "storage".to_string(),
        Quantity(q.into()),
    )]))
}

fn pv(name: &str, size: &str, class: &str, access: &[&str]) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-pv-{name}")),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: modes(access),
            capacity: storage(size),
            host_path: Some(HostPathVolumeSource {
                path: format!("/data/{name}"),
                type_: Some(String::new()),
            }),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            storage_class_name: (!class.is_empty()).then(|| class.to_string()),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        }),
    }
}

fn claim(name: &str, size: &str, class: &str, access: &[&str]) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: modes(access),
            resources: Some(VolumeResourceRequirements {
                requests: storage(size),
                ..Default::default()
            }),
            storage_class_name: Some(class.into()),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        status: Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

const RWO: &[&str] = &["ReadWriteOnce"];

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn bound_volume(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec.as_ref().and_then(|s| s.volume_name.as_deref())
}

fn claim_ref_uid(pv: &PersistentVolume) -> Option<&str> {
    pv.spec.as_ref()?.claim_ref.as_ref()?.uid.as_deref()
}

/// Asserts the claim and the volume are bound to each other on both sides.
fn assert_bound(h: &Harness, claim_name: &str, pv_name: &str) {
    let c = h.claim(claim_name);
    let v = h.pv(pv_name).expect("volume exists");
    assert_eq!(bound_volume(&c), Some(pv_name));
    assert_eq!(claim_phase(&c), "Bound");
    let ann = c.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get(BIND_COMPLETED_ANNOTATION).map(String::as_str),
        Some("yes")
    );
    let status = c.status.clone().unwrap();
    assert_eq!(status.capacity, v.spec.as_ref().unwrap().capacity);
    assert_eq!(status.access_modes, v.spec.as_ref().unwrap().access_modes);
    let r = v
        .spec
        .as_ref()
        .unwrap()
        .claim_ref
        .clone()
        .expect("claimRef");
    assert_eq!(r.kind.as_deref(), Some("PersistentVolumeClaim"));
    assert_eq!(r.api_version.as_deref(), Some("v1"));
    assert_eq!(r.namespace.as_deref(), Some("default"));
    assert_eq!(r.name.as_deref(), Some(claim_name));
    assert_eq!(r.uid, c.metadata.uid);
    assert_eq!(volume_phase(&v), "Bound");
}

#[tokio::test]
async fn binds_the_smallest_fitting_volume_on_both_sides() {
    let h = Harness::new();
    h.add_pv(pv("big", "10Gi", "", RWO));
    h.add_pv(pv("small", "1Gi", "", RWO));
    h.add_pv(pv("fits", "2Gi", "", &["ReadWriteOnce", "ReadOnlyMany"]));
    h.add_claim(claim("data", "1500Mi", "", RWO));
    let writes = h.sync().await;
    assert_bound(&h, "data", "fits");
    assert_eq!(
        writes,
        [
            "update PersistentVolume fits",
            "update-status PersistentVolume fits",
            "update PersistentVolumeClaim default/data",
            "update-status PersistentVolumeClaim default/data",
        ]
    );
    for other in ["big", "small"] {
        assert_eq!(
            claim_ref_uid(&h.pv(other).unwrap()),
            None,
            "{other} stays free"
        );
    }
    assert_eq!(
        h.sync().await,
        Vec::<String>::new(),
        "a second pass writes nothing"
    );
    h.controller.resync();
    assert_eq!(
        h.sync().await,
        Vec::<String>::new(),
        "a resync writes nothing"
    );
}

#[tokio::test]
async fn mismatched_class_access_mode_or_selector_is_not_bound() {
    let h = Harness::with(VolumeOptions {
        default_local: false,
        ..Default::default()
    });
    h.add_pv(pv("fast", "5Gi", "fast", RWO));
    h.add_pv(pv("readonly", "5Gi", "", &["ReadOnlyMany"]));
    let mut labelled = pv("labelled", "5Gi", "", RWO);
    labelled.metadata.labels = Some(BTreeMap::from([("disk".into(), "hdd".into())]));
    h.add_pv(labelled);
    let mut c = claim("data", "1Gi", "", RWO);
    c.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
        ..Default::default()
    });
    h.add_claim(c);
    assert_eq!(h.sync().await, Vec::<String>::new());
    assert_eq!(bound_volume(&h.claim("data")), None);
    assert_eq!(
        h.take_events(),
        ["Normal FailedBinding no persistent volumes available for this claim and no storage class is set"]
    );
    // Relabelling the volume to match the selector binds it.
    let mut relabelled = (*h.pv("labelled").unwrap()).clone();
    relabelled.metadata.labels = Some(BTreeMap::from([("disk".into(), "ssd".into())]));
    relabelled.metadata.resource_version = Some("2".into());
    h.add_pv(relabelled);
    h.sync().await;
    assert_bound(&h, "data", "labelled");
}

#[tokio::test]
async fn too_small_volumes_and_volumes_claimed_by_others_are_skipped() {
    let h = Harness::with(VolumeOptions {
        default_local: false,
        ..Default::default()
    });
    h.add_pv(pv("tiny", "500Mi", "", RWO));
    let mut taken = pv("taken", "5Gi", "", RWO);
    taken.spec.as_mut().unwrap().claim_ref = Some(claim_reference(&claim("other", "1Gi", "", RWO)));
    h.add_pv(taken);
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    assert_eq!(bound_volume(&h.claim("data")), None);
    assert_eq!(claim_phase(&h.claim("data")), "Pending");
}

#[tokio::test]
async fn a_claim_naming_a_volume_binds_to_it() {
    let h = Harness::new();
    h.add_pv(pv("smaller", "1Gi", "", RWO));
    h.add_pv(pv("chosen", "8Gi", "", RWO));
    let mut c = claim("data", "1Gi", "", RWO);
    c.spec.as_mut().unwrap().volume_name = Some("chosen".into());
    h.add_claim(c);
    h.sync().await;
    assert_bound(&h, "data", "chosen");
    let ann = h
        .pv("chosen")
        .unwrap()
        .metadata
        .annotations
        .clone()
        .unwrap();
    assert_eq!(
        ann.get(BOUND_BY_CONTROLLER_ANNOTATION).map(String::as_str),
        Some("yes")
    );
    let claim_ann = h.claim("data").metadata.annotations.clone().unwrap();
    assert!(
        !claim_ann.contains_key(BOUND_BY_CONTROLLER_ANNOTATION),
        "the user set volumeName, not the controller"
    );
}

#[tokio::test]
async fn a_named_volume_bound_elsewhere_or_of_another_class_is_refused() {
    let h = Harness::new();
    let mut taken = pv("taken", "8Gi", "", RWO);
    taken.spec.as_mut().unwrap().claim_ref = Some(claim_reference(&claim("other", "1Gi", "", RWO)));
    h.add_pv(taken);
    h.add_pv(pv("fast", "8Gi", "fast", RWO));
    let mut a = claim("a", "1Gi", "", RWO);
    a.spec.as_mut().unwrap().volume_name = Some("taken".into());
    h.add_claim(a);
    let mut b = claim("b", "1Gi", "", RWO);
    b.spec.as_mut().unwrap().volume_name = Some("fast".into());
    h.add_claim(b);
    h.sync().await;
    assert_eq!(claim_phase(&h.claim("a")), "Pending");
    assert_eq!(claim_phase(&h.claim("b")), "Pending");
    let mut events = h.take_events();
    events.sort();
    events.dedup();
    assert_eq!(
        events,
        [
            "Warning FailedBinding Cannot bind to requested volume \"fast\": storageClassName does not match",
            "Warning FailedBinding volume \"taken\" already bound to a different claim.",
        ]
    );
}

#[tokio::test]
async fn a_volume_pre_bound_to_a_claim_goes_to_that_claim_only() {
    let h = Harness::new();
    let mut reserved = pv("reserved", "4Gi", "", RWO);
    let mut r = claim_reference(&claim("data", "1Gi", "", RWO));
    r.uid = None;
    reserved.spec.as_mut().unwrap().claim_ref = Some(r);
    h.add_pv(reserved);
    h.add_pv(pv("exact", "1Gi", "", RWO));
    h.add_claim(claim("other", "1Gi", "", RWO));
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    assert_bound(&h, "data", "reserved");
    assert_bound(&h, "other", "exact");
}

#[tokio::test]
async fn unclaimed_volumes_become_available_and_wake_waiting_claims() {
    let h = Harness::with(VolumeOptions {
        default_local: false,
        ..Default::default()
    });
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    assert_eq!(claim_phase(&h.claim("data")), "Pending");
    let mut fresh = pv("fresh", "1Gi", "", RWO);
    fresh.status.as_mut().unwrap().phase = Some("Pending".into());
    h.add_pv(fresh);
    h.sync().await;
    assert_bound(&h, "data", "fresh");
}

#[tokio::test]
async fn a_failed_write_is_retried_and_completes_the_binding() {
    let h = Harness::new();
    h.add_pv(pv("one", "1Gi", "", RWO));
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.api
        .fail_next(crate::error::Error::Api(rkube_client::Error::Conflict(
            "the object has been modified".into(),
        )));
    h.controller.run_until_idle().await;
    // The failed key waits out its back-off; run it again as the runtime would.
    h.controller.queue.add(ObjectKey::new("default", "data"));
    h.sync().await;
    assert_bound(&h, "data", "one");
}

#[test]
fn quantities_parse_to_bytes() {
    let cases = [
        ("1Gi", Some(1u128 << 30)),
        ("1500Mi", Some(1500u128 << 20)),
        ("2G", Some(2_000_000_000)),
        ("1.5Gi", Some(3u128 << 29)),
        ("1e3", Some(1000)),
        ("100m", Some(1)),
        ("512", Some(512)),
        ("", None),
        ("-1Gi", None),
        ("12q", None),
    ];
    for (q, want) in cases {
        assert_eq!(parse_bytes(q), want, "{q}");
    }
}
