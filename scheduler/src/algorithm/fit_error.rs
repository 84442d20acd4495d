//! `FitError`: why no node could take a pod, rendered exactly like kube-scheduler's
//! FailedScheduling message.

use std::collections::BTreeMap;
use std::fmt;

use super::filters::Reason;
use super::snapshot::Snapshot;

/// No node can take the pod.
///
/// `Display` renders kube-scheduler's message: `0/3 nodes are available: 1 node(s) didn't match
/// Pod's node affinity/selector, 2 Insufficient cpu.` (each reason with the number of nodes
/// that gave it, the "N reason" strings sorted as strings), `0/3 nodes are available:
/// persistentvolumeclaim "data" not found.` when the pod was rejected before any node was
/// looked at, and `no nodes available to schedule pods` for a cluster without nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    num_all_nodes: usize,
    pre_filter_message: Option<String>,
    node_reasons: BTreeMap<String, Vec<String>>,
    preemption_might_help: bool,
}

impl FitError {
    /// The number of nodes considered.
    pub fn num_all_nodes(&self) -> usize {
        self.num_all_nodes
    }

    /// Each node's reasons (from the first filter that rejected it), by node name.
    pub fn node_reasons(&self) -> &BTreeMap<String, Vec<String>> {
        &self.node_reasons
    }

    /// Whether evicting lower-priority pods might make room somewhere: some node was rejected
    /// only for reasons pods cause (resources, pod count, host ports, pod anti-affinity), not
    /// for reasons of the node itself (affinity, taints, cordon, readiness, name, volumes).
    pub fn preemption_might_help(&self) -> bool {
        self.preemption_might_help
    }

    pub(crate) fn no_nodes() -> Self {
        FitError {
            num_all_nodes: 0,
            pre_filter_message: None,
            node_reasons: BTreeMap::new(),
            preemption_might_help: false,
        }
    }

    /// Every node rejected by the same message before filtering.
    pub(crate) fn pre_filter(snapshot: &Snapshot, message: &str) -> Self {
        FitError {
            num_all_nodes: snapshot.nodes.len(),
            pre_filter_message: Some(message.to_string()),
            node_reasons: snapshot
                .nodes
                .iter()
                .map(|n| (n.name().to_string(), vec![message.to_string()]))
                .collect(),
            preemption_might_help: false,
        }
    }

    /// Every node rejected by a filter: `failures` holds (node index, reasons) for all of them.
    pub(crate) fn filtered(snapshot: &Snapshot, failures: &[(usize, Vec<Reason>)]) -> Self {
        FitError {
            num_all_nodes: snapshot.nodes.len(),
            pre_filter_message: None,
            node_reasons: failures
                .iter()
                .map(|(index, reasons)| {
                    let name = snapshot.nodes[*index].name().to_string();
                    (name, reasons.iter().map(Reason::to_string).collect())
                })
                .collect(),
            preemption_might_help: failures
                .iter()
                .any(|(_, reasons)| reasons.iter().all(Reason::preemption_might_help)),
        }
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_all_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(message) = &self.pre_filter_message {
            return write!(f, " {message}.");
        }
        let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
        for reason in self.node_reasons.values().flatten() {
            *histogram.entry(reason).or_default() += 1;
        }
        let mut counted: Vec<String> = histogram
            .into_iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        // Kubernetes sorts the "N reason" strings themselves (Go's sort.Strings, byte order).
        counted.sort();
        if !counted.is_empty() {
            write!(f, " {}.", counted.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}
