//! No acknowledged write lost: the state read after healing must be explainable by the history.
//!
//! Each key's history is checked again with a read of its final state appended after every
//! operation returned. If that fails while the history alone is linearizable, the final state
//! cannot be explained, and the acknowledged writes it contradicts are named: writes that
//! committed at a later revision than the final value's, writes that began after the final
//! value's write completed, and, for a key found absent, writes that no delete could follow.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::history::{Entry, EntryId, FinalState, History, Key, Operation, Outcome};
use super::linearizability::{
    check_key, claimed_revisions, entries_by_key, CheckOptions, KeyResult, OpRef, Violation,
};

/// The verdict on one key's final state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FinalKeyResult {
    Explained,
    /// The final state contradicts the history; `lost` names the acknowledged writes that it
    /// contradicts (empty when none can be singled out, e.g. a value no one wrote).
    Unexplained {
        lost: Vec<OpRef>,
        violation: Box<Violation>,
    },
    /// The history of the key is not linearizable even without the final read, so the final
    /// state cannot be judged on its own (the linearizability check reports the key).
    NotJudged,
    TimedOut {
        after_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalKeyReport {
    pub key: Key,
    pub result: FinalKeyResult,
}

/// The verdicts on the final state of every key the history or the final state names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalStateReport {
    pub keys: Vec<FinalKeyReport>,
}

impl FinalStateReport {
    /// The keys whose final state contradicts their history.
    pub fn unexplained(&self) -> impl Iterator<Item = &FinalKeyReport> {
        self.keys
            .iter()
            .filter(|k| matches!(k.result, FinalKeyResult::Unexplained { .. }))
    }

    /// Every acknowledged write named as lost.
    pub fn lost_writes(&self) -> impl Iterator<Item = &OpRef> {
        self.keys.iter().flat_map(|k| match &k.result {
            FinalKeyResult::Unexplained { lost, .. } => lost.as_slice(),
            _ => &[],
        })
    }

    pub fn result(&self, key: &str) -> Option<&FinalKeyResult> {
        self.keys.iter().find(|k| k.key == key).map(|k| &k.result)
    }
}

/// Check that `final_state` (the objects listed after healing) is explained by `history`.
pub fn check_final_state(
    history: &History,
    final_state: &FinalState,
    options: &CheckOptions,
) -> FinalStateReport {
    let claimed = claimed_revisions(history);
    let mut by_key = entries_by_key(history);
    for key in final_state.keys() {
        by_key.entry(key.as_str()).or_default();
    }
    let keys = by_key
        .into_iter()
        .map(|(key, ids)| {
            let found = final_state.get(key);
            let budget = options.budget_per_key;
            let result = match check_key(history, key, &ids, Some(found), &claimed, budget) {
                KeyResult::Linearizable => FinalKeyResult::Explained,
                KeyResult::TimedOut { after_ms } => FinalKeyResult::TimedOut { after_ms },
                KeyResult::NotLinearizable(violation) => {
                    let lost =
                        contradicted_writes(history, &ids, found.map(|o| (o.value.as_str(), o.rv)));
                    if lost.is_empty()
                        && check_key(history, key, &ids, None, &claimed, budget)
                            != KeyResult::Linearizable
                    {
                        FinalKeyResult::NotJudged
                    } else {
                        let lost = lost
                            .into_iter()
                            .map(|id| OpRef {
                                entry: Some(id),
                                description: format!("entry {id}: {}", history.entries[id]),
                            })
                            .collect();
                        FinalKeyResult::Unexplained { lost, violation }
                    }
                }
            };
            FinalKeyReport {
                key: key.to_string(),
                result,
            }
        })
        .collect();
    FinalStateReport { keys }
}

/// The acknowledged writes among `ids` that the final state contradicts, by the rules in the
/// module documentation. Each rule follows from the model, so a write named here is lost in
/// every explanation of the history, never a false alarm.
fn contradicted_writes(
    history: &History,
    ids: &[EntryId],
    found: Option<(&str, u64)>,
) -> BTreeSet<EntryId> {
    let entries = || ids.iter().map(|&id| (id, &history.entries[id]));
    let acknowledged = || entries().filter(|(_, e)| e.is_acknowledged_write());
    let mut lost = BTreeSet::new();
    match found {
        Some((value, rv)) => {
            for (id, e) in acknowledged() {
                if matches!(e.outcome, Outcome::Written { rv: w } if w > rv) {
                    lost.insert(id);
                }
            }
            let writer = entries().find(|(_, e)| e.op.written_value() == Some(value));
            if let Some(done) = writer.and_then(|(_, w)| w.effective_complete()) {
                lost.extend(
                    acknowledged()
                        .filter(|(_, e)| e.invoke > done)
                        .map(|(id, _)| id),
                );
            }
        }
        None => {
            let deletes: Vec<&Entry> = entries()
                .map(|(_, e)| e)
                .filter(|e| matches!(e.op, Operation::Delete { .. }))
                .filter(|e| matches!(e.outcome, Outcome::Deleted | Outcome::Unknown))
                .collect();
            for (id, e) in acknowledged() {
                let creates = matches!(e.outcome, Outcome::Written { .. });
                let undone = deletes
                    .iter()
                    .any(|d| d.effective_complete().is_none_or(|c| c > e.invoke));
                if creates && !undone {
                    lost.insert(id);
                }
            }
        }
    }
    lost
}
