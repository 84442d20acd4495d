//! Unit tests of the watch hub: history replay then live delivery without gaps or duplicates
//! (also across a lagging receiver), compaction errors, and progress notifications.

use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use rkube_proto::store as pb;
use tempfile::TempDir;
use tokio::sync::mpsc;

use crate::db::Db;
use crate::encoding::{prefix_end, KeyRange};
use crate::error::{Error, Result};
use crate::mvcc;
use crate::state_machine::StateMachine;
use crate::types::{Command, Entry, LogId, Op};
use crate::watch::run_watch;

/// How long a test waits for something that should happen; failing is better than hanging.
const DEADLINE: Duration = Duration::from_secs(30);

/// A state machine in a temporary directory, fed entries one apply call at a time.
struct Fixture {
    db: Db,
    sm: StateMachine,
    index: u64,
    _dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let db = Db::open(&dir.path().join("db")).expect("open the database");
        let sm = StateMachine::open(db.clone(), dir.path().join("snapshots"))
            .expect("open the state machine");
        Fixture {
            db,
            sm,
            index: 0,
            _dir: dir,
        }
    }

    /// Apply `ops` as one entry, in one apply call (one published batch).
    async fn apply(&mut self, ops: Vec<Op>) {
        self.index += 1;
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(Command { ops }),
        };
        let results = self.sm.apply([entry]).await.expect("apply");
        for r in &results[0].results {
            assert!(r.is_ok(), "{r:?}");
        }
    }

    async fn put(&mut self, key: &str, value: &str) {
        self.apply(vec![Op::Put(pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })])
        .await;
    }

    fn revision(&self) -> i64 {
        mvcc::read_revisions(&self.db).expect("revisions").current
    }

    /// Start a watch whose responses go through a channel of `capacity`.
    fn watch(
        &self,
        req: pb::WatchRequest,
        capacity: usize,
    ) -> mpsc::Receiver<Result<pb::WatchResponse>> {
        let (tx, rx) = mpsc::channel(capacity);
        let header = |revision| pb::ResponseHeader {
            revision,
            ..Default::default()
        };
        tokio::spawn(run_watch(
            self.db.clone(),
            self.sm.hub(),
            req,
            header,
            || false,
            tx,
        ));
        rx
    }
}

fn prefix_watch(prefix: &str, start_revision: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        key: prefix.into(),
        range_end: prefix_end(prefix.as_bytes()),
        start_revision,
        ..Default::default()
    }
}

/// The next item of the stream, which must come within the deadline.
async fn next_item(
    rx: &mut mpsc::Receiver<Result<pb::WatchResponse>>,
) -> Result<pb::WatchResponse> {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a watch response within the deadline")
        .expect("the watch stream is open")
}

async fn next_response(rx: &mut mpsc::Receiver<Result<pb::WatchResponse>>) -> pb::WatchResponse {
    next_item(rx).await.expect("a response, not an error")
}

/// Receive event responses until one reaches `through`, checking the per-response invariants.
/// The deadline covers the whole call, so a stream of progress notifications cannot keep it going.
async fn events_through(
    rx: &mut mpsc::Receiver<Result<pb::WatchResponse>>,
    through: i64,
) -> Vec<pb::Event> {
    let receive = async {
        let mut events: Vec<pb::Event> = Vec::new();
        let mut last_header = 0;
        loop {
            let resp = rx
                .recv()
                .await
                .expect("the watch stream is open")
                .expect("a response, not an error");
            let header = resp.header.as_ref().expect("header").revision;
            assert!(
                header >= last_header,
                "headers never go back: {header} after {last_header}"
            );
            last_header = header;
            if resp.progress_notify {
                assert!(resp.events.is_empty());
                continue;
            }
            assert!(!resp.events.is_empty(), "an event response has events");
            let revs = revisions(&resp.events);
            assert!(
                revs.windows(2).all(|w| w[0] <= w[1]),
                "events in revision order: {revs:?}"
            );
            assert!(
                revs[revs.len() - 1] <= header,
                "events {revs:?} in a response with header {header}"
            );
            // A revision is never split across responses.
            if let Some(prev) = events.last() {
                let prev = prev.kv.as_ref().expect("kv").mod_revision;
                assert!(
                    revs[0] > prev,
                    "revision {prev} continued in a later response"
                );
            }
            events.extend(resp.events);
            if header >= through {
                return events;
            }
        }
    };
    tokio::time::timeout(DEADLINE, receive)
        .await
        .unwrap_or_else(|_| panic!("no events through revision {through} within the deadline"))
}

fn revisions(events: &[pb::Event]) -> Vec<i64> {
    events
        .iter()
        .map(|ev| ev.kv.as_ref().expect("kv").mod_revision)
        .collect()
}

