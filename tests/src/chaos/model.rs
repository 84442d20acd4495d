//! The sequential specification of one key that the linearizability search replays operations
//! against: the object is absent or present with a value and a resourceVersion.
//!
//! Revisions are part of the state. A successful write sets the object's revision to the one it
//! returned, a read must return the current value and revision, and the revisions a key goes
//! through strictly increase, because the store hands out one global, growing revision per write.
//! A write with an unknown outcome leaves the revision unobserved until a later read or
//! compare-and-swap reveals it; since revisions are global, it cannot be one that the store
//! returned to an acknowledged write, on any key.
//!
//! Values that no read observes are interned as one value, [`UNSEEN`]: which of them the object
//! holds makes no difference to any outcome, and merging them lets the search treat writes with
//! unknown outcomes that differ only in such a value as interchangeable.

use std::collections::{HashMap, HashSet};

use super::history::{EntryId, History, Nanos, ObjectState, Operation, Outcome, Revision};

/// The state of a key; values are interned per key so states are small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(super) struct State {
    pub object: Option<Object>,
    /// The highest revision observed on this key so far in the order being tried; the next
    /// observed write must have a higher one.
    pub floor: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Object {
    pub value: u32,
    /// `None` while the object was last written by an operation with an unknown outcome.
    pub rv: Option<Revision>,
}

/// The interned value standing for every value no read observes.
pub(super) const UNSEEN: u32 = 0;

/// A revision a client named, and whether it may belong to a write with an unknown outcome
/// (no acknowledged write was given it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Named {
    pub rv: Revision,
    pub free: bool,
}

/// A request with its value interned.
#[derive(Debug, Clone, Copy)]
pub(super) enum Action {
    Create(u32),
    Update { expected: Named, value: u32 },
    Get,
    Delete,
}

/// An outcome with its value interned.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seen {
    Written(Revision),
    Found(u32, Named),
    Deleted,
    NotFound,
    AlreadyExists,
    Conflict,
    Unknown,
}

/// One operation on the key: a history entry, or the read after healing (`entry` is `None`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Op {
    pub entry: Option<EntryId>,
    pub call: Nanos,
    /// `None` is +infinity: the operation may take effect at any time after its call, or never.
    pub ret: Option<Nanos>,
    pub action: Action,
    pub seen: Seen,
}

/// The operations on one key, ready for the search.
pub(super) struct KeyOps {
    pub ops: Vec<Op>,
    values: Vec<String>,
}

impl KeyOps {
    /// The entries `ids` (all on one key), plus, when `final_read` is given, a read of that
    /// result after every other operation returned. `claimed` holds the revisions returned to
    /// acknowledged writes on every key.
    pub fn new(
        history: &History,
        ids: &[EntryId],
        final_read: Option<Option<&ObjectState>>,
        claimed: &HashSet<Revision>,
    ) -> Self {
        let mut observed: HashSet<&str> = ids
            .iter()
            .filter_map(|&id| match &history.entries[id].outcome {
                Outcome::Found { value, .. } => Some(value.as_str()),
                _ => None,
            })
            .collect();
        observed.extend(final_read.flatten().map(|o| o.value.as_str()));
        let mut interner = Interner {
            ids: HashMap::new(),
            names: vec![String::new()],
            observed,
            claimed,
        };
        let mut ops: Vec<Op> = ids
            .iter()
            .map(|&id| {
                let e = &history.entries[id];
                let action = match &e.op {
                    Operation::Create { value, .. } => Action::Create(interner.written(value)),
                    Operation::Update {
                        expected_rv, value, ..
                    } => Action::Update {
                        expected: interner.named(*expected_rv),
                        value: interner.written(value),
                    },
                    Operation::Get { .. } => Action::Get,
                    Operation::Delete { .. } => Action::Delete,
                };
                Op {
                    entry: Some(id),
                    call: e.invoke,
                    ret: e.effective_complete(),
                    action,
                    seen: interner.seen(&e.outcome),
                }
            })
            .collect();
        if let Some(result) = final_read {
            let last = ops
                .iter()
                .map(|o| o.ret.unwrap_or(o.call).max(o.call))
                .max()
                .unwrap_or(0);
            let seen = match result {
                Some(o) => Seen::Found(interner.id(&o.value), interner.named(o.rv)),
                None => Seen::NotFound,
            };
            ops.push(Op {
                entry: None,
                call: last.saturating_add(1),
                ret: Some(last.saturating_add(2)),
                action: Action::Get,
                seen,
            });
        }
        KeyOps {
            ops,
            values: interner.names,
        }
    }

    /// A human description of operation `i`.
    pub fn describe(&self, history: &History, i: usize) -> String {
        let op = &self.ops[i];
        match op.entry {
            Some(id) => format!("entry {id}: {}", history.entries[id]),
            None => match op.seen {
                Seen::Found(v, rv) => {
                    format!(
                        "final read after healing: found {:?} at rv {}",
                        self.values[v as usize], rv.rv
                    )
                }
                _ => "final read after healing: not found".to_string(),
            },
        }
    }

