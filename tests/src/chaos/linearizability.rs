//! Per-key linearizability of a recorded history, checked with the Wing & Gong search as
//! improved by Lowe (just-in-time linearization with memoization of visited configurations).
//!
//! Linearizability is compositional, so each key is checked on its own against the model in
//! [`super::model`], with its own time budget. An operation with an unknown outcome completes at
//! +infinity: it may take effect at any point after its invocation, or never. A read with an
//! unknown outcome tells nothing and is dropped.
//!
//! Two reductions keep the search small without changing its answer (a test compares it with
//! trying every order): an applicable operation with a known outcome that leaves the state as it
//! is (a read, a conflict, a not-found) is linearized at once with no alternative tried, since any
//! order from there can start with it; and of several pending operations with unknown outcomes
//! and the same effect, only the earliest invoked is tried (see [`super::model::class`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::mem;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::history::{EntryId, History, Key, ObjectState, Operation, Outcome, Revision};
use super::model::{class, step, Class, KeyOps, Seen, State};

/// Limits for the search.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Wall-clock time the search may spend on one key before it gives up with
    /// [`KeyResult::TimedOut`].
    pub budget_per_key: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            budget_per_key: Duration::from_secs(10),
        }
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum KeyResult {
    Linearizable,
    NotLinearizable(Box<Violation>),
    /// The budget ran out: neither a pass nor a failure.
    TimedOut {
        after_ms: u64,
    },
}

/// Why a key's history has no linearization, from the longest partial linearization the search
/// found: the operations that could not be ordered around the one that blocked it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub key: Key,
    /// The operation that had to take effect before it returned, but whose outcome no order of
    /// the operations before it explains.
    pub blocked: OpRef,
    /// The key's state at the end of the longest partial linearization.
    pub state: String,
    /// The last operations of that partial linearization, oldest first.
    pub preceding: Vec<OpRef>,
    /// The other operations invoked before `blocked` returned and not yet linearized: the
    /// candidates the search tried to order before it.
    pub concurrent: Vec<OpRef>,
    /// How many more concurrent operations there were than are listed.
    pub concurrent_omitted: usize,
}

/// An operation named in a report: a history entry, or (`entry: None`) the read after healing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    pub entry: Option<EntryId>,
    pub description: String,
}

/// The verdict for one key, with how many operations were checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyReport {
    pub key: Key,
    pub operations: usize,
    pub result: KeyResult,
}

/// The per-key verdicts of a history, in key order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinearizabilityReport {
    pub keys: Vec<KeyReport>,
}

impl LinearizabilityReport {
    /// The keys with no linearization.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.keys.iter().filter_map(|k| match &k.result {
            KeyResult::NotLinearizable(v) => Some(&**v),
            _ => None,
        })
    }

    /// The keys whose search ran out of time.
    pub fn timed_out(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys
            .iter()
            .filter(|k| matches!(k.result, KeyResult::TimedOut { .. }))
    }

    /// Whether every key is linearizable (none failed and none timed out).
    pub fn is_linearizable(&self) -> bool {
        self.keys
            .iter()
            .all(|k| k.result == KeyResult::Linearizable)
    }

    /// The result for `key`, if the history touched it.
    pub fn result(&self, key: &str) -> Option<&KeyResult> {
        self.keys.iter().find(|k| k.key == key).map(|k| &k.result)
    }
}

/// Check every key of `history` for linearizability.
pub fn check_linearizability(history: &History, options: &CheckOptions) -> LinearizabilityReport {
    let claimed = claimed_revisions(history);
    let keys = entries_by_key(history)
        .into_iter()
        .map(|(key, ids)| KeyReport {
            key: key.to_string(),
            operations: ids.len(),
            result: check_key(history, key, &ids, None, &claimed, options.budget_per_key),
        })
        .collect();
    LinearizabilityReport { keys }
}

/// The entries each key's search considers: not reads with unknown outcomes, which tell nothing,
/// nor entries whose outcome cannot answer their operation (see [`History::problems`]).
pub(super) fn entries_by_key(history: &History) -> BTreeMap<&str, Vec<EntryId>> {
    let mut by_key: BTreeMap<&str, Vec<EntryId>> = BTreeMap::new();
    for (id, e) in history.entries.iter().enumerate() {
        let unknown_read = matches!(e.op, Operation::Get { .. }) && e.outcome == Outcome::Unknown;
        if !unknown_read
            && e.outcome.fits(&e.op)
            && (e.complete.is_some() || e.outcome == Outcome::Unknown)
        {
            by_key.entry(e.op.key()).or_default().push(id);
        }
    }
    by_key
}

