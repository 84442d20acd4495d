//! One step of a StatefulSet towards its spec (Kubernetes' `updateStatefulSet`): create missing
//! ordinals (claims first), replace finished pods, delete ordinals beyond the replica count from
//! the highest down, then roll pods of an old revision from the highest ordinal down to the
//! partition. Under OrderedReady each step waits for the lower ordinals to be Running and Ready;
//! under Parallel creations and deletions all happen at once. Every write is waited for in the
//! caches before the step returns, so the next step never acts on a stale view.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::identity::{self, claim_templates, new_claim, new_pod, ordinal_of, pod_name};
use super::{is_healthy, is_on_delete, min_ready_seconds, StatefulSetReconciler, CACHE_WAIT};
use crate::error::{Error, Result};
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{ApiExt, DeleteOptions};
use crate::util;

impl StatefulSetReconciler {
    /// Make at most the writes of one step (see the module docs).
    pub(super) async fn sync(&self, set: &StatefulSet, revision: &str) -> Result<()> {
        let now = self.ctx.now();
        let monotonic = set.spec.pod_management_policy.as_deref() != Some("Parallel");
        let min_ready = min_ready_seconds(set);
        let start = identity::start_ordinal(set);
        let end = start + identity::replicas(set);
        let mut slots: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
        let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
        for pod in self.owned_pods(set) {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            match ordinal_of(set, name) {
                Some(o) if (start..end).contains(&o) => {
                    slots.insert(o, pod);
                }
                o => condemned.push((o.unwrap_or(-1), pod)),
            }
        }
        condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

        for o in start..end {
            let Some(pod) = slots.get(&o) else {
                if self.blocked_by_unowned(set, o).await? {
                    if monotonic {
                        return Ok(());
                    }
                    continue;
                }
                self.create_claims(set, o).await?;
                self.create_pod(set, o, revision).await?;
                if monotonic {
                    return Ok(());
                }
                continue;
            };
            if util::is_terminating(pod.as_ref()) {
                // The ordinal stays taken until the old pod is gone.
                if monotonic {
                    return Ok(());
                }
                continue;
            }
            if util::is_pod_terminated(pod) {
                self.delete_pod(set, pod).await?;
                if monotonic {
                    return Ok(());
                }
                continue;
            }
            self.create_claims(set, o).await?;
            if monotonic && !is_healthy(pod, min_ready, now) {
                return Ok(());
            }
        }

        let first_unhealthy = slots
            .values()
            .chain(condemned.iter().map(|(_, p)| p))
            .find(|p| !is_healthy(p, min_ready, now))
            .cloned();
        for (_, pod) in &condemned {
            if util::is_terminating(pod.as_ref()) {
                if monotonic {
                    return Ok(());
                }
                continue;
            }
            if monotonic
                && first_unhealthy
                    .as_ref()
                    .is_some_and(|u| !Arc::ptr_eq(u, pod))
            {
                return Ok(());
            }
            self.delete_pod(set, pod).await?;
            if monotonic {
                return Ok(());
            }
        }
        if condemned.is_empty() && identity::delete_claims_when_scaled(set) {
            self.delete_scaled_claims(set, start, end).await?;
        }

        if is_on_delete(set) {
            return Ok(());
        }
        let partition = set
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0);
        for o in (start + partition..end).rev() {
            let Some(pod) = slots.get(&o) else {
                return Ok(());
            };
            if identity::revision_of(pod) != Some(revision) && !util::is_terminating(pod.as_ref()) {
                tracing::info!(pod = ?pod.metadata.name, revision, "rolling update: deleting a pod of an old revision");
                return self.delete_pod(set, pod).await;
            }
            if !is_healthy(pod, min_ready, now) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether a pod the set does not control holds the name of ordinal `o`. An orphan that
    /// matches the selector is adopted (and the step ends with it); another controller's pod
    /// blocks the ordinal.
    async fn blocked_by_unowned(&self, set: &StatefulSet, o: i32) -> Result<bool> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod_name(set, o);
        let Some(pod) = self.pods.get(ns, &name) else {
            return Ok(false);
        };
        let matches = util::selector_matches(&set.spec.selector, pod.metadata.labels.as_ref());
        if util::controller_of(pod.as_ref()).is_none()
            && matches
            && !util::is_terminating(pod.as_ref())
        {
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            refs.push(util::controller_ref(set));
            let patch = json!({ "metadata": {
                "ownerReferences": refs,
                "resourceVersion": pod.metadata.resource_version,
            }});
            self.ctx
                .api
                .merge_patch::<Pod>(ns, &name, patch, false)
                .await?;
            let uid = set.metadata.uid.clone().unwrap_or_default();
            self.pods
                .wait_until(CACHE_WAIT, |c| {
                    c.get(ns, &name).is_none_or(|p| {
                        util::controller_of(p.as_ref()).is_some_and(|r| r.uid == uid)
                    })
                })
                .await;
        } else {
            self.ctx.recorder.event(
                set,
                WARNING,
                "FailedCreate",
                format!(
                    "create Pod {name} in StatefulSet {} failed error: a pod of that name exists and is not controlled by the set",
                    set_name(set)
                ),
            );
        }
        Ok(true)
    }

