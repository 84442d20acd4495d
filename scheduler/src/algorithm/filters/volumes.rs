//! VolumeBinding: a bound claim's PersistentVolume must exist and its node affinity must match
//! the node; a claim waiting for its first consumer (one the local provisioner serves and no
//! existing volume fits, see `rkube_controllers::controllers::volume`) lets the pod go to any
//! node, and the scheduler records the chosen node in the claim's
//! `volume.kubernetes.io/selected-node` annotation, where the volume is then provisioned; a
//! claim that already has a selected node (its volume is being provisioned there) restricts
//! the pod to that node. Any other unbound claim is an unbound immediate claim, which the PV
//! controller binds before the pod can be scheduled.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use rkube_controllers::controllers::volume::{
    best_match, selected_node, waits_for_first_consumer, VolumeOptions,
};

use super::Reason;
use crate::algorithm::pod_info::namespace_of;
use crate::algorithm::selectors::NodeMatcher;
use crate::algorithm::snapshot::{NodeInfo, Snapshot};

/// What one claim requires of a node.
pub(crate) enum VolumeRequirement {
    /// The bound volume's `spec.nodeAffinity.required`.
    NodeAffinity(NodeMatcher),
    /// The claim is bound to a volume that does not exist: no node will do.
    MissingVolume,
    /// The claim waits for a volume being provisioned on this node.
    SelectedNode(String),
}

/// What the pod's claims require: of every node, and of the scheduler once it has chosen one.
#[derive(Default)]
pub(crate) struct VolumeState {
    pub requirements: Vec<VolumeRequirement>,
    /// Claims (in the pod's namespace) waiting for their first consumer without a selected
    /// node: the chosen node is written into them before the pod is bound.
    pub claims_to_select: Vec<String>,
}

/// kube-scheduler's VolumeBinding PreFilter: the pod's claims must exist, not be lost or being
/// deleted, and be bound or wait for their first consumer; otherwise the message that rejects
/// every node.
pub(crate) fn pre_filter(pod: &Pod, snapshot: &Snapshot) -> Result<VolumeState, String> {
    let namespace = namespace_of(pod);
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut state = VolumeState::default();
    let mut unbound = false;
    // The volumes an unbound claim could be bound to, built on first need.
    let mut candidates: Option<Vec<Arc<PersistentVolume>>> = None;
    let default_local = VolumeOptions::default().default_local;
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for volume in volumes {
        let (claim_name, ephemeral) = match (&volume.persistent_volume_claim, &volume.ephemeral) {
            (Some(source), _) => (source.claim_name.clone(), false),
            (None, Some(_)) => (format!("{pod_name}-{}", volume.name), true),
            (None, None) => continue,
        };
        let Some(claim) = snapshot.claim(namespace, &claim_name) else {
            return Err(if ephemeral {
                format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim \
                     {claim_name:?}"
                )
            } else {
                format!("persistentvolumeclaim {claim_name:?} not found")
            });
        };
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|name| !name.is_empty());
        if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
            return Err(format!(
                "persistentvolumeclaim {claim_name:?} bound to non-existent persistentvolume {:?}",
                volume_name.unwrap_or_default()
            ));
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "persistentvolumeclaim {claim_name:?} is being deleted"
            ));
        }
        let Some(volume_name) = volume_name else {
            if !waits_for_first_consumer(claim, default_local) {
                unbound = true;
            } else if let Some(node) = selected_node(claim) {
                state
                    .requirements
                    .push(VolumeRequirement::SelectedNode(node.to_string()));
            } else if best_match(
                candidates
                    .get_or_insert_with(|| snapshot.volumes().cloned().map(Arc::new).collect()),
                claim,
            )
            .is_some()
            {
                // The binder binds it to that volume at once (wherever the volume is).
                unbound = true;
            } else if !state.claims_to_select.contains(&claim_name) {
                state.claims_to_select.push(claim_name);
            }
            continue;
        };
        match snapshot.volume(volume_name) {
            None => state.requirements.push(VolumeRequirement::MissingVolume),
            Some(pv) => {
                let required = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_affinity.as_ref())
                    .and_then(|a| a.required.as_ref());
                if let Some(required) = required {
                    state
                        .requirements
                        .push(VolumeRequirement::NodeAffinity(NodeMatcher::new(
                            &required.node_selector_terms,
                        )));
                }
            }
        }
    }
    if unbound {
        return Err("pod has unbound immediate PersistentVolumeClaims".to_string());
    }
    Ok(state)
}

/// VolumeBinding Filter, in the pod's volume order.
pub(crate) fn filter(requirements: &[VolumeRequirement], node: &NodeInfo) -> Result<(), Reason> {
    for requirement in requirements {
        match requirement {
            VolumeRequirement::MissingVolume => return Err(Reason::BoundToMissingVolume),
            VolumeRequirement::NodeAffinity(matcher) => {
                if !matcher.matches(node.name(), node.labels()) {
                    return Err(Reason::VolumeNodeAffinityConflict);
                }
            }
            VolumeRequirement::SelectedNode(name) => {
                if node.name() != name {
                    return Err(Reason::VolumeNodeAffinityConflict);
                }
            }
        }
    }
    Ok(())
}
