//! A StatefulSet pod's stable identity: its ordinal name, labels, hostname and subdomain, and the
//! PersistentVolumeClaims made from the set's `volumeClaimTemplates` (Kubernetes'
//! `stateful_set_utils.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::controllers::deployment::pod_template_hash;
use crate::util;

/// The pod label naming the template revision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The pod label holding the pod's own name (selects one pod, e.g. for a per-pod Service).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The revision (`controller-revision-hash`) of the set's current template. As in Kubernetes
/// the collision count always takes part (0 when the status has none), so the first status
/// write does not change the revision.
pub fn update_revision(set: &StatefulSet) -> String {
    let collisions = set.status.as_ref().and_then(|s| s.collision_count);
    pod_template_hash(&set.spec.template, Some(collisions.unwrap_or(0)))
}

/// The first ordinal (`spec.ordinals.start`, 0 by default).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

/// `spec.replicas`, 1 by default.
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.replicas.unwrap_or(1).max(0)
}

/// The name of the set's pod with this ordinal: `<set>-<ordinal>`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// The ordinal of a pod named `<set>-<ordinal>` (digits only, no leading zeros), if it is one.
pub fn ordinal_of(set: &StatefulSet, pod_name: &str) -> Option<i32> {
    let digits = pod_name.strip_prefix(set_name(set))?.strip_prefix('-')?;
    let n: i32 = digits.parse().ok()?;
    (n >= 0 && n.to_string() == digits).then_some(n)
}

/// The name of the claim from `template` for the pod with this ordinal:
/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &PersistentVolumeClaim, set: &StatefulSet, ordinal: i32) -> String {
    format!(
        "{}-{}",
        template.metadata.name.as_deref().unwrap_or_default(),
        pod_name(set, ordinal)
    )
}

/// The set's claim templates.
pub fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default()
}

/// The pod's `controller-revision-hash` label.
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

/// Whether the claims of a set should be deleted with it (`whenDeleted: Delete`).
pub fn delete_claims_with_set(set: &StatefulSet) -> bool {
    retention(set, |p| p.when_deleted.as_deref())
}

/// Whether the claims of ordinals scaled away should be deleted (`whenScaled: Delete`).
pub fn delete_claims_when_scaled(set: &StatefulSet) -> bool {
    retention(set, |p| p.when_scaled.as_deref())
}

fn retention(
    set: &StatefulSet,
    field: impl Fn(
        &k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy,
    ) -> Option<&str>,
) -> bool {
    set.spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(field)
        == Some("Delete")
}

/// The owner reference a claim carries to the set under `whenDeleted: Delete` (not a
/// controller reference, as in Kubernetes), so the garbage collector deletes the claim after
/// the set.
pub fn claim_owner_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..util::controller_ref(set)
    }
}

/// The owner references `claim` should carry under the set's retention policy: its own
/// references to other owners, plus one to the set under `whenDeleted: Delete`.
pub fn desired_claim_owners(
    set: &StatefulSet,
    existing: Option<&[OwnerReference]>,
) -> Vec<OwnerReference> {
    let uid = set.metadata.uid.as_deref().unwrap_or_default();
    let mut refs: Vec<OwnerReference> = existing
        .unwrap_or_default()
        .iter()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    if delete_claims_with_set(set) {
        refs.push(claim_owner_ref(set));
    }
    refs
}

/// The claim from `template` for the pod with this ordinal: the template's labels plus the
/// set's selector labels, the template's spec.
pub fn new_claim(
    set: &StatefulSet,
    template: &PersistentVolumeClaim,
    ordinal: i32,
) -> PersistentVolumeClaim {
    let mut labels = template.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &set.spec.selector.match_labels {
        labels.extend(sel.clone());
    }
    let owners = desired_claim_owners(set, None);
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(template, set, ordinal)),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template.metadata.annotations.clone(),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The pod with this ordinal at `revision` of the set's current template: the template's
/// labels plus the identity labels, hostname and subdomain, a controller reference to the set,
/// and a `persistentVolumeClaim` volume per claim template (replacing same-named volumes).
pub fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let name = pod_name(set, ordinal);
    let template = &set.spec.template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    let mut volumes = spec.volumes.take().unwrap_or_default();
    for t in claim_templates(set) {
        let vol = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != vol);
        volumes.push(Volume {
            name: vol,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(t, set, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![util::controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}
