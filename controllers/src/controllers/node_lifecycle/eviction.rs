//! The taint manager half of the node lifecycle controller: evicting the pods of a node that do
//! not tolerate its `NoExecute` taints (or whose `tolerationSeconds` ran out), and force-deleting
//! pods stuck terminating on an unreachable node.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

use super::{
    add, earliest, is_lifecycle_taint, no_execute_taints, NodeLifecycle, TAINT_NOT_READY,
    TAINT_UNREACHABLE,
};
use crate::error::Result;
use crate::runtime::events::NORMAL;
use crate::runtime::{ApiExt, DeleteOptions};
use crate::util;

/// The taints every pod is assumed to tolerate for `default_toleration_seconds` unless it says
/// otherwise (Kubernetes' `DefaultTolerationSeconds` admission plugin).
const DEFAULT_TOLERATED: [&str; 2] = [TAINT_NOT_READY, TAINT_UNREACHABLE];

/// How long a pass waits for the cache to show its own deletions.
const CACHE_WAIT: Duration = Duration::from_secs(5);

impl NodeLifecycle {
    /// Evict what is due on `node`; returns when the next eviction or force deletion is due.
    pub(super) async fn evict_pods(
        &self,
        node: &Node,
        now: Timestamp,
        leading_since: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let taints = no_execute_taints(node);
        let starts = self.taint_starts(name, &taints, now, leading_since);
        if starts.is_empty() {
            return Ok(None);
        }
        let unreachable = taints
            .iter()
            .any(|t| is_lifecycle_taint(t, TAINT_UNREACHABLE));
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
            .collect();
        let mut next = None;
        let mut deleted = Vec::new();
        for pod in pods {
            let due = if let Some(at) = &pod.metadata.deletion_timestamp {
                // Already being deleted: its agent finishes the job, unless it is unreachable. A
                // pod already deleted with grace 0 waits for its finalizers: nothing to add.
                if !unreachable || force_deleted(&pod) {
                    continue;
                }
                if at.0 <= now {
                    self.force_delete(&pod).await?;
                    deleted.push(pod);
                    continue;
                }
                Some(at.0)
            } else {
                let at = eviction_time(&pod, &starts, self.opts.default_toleration_seconds);
                if at.is_some_and(|at| at <= now) {
                    self.evict(&pod).await?;
                    deleted.push(pod);
                    continue;
                }
                at
            };
            next = earliest(next, due);
        }
        if !deleted.is_empty() {
            // The cache must show the deletions before the next pass, or it would repeat them.
            self.pods
                .wait_until(CACHE_WAIT, |c| {
                    let cached = c.list();
                    deleted.iter().all(|p| deletion_seen(&cached, p))
                })
                .await;
        }
        Ok(next)
    }

    async fn evict(&self, pod: &Pod) -> Result<()> {
        let (ns, name) = pod_key(pod);
        let opts = DeleteOptions {
            precondition_uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        self.ctx.api.delete_object::<Pod>(ns, name, opts).await?;
        tracing::info!(pod = %format!("{ns}/{name}"), "evicted a pod that does not tolerate its node's taints");
        self.ctx.recorder.event(
            pod,
            NORMAL,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        );
        Ok(())
    }

    async fn force_delete(&self, pod: &Pod) -> Result<()> {
        let (ns, name) = pod_key(pod);
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        self.ctx.api.delete_object::<Pod>(ns, name, opts).await?;
        tracing::info!(pod = %format!("{ns}/{name}"), "force-deleted a pod left terminating on an unreachable node");
        Ok(())
    }
}

fn pod_key(pod: &Pod) -> (&str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn force_deleted(pod: &Pod) -> bool {
    pod.metadata.deletion_grace_period_seconds == Some(0)
}

/// Whether the cache shows our deletion of `pod`: gone (or replaced), or marked for deletion
/// (with grace 0 if it was already marked, that is, force-deleted).
fn deletion_seen(pods: &[Arc<Pod>], pod: &Pod) -> bool {
    let force = pod.metadata.deletion_timestamp.is_some();
    !pods.iter().any(|p| {
        let shown = if force {
            force_deleted(p)
        } else {
            util::is_terminating(p.as_ref())
        };
        p.metadata.uid == pod.metadata.uid
            && p.metadata.namespace == pod.metadata.namespace
            && p.metadata.name == pod.metadata.name
            && !shown
    })
}

/// When the pod must go given the node's `NoExecute` taints and when each started to count;
/// `None` if it tolerates them all for ever. Each taint is matched by the pod's first toleration
/// for it (Kubernetes' `GetMatchingTolerations`); an untolerated taint evicts at once, except the
/// not-ready/unreachable taints, which get the default toleration.
pub(super) fn eviction_time(
    pod: &Pod,
    taints: &[(&Taint, Timestamp)],
    default_seconds: i64,
) -> Option<Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut due = None;
    for (taint, start) in taints {
        let seconds = match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => t.toleration_seconds,
            None if DEFAULT_TOLERATED.contains(&taint.key.as_str()) => Some(default_seconds),
            None => Some(0),
        };
        if let Some(s) = seconds {
            let secs = u64::try_from(s).unwrap_or(0);
            due = earliest(due, Some(add(*start, Duration::from_secs(secs))));
        }
    }
    due
}

