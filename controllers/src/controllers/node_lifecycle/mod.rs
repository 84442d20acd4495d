//! The node lifecycle controller (Kubernetes' `pkg/controller/nodelifecycle`): watches the
//! nodes' heartbeats (Leases in `kube-node-lease` and the Ready condition the agent posts),
//! declares silent nodes' conditions Unknown, taints unreachable and not-ready nodes with
//! `NoExecute` taints, and evicts the pods that do not tolerate those taints (the taint manager).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::error::{Error, Result};
use crate::runtime::events::NORMAL;
use crate::runtime::{
    Action, ApiExt, Change, Context, Controller, Informer, ObjectKey, Reconciler,
};
use crate::util;

mod eviction;

/// The namespace of the nodes' heartbeat Leases (one per node, named after it).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node that stopped renewing its Lease (Ready Unknown).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose agent reports Ready False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint effect that evicts running pods.
pub const NO_EXECUTE: &str = "NoExecute";

/// The conditions set to Unknown when a node goes silent (those the agent reports).
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// No node is looked at more often than this.
const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// A pause of this many monitor periods without any node reconcile means this controller did
/// not lead in between (see [`NodeLifecycleOptions::startup_grace`]).
const TERM_GAP_PERIODS: u32 = 3;

/// Options with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLifecycleOptions {
    /// How long a node may go without a heartbeat (Lease renewal or Ready heartbeat) before it is
    /// declared unreachable (`--node-monitor-grace-period`: 40 s; Kubernetes 1.29+ uses 50 s).
    pub node_monitor_grace_period: Duration,
    /// After this controller starts leading, no node is declared unreachable for this long, so
    /// agents can reconnect after a leader change or a control-plane outage: silence is measured
    /// from the later of the last heartbeat and the start of leadership (announced by the
    /// runtime through `Reconciler::leadership_started`; as a fallback, a pause of several
    /// monitor periods without reconciles also counts as a new term). The window also restarts
    /// when a write fails because the control plane is unavailable or this server lost
    /// leadership (then the agents could not write their heartbeats either).
    pub startup_grace: Duration,
    /// Every node is re-checked at least this often (`--node-monitor-period`: 5 s); deadlines in
    /// between (a lease expiring, a toleration running out) are met to the second.
    pub node_monitor_period: Duration,
    /// The `tolerationSeconds` assumed for `node.kubernetes.io/not-ready` and
    /// `node.kubernetes.io/unreachable` by pods with no toleration for them. Kubernetes' admission
    /// (`DefaultTolerationSeconds`, formerly `--pod-eviction-timeout`) adds these tolerations with
    /// 300 s to every pod; rkube's API server does not, so the taint manager assumes them.
    pub default_toleration_seconds: i64,
}

impl Default for NodeLifecycleOptions {
    fn default() -> Self {
        NodeLifecycleOptions {
            node_monitor_grace_period: Duration::from_secs(40),
            startup_grace: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            default_toleration_seconds: 300,
        }
    }
}

/// The node lifecycle controller. Its keys are node names; it is woken by changes to the Node,
/// to its Lease in `kube-node-lease`, and to the pods bound to it while it has `NoExecute`
/// taints, and re-checks every node at least every `node_monitor_period`.
///
/// For each node:
/// - no heartbeat for `node_monitor_grace_period` (and past the startup grace): the Ready,
///   MemoryPressure, DiskPressure and PIDPressure conditions become Unknown
///   (`NodeStatusUnknown`, event `NodeNotReady`);
/// - Ready Unknown: taint `node.kubernetes.io/unreachable:NoExecute`; Ready False (reported by
///   the agent): taint `node.kubernetes.io/not-ready:NoExecute` (event `NodeNotReady`); Ready
///   True: neither. The agent must post Ready True again for the taint to go: a renewed Lease
///   alone ends the silence but does not say the node is ready;
/// - taint manager: pods that do not tolerate a `NoExecute` taint are deleted (gracefully, event
///   `TaintManagerEviction`), at once or when their `tolerationSeconds` (counted from the taint's
///   `timeAdded`, or from the start of leadership if later) run out;
/// - pods on an unreachable node still terminating past their deletion deadline are
///   force-deleted (grace 0): their agent cannot confirm the kill, and until they are gone their
///   controllers would not replace them elsewhere. Kubernetes leaves them to the pod garbage
///   collector and the `out-of-service` taint; rkube frees them as soon as their grace period is
///   over, accepting that a partitioned agent might still run the containers for a while.
pub fn controller(ctx: &Context, opts: NodeLifecycleOptions) -> Controller {
    let reconciler = NodeLifecycle {
        ctx: ctx.clone(),
        opts,
        nodes: ctx.informers.get::<Node>(),
        leases: ctx.informers.get::<Lease>(),
        pods: ctx.informers.get::<Pod>(),
        state: Mutex::new(State::default()),
    };
    let nodes = reconciler.nodes.clone();
    let leases = reconciler.leases.clone();
    let pods = reconciler.pods.clone();
    let c = Controller::new::<Node>("node-lifecycle", ctx, reconciler, 1);
    util::enqueue_self(&nodes, &c.queue);
    {
        let queue = c.queue.clone();
        leases.on_change(move |change: &Change<Lease>| {
            let lease = change.object();
            if lease.metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE) {
                if let Some(name) = &lease.metadata.name {
                    queue.add(ObjectKey::new("", name));
                }
            }
        });
    }
    {
        let queue = c.queue.clone();
        pods.on_change(move |change: &Change<Pod>| {
            let bound = std::iter::once(change.object())
                .chain(change.old())
                .filter_map(|p| p.spec.as_ref()?.node_name.clone());
            for node in bound {
                if nodes
                    .get("", &node)
                    .is_some_and(|n| !no_execute_taints(&n).is_empty())
                {
                    queue.add(ObjectKey::new("", &node));
                }
            }
        });
    }
    c
}

