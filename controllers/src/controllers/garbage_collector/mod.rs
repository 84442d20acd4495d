//! The garbage collector (Kubernetes' `pkg/controller/garbagecollector`): deletes objects whose
//! owners are all gone (background deletion), deletes the dependents of an owner being deleted
//! in the foreground before letting it go, and strips the owner references to an owner deleted
//! with the orphan policy.
//!
//! It works over the informers of a fixed set of kinds ([`kinds::garbage_collected_kinds`]); each
//! kind is one registration that feeds a single dependency graph ([`graph::Graph`]). Work-queue
//! keys carry the kind ([`graph::object_key`]) (a plain key is read as a Pod). A new leader
//! re-examines every object of every tracked kind that has owners or is being deleted.
//!
//! An owner counts as present only if an object of the owner reference's kind, name and
//! namespace with the reference's uid is cached (an owner recreated under the same name is a
//! different owner). The collector never decides about an owner whose kind's informer has not
//! loaded its first list, and never touches an object that has an owner of a kind it does not
//! track. Because the controllers that create dependents read their owners from the same shared
//! caches, an owner is always cached before its dependents are created by them. Before letting
//! an orphaning owner go, the collector waits until the caches show its dependents released, so
//! the owner's removal can never make them look dangling.
//!
//! Writes are safe to repeat against a stale cache: deletes carry the object's uid as a
//! precondition, updates its resourceVersion.

pub mod graph;
pub mod kinds;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use self::graph::{object_key, parse_key, Graph};
use self::kinds::{has_finalizer, KindInformer, MetaHandler};
use crate::error::Result;
use crate::runtime::{
    Action, ApiRef, Context, Controller, DeleteOptions, ObjectKey, Propagation, Reconciler,
    WorkQueue,
};

/// The finalizer of an owner deleted with foreground propagation.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an owner deleted with the orphan policy.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// How long to wait before looking again at an object whose owners' kinds have not synced.
const UNSYNCED_RETRY: Duration = Duration::from_secs(1);
/// How long to wait for the caches to show the collector's own updates.
const CACHE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct GarbageCollectorOptions {
    /// Objects collected at once (Kubernetes' `--concurrent-gc-syncs`).
    pub workers: usize,
}

impl Default for GarbageCollectorOptions {
    fn default() -> Self {
        GarbageCollectorOptions { workers: 20 }
    }
}

/// The garbage collector. Every change of a tracked object that can matter to collection
/// queues it and its owners; the deletion of an owner queues its dependents.
pub fn controller(ctx: &Context, opts: GarbageCollectorOptions) -> Controller {
    let kinds = kinds::garbage_collected_kinds(ctx);
    let names: Arc<[(&'static str, &'static str)]> =
        kinds.iter().map(|k| (k.api_version(), k.kind())).collect();
    let graph = Arc::new(Graph::default());
    let gc = GarbageCollector {
        api: ctx.api.clone(),
        kinds: kinds.clone(),
        graph: graph.clone(),
    };
    // A new leader re-examines every object that has owners or is being deleted, of every kind.
    let resync = {
        let kinds = kinds.clone();
        move || {
            let mut keys = Vec::new();
            for kind in kinds.iter() {
                for meta in kind.list() {
                    let owned = meta
                        .owner_references
                        .as_ref()
                        .is_some_and(|r| !r.is_empty());
                    if owned || meta.deletion_timestamp.is_some() {
                        keys.push(object_key(
                            kind.api_version(),
                            kind.kind(),
                            meta.namespace.as_deref().unwrap_or_default(),
                            meta.name.as_deref().unwrap_or_default(),
                        ));
                    }
                }
            }
            keys
        }
    };
    let controller = Controller::with_resync("garbage-collector", gc, opts.workers, resync);
    for (index, kind) in kinds.iter().enumerate() {
        let handler = graph_handler(
            index,
            names.clone(),
            graph.clone(),
            controller.queue.clone(),
        );
        kind.on_change(handler.clone());
        // Objects cached before the controller was built enter the graph as if just listed.
        for meta in kind.list() {
            handler(None, Some(&meta));
        }
    }
    controller
}

