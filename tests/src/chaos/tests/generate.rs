//! A generator of valid recordings: clients whose operations take effect at a random instant
//! inside their interval, replayed against a sequential store with one global revision counter.
//! Some outcomes are hidden as unknown, half of those operations having taken effect.

use std::collections::BTreeMap;

use crate::chaos::history::{Entry, FinalState, History, ObjectState, Operation, Outcome};
use crate::chaos::watch::{EventType, WatchEvent};

pub(super) struct Params {
    pub seed: u64,
    pub clients: u32,
    pub ops_per_client: usize,
    pub keys: u64,
    /// Percentage of operations whose outcome the client never learns.
    pub unknown_percent: u64,
}

/// What a run recorded: the history, the objects at the end, and every change in revision order
/// (what a watch from revision 0 delivers).
pub(super) struct Run {
    pub history: History,
    pub final_state: FinalState,
    pub events: Vec<WatchEvent>,
}

/// SplitMix64: small, seeded, and stable across platforms and crate versions.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

pub(super) fn generate(p: &Params) -> Run {
    let mut rng = Rng(p.seed);
    // (instant the operation takes effect, entry)
    let mut planned: Vec<(u64, Entry)> = Vec::new();
    for client in 0..p.clients {
        let mut now = 0;
        for i in 0..p.ops_per_client {
            let invoke = now + 1 + rng.below(50);
            let complete = invoke + 1 + rng.below(300);
            let at = invoke + rng.below(complete - invoke + 1);
            let key = format!("ns/k{}", rng.below(p.keys));
            let value = format!("c{client}-{i}");
            let op = match rng.below(10) {
                0..=1 => Operation::Create { key, value },
                // The expected revision is chosen when the update takes effect, below.
                2..=4 => Operation::Update {
                    key,
                    expected_rv: 0,
                    value,
                },
                5..=8 => Operation::Get { key },
                _ => Operation::Delete { key },
            };
            let entry = Entry {
                client,
                op,
                outcome: Outcome::Unknown,
                invoke,
                complete: Some(complete),
            };
            planned.push((at, entry));
            now = complete;
        }
    }
    planned.sort_by_key(|(at, e)| (*at, e.client));

    let mut store: BTreeMap<String, ObjectState> = BTreeMap::new();
    let mut revision = 0;
    let mut events = Vec::new();
    let mut entries = Vec::with_capacity(planned.len());
    for (_, mut entry) in planned {
        let unknown = rng.percent(p.unknown_percent);
        let applies = !unknown || rng.percent(50);
        let key = entry.op.key().to_string();
        let current = store.get(&key).cloned();
        let mut change = |kind, value: &str, store: &mut BTreeMap<String, ObjectState>| {
            revision += 1;
            let object = ObjectState {
                value: value.to_string(),
                rv: revision,
            };
            match kind {
                EventType::Deleted => store.remove(&key),
                _ => store.insert(key.clone(), object),
            };
            events.push(WatchEvent {
                kind,
                key: key.clone(),
                rv: revision,
                value: Some(value.to_string()),
            });
            revision
        };
        let outcome = match (&mut entry.op, current) {
            (Operation::Create { value, .. }, None) if applies => Outcome::Written {
                rv: change(EventType::Added, value, &mut store),
            },
            (Operation::Create { .. }, Some(_)) => Outcome::AlreadyExists,
            (
                Operation::Update {
                    expected_rv, value, ..
                },
                Some(object),
            ) => {
                *expected_rv = match rng.below(10) {
                    0..=6 => object.rv,
                    _ => object.rv.saturating_sub(1 + rng.below(3)),
                };
                if *expected_rv != object.rv {
                    Outcome::Conflict
                } else if applies {
                    Outcome::Written {
                        rv: change(EventType::Modified, value, &mut store),
                    }
                } else {
                    Outcome::Unknown
                }
            }
            (Operation::Update { expected_rv, .. }, None) => {
                *expected_rv = rng.below(revision + 1);
                Outcome::NotFound
            }
            (Operation::Get { .. }, Some(object)) => Outcome::Found {
                value: object.value,
                rv: object.rv,
            },
            (Operation::Delete { .. }, Some(object)) if applies => {
                change(EventType::Deleted, &object.value, &mut store);
                Outcome::Deleted
            }
            (Operation::Get { .. } | Operation::Delete { .. }, None) => Outcome::NotFound,
            _ => Outcome::Unknown,
        };
        entry.outcome = if unknown { Outcome::Unknown } else { outcome };
        entries.push(entry);
    }
    Run {
        history: History { entries },
        final_state: store,
        events,
    }
}
