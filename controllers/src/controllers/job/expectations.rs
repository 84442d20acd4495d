//! The pod creations and deletions of each Job that the pod cache has not shown yet. While
//! some are outstanding the Job's pods are not sized again, so a lagging cache never makes the
//! controller start a pod twice (Kubernetes' controller expectations, keyed by pod name since a
//! create returns it).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::runtime::{Informer, ObjectKey};

/// How long outstanding writes are trusted: a relist may never show a pod that was created and
/// deleted in between. Kubernetes uses five minutes.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectKey, Pending>>,
}

#[derive(Default)]
struct Pending {
    /// Pods created but not yet seen.
    created: HashSet<ObjectKey>,
    /// Pods (key, uid) deleted but still shown as active.
    deleted: Vec<(ObjectKey, String)>,
    expires: Option<Instant>,
}

impl Expectations {
    /// Pod `pod` was created for the Job `job`.
    pub fn created(&self, job: &ObjectKey, pod: ObjectKey) {
        let mut map = self.lock();
        let p = map.entry(job.clone()).or_default();
        p.created.insert(pod);
        p.expires = Some(Instant::now() + EXPECTATIONS_TIMEOUT);
    }

    /// Pod `pod` (with this uid) was deleted for the Job `job`.
    pub fn deleted(&self, job: &ObjectKey, pod: ObjectKey, uid: String) {
        let mut map = self.lock();
        let p = map.entry(job.clone()).or_default();
        p.deleted.push((pod, uid));
        p.expires = Some(Instant::now() + EXPECTATIONS_TIMEOUT);
    }

    /// The deletion of `pod` failed: it is not expected to go away.
    pub fn deletion_failed(&self, job: &ObjectKey, pod: &ObjectKey) {
        if let Some(p) = self.lock().get_mut(job) {
            p.deleted.retain(|(k, _)| k != pod);
        }
    }

    /// The pod cache added `pod` of the Job `job` (it may be gone again before the next check).
    pub fn observed(&self, job: &ObjectKey, pod: &ObjectKey) {
        if let Some(p) = self.lock().get_mut(job) {
            p.created.remove(pod);
        }
    }

    /// None when the cache shows every write recorded for `job` (forgetting them), else how
    /// long until they expire.
    pub fn outstanding(&self, job: &ObjectKey, pods: &Informer<Pod>) -> Option<Duration> {
        let mut map = self.lock();
        let p = map.get_mut(job)?;
        p.created
            .retain(|k| pods.get(&k.namespace, &k.name).is_none());
        p.deleted.retain(|(k, uid)| {
            pods.get(&k.namespace, &k.name).is_some_and(|pod| {
                pod.metadata.uid.as_deref() == Some(uid.as_str())
                    && pod.metadata.deletion_timestamp.is_none()
            })
        });
        let now = Instant::now();
        let expired = p.expires.is_none_or(|e| e <= now);
        if expired || (p.created.is_empty() && p.deleted.is_empty()) {
            map.remove(job);
            return None;
        }
        p.expires.map(|e| e - now)
    }

    /// Drop the record of a Job that no longer exists.
    pub fn forget(&self, job: &ObjectKey) {
        self.lock().remove(job);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.pending.lock().expect("expectations lock")
    }
}
