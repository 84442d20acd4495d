//! Kubernetes-style expectations, shared by the controllers that own pods (ReplicaSet,
//! ReplicationController, DaemonSet): the pod creations and deletions a controller made and its
//! pod cache has not shown yet. While some are outstanding the controller does not size the
//! pod set again, so a lagging cache never makes it create or delete twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::runtime::{Informer, ObjectKey};

/// How long outstanding expectations hold before the controller stops trusting them (a watch
/// relist may never show a pod created and deleted in between). Kubernetes uses five minutes.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The outstanding writes of each owner, keyed by the owner's key.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectKey, Pending>>,
}

struct Pending {
    /// The owner these were recorded for (a recreated owner with the same name starts afresh).
    owner_uid: String,
    /// Creations not yet seen as added pods.
    adds: usize,
    /// Pods (key, uid) deleted but still shown as active.
    deletes: Vec<(ObjectKey, String)>,
    expires: Instant,
}

/// Whether an owner may size its pod set now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Writes are outstanding; they expire after this long.
    Wait(Duration),
}

impl Expectations {
    /// Record the writes about to be made for `owner` (replacing any earlier record).
    pub fn expect(
        &self,
        owner: &ObjectKey,
        owner_uid: &str,
        adds: usize,
        deletes: Vec<(ObjectKey, String)>,
    ) {
        self.lock().insert(
            owner.clone(),
            Pending {
                owner_uid: owner_uid.to_string(),
                adds,
                deletes,
                expires: Instant::now() + EXPECTATIONS_TIMEOUT,
            },
        );
    }

    /// A pod controlled by `owner` (with this uid) was added to the cache.
    pub fn creation_observed(&self, owner: &ObjectKey, owner_uid: &str) {
        if let Some(p) = self.lock().get_mut(owner) {
            if p.owner_uid == owner_uid {
                p.adds = p.adds.saturating_sub(1);
            }
        }
    }

    /// `n` expected creations will not happen (they failed or were skipped).
    pub fn creations_failed(&self, owner: &ObjectKey, n: usize) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.adds = p.adds.saturating_sub(n);
        }
    }

    /// The deletion of `pod` failed: it is not expected to go away.
    pub fn deletion_failed(&self, owner: &ObjectKey, pod: &ObjectKey) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.deletes.retain(|(k, _)| k != pod);
        }
    }

    /// Whether the cache shows every write recorded for `owner` (forgetting the record once it
    /// does, or once it expired).
    pub fn gate(&self, owner: &ObjectKey, pods: &Informer<Pod>) -> Gate {
        let mut map = self.lock();
        let Some(p) = map.get(owner) else {
            return Gate::Open;
        };
        let now = Instant::now();
        let deleted = |(key, uid): &(ObjectKey, String)| {
            pods.get(&key.namespace, &key.name).is_none_or(|pod| {
                pod.metadata.uid.as_deref() != Some(uid.as_str())
                    || pod.metadata.deletion_timestamp.is_some()
            })
        };
        if now >= p.expires || (p.adds == 0 && p.deletes.iter().all(deleted)) {
            map.remove(owner);
            Gate::Open
        } else {
            Gate::Wait(p.expires - now)
        }
    }

    /// Drop the record of an owner that no longer exists.
    pub fn forget(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.pending.lock().expect("expectations lock")
    }
}