#[tokio::test]
async fn replays_history_then_continues_live() {
    let mut f = Fixture::new();
    f.put("w/a", "1").await; // 1
    f.put("other", "x").await; // 2
    f.put("w/b", "1").await; // 3
    f.put("w/a", "2").await; // 4

    let mut rx = f.watch(prefix_watch("w/", 2), 16);
    let replayed = events_through(&mut rx, 4).await;
    assert_eq!(revisions(&replayed), [3, 4]);
    assert_eq!(
        replayed[1].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"1".to_vec())
    );

    f.put("other", "y").await; // 5: outside the range
    f.apply(vec![Op::DeleteRange(pb::DeleteRangeRequest {
        key: "w/".into(),
        range_end: prefix_end(b"w/"),
        ..Default::default()
    })])
    .await; // 6: two events
    f.put("w/c", "1").await; // 7
    let live = events_through(&mut rx, 7).await;
    assert_eq!(revisions(&live), [6, 6, 7]);
    assert_eq!(live[0].r#type, pb::event::EventType::Delete as i32);

    // A watch from 0 sees only what happens after it starts.
    let mut future_only = f.watch(prefix_watch("w/", 0), 16);
    // Let the watcher subscribe before the write: on this single-threaded runtime one yield runs
    // it up to its first wait for a live batch.
    tokio::task::yield_now().await;
    f.put("w/d", "1").await; // 8
    let only = events_through(&mut future_only, 8).await;
    assert_eq!(revisions(&only), [8]);
}

