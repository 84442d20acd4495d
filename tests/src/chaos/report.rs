//! What a chaos run reports besides the checkers' verdict: the faults it injected with the
//! longest unavailability after each, the failover figures, and the raw recordings written as
//! JSON lines to the output directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::faults::FaultKind;
use super::history::{FinalState, History, Nanos};
use super::verdict::Verdict;
use super::watch::WatchLog;

/// One injected fault (several kinds when combined).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub kinds: Vec<FaultKind>,
    pub description: String,
    /// When it was injected and healed, on the run's clock.
    pub at: Nanos,
    pub healed: Nanos,
    /// From injection to the completion of the first acknowledged write invoked after it.
    pub unavailable_ms: Option<u64>,
    /// How long the cluster took after healing until every server agreed on a leader.
    pub recovered_ms: Option<u64>,
}

/// Failover after one leader kill.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Failover {
    /// Kill to the first acknowledged write of the workload.
    pub first_write_ms: Option<u64>,
    /// Kill to the acknowledgement of a Deployment scale-up sent right after the kill.
    pub scale_acked_ms: Option<u64>,
    /// Kill to the controllers' reaction: the new pod exists.
    pub controller_action_ms: Option<u64>,
}

/// One agent killed: the time until its node's pods ran elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeLoss {
    pub node: String,
    /// Kill to the Deployment having all its ready pods on other nodes (the servers run with
    /// a 10 s node monitor grace period and 2 s default toleration).
    pub running_elsewhere_ms: Option<u64>,
}

impl FaultRecord {
    pub fn name(&self) -> String {
        self.kinds
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// The first acknowledged write invoked at or after `at`: its completion minus `at`.
pub fn unavailability(history: &History, at: Nanos) -> Option<u64> {
    history
        .entries
        .iter()
        .filter(|e| e.is_acknowledged_write() && e.invoke >= at)
        .filter_map(|e| e.complete)
        .min()
        .map(|c| (c - at) / 1_000_000)
}

/// Rows for the verdict header: faults injected and the longest unavailability per kind.
pub fn fault_summary(faults: &[FaultRecord]) -> Vec<(String, String)> {
    let mut by_kind: BTreeMap<String, (usize, Option<u64>)> = BTreeMap::new();
    for f in faults {
        let e = by_kind.entry(f.name()).or_default();
        e.0 += 1;
        e.1 = e.1.max(f.unavailable_ms);
    }
    let mut rows = vec![("faults injected".to_string(), faults.len().to_string())];
    for (name, (count, longest)) in by_kind {
        let longest = longest.map_or("no write after it".to_string(), |ms| format!("{ms} ms"));
        rows.push((
            format!("  {name}"),
            format!("{count}x, longest unavailability {longest}"),
        ));
    }
    rows
}

/// The failover figures as text.
pub fn render_failovers(failovers: &[Failover]) -> String {
    let mut out = String::new();
    let show = |v: Option<u64>| v.map_or("-".to_string(), |ms| format!("{ms} ms"));
    let _ = writeln!(
        out,
        "failover after leader kills ({}): kill -> first acknowledged write | -> Deployment scale acknowledged | -> controller action (new pod)",
        failovers.len()
    );
    for f in failovers {
        let _ = writeln!(
            out,
            "  {} | {} | {}",
            show(f.first_write_ms),
            show(f.scale_acked_ms),
            show(f.controller_action_ms)
        );
    }
    out
}

/// The node-loss figures as text.
pub fn render_node_losses(losses: &[NodeLoss]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "agents killed ({}): kill -> the Deployment's pods ready on other nodes (grace period 10 s + toleration 2 s)",
        losses.len()
    );
    for l in losses {
        let _ = writeln!(
            out,
            "  {}: {}",
            l.node,
            l.running_elsewhere_ms
                .map_or("not within 120 s".to_string(), |ms| format!("{ms} ms"))
        );
    }
    out
}

/// Everything a run writes out.
pub struct Outputs<'a> {
    pub history: &'a History,
    pub final_state: &'a FinalState,
    pub watches: &'a [WatchLog],
    pub faults: &'a [FaultRecord],
    pub failovers: &'a [Failover],
    pub node_losses: &'a [NodeLoss],
    pub verdict: &'a Verdict,
    /// The verdict as printed.
    pub text: &'a str,
}

/// Write the raw recordings and the verdict to `dir`.
pub fn write_outputs(dir: &Path, o: &Outputs<'_>) -> anyhow::Result<()> {
    let Outputs {
        history,
        final_state,
        watches,
        faults,
        failovers,
        node_losses,
        verdict,
        text,
    } = *o;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lines = |items: Vec<String>| items.join("\n") + "\n";
    let write = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))
    };
    write(
        "history.jsonl",
        lines(history.entries.iter().map(json).collect()),
    )?;
    for w in watches {
        let header = serde_json::json!({
            "name": w.name, "prefix": w.prefix, "start": w.start, "until": w.until
        });
        let mut rows = vec![header.to_string()];
        rows.extend(w.records.iter().map(json));
        write(&format!("watch-{}.jsonl", w.name), lines(rows))?;
    }
    write("faults.jsonl", lines(faults.iter().map(json).collect()))?;
    write(
        "failover.jsonl",
        lines(failovers.iter().map(json).collect()),
    )?;
    write(
        "node-loss.jsonl",
        lines(node_losses.iter().map(json).collect()),
    )?;
    write(
        "final-state.json",
        serde_json::to_string_pretty(final_state)?,
    )?;
    write("verdict.json", serde_json::to_string_pretty(verdict)?)?;
    write("verdict.txt", text.to_string())?;
    Ok(())
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializes")
}
