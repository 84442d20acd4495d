//! Per-key linearizability: stale reads, wrong compare-and-swaps and impossible revisions are
//! flagged; overlapping writes in either order and unknown outcomes either way pass.

use std::time::Duration;

use super::generate::{generate, Params};
use super::*;
use crate::chaos::{check_linearizability, check_revisions, CheckOptions, KeyResult, Violation};

const K: &str = "ns/a";

fn result(h: &History) -> KeyResult {
    let report = check_linearizability(h, &CheckOptions::default());
    report.result(K).cloned().expect("the key is in the report")
}

fn violation(h: &History) -> Violation {
    match result(h) {
        KeyResult::NotLinearizable(v) => *v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn sequential_history_is_linearizable() {
    let h = history(vec![
        op(1, 0, 10, get(K), Outcome::NotFound),
        op(1, 20, 30, create(K, "v1"), written(5)),
        op(2, 40, 50, update(K, 5, "v2"), written(7)),
        op(1, 60, 70, update(K, 5, "v3"), Outcome::Conflict),
        op(2, 80, 90, get(K), found("v2", 7)),
        op(1, 100, 110, create(K, "v4"), Outcome::AlreadyExists),
        op(2, 120, 130, delete(K), Outcome::Deleted),
        op(1, 140, 150, delete(K), Outcome::NotFound),
        op(2, 160, 170, update(K, 7, "v5"), Outcome::NotFound),
        op(1, 180, 190, create(K, "v6"), written(9)),
    ]);
    assert_eq!(result(&h), KeyResult::Linearizable);
}

#[test]
fn stale_read_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, update(K, 5, "v2"), written(6)),
        // Reads the value the update replaced, although the update had completed.
        op(2, 40, 50, get(K), found("v1", 5)),
    ]);
    let v = violation(&h);
    assert_eq!(v.blocked.entry, Some(2));
    assert!(v.state.contains("\"v2\" at rv 6"), "{v}");
    assert_eq!(
        v.preceding.iter().map(|o| o.entry).collect::<Vec<_>>(),
        [Some(0), Some(1)]
    );
    assert!(
        v.to_string().contains("get ns/a -> found \"v1\" at rv 5"),
        "{v}"
    );
}

#[test]
fn read_of_the_right_value_with_an_old_revision_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, get(K), found("v1", 4)),
    ]);
    assert_eq!(violation(&h).blocked.entry, Some(1));
}

#[test]
fn compare_and_swap_against_a_wrong_revision_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, update(K, 5, "v2"), written(6)),
        // Expected rv 5, but the object is at rv 6: the server should have answered Conflict.
        op(2, 40, 50, update(K, 5, "v3"), written(8)),
    ]);
    assert_eq!(violation(&h).blocked.entry, Some(2));
}

#[test]
fn conflict_although_the_revision_matched_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, update(K, 5, "v2"), Outcome::Conflict),
    ]);
    assert_eq!(violation(&h).blocked.entry, Some(1));
}

#[test]
fn two_successful_creates_are_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, create(K, "v2"), written(6)),
    ]);
    assert_eq!(violation(&h).blocked.entry, Some(1));
}

#[test]
fn a_write_with_a_lower_revision_than_the_one_before_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, delete(K), Outcome::Deleted),
        op(1, 40, 50, create(K, "v2"), written(3)),
    ]);
    assert_eq!(violation(&h).blocked.entry, Some(2));
}

#[test]
fn overlapping_writes_pass_in_either_order() {
    // Two compare-and-swaps overlap; the one invoked second took effect first in one history and
    // second in the other. Reads during the overlap see the state before, between or after.
    for (first, second, between) in [("v2", "v3", 7), ("v3", "v2", 7)] {
        let rv_of = |v: &str| if v == first { 7 } else { 8 };
        let expected_of = |v: &str| if v == first { 5 } else { 7 };
        let h = history(vec![
            op(1, 0, 10, create(K, "v1"), written(5)),
            op(
                1,
                20,
                100,
                update(K, expected_of("v2"), "v2"),
                written(rv_of("v2")),
            ),
            op(
                2,
                30,
                90,
                update(K, expected_of("v3"), "v3"),
                written(rv_of("v3")),
            ),
            op(3, 35, 40, get(K), found("v1", 5)),
            op(3, 45, 80, get(K), found(first, between)),
            op(3, 110, 120, get(K), found(second, 8)),
        ]);
        assert_eq!(
            result(&h),
            KeyResult::Linearizable,
            "{first} before {second}"
        );
    }
}

#[test]
fn an_unknown_write_that_happened_passes() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, update(K, 5, "v2"), Outcome::Unknown),
        // The update took effect long after the client gave up; the read reveals its revision.
        op(2, 40, 50, get(K), found("v1", 5)),
        op(2, 60, 70, get(K), found("v2", 9)),
        op(2, 80, 90, update(K, 9, "v3"), written(11)),
    ]);
    assert_eq!(result(&h), KeyResult::Linearizable);
}

#[test]
fn an_unknown_write_that_did_not_happen_passes() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, delete(K), Outcome::Unknown),
        op(2, 40, 50, update(K, 5, "v2"), written(6)),
        op(2, 60, 70, get(K), found("v2", 6)),
    ]);
    assert_eq!(result(&h), KeyResult::Linearizable);
}

