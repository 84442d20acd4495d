//! Unit tests of the MVCC semantics (revisions, preconditions, transactions, ranges at past
//! revisions, compaction, history, limits, fencing) against a real RocksDB in a temporary directory.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rkube_proto::store as pb;
use tempfile::TempDir;

use crate::db::Db;
use crate::encoding::{prefix_end, KeyRange};
use crate::error::{Error, Result};
use crate::mvcc::{self, Applier, MAX_TXN_OPS, MAX_VALUE_BYTES};
use crate::types::{Op, OpResult};

use pb::compare::{Result as CmpResult, Target, TargetUnion};
use pb::precondition::Condition;
use pb::request_op::Request;
use pb::response_op::Response;

/// The term every write is committed in unless a test says otherwise.
const TERM: u64 = 1;

/// A database in a temporary directory, written the way the state machine writes it: one
/// `Applier` and one synced batch per Raft entry.
struct Store {
    db: Db,
    _dir: TempDir,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let db = Db::open(dir.path()).expect("open the database");
        Store { db, _dir: dir }
    }

    /// Apply `ops` as one Raft entry committed in `term`.
    fn entry_in_term(&self, ops: &[Op], term: u64) -> Vec<Result<OpResult>> {
        let revs = mvcc::read_revisions(&self.db).expect("read revisions");
        let mut applier = Applier::new(&self.db, revs);
        let results = ops.iter().map(|op| applier.apply(op, term)).collect();
        let (batch, _events, _revs) = applier.finish();
        self.db.write(batch, true).expect("write the entry");
        results
    }

    fn entry(&self, ops: &[Op]) -> Vec<Result<OpResult>> {
        self.entry_in_term(ops, TERM)
    }

    fn apply(&self, op: Op) -> Result<OpResult> {
        self.entry(&[op]).pop().expect("one result per op")
    }

    fn try_put(&self, req: pb::PutRequest) -> Result<pb::PutResponse> {
        match self.apply(Op::Put(req))? {
            OpResult::Put(r) => Ok(r),
            other => panic!("put answered {other:?}"),
        }
    }

    fn put(&self, key: &str, value: &str) -> pb::PutResponse {
        self.try_put(put_req(key, value)).expect("put")
    }

    fn try_delete(&self, req: pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse> {
        match self.apply(Op::DeleteRange(req))? {
            OpResult::DeleteRange(r) => Ok(r),
            other => panic!("delete answered {other:?}"),
        }
    }

    fn delete(&self, key: &str) -> pb::DeleteRangeResponse {
        self.try_delete(delete_req(key, "")).expect("delete")
    }

    fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse> {
        match self.apply(Op::Txn(req))? {
            OpResult::Txn(r) => Ok(r),
            other => panic!("txn answered {other:?}"),
        }
    }

    fn compact(&self, rev: i64) -> Result<()> {
        self.apply(Op::Compact(rev)).map(|_| ())
    }

    fn revision(&self) -> i64 {
        mvcc::read_revisions(&self.db)
            .expect("read revisions")
            .current
    }

    fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse> {
        mvcc::range(&self.db, &req)
    }

    /// The key at `revision` (0 = current).
    fn get_at(&self, key: &str, revision: i64) -> Result<Option<pb::KeyValue>> {
        let resp = self.range(pb::RangeRequest {
            revision,
            ..range_req(key, "")
        })?;
        assert!(resp.kvs.len() <= 1, "a single-key range returned {resp:?}");
        Ok(resp.kvs.into_iter().next())
    }

    fn get(&self, key: &str) -> Option<pb::KeyValue> {
        self.get_at(key, 0).expect("read the current revision")
    }

    fn history(
        &self,
        key: &str,
        range_end: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, pb::Event)>> {
        mvcc::history(
            &self.db,
            &KeyRange::new(key.as_bytes(), range_end.as_bytes()),
            from,
            to,
        )
    }
}

fn put_req(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn put_if(key: &str, value: &str, condition: Condition) -> pb::PutRequest {
    pb::PutRequest {
        precondition: Some(pb::Precondition {
            condition: Some(condition),
        }),
        ..put_req(key, value)
    }
}

fn delete_req(key: &str, range_end: &str) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

fn delete_if(key: &str, condition: Condition) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        precondition: Some(pb::Precondition {
            condition: Some(condition),
        }),
        ..delete_req(key, "")
    }
}

fn range_req(key: &str, range_end: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

fn prefix_req(prefix: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.into(),
        range_end: prefix_end(prefix.as_bytes()),
        ..Default::default()
    }
}

fn compare(key: &str, result: CmpResult, target: TargetUnion) -> pb::Compare {
    let t = match &target {
        TargetUnion::Version(_) => Target::Version,
        TargetUnion::CreateRevision(_) => Target::Create,
        TargetUnion::ModRevision(_) => Target::Mod,
        TargetUnion::Value(_) => Target::Value,
    };
    pb::Compare {
        result: result as i32,
        target: t as i32,
        key: key.into(),
        target_union: Some(target),
    }
}

fn op_put(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Request::Put(put_req(key, value))),
    }
}

fn op_delete(key: &str, range_end: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Request::DeleteRange(delete_req(key, range_end))),
    }
}

fn op_range(req: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(Request::Range(req)),
    }
}

fn keys(resp: &pb::RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).expect("utf-8 key"))
        .collect()
}

fn value(kv: &pb::KeyValue) -> &str {
    std::str::from_utf8(&kv.value).expect("utf-8 value")
}

/// (create_revision, mod_revision, version) of a key.
fn meta(kv: &pb::KeyValue) -> (i64, i64, i64) {
    (kv.create_revision, kv.mod_revision, kv.version)
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, field: &str) {
    match result {
        Err(Error::Invalid(msg)) => assert!(
            msg.contains(field),
            "the message {msg:?} should name {field:?}"
        ),
        other => panic!("expected an invalid-request error naming {field:?}, got {other:?}"),
    }
}

// ---- revisions ----