    /// Create the claims of ordinal `o` that do not exist yet, and bring the owner references
    /// of existing ones in line with the retention policy. A claim being deleted is an error:
    /// the pod must not start on a volume about to go away.
    async fn create_claims(&self, set: &StatefulSet, o: i32) -> Result<()> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let pod = pod_name(set, o);
        let mut created = Vec::new();
        for t in claim_templates(set) {
            let name = identity::claim_name(t, set, o);
            if let Some(claim) = self.claims.get(ns, &name) {
                if util::is_terminating(claim.as_ref()) {
                    return Err(Error::Invalid(format!(
                        "persistentvolumeclaim {ns}/{name} of pod {pod} is being deleted; the pod waits for it to be gone"
                    )));
                }
                let want =
                    identity::desired_claim_owners(set, claim.metadata.owner_references.as_deref());
                if want.as_slice()
                    != claim
                        .metadata
                        .owner_references
                        .as_deref()
                        .unwrap_or_default()
                {
                    let refs = if want.is_empty() {
                        json!(null)
                    } else {
                        json!(want)
                    };
                    let patch = json!({ "metadata": {
                        "ownerReferences": refs,
                        "resourceVersion": claim.metadata.resource_version,
                    }});
                    self.ctx
                        .api
                        .merge_patch::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(
                            ns, &name, patch, false,
                        )
                        .await?;
                }
                continue;
            }
            match self.ctx.api.create_object(&new_claim(set, t, o)).await {
                Ok(_) => {
                    self.ctx.recorder.event(
                        set,
                        NORMAL,
                        "SuccessfulCreate",
                        format!(
                            "create Claim {name} Pod {pod} in StatefulSet {} success",
                            set_name(set)
                        ),
                    );
                    created.push(name);
                }
                Err(e) if e.is_already_exists() => created.push(name),
                Err(e) => {
                    self.ctx.recorder.event(
                        set,
                        WARNING,
                        "FailedCreate",
                        format!(
                            "create Claim {name} for Pod {pod} in StatefulSet {} failed error: {e}",
                            set_name(set)
                        ),
                    );
                    return Err(e);
                }
            }
        }
        if !created.is_empty() {
            let shown = self
                .claims
                .wait_until(CACHE_WAIT, |c| {
                    created.iter().all(|n| c.get(ns, n).is_some())
                })
                .await;
            if !shown {
                tracing::info!(
                    statefulset = set_name(set),
                    "claim cache lags this reconcile's creations"
                );
            }
        }
        Ok(())
    }

    /// Create the pod of ordinal `o` and wait for the pod cache to show it.
    async fn create_pod(&self, set: &StatefulSet, o: i32, revision: &str) -> Result<()> {
        let pod = new_pod(set, o, revision);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        match self.ctx.api.create_object(&pod).await {
            Ok(created) => {
                self.ctx.recorder.event(
                    set,
                    NORMAL,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} successful",
                        set_name(set)
                    ),
                );
                let uid = created.metadata.uid;
                let shown = self
                    .pods
                    .wait_until(CACHE_WAIT, |c| {
                        c.get(ns, &name).is_some_and(|p| p.metadata.uid == uid)
                    })
                    .await;
                if !shown {
                    tracing::info!(pod = name, "pod cache lags this reconcile's creation");
                }
                Ok(())
            }
            Err(e) => {
                self.ctx.recorder.event(
                    set,
                    WARNING,
                    "FailedCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} failed error: {e}",
                        set_name(set)
                    ),
                );
                Err(e)
            }
        }
    }

    /// Delete `pod` (guarded by its uid) and wait for the pod cache to show it gone or
    /// terminating.
    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let opts = DeleteOptions {
            precondition_uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        match self.ctx.api.delete_object::<Pod>(ns, name, opts).await {
            Ok(()) => self.ctx.recorder.event(
                set,
                NORMAL,
                "SuccessfulDelete",
                format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    set_name(set)
                ),
            ),
            Err(e) => {
                self.ctx.recorder.event(
                    set,
                    WARNING,
                    "FailedDelete",
                    format!(
                        "delete Pod {name} in StatefulSet {} failed error: {e}",
                        set_name(set)
                    ),
                );
                return Err(e);
            }
        }
        let uid = pod.metadata.uid.clone();
        let shown = self
            .pods
            .wait_until(CACHE_WAIT, |c| {
                c.get(ns, name)
                    .is_none_or(|p| p.metadata.uid != uid || util::is_terminating(p.as_ref()))
            })
            .await;
        if !shown {
            tracing::info!(pod = name, "pod cache lags this reconcile's deletion");
        }
        Ok(())
    }

    /// Under `whenScaled: Delete`, delete the claims of ordinals outside `start..end` whose pod
    /// is gone.
    async fn delete_scaled_claims(&self, set: &StatefulSet, start: i32, end: i32) -> Result<()> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        for claim in self.claims.list_namespace(ns) {
            if util::is_terminating(claim.as_ref()) {
                continue;
            }
            let name = claim.metadata.name.as_deref().unwrap_or_default();
            let ordinal = claim_templates(set).iter().find_map(|t| {
                let prefix = format!("{}-", t.metadata.name.as_deref().unwrap_or_default());
                ordinal_of(set, name.strip_prefix(&prefix)?)
            });
            let Some(o) = ordinal else { continue };
            if (start..end).contains(&o) || self.pods.get(ns, &pod_name(set, o)).is_some() {
                continue;
            }
            let opts = DeleteOptions {
                precondition_uid: claim.metadata.uid.clone(),
                ..Default::default()
            };
            match self
                .ctx
                .api
                .delete_object::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(ns, name, opts)
                .await
            {
                Ok(()) => self.ctx.recorder.event(
                    set,
                    NORMAL,
                    "SuccessfulDelete",
                    format!(
                        "delete Claim {name} in StatefulSet {} successful",
                        set_name(set)
                    ),
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}
