//! The recorded history of a chaos workload: operations on ConfigMaps with invoke and completion
//! times, their outcomes, the state read after healing, and the history's well-formedness check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// An object's key, `namespace/name`.
pub type Key = String;

/// A resourceVersion: the store's global revision. The API returns it as a string of digits; the
/// workload parses it (`rv.parse::<u64>()`) before recording, so the checkers can order it.
pub type Revision = u64;

/// The workload's client that issued an operation. A client has at most one operation in flight.
pub type ClientId = u32;

/// Monotonic time in nanoseconds since an arbitrary origin shared by every client of one run.
pub type Nanos = u64;

/// A request a client sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Create the object with a value no other write uses.
    Create { key: Key, value: String },
    /// Replace the value if the object's resourceVersion is still `expected_rv` (compare-and-swap).
    Update {
        key: Key,
        expected_rv: Revision,
        value: String,
    },
    /// Read the object.
    Get { key: Key },
    /// Delete the object, unconditionally.
    Delete { key: Key },
}

/// What a client learned about an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// A create or update succeeded and the object now has resourceVersion `rv`.
    Written { rv: Revision },
    /// A get found the object.
    Found { value: String, rv: Revision },
    /// A delete succeeded.
    Deleted,
    /// The object did not exist (get, update or delete).
    NotFound,
    /// A create found the object already there.
    AlreadyExists,
    /// An update's expected resourceVersion was not the object's.
    Conflict,
    /// No answer (timeout, unavailable, connection lost): the operation may have taken effect at
    /// any time after its invocation, or never.
    Unknown,
}

/// One operation of one client, from invocation to completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub client: ClientId,
    pub op: Operation,
    pub outcome: Outcome,
    /// When the request was sent.
    pub invoke: Nanos,
    /// When the answer arrived, or when the client gave up; `None` if it never did. The checkers
    /// treat an `Unknown` outcome as completing at +infinity whatever is recorded here.
    pub complete: Option<Nanos>,
}

/// An object as read: its value and resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectState {
    pub value: String,
    pub rv: Revision,
}

/// The objects listed after the faults healed and the cluster settled: every key not in the map
/// is absent.
pub type FinalState = BTreeMap<Key, ObjectState>;

/// Every operation of a run, in any order; every key starts absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub entries: Vec<Entry>,
}

/// The position of an entry in [`History::entries`].
pub type EntryId = usize;

impl Operation {
    /// The object the operation is about.
    pub fn key(&self) -> &str {
        match self {
            Operation::Create { key, .. }
            | Operation::Update { key, .. }
            | Operation::Get { key }
            | Operation::Delete { key } => key,
        }
    }

    /// The value a create or update writes.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Operation::Create { value, .. } | Operation::Update { value, .. } => Some(value),
            Operation::Get { .. } | Operation::Delete { .. } => None,
        }
    }
}

impl Outcome {
    /// Whether this outcome is one the operation can have: a get cannot conflict, a delete
    /// cannot return a resourceVersion, and so on.
    pub fn fits(&self, op: &Operation) -> bool {
        matches!(
            (op, self),
            (_, Outcome::Unknown)
                | (
                    Operation::Create { .. },
                    Outcome::Written { .. } | Outcome::AlreadyExists
                )
                | (
                    Operation::Update { .. },
                    Outcome::Written { .. } | Outcome::Conflict | Outcome::NotFound
                )
                | (
                    Operation::Get { .. },
                    Outcome::Found { .. } | Outcome::NotFound
                )
                | (
                    Operation::Delete { .. },
                    Outcome::Deleted | Outcome::NotFound
                )
        )
    }
}

impl Entry {
    /// Whether the operation is a write the server acknowledged as done.
    pub fn is_acknowledged_write(&self) -> bool {
        matches!(self.outcome, Outcome::Written { .. } | Outcome::Deleted)
    }

