//! The local provisioner: for a claim no existing volume fits, once the scheduler has chosen the
//! node of its first pod (`WaitForFirstConsumer`, [`SELECTED_NODE_ANNOTATION`]), a hostPath
//! PersistentVolume under the configured volume root on that node, with node affinity to it and
//! pre-bound to the claim (Kubernetes' `provisionClaimOperation`) so the binder binds exactly
//! this claim to it. The node's agent creates the directory when it mounts the volume (`type:
//! DirectoryOrCreate`) and removes it when the volume is deleted ([`DIRECTORY_FINALIZER`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::binder::claim_reference;
use super::matching::claim_class;
use super::{
    selected_node, wait_for, VolumeReconciler, BOUND_BY_CONTROLLER_ANNOTATION, DIRECTORY_FINALIZER,
    HOSTNAME_LABEL, PROVISIONED_BY_ANNOTATION, PROVISIONER, SELECTED_NODE_ANNOTATION,
};
use crate::error::{Error, Result};
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

/// The `kubernetes.io/hostname` of a node: its label, else its name (agents set the label to
/// the node name).
pub fn hostname_of(node: &Node) -> &str {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HOSTNAME_LABEL))
        .or(node.metadata.name.as_ref())
        .map(String::as_str)
        .unwrap_or_default()
}

/// The node affinity of a volume on the node whose `kubernetes.io/hostname` is `hostname`.
pub fn node_affinity(hostname: &str) -> VolumeNodeAffinity {
    VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: HOSTNAME_LABEL.into(),
                    operator: "In".into(),
                    values: Some(vec![hostname.into()]),
                }]),
                ..Default::default()
            }],
        }),
    }
}

/// The volume provisioned for `claim` on the node whose `kubernetes.io/hostname` is `hostname`:
/// capacity and access modes as requested, reclaim policy Delete, the claim's class and volume
/// mode, node affinity to that node, [`DIRECTORY_FINALIZER`], and `claimRef` already naming the
/// claim.
pub fn provisioned_volume(
    volume_root: &str,
    claim: &PersistentVolumeClaim,
    hostname: &str,
) -> PersistentVolume {
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
            finalizers: Some(vec![DIRECTORY_FINALIZER.into()]),
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
            node_affinity: Some(node_affinity(hostname)),
            claim_ref: Some(claim_reference(claim)),
            ..Default::default()
        }),
        status: None,
    }
}

impl VolumeReconciler {
    /// A claim the local provisioner serves and no volume fits: wait for the scheduler to choose
    /// the node of its first pod, then provision the volume there. A chosen node that no longer
    /// exists is forgotten (the annotation removed), as Kubernetes' provisioners do, so the
    /// claim's next pod is scheduled afresh.
    pub(super) async fn provision_for_consumer(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
    ) -> Result<()> {
        let Some(node_name) = selected_node(claim) else {
            self.ctx.recorder.event(
                claim.as_ref(),
                NORMAL,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            );
            return self.set_claim_status(claim, "Pending", None).await;
        };
        if !self.nodes.has_synced()
            && !self
                .nodes
                .wait_until(super::CACHE_WAIT, |n| n.has_synced())
                .await
        {
            return Err(Error::Invalid(
                "the node cache has not been listed yet; cannot check the selected node".into(),
            ));
        }
        match self.nodes.get("", node_name) {
            Some(node) => self.provision(claim, &node).await,
            None => self.forget_selected_node(claim, node_name).await,
        }
    }

    /// Remove the claim's selected node, which does not exist.
    async fn forget_selected_node(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
        node_name: &str,
    ) -> Result<()> {
        let mut new = (**claim).clone();
        if let Some(a) = new.metadata.annotations.as_mut() {
            a.remove(SELECTED_NODE_ANNOTATION);
        }
        self.ctx.api.update_object(&new).await?;
        self.ctx.recorder.event(
            claim.as_ref(),
            WARNING,
            "ProvisioningFailed",
            format!(
                "node {node_name:?} selected for this claim does not exist; \
                 waiting for its next pod to be scheduled"
            ),
        );
        Ok(())
    }

    /// Create the claim's hostPath volume on `node`, unless it exists already (the binder then
    /// binds it when the volume's change queues the claim).
    async fn provision(&self, claim: &Arc<PersistentVolumeClaim>, node: &Node) -> Result<()> {
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
        let pv = provisioned_volume(&self.opts.volume_root, claim, hostname_of(node));
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
