//! The namespace controller (Kubernetes' `pkg/controller/namespace`): empties a namespace being
//! deleted of every namespaced object, then removes the `kubernetes` finalizer from its
//! `spec.finalizers`, upon which the API server removes the namespace.
//!
//! Content is deleted through the shared informers of every namespaced kind the API serves
//! ([`kinds::namespaced_kinds`]); pods are deleted gracefully, so the namespace waits until the
//! node agents have stopped them. While content remains, the namespace's status conditions say
//! what is left (as Kubernetes' `NamespaceContentRemaining`, `NamespaceFinalizersRemaining` and
//! `NamespaceDeletionContentFailure`), written only when they change.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::controllers::garbage_collector::kinds::{self, KindInformer};
use crate::error::{Error, Result};
use crate::runtime::{
    Action, ApiExt, ApiRef, Clock, Context, Controller, DeleteOptions, Informer, ObjectKey,
    Propagation, Reconciler,
};
use crate::util;

/// The finalizer in `spec.finalizers` that this controller owns.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

#[derive(Debug, Clone)]
pub struct NamespaceOptions {
    /// Namespaces finalized at once (Kubernetes' `--concurrent-namespace-syncs`).
    pub workers: usize,
    /// How soon to look again at a namespace whose content is not gone yet.
    pub requeue_interval: Duration,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            workers: 10,
            requeue_interval: Duration::from_secs(1),
        }
    }
}

/// The namespace controller: reconciles every Namespace when it changes, and a terminating one
/// whenever an object in it is deleted.
pub fn controller(ctx: &Context, opts: NamespaceOptions) -> Controller {
    let namespaces = ctx.informers.get::<Namespace>();
    let kinds = kinds::namespaced_kinds(ctx);
    let reconciler = NamespaceController {
        api: ctx.api.clone(),
        clock: ctx.clock.clone(),
        namespaces: namespaces.clone(),
        kinds: kinds.clone(),
        requeue_interval: opts.requeue_interval,
        wakeups: Mutex::new(HashMap::new()),
    };
    let controller = Controller::new::<Namespace>("namespace", ctx, reconciler, opts.workers);
    util::enqueue_self(&namespaces, &controller.queue);
    for kind in &kinds {
        let queue = controller.queue.clone();
        let namespaces = namespaces.clone();
        kind.on_change(Arc::new(move |old, new| {
            let (Some(m), None) = (old, new) else {
                return;
            };
            let ns = m.namespace.as_deref().unwrap_or_default();
            if namespaces
                .get("", ns)
                .is_some_and(|n| util::is_terminating(n.as_ref()))
            {
                queue.add(ObjectKey::new("", ns));
            }
        }));
    }
    controller
}

struct NamespaceController {
    api: ApiRef,
    clock: Clock,
    namespaces: Informer<Namespace>,
    kinds: Vec<Arc<dyn KindInformer>>,
    requeue_interval: Duration,
    /// When the pending delayed re-queue of each namespace fires. The runtime starts one timer
    /// per `RequeueAfter`, so a reconcile woken early (by a deletion in the namespace) must not
    /// start a second periodic chain.
    wakeups: Mutex<HashMap<ObjectKey, tokio::time::Instant>>,
}

/// What is left in a namespace after one round of deletes.
#[derive(Default)]
struct Content {
    /// Group-resource → objects remaining.
    remaining: BTreeMap<String, usize>,
    /// Finalizer → objects remaining that carry it.
    finalizers: BTreeMap<String, usize>,
    /// Deletes that failed, as messages.
    failures: Vec<String>,
    /// The first failed delete's error, returned so the runtime retries with back-off.
    first_error: Option<Error>,
}

#[async_trait::async_trait]
impl Reconciler for NamespaceController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(ns) = self.namespaces.get("", &key.name) else {
            self.forget_wakeup(key);
            return Ok(Action::Done);
        };
        let finalizing = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|x| x == KUBERNETES_FINALIZER));
        if !util::is_terminating(ns.as_ref()) || !finalizing {
            self.forget_wakeup(key);
            return Ok(Action::Done);
        }
        if let Some(k) = self.kinds.iter().find(|k| !k.has_synced()) {
            tracing::debug!(
                namespace = %key.name,
                kind = k.kind(),
                "namespace: waiting for the caches to sync"
            );
            return Ok(self.requeue(key));
        }
        let content = self.delete_content(&key.name).await?;
        if content.remaining.is_empty() && content.failures.is_empty() {
            let mut finalized = (*ns).clone();
            if let Some(spec) = finalized.spec.as_mut() {
                let rest: Vec<String> = spec
                    .finalizers
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != KUBERNETES_FINALIZER)
                    .collect();
                // An empty list, not none: the server defaults a missing list to
                // `["kubernetes"]` on every write.
                spec.finalizers = Some(rest);
            }
            tracing::info!(
                namespace = %key.name,
                "namespace: content removed; removing the kubernetes finalizer"
            );
            self.api.update_object(&finalized).await?;
            self.forget_wakeup(key);
            return Ok(Action::Done);
        }
        self.write_conditions(&ns, &content).await?;
        if let Some(e) = content.first_error {
            return Err(e);
        }
        tracing::debug!(
            namespace = %key.name,
            remaining = ?content.remaining,
            "namespace: waiting for content to go"
        );
        Ok(self.requeue(key))
    }
}

