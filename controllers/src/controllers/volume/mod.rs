//! The PersistentVolume controller (Kubernetes' `pkg/controller/volume/persistentvolume`,
//! simplified): binds PersistentVolumeClaims to PersistentVolumes, releases and reclaims volumes
//! whose claims are gone, and provisions hostPath volumes for claims of the `local` class.
//!
//! Scope on a single-machine cluster: provisioned volumes are hostPath directories on whatever
//! node runs the pod and carry no node affinity; a multi-machine cluster needs node affinity on
//! them (or a shared filesystem) so a pod follows its data. Deleting a provisioned volume marks
//! the PersistentVolume with [`REMOVE_DIRECTORY_ANNOTATION`] before removing the object; removing
//! the directory itself is the node agent's job and is not done here.

mod binder;
mod matching;
mod provisioner;
#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::error::Result;
use crate::runtime::{Action, Change, Context, Controller, Informer, ObjectKey, Reconciler};

pub use matching::{parse_bytes, parse_scaled};

/// The storage class the local provisioner serves (rkube serves no StorageClass objects, so the
/// class is a constant rather than a looked-up provisioner).
pub const LOCAL_CLASS: &str = "local";
/// The provisioner name recorded on the volumes it creates.
pub const PROVISIONER: &str = "rkube.io/local";
/// Kubernetes' annotation naming the provisioner of a dynamically provisioned volume.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// Kubernetes' annotation on a claim whose binding is complete.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Kubernetes' annotation on an object whose half of the binding the controller wrote.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// Set (to the directory) on a provisioned hostPath volume just before the reclaim policy Delete
/// removes it: the node agent that sees the deletion should remove that directory.
pub const REMOVE_DIRECTORY_ANNOTATION: &str = "rkube.io/remove-directory";

/// The key namespace of PersistentVolume keys: the controller's queue holds claims as
/// `namespace/name` and cluster-scoped volumes as `pv|/name` (no namespace contains `|`).
const PV_KEY_NAMESPACE: &str = "pv|";

/// How long a reconcile waits for the cache to show its own writes.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// The PersistentVolume controller's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeOptions {
    /// The directory under which provisioned hostPath volumes are created.
    pub volume_root: String,
    /// Whether claims without a storage class that no existing volume fits are provisioned as
    /// if their class were `local` (rkube's default storage class).
    pub default_local: bool,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            volume_root: crate::setup::DEFAULT_VOLUME_ROOT.into(),
            default_local: true,
        }
    }
}

/// The PersistentVolume controller: binder, reclaimer and local provisioner in one queue.
///
/// Keys are claims (`namespace/name`) and volumes (see [`volume_key`]). A claim change queues
/// the claim and the volume it names; a volume change queues the volume and the claim in its
/// `claimRef`, and — when the volume is unclaimed — every claim still waiting for a volume.
/// One worker, as in Kubernetes, so two claims never race for the same volume in this process
/// (the volume's resourceVersion guards against everyone else).
pub fn controller(ctx: &Context, opts: VolumeOptions) -> Controller {
    let reconciler = VolumeReconciler {
        ctx: ctx.clone(),
        claims: ctx.informers.get::<PersistentVolumeClaim>(),
        volumes: ctx.informers.get::<PersistentVolume>(),
        opts,
    };
    let claims = reconciler.claims.clone();
    let volumes = reconciler.volumes.clone();
    let resync = {
        let (claims, volumes) = (claims.clone(), volumes.clone());
        move || {
            let mut keys: Vec<ObjectKey> =
                volumes.keys().iter().map(|k| volume_key(&k.name)).collect();
            keys.extend(claims.keys());
            keys
        }
    };
    let c = Controller::with_resync("volume", reconciler, 1, resync);
    {
        let queue = c.queue.clone();
        claims.on_change(move |change: &Change<PersistentVolumeClaim>| {
            queue.add(ObjectKey::of(change.object().as_ref()));
            for claim in std::iter::once(change.object()).chain(change.old()) {
                if let Some(name) = volume_name(claim) {
                    queue.add(volume_key(name));
                }
            }
        });
    }
    {
        let queue = c.queue.clone();
        volumes.on_change(move |change: &Change<PersistentVolume>| {
            let pv = change.object();
            queue.add(volume_key(pv.metadata.name.as_deref().unwrap_or_default()));
            for v in std::iter::once(pv).chain(change.old()) {
                if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                    let (ns, name) = (r.namespace.as_deref(), r.name.as_deref());
                    queue.add(ObjectKey::new(
                        ns.unwrap_or_default(),
                        name.unwrap_or_default(),
                    ));
                }
            }
            let unclaimed = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
            if unclaimed && !matches!(change, Change::Deleted(_)) {
                for claim in claims.list().iter().filter(|c| binder::is_waiting(c)) {
                    queue.add(ObjectKey::of(claim.as_ref()));
                }
            }
        });
    }
    c
}

/// The work-queue key of a PersistentVolume.
pub fn volume_key(name: &str) -> ObjectKey {
    ObjectKey::new(PV_KEY_NAMESPACE, name)
}

fn volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty())
}

struct VolumeReconciler {
    ctx: Context,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    opts: VolumeOptions,
}

#[async_trait::async_trait]
impl Reconciler for VolumeReconciler {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if key.namespace == PV_KEY_NAMESPACE {
            match self.volumes.get("", &key.name) {
                Some(pv) => self.sync_volume(&pv).await?,
                None => return Ok(Action::Done),
            }
        } else if let Some(claim) = self.claims.get(&key.namespace, &key.name) {
            self.sync_claim(&claim).await?;
        }
        Ok(Action::Done)
    }
}

/// Wait until the cache shows `pred` of the named object, logging when it does not in time (the
/// writes are guarded by resourceVersions, so a lagging cache costs a retry, not a double bind).
async fn wait_for<K: crate::runtime::Object>(
    informer: &Informer<K>,
    ns: &str,
    name: &str,
    pred: impl Fn(Option<&K>) -> bool,
) {
    let seen = informer
        .wait_until(CACHE_WAIT, |c| pred(c.get(ns, name).as_deref()))
        .await;
    if !seen {
        tracing::debug!(
            kind = K::KIND,
            ns,
            name,
            "cache did not show the write in time"
        );
    }
}
