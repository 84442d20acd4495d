//! Revisions across keys, which the per-key linearizability check cannot see: every revision
//! names one change, and a write that began after another completed has a higher revision.

use std::collections::BTreeMap;

use super::history::{EntryId, History, Nanos, Outcome, Revision};

/// Problems with the revisions in `history`, as descriptions:
/// - two acknowledged writes, or a write and a read of another object, share a revision;
/// - an acknowledged write that began after another acknowledged write completed has a lower
///   revision (the store's revisions follow real time).
pub fn check_revisions(history: &History) -> Vec<String> {
    let mut problems = Vec::new();
    let writes: Vec<(EntryId, Nanos, Nanos, Revision)> = history
        .entries
        .iter()
        .enumerate()
        .filter_map(|(id, e)| match (&e.outcome, e.complete) {
            (&Outcome::Written { rv }, Some(done)) if e.op.written_value().is_some() => {
                Some((id, e.invoke, done, rv))
            }
            _ => None,
        })
        .collect();

    // What each revision is: the key and value an acknowledged write put there.
    let mut named: BTreeMap<Revision, EntryId> = BTreeMap::new();
    for &(id, _, _, rv) in &writes {
        if let Some(&first) = named.get(&rv) {
            problems.push(format!(
                "rv {rv} returned to two writes: entry {first}: {} and entry {id}: {}",
                history.entries[first], history.entries[id]
            ));
        } else {
            named.insert(rv, id);
        }
    }
    for (id, e) in history.entries.iter().enumerate() {
        let Outcome::Found { value, rv } = &e.outcome else {
            continue;
        };
        let Some(&writer) = named.get(rv) else {
            continue;
        };
        let w = &history.entries[writer].op;
        if w.key() != e.op.key() || w.written_value() != Some(value.as_str()) {
            problems.push(format!(
                "entry {id}: {} read rv {rv}, which entry {writer} wrote: {}",
                e, history.entries[writer]
            ));
        }
    }

    // Sweep the writes in invocation order, folding in those completed strictly before.
    let mut by_completion = writes.clone();
    by_completion.sort_by_key(|&(_, _, done, _)| done);
    let mut by_invocation = writes;
    by_invocation.sort_by_key(|&(_, invoked, _, _)| invoked);
    let mut completed = by_completion.iter().peekable();
    let mut highest: Option<(Revision, EntryId)> = None;
    for &(id, invoked, _, rv) in &by_invocation {
        while let Some(&(earlier, _, _, earlier_rv)) = completed.next_if(|w| w.2 < invoked) {
            if highest.is_none_or(|(h, _)| earlier_rv > h) {
                highest = Some((earlier_rv, earlier));
            }
        }
        if let Some((h, earlier)) = highest {
            if h >= rv {
                problems.push(format!(
                    "entry {id}: {} began after entry {earlier}: {} completed, yet has no higher revision",
                    history.entries[id], history.entries[earlier]
                ));
            }
        }
    }
    problems
}
