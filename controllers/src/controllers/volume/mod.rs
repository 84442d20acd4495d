//! The PersistentVolume controller (Kubernetes' `pkg/controller/volume/persistentvolume`,
//! simplified): binds PersistentVolumeClaims to PersistentVolumes, releases and reclaims volumes
//! whose claims are gone, and provisions hostPath volumes for claims of the `local` class.
//!
//! The local provisioner binds like a StorageClass with `volumeBindingMode:
//! WaitForFirstConsumer`: a claim no existing volume fits waits until the scheduler places its
//! first pod and writes the node into the claim's [`SELECTED_NODE_ANNOTATION`]; the volume is
//! then a hostPath directory on that node, with `spec.nodeAffinity` naming the node, so every
//! later pod of the claim is scheduled there (or stays Pending when the node is gone). Deleting a
//! provisioned volume (reclaim policy Delete) marks it with [`REMOVE_DIRECTORY_ANNOTATION`] and
//! deletes it; its [`DIRECTORY_FINALIZER`] keeps the object until the agent of its node has
//! removed the directory.

mod binder;
mod matching;
mod provisioner;
#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};

use crate::error::Result;
use crate::runtime::{Action, Change, Context, Controller, Informer, ObjectKey, Reconciler};

pub use matching::{best_match, parse_bytes, parse_scaled};

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
/// deletes it: the agent of the volume's node removes that directory, then the
/// [`DIRECTORY_FINALIZER`].
pub const REMOVE_DIRECTORY_ANNOTATION: &str = "rkube.io/remove-directory";
/// The finalizer of the volumes the local provisioner creates: the agent of the node in the
/// volume's node affinity removes it once it has removed the directory (when the volume has
/// [`REMOVE_DIRECTORY_ANNOTATION`]), so the directory is removed on the machine that holds it.
pub const DIRECTORY_FINALIZER: &str = "rkube.io/local-volume-directory";
/// Kubernetes' annotation the scheduler writes on a claim waiting for its first consumer: the
/// node chosen for the claim's first pod, where the local provisioner creates the volume.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The node label the provisioned volumes' node affinity names.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

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

/// Whether the local provisioner serves this claim: its class is [`LOCAL_CLASS`], or it has
/// none and `default_local` ([`VolumeOptions::default_local`]) makes `local` the default class.
pub fn uses_local_provisioner(claim: &PersistentVolumeClaim, default_local: bool) -> bool {
    let class = matching::claim_class(claim);
    class == LOCAL_CLASS || (class.is_empty() && default_local)
}

/// Whether the claim waits for its first consumer (`WaitForFirstConsumer`): it is not bound, names
/// no volume, is not being deleted, and the local provisioner serves it. Such a claim does not
/// keep a pod from being scheduled; the scheduler chooses the node and records it in
/// [`SELECTED_NODE_ANNOTATION`]. (A claim that an existing volume fits is bound by the binder
/// at once, whatever its class.)
pub fn waits_for_first_consumer(claim: &PersistentVolumeClaim, default_local: bool) -> bool {
    binder::is_waiting(claim)
        && volume_name(claim).is_none()
        && uses_local_provisioner(claim, default_local)
}

/// The node in the claim's [`SELECTED_NODE_ANNOTATION`], if any.
pub fn selected_node(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE_ANNOTATION))
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

/// The PersistentVolume controller: binder, reclaimer and local provisioner in one queue.
///
/// Keys are claims (`namespace/name`) and volumes (see [`volume_key`]). A claim change queues
/// the claim and the volume it names; a volume change queues the volume and the claim in its
/// `claimRef`, and — when the volume is unclaimed — every claim still waiting for a volume; a
/// deleted node queues the claims waiting to be provisioned on it.
/// One worker, as in Kubernetes, so two claims never race for the same volume in this process
/// (the volume's resourceVersion guards against everyone else).
pub fn controller(ctx: &Context, opts: VolumeOptions) -> Controller {
    let reconciler = VolumeReconciler {
        ctx: ctx.clone(),
        claims: ctx.informers.get::<PersistentVolumeClaim>(),
        volumes: ctx.informers.get::<PersistentVolume>(),
        nodes: ctx.informers.get::<Node>(),
        opts,
    };
    let claims = reconciler.claims.clone();
    let volumes = reconciler.volumes.clone();
    let nodes = reconciler.nodes.clone();
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
        let claims = claims.clone();
        nodes.on_change(move |change: &Change<Node>| {
            if !matches!(change, Change::Deleted(_)) {
                return;
            }
            let node = change.object().metadata.name.as_deref().unwrap_or_default();
            for claim in claims.list() {
                if binder::is_waiting(&claim) && selected_node(&claim) == Some(node) {
                    queue.add(ObjectKey::of(claim.as_ref()));
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
    nodes: Informer<Node>,
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