struct NodeLifecycle {
    ctx: Context,
    opts: NodeLifecycleOptions,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When any node was last reconciled (to notice a pause in leadership).
    last_reconcile: Option<Timestamp>,
    /// The start of the current leadership term (or of the last control-plane outage).
    leading_since: Option<Timestamp>,
    /// When this controller first saw each `NoExecute` taint that has no `timeAdded`, by
    /// (node, taint key, taint value).
    untimed_taints: BTreeMap<(String, String, String), Timestamp>,
}

#[async_trait::async_trait]
impl Reconciler for NodeLifecycle {
    fn leadership_started(&self) {
        let now = self.ctx.now();
        tracing::info!("leading: no node is declared unreachable during the startup grace");
        let mut st = self.state.lock().expect("node lifecycle state");
        st.leading_since = Some(now);
        st.last_reconcile = Some(now);
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let now = self.ctx.now();
        let leading_since = self.observe_reconcile(now);
        let Some(node) = self.nodes.get("", &key.name) else {
            self.taint_starts(&key.name, &[], now, leading_since);
            return Ok(Action::Done);
        };
        match self.sync(node.as_ref().clone(), now, leading_since).await {
            Ok(next) => Ok(Action::RequeueAfter(self.requeue_after(now, next))),
            Err(e) => {
                if control_plane_unavailable(&e) {
                    self.restart_grace(now, &e);
                }
                Err(e)
            }
        }
    }
}

impl NodeLifecycle {
    /// One pass over a node; returns the next time something is due for it.
    async fn sync(
        &self,
        node: Node,
        now: Timestamp,
        leading_since: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = self.leases.get(NODE_LEASE_NAMESPACE, &name);
        let heartbeat = last_heartbeat(&node, lease.as_deref()).unwrap_or(leading_since);
        let silent_at = later(
            add(heartbeat, self.opts.node_monitor_grace_period),
            add(leading_since, self.opts.startup_grace),
        );
        let mut next = None;
        let node = if now >= silent_at {
            self.mark_unknown(node, now).await?
        } else {
            next = Some(silent_at);
            node
        };
        let node = self.update_taints(node, now).await?;
        let due = self.evict_pods(&node, now, leading_since).await?;
        Ok(earliest(next, due))
    }

    /// Set the monitored conditions of a silent node to Unknown (once).
    async fn mark_unknown(&self, node: Node, now: Timestamp) -> Result<Node> {
        let before = ready_status(&node).map(str::to_string);
        let mut updated = node.clone();
        let status = updated.status.get_or_insert_with(NodeStatus::default);
        if !conditions_unknown(status, now) {
            return Ok(node);
        }
        let updated = self.ctx.api.update_object_status(&updated).await?;
        let name = node.metadata.name.as_deref().unwrap_or_default();
        tracing::info!(
            node = name,
            "node stopped posting its status; its conditions are Unknown"
        );
        if before.as_deref() != Some("False") {
            self.node_not_ready(&updated);
        }
        Ok(updated)
    }

    /// Make the node's `NoExecute` not-ready/unreachable taints follow its Ready condition.
    async fn update_taints(&self, node: Node, now: Timestamp) -> Result<Node> {
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let Some(taints) = desired_taints(&current, ready_status(&node), now) else {
            return Ok(node);
        };
        let has = |list: &[Taint], key: &str| list.iter().any(|t| is_lifecycle_taint(t, key));
        let now_not_ready = has(&taints, TAINT_NOT_READY) && !has(&current, TAINT_NOT_READY);
        let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
        let name = node.metadata.name.clone().unwrap_or_default();
        tracing::info!(node = name, taints = ?keys, "updating the node's lifecycle taints");
        let mut updated = node;
        updated.spec.get_or_insert_with(Default::default).taints =
            (!taints.is_empty()).then_some(taints);
        let updated = self.ctx.api.update_object(&updated).await?;
        if now_not_ready {
            self.node_not_ready(&updated);
        }
        Ok(updated)
    }

