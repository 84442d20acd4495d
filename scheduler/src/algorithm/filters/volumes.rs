//! VolumeBinding for claims that are already bound: the claim must exist and be bound, and the
//! node must match its PersistentVolume's node affinity.
//!
//! Dynamic provisioning and binding of unbound claims (`WaitForFirstConsumer`) are not modelled:
//! every unbound claim is treated as an unbound immediate claim, which the PV controller has
//! to bind before the pod can be scheduled.

use k8s_openapi::api::core::v1::Pod;

use super::Reason;
use crate::algorithm::pod_info::namespace_of;
use crate::algorithm::selectors::NodeMatcher;
use crate::algorithm::snapshot::{NodeInfo, Snapshot};

/// What one bound claim requires of a node.
pub(crate) enum VolumeRequirement {
    /// The bound volume's `spec.nodeAffinity.required`.
    NodeAffinity(NodeMatcher),
    /// The claim is bound to a volume that does not exist: no node will do.
    MissingVolume,
}

/// kube-scheduler's VolumeBinding PreFilter: the pod's claims must exist, not be lost or being
/// deleted, and be bound; otherwise the message that rejects every node.
pub(crate) fn pre_filter(pod: &Pod, snapshot: &Snapshot) -> Result<Vec<VolumeRequirement>, String> {
    let namespace = namespace_of(pod);
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut requirements = Vec::new();
    let mut unbound = false;
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
            unbound = true;
            continue;
        };
        match snapshot.volume(volume_name) {
            None => requirements.push(VolumeRequirement::MissingVolume),
            Some(pv) => {
                let required = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_affinity.as_ref())
                    .and_then(|a| a.required.as_ref());
                if let Some(required) = required {
                    requirements.push(VolumeRequirement::NodeAffinity(NodeMatcher::new(
                        &required.node_selector_terms,
                    )));
                }
            }
        }
    }
    if unbound {
        return Err("pod has unbound immediate PersistentVolumeClaims".to_string());
    }
    Ok(requirements)
}

/// VolumeBinding Filter for bound claims, in the pod's volume order.
pub(crate) fn filter(requirements: &[VolumeRequirement], node: &NodeInfo) -> Result<(), Reason> {
    for requirement in requirements {
        match requirement {
            VolumeRequirement::MissingVolume => return Err(Reason::BoundToMissingVolume),
            VolumeRequirement::NodeAffinity(matcher) => {
                if !matcher.matches(node.name(), node.labels()) {
                    return Err(Reason::VolumeNodeAffinityConflict);
                }
            }
        }
    }
    Ok(())
}