/// The revisions the store returned to acknowledged writes: no write with an unknown outcome can
/// have one of them.
pub(super) fn claimed_revisions(history: &History) -> HashSet<Revision> {
    history
        .entries
        .iter()
        .filter_map(|e| match e.outcome {
            Outcome::Written { rv } => Some(rv),
            _ => None,
        })
        .collect()
}

/// Check one key's entries `ids`, followed, when `final_read` is given, by a read of that result
/// after every operation returned.
pub(super) fn check_key(
    history: &History,
    key: &str,
    ids: &[EntryId],
    final_read: Option<Option<&ObjectState>>,
    claimed: &HashSet<Revision>,
    budget: Duration,
) -> KeyResult {
    let ops = KeyOps::new(history, ids, final_read, claimed);
    match Search::new(&ops).run(budget) {
        Found::Linearizable => KeyResult::Linearizable,
        Found::TimedOut(after) => KeyResult::TimedOut {
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        },
        Found::Stuck(deepest) => {
            KeyResult::NotLinearizable(Box::new(deepest.explain(history, key, &ops)))
        }
    }
}

/// How many concurrent operations a violation lists, and how many preceding ones.
const LISTED_CONCURRENT: usize = 8;
const LISTED_PRECEDING: usize = 3;

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// A call or return event in the doubly linked list the search lifts operations out of.
#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_return: bool,
    /// A return at +infinity: every node after it is one too.
    infinite: bool,
    /// The call's return node, or the return's call node.
    matching: usize,
}

/// A choice on the current path: the call node linearized, the state before it, the classes of
/// interchangeable operations already tried in that state (see [`class`]), and whether the
/// choice was forced, leaving no alternative to try when backing out of it.
struct Frame {
    call: usize,
    state: State,
    tried: Vec<Class>,
    forced: bool,
}

enum Found {
    Linearizable,
    TimedOut(Duration),
    Stuck(Deepest),
}

/// The partial linearization that got furthest in time (then longest), recorded where the
/// search first had to back out of it. Counting linearized operations alone would favour orders
/// that apply many operations with unknown outcomes early over ones that get further.
struct Deepest {
    /// The return node that blocked it: nodes are in time order.
    reached: usize,
    depth: usize,
    state: State,
    /// The operations of the partial linearization, in order.
    order: Vec<usize>,
    blocked: usize,
    pending: Vec<usize>,
}

