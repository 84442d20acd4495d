//! Watch streams: every stream ordered by revision without duplicates, resumed without replays,
//! without gaps, and identical across replicas.
//!
//! A stream is checked on its own for order, duplicates and replays after a resume. Gaps and
//! divergence are checked against a reference built from every stream and from the acknowledged
//! writes of the history: each revision names one event, and a stream must deliver every
//! reference event on the keys it watches within the revisions it covers, with the same content.
//! Together these make any two streams' event sequences equal on their common revision range.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::history::{History, Key, Operation, Outcome, Revision};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One event a watch delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub key: Key,
    /// The revision of the change: the object's resourceVersion after it (for DELETED, the
    /// revision of the deletion).
    pub rv: Revision,
    /// The object's value after the change; for DELETED, its last value. `None` if not recorded.
    pub value: Option<String>,
}

/// What a watch recorded, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum WatchRecord {
    Event(WatchEvent),
    /// The stream broke and the watch reconnected from resourceVersion `from`: the server must
    /// continue with the events after `from`.
    Resumed {
        from: Revision,
    },
}

/// The recording of one watch, typically one per replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLog {
    /// Which watch this is, e.g. the replica it was served by.
    pub name: String,
    /// The watch sees the keys starting with this (`namespace/`; empty for every key).
    pub prefix: String,
    /// The resourceVersion the watch started from: it delivers the events after it.
    pub start: Revision,
    /// A revision up to which the watch is known to have delivered everything, e.g. the final
    /// revision after healing once the stream drained; by default its last event.
    pub until: Option<Revision>,
    pub records: Vec<WatchRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchAnomalyKind {
    /// A revision lower than one delivered before it.
    OutOfOrder,
    /// A revision delivered twice.
    Duplicate,
    /// A revision at or before the one the watch started or resumed from.
    Replayed,
    /// A change on a watched key within the stream's range that it never delivered.
    Gap,
    /// An event whose content differs from another stream's or from the acknowledged write at
    /// the same revision.
    Diverged,
}

/// One thing wrong with one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchAnomaly {
    pub watch: String,
    pub kind: WatchAnomalyKind,
    pub rv: Revision,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchReport {
    pub streams: usize,
    pub events: usize,
    pub anomalies: Vec<WatchAnomaly>,
}

impl WatchLog {
    pub fn new(name: impl Into<String>, prefix: impl Into<String>, start: Revision) -> Self {
        WatchLog {
            name: name.into(),
            prefix: prefix.into(),
            start,
            until: None,
            records: Vec::new(),
        }
    }

    pub fn event(&mut self, event: WatchEvent) {
        self.records.push(WatchRecord::Event(event));
    }

    pub fn resumed(&mut self, from: Revision) {
        self.records.push(WatchRecord::Resumed { from });
    }

    /// The delivered events, in order.
    pub fn events(&self) -> impl Iterator<Item = &WatchEvent> {
        self.records.iter().filter_map(|r| match r {
            WatchRecord::Event(e) => Some(e),
            WatchRecord::Resumed { .. } => None,
        })
    }
}