/// Keeps the graph current for one kind and queues the objects a change may concern. Changes
/// that leave uid, owner references, deletionTimestamp and finalizers alone (status updates,
/// mostly) cannot change a collection decision and are skipped.
fn graph_handler(
    index: usize,
    names: Arc<[(&'static str, &'static str)]>,
    graph: Arc<Graph>,
    queue: WorkQueue<ObjectKey>,
) -> MetaHandler {
    Arc::new(move |old, new| {
        if let (Some(o), Some(n)) = (old, new) {
            let same = o.uid == n.uid
                && o.owner_references == n.owner_references
                && o.deletion_timestamp == n.deletion_timestamp
                && o.finalizers == n.finalizers;
            if same {
                return;
            }
        }
        let key = |kind: usize, ns: &str, name: &str| {
            let (av, k) = names[kind];
            object_key(av, k, ns, name)
        };
        // Deleted, or replaced under the same name (seen as a modification after a relist).
        if let Some(o) = old.filter(|o| new.is_none_or(|n| n.uid != o.uid)) {
            for d in graph.remove(o) {
                queue.add(key(d.kind, &d.namespace, &d.name));
            }
        }
        if let Some(n) = new {
            graph.upsert(index, n);
            queue.add(key(index, ns_of(n), name_of(n)));
        }
        // An owner waiting for its dependents hears of their changes and deletion.
        for m in old.into_iter().chain(new) {
            for r in m.owner_references.iter().flatten() {
                let group = kinds::group_of(&r.api_version);
                let owner = names
                    .iter()
                    .position(|(av, k)| *k == r.kind && kinds::group_of(av) == group);
                if let Some(o) = owner {
                    queue.add(key(o, ns_of(m), &r.name));
                }
            }
        }
    })
}

struct GarbageCollector {
    api: ApiRef,
    kinds: Vec<Arc<dyn KindInformer>>,
    graph: Arc<Graph>,
}

/// What became of one owner reference.
enum OwnerState {
    /// The owner exists and is not being deleted in the foreground.
    Solid,
    /// The owner exists and is being deleted in the foreground, waiting for its dependents.
    Waiting,
    /// No cached object has the owner's kind, name, namespace and uid.
    Dangling,
}

#[async_trait::async_trait]
impl Reconciler for GarbageCollector {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let (kind, ns) = parse_key(key);
        let index = match kind {
            Some((av, k)) => kinds::find(&self.kinds, av, k),
            None => kinds::find(&self.kinds, "v1", "Pod"),
        };
        let Some(index) = index else {
            tracing::warn!(%key, "garbage collector: a key of an untracked kind; ignoring it");
            return Ok(Action::Done);
        };
        let Some(meta) = self.kinds[index].get(ns, &key.name) else {
            return Ok(Action::Done);
        };
        if meta.deletion_timestamp.is_some() {
            if has_finalizer(&meta, ORPHAN_FINALIZER) {
                return self.orphan_dependents(index, &meta).await;
            }
            if has_finalizer(&meta, FOREGROUND_FINALIZER) {
                return self.delete_dependents(index, &meta).await;
            }
            return Ok(Action::Done);
        }
        self.attempt_to_delete(index, &meta).await
    }
}