    /// A human description of a state.
    pub fn describe_state(&self, history: &History, state: &State) -> String {
        let Some(Object { value, rv }) = state.object else {
            return "absent".to_string();
        };
        // An unseen value is named after the acknowledged write that gave it its revision.
        let writer = self.ops.iter().find_map(|op| match (op.seen, op.entry) {
            (Seen::Written(w), Some(id)) if Some(w) == rv => history.entries[id].op.written_value(),
            _ => None,
        });
        let value = match (value, writer) {
            (UNSEEN, Some(written)) => format!("{written:?}"),
            (UNSEEN, None) => "a value no read observed".to_string(),
            (v, _) => format!("{:?}", self.values[v as usize]),
        };
        match rv {
            Some(rv) => format!("{value} at rv {rv}"),
            None => {
                format!("{value} at a revision not yet observed (its write has an unknown outcome)")
            }
        }
    }
}

/// The state after `op` takes effect in `state`, or `None` if it cannot take effect there with
/// the outcome it had. An operation with an unknown outcome only takes effect where it changes
/// the state: anywhere else it is indistinguishable from never happening.
pub(super) fn step(state: State, op: &Op) -> Option<State> {
    let floor = state.floor;
    let present = |value, rv: Revision| State {
        object: Some(Object {
            value,
            rv: Some(rv),
        }),
        floor: rv,
    };
    match (op.action, op.seen) {
        (Action::Create(value), Seen::Written(rv)) => {
            (state.object.is_none() && rv > floor).then(|| present(value, rv))
        }
        (Action::Create(_), Seen::AlreadyExists) => state.object.is_some().then_some(state),
        (Action::Create(value), Seen::Unknown) => state.object.is_none().then_some(State {
            object: Some(Object { value, rv: None }),
            floor,
        }),
        (Action::Update { expected, value }, Seen::Written(rv)) => {
            let object = state.object?;
            (has_revision(object, expected, floor) && rv > expected.rv && rv > floor)
                .then(|| present(value, rv))
        }
        (Action::Update { expected, .. }, Seen::Conflict) => {
            // An unobserved revision may or may not be the expected one.
            (state.object?.rv != Some(expected.rv)).then_some(state)
        }
        (Action::Update { expected, value }, Seen::Unknown) => {
            let object = state.object?;
            has_revision(object, expected, floor).then_some(State {
                object: Some(Object { value, rv: None }),
                floor: floor.max(expected.rv),
            })
        }
        (Action::Get, Seen::Found(value, rv)) => {
            let object = state.object?;
            (object.value == value && has_revision(object, rv, floor))
                .then(|| present(value, rv.rv))
        }
        (Action::Delete, Seen::Deleted | Seen::Unknown) => {
            state.object.is_some().then_some(State {
                object: None,
                floor,
            })
        }
        (Action::Update { .. } | Action::Get | Action::Delete, Seen::NotFound) => {
            state.object.is_none().then_some(state)
        }
        // Outcomes that cannot answer the operation are filtered out before the search, and an
        // unknown read tells nothing.
        _ => None,
    }
}

/// Which operations are interchangeable: those with unknown outcomes and the same effect. Of
/// several such operations pending at once, the search only needs to try the earliest invoked,
/// as any order that applies a later one can apply the earlier one there instead.
pub(super) type Class = (u8, u32, Revision);

pub(super) fn class(op: &Op) -> Option<Class> {
    match (op.seen, op.action) {
        (Seen::Unknown, Action::Create(value)) => Some((0, value, 0)),
        (Seen::Unknown, Action::Update { expected, value }) => Some((1, value, expected.rv)),
        (Seen::Unknown, Action::Delete) => Some((2, 0, 0)),
        _ => None,
    }
}

/// Whether `object` can have revision `rv`: it has it, or its revision is unobserved and `rv` is
/// newer than every revision before the write that set it and not an acknowledged write's.
fn has_revision(object: Object, rv: Named, floor: Revision) -> bool {
    match object.rv {
        Some(known) => known == rv.rv,
        None => rv.free && rv.rv > floor,
    }
}

struct Interner<'a> {
    ids: HashMap<String, u32>,
    names: Vec<String>,
    observed: HashSet<&'a str>,
    claimed: &'a HashSet<Revision>,
}

impl Interner<'_> {
    /// A written value: its own id if some read observed it, else [`UNSEEN`].
    fn written(&mut self, value: &str) -> u32 {
        if self.observed.contains(value) {
            self.id(value)
        } else {
            UNSEEN
        }
    }

    fn named(&self, rv: Revision) -> Named {
        Named {
            rv,
            free: !self.claimed.contains(&rv),
        }
    }

    fn id(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 values per key");
        self.ids.insert(value.to_string(), id);
        self.names.push(value.to_string());
        id
    }

    fn seen(&mut self, outcome: &Outcome) -> Seen {
        match outcome {
            Outcome::Written { rv } => Seen::Written(*rv),
            Outcome::Found { value, rv } => Seen::Found(self.id(value), self.named(*rv)),
            Outcome::Deleted => Seen::Deleted,
            Outcome::NotFound => Seen::NotFound,
            Outcome::AlreadyExists => Seen::AlreadyExists,
            Outcome::Conflict => Seen::Conflict,
            Outcome::Unknown => Seen::Unknown,
        }
    }
}