#[tokio::test]
async fn a_lagging_watcher_sees_every_event_exactly_once_in_order() {
    let mut f = Fixture::new();
    f.put("w/0", "first").await; // 1
    let mut rx = f.watch(prefix_watch("w/", 1), 1);
    assert_eq!(revisions(&next_response(&mut rx).await.events), [1]);

    // Far more batches than the broadcast channel holds (1024), while the consumer does not read
    // and the watcher is stuck on its full output channel.
    for i in 0..1500 {
        match i % 10 {
            // Outside the watched range: advances the revision without an event.
            3 => f.put("other", &i.to_string()).await,
            // Several events in one revision.
            7 => {
                f.apply(vec![Op::Txn(pb::TxnRequest {
                    success: vec![
                        put_op(&format!("w/t{}", i % 3), "a"),
                        put_op(&format!("w/u{}", i % 3), "b"),
                    ],
                    ..Default::default()
                })])
                .await
            }
            _ => f.put(&format!("w/{}", i % 5), &i.to_string()).await,
        }
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let last = f.revision();
    assert_eq!(last, 1501);

    let delivered = events_through(&mut rx, last).await;
    let want: Vec<pb::Event> =
        mvcc::history(&f.db, &KeyRange::new(b"w/", &prefix_end(b"w/")), 2, last)
            .expect("history")
            .into_iter()
            .map(|(_, ev)| ev)
            .collect();
    assert_eq!(delivered.len(), want.len());
    assert!(
        delivered == want,
        "the watcher delivers exactly the history, in order"
    );

    // Nothing is delivered twice after the catch-up: the next event is the next revision.
    f.put("w/after", "x").await;
    assert_eq!(
        revisions(&events_through(&mut rx, last + 1).await),
        [last + 1]
    );
}

fn put_op(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn a_start_revision_below_compaction_fails_with_compacted() {
    let mut f = Fixture::new();
    for i in 0..5 {
        f.put("w/a", &i.to_string()).await;
    }
    f.apply(vec![Op::Compact(3)]).await;

    let mut rx = f.watch(prefix_watch("w/", 2), 4);
    assert_eq!(
        next_item(&mut rx).await,
        Err(Error::Compacted {
            requested: 2,
            compacted: 3
        })
    );
    assert!(
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("the stream ends")
            .is_none(),
        "the error is the last item"
    );

    // From the compaction point itself the history is still there.
    let mut rx = f.watch(prefix_watch("w/", 3), 4);
    assert_eq!(revisions(&events_through(&mut rx, 5).await), [3, 4, 5]);
}

#[tokio::test]
async fn an_empty_watch_key_is_rejected() {
    let f = Fixture::new();
    let mut rx = f.watch(pb::WatchRequest::default(), 1);
    assert!(matches!(next_item(&mut rx).await, Err(Error::Invalid(m)) if m.contains("watch.key")));
}

#[tokio::test(start_paused = true)]
async fn progress_notifications_report_a_fully_delivered_revision() {
    let mut f = Fixture::new();
    f.put("w/a", "1").await; // 1
    f.put("other", "1").await; // 2
    let started = tokio::time::Instant::now();
    let mut rx = f.watch(
        pb::WatchRequest {
            progress_interval_ms: 1000,
            ..prefix_watch("w/", 1)
        },
        16,
    );
    let replay = next_response(&mut rx).await;
    assert!(!replay.progress_notify);
    assert_eq!(revisions(&replay.events), [1]);
    assert_eq!(replay.header.unwrap().revision, 2);

    // The clock is paused: the notification comes when the runtime has nothing else to do and
    // the clock jumps to the next tick.
    let progress = next_response(&mut rx).await;
    assert!(progress.progress_notify && progress.events.is_empty());
    assert_eq!(progress.header.unwrap().revision, 2);
    assert!(started.elapsed() >= Duration::from_millis(1000));

    // A write outside the range moves the progress revision without an event.
    f.put("other", "2").await; // 3
    let progress = next_response(&mut rx).await;
    assert!(progress.progress_notify);
    assert_eq!(progress.header.unwrap().revision, 3);

    // Every progress revision is covered by the events delivered before it.
    let mut delivered = vec![1];
    let mut want = vec![1];
    for i in 0..20 {
        if i % 3 == 0 {
            f.put("other", "x").await;
        } else {
            f.put("w/b", &i.to_string()).await;
            want.push(f.revision());
        }
        tokio::task::yield_now().await;
        while let Ok(item) = rx.try_recv() {
            let resp = item.expect("a response");
            let header = resp.header.unwrap().revision;
            if resp.progress_notify {
                let due: Vec<i64> = want.iter().copied().filter(|r| *r <= header).collect();
                assert_eq!(delivered, due, "progress at {header}");
            } else {
                delivered.extend(revisions(&resp.events));
            }
        }
        if i % 5 == 4 {
            tokio::time::advance(Duration::from_millis(1000)).await;
        }
    }
    // Once everything is delivered, progress reaches the applied revision.
    let applied = f.revision();
    loop {
        let resp = next_response(&mut rx).await;
        let header = resp.header.unwrap().revision;
        if !resp.progress_notify {
            delivered.extend(revisions(&resp.events));
            continue;
        }
        let due: Vec<i64> = want.iter().copied().filter(|r| *r <= header).collect();
        assert_eq!(delivered, due, "progress at {header}");
        if header == applied {
            break;
        }
    }
    assert_eq!(delivered, want);
}

/// A watch from a future revision delivers nothing before it, and its progress notifications
/// never claim a revision the replica has not applied.
#[tokio::test(start_paused = true)]
async fn progress_of_a_watch_from_a_future_revision_stays_at_the_applied_revision() {
    let mut f = Fixture::new();
    f.put("w/a", "1").await; // 1
    let mut rx = f.watch(
        pb::WatchRequest {
            progress_interval_ms: 1000,
            ..prefix_watch("w/", 4)
        },
        16,
    );
    let progress = next_response(&mut rx).await;
    assert!(progress.progress_notify);
    assert_eq!(progress.header.unwrap().revision, 1);

    f.put("w/a", "2").await; // 2: before the start revision, not delivered
    f.put("w/a", "3").await; // 3
    let progress = next_response(&mut rx).await;
    assert!(progress.progress_notify);
    assert_eq!(progress.header.unwrap().revision, 3);

    f.put("w/a", "4").await; // 4: the first one delivered
    assert_eq!(revisions(&events_through(&mut rx, 4).await), [4]);
}

/// A follower that installs a snapshot jumps ahead; its watchers replay the jump from the
/// installed history when the next batch arrives, without a gap.
#[tokio::test]
async fn a_watcher_replays_the_revisions_a_snapshot_install_skipped() {
    let mut leader = Fixture::new();
    let mut follower = Fixture::new();
    for f in [&mut leader, &mut follower] {
        f.put("w/a", "1").await; // 1
        f.put("w/b", "1").await; // 2
    }
    let mut rx = follower.watch(prefix_watch("w/", 1), 16);
    assert_eq!(revisions(&events_through(&mut rx, 2).await), [1, 2]);

    leader.put("w/a", "2").await; // 3
    leader.put("other", "x").await; // 4
    leader.put("w/c", "1").await; // 5
    let snapshot = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let mut receiving = follower.sm.begin_receiving_snapshot().await.expect("begin");
    *receiving = *snapshot.snapshot;
    follower
        .sm
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .expect("install");
    assert_eq!(follower.sm.hub().revision(), 5);

    follower.index = leader.index;
    follower.put("w/d", "1").await; // 6
    assert_eq!(revisions(&events_through(&mut rx, 6).await), [3, 5, 6]);
}