/// Kubernetes' `Toleration.ToleratesTaint`.
pub(super) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::NO_EXECUTE;
    use super::*;

    fn taint(key: &str, value: Option<&str>) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: NO_EXECUTE.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_taints_like_kubernetes() {
        let dedicated = taint("dedicated", Some("db"));
        let cases = [
            (toleration("dedicated", "Equal", "db", "NoExecute"), true),
            (toleration("dedicated", "", "db", ""), true),
            (toleration("dedicated", "Equal", "web", "NoExecute"), false),
            (toleration("dedicated", "Exists", "", ""), true),
            (toleration("dedicated", "Exists", "", "NoSchedule"), false),
            (toleration("other", "Exists", "", ""), false),
            (toleration("", "Exists", "", ""), true),
            (toleration("dedicated", "Gt", "db", ""), false),
        ];
        for (t, want) in cases {
            assert_eq!(tolerates(&t, &dedicated), want, "{t:?}");
        }
        assert!(tolerates(
            &toleration("flag", "Equal", "", ""),
            &taint("flag", None)
        ));
    }

    #[test]
    fn the_first_matching_toleration_and_the_earliest_taint_decide() {
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let at = |s: u64| add(t0, Duration::from_secs(s));
        let unreachable = taint(TAINT_UNREACHABLE, None);
        let dedicated = taint("dedicated", Some("db"));
        let pod = Pod {
            spec: Some(Default::default()),
            ..Default::default()
        };
        let both = [(&unreachable, t0), (&dedicated, at(100))];
        // No toleration: the default for unreachable, at once for the other.
        assert_eq!(eviction_time(&pod, &both[..1], 300), Some(at(300)));
        assert_eq!(eviction_time(&pod, &both, 300), Some(at(100)));
        let pod_with = |tolerations: Vec<Toleration>| {
            let mut p = pod.clone();
            p.spec.as_mut().unwrap().tolerations = Some(tolerations);
            p
        };
        let mut for_10 = toleration(TAINT_UNREACHABLE, "Exists", "", "NoExecute");
        for_10.toleration_seconds = Some(10);
        let forever = toleration("dedicated", "Equal", "db", "");
        let p = pod_with(vec![for_10.clone(), forever.clone()]);
        assert_eq!(eviction_time(&p, &both, 300), Some(at(10)));
        let p = pod_with(vec![forever.clone()]);
        assert_eq!(eviction_time(&p, &both[1..], 300), None);
        // A blanket toleration counts as one for unreachable (no default is assumed).
        let p = pod_with(vec![toleration("", "Exists", "", "")]);
        assert_eq!(eviction_time(&p, &both, 300), None);
        let mut negative = for_10;
        negative.toleration_seconds = Some(-5);
        let p = pod_with(vec![negative, forever]);
        assert_eq!(eviction_time(&p, &both, 300), Some(t0));
    }
}
