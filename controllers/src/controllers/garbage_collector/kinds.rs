//! Type-erased access to the informers of a fixed set of namespaced kinds, so that generic code
//! (the garbage collector's dependency graph, the namespace controller's content deletion) handles
//! every kind through one registration line per kind.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, PersistentVolumeClaim, Pod, ReplicationController, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rkube_client::KindRef;
use serde_json::Value;

use crate::error::Result;
use crate::runtime::api::encode;
use crate::runtime::{Api, Change, Context, DeleteOptions, Informer, Object};

/// Called with the object's metadata before and after each change: `(None, Some)` when added,
/// `(Some, Some)` when modified, `(Some, None)` when deleted.
pub type MetaHandler = Arc<dyn Fn(Option<&ObjectMeta>, Option<&ObjectMeta>) + Send + Sync>;

/// A condition on a cached object's metadata (`None` while the object is not cached).
pub type MetaPredicate<'a> = dyn Fn(Option<&ObjectMeta>) -> bool + Send + Sync + 'a;

/// One kind's informer, seen through its objects' metadata.
#[async_trait::async_trait]
pub trait KindInformer: Send + Sync {
    /// `apps/v1`, `v1`.
    fn api_version(&self) -> &'static str;
    fn kind(&self) -> &'static str;
    /// The API group (empty for the core group).
    fn group(&self) -> &'static str;
    /// Kubernetes' group-resource spelling: `pods`, `replicasets.apps`.
    fn group_resource(&self) -> String;
    /// Whether the informer has loaded its first list.
    fn has_synced(&self) -> bool;
    /// The cached object's metadata.
    fn get(&self, namespace: &str, name: &str) -> Option<ObjectMeta>;
    /// The metadata of every cached object.
    fn list(&self) -> Vec<ObjectMeta>;
    /// The metadata of the cached objects of one namespace.
    fn list_namespace(&self, namespace: &str) -> Vec<ObjectMeta>;
    /// The cached object named by `meta` with `meta` as its metadata, as the JSON an update
    /// takes (apiVersion and kind set); `None` when the object is no longer cached.
    fn with_metadata(&self, meta: ObjectMeta) -> Result<Option<Value>>;
    /// Call `handler` for every change from now on.
    fn on_change(&self, handler: MetaHandler);
    /// Wait until the cached `namespace/name` satisfies `pred` (given `None` while it is not
    /// cached); false after `timeout`.
    async fn wait_for(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        pred: &MetaPredicate<'_>,
    ) -> bool;

    fn kind_ref(&self) -> KindRef {
        KindRef::kind(self.api_version(), self.kind())
    }
}

/// The kinds the garbage collector tracks: every namespaced workload kind that carries owner
/// references, plus the objects controllers create for them.
pub fn garbage_collected_kinds(ctx: &Context) -> Vec<Arc<dyn KindInformer>> {
    vec![
        kind::<Pod>(ctx),
        kind::<ReplicaSet>(ctx),
        kind::<ReplicationController>(ctx),
        kind::<Deployment>(ctx),
        kind::<DaemonSet>(ctx),
        kind::<StatefulSet>(ctx),
        kind::<Job>(ctx),
        kind::<CronJob>(ctx),
        kind::<Service>(ctx),
        kind::<Endpoints>(ctx),
        kind::<ConfigMap>(ctx),
        kind::<Secret>(ctx),
        kind::<PersistentVolumeClaim>(ctx),
        kind::<HorizontalPodAutoscaler>(ctx),
    ]
}

/// Every namespaced kind the API server serves: what a terminating namespace must be emptied of.
pub fn namespaced_kinds(ctx: &Context) -> Vec<Arc<dyn KindInformer>> {
    let mut kinds = garbage_collected_kinds(ctx);
    kinds.push(kind::<Lease>(ctx));
    kinds.push(kind::<Event>(ctx));
    kinds
}

/// The shared informer of `K` behind [`KindInformer`].
pub fn kind<K: Object>(ctx: &Context) -> Arc<dyn KindInformer> {
    Arc::new(Typed(ctx.informers.get::<K>()))
}