#[test]
fn every_write_that_changes_something_bumps_the_revision_by_one() {
    let s = Store::new();
    s.put("x", "seed"); // revision 1; "x" survives the range deletes below
    let steps: Vec<(&str, Op, i64)> = vec![
        ("create a", Op::Put(put_req("a", "1")), 2),
        ("update a", Op::Put(put_req("a", "2")), 3),
        ("create b", Op::Put(put_req("b", "1")), 4),
        ("delete a", Op::DeleteRange(delete_req("a", "")), 5),
        ("delete missing a", Op::DeleteRange(delete_req("a", "")), 5),
        ("put same value", Op::Put(put_req("b", "1")), 6),
        (
            "range delete [a, c)",
            Op::DeleteRange(delete_req("a", "c")),
            7,
        ),
        (
            "range delete of nothing",
            Op::DeleteRange(delete_req("a", "c")),
            7,
        ),
        (
            "failed precondition",
            Op::Put(put_if("x", "2", Condition::MustNotExist(true))),
            7,
        ),
    ];
    for (what, op, want) in steps {
        let result = s.apply(op).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(s.revision(), want, "{what}");
        let header = match result {
            OpResult::Put(r) => r.header,
            OpResult::DeleteRange(r) => r.header,
            other => panic!("{what}: {other:?}"),
        };
        assert_eq!(
            header.expect("header").revision,
            want,
            "{what}: header revision"
        );
    }
}

#[test]
fn range_delete_is_one_revision_with_one_event_per_key() {
    let s = Store::new();
    for k in ["p/a", "p/b", "p/c", "q"] {
        s.put(k, "v");
    }
    let resp = s.try_delete(delete_req("p/", "p0")).expect("range delete");
    assert_eq!(resp.deleted, 3);
    assert_eq!(resp.prev_kvs.len(), 3);
    assert_eq!(s.revision(), 5);
    let events = s.history("p/", "p0", 5, 5).expect("history");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|(rev, ev)| *rev == 5
        && ev.r#type == pb::event::EventType::Delete as i32
        && ev.kv.as_ref().is_some_and(|kv| kv.mod_revision == 5)));
    assert_eq!(keys(&s.range(range_req("a", "\0")).unwrap()), ["q"]);
}

#[test]
fn key_metadata_follows_create_update_delete_recreate() {
    let s = Store::new();
    s.put("other", "x"); // 1
    let first = s.put("k", "v1"); // 2
    assert!(first.succeeded && first.prev_kv.is_none());
    assert_eq!(meta(&s.get("k").unwrap()), (2, 2, 1));
    let second = s.put("k", "v2"); // 3
    assert_eq!(meta(second.prev_kv.as_ref().unwrap()), (2, 2, 1));
    assert_eq!(value(second.prev_kv.as_ref().unwrap()), "v1");
    assert_eq!(meta(&s.get("k").unwrap()), (2, 3, 2));
    s.put("k", "v3"); // 4
    assert_eq!(meta(&s.get("k").unwrap()), (2, 4, 3));
    let del = s.delete("k"); // 5
    assert_eq!(del.deleted, 1);
    assert_eq!(meta(&del.prev_kvs[0]), (2, 4, 3));
    assert!(s.get("k").is_none());
    s.put("k", "again"); // 6: version starts over
    let kv = s.get("k").unwrap();
    assert_eq!(meta(&kv), (6, 6, 1));
    assert_eq!(value(&kv), "again");
}

#[test]
fn a_txn_is_one_revision_whatever_it_writes() {
    let s = Store::new();
    s.put("c", "old"); // 1
    let resp = s
        .txn(pb::TxnRequest {
            success: vec![op_put("a", "1"), op_put("b", "2"), op_delete("c", "")],
            ..Default::default()
        })
        .expect("txn");
    assert!(resp.succeeded);
    assert_eq!(s.revision(), 2);
    assert_eq!(resp.header.unwrap().revision, 2);
    assert_eq!(s.get("a").unwrap().mod_revision, 2);
    assert_eq!(s.get("b").unwrap().mod_revision, 2);
    assert!(s.get("c").is_none());
    let events = s.history("a", "\0", 2, 2).expect("history");
    assert_eq!(events.len(), 3, "one event per write, all at revision 2");
}

#[test]
fn a_txn_that_writes_nothing_does_not_bump() {
    let s = Store::new();
    s.put("a", "1");
    let cases: Vec<(&str, pb::TxnRequest)> = vec![
        ("empty", pb::TxnRequest::default()),
        (
            "reads only",
            pb::TxnRequest {
                success: vec![op_range(range_req("a", "")), op_range(range_req("a", "\0"))],
                ..Default::default()
            },
        ),
        (
            "deletes a missing key",
            pb::TxnRequest {
                success: vec![op_delete("missing", "")],
                ..Default::default()
            },
        ),
        (
            "put whose precondition fails",
            pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(Request::Put(put_if(
                        "a",
                        "2",
                        Condition::MustNotExist(true),
                    ))),
                }],
                ..Default::default()
            },
        ),
    ];
    for (what, req) in cases {
        let resp = s.txn(req).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(resp.succeeded, "{what}");
        assert_eq!(s.revision(), 1, "{what}");
        assert_eq!(resp.header.unwrap().revision, 1, "{what}");
    }
}