impl GarbageCollector {
    /// Collect one object that is not being deleted: delete it if all its owners are gone or
    /// waiting for their dependents; drop its references to such owners if another owner
    /// remains.
    async fn attempt_to_delete(&self, index: usize, meta: &ObjectMeta) -> Result<Action> {
        let refs = meta.owner_references.as_deref().unwrap_or_default();
        if refs.is_empty() {
            return Ok(Action::Done);
        }
        let ns = ns_of(meta);
        let mut solid = 0;
        let mut waiting: Vec<&OwnerReference> = Vec::new();
        let mut dangling: Vec<&OwnerReference> = Vec::new();
        for r in refs {
            let Some(o) = kinds::find(&self.kinds, &r.api_version, &r.kind) else {
                tracing::debug!(object = %describe(&*self.kinds[index], meta), owner_kind = %r.kind,
                    "garbage collector: an owner of an untracked kind; leaving the object alone");
                return Ok(Action::Done);
            };
            if !self.kinds[o].has_synced() {
                tracing::debug!(object = %describe(&*self.kinds[index], meta), owner_kind = %r.kind,
                    "garbage collector: the owner's kind has not synced yet");
                return Ok(Action::RequeueAfter(UNSYNCED_RETRY));
            }
            match self.owner_state(o, ns, r) {
                OwnerState::Solid => solid += 1,
                OwnerState::Waiting => waiting.push(r),
                OwnerState::Dangling => dangling.push(r),
            }
        }
        if waiting.is_empty() && dangling.is_empty() {
            return Ok(Action::Done);
        }
        let kind = &*self.kinds[index];
        if solid > 0 {
            let drop: Vec<&str> = waiting
                .iter()
                .chain(&dangling)
                .map(|r| r.uid.as_str())
                .collect();
            tracing::info!(
                object = %describe(kind, meta),
                owners = ?drop,
                "garbage collector: removing references to owners that are gone or being deleted \
                 (other owners remain)"
            );
            let mut m = meta.clone();
            m.owner_references = without_owners(refs, &drop);
            return self.update(index, m).await.map(|()| Action::Done);
        }
        let propagation = if waiting.iter().any(|r| r.block_owner_deletion == Some(true)) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        tracing::info!(object = %describe(kind, meta), ?propagation,
            "garbage collector: deleting an object whose owners are all gone or being deleted");
        let opts = DeleteOptions {
            propagation,
            grace_period_seconds: None,
            precondition_uid: meta.uid.clone(),
        };
        kinds::delete(self.api.as_ref(), kind, ns, name_of(meta), opts).await?;
        Ok(Action::Done)
    }

    /// An owner deleted in the foreground: delete its dependents, and let it go (remove the
    /// `foregroundDeletion` finalizer) once none that blocks its deletion remains.
    async fn delete_dependents(&self, index: usize, owner: &ObjectMeta) -> Result<Action> {
        if let Some(k) = self.kinds.iter().find(|k| !k.has_synced()) {
            tracing::debug!(
                kind = k.kind(),
                "garbage collector: waiting for the caches to sync"
            );
            return Ok(Action::RequeueAfter(UNSYNCED_RETRY));
        }
        let Some(uid) = owner.uid.as_deref() else {
            return Ok(Action::Done);
        };
        let mut action = Action::Done;
        for (d, meta) in self.dependents(uid) {
            if meta.deletion_timestamp.is_none() {
                if let Action::RequeueAfter(t) = self.attempt_to_delete(d, &meta).await? {
                    action = Action::RequeueAfter(t);
                }
            }
        }
        let blocking: Vec<String> = self
            .dependents(uid)
            .into_iter()
            .filter(|(_, m)| {
                reference_to(m, uid).is_some_and(|r| r.block_owner_deletion == Some(true))
            })
            .map(|(d, m)| describe(&*self.kinds[d], &m))
            .collect();
        if !blocking.is_empty() {
            tracing::debug!(owner = %describe(&*self.kinds[index], owner), ?blocking,
                "garbage collector: waiting for dependents that block the owner's deletion");
            return Ok(action);
        }
        tracing::info!(owner = %describe(&*self.kinds[index], owner),
            "garbage collector: dependents deleted; removing the foregroundDeletion finalizer");
        self.remove_finalizer(index, owner, FOREGROUND_FINALIZER)
            .await?;
        Ok(Action::Done)
    }