/// Check every stream in `watches`, using the acknowledged writes of `history` as part of the
/// reference.
pub fn check_watches(history: &History, watches: &[WatchLog]) -> WatchReport {
    let mut anomalies = Vec::new();
    let mut reference: BTreeMap<Revision, Source> = BTreeMap::new();
    for e in &history.entries {
        let (Outcome::Written { rv }, Some(value)) = (&e.outcome, e.op.written_value()) else {
            continue;
        };
        let kind = match e.op {
            Operation::Create { .. } => EventType::Added,
            _ => EventType::Modified,
        };
        let event = WatchEvent {
            kind,
            key: e.op.key().to_string(),
            rv: *rv,
            value: Some(value.to_string()),
        };
        // Two acknowledged writes with one revision are the revision check's to report.
        reference.entry(*rv).or_insert(Source {
            event,
            from: format!("the acknowledged write ({e})"),
        });
    }
    let mut covered = Vec::new();
    for watch in watches {
        covered.push(check_order(watch, &mut anomalies));
        for event in watch.events() {
            match reference.get(&event.rv) {
                None => {
                    let from = format!("watch {}", watch.name);
                    reference.insert(
                        event.rv,
                        Source {
                            event: event.clone(),
                            from,
                        },
                    );
                }
                Some(source) if !same_change(&source.event, event) => {
                    anomalies.push(WatchAnomaly {
                        watch: watch.name.clone(),
                        kind: WatchAnomalyKind::Diverged,
                        rv: event.rv,
                        description: format!(
                            "delivered {} at rv {}, but {} has {}",
                            Show(event),
                            event.rv,
                            source.from,
                            Show(&source.event)
                        ),
                    })
                }
                Some(_) => {}
            }
        }
    }
    for (watch, coverage) in watches.iter().zip(covered) {
        let delivered: BTreeSet<Revision> = watch.events().map(|e| e.rv).collect();
        for (low, high) in coverage.ranges.into_iter().filter(|(low, high)| low < high) {
            for (&rv, source) in reference.range(low + 1..=high) {
                if source.event.key.starts_with(&watch.prefix) && !delivered.contains(&rv) {
                    anomalies.push(WatchAnomaly {
                        watch: watch.name.clone(),
                        kind: WatchAnomalyKind::Gap,
                        rv,
                        description: format!(
                            "never delivered {} at rv {rv} (seen in {}) although it covers revisions {}..={high}",
                            Show(&source.event),
                            source.from,
                            low + 1
                        ),
                    });
                }
            }
        }
    }
    WatchReport {
        streams: watches.len(),
        events: watches.iter().map(|w| w.events().count()).sum(),
        anomalies,
    }
}

/// An event of the reference and where it came from.
struct Source {
    event: WatchEvent,
    from: String,
}

/// The revision ranges `(low, high]` a stream claims to have delivered completely: from its start
/// to its end, less the revisions it skipped by resuming from past its last event.
struct Coverage {
    ranges: Vec<(Revision, Revision)>,
}

/// Check one stream's order, duplicates and resumes, and work out what it covers.
fn check_order(watch: &WatchLog, anomalies: &mut Vec<WatchAnomaly>) -> Coverage {
    let mut delivered = BTreeSet::new();
    let mut ranges = Vec::new();
    let mut low = watch.start;
    let mut last = watch.start;
    let mut restart = watch.start;
    let mut report = |kind, rv, description: String| {
        anomalies.push(WatchAnomaly {
            watch: watch.name.clone(),
            kind,
            rv,
            description,
        })
    };
    for record in &watch.records {
        let event = match record {
            WatchRecord::Resumed { from } => {
                if *from > last {
                    ranges.push((low, last));
                    low = *from;
                    last = *from;
                }
                restart = *from;
                continue;
            }
            WatchRecord::Event(event) => event,
        };
        let rv = event.rv;
        if !delivered.insert(rv) {
            report(
                WatchAnomalyKind::Duplicate,
                rv,
                format!("delivered rv {rv} again: {}", Show(event)),
            );
        } else if rv <= restart {
            report(
                WatchAnomalyKind::Replayed,
                rv,
                format!(
                    "delivered rv {rv} after (re)starting from rv {restart}: {}",
                    Show(event)
                ),
            );
        } else if rv < last {
            report(
                WatchAnomalyKind::OutOfOrder,
                rv,
                format!("delivered rv {rv} after rv {last}: {}", Show(event)),
            );
        }
        last = last.max(rv);
    }
    ranges.push((low, watch.until.unwrap_or(last).max(last)));
    Coverage { ranges }
}

/// Whether two events describe the same change; a value that was not recorded matches any.
fn same_change(a: &WatchEvent, b: &WatchEvent) -> bool {
    let values_agree = match (&a.value, &b.value) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    a.kind == b.kind && a.key == b.key && values_agree
}

/// An event in a report.
struct Show<'a>(&'a WatchEvent);

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "{:?} {}", e.kind, e.key)?;
        if let Some(value) = &e.value {
            write!(f, " = {value:?}")?;
        }
        Ok(())
    }
}

impl fmt::Display for WatchAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "watch {}: {:?} at rv {}: {}",
            self.watch, self.kind, self.rv, self.description
        )
    }
}