#[test]
fn ops_of_one_entry_get_consecutive_revisions() {
    let s = Store::new();
    let results = s.entry(&[
        Op::Put(put_req("a", "1")),
        Op::Put(put_req("a", "2")),
        Op::DeleteRange(delete_req("missing", "")),
        Op::Put(put_if("a", "3", Condition::ModRevision(2))),
        Op::DeleteRange(delete_req("a", "")),
    ]);
    let revisions: Vec<i64> = results
        .into_iter()
        .map(|r| match r.expect("op") {
            OpResult::Put(p) => p.header.unwrap().revision,
            OpResult::DeleteRange(d) => d.header.unwrap().revision,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(revisions, [1, 2, 2, 3, 4]);
    assert_eq!(s.revision(), 4);
    let a_at = |rev| s.get_at("a", rev).unwrap().map(|kv| value(&kv).to_string());
    assert_eq!(a_at(1).as_deref(), Some("1"));
    assert_eq!(a_at(2).as_deref(), Some("2"));
    assert_eq!(a_at(3).as_deref(), Some("3"));
    assert_eq!(a_at(4), None);
}

// ---- preconditions ----

#[test]
fn put_preconditions() {
    struct Case {
        name: &'static str,
        key: &'static str,
        condition: Condition,
        succeeds: bool,
    }
    // "k" is created at revision 1 and updated at revision 2; "gone" never exists.
    let cases = [
        Case {
            name: "must_not_exist on a missing key",
            key: "gone",
            condition: Condition::MustNotExist(true),
            succeeds: true,
        },
        Case {
            name: "must_not_exist on an existing key",
            key: "k",
            condition: Condition::MustNotExist(true),
            succeeds: false,
        },
        Case {
            name: "mod_revision equal",
            key: "k",
            condition: Condition::ModRevision(2),
            succeeds: true,
        },
        Case {
            name: "mod_revision stale",
            key: "k",
            condition: Condition::ModRevision(1),
            succeeds: false,
        },
        Case {
            name: "mod_revision ahead",
            key: "k",
            condition: Condition::ModRevision(3),
            succeeds: false,
        },
        Case {
            name: "mod_revision on a missing key",
            key: "gone",
            condition: Condition::ModRevision(2),
            succeeds: false,
        },
        Case {
            name: "mod_revision 0 on a missing key",
            key: "gone",
            condition: Condition::ModRevision(0),
            succeeds: false,
        },
    ];
    for c in cases {
        let s = Store::new();
        s.put("k", "v1");
        s.put("k", "v2");
        let before = s.get(c.key);
        let resp = s
            .try_put(put_if(c.key, "new", c.condition))
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(resp.succeeded, c.succeeds, "{}", c.name);
        // On success prev_kv is the key before the write; on failure it is the key as it is.
        assert_eq!(resp.prev_kv, before, "{}: prev_kv", c.name);
        if c.succeeds {
            assert_eq!(s.revision(), 3, "{}", c.name);
            assert_eq!(value(&s.get(c.key).unwrap()), "new", "{}", c.name);
        } else {
            assert_eq!(
                s.revision(),
                2,
                "{}: a failed precondition writes nothing",
                c.name
            );
            assert_eq!(s.get(c.key), before, "{}", c.name);
            assert!(s.history("k", "\0", 3, 3).unwrap().is_empty(), "{}", c.name);
        }
    }
}

#[test]
fn delete_preconditions() {
    let cases: [(&str, &str, Condition, bool); 5] = [
        ("mod_revision equal", "k", Condition::ModRevision(2), true),
        ("mod_revision stale", "k", Condition::ModRevision(1), false),
        (
            "mod_revision on a missing key",
            "gone",
            Condition::ModRevision(2),
            false,
        ),
        (
            "must_not_exist on an existing key",
            "k",
            Condition::MustNotExist(true),
            false,
        ),
        (
            "must_not_exist on a missing key",
            "gone",
            Condition::MustNotExist(true),
            true,
        ),
    ];
    for (name, key, condition, succeeds) in cases {
        let s = Store::new();
        s.put("k", "v1");
        s.put("k", "v2");
        let before = s.get(key);
        let resp = s
            .try_delete(delete_if(key, condition))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resp.succeeded, succeeds, "{name}");
        assert_eq!(
            resp.prev_kvs,
            before.iter().cloned().collect::<Vec<_>>(),
            "{name}"
        );
        let deleted = i64::from(succeeds && before.is_some());
        assert_eq!(resp.deleted, deleted, "{name}");
        assert_eq!(s.revision(), 2 + deleted, "{name}");
        assert_eq!(
            s.get(key).is_some(),
            before.is_some() && deleted == 0,
            "{name}"
        );
    }
}

#[test]
fn malformed_preconditions_are_rejected_naming_the_field() {
    let s = Store::new();
    s.put("a", "1");
    let empty = Some(pb::Precondition { condition: None });
    let cases: Vec<(&str, Op, &str)> = vec![
        (
            "precondition on a range delete",
            Op::DeleteRange(pb::DeleteRangeRequest {
                precondition: Some(pb::Precondition {
                    condition: Some(Condition::ModRevision(1)),
                }),
                ..delete_req("a", "b")
            }),
            "delete_range.precondition",
        ),
        (
            "empty put precondition",
            Op::Put(pb::PutRequest {
                precondition: empty,
                ..put_req("a", "2")
            }),
            "put.precondition",
        ),
        (
            "empty delete precondition",
            Op::DeleteRange(pb::DeleteRangeRequest {
                precondition: empty,
                ..delete_req("a", "")
            }),
            "delete_range.precondition",
        ),
        (
            "empty precondition inside a txn",
            Op::Txn(pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(Request::Put(pb::PutRequest {
                        precondition: empty,
                        ..put_req("a", "2")
                    })),
                }],
                ..Default::default()
            }),
            "txn.success[0].precondition",
        ),
    ];
    for (name, op, field) in cases {
        assert!(mvcc::validate_op(&op).is_err(), "{name}: validate_op");
        assert_invalid(s.apply(op), field);
        assert_eq!(s.revision(), 1, "{name}");
        assert_eq!(value(&s.get("a").unwrap()), "1", "{name}");
    }
}

// ---- transactions ----

#[test]
fn txn_runs_the_branch_its_compares_choose() {
    for holds in [true, false] {
        let s = Store::new();
        s.put("flag", "on"); // 1
        let resp = s
            .txn(pb::TxnRequest {
                compare: vec![compare(
                    "flag",
                    CmpResult::Equal,
                    TargetUnion::Value(if holds { "on" } else { "off" }.into()),
                )],
                success: vec![op_put("s", "1"), op_range(range_req("s", ""))],
                failure: vec![op_put("f", "1")],
                ..Default::default()
            })
            .expect("txn");
        assert_eq!(resp.succeeded, holds);
        assert_eq!(s.get("s").is_some(), holds);
        assert_eq!(s.get("f").is_some(), !holds);
        assert_eq!(resp.responses.len(), if holds { 2 } else { 1 });
        assert_eq!(s.revision(), 2);
    }
}

