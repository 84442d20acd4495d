//! The verdict over whole recordings: a clean run of realistic size passes within the budget, and
//! each kind of anomaly turns the table to FAIL.

use super::generate::{generate, Params, Rng};
use super::*;
use crate::chaos::{check_all, CheckOptions, FinalState, Status, Verdict, WatchLog};

fn clean_run() -> (History, FinalState, Vec<WatchLog>) {
    let run = generate(&Params {
        seed: 1,
        clients: 5,
        ops_per_client: 2_000,
        keys: 50,
        unknown_percent: 3,
    });
    let mut watches = Vec::new();
    for replica in ["r1", "r2", "r3"] {
        let mut log = WatchLog::new(replica, "ns/", 0);
        for e in &run.events {
            log.event(e.clone());
        }
        watches.push(log);
    }
    (run.history, run.final_state, watches)
}

#[test]
fn a_valid_run_of_ten_thousand_operations_passes() {
    let (history, final_state, watches) = clean_run();
    let verdict = check_all(
        &history,
        Some(&final_state),
        &watches,
        &CheckOptions::default(),
    );
    assert_eq!(verdict.operations, 10_000);
    assert!(verdict.is_clean(), "{}", verdict.render());
    assert_eq!(verdict.anomalies(), 0);
    let linearizable = verdict.check("linearizable per key").unwrap();
    assert_eq!(
        (linearizable.status, linearizable.checked.as_str()),
        (Status::Pass, "50 keys")
    );
}

#[test]
fn every_kind_of_anomaly_fails_the_verdict() {
    let (mut history, mut final_state, mut watches) = clean_run();
    let mut rng = Rng(99);

    // A stale read: a read after the last acknowledged update of a key returns an older value.
    let (key, last) = final_state
        .iter()
        .next()
        .map(|(k, o)| (k.clone(), o.clone()))
        .unwrap();
    let older = history
        .entries
        .iter()
        .find_map(|e| match (&e.op, &e.outcome) {
            (op, Outcome::Written { rv }) if op.key() == key && *rv < last.rv => {
                Some(found(op.written_value().unwrap(), *rv))
            }
            _ => None,
        })
        .expect("the key was written more than once");
    let end = history
        .entries
        .iter()
        .filter_map(|e| e.complete)
        .max()
        .unwrap();
    history.push(op(1_000, end + 10, end + 20, get(&key), older));

    // A lost write: the last key's final value rolls back to the value an earlier acknowledged
    // write left. (Dropping the object instead could be explained by any delete whose outcome is
    // unknown: it may land at any time, even last.)
    let (lost, current) = final_state
        .iter()
        .next_back()
        .map(|(k, o)| (k.clone(), o.clone()))
        .unwrap();
    let rolled_back = history
        .entries
        .iter()
        .filter_map(|e| match (&e.op, &e.outcome) {
            (op, &Outcome::Written { rv }) if op.key() == lost && rv < current.rv => {
                Some(object(op.written_value().unwrap(), rv))
            }
            _ => None,
        })
        .max_by_key(|o| o.rv)
        .expect("the key was written more than once");
    final_state.insert(lost.clone(), rolled_back);

    // A duplicated watch event on one replica.
    let i = 1 + rng.below(watches[1].records.len() as u64 - 1) as usize;
    let again = watches[1].records[i].clone();
    watches[1].records.insert(i, again);

    let verdict = check_all(
        &history,
        Some(&final_state),
        &watches,
        &CheckOptions::default(),
    );
    let status = |name: &str| verdict.check(name).unwrap().status;
    assert_eq!(status("linearizable per key"), Status::Fail);
    assert_eq!(status("no acknowledged write lost"), Status::Fail);
    assert_eq!(status("watch streams"), Status::Fail);
    assert_eq!(status("history well-formed"), Status::Pass);
    assert!(verdict.anomalies() >= 3);
    let table = verdict.render();
    assert!(table.contains("(FAIL)"), "{table}");
    assert!(
        table.contains(&format!("key {key}: no order of the operations explains")),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "key {lost}: the state after healing is not explained"
        )),
        "{table}"
    );
    assert!(table.contains("\n    lost: entry "), "{table}");
    assert!(table.contains(&format!(
        "no order of the operations explains entry {}",
        history.entries.len() - 1
    )));
    assert!(table.contains("Duplicate"), "{table}");
}

#[test]
fn the_table_lists_every_check_and_the_summary_rows() {
    let h = history(vec![
        op(1, 0, 10, create("ns/a", "v1"), written(5)),
        op(1, 20, 30, get("ns/a"), found("v1", 5)),
    ]);
    let mut verdict = check_all(&h, None, &[], &CheckOptions::default());
    verdict
        .summary
        .push(("faults injected".to_string(), "0".to_string()));
    let table = verdict.render();
    let expected = "\
operations: 2
faults injected: 0

| check                      | status  | checked                 | anomalies |
|----------------------------|---------|-------------------------|-----------|
| history well-formed        | pass    | 2 operations            | 0         |
| revisions follow real time | pass    | 2 operations            | 0         |
| linearizable per key       | pass    | 1 keys                  | 0         |
| no acknowledged write lost | skipped | no final state recorded | 0         |
| watch streams              | skipped | no watch recorded       | 0         |

anomalies found: 0 (PASS)
";
    assert_eq!(table, expected);
}

#[test]
fn a_search_out_of_time_makes_the_verdict_inconclusive() {
    let run = generate(&Params {
        seed: 2,
        clients: 5,
        ops_per_client: 400,
        keys: 1,
        unknown_percent: 3,
    });
    let history = run.history;
    let options = CheckOptions {
        budget_per_key: std::time::Duration::ZERO,
    };
    let verdict = check_all(&history, None, &[], &options);
    assert_eq!(
        verdict.check("linearizable per key").unwrap().status,
        Status::Inconclusive
    );
    assert_eq!(verdict.anomalies(), 0);
    assert!(!verdict.is_clean());
    assert!(verdict.render().contains("(INCONCLUSIVE)"));
}

#[test]
fn verdicts_round_trip_through_json() {
    let h = history(vec![op(1, 0, 10, get("ns/a"), found("v1", 5))]);
    let verdict = check_all(&h, None, &[], &CheckOptions::default());
    assert_eq!(verdict.anomalies(), 1);
    let json = serde_json::to_string(&verdict).unwrap();
    assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), verdict);
}