/// The group of an apiVersion: `apps` for `apps/v1`, empty for `v1`.
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The index of the kind an owner reference names, matched by group and kind as Kubernetes does
/// (an owner reference written with another version of the same group still matches).
pub fn find(kinds: &[Arc<dyn KindInformer>], api_version: &str, kind: &str) -> Option<usize> {
    let group = group_of(api_version);
    kinds
        .iter()
        .position(|k| k.kind() == kind && k.group() == group)
}

/// Delete one object; an object already gone is not an error.
pub async fn delete(
    api: &dyn Api,
    kind: &dyn KindInformer,
    namespace: &str,
    name: &str,
    opts: DeleteOptions,
) -> Result<()> {
    match api.delete(&kind.kind_ref(), namespace, name, opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the object carries `finalizer` in metadata.finalizers.
pub fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

struct Typed<K>(Informer<K>);

#[async_trait::async_trait]
impl<K: Object> KindInformer for Typed<K> {
    fn api_version(&self) -> &'static str {
        K::API_VERSION
    }

    fn kind(&self) -> &'static str {
        K::KIND
    }

    fn group(&self) -> &'static str {
        K::GROUP
    }

    fn group_resource(&self) -> String {
        if K::GROUP.is_empty() {
            K::URL_PATH_SEGMENT.to_string()
        } else {
            format!("{}.{}", K::URL_PATH_SEGMENT, K::GROUP)
        }
    }

    fn has_synced(&self) -> bool {
        self.0.has_synced()
    }

    fn get(&self, namespace: &str, name: &str) -> Option<ObjectMeta> {
        self.0.get(namespace, name).map(|o| o.metadata().clone())
    }

    fn list(&self) -> Vec<ObjectMeta> {
        self.0.list().iter().map(|o| o.metadata().clone()).collect()
    }

    fn list_namespace(&self, namespace: &str) -> Vec<ObjectMeta> {
        self.0
            .list_namespace(namespace)
            .iter()
            .map(|o| o.metadata().clone())
            .collect()
    }

    fn with_metadata(&self, meta: ObjectMeta) -> Result<Option<Value>> {
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let Some(cached) = self.0.get(ns, name) else {
            return Ok(None);
        };
        let mut obj = (*cached).clone();
        *obj.metadata_mut() = meta;
        encode(&obj).map(Some)
    }

    fn on_change(&self, handler: MetaHandler) {
        self.0.on_change(move |c: &Change<K>| match c {
            Change::Added(new) => handler(None, Some(new.metadata())),
            Change::Modified { old, new } => handler(Some(old.metadata()), Some(new.metadata())),
            Change::Deleted(old) => handler(Some(old.metadata()), None),
        });
    }

    async fn wait_for(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        pred: &MetaPredicate<'_>,
    ) -> bool {
        self.0
            .wait_until(timeout, |c| {
                pred(c.get(namespace, name).as_deref().map(|o| o.metadata()))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeApi;
    use crate::runtime::{Informers, Recorder};

    fn context() -> Context {
        let informers = Informers::new();
        Context {
            api: Arc::new(FakeApi::new(informers.clone())),
            informers,
            recorder: Recorder::memory("test").0,
            clock: Arc::new(jiff::Timestamp::now),
        }
    }

    #[test]
    fn owner_references_match_by_group_and_kind() {
        let kinds = garbage_collected_kinds(&context());
        let rs = find(&kinds, "apps/v1", "ReplicaSet").expect("tracked");
        assert_eq!(kinds[rs].kind(), "ReplicaSet");
        assert_eq!(find(&kinds, "apps/v1beta2", "ReplicaSet"), Some(rs));
        assert_eq!(
            kinds[find(&kinds, "v1", "Pod").unwrap()].group_resource(),
            "pods"
        );
        assert_eq!(kinds[rs].group_resource(), "replicasets.apps");
        assert_eq!(
            find(&kinds, "v1", "Node"),
            None,
            "cluster-scoped kinds are not tracked"
        );
        assert_eq!(find(&kinds, "example.com/v1", "ReplicaSet"), None);
        let hpa = find(&kinds, "autoscaling/v1", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(kinds[hpa].api_version(), "autoscaling/v2");
    }

    #[test]
    fn namespaced_kinds_add_leases_and_events() {
        let kinds = namespaced_kinds(&context());
        assert_eq!(kinds.len(), 16);
        assert!(find(&kinds, "coordination.k8s.io/v1", "Lease").is_some());
        assert!(find(&kinds, "v1", "Event").is_some());
    }
}
