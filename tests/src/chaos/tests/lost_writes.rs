//! No acknowledged write lost: final states that drop an acknowledged write are flagged and the
//! write is named; final states any order of the history explains pass.

use super::*;
use crate::chaos::{check_final_state, CheckOptions, FinalKeyResult, FinalState};

const K: &str = "ns/a";

fn judge(h: &History, final_state: &[(&str, ObjectState)]) -> FinalKeyResult {
    let final_state: FinalState = final_state
        .iter()
        .map(|(k, o)| (k.to_string(), o.clone()))
        .collect();
    let report = check_final_state(h, &final_state, &CheckOptions::default());
    report.result(K).cloned().expect("the key is in the report")
}

fn lost_entries(result: &FinalKeyResult) -> Vec<Option<usize>> {
    match result {
        FinalKeyResult::Unexplained { lost, .. } => lost.iter().map(|w| w.entry).collect(),
        other => panic!("expected an unexplained final state, got {other:?}"),
    }
}

#[test]
fn final_state_with_the_last_write_is_explained() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, update(K, 5, "v2"), written(6)),
    ]);
    assert_eq!(
        judge(&h, &[(K, object("v2", 6))]),
        FinalKeyResult::Explained
    );
}

#[test]
fn acknowledged_update_missing_from_the_final_state_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, update(K, 5, "v2"), written(6)),
    ]);
    let result = judge(&h, &[(K, object("v1", 5))]);
    assert_eq!(lost_entries(&result), [Some(1)]);
    let FinalKeyResult::Unexplained { violation, .. } = result else {
        unreachable!()
    };
    assert_eq!(
        violation.blocked.entry, None,
        "the final read is what cannot be ordered"
    );
}

#[test]
fn acknowledged_create_missing_from_the_final_state_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(2, 20, 30, delete("ns/b"), Outcome::NotFound),
    ]);
    assert_eq!(lost_entries(&judge(&h, &[])), [Some(0)]);
}

#[test]
fn acknowledged_delete_undone_in_the_final_state_is_flagged() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, delete(K), Outcome::Deleted),
    ]);
    assert_eq!(lost_entries(&judge(&h, &[(K, object("v1", 5))])), [Some(1)]);
}

#[test]
fn a_final_state_with_an_unknown_write_applied_or_not_is_explained() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, update(K, 5, "v2"), Outcome::Unknown),
    ]);
    assert_eq!(
        judge(&h, &[(K, object("v2", 9))]),
        FinalKeyResult::Explained
    );
    assert_eq!(
        judge(&h, &[(K, object("v1", 5))]),
        FinalKeyResult::Explained
    );
}

#[test]
fn a_key_deleted_by_an_unknown_delete_is_explained() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, delete(K), Outcome::Unknown),
    ]);
    assert_eq!(judge(&h, &[]), FinalKeyResult::Explained);
}

#[test]
fn a_value_nobody_wrote_is_flagged_without_naming_a_write() {
    let h = history(vec![op(1, 0, 10, create(K, "v1"), written(5))]);
    assert_eq!(lost_entries(&judge(&h, &[(K, object("v9", 5))])), []);
    // A key only the final state names is judged too.
    let result = judge(&History::new(), &[(K, object("v1", 5))]);
    assert_eq!(lost_entries(&result), []);
}

#[test]
fn a_history_already_not_linearizable_is_not_judged_twice() {
    let h = history(vec![
        op(1, 0, 10, create(K, "v1"), written(5)),
        op(1, 20, 30, update(K, 5, "v2"), written(6)),
        op(2, 40, 50, get(K), found("v1", 5)),
    ]);
    assert_eq!(
        judge(&h, &[(K, object("v2", 6))]),
        FinalKeyResult::NotJudged
    );
}