    /// The completion time the checkers use: +infinity (`None`) for unknown outcomes.
    pub fn effective_complete(&self) -> Option<Nanos> {
        match self.outcome {
            Outcome::Unknown => None,
            _ => self.complete,
        }
    }
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that `client` sent `op` at `at`; the entry stays `Unknown` until [`History::complete`].
    pub fn invoke(&mut self, client: ClientId, op: Operation, at: Nanos) -> EntryId {
        self.entries.push(Entry {
            client,
            op,
            outcome: Outcome::Unknown,
            invoke: at,
            complete: None,
        });
        self.entries.len() - 1
    }

    /// Record the answer to an invoked operation (or `Outcome::Unknown` when the client gave up).
    pub fn complete(&mut self, id: EntryId, outcome: Outcome, at: Nanos) {
        let entry = &mut self.entries[id];
        entry.outcome = outcome;
        entry.complete = Some(at);
    }

    /// Append a finished entry.
    pub fn push(&mut self, entry: Entry) -> EntryId {
        self.entries.push(entry);
        self.entries.len() - 1
    }

    /// Join the histories the clients recorded separately.
    pub fn merge(parts: impl IntoIterator<Item = History>) -> History {
        History {
            entries: parts.into_iter().flat_map(|h| h.entries).collect(),
        }
    }

    /// Every key an operation touched.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.entries.iter().map(|e| e.op.key()).collect()
    }

    /// The history as pretty JSON, to keep next to a run's verdict.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a history always serializes")
    }

    pub fn from_json(json: &str) -> serde_json::Result<History> {
        serde_json::from_str(json)
    }

    /// Problems that make entries meaningless to the checkers, which are workload bugs rather
    /// than anomalies of the system: an outcome the operation cannot have, a known outcome
    /// without a completion time, a completion before the invocation, and a client with two
    /// operations in flight at once. The linearizability checkers skip entries whose outcome
    /// does not fit.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut by_client: BTreeMap<ClientId, Vec<EntryId>> = BTreeMap::new();
        for (id, e) in self.entries.iter().enumerate() {
            by_client.entry(e.client).or_default().push(id);
            if !e.outcome.fits(&e.op) {
                problems.push(format!(
                    "entry {id}: outcome cannot answer the operation: {e}"
                ));
            }
            match e.complete {
                None if e.outcome != Outcome::Unknown => problems.push(format!(
                    "entry {id}: a known outcome needs a completion time: {e}"
                )),
                Some(c) if c < e.invoke => {
                    problems.push(format!("entry {id}: completes before it was invoked: {e}"))
                }
                _ => {}
            }
        }
        for (client, mut ids) in by_client {
            ids.sort_by_key(|&id| self.entries[id].invoke);
            for pair in ids.windows(2) {
                let (a, b) = (&self.entries[pair[0]], &self.entries[pair[1]]);
                if a.complete.is_none_or(|c| c > b.invoke) {
                    problems.push(format!(
                        "client {client} has two operations in flight: entries {} and {}",
                        pair[0], pair[1]
                    ));
                }
            }
        }
        problems
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Create { key, value } => write!(f, "create {key} = {value:?}"),
            Operation::Update {
                key,
                expected_rv,
                value,
            } => write!(f, "update {key} = {value:?} if rv {expected_rv}"),
            Operation::Get { key } => write!(f, "get {key}"),
            Operation::Delete { key } => write!(f, "delete {key}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Written { rv } => write!(f, "ok, rv {rv}"),
            Outcome::Found { value, rv } => write!(f, "found {value:?} at rv {rv}"),
            Outcome::Deleted => f.write_str("deleted"),
            Outcome::NotFound => f.write_str("not found"),
            Outcome::AlreadyExists => f.write_str("already exists"),
            Outcome::Conflict => f.write_str("conflict"),
            Outcome::Unknown => f.write_str("unknown"),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {}: {} -> {} [{}..",
            self.client, self.op, self.outcome, self.invoke
        )?;
        match self.complete {
            Some(c) => write!(f, "{c}]"),
            None => f.write_str("never]"),
        }
    }
}