#[test]
fn an_unknown_write_that_never_returned_passes() {
    let mut h = History::new();
    let created = h.invoke(1, create(K, "v1"), 0);
    h.complete(created, written(5), 10);
    h.invoke(1, update(K, 5, "v2"), 20); // never returns
    let read = h.invoke(2, get(K), 40);
    h.complete(read, found("v2", 6), 50);
    assert_eq!(result(&h), KeyResult::Linearizable);
}

#[test]
fn an_unknown_write_is_not_applied_twice() {
    // Once the value from the unknown create is read back, the create cannot explain a second,
    // later appearance of the same value after a delete.
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), Outcome::Unknown),
        op(2, 20, 30, get(K), found("v1", 5)),
        op(2, 40, 50, delete(K), Outcome::Deleted),
        op(2, 60, 70, get(K), found("v1", 5)),
    ]);
    assert_eq!(violation(&h).blocked.entry, Some(3));
}

#[test]
fn unknown_reads_are_ignored() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, get(K), Outcome::Unknown),
    ]);
    let report = check_linearizability(&h, &CheckOptions::default());
    assert_eq!(report.keys[0].operations, 1);
    assert!(report.is_linearizable());
}

#[test]
fn keys_are_judged_separately() {
    let h = history(vec![
        op(1, 0, 10, create("ns/b", "b1"), written(3)),
        op(1, 20, 30, create(K, "v1"), written(5)),
        op(2, 40, 50, get(K), Outcome::NotFound),
        op(2, 60, 70, get("ns/b"), found("b1", 3)),
    ]);
    let report = check_linearizability(&h, &CheckOptions::default());
    assert_eq!(report.result("ns/b"), Some(&KeyResult::Linearizable));
    assert!(matches!(
        report.result(K),
        Some(KeyResult::NotLinearizable(_))
    ));
    assert_eq!(report.violations().count(), 1);
}

#[test]
fn a_search_out_of_time_is_reported_as_timed_out_not_as_a_pass() {
    let run = generate(&Params {
        seed: 7,
        clients: 5,
        ops_per_client: 400,
        keys: 1,
        unknown_percent: 5,
    });
    let budget = CheckOptions {
        budget_per_key: Duration::ZERO,
    };
    let report = check_linearizability(&run.history, &budget);
    assert!(
        matches!(report.keys[0].result, KeyResult::TimedOut { .. }),
        "{:?}",
        report.keys[0]
    );
    assert!(!report.is_linearizable());
    assert_eq!(report.timed_out().count(), 1);
}

#[test]
fn a_contended_key_with_unknown_outcomes_is_linearizable() {
    let run = generate(&Params {
        seed: 11,
        clients: 5,
        ops_per_client: 400,
        keys: 1,
        unknown_percent: 5,
    });
    let report = check_linearizability(&run.history, &CheckOptions::default());
    assert!(report.is_linearizable(), "{:?}", report.keys[0].result);
}

#[test]
fn revisions_must_be_unique_and_follow_real_time_across_keys() {
    let valid = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 5, 15, create("ns/b", "b1"), written(4)),
        op(1, 20, 30, create("ns/c", "c1"), written(6)),
        op(2, 40, 50, get("ns/b"), found("b1", 4)),
    ]);
    assert!(
        check_revisions(&valid).is_empty(),
        "{:?}",
        check_revisions(&valid)
    );

    let reused = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, create("ns/b", "b1"), written(5)),
    ]);
    let problems = check_revisions(&reused);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("rv 5 returned to two writes")),
        "{problems:?}"
    );

    let backwards = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, create("ns/b", "b1"), written(4)),
    ]);
    let problems = check_revisions(&backwards);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("entry 1:") && p.contains("no higher revision")),
        "{problems:?}"
    );

    let misnamed = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, get("ns/b"), found("b1", 5)),
    ]);
    assert_eq!(check_revisions(&misnamed).len(), 1);
}

#[test]
fn malformed_entries_are_reported_as_workload_problems() {
    let mut h = history(vec![
        op(1, 0, 10, get(K), written(5)),
        op(2, 20, 10, get(K), Outcome::NotFound),
        op(3, 0, 50, get(K), Outcome::NotFound),
        op(3, 40, 60, get(K), Outcome::NotFound),
    ]);
    h.push(Entry {
        complete: None,
        ..op(4, 0, 0, delete(K), Outcome::Deleted)
    });
    let problems = h.problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems[0].contains("cannot answer"));
    assert!(problems[1].contains("before it was invoked"));
    assert!(problems[2].contains("needs a completion time"));
    assert!(problems[3].contains("client 3 has two operations in flight"));
}

#[test]
fn histories_round_trip_through_json() {
    let run = generate(&Params {
        seed: 3,
        clients: 2,
        ops_per_client: 20,
        keys: 3,
        unknown_percent: 10,
    });
    let json = run.history.to_json();
    assert!(json.contains("\"op\": \"update\""), "{json}");
    assert_eq!(History::from_json(&json).unwrap(), run.history);
}
