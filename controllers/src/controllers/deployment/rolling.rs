//! The RollingUpdate strategy (Kubernetes' `rolling.go`): grow the new ReplicaSet while the
//! total stays within `replicas + maxSurge`, shrink the old ones while at least
//! `replicas - maxUnavailable` pods stay available (by the ReplicaSets' status), shrinking
//! old ReplicaSets' unavailable pods first.

use k8s_openapi::api::apps::v1::ReplicaSet;

use crate::error::Result;

use super::helpers::{self, available_replicas, spec_replicas};
use super::status;
use super::sync::{Rollout, Sets};

impl Rollout<'_> {
    /// One step of a rolling update: scale up if possible, else scale down if possible, else
    /// clean up old revisions once complete; then the status with its progress estimate.
    pub async fn rollout_rolling(&mut self, rs_list: Vec<ReplicaSet>) -> Result<()> {
        let Some(mut sets) = self.new_and_old(rs_list, true).await? else {
            return Ok(());
        };
        if self.reconcile_new_replica_set(&mut sets).await? {
            return self.sync_rollout_status(&sets).await;
        }
        if self.reconcile_old_replica_sets(&mut sets).await? {
            return self.sync_rollout_status(&sets).await;
        }
        if status::deployment_complete(&self.d, &self.params, &self.status()) {
            self.cleanup(&sets.old).await?;
        }
        self.sync_rollout_status(&sets).await
    }

    /// Size the new ReplicaSet: down to `replicas` if above, else up as far as the surge allows.
    async fn reconcile_new_replica_set(&mut self, sets: &mut Sets) -> Result<bool> {
        let Some(new_rs) = sets.new.clone() else {
            return Ok(false);
        };
        let (current, desired) = (spec_replicas(&new_rs), self.params.replicas);
        if current == desired {
            return Ok(false);
        }
        let target = if current > desired {
            desired
        } else {
            helpers::new_rs_new_replicas(&self.params, &sets.all(), &new_rs)
        };
        let (scaled, rs) = self.scale_to(&new_rs, target).await?;
        sets.put(rs);
        Ok(scaled)
    }

    /// Shrink old ReplicaSets as far as availability allows. The room is
    /// `all pods - minAvailable - unavailable new pods`: unavailable new pods must not let the
    /// old ones shrink further (they may never become available).
    async fn reconcile_old_replica_sets(&mut self, sets: &mut Sets) -> Result<bool> {
        let old_pods: i32 = sets.active_old().iter().map(spec_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = helpers::sum(&sets.all(), spec_replicas);
        let min_available = self.params.replicas - self.params.max_unavailable;
        let new_unavailable = sets
            .new
            .as_ref()
            .map_or(0, |rs| spec_replicas(rs) - available_replicas(rs));
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self
            .cleanup_unhealthy_replicas(sets, max_scaled_down)
            .await?;
        let scaled = self.scale_down_old_replica_sets(sets).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Remove old ReplicaSets' unavailable replicas (oldest ReplicaSet first), at most
    /// `max_cleanup`: they cost no availability and would otherwise block the rollout.
    async fn cleanup_unhealthy_replicas(
        &mut self,
        sets: &mut Sets,
        max_cleanup: i32,
    ) -> Result<i32> {
        let mut total = 0;
        for rs in sets.active_old() {
            if total >= max_cleanup {
                break;
            }
            let unhealthy = spec_replicas(&rs) - available_replicas(&rs);
            if unhealthy <= 0 {
                continue;
            }
            let down = (max_cleanup - total).min(unhealthy);
            let (_, rs) = self.scale_to(&rs, spec_replicas(&rs) - down).await?;
            sets.put(rs);
            total += down;
        }
        Ok(total)
    }

    /// Shrink old ReplicaSets (oldest first) by the available pods beyond `minAvailable`.
    async fn scale_down_old_replica_sets(&mut self, sets: &mut Sets) -> Result<i32> {
        let min_available = self.params.replicas - self.params.max_unavailable;
        let available = helpers::sum(&sets.all(), available_replicas);
        if available <= min_available {
            return Ok(0);
        }
        let wanted = available - min_available;
        let mut total = 0;
        for rs in sets.active_old() {
            if total >= wanted {
                break;
            }
            let down = spec_replicas(&rs).min(wanted - total);
            let (_, rs) = self.scale_to(&rs, spec_replicas(&rs) - down).await?;
            sets.put(rs);
            total += down;
        }
        Ok(total)
    }
}
