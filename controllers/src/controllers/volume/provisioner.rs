//! The local provisioner: a hostPath PersistentVolume under the configured volume root for a
//! claim no existing volume fits, pre-bound to the claim (Kubernetes' `provisionClaimOperation`)
//! so the binder binds exactly this claim to it.
//!
//! The volume has no node affinity: on rkube's single-machine clusters every node shares the
//! host's filesystem. A multi-machine cluster would need node affinity to the node holding the
//! directory (and the directory is created by the node agent, `type: DirectoryOrCreate`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::binder::claim_reference;
use super::matching::claim_class;
use super::{
    wait_for, VolumeReconciler, BOUND_BY_CONTROLLER_ANNOTATION, PROVISIONED_BY_ANNOTATION,
    PROVISIONER,
};
use crate::error::Result;
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::ApiExt;

/// The name of the volume provisioned for a claim: `pvc-<claim uid>`.
pub fn provisioned_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

/// The directory of the volume provisioned for a claim:
/// `<volume_root>/<namespace>-<claim>-<first 8 characters of its uid>`.
pub fn provisioned_path(volume_root: &str, claim: &PersistentVolumeClaim) -> String {
    let m = &claim.metadata;
    let uid: String = m
        .uid
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(8)
        .collect();
    format!(
        "{}/{}-{}-{uid}",
        volume_root.trim_end_matches('/'),
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
    )
}

/// The volume provisioned for `claim`: capacity and access modes as requested, reclaim policy
/// Delete, the claim's class and volume mode, and `claimRef` already naming the claim.
pub fn provisioned_volume(volume_root: &str, claim: &PersistentVolumeClaim) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    let class = claim_class(claim);
    let annotations = BTreeMap::from([
        (
            PROVISIONED_BY_ANNOTATION.to_string(),
            PROVISIONER.to_string(),
        ),
        (
            BOUND_BY_CONTROLLER_ANNOTATION.to_string(),
            "yes".to_string(),
        ),
    ]);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(provisioned_name(claim)),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: request.map(|q| BTreeMap::from([("storage".to_string(), q)])),
            host_path: Some(HostPathVolumeSource {
                path: provisioned_path(volume_root, claim),
                type_: Some("DirectoryOrCreate".into()),
            }),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: (!class.is_empty()).then(|| class.to_string()),
            volume_mode: spec.volume_mode.clone(),
            claim_ref: Some(claim_reference(claim)),
            ..Default::default()
        }),
        status: None,
    }
}

impl VolumeReconciler {
    /// Create the claim's hostPath volume, unless it exists already (the binder then binds it
    /// when the volume's change queues the claim).
    pub(super) async fn provision(&self, claim: &Arc<PersistentVolumeClaim>) -> Result<()> {
        let name = provisioned_name(claim);
        if claim.metadata.uid.as_deref().unwrap_or_default().is_empty()
            || self.volumes.get("", &name).is_some()
        {
            return Ok(());
        }
        if super::matching::requested_bytes(claim).is_none() {
            self.ctx.recorder.event(
                claim.as_ref(),
                WARNING,
                "ProvisioningFailed",
                "spec.resources.requests.storage is missing or not a quantity such as 1Gi",
            );
            return Ok(());
        }
        let pv = provisioned_volume(&self.opts.volume_root, claim);
        match self.ctx.api.create_object(&pv).await {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        self.ctx.recorder.event(
            claim.as_ref(),
            NORMAL,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {name} using {PROVISIONER}"),
        );
        wait_for(&self.volumes, "", &name, |v| v.is_some()).await;
        Ok(())
    }
}
