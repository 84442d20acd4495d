//! Unit tests of releasing, reclaiming and provisioning volumes, and of claims that lose their
//! volume.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::PersistentVolume;

use super::*;

#[tokio::test]
async fn a_deleted_claim_releases_a_retained_volume() {
    let h = Harness::new();
    h.add_pv(pv("keep", "1Gi", "", RWO));
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    assert_bound(&h, "data", "keep");
    h.delete_claim("data");
    assert_eq!(h.sync().await, ["update-status PersistentVolume keep"]);
    let v = h.pv("keep").unwrap();
    assert_eq!(volume_phase(&v), "Released");
    assert_eq!(claim_ref_uid(&v), Some("uid-data"), "the claimRef stays");
    // A new claim of the same name does not get the released volume back.
    let mut again = claim("data", "1Gi", "", RWO);
    again.metadata.uid = Some("uid-data-2".into());
    h.add_claim(again);
    let writes = h.sync().await;
    assert!(
        !writes.contains(&"update PersistentVolume keep".to_string()),
        "{writes:?}"
    );
    assert_eq!(volume_phase(&h.pv("keep").unwrap()), "Released");
    assert_ne!(bound_volume(&h.claim("data")), Some("keep"));
}

#[tokio::test]
async fn recycle_is_treated_as_retain_with_an_event() {
    let h = Harness::new();
    let mut v = pv("old", "1Gi", "", RWO);
    v.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Recycle".into());
    h.add_pv(v);
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    h.delete_claim("data");
    h.sync().await;
    assert_eq!(volume_phase(&h.pv("old").unwrap()), "Released");
    let events = h.take_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("Warning RecycleDeprecated "),
        "{events:?}"
    );
    h.controller.resync();
    assert_eq!(h.sync().await, Vec::<String>::new());
    assert!(h.take_events().is_empty(), "the event is reported once");
}

#[tokio::test]
async fn a_deleted_claim_deletes_a_volume_with_policy_delete() {
    let h = Harness::new();
    let mut v = pv("scratch", "1Gi", "", RWO);
    v.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Delete".into());
    h.add_pv(v);
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    assert_bound(&h, "data", "scratch");
    h.delete_claim("data");
    assert_eq!(
        h.sync().await,
        [
            "update-status PersistentVolume scratch",
            "delete PersistentVolume scratch",
        ],
        "a volume this provisioner did not make gets no directory annotation"
    );
    assert!(h.pv("scratch").is_none());
}

#[tokio::test]
async fn a_local_claim_is_provisioned_then_bound_and_cleaned_up() {
    let h = Harness::new();
    h.add_node("n1");
    h.add_node("n2");
    h.add_pv(pv("unclassed", "10Gi", "", RWO));
    h.add_claim(claim("www-web-0", "1Gi", LOCAL_CLASS, RWO));
    assert_eq!(
        h.sync().await,
        Vec::<String>::new(),
        "nothing is provisioned before the claim's first pod is scheduled"
    );
    assert_eq!(
        h.take_events(),
        ["Normal WaitForFirstConsumer waiting for first consumer to be created before binding"]
    );
    assert_eq!(claim_phase(&h.claim("www-web-0")), "Pending");
    h.select_node("www-web-0", "n2");
    let writes = h.sync().await;
    assert_eq!(
        writes,
        [
            "create PersistentVolume pvc-uid-www-web-0",
            "update-status PersistentVolume pvc-uid-www-web-0",
            "update PersistentVolumeClaim default/www-web-0",
            "update-status PersistentVolumeClaim default/www-web-0",
        ]
    );
    let name = "pvc-uid-www-web-0";
    assert_bound(&h, "www-web-0", name);
    let v = h.pv(name).unwrap();
    let spec = v.spec.clone().unwrap();
    let hp = spec.host_path.unwrap();
    assert_eq!(hp.path, "/var/lib/rkube/volumes/default-www-web-0-uid-www-");
    assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(spec.capacity, storage("1Gi"));
    assert_eq!(spec.access_modes, modes(RWO));
    assert_eq!(spec.storage_class_name.as_deref(), Some(LOCAL_CLASS));
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    let terms = spec
        .node_affinity
        .unwrap()
        .required
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1, "{terms:?}");
    let exprs = terms[0].match_expressions.clone().unwrap();
    assert_eq!(
        exprs
            .iter()
            .map(|e| (
                e.key.as_str(),
                e.operator.as_str(),
                e.values.clone().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(HOSTNAME_LABEL, "In", vec!["host-n2".to_string()])],
        "the volume lives on the selected node"
    );
    assert_eq!(
        v.metadata.finalizers.as_deref(),
        Some(&[DIRECTORY_FINALIZER.to_string()][..]),
        "the node's agent removes the directory before the object goes"
    );
    let ann = v.metadata.annotations.clone().unwrap();
    assert_eq!(
        ann.get(PROVISIONED_BY_ANNOTATION).map(String::as_str),
        Some(PROVISIONER)
    );
    assert_eq!(
        h.take_events(),
        ["Normal ProvisioningSucceeded Successfully provisioned volume pvc-uid-www-web-0 using rkube.io/local"]
    );
    assert_eq!(h.sync().await, Vec::<String>::new());
    h.controller.resync();
    assert_eq!(
        h.sync().await,
        Vec::<String>::new(),
        "nothing provisioned twice"
    );

    // Watch the deleted object's last state: it names the directory for the node agent.
    let last = Arc::new(Mutex::new(None));
    let seen = last.clone();
    h.informers.get::<PersistentVolume>().on_change(move |c| {
        if let Change::Deleted(pv) = c {
            *seen.lock().unwrap() = Some(pv.clone());
        }
    });
    h.delete_claim("www-web-0");
    assert_eq!(
        h.sync().await,
        [
            format!("update-status PersistentVolume {name}"),
            format!("update PersistentVolume {name}"),
            format!("delete PersistentVolume {name}"),
        ]
    );
    let gone = last
        .lock()
        .unwrap()
        .clone()
        .expect("the volume was deleted");
    let ann = gone.metadata.annotations.clone().unwrap();
    assert_eq!(
        ann.get(REMOVE_DIRECTORY_ANNOTATION).map(String::as_str),
        Some("/var/lib/rkube/volumes/default-www-web-0-uid-www-")
    );
    assert_eq!(
        gone.metadata.finalizers.as_deref(),
        Some(&[DIRECTORY_FINALIZER.to_string()][..]),
        "the controller leaves the finalizer to the agent"
    );
}

