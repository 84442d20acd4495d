//! The autoscaler's view of its scale target (what Kubernetes' `scale` subresource gives):
//! the replicas and selector of an apps/v1 Deployment, ReplicaSet or StatefulSet read from the
//! caches, and the write of `spec.replicas` as a merge patch guarded by the resourceVersion read.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rkube_client::KindRef;
use serde_json::json;

use super::HpaReconciler;
use crate::error::Result;
use crate::runtime::Patch;

/// What the autoscaler reads of its target (Kubernetes' Scale).
pub(super) struct ScaleTarget {
    pub kind: KindRef,
    pub replicas: i32,
    pub selector: LabelSelector,
    pub resource_version: String,
}

impl HpaReconciler {
    /// The target's replicas and selector, from the caches.
    pub(super) fn scale_of(&self, hpa: &HorizontalPodAutoscaler) -> Result<ScaleTarget, String> {
        let r = &hpa.spec.scale_target_ref;
        let ns = hpa.metadata.namespace.as_deref().unwrap_or_default();
        let group = r
            .api_version
            .as_deref()
            .unwrap_or_default()
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        let not_found = |resource: &str| format!("{resource}.apps \"{}\" not found", r.name);
        let (kind, replicas, selector, rv) = match (group, r.kind.as_str()) {
            ("apps", "Deployment") => {
                let d = self
                    .deployments
                    .get(ns, &r.name)
                    .ok_or_else(|| not_found("deployments"))?;
                let spec = d.spec.clone();
                (KindRef::of::<Deployment>(), spec.replicas, spec.selector, d.metadata.resource_version.clone())
            }
            ("apps", "ReplicaSet") => {
                let rs = self
                    .replica_sets
                    .get(ns, &r.name)
                    .ok_or_else(|| not_found("replicasets"))?;
                let spec = rs.spec.clone();
                (KindRef::of::<ReplicaSet>(), spec.replicas, spec.selector, rs.metadata.resource_version.clone())
            }
            ("apps", "StatefulSet") => {
                let s = self
                    .stateful_sets
                    .get(ns, &r.name)
                    .ok_or_else(|| not_found("statefulsets"))?;
                let spec = s.spec.clone();
                (KindRef::of::<StatefulSet>(), spec.replicas, spec.selector, s.metadata.resource_version.clone())
            }
            _ => {
                return Err(format!(
                    "unsupported scale target {} {}: the autoscaler scales apps/v1 Deployments, ReplicaSets and StatefulSets",
                    r.api_version.as_deref().unwrap_or_default(),
                    r.kind
                ))
            }
        };
        Ok(ScaleTarget {
            kind,
            replicas: replicas.unwrap_or(1),
            selector,
            resource_version: rv.unwrap_or_default(),
        })
    }

    /// Set the target's `spec.replicas`, guarded by the resourceVersion it was read at.
    pub(super) async fn write_scale(
        &self,
        hpa: &HorizontalPodAutoscaler,
        target: &ScaleTarget,
        replicas: i32,
    ) -> Result<()> {
        let ns = hpa.metadata.namespace.as_deref().unwrap_or_default();
        let patch = json!({
            "metadata": {"resourceVersion": target.resource_version},
            "spec": {"replicas": replicas},
        });
        self.ctx
            .api
            .patch(
                &target.kind,
                ns,
                &hpa.spec.scale_target_ref.name,
                Patch::Merge(patch),
                false,
            )
            .await?;
        Ok(())
    }
}