#[test]
fn txn_compares_every_target_with_every_result() {
    let s = Store::new();
    s.put("other", "x"); // 1
    s.put("k", "a"); // 2: created
    s.put("k", "m"); // 3: version 2, mod 3, value "m"
    let lower_equal_higher = |t: fn(i64) -> TargetUnion, actual: i64| {
        [
            (t(actual - 1), "above"),
            (t(actual), "equal"),
            (t(actual + 1), "below"),
        ]
    };
    let mut operands: Vec<(&str, TargetUnion, &str)> = Vec::new();
    for (operand, relation) in lower_equal_higher(TargetUnion::Version, 2) {
        operands.push(("VERSION", operand, relation));
    }
    for (operand, relation) in lower_equal_higher(TargetUnion::CreateRevision, 2) {
        operands.push(("CREATE", operand, relation));
    }
    for (operand, relation) in lower_equal_higher(TargetUnion::ModRevision, 3) {
        operands.push(("MOD", operand, relation));
    }
    for (operand, relation) in [("a", "above"), ("m", "equal"), ("z", "below")] {
        operands.push(("VALUE", TargetUnion::Value(operand.into()), relation));
    }
    let results = [
        CmpResult::Equal,
        CmpResult::NotEqual,
        CmpResult::Greater,
        CmpResult::Less,
    ];
    for (target, operand, relation) in operands {
        for result in results {
            // `relation` is where the key's actual value lies relative to the operand.
            let want = match result {
                CmpResult::Equal => relation == "equal",
                CmpResult::NotEqual => relation != "equal",
                CmpResult::Greater => relation == "above",
                CmpResult::Less => relation == "below",
            };
            let resp = s
                .txn(pb::TxnRequest {
                    compare: vec![compare("k", result, operand.clone())],
                    ..Default::default()
                })
                .expect("txn");
            assert_eq!(
                resp.succeeded,
                want,
                "{target} {} {operand:?} (actual is {relation})",
                result.as_str_name()
            );
        }
    }
    assert_eq!(s.revision(), 3, "compares write nothing");
}

#[test]
fn txn_compares_against_a_missing_key() {
    let s = Store::new();
    s.put("present", "v");
    let cases = [
        (CmpResult::Equal, TargetUnion::Version(0), true),
        (CmpResult::Greater, TargetUnion::Version(0), false),
        (CmpResult::Equal, TargetUnion::CreateRevision(0), true),
        (CmpResult::Less, TargetUnion::ModRevision(1), true),
        (CmpResult::Equal, TargetUnion::Value(Vec::new()), false),
        (
            CmpResult::NotEqual,
            TargetUnion::Value(b"x".to_vec()),
            false,
        ),
        (CmpResult::Less, TargetUnion::Value(b"x".to_vec()), false),
    ];
    for (result, operand, want) in cases {
        let resp = s
            .txn(pb::TxnRequest {
                compare: vec![compare("missing", result, operand.clone())],
                ..Default::default()
            })
            .expect("txn");
        assert_eq!(resp.succeeded, want, "{} {operand:?}", result.as_str_name());
    }
}

#[test]
fn all_compares_must_hold() {
    let s = Store::new();
    s.put("a", "1");
    s.put("b", "2");
    let resp = s
        .txn(pb::TxnRequest {
            compare: vec![
                compare("a", CmpResult::Equal, TargetUnion::Value(b"1".to_vec())),
                compare("b", CmpResult::Equal, TargetUnion::Value(b"nope".to_vec())),
            ],
            ..Default::default()
        })
        .unwrap();
    assert!(!resp.succeeded);
}

#[test]
fn malformed_compares_are_rejected() {
    let s = Store::new();
    s.put("a", "1");
    let mismatched = pb::Compare {
        target: Target::Mod as i32,
        target_union: Some(TargetUnion::Value(b"1".to_vec())),
        ..compare("a", CmpResult::Equal, TargetUnion::ModRevision(1))
    };
    let unknown_result = pb::Compare {
        result: 42,
        ..compare("a", CmpResult::Equal, TargetUnion::ModRevision(1))
    };
    let empty_key = compare("", CmpResult::Equal, TargetUnion::Version(0));
    for (c, field) in [
        (mismatched, "target_union"),
        (unknown_result, "compare.result"),
        (empty_key, "txn.compare[0].key"),
    ] {
        assert_invalid(
            s.txn(pb::TxnRequest {
                compare: vec![c],
                success: vec![op_put("b", "1")],
                ..Default::default()
            }),
            field,
        );
        assert_eq!(s.revision(), 1);
        assert!(s.get("b").is_none());
    }
}