    /// An owner deleted with the orphan policy: remove the references to it from its
    /// dependents, then remove the `orphan` finalizer.
    async fn orphan_dependents(&self, index: usize, owner: &ObjectMeta) -> Result<Action> {
        if let Some(k) = self.kinds.iter().find(|k| !k.has_synced()) {
            tracing::debug!(
                kind = k.kind(),
                "garbage collector: waiting for the caches to sync"
            );
            return Ok(Action::RequeueAfter(UNSYNCED_RETRY));
        }
        let Some(uid) = owner.uid.as_deref() else {
            return Ok(Action::Done);
        };
        let dependents = self.dependents(uid);
        for (d, meta) in &dependents {
            let refs = meta.owner_references.as_deref().unwrap_or_default();
            let mut m = meta.clone();
            m.owner_references = without_owners(refs, &[uid]);
            tracing::info!(
                object = %describe(&*self.kinds[*d], meta),
                owner = %describe(&*self.kinds[index], owner),
                "garbage collector: orphaning a dependent"
            );
            self.update(*d, m).await?;
        }
        // The owner's removal must not reach the caches before these updates do: a dependent
        // still showing its reference to a gone owner would be collected as dangling.
        for (d, meta) in &dependents {
            let dependent_uid = meta.uid.as_deref();
            let orphaned = |m: Option<&ObjectMeta>| {
                m.is_none_or(|m| {
                    m.uid.as_deref() != dependent_uid || reference_to(m, uid).is_none()
                })
            };
            let seen = self.kinds[*d]
                .wait_for(ns_of(meta), name_of(meta), CACHE_WAIT, &orphaned)
                .await;
            if !seen {
                tracing::debug!(object = %describe(&*self.kinds[*d], meta),
                    "garbage collector: the cache does not show an orphaned dependent yet");
                return Ok(Action::RequeueAfter(UNSYNCED_RETRY));
            }
        }
        self.remove_finalizer(index, owner, ORPHAN_FINALIZER)
            .await?;
        Ok(Action::Done)
    }

    fn owner_state(&self, kind: usize, ns: &str, r: &OwnerReference) -> OwnerState {
        match self.kinds[kind].get(ns, &r.name) {
            Some(m) if m.uid.as_deref() == Some(r.uid.as_str()) => {
                if m.deletion_timestamp.is_some() && has_finalizer(&m, FOREGROUND_FINALIZER) {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            // The cache and the graph disagree for the instant between an informer's update
            // and its handler: not proven gone.
            _ if self.graph.contains(&r.uid) => OwnerState::Solid,
            _ => OwnerState::Dangling,
        }
    }

    /// The cached objects that reference `owner_uid`, with their kinds.
    fn dependents(&self, owner_uid: &str) -> Vec<(usize, ObjectMeta)> {
        self.graph
            .dependents(owner_uid)
            .into_iter()
            .filter_map(|d| {
                let m = self.kinds[d.kind].get(&d.namespace, &d.name)?;
                reference_to(&m, owner_uid).is_some().then_some((d.kind, m))
            })
            .collect()
    }

    async fn remove_finalizer(
        &self,
        index: usize,
        meta: &ObjectMeta,
        finalizer: &str,
    ) -> Result<()> {
        let mut m = meta.clone();
        let rest: Vec<String> = m
            .finalizers
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        m.finalizers = (!rest.is_empty()).then_some(rest);
        self.update(index, m).await
    }

    /// Write `meta` as the metadata of the cached object it names.
    async fn update(&self, index: usize, meta: ObjectMeta) -> Result<()> {
        match self.kinds[index].with_metadata(meta)? {
            Some(obj) => self.api.update(obj).await.map(|_| ()),
            None => Ok(()),
        }
    }
}

fn reference_to<'a>(meta: &'a ObjectMeta, owner_uid: &str) -> Option<&'a OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.uid == owner_uid)
}

/// The owner references without those to `uids` (`None` when none is left, as the API stores it).
fn without_owners(refs: &[OwnerReference], uids: &[&str]) -> Option<Vec<OwnerReference>> {
    let rest: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !uids.contains(&r.uid.as_str()))
        .cloned()
        .collect();
    (!rest.is_empty()).then_some(rest)
}

fn ns_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// `ReplicaSet default/web` for logs.
fn describe(kind: &dyn KindInformer, meta: &ObjectMeta) -> String {
    format!("{} {}/{}", kind.kind(), ns_of(meta), name_of(meta))
}
