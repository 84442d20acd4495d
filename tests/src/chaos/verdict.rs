//! The verdict of a chaos run: every checker's result over one recording, and the table printed
//! at the end of the run.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::history::{FinalState, History};
use super::linearizability::{check_linearizability, CheckOptions, KeyResult};
use super::lost_writes::{check_final_state, FinalKeyResult};
use super::revisions::check_revisions;
use super::watch::{check_watches, WatchLog};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// At least one anomaly.
    Fail,
    /// No anomaly, but some part could not be decided (a search ran out of time).
    Inconclusive,
    /// Nothing was recorded for this check.
    Skipped,
}

/// One checker's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    /// What was checked, e.g. "50 keys".
    pub checked: String,
    pub anomalies: usize,
    /// Parts that could not be decided.
    pub inconclusive: usize,
    /// A description of each anomaly and undecided part.
    pub details: Vec<String>,
}

/// Every checker's result over one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub operations: usize,
    /// Rows the suite adds to the table's header, e.g. ("faults injected", "12").
    pub summary: Vec<(String, String)>,
    pub checks: Vec<CheckResult>,
}

/// Run every checker: the history's well-formedness, revisions across keys, per-key
/// linearizability, no acknowledged write lost (when the state after healing is given) and the
/// watch streams (when any were recorded).
pub fn check_all(
    history: &History,
    final_state: Option<&FinalState>,
    watches: &[WatchLog],
    options: &CheckOptions,
) -> Verdict {
    let mut checks = Vec::new();
    let operations = history.entries.len();

    let problems = history.problems();
    checks.push(CheckResult::new(
        "history well-formed",
        format!("{operations} operations"),
        problems,
        Vec::new(),
    ));

    let problems = check_revisions(history);
    checks.push(CheckResult::new(
        "revisions follow real time",
        format!("{operations} operations"),
        problems,
        Vec::new(),
    ));

    let report = check_linearizability(history, options);
    let violations = report.violations().map(|v| v.to_string()).collect();
    let timed_out = report
        .timed_out()
        .map(|k| timed_out(&k.key, &k.result))
        .collect();
    checks.push(CheckResult::new(
        "linearizable per key",
        format!("{} keys", report.keys.len()),
        violations,
        timed_out,
    ));

    checks.push(match final_state {
        None => CheckResult::skipped("no acknowledged write lost", "no final state recorded"),
        Some(final_state) => {
            let report = check_final_state(history, final_state, options);
            let mut lost = Vec::new();
            let mut undecided = Vec::new();
            for k in &report.keys {
                match &k.result {
                    FinalKeyResult::Explained => {}
                    FinalKeyResult::Unexplained { lost: writes, violation } => {
                        let mut text = format!("key {}: the state after healing is not explained", k.key);
                        for w in writes {
                            let _ = write!(text, "\n  lost: {}", w.description);
                        }
                        let _ = write!(text, "\n  {}", violation.to_string().replace('\n', "\n  "));
                        lost.push(text);
                    }
                    FinalKeyResult::NotJudged => undecided.push(format!(
                        "key {}: not judged, its history is not linearizable without the final read",
                        k.key
                    )),
                    FinalKeyResult::TimedOut { after_ms } => {
                        undecided.push(format!("key {}: timed out after {after_ms} ms", k.key))
                    }
                }
            }
            CheckResult::new("no acknowledged write lost", format!("{} keys", report.keys.len()), lost, undecided)
        }
    });

    checks.push(if watches.is_empty() {
        CheckResult::skipped("watch streams", "no watch recorded")
    } else {
        let report = check_watches(history, watches);
        let anomalies = report.anomalies.iter().map(|a| a.to_string()).collect();
        let checked = format!("{} streams, {} events", report.streams, report.events);
        CheckResult::new("watch streams", checked, anomalies, Vec::new())
    });

    Verdict {
        operations,
        summary: Vec::new(),
        checks,
    }
}

fn timed_out(key: &str, result: &KeyResult) -> String {
    match result {
        KeyResult::TimedOut { after_ms } => {
            format!("key {key}: search timed out after {after_ms} ms")
        }
        _ => format!("key {key}: {result:?}"),
    }
}

impl CheckResult {
    fn new(name: &str, checked: String, anomalies: Vec<String>, undecided: Vec<String>) -> Self {
        let status = if !anomalies.is_empty() {
            Status::Fail
        } else if !undecided.is_empty() {
            Status::Inconclusive
        } else {
            Status::Pass
        };
        CheckResult {
            name: name.to_string(),
            status,
            checked,
            anomalies: anomalies.len(),
            inconclusive: undecided.len(),
            details: anomalies.into_iter().chain(undecided).collect(),
        }
    }

    fn skipped(name: &str, why: &str) -> Self {
        CheckResult {
            name: name.to_string(),
            status: Status::Skipped,
            checked: why.to_string(),
            anomalies: 0,
            inconclusive: 0,
            details: Vec::new(),
        }
    }
}

/// How many details per check the rendered verdict shows.
const SHOWN_DETAILS: usize = 5;

impl Verdict {
    /// Anomalies found by every check together; a good run has none.
    pub fn anomalies(&self) -> usize {
        self.checks.iter().map(|c| c.anomalies).sum()
    }

    /// Whether the run passed: no anomaly, and nothing left undecided.
    pub fn is_clean(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.status, Status::Pass | Status::Skipped))
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The verdict as a markdown table, followed by the first details of each failing check.
    pub fn render(&self) -> String {
        let header = ["check", "status", "checked", "anomalies"];
        let rows: Vec<[String; 4]> = self
            .checks
            .iter()
            .map(|c| {
                let status = match c.status {
                    Status::Inconclusive => format!("inconclusive ({})", c.inconclusive),
                    s => format!("{s:?}").to_lowercase(),
                };
                [
                    c.name.clone(),
                    status,
                    c.checked.clone(),
                    c.anomalies.to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: [&str; 4]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = String::new();
        let _ = writeln!(out, "operations: {}", self.operations);
        for (name, value) in &self.summary {
            let _ = writeln!(out, "{name}: {value}");
        }
        out.push('\n');
        out.push_str(&line(header));
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        for row in &rows {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
        }
        let verdict = if self.is_clean() {
            "PASS"
        } else if self.anomalies() > 0 {
            "FAIL"
        } else {
            "INCONCLUSIVE"
        };
        let _ = writeln!(out, "\nanomalies found: {} ({verdict})", self.anomalies());
        for c in self.checks.iter().filter(|c| !c.details.is_empty()) {
            let _ = writeln!(out, "\n{}:", c.name);
            for detail in c.details.iter().take(SHOWN_DETAILS) {
                let _ = writeln!(out, "- {}", detail.replace('\n', "\n  "));
            }
            if c.details.len() > SHOWN_DETAILS {
                let _ = writeln!(out, "- and {} more", c.details.len() - SHOWN_DETAILS);
            }
        }
        out
    }
}