#[test]
fn ranges_inside_a_txn_see_its_earlier_writes() {
    let s = Store::new();
    s.put("p/old", "o"); // 1
    let resp = s
        .txn(pb::TxnRequest {
            success: vec![
                op_range(prefix_req("p/")),
                op_put("p/a", "1"),
                op_range(range_req("p/a", "")),
                op_delete("p/old", ""),
                op_put("p/b", "2"),
                op_range(prefix_req("p/")),
                op_delete("p/a", ""),
                op_range(pb::RangeRequest {
                    count_only: true,
                    ..prefix_req("p/")
                }),
            ],
            ..Default::default()
        })
        .expect("txn");
    let ranges: Vec<pb::RangeResponse> = resp
        .responses
        .into_iter()
        .filter_map(|r| match r.response {
            Some(Response::Range(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(keys(&ranges[0]), ["p/old"]);
    assert_eq!(keys(&ranges[1]), ["p/a"]);
    assert_eq!(value(&ranges[1].kvs[0]), "1");
    assert_eq!(meta(&ranges[1].kvs[0]), (2, 2, 1));
    assert_eq!(keys(&ranges[2]), ["p/a", "p/b"]);
    assert_eq!(ranges[3].count, 1);
    assert_eq!(s.revision(), 2);
    assert_eq!(keys(&s.range(prefix_req("p/")).unwrap()), ["p/b"]);
}

#[test]
fn txn_limits_are_enforced() {
    let s = Store::new();
    assert_invalid(
        s.txn(pb::TxnRequest {
            success: vec![op_put("a", "1"), op_put("b", "1"), op_put("a", "2")],
            ..Default::default()
        }),
        "duplicate key",
    );
    assert_invalid(
        s.txn(pb::TxnRequest {
            failure: vec![op_put("a", "1"), op_put("a", "2")],
            ..Default::default()
        }),
        "txn.failure[1]",
    );
    let many = |n: usize| {
        (0..n)
            .map(|i| op_put(&format!("k{i:03}"), "v"))
            .collect::<Vec<_>>()
    };
    assert_invalid(
        s.txn(pb::TxnRequest {
            success: many(MAX_TXN_OPS + 1),
            ..Default::default()
        }),
        &format!("txn.success has {} operations", MAX_TXN_OPS + 1),
    );
    assert_invalid(
        s.txn(pb::TxnRequest {
            success: vec![pb::RequestOp { request: None }],
            ..Default::default()
        }),
        "txn.success[0] has no operation",
    );
    assert_eq!(s.revision(), 0, "rejected txns write nothing");
    let resp = s
        .txn(pb::TxnRequest {
            success: many(MAX_TXN_OPS),
            ..Default::default()
        })
        .expect("a txn of exactly the limit is accepted");
    assert!(resp.succeeded);
    assert_eq!(s.revision(), 1);
    assert_eq!(
        s.range(range_req("k", "\0")).unwrap().count,
        MAX_TXN_OPS as i64
    );
}

/// A txn that fails part-way (a read it cannot serve after a write it already made) must leave
/// no trace: not its earlier writes, events or revision.
#[test]
fn a_txn_that_fails_part_way_writes_nothing() {
    let s = Store::new();
    s.put("a", "1"); // 1
    s.put("a", "2"); // 2
    s.put("a", "3"); // 3
    s.compact(2).unwrap();
    let at = |revision| {
        op_range(pb::RangeRequest {
            revision,
            ..range_req("a", "")
        })
    };
    let txn_ops = |read| {
        Op::Txn(pb::TxnRequest {
            success: vec![op_put("b", "written"), read],
            ..Default::default()
        })
    };
    // A read of a compacted revision.
    let results = s.entry(&[txn_ops(at(1))]);
    assert!(
        matches!(
            results[0],
            Err(Error::Compacted {
                requested: 1,
                compacted: 2
            })
        ),
        "{results:?}"
    );
    // A read of a revision written earlier in the same entry.
    let results = s.entry(&[
        Op::Put(put_req("c", "1")),
        Op::Put(put_req("d", "1")),
        txn_ops(at(4)),
        Op::Put(put_req("e", "1")),
    ]);
    assert!(
        results[0].is_ok() && results[1].is_ok() && results[3].is_ok(),
        "{results:?}"
    );
    assert_invalid(results[2].clone(), "range.revision 4");
    // A read of a future revision.
    let results = s.entry(&[txn_ops(at(100))]);
    assert!(
        matches!(
            results[0],
            Err(Error::FutureRevision { requested: 100, .. })
        ),
        "{results:?}"
    );

    assert!(
        s.get("b").is_none(),
        "the failed txns' put must not be applied"
    );
    assert_eq!(s.revision(), 6, "c, d and e are revisions 4, 5 and 6");
    assert_eq!(s.get("e").unwrap().mod_revision, 6);
    let events: Vec<(i64, String)> = s
        .history("a", "\0", 2, 10)
        .unwrap()
        .into_iter()
        .map(|(rev, ev)| (rev, String::from_utf8(ev.kv.unwrap().key).unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            (2, "a".into()),
            (3, "a".into()),
            (4, "c".into()),
            (5, "d".into()),
            (6, "e".into())
        ]
    );
    // A txn reading a servable past revision still works, and sees it as it was.
    let resp = s
        .txn(pb::TxnRequest {
            success: vec![op_put("b", "1"), at(2)],
            ..Default::default()
        })
        .expect("txn");
    match &resp.responses[1].response {
        Some(Response::Range(r)) => assert_eq!(value(&r.kvs[0]), "2"),
        other => panic!("{other:?}"),
    }
}

// ---- ranges ----

fn store_with_keys() -> Store {
    let s = Store::new();
    for (k, v) in [
        ("a", "1"),
        ("p/a", "2"),
        ("p/b", "3"),
        ("p/c", "4"),
        ("p0", "5"),
        ("q", "6"),
    ] {
        s.put(k, v);
    }
    s
}

#[test]
fn range_forms() {
    let s = store_with_keys();
    struct Case {
        name: &'static str,
        req: pb::RangeRequest,
        keys: &'static [&'static str],
        count: i64,
        more: bool,
    }
    let cases = [
        Case {
            name: "single key",
            req: range_req("p/b", ""),
            keys: &["p/b"],
            count: 1,
            more: false,
        },
        Case {
            name: "missing single key",
            req: range_req("p/", ""),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "prefix",
            req: prefix_req("p/"),
            keys: &["p/a", "p/b", "p/c"],
            count: 3,
            more: false,
        },
        Case {
            name: "half-open interval",
            req: range_req("a", "p/c"),
            keys: &["a", "p/a", "p/b"],
            count: 3,
            more: false,
        },
        Case {
            name: "every key from",
            req: range_req("p0", "\0"),
            keys: &["p0", "q"],
            count: 2,
            more: false,
        },
        Case {
            name: "every key",
            req: range_req("\0", "\0"),
            keys: &["a", "p/a", "p/b", "p/c", "p0", "q"],
            count: 6,
            more: false,
        },
        Case {
            name: "empty interval",
            req: range_req("q", "a"),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "limit",
            req: pb::RangeRequest {
                limit: 2,
                ..prefix_req("p/")
            },
            keys: &["p/a", "p/b"],
            count: 3,
            more: true,
        },
        Case {
            name: "limit equal to count",
            req: pb::RangeRequest {
                limit: 3,
                ..prefix_req("p/")
            },
            keys: &["p/a", "p/b", "p/c"],
            count: 3,
            more: false,
        },
        Case {
            name: "count_only",
            req: pb::RangeRequest {
                count_only: true,
                limit: 1,
                ..prefix_req("p/")
            },
            keys: &[],
            count: 3,
            more: false,
        },
    ];
    for c in cases {
        let resp = s.range(c.req).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(keys(&resp), c.keys, "{}", c.name);
        assert_eq!(resp.count, c.count, "{}: count", c.name);
        assert_eq!(resp.more, c.more, "{}: more", c.name);
        assert_eq!(resp.header.unwrap().revision, 6, "{}: header", c.name);
    }
}

#[test]
fn keys_only_omits_values_but_keeps_metadata() {
    let s = store_with_keys();
    let resp = s
        .range(pb::RangeRequest {
            keys_only: true,
            ..prefix_req("p/")
        })
        .unwrap();
    assert_eq!(keys(&resp), ["p/a", "p/b", "p/c"]);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(meta(&resp.kvs[0]), (2, 2, 1));
    // Also at a past revision.
    let past = s
        .range(pb::RangeRequest {
            keys_only: true,
            revision: 3,
            ..prefix_req("p/")
        })
        .unwrap();
    assert_eq!(keys(&past), ["p/a", "p/b"]);
    assert!(past.kvs.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn ranges_at_past_revisions() {
    let s = Store::new();
    s.put("k", "v1"); // 1
    s.put("gone", "g"); // 2
    s.put("k", "v2"); // 3
    s.delete("gone"); // 4
    s.put("late", "l"); // 5
    s.put("k", "v3"); // 6
    let view = |rev: i64| -> Vec<(String, String, i64)> {
        s.range(pb::RangeRequest {
            revision: rev,
            ..range_req("a", "\0")
        })
        .unwrap()
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key.clone()).unwrap(),
                value(kv).to_string(),
                kv.version,
            )
        })
        .collect()
    };
    let row = |k: &str, v: &str, version| (k.to_string(), v.to_string(), version);
    assert_eq!(view(1), [row("k", "v1", 1)]);
    assert_eq!(view(2), [row("gone", "g", 1), row("k", "v1", 1)]);
    assert_eq!(view(3), [row("gone", "g", 1), row("k", "v2", 2)]);
    assert_eq!(view(4), [row("k", "v2", 2)]);
    assert_eq!(view(5), [row("k", "v2", 2), row("late", "l", 1)]);
    assert_eq!(view(6), [row("k", "v3", 3), row("late", "l", 1)]);
    assert_eq!(view(0), view(6));
    let resp = s
        .range(pb::RangeRequest {
            revision: 3,
            limit: 1,
            ..range_req("a", "\0")
        })
        .unwrap();
    assert_eq!(
        (keys(&resp), resp.count, resp.more),
        (vec!["gone".to_string()], 2, true)
    );
    assert_eq!(
        resp.header.unwrap().revision,
        3,
        "a past read reports the revision it reflects"
    );
    assert_eq!(
        s.range(pb::RangeRequest {
            revision: 7,
            ..range_req("k", "")
        }),
        Err(Error::FutureRevision {
            requested: 7,
            current: 6
        })
    );
}

/// An interval whose end is below its start is empty wherever it appears (this used to panic
/// the state machine on every replica when the entry was applied).
#[test]
fn inverted_intervals_are_empty() {
    let s = store_with_keys();
    let resp = s.try_delete(delete_req("q", "a")).expect("delete");
    assert_eq!((resp.succeeded, resp.deleted), (true, 0));
    let resp = s
        .txn(pb::TxnRequest {
            success: vec![
                op_put("b", "1"),
                op_range(range_req("q", "a")),
                op_delete("q", "a"),
            ],
            ..Default::default()
        })
        .expect("txn");
    match &resp.responses[1].response {
        Some(Response::Range(r)) => assert_eq!((r.count, r.kvs.len()), (0, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.revision(), 7);
    assert_eq!(s.range(range_req("a", "\0")).unwrap().count, 7);
}

#[test]
fn ranges_reject_an_empty_key() {
    let s = store_with_keys();
    assert_invalid(s.range(range_req("", "")), "range.key");
}

// ---- compaction ----

#[test]
fn compaction_bounds() {
    let s = Store::new();
    for i in 1..=10 {
        s.put("k", &format!("v{i}"));
    }
    assert_eq!(
        s.compact(11),
        Err(Error::FutureRevision {
            requested: 11,
            current: 10
        })
    );
    assert_invalid(s.compact(0), "compaction revision");
    assert_invalid(s.compact(-1), "compaction revision");
    s.compact(5).expect("compact");
    assert_eq!(value(&s.get_at("k", 5).unwrap().unwrap()), "v5");
    assert_eq!(
        s.get_at("k", 4),
        Err(Error::Compacted {
            requested: 4,
            compacted: 5
        })
    );
    assert_eq!(
        s.compact(5),
        Err(Error::Compacted {
            requested: 5,
            compacted: 5
        })
    );
    assert_eq!(
        s.compact(3),
        Err(Error::Compacted {
            requested: 3,
            compacted: 5
        })
    );
    assert_eq!(s.revision(), 10, "compaction does not consume a revision");
    s.compact(10).expect("compact at the current revision");
    assert_eq!(value(&s.get("k").unwrap()), "v10");
    assert_eq!(meta(&s.get("k").unwrap()), (1, 10, 10));
}

#[test]
fn past_reads_after_compaction() {
    let s = Store::new();
    s.put("many", "m1"); // 1
    s.put("early-gone", "e"); // 2
    s.put("many", "m2"); // 3
    s.delete("early-gone"); // 4
    s.put("late-gone", "l"); // 5
    s.put("many", "m3"); // 6
    s.put("recreated", "r1"); // 7
    s.delete("recreated"); // 8
    s.put("many", "m4"); // 9 <- compaction point
    s.delete("late-gone"); // 10
    s.put("many", "m5"); // 11
    s.put("recreated", "r2"); // 12
    let before: Vec<pb::RangeResponse> = (9..=12)
        .map(|rev| {
            s.range(pb::RangeRequest {
                revision: rev,
                ..range_req("a", "\0")
            })
            .unwrap()
        })
        .collect();
    s.compact(9).unwrap();
    for (i, rev) in (9..=12).enumerate() {
        let after = s
            .range(pb::RangeRequest {
                revision: rev,
                ..range_req("a", "\0")
            })
            .unwrap();
        assert_eq!(
            after, before[i],
            "revision {rev} reads the same after compaction"
        );
    }
    assert_eq!(keys(&before[0]), ["late-gone", "many"]);
    assert_eq!(value(&s.get_at("many", 9).unwrap().unwrap()), "m4");
    assert_eq!(meta(&s.get_at("many", 9).unwrap().unwrap()), (1, 9, 4));
    assert_eq!(value(&s.get_at("many", 10).unwrap().unwrap()), "m4");
    assert!(s.get_at("early-gone", 9).unwrap().is_none());
    assert!(s.get_at("recreated", 9).unwrap().is_none());
    assert_eq!(
        meta(&s.get_at("recreated", 12).unwrap().unwrap()),
        (12, 12, 1)
    );
    assert!(s.get_at("late-gone", 9).unwrap().is_some());
    assert!(s.get_at("late-gone", 10).unwrap().is_none());

    // Compacting again keeps the later state readable.
    s.compact(11).unwrap();
    assert_eq!(value(&s.get_at("many", 11).unwrap().unwrap()), "m5");
    assert!(s.get_at("late-gone", 11).unwrap().is_none());
    assert!(s.get_at("recreated", 11).unwrap().is_none());
    assert_eq!(value(&s.get_at("recreated", 12).unwrap().unwrap()), "r2");
}

#[test]
fn history_respects_compaction() {
    let s = Store::new();
    s.put("a", "1"); // 1
    s.put("b", "1"); // 2
    s.put("a", "2"); // 3
    s.delete("a"); // 4
    s.put("a", "3"); // 5
    let all = s.history("a", "", 1, 5).unwrap();
    assert_eq!(
        all.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        [1, 3, 4, 5]
    );
    s.compact(3).unwrap();
    assert_eq!(
        s.history("a", "", 2, 5),
        Err(Error::Compacted {
            requested: 2,
            compacted: 3
        })
    );
    let events = s.history("a", "", 3, 5).unwrap();
    use pb::event::EventType;
    let summary: Vec<(i64, i32, String, Option<String>)> = events
        .iter()
        .map(|(rev, ev)| {
            let kv = ev.kv.as_ref().unwrap();
            (
                *rev,
                ev.r#type,
                value(kv).to_string(),
                ev.prev_kv.as_ref().map(|p| value(p).to_string()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (3, EventType::Put as i32, "2".into(), Some("1".into())),
            (4, EventType::Delete as i32, "".into(), Some("2".into())),
            (5, EventType::Put as i32, "3".into(), None),
        ]
    );
    assert_eq!(events[1].1.kv.as_ref().unwrap().mod_revision, 4);
    assert_eq!(meta(events[1].1.prev_kv.as_ref().unwrap()), (1, 3, 2));
    assert!(
        s.history("a", "", 5, 4).unwrap().is_empty(),
        "an empty interval"
    );
    assert!(
        s.history("b", "", 3, 5).unwrap().is_empty(),
        "b's only event was compacted"
    );
}

// ---- limits ----

#[test]
fn limits_and_empty_keys_are_rejected_naming_the_field() {
    let s = Store::new();
    let big = "x".repeat(MAX_VALUE_BYTES + 1);
    let cases: Vec<(&str, Op, &str)> = vec![
        ("value too large", Op::Put(put_req("k", &big)), "put.value"),
        ("empty put key", Op::Put(put_req("", "v")), "put.key"),
        (
            "key too long",
            Op::Put(put_req(&"k".repeat(4097), "v")),
            "put.key",
        ),
        (
            "empty delete key",
            Op::DeleteRange(delete_req("", "")),
            "delete_range.key",
        ),
        (
            "value too large in a txn",
            Op::Txn(pb::TxnRequest {
                failure: vec![op_put("k", &big)],
                ..Default::default()
            }),
            "txn.failure[0].value",
        ),
        (
            "empty range key in a txn",
            Op::Txn(pb::TxnRequest {
                success: vec![op_range(range_req("", ""))],
                ..Default::default()
            }),
            "txn.success[0].key",
        ),
    ];
    for (name, op, field) in cases {
        assert!(mvcc::validate_op(&op).is_err(), "{name}");
        assert_invalid(s.apply(op), field);
    }
    assert_eq!(s.revision(), 0);
    s.put("k", &"x".repeat(MAX_VALUE_BYTES));
    assert_eq!(s.get("k").unwrap().value.len(), MAX_VALUE_BYTES);
}

// ---- fencing ----

#[test]
fn fenced_writes_apply_only_in_their_term() {
    let fence = Some(pb::FencingToken { raft_term: 3 });
    let ops = [
        Op::Put(pb::PutRequest {
            fence,
            ..put_req("k", "new")
        }),
        Op::DeleteRange(pb::DeleteRangeRequest {
            fence,
            ..delete_req("k", "")
        }),
        Op::Txn(pb::TxnRequest {
            success: vec![op_put("k", "new")],
            fence,
            ..Default::default()
        }),
    ];
    for op in ops {
        let s = Store::new();
        s.put("k", "old"); // 1
        let fenced = s.entry_in_term(std::slice::from_ref(&op), 4).pop().unwrap();
        assert_eq!(
            fenced,
            Err(Error::Fenced {
                stamped: 3,
                committed: 4
            }),
            "{op:?}"
        );
        assert_eq!(s.revision(), 1, "{op:?}: a fenced write writes nothing");
        assert_eq!(value(&s.get("k").unwrap()), "old");
        assert!(s.history("k", "", 2, 10).unwrap().is_empty());

        let applied = s.entry_in_term(std::slice::from_ref(&op), 3).pop().unwrap();
        assert!(applied.is_ok(), "{op:?}: {applied:?}");
        assert_eq!(s.revision(), 2, "{op:?}");
    }
}

// ---- content hash ----

#[test]
fn content_hash_reflects_content() {
    let (a, b) = (Store::new(), Store::new());
    for s in [&a, &b] {
        s.put("x", "1");
        s.put("y", "2");
        s.delete("x");
    }
    let (hash_a, rev_a) = mvcc::content_hash(&a.db).unwrap();
    let (hash_b, rev_b) = mvcc::content_hash(&b.db).unwrap();
    assert_eq!((hash_a.as_str(), rev_a), (hash_b.as_str(), rev_b));
    assert_eq!(rev_a, 3);
    b.put("y", "2"); // the same value, but a new mod revision and version
    let (hash_b2, rev_b2) = mvcc::content_hash(&b.db).unwrap();
    assert_ne!(hash_a, hash_b2);
    assert_eq!(rev_b2, 4);
    // Compaction keeps the live content, so it keeps the hash.
    a.compact(3).unwrap();
    assert_eq!(mvcc::content_hash(&a.db).unwrap().0, hash_a);
}

// ---- property test ----

/// The expected state at every revision, kept by a model of the store's semantics.
struct Model {
    /// `states[r]`: the live keys at revision `r`.
    states: Vec<BTreeMap<Vec<u8>, pb::KeyValue>>,
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![BTreeMap::new()],
        }
    }

    fn current(&self) -> &BTreeMap<Vec<u8>, pb::KeyValue> {
        self.states.last().expect("revision 0")
    }

    fn revision(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    /// Apply a put or delete; returns whether it consumed a revision.
    fn apply(&mut self, op: &Op) {
        let rev = self.revision() + 1;
        let mut next = self.current().clone();
        match op {
            Op::Put(p) => {
                let prev = next.get(&p.key);
                let kv = pb::KeyValue {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    create_revision: prev.map_or(rev, |kv| kv.create_revision),
                    mod_revision: rev,
                    version: prev.map_or(1, |kv| kv.version + 1),
                };
                next.insert(p.key.clone(), kv);
            }
            Op::DeleteRange(d) => {
                let range = KeyRange::new(&d.key, &d.range_end);
                next.retain(|k, _| !range.contains(k));
                if next.len() == self.current().len() {
                    return;
                }
            }
            other => panic!("the model does not do {other:?}"),
        }
        self.states.push(next);
    }
}

const MODEL_KEYS: [&str; 6] = ["k0", "k1", "k1\0", "k2", "k3", "k4"];

fn random_op(rng: &mut StdRng) -> Op {
    let key = MODEL_KEYS[rng.random_range(0..MODEL_KEYS.len())];
    match rng.random_range(0..10) {
        0..=5 => Op::Put(put_req(key, &format!("v{}", rng.random_range(0..1000)))),
        6..=8 => Op::DeleteRange(delete_req(key, "")),
        _ => {
            let end = MODEL_KEYS[rng.random_range(0..MODEL_KEYS.len())];
            Op::DeleteRange(delete_req(key, end))
        }
    }
}

/// Apply `n` random ops in randomly sized entries, to the store and the model alike.
fn random_writes(s: &Store, model: &mut Model, rng: &mut StdRng, n: usize) {
    let mut left = n;
    while left > 0 {
        let size = rng.random_range(1..=4).min(left);
        let ops: Vec<Op> = (0..size).map(|_| random_op(rng)).collect();
        for (op, result) in ops.iter().zip(s.entry(&ops)) {
            result.unwrap_or_else(|e| panic!("{op:?}: {e}"));
            model.apply(op);
        }
        left -= size;
        assert_eq!(s.revision(), model.revision());
    }
}

/// Every revision from `compacted` on reads as the model says; earlier ones are compacted.
fn check_every_revision(s: &Store, model: &Model, compacted: i64, seed: u64) {
    for rev in 1..=model.revision() {
        let req = pb::RangeRequest {
            revision: rev,
            ..range_req("k", "\0")
        };
        if rev < compacted {
            assert_eq!(
                s.range(req),
                Err(Error::Compacted {
                    requested: rev,
                    compacted
                }),
                "seed {seed}"
            );
            continue;
        }
        let got = s.range(req).unwrap().kvs;
        let want: Vec<pb::KeyValue> = model.states[rev as usize].values().cloned().collect();
        assert_eq!(
            got, want,
            "seed {seed}: revision {rev} (compacted at {compacted})"
        );
        // Each key on its own, too (a single-key read takes a different path).
        for key in MODEL_KEYS {
            let one = s.get_at(key, rev).unwrap();
            assert_eq!(
                one.as_ref(),
                model.states[rev as usize].get(key.as_bytes()),
                "seed {seed}: {key:?} at {rev}"
            );
        }
        // The history at `rev` is exactly the keys that changed.
        {
            let changed: Vec<Vec<u8>> = s
                .history("k", "\0", rev, rev)
                .unwrap()
                .into_iter()
                .map(|(_, ev)| ev.kv.unwrap().key)
                .collect();
            let (before, after) = (&model.states[rev as usize - 1], &model.states[rev as usize]);
            let want: Vec<Vec<u8>> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(changed, want, "seed {seed}: events at {rev}");
        }
    }
}

#[test]
fn random_writes_read_back_at_every_revision_before_and_after_compaction() {
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let s = Store::new();
        let mut model = Model::new();
        random_writes(&s, &mut model, &mut rng, 150);
        check_every_revision(&s, &model, 0, seed);

        let first = rng.random_range(1..=model.revision());
        s.compact(first).unwrap();
        check_every_revision(&s, &model, first, seed);

        random_writes(&s, &mut model, &mut rng, 100);
        let second = rng.random_range(first + 1..=model.revision());
        s.compact(second).unwrap();
        check_every_revision(&s, &model, second, seed);
        assert_eq!(
            mvcc::content_hash(&s.db).unwrap().1,
            model.revision(),
            "seed {seed}"
        );
    }
}
