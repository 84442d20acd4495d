//! The search against a brute-force oracle: on thousands of small histories, valid and mutated,
//! the Wing & Gong / Lowe search with its reductions (interchangeable unknown writes, forced
//! read-only steps, merged unobserved values) must agree with trying every order.

use std::collections::HashSet;

use super::generate::{generate, Params, Rng};
use super::*;
use crate::chaos::{check_linearizability, CheckOptions};

/// The model of the key, written plainly: values as strings, revisions unobserved as `None`.
#[derive(Clone, Debug)]
struct Plain {
    object: Option<(String, Option<u64>)>,
    floor: u64,
}

/// Whether the object can be at `rv` (see the model's rules).
fn at(object: &(String, Option<u64>), rv: u64, floor: u64, claimed: &HashSet<u64>) -> bool {
    match object.1 {
        Some(known) => known == rv,
        None => !claimed.contains(&rv) && rv > floor,
    }
}

fn apply(s: &Plain, e: &Entry, claimed: &HashSet<u64>) -> Option<Plain> {
    let set = |value: &str, rv: Option<u64>, floor: u64| Plain {
        object: Some((value.to_string(), rv)),
        floor,
    };
    let floor = s.floor;
    match (&e.op, &e.outcome, &s.object) {
        (Operation::Create { value, .. }, Outcome::Written { rv }, None) if *rv > floor => {
            Some(set(value, Some(*rv), *rv))
        }
        (Operation::Create { .. }, Outcome::AlreadyExists, Some(_)) => Some(s.clone()),
        (Operation::Create { value, .. }, Outcome::Unknown, None) => Some(set(value, None, floor)),
        (
            Operation::Update {
                expected_rv, value, ..
            },
            Outcome::Written { rv },
            Some(o),
        ) if at(o, *expected_rv, floor, claimed) && *rv > *expected_rv && *rv > floor => {
            Some(set(value, Some(*rv), *rv))
        }
        (Operation::Update { expected_rv, .. }, Outcome::Conflict, Some(o))
            if o.1 != Some(*expected_rv) =>
        {
            Some(s.clone())
        }
        (
            Operation::Update {
                expected_rv, value, ..
            },
            Outcome::Unknown,
            Some(o),
        ) if at(o, *expected_rv, floor, claimed) => Some(set(value, None, floor.max(*expected_rv))),
        (Operation::Get { .. }, Outcome::Found { value, rv }, Some(o))
            if o.0 == *value && at(o, *rv, floor, claimed) =>
        {
            Some(set(value, Some(*rv), *rv))
        }
        (Operation::Delete { .. }, Outcome::Deleted | Outcome::Unknown, Some(_)) => Some(Plain {
            object: None,
            floor,
        }),
        (
            Operation::Update { .. } | Operation::Get { .. } | Operation::Delete { .. },
            Outcome::NotFound,
            None,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// Whether some order of `ops` respecting real time explains every known outcome, applying each
/// unknown operation once or never.
fn oracle(ops: &[&Entry], claimed: &HashSet<u64>) -> bool {
    fn search(ops: &[&Entry], used: &mut Vec<bool>, s: &Plain, claimed: &HashSet<u64>) -> bool {
        let done = |e: &Entry| e.effective_complete();
        if ops
            .iter()
            .zip(used.iter())
            .all(|(e, &u)| u || done(e).is_none())
        {
            return true;
        }
        for (i, op) in ops.iter().enumerate() {
            let must_wait = ops
                .iter()
                .zip(used.iter())
                .any(|(x, &u)| !u && done(x).is_some_and(|r| r < op.invoke));
            if used[i] || must_wait {
                continue;
            }
            if let Some(next) = apply(s, op, claimed) {
                used[i] = true;
                let found = search(ops, used, &next, claimed);
                used[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    let initial = Plain {
        object: None,
        floor: 0,
    };
    search(ops, &mut vec![false; ops.len()], &initial, claimed)
}

/// Change one outcome of a valid history into another the operation can have.
fn mutate(h: &mut History, rng: &mut Rng) {
    let i = rng.below(h.entries.len() as u64) as usize;
    let e = &mut h.entries[i];
    let rv = 1 + rng.below(12);
    let other_value = format!("c{}-{}", rng.below(3), rng.below(3));
    e.outcome = match (&e.op, rng.below(4)) {
        (_, 0) => Outcome::Unknown,
        (Operation::Create { .. } | Operation::Update { .. }, 1) => written(rv),
        (Operation::Create { .. }, _) => Outcome::AlreadyExists,
        (Operation::Update { .. }, 2) => Outcome::Conflict,
        (Operation::Get { .. }, 1 | 2) => found(&other_value, rv),
        (Operation::Delete { .. }, 1) => Outcome::Deleted,
        _ => Outcome::NotFound,
    };
    if e.outcome != Outcome::Unknown && rng.below(3) == 0 {
        // Shift the interval so real-time order changes too.
        e.invoke = e.invoke.saturating_sub(rng.below(200));
    }
}

#[test]
fn the_search_agrees_with_trying_every_order() {
    let mut rng = Rng(2024);
    let (mut linearizable, mut not) = (0, 0);
    for seed in 0..3_000 {
        // Two to four clients: more clients, more overlap.
        let clients = 2 + (seed % 3) as u32;
        let mut h = generate(&Params {
            seed,
            clients,
            ops_per_client: 8 / clients as usize,
            keys: 1,
            unknown_percent: 25,
        })
        .history;
        if seed % 2 == 1 {
            mutate(&mut h, &mut rng);
        }
        let claimed: HashSet<u64> = h
            .entries
            .iter()
            .filter_map(|e| match e.outcome {
                Outcome::Written { rv } => Some(rv),
                _ => None,
            })
            .collect();
        let ops: Vec<&Entry> = h
            .entries
            .iter()
            .filter(|e| !(matches!(e.op, Operation::Get { .. }) && e.outcome == Outcome::Unknown))
            .collect();
        let expected = oracle(&ops, &claimed);
        let report = check_linearizability(&h, &CheckOptions::default());
        assert_eq!(
            report.is_linearizable(),
            expected,
            "seed {seed}: {report:#?}\n{}",
            h.to_json()
        );
        if expected {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    // Both verdicts are exercised.
    assert!(
        linearizable > 1_000 && not > 300,
        "{linearizable} linearizable, {not} not"
    );
}
