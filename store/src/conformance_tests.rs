//! openraft's storage conformance suite run against the RocksDB `LogStore` and `StateMachine`,
//! plus what the suite leaves out: snapshots that carry data, and durability across a reopen.
// openraft's traits fix the (large) `StorageError` type.
#![allow(clippy::result_large_err)]

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, RaftSnapshotBuilder};
use rkube_proto::store as pb;
use tempfile::TempDir;

use crate::db::Db;
use crate::encoding::KeyRange;
use crate::log_store::LogStore;
use crate::mvcc::{self, Revisions};
use crate::state_machine::StateMachine;
use crate::types::{Command, Entry, LogId, Op, StorageError, TypeConfig};

/// Builds a fresh store in its own temporary directory for every suite case; the directory
/// lives as long as the returned guard.
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let db = Db::open(&dir.path().join("db")).expect("open the store database");
        let sm = StateMachine::open(db.clone(), dir.path().join("snapshots"))
            .expect("open the state machine");
        Ok((dir, LogStore::new(db), sm))
    }
}

/// The suite runs every case on its own runtime, so this is a plain (synchronous) test.
#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::<TypeConfig, LogStore, StateMachine, Builder, TempDir>::test_all(Builder)
}

/// Apply `ops` to `sm` as entry `index` (term 1), in its own apply call.
async fn apply(sm: &mut StateMachine, index: u64, ops: Vec<Op>) {
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command { ops }),
    };
    let results = sm.apply([entry]).await.expect("apply");
    assert!(results[0].results.iter().all(|r| r.is_ok()), "{results:?}");
}

fn put(key: &str, value: &str) -> Op {
    Op::Put(pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn delete(key: &str) -> Op {
    Op::DeleteRange(pb::DeleteRangeRequest {
        key: key.into(),
        ..Default::default()
    })
}

/// Everything a reader can observe: revisions, the content hash, every servable past revision
/// and the whole servable history.
fn observable(
    db: &Db,
) -> (
    Revisions,
    String,
    Vec<pb::RangeResponse>,
    Vec<(i64, pb::Event)>,
) {
    let revs = mvcc::read_revisions(db).expect("revisions");
    let (hash, _) = mvcc::content_hash(db).expect("hash");
    let ranges = (revs.compacted.max(1)..=revs.current)
        .map(|revision| {
            mvcc::range(
                db,
                &pb::RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    revision,
                    ..Default::default()
                },
            )
            .expect("range")
        })
        .collect();
    let all = KeyRange::new(&[0], &[0]);
    let history = mvcc::history(db, &all, revs.compacted, revs.current).expect("history");
    (revs, hash, ranges, history)
}

#[tokio::test]
async fn snapshot_round_trip_carries_the_data_and_replaces_stale_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |name: &str| {
        let db = Db::open(&dir.path().join(name).join("db")).expect("open");
        let sm = StateMachine::open(db.clone(), dir.path().join(name).join("snapshots"))
            .expect("state machine");
        (db, sm)
    };
    let (leader_db, mut leader) = open("leader");
    let (follower_db, mut follower) = open("follower");

    apply(&mut leader, 1, vec![put("a", "1"), put("b", "1")]).await;
    apply(
        &mut leader,
        2,
        vec![put("a", "2"), delete("b"), put("c", "1")],
    )
    .await;
    apply(&mut leader, 3, vec![Op::Compact(2)]).await;
    apply(&mut leader, 4, vec![put("a\0", "binary"), put("c", "2")]).await;
    // The follower has state the snapshot must wipe out (keys, versions, history, revisions).
    apply(&mut follower, 1, vec![put("stale", "x")]).await;
    for i in 2..=9 {
        apply(&mut follower, i, vec![put("zzz", &i.to_string())]).await;
    }

    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(4));
    let mut receiving = follower.begin_receiving_snapshot().await.expect("begin");
    *receiving = *built.snapshot;
    follower
        .install_snapshot(&built.meta, receiving)
        .await
        .expect("install");

    assert_eq!(observable(&follower_db), observable(&leader_db));
    assert_eq!(
        follower.applied_state().await.expect("applied"),
        leader.applied_state().await.expect("applied")
    );
    let current = follower
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);

    // Both continue from the same revision.
    apply(&mut leader, 5, vec![put("d", "1")]).await;
    apply(&mut follower, 5, vec![put("d", "1")]).await;
    assert_eq!(observable(&follower_db), observable(&leader_db));
    assert_eq!(mvcc::read_revisions(&follower_db).unwrap().current, 8);

    // A corrupt snapshot (bad header, or cut short) is refused and changes nothing.
    let before = observable(&follower_db);
    let applied_before = follower.applied_state().await.expect("applied");
    let good = follower
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot")
        .snapshot
        .into_inner();
    for corrupt in [b"not a snapshot".to_vec(), good[..good.len() - 3].to_vec()] {
        let mut bad = follower.begin_receiving_snapshot().await.expect("begin");
        *bad = std::io::Cursor::new(corrupt);
        assert!(follower.install_snapshot(&built.meta, bad).await.is_err());
        assert_eq!(observable(&follower_db), before);
        assert_eq!(
            follower.applied_state().await.expect("applied"),
            applied_before
        );
    }
}

#[tokio::test]
async fn log_vote_and_state_machine_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("db");
    let snapshots = dir.path().join("snapshots");
    let vote = openraft::Vote::new_committed(3, 2);
    let (log_state, membership_state, hash) = {
        let db = Db::open(&db_path).expect("open");
        let mut log = LogStore::new(db.clone());
        let mut sm = StateMachine::open(db.clone(), snapshots.clone()).expect("sm");
        // Blank entries 0..=10, and a vote.
        Suite::<TypeConfig, LogStore, StateMachine, Builder, TempDir>::feed_10_logs_vote_self(
            &mut log,
        )
        .await
        .expect("append");
        log.save_vote(&vote).await.expect("vote");
        log.save_committed(Some(LogId::new(CommittedLeaderId::new(1, 0), 10)))
            .await
            .expect("committed");
        let entries: Vec<Entry> = (1..=5)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(Command {
                    ops: vec![put("k", &i.to_string())],
                }),
            })
            .collect();
        sm.apply(entries).await.expect("apply");
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 2))
            .await
            .expect("purge");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        (
            log.get_log_state().await.expect("log state"),
            sm.applied_state().await.expect("applied"),
            mvcc::content_hash(&db).expect("hash"),
        )
    };
    let db = Db::open(&db_path).expect("reopen");
    let mut log = LogStore::new(db.clone());
    let mut sm = StateMachine::open(db.clone(), snapshots).expect("sm");
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    let reopened = log.get_log_state().await.expect("log state");
    assert_eq!(reopened.last_log_id, log_state.last_log_id);
    assert_eq!(reopened.last_purged_log_id, log_state.last_purged_log_id);
    assert_eq!(reopened.last_log_id.map(|l| l.index), Some(10));
    assert_eq!(reopened.last_purged_log_id.map(|l| l.index), Some(2));
    assert_eq!(
        log.read_committed()
            .await
            .expect("committed")
            .map(|l| l.index),
        Some(10)
    );
    let left: Vec<u64> = log
        .try_get_log_entries(0..100)
        .await
        .expect("entries")
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(left, (3..=10).collect::<Vec<u64>>());
    assert_eq!(sm.applied_state().await.expect("applied"), membership_state);
    assert_eq!(mvcc::content_hash(&db).expect("hash"), hash);
    assert_eq!(
        sm.hub().revision(),
        5,
        "the watch hub starts at the stored revision"
    );
    let snapshot = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(5));
}