struct Search<'a> {
    ops: &'a KeyOps,
    nodes: Vec<Node>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a KeyOps) -> Self {
        // Calls sort before returns at the same instant: such operations count as concurrent,
        // which never produces a false alarm.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.ops.len());
        let mut infinite = Vec::new();
        for (i, op) in ops.ops.iter().enumerate() {
            events.push((op.call, false, i));
            match op.ret {
                Some(ret) => events.push((ret, true, i)),
                None => infinite.push(i),
            }
        }
        events.sort_unstable();
        let head = Node {
            op: NIL,
            is_return: false,
            infinite: false,
            matching: NIL,
        };
        let mut nodes = vec![head];
        let mut call_node = vec![NIL; ops.ops.len()];
        let finite = events
            .into_iter()
            .map(|(_, is_return, op)| (op, is_return, false));
        for (op, is_return, infinite) in
            finite.chain(infinite.into_iter().map(|op| (op, true, true)))
        {
            let index = nodes.len();
            let mut matching = NIL;
            if is_return {
                matching = call_node[op];
                nodes[matching].matching = index;
            } else {
                call_node[op] = index;
            }
            nodes.push(Node {
                op,
                is_return,
                infinite,
                matching,
            });
        }
        let len = nodes.len();
        let next = (0..len)
            .map(|i| if i + 1 < len { i + 1 } else { NIL })
            .collect();
        let prev = (0..len).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        Search {
            ops,
            nodes,
            next,
            prev,
        }
    }

    fn run(&mut self, budget: Duration) -> Found {
        let started = Instant::now();
        let words = self.ops.ops.len().div_ceil(64);
        let mut linearized = vec![0u64; words];
        let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = State::default();
        let mut tried: Vec<Class> = Vec::new();
        let mut deepest: Option<Deepest> = None;
        let mut entry = self.next[HEAD];
        let mut steps: u64 = 0;
        loop {
            steps += 1;
            if steps.is_multiple_of(1024) && started.elapsed() > budget {
                return Found::TimedOut(started.elapsed());
            }
            if entry == NIL {
                return Found::Linearizable;
            }
            let node = self.nodes[entry];
            if node.is_return {
                // Every return from here on is at +infinity, so every operation still in the
                // list has an unknown outcome: they take effect later, or never.
                if node.infinite {
                    return Found::Linearizable;
                }
                // The operation returning here was not linearized: back out of the last choice.
                if deepest
                    .as_ref()
                    .is_none_or(|d| (entry, stack.len()) > (d.reached, d.depth))
                {
                    deepest = Some(self.snapshot(&stack, state, entry));
                }
            } else {
                let op = &self.ops.ops[node.op];
                let class = class(op);
                if class.is_some_and(|c| tried.contains(&c)) {
                    entry = self.next[entry];
                    continue;
                }
                tried.extend(class);
                let Some(after) = step(state, op) else {
                    entry = self.next[entry];
                    continue;
                };
                // An operation with a known outcome that leaves the state as it is can go first
                // in any order that exists from here, so there is no alternative to try.
                let forced = after == state && !matches!(op.seen, Seen::Unknown);
                linearized[node.op / 64] |= 1 << (node.op % 64);
                if seen.insert((linearized.clone(), after)) {
                    stack.push(Frame {
                        call: entry,
                        state,
                        tried: mem::take(&mut tried),
                        forced,
                    });
                    state = after;
                    self.lift(entry);
                    entry = self.next[HEAD];
                    continue;
                }
                linearized[node.op / 64] &= !(1 << (node.op % 64));
                if !forced {
                    entry = self.next[entry];
                    continue;
                }
            }
            // Back out of the last choice that had alternatives.
            loop {
                let Some(frame) = stack.pop() else {
                    return Found::Stuck(deepest.expect("recorded before backing out"));
                };
                state = frame.state;
                tried = frame.tried;
                let op = self.nodes[frame.call].op;
                linearized[op / 64] &= !(1 << (op % 64));
                self.unlift(frame.call);
                entry = self.next[frame.call];
                if !frame.forced {
                    break;
                }
            }
        }
    }

    /// Remove a call node and its return node from the list.
    fn lift(&mut self, call: usize) {
        for n in [call, self.nodes[call].matching] {
            let (p, q) = (self.prev[n], self.next[n]);
            self.next[p] = q;
            if q != NIL {
                self.prev[q] = p;
            }
        }
    }

    /// Put back what [`Search::lift`] removed; the removed nodes kept their links.
    fn unlift(&mut self, call: usize) {
        for n in [self.nodes[call].matching, call] {
            let (p, q) = (self.prev[n], self.next[n]);
            self.next[p] = n;
            if q != NIL {
                self.prev[q] = n;
            }
        }
    }

    fn snapshot(&self, stack: &[Frame], state: State, reached: usize) -> Deepest {
        let blocked = self.nodes[reached].op;
        let mut pending = Vec::new();
        let mut n = self.next[HEAD];
        while n != NIL && !(self.nodes[n].is_return && self.nodes[n].op == blocked) {
            if !self.nodes[n].is_return && self.nodes[n].op != blocked {
                pending.push(self.nodes[n].op);
            }
            n = self.next[n];
        }
        Deepest {
            reached,
            depth: stack.len(),
            state,
            order: stack.iter().map(|f| self.nodes[f.call].op).collect(),
            blocked,
            pending,
        }
    }
}

impl Deepest {
    fn explain(&self, history: &History, key: &str, ops: &KeyOps) -> Violation {
        let op_ref = |i: usize| OpRef {
            entry: ops.ops[i].entry,
            description: ops.describe(history, i),
        };
        let skip = self.order.len().saturating_sub(LISTED_PRECEDING);
        Violation {
            key: key.to_string(),
            blocked: op_ref(self.blocked),
            state: ops.describe_state(history, &self.state),
            preceding: self.order[skip..].iter().map(|&i| op_ref(i)).collect(),
            concurrent: self
                .pending
                .iter()
                .take(LISTED_CONCURRENT)
                .map(|&i| op_ref(i))
                .collect(),
            concurrent_omitted: self.pending.len().saturating_sub(LISTED_CONCURRENT),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {}: no order of the operations explains {}",
            self.key, self.blocked.description
        )?;
        write!(
            f,
            "  on the longest consistent order the key is {}",
            self.state
        )?;
        if !self.preceding.is_empty() {
            write!(f, "\n  after")?;
            for op in &self.preceding {
                write!(f, "\n    {}", op.description)?;
            }
        }
        if !self.concurrent.is_empty() {
            write!(f, "\n  while these could not be ordered before it either")?;
            for op in &self.concurrent {
                write!(f, "\n    {}", op.description)?;
            }
            if self.concurrent_omitted > 0 {
                write!(f, "\n    and {} more", self.concurrent_omitted)?;
            }
        }
        Ok(())
    }
}
