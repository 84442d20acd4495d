//! The binder (Kubernetes' `syncClaim` and `syncVolume`): binds waiting claims to the best
//! volume, keeps both halves of a binding and their phases consistent, marks claims whose volume
//! is gone as Lost, and releases and reclaims volumes whose claim is gone.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};

use super::matching::{self, claim_class};
use super::{
    volume_name, wait_for, VolumeReconciler, BIND_COMPLETED_ANNOTATION,
    BOUND_BY_CONTROLLER_ANNOTATION, LOCAL_CLASS, PROVISIONED_BY_ANNOTATION, PROVISIONER,
    REMOVE_DIRECTORY_ANNOTATION,
};
use crate::error::Result;
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{ApiExt, DeleteOptions};

/// Whether the claim still waits for a volume: its binding is not complete and it is not being
/// deleted.
pub fn is_waiting(claim: &PersistentVolumeClaim) -> bool {
    !bind_completed(claim) && claim.metadata.deletion_timestamp.is_none()
}

fn bind_completed(claim: &PersistentVolumeClaim) -> bool {
    has_annotation(&claim.metadata.annotations, BIND_COMPLETED_ANNOTATION)
}

fn has_annotation(annotations: &Option<BTreeMap<String, String>>, key: &str) -> bool {
    annotations.as_ref().is_some_and(|a| a.contains_key(key))
}

fn set_annotation(annotations: &mut Option<BTreeMap<String, String>>, key: &str, value: &str) {
    annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
}

fn claim_phase(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn volume_phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn claim_ref_of(pv: &PersistentVolume) -> Option<&ObjectReference> {
    pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// The `claimRef` a volume bound to `claim` carries.
pub fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..Default::default()
    }
}