impl NamespaceController {
    /// Delete every object in `ns` not already being deleted, then count what the caches
    /// still show.
    async fn delete_content(&self, ns: &str) -> Result<Content> {
        let mut content = Content::default();
        for kind in &self.kinds {
            for m in kind.list_namespace(ns) {
                if m.deletion_timestamp.is_some() {
                    continue;
                }
                let name = m.name.as_deref().unwrap_or_default();
                let opts = DeleteOptions {
                    propagation: Propagation::Background,
                    grace_period_seconds: None,
                    precondition_uid: m.uid.clone(),
                };
                match kinds::delete(self.api.as_ref(), kind.as_ref(), ns, name, opts).await {
                    Ok(()) => {
                        tracing::debug!(
                            namespace = ns,
                            kind = kind.kind(),
                            name,
                            "namespace: deleted content"
                        );
                    }
                    Err(e) if e.is_fenced() => return Err(e),
                    Err(e) => {
                        content
                            .failures
                            .push(format!("{} {name}: {e}", kind.kind()));
                        content.first_error.get_or_insert(e);
                    }
                }
            }
        }
        for kind in &self.kinds {
            for m in kind.list_namespace(ns) {
                *content.remaining.entry(kind.group_resource()).or_default() += 1;
                for f in m.finalizers.iter().flatten() {
                    *content.finalizers.entry(f.clone()).or_default() += 1;
                }
            }
        }
        Ok(content)
    }

    /// Report the remaining content as Kubernetes does, writing only when a condition changed.
    async fn write_conditions(&self, ns: &Namespace, content: &Content) -> Result<()> {
        let wanted = deletion_conditions(content);
        let current = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let same = |a: &NamespaceCondition, b: &NamespaceCondition| {
            a.type_ == b.type_
                && a.status == b.status
                && a.reason == b.reason
                && a.message == b.message
        };
        if wanted.iter().all(|w| current.iter().any(|c| same(c, w))) {
            return Ok(());
        }
        let now = Time((self.clock)());
        let mut conditions: Vec<NamespaceCondition> = current
            .iter()
            .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
            .cloned()
            .collect();
        for mut w in wanted {
            let old = current.iter().find(|c| c.type_ == w.type_);
            w.last_transition_time = match old {
                Some(o) if o.status == w.status => o.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            conditions.push(w);
        }
        let mut updated = ns.clone();
        let status = updated.status.get_or_insert_with(NamespaceStatus::default);
        status.conditions = Some(conditions);
        self.api.update_object_status(&updated).await?;
        Ok(())
    }

    fn requeue(&self, key: &ObjectKey) -> Action {
        let now = tokio::time::Instant::now();
        let due = now + self.requeue_interval;
        let mut wakeups = self.wakeups.lock().expect("wakeups lock");
        match wakeups.get(key) {
            Some(&at) if at > now && at <= due => Action::Done,
            _ => {
                wakeups.insert(key.clone(), due);
                Action::RequeueAfter(self.requeue_interval)
            }
        }
    }

    fn forget_wakeup(&self, key: &ObjectKey) {
        self.wakeups.lock().expect("wakeups lock").remove(key);
    }
}

/// Kubernetes' deletion conditions for what `content` says is left.
fn deletion_conditions(content: &Content) -> Vec<NamespaceCondition> {
    let cond = |ty: &str, on: bool, reason: &str, message: String| NamespaceCondition {
        type_: ty.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    };
    let failure = if content.failures.is_empty() {
        cond(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        cond(
            "NamespaceDeletionContentFailure",
            true,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                content.failures.len(),
                content.failures.join(", ")
            ),
        )
    };
    let remaining = if content.remaining.is_empty() {
        cond(
            "NamespaceContentRemaining",
            false,
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let parts: Vec<String> = content
            .remaining
            .iter()
            .map(|(gr, n)| format!("{gr} has {n} resource instances"))
            .collect();
        cond(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        )
    };
    let finalizers = if content.finalizers.is_empty() {
        cond(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let parts: Vec<String> = content
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        cond(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        )
    };
    vec![failure, remaining, finalizers]
}
