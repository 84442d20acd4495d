//! The Recreate strategy (Kubernetes' `recreate.go`): scale every old ReplicaSet to zero, wait
//! until their pods are gone, then create or scale up the new ReplicaSet.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use crate::error::Result;

use super::helpers::status_replicas;
use super::status;
use super::sync::{Rollout, Sets};

impl Rollout<'_> {
    /// One step of a Recreate rollout. `pods` are the Deployment's pods with the uid of their
    /// ReplicaSet.
    pub async fn rollout_recreate(
        &mut self,
        rs_list: Vec<ReplicaSet>,
        pods: &[(String, Arc<Pod>)],
    ) -> Result<()> {
        // The new ReplicaSet is not created yet, so that nothing scales up before the old
        // pods are gone.
        let Some(mut sets) = self.new_and_old(rs_list, false).await? else {
            return Ok(());
        };
        let mut scaled_down = false;
        for rs in sets.active_old() {
            let (scaled, rs) = self.scale_to(&rs, 0).await?;
            scaled_down |= scaled;
            sets.put(rs);
        }
        if scaled_down || old_pods_running(&sets, pods) {
            return self.sync_rollout_status(&sets).await;
        }
        let new_rs = match sets.new.clone() {
            Some(rs) => rs,
            None => match self.new_and_old(sets.old.clone(), true).await? {
                Some(Sets { new: Some(rs), .. }) => rs,
                _ => return Ok(()),
            },
        };
        sets.new = Some(new_rs.clone());
        let (_, rs) = self.scale_to(&new_rs, self.params.replicas).await?;
        sets.put(rs);
        if status::deployment_complete(&self.d, &self.params, &self.status()) {
            self.cleanup(&sets.old).await?;
        }
        self.sync_rollout_status(&sets).await
    }
}

/// Whether an old ReplicaSet still reports replicas or any pod outside the new ReplicaSet has
/// not finished (a pod in an unknown state counts as running).
fn old_pods_running(sets: &Sets, pods: &[(String, Arc<Pod>)]) -> bool {
    if sets.old.iter().map(status_replicas).sum::<i32>() > 0 {
        return true;
    }
    let new_uid = sets.new.as_ref().and_then(|rs| rs.metadata.uid.as_deref());
    pods.iter()
        .filter(|(owner, _)| Some(owner.as_str()) != new_uid)
        .any(|(_, pod)| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded") | Some("Failed"))
        })
}