impl VolumeReconciler {
    /// One claim: bind it if it waits for a volume, else check its binding still holds.
    pub(super) async fn sync_claim(&self, claim: &Arc<PersistentVolumeClaim>) -> Result<()> {
        if bind_completed(claim) {
            return self.sync_bound_claim(claim).await;
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(name) = volume_name(claim) else {
            return self.sync_unbound_claim(claim).await;
        };
        // The user asked for a particular volume.
        let Some(pv) = self.volumes.get("", name) else {
            tracing::debug!(claim = ?claim.metadata.name, volume = name, "requested volume not found; waiting");
            return self.set_claim_status(claim, "Pending", None).await;
        };
        let failure = match claim_ref_of(&pv) {
            None => matching::unsatisfied_by(&pv, claim)
                .map(|why| format!("Cannot bind to requested volume \"{name}\": {why}")),
            Some(_) if matching::is_bound_to(&pv, claim) => None,
            Some(_) => Some(format!(
                "volume \"{name}\" already bound to a different claim."
            )),
        };
        match failure {
            None => self.bind(pv, claim).await,
            Some(msg) => {
                self.ctx
                    .recorder
                    .event(claim.as_ref(), WARNING, "FailedBinding", msg);
                self.set_claim_status(claim, "Pending", None).await
            }
        }
    }

    /// A claim without `spec.volumeName`: the best volume, else a provisioned one, else an event.
    async fn sync_unbound_claim(&self, claim: &Arc<PersistentVolumeClaim>) -> Result<()> {
        if let Some(pv) = matching::best_match(&self.volumes.list(), claim) {
            return self.bind(pv, claim).await;
        }
        if super::uses_local_provisioner(claim, self.opts.default_local) {
            return self.provision_for_consumer(claim).await;
        }
        let class = claim_class(claim);
        let msg = if class.is_empty() {
            "no persistent volumes available for this claim and no storage class is set".into()
        } else {
            format!(
                "no persistent volumes available for this claim and storage class \"{class}\" \
                 has no provisioner (rkube provisions only class \"{LOCAL_CLASS}\")"
            )
        };
        self.ctx
            .recorder
            .event(claim.as_ref(), NORMAL, "FailedBinding", msg);
        self.set_claim_status(claim, "Pending", None).await
    }

    /// A claim whose binding was completed: keep it, or mark the claim Lost.
    async fn sync_bound_claim(&self, claim: &Arc<PersistentVolumeClaim>) -> Result<()> {
        let Some(name) = volume_name(claim) else {
            return self
                .claim_lost(claim, "ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
                .await;
        };
        let Some(pv) = self.volumes.get("", name) else {
            return self
                .claim_lost(
                    claim,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
        };
        match claim_ref_of(&pv) {
            // The volume lost its half of the binding (a user edit): restore it.
            None => self.bind(pv, claim).await,
            Some(r) if r.uid == claim.metadata.uid => self.bind(pv, claim).await,
            Some(_) => {
                self.claim_lost(
                    claim,
                    "ClaimMisbound",
                    "Two claims are bound to the same volume, this one is bound incorrectly",
                )
                .await
            }
        }
    }

    async fn claim_lost(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
        reason: &str,
        msg: &str,
    ) -> Result<()> {
        if claim_phase(claim) != Some("Lost") {
            self.ctx
                .recorder
                .event(claim.as_ref(), WARNING, reason, msg);
        }
        self.set_claim_status(claim, "Lost", None).await
    }

    /// Bind both sides, writing only what differs: the volume's `claimRef`, the volume's phase,
    /// the claim's `volumeName` and annotations, the claim's status (Kubernetes' order, so a
    /// crash in between leaves a state the next sync completes).
    async fn bind(
        &self,
        pv: Arc<PersistentVolume>,
        claim: &Arc<PersistentVolumeClaim>,
    ) -> Result<()> {
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let claim_uid = claim.metadata.uid.clone();
        let mut pv = pv;
        let bound = claim_ref_of(&pv).is_some_and(|r| {
            r.uid == claim_uid
                && r.namespace == claim.metadata.namespace
                && r.name == claim.metadata.name
        });
        if !bound {
            let mut new = (*pv).clone();
            let spec = new.spec.get_or_insert_with(Default::default);
            if spec.claim_ref.is_none() {
                set_annotation(
                    &mut new.metadata.annotations,
                    BOUND_BY_CONTROLLER_ANNOTATION,
                    "yes",
                );
            }
            spec.claim_ref = Some(claim_reference(claim));
            pv = Arc::new(self.ctx.api.update_object(&new).await?);
            wait_for(&self.volumes, "", &pv_name, |v| {
                v.and_then(claim_ref_of).is_some_and(|r| r.uid == claim_uid)
            })
            .await;
        }
        if volume_phase(&pv) != Some("Bound") {
            pv = Arc::new(self.set_volume_phase(&pv, "Bound").await?);
        }
        let mut claim = claim.clone();
        if volume_name(&claim) != Some(pv_name.as_str()) || !bind_completed(&claim) {
            let mut new = (*claim).clone();
            let spec = new.spec.get_or_insert_with(Default::default);
            if volume_name(&claim).is_none() {
                set_annotation(
                    &mut new.metadata.annotations,
                    BOUND_BY_CONTROLLER_ANNOTATION,
                    "yes",
                );
            }
            spec.volume_name = Some(pv_name.clone());
            set_annotation(
                &mut new.metadata.annotations,
                BIND_COMPLETED_ANNOTATION,
                "yes",
            );
            claim = Arc::new(self.ctx.api.update_object(&new).await?);
            let (ns, name) = (
                claim.metadata.namespace.clone(),
                claim.metadata.name.clone(),
            );
            wait_for(
                &self.claims,
                ns.as_deref().unwrap_or_default(),
                name.as_deref().unwrap_or_default(),
                |c| c.is_some_and(|c| volume_name(c) == Some(pv_name.as_str())),
            )
            .await;
        }
        self.set_claim_status(&claim, "Bound", Some(&pv)).await
    }

    /// Set the claim's phase (and, for a bound claim, the access modes and capacity of its
    /// volume) when they differ.
    pub(super) async fn set_claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        pv: Option<&PersistentVolume>,
    ) -> Result<()> {
        let mut status = claim.status.clone().unwrap_or_default();
        status.phase = Some(phase.into());
        if let Some(spec) = pv.and_then(|v| v.spec.as_ref()) {
            status.access_modes = spec.access_modes.clone();
            status.capacity = spec.capacity.clone();
        }
        if claim.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut new = claim.clone();
        new.status = Some(status);
        self.ctx.api.update_object_status(&new).await?;
        Ok(())
    }

    async fn set_volume_phase(
        &self,
        pv: &PersistentVolume,
        phase: &str,
    ) -> Result<PersistentVolume> {
        let mut new = pv.clone();
        new.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        self.ctx.api.update_object_status(&new).await
    }

    /// One volume: Available while unclaimed, Bound while its claim is bound to it, Released and
    /// reclaimed once its claim is gone.
    pub(super) async fn sync_volume(&self, pv: &Arc<PersistentVolume>) -> Result<()> {
        if pv.metadata.deletion_timestamp.is_some() {
            // Deleted, and held by a finalizer (the local provisioner's waits for the agent of
            // its node to remove the directory): nothing left to bind or reclaim.
            return Ok(());
        }
        let Some(r) = claim_ref_of(pv) else {
            return self.ensure_volume_phase(pv, "Available").await;
        };
        if r.uid.as_deref().unwrap_or_default().is_empty() {
            // Pre-bound by a user to a claim by name: available to that claim only.
            return self.ensure_volume_phase(pv, "Available").await;
        }
        let claim = self
            .claims
            .get(
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default(),
            )
            .filter(|c| c.metadata.uid == r.uid);
        let Some(claim) = claim else {
            return self.release(pv).await;
        };
        let pv_name = pv.metadata.name.as_deref().unwrap_or_default();
        match volume_name(&claim) {
            // The claim's sync completes the binding (the claim was queued with this volume).
            None => Ok(()),
            Some(n) if n == pv_name => self.ensure_volume_phase(pv, "Bound").await,
            Some(_) => self.unbind_from_misbound_claim(pv).await,
        }
    }

    async fn ensure_volume_phase(&self, pv: &PersistentVolume, phase: &str) -> Result<()> {
        if volume_phase(pv) != Some(phase) {
            self.set_volume_phase(pv, phase).await?;
        }
        Ok(())
    }

    /// The volume's claim chose another volume: a provisioned volume with policy Delete is
    /// released and deleted; one the controller bound is unbound; one a user pre-bound keeps
    /// its claim's name but not its uid, as in Kubernetes.
    async fn unbind_from_misbound_claim(&self, pv: &Arc<PersistentVolume>) -> Result<()> {
        let provisioned = has_annotation(&pv.metadata.annotations, PROVISIONED_BY_ANNOTATION);
        if provisioned && reclaim_policy(pv) == "Delete" {
            return self.release(pv).await;
        }
        let mut new = (**pv).clone();
        let by_controller =
            has_annotation(&new.metadata.annotations, BOUND_BY_CONTROLLER_ANNOTATION);
        let spec = new.spec.get_or_insert_with(Default::default);
        if by_controller {
            spec.claim_ref = None;
            if let Some(a) = new.metadata.annotations.as_mut() {
                a.remove(BOUND_BY_CONTROLLER_ANNOTATION);
            }
        } else if let Some(r) = spec.claim_ref.as_mut() {
            r.uid = None;
            r.resource_version = None;
        }
        let updated = self.ctx.api.update_object(&new).await?;
        self.set_volume_phase(&updated, "Available").await?;
        Ok(())
    }

    /// The volume's claim is gone: Released, then its reclaim policy. Retain keeps it Released;
    /// Recycle (deprecated, and without a recycler in rkube) does the same with an event; Delete
    /// deletes the object.
    async fn release(&self, pv: &Arc<PersistentVolume>) -> Result<()> {
        let mut pv = pv.clone();
        if !matches!(volume_phase(&pv), Some("Released") | Some("Failed")) {
            pv = Arc::new(self.set_volume_phase(&pv, "Released").await?);
            if reclaim_policy(&pv) == "Recycle" {
                self.ctx.recorder.event(
                    pv.as_ref(),
                    WARNING,
                    "RecycleDeprecated",
                    "the Recycle reclaim policy is deprecated and unsupported; the volume stays \
                     Released as with Retain (scrub it and clear its claimRef to reuse it)",
                );
            }
        }
        match reclaim_policy(&pv) {
            "Delete" => self.delete_volume(&pv).await,
            _ => Ok(()),
        }
    }

    /// Delete a released volume. A hostPath volume this provisioner made first gets
    /// [`REMOVE_DIRECTORY_ANNOTATION`]: its [`super::DIRECTORY_FINALIZER`] then keeps the object
    /// until the agent of the volume's node has removed that directory (the directory is on
    /// that node's machine, not necessarily this server's). Other volumes lose only their
    /// object: rkube has no deleter plugins, so their data stays wherever it is (Kubernetes
    /// would mark them Failed for want of a deleter instead).
    async fn delete_volume(&self, pv: &Arc<PersistentVolume>) -> Result<()> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let mut pv = pv.clone();
        let ours = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY_ANNOTATION))
            .is_some_and(|p| p == PROVISIONER);
        let host_path = pv
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| h.path.clone());
        if let (true, Some(path)) = (ours, host_path) {
            if !has_annotation(&pv.metadata.annotations, REMOVE_DIRECTORY_ANNOTATION) {
                let mut new = (*pv).clone();
                set_annotation(
                    &mut new.metadata.annotations,
                    REMOVE_DIRECTORY_ANNOTATION,
                    &path,
                );
                pv = Arc::new(self.ctx.api.update_object(&new).await?);
            }
        }
        let opts = DeleteOptions {
            precondition_uid: pv.metadata.uid.clone(),
            ..Default::default()
        };
        self.ctx
            .api
            .delete_object::<PersistentVolume>("", &name, opts)
            .await?;
        tracing::info!(volume = %name, "deleted released volume (reclaim policy Delete)");
        wait_for(&self.volumes, "", &name, |v| {
            v.is_none_or(|v| v.metadata.deletion_timestamp.is_some())
        })
        .await;
        Ok(())
    }
}