    fn node_not_ready(&self, node: &Node) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        self.ctx.recorder.event(
            node,
            NORMAL,
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        );
    }

    /// Note a reconcile at `now`; returns the start of the current leadership term.
    fn observe_reconcile(&self, now: Timestamp) -> Timestamp {
        let gap = self.opts.node_monitor_period * TERM_GAP_PERIODS;
        let mut st = self.state.lock().expect("node lifecycle state");
        let paused = match st.last_reconcile {
            None => true,
            Some(last) => now >= add(last, gap),
        };
        if paused || st.leading_since.is_none() {
            if st.last_reconcile.is_some() {
                tracing::info!(
                    ?gap,
                    "no node reconciled for a while: a new leadership term; startup grace restarts"
                );
            }
            st.leading_since = Some(now);
        }
        st.last_reconcile = Some(now);
        st.leading_since.unwrap_or(now)
    }

    fn restart_grace(&self, now: Timestamp, cause: &Error) {
        tracing::info!(error = %cause, "the control plane could not take a write; startup grace restarts");
        self.state
            .lock()
            .expect("node lifecycle state")
            .leading_since = Some(now);
    }

    /// When each `NoExecute` taint of `node` started to count: its `timeAdded` (or when this
    /// controller first saw it, if it has none), but not before the start of leadership.
    fn taint_starts<'a>(
        &self,
        node: &str,
        taints: &[&'a Taint],
        now: Timestamp,
        leading_since: Timestamp,
    ) -> Vec<(&'a Taint, Timestamp)> {
        let mut st = self.state.lock().expect("node lifecycle state");
        let id = |t: &Taint| {
            let value = t.value.clone().unwrap_or_default();
            (node.to_string(), t.key.clone(), value)
        };
        let live: Vec<_> = taints
            .iter()
            .filter(|t| t.time_added.is_none())
            .map(|t| id(t))
            .collect();
        st.untimed_taints
            .retain(|k, _| k.0 != node || live.contains(k));
        taints
            .iter()
            .map(|t| {
                let added = match &t.time_added {
                    Some(Time(at)) => *at,
                    None => *st.untimed_taints.entry(id(t)).or_insert(now),
                };
                (*t, later(added, leading_since))
            })
            .collect()
    }

    fn requeue_after(&self, now: Timestamp, next: Option<Timestamp>) -> Duration {
        let period = self.opts.node_monitor_period.max(MIN_REQUEUE);
        next.map_or(period, |t| until(now, t))
            .clamp(MIN_REQUEUE, period)
    }
}

/// Errors that mean the control plane could not commit anything (so neither could the agents).
fn control_plane_unavailable(e: &Error) -> bool {
    e.is_fenced()
        || matches!(
            e,
            Error::Api(rkube_client::Error::Unavailable(_) | rkube_client::Error::Timeout(_))
        )
}

/// The latest sign of life: the Lease's renewTime, the Ready condition's heartbeat, or else the
/// node's creation.
fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let renewed = lease
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
        .map(|t| t.0);
    let posted = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    [renewed, posted, created].into_iter().flatten().max()
}

fn condition<'a>(node: &'a Node, ty: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// Set the monitored conditions to Unknown (adding Ready if the agent never posted it); false
/// when they already were.
fn conditions_unknown(status: &mut NodeStatus, now: Timestamp) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_heartbeat_time: None,
            last_transition_time: Some(Time(now)),
        });
        changed = true;
    }
    for c in conditions
        .iter_mut()
        .filter(|c| MONITORED_CONDITIONS.contains(&c.type_.as_str()) && c.status != "Unknown")
    {
        c.status = "Unknown".into();
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some("Kubelet stopped posting node status.".into());
        c.last_transition_time = Some(Time(now));
        changed = true;
    }
    changed
}

fn is_lifecycle_taint(t: &Taint, key: &str) -> bool {
    t.key == key && t.effect == NO_EXECUTE
}

/// The node's taints with the lifecycle taint matching its Ready status (Unknown: unreachable,
/// False: not-ready, True: none); `None` when nothing changes or the node has no Ready condition
/// yet.
fn desired_taints(current: &[Taint], ready: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let want = match ready? {
        "True" => None,
        "False" => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let lifecycle = [TAINT_NOT_READY, TAINT_UNREACHABLE]
                .iter()
                .any(|k| is_lifecycle_taint(t, k));
            !lifecycle || Some(t.key.as_str()) == want
        })
        .cloned()
        .collect();
    if let Some(key) = want {
        if !taints.iter().any(|t| is_lifecycle_taint(t, key)) {
            taints.push(Taint {
                key: key.into(),
                value: None,
                effect: NO_EXECUTE.into(),
                time_added: Some(Time(now)),
            });
        }
    }
    (taints != current).then_some(taints)
}

/// The node's `NoExecute` taints.
fn no_execute_taints(node: &Node) -> Vec<&Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .collect()
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn later(a: Timestamp, b: Timestamp) -> Timestamp {
    a.max(b)
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The time from `now` until `t` (zero if past).
fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(now.duration_until(t)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests;