#[tokio::test]
async fn a_deleted_volume_held_by_its_finalizer_is_left_to_the_agent() {
    let h = Harness::new();
    h.add_node("n1");
    h.add_claim(claim("data", "1Gi", LOCAL_CLASS, RWO));
    h.select_node("data", "n1");
    h.sync().await;
    h.delete_claim("data");
    let mut v = (*h.pv("pvc-uid-data").unwrap()).clone();
    v.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2024-01-01T00:00:00Z".parse().unwrap(),
    ));
    v.status.as_mut().unwrap().phase = Some("Released".into());
    h.add_pv(v);
    h.controller.resync();
    assert_eq!(
        h.sync().await,
        Vec::<String>::new(),
        "no second delete, no phase change while the agent removes the directory"
    );
}

#[tokio::test]
async fn a_claim_whose_selected_node_vanished_waits_for_its_next_pod() {
    let h = Harness::new();
    h.add_node("n1");
    h.add_claim(claim("data", "1Gi", LOCAL_CLASS, RWO));
    h.sync().await;
    h.take_events();
    h.delete_node("n1");
    h.select_node("data", "n1");
    assert_eq!(
        h.sync().await,
        ["update PersistentVolumeClaim default/data"]
    );
    assert!(h.pv("pvc-uid-data").is_none(), "nothing provisioned");
    let c = h.claim("data");
    assert_eq!(selected_node(&c), None, "the scheduler chooses again");
    assert_eq!(
        h.take_events()[0],
        "Warning ProvisioningFailed node \"n1\" selected for this claim does not exist; \
         waiting for its next pod to be scheduled"
    );
}

#[tokio::test]
async fn an_existing_volume_is_bound_at_once_without_waiting_for_a_consumer() {
    let h = Harness::new();
    h.add_pv(pv("ready", "1Gi", LOCAL_CLASS, RWO));
    h.add_claim(claim("data", "1Gi", LOCAL_CLASS, RWO));
    h.sync().await;
    assert_bound(&h, "data", "ready");
    assert!(h.take_events().is_empty());
}

#[tokio::test]
async fn a_local_claim_takes_an_existing_local_volume_first() {
    let h = Harness::new();
    h.add_pv(pv("local-1", "2Gi", LOCAL_CLASS, RWO));
    h.add_claim(claim("data", "1Gi", LOCAL_CLASS, RWO));
    h.sync().await;
    assert_bound(&h, "data", "local-1");
    assert!(h.pv("pvc-uid-data").is_none());
}

#[tokio::test]
async fn classless_claims_are_provisioned_only_when_default_local() {
    let h = Harness::new();
    h.add_node("n1");
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    h.select_node("data", "n1");
    h.sync().await;
    assert_bound(&h, "data", "pvc-uid-data");
    let v = h.pv("pvc-uid-data").unwrap();
    assert_eq!(v.spec.as_ref().unwrap().storage_class_name, None);

    let off = Harness::with(VolumeOptions {
        default_local: false,
        volume_root: "/srv/vols/".into(),
    });
    off.add_node("n1");
    off.add_claim(claim("data", "1Gi", "", RWO));
    off.select_node("data", "n1");
    assert_eq!(off.sync().await, Vec::<String>::new());
    assert!(off.pv("pvc-uid-data").is_none());
}

#[test]
fn provisioned_directories_sit_under_the_volume_root() {
    let c = claim("www-web-1", "1Gi", LOCAL_CLASS, RWO);
    assert_eq!(
        super::provisioner::provisioned_path("/srv/vols/", &c),
        "/srv/vols/default-www-web-1-uid-www-"
    );
    let v = super::provisioner::provisioned_volume("/srv/vols", &c, "n1");
    assert_eq!(v.metadata.name.as_deref(), Some("pvc-uid-www-web-1"));
    assert_eq!(v.spec.unwrap().claim_ref, Some(claim_reference(&c)));
}

#[tokio::test]
async fn another_class_is_not_provisioned() {
    let h = Harness::new();
    h.add_claim(claim("data", "1Gi", "fast", RWO));
    assert_eq!(h.sync().await, Vec::<String>::new());
    assert!(h.pv("pvc-uid-data").is_none());
    assert_eq!(bound_volume(&h.claim("data")), None);
    let events = h.take_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("Normal FailedBinding no persistent volumes available for this claim and storage class \"fast\""),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_bound_claim_whose_volume_vanished_is_lost() {
    let h = Harness::new();
    h.add_pv(pv("gone", "1Gi", "", RWO));
    h.add_claim(claim("data", "1Gi", "", RWO));
    h.sync().await;
    h.informers
        .get::<PersistentVolume>()
        .remove(&ObjectKey::new("", "gone"));
    assert_eq!(
        h.sync().await,
        ["update-status PersistentVolumeClaim default/data"]
    );
    assert_eq!(claim_phase(&h.claim("data")), "Lost");
    assert_eq!(
        h.take_events(),
        ["Warning ClaimLost Bound claim has lost its PersistentVolume. Data on the volume is lost!"]
    );
}
