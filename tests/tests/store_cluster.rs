//! Integration tests of the replicated store on in-process 3-replica loopback clusters:
//! failover, restart, partitions, snapshot catch-up, watch agreement, follower reads, membership.

use std::time::Duration;

use futures::StreamExt;
use rkube_proto::store as pb;
use rkube_store::Error;
use rkube_tests::store_cluster::{get, prefix, put, snapshot_often, StoreCluster};
use rkube_tests::wait::wait_until;

fn value_of(resp: &pb::RangeResponse) -> Option<String> {
    resp.kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

async fn read_serializable(c: &StoreCluster, id: u64, key: &str) -> Option<String> {
    let mut req = get(key);
    req.serializable = true;
    value_of(&c.store(id).range(req).await.expect("serializable read"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_leader_and_keep_writing_through_the_survivors() {
    let mut c = StoreCluster::start(3).await;
    let leader = c.leader().await;
    for i in 0..20 {
        c.store(leader)
            .put(put(&format!("/k/{i}"), "before"))
            .await
            .expect("put");
    }
    c.kill(leader);
    let survivors = c.running_ids();
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    // Writes go through either survivor (a follower forwards to the new leader).
    for (i, id) in survivors.iter().cycle().take(20).enumerate() {
        let r = c
            .store(*id)
            .put(put(&format!("/k/{i}"), "after"))
            .await
            .expect("put after failover");
        assert!(r.succeeded);
    }
    for id in &survivors {
        let all = c
            .store(*id)
            .range(pb::RangeRequest {
                key: prefix("/k/").0,
                range_end: prefix("/k/").1,
                ..Default::default()
            })
            .await
            .expect("range");
        assert_eq!(all.count, 20);
        assert!(
            all.kvs
                .iter()
                .all(|kv| kv.value == b"after" && kv.version == 2),
            "every key rewritten once after failover"
        );
    }
    c.restart(leader).await;
    c.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_finds_its_data_and_catches_up() {
    let mut c = StoreCluster::start(3).await;
    let leader = c.leader().await;
    let follower = c
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    c.store(leader).put(put("/a", "1")).await.expect("put");
    wait_until(
        Duration::from_secs(5),
        "the follower to apply /a",
        || async {
            read_serializable(&c, follower, "/a")
                .await
                .filter(|v| v == "1")
        },
    )
    .await;
    c.kill(follower);
    c.store(leader)
        .put(put("/b", "2"))
        .await
        .expect("put while follower is down");
    c.restart(follower).await;
    assert_eq!(
        read_serializable(&c, follower, "/a").await.as_deref(),
        Some("1"),
        "data written before the crash survives it"
    );
    wait_until(
        Duration::from_secs(10),
        "the restarted follower to catch up",
        || async {
            read_serializable(&c, follower, "/b")
                .await
                .filter(|v| v == "2")
        },
    )
    .await;
    c.converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_minority_fails_writes_clearly_while_the_majority_continues() {
    let c = StoreCluster::start(3).await;
    let old_leader = c.leader().await;
    c.isolate(old_leader);
    // The majority elects a new leader and keeps accepting writes.
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != old_leader).collect();
    let new_leader = wait_until(
        Duration::from_secs(10),
        "a new leader in the majority",
        || async {
            let l = c
                .store(others[0])
                .raft()
                .metrics()
                .borrow()
                .current_leader?;
            (l != old_leader).then_some(l)
        },
    )
    .await;
    for i in 0..10 {
        c.store(others[i % 2])
            .put(put(&format!("/maj/{i}"), "x"))
            .await
            .expect("majority write");
    }
    // The isolated replica cannot commit: its writes fail with a retryable error, never success.
    let err = c
        .store(old_leader)
        .put(put("/min", "lost"))
        .await
        .expect_err("minority write must fail");
    assert!(
        matches!(err, Error::Timeout(_) | Error::Unavailable(_)),
        "unexpected error: {err}"
    );
    assert!(err.is_retryable());
    let read_err = c
        .store(old_leader)
        .range(get("/maj/0"))
        .await
        .expect_err("a linearizable read on the minority must fail");
    assert!(read_err.is_retryable(), "unexpected error: {read_err}");

    c.heal();
    let (rev, _) = c.converged().await;
    assert!(rev >= 10);
    for id in c.ids() {
        assert_eq!(
            read_serializable(&c, id, "/min").await,
            None,
            "a write that failed must not appear on node {id}"
        );
        assert_eq!(
            read_serializable(&c, id, "/maj/9").await.as_deref(),
            Some("x")
        );
    }
    assert_ne!(new_leader, old_leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_catches_up_by_snapshot_after_the_log_was_purged() {
    let mut c = StoreCluster::start_with(3, snapshot_often).await;
    let leader = c.leader().await;
    let lagging = c
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    c.kill(lagging);
    for i in 0..300 {
        c.store(leader)
            .put(put(&format!("/s/{}", i % 40), &format!("v{i}")))
            .await
            .expect("put");
    }
    let purged = wait_until(
        Duration::from_secs(10),
        "the leader to purge its log",
        || async {
            let m = c.store(leader).raft().metrics().borrow().clone();
            m.purged.filter(|p| p.index > 100).map(|p| p.index)
        },
    )
    .await;
    c.restart(lagging).await;
    let (rev, _) = c.converged().await;
    assert_eq!(rev, 300);
    let m = c.store(lagging).raft().metrics().borrow().clone();
    assert!(
        m.snapshot.is_some_and(|s| s.index >= purged),
        "the lagging replica must have installed a snapshot covering the purged log (snapshot {:?}, purged {purged})",
        m.snapshot
    );
    // Its history came with the snapshot: a watch from revision 1 replays every write.
    let mut w = c.store(lagging).watch(pb::WatchRequest {
        key: prefix("/s/").0,
        range_end: prefix("/s/").1,
        start_revision: 1,
        ..Default::default()
    });
    let mut seen = 0;
    while seen < 300 {
        let resp = w.next().await.expect("stream").expect("watch response");
        seen += resp.events.len();
    }
    assert_eq!(seen, 300);
}

/// Collect the events of a watch until revision `until`.
async fn collect_until(
    mut w: impl futures::Stream<Item = rkube_store::Result<pb::WatchResponse>> + Unpin,
    until: i64,
) -> Vec<(i64, pb::Event)> {
    let mut out = Vec::new();
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch stalled")
            .expect("stream ended")
            .expect("watch error");
        for ev in resp.events {
            let rev = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
            out.push((rev, ev));
        }
        if out.last().is_some_and(|(r, _)| *r >= until) {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_watch_on_every_replica_yields_identical_events_and_resumes_without_gaps() {
    let c = StoreCluster::start(3).await;
    let leader = c.leader().await;
    let (key, end) = prefix("/w/");
    let req = pb::WatchRequest {
        key: key.clone(),
        range_end: end.clone(),
        start_revision: 1,
        ..Default::default()
    };
    let watches: Vec<_> = c
        .ids()
        .into_iter()
        .map(|id| c.store(id).watch(req.clone()))
        .collect();
    let mut last = 0;
    for i in 0..60 {
        let id = c.ids()[i % 3];
        let r = match i % 4 {
            3 => {
                c.store(id)
                    .delete_range(pb::DeleteRangeRequest {
                        key: format!("/w/{}", i - 1).into_bytes(),
                        ..Default::default()
                    })
                    .await
                    .expect("delete")
                    .header
            }
            _ => {
                c.store(id)
                    .put(put(&format!("/w/{i}"), &i.to_string()))
                    .await
                    .expect("put")
                    .header
            }
        };
        last = r.expect("header").revision;
        // Writes outside the watched prefix must not appear.
        c.store(leader).put(put("/other", "x")).await.expect("put");
    }
    let mut sequences = Vec::new();
    for w in watches {
        sequences.push(collect_until(w, last).await);
    }
    let revs: Vec<i64> = sequences[0].iter().map(|(r, _)| *r).collect();
    assert_eq!(revs.len(), 60);
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revision order without duplicates"
    );
    assert!(
        sequences.iter().all(|s| *s == sequences[0]),
        "all replicas deliver identical events"
    );
    assert!(sequences[0]
        .iter()
        .filter(|(_, e)| e.r#type == pb::event::EventType::Delete as i32)
        .all(|(_, e)| e.prev_kv.is_some()));

    // Resume on another replica from the middle: exactly the rest, no gap, no duplicate.
    let cut = revs[29];
    let resumed = collect_until(
        c.store(c.ids()[2]).watch(pb::WatchRequest {
            start_revision: cut + 1,
            ..req
        }),
        last,
    )
    .await;
    assert_eq!(resumed, sequences[0][30..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_fails_with_relist() {
    let c = StoreCluster::start(3).await;
    let leader = c.leader().await;
    let mut rev = 0;
    for i in 0..10 {
        rev = c
            .store(leader)
            .put(put("/c", &i.to_string()))
            .await
            .expect("put")
            .header
            .expect("header")
            .revision;
    }
    c.store(leader).compact(rev - 2).await.expect("compact");
    for id in c.ids() {
        let follower_caught_up = || async {
            (c.store(id).status(false).await.ok()?.compact_revision == rev - 2).then_some(())
        };
        wait_until(
            Duration::from_secs(5),
            "every replica to apply the compaction",
            follower_caught_up,
        )
        .await;
        let mut w = c.store(id).watch(pb::WatchRequest {
            key: b"/c".to_vec(),
            start_revision: 1,
            ..Default::default()
        });
        let err = w
            .next()
            .await
            .expect("an error item")
            .expect_err("compacted");
        assert!(
            err.to_string()
                .contains(&format!("compacted at {}", rev - 2))
                && err.to_string().contains("relist"),
            "{err}"
        );
        // From the compaction point on, history is still there.
        let mut ok = c.store(id).watch(pb::WatchRequest {
            key: b"/c".to_vec(),
            start_revision: rev - 2,
            ..Default::default()
        });
        let first = ok.next().await.expect("item").expect("events");
        assert_eq!(
            first.events[0].kv.as_ref().expect("kv").mod_revision,
            rev - 2
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_on_a_follower_sees_the_write_acknowledged_just_before() {
    let c = StoreCluster::start(3).await;
    let leader = c.leader().await;
    let followers: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
    for i in 0..100 {
        let v = i.to_string();
        c.store(leader).put(put("/lin", &v)).await.expect("put");
        let got = c
            .store(followers[i % 2])
            .range(get("/lin"))
            .await
            .expect("linearizable read");
        assert_eq!(
            value_of(&got).as_deref(),
            Some(v.as_str()),
            "stale read on follower at iteration {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_can_be_added_and_removed_through_any_replica() {
    let mut c = StoreCluster::start(3).await;
    c.add_replica(4).await;
    c.wait_voters(4).await;
    let leader = c.leader().await;
    c.store(leader).put(put("/m", "1")).await.expect("put");
    wait_until(Duration::from_secs(5), "node 4 to replicate", || async {
        read_serializable(&c, 4, "/m").await
    })
    .await;
    // Remove a voter that is not the leader, through a follower (forwarded to the leader).
    let victim = c
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != 4)
        .expect("victim");
    let via = c
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != victim)
        .expect("via");
    let members = c.store(via).remove_member(victim).await.expect("remove");
    assert!(!members.iter().any(|m| m.id == victim));
    c.kill(victim);
    c.store(leader)
        .put(put("/m", "2"))
        .await
        .expect("writes continue with 3 voters");
    // A learner-only member does not vote until promoted.
    let members = c.store(leader).members().0;
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3);
    let err = c
        .store(leader)
        .remove_member(99)
        .await
        .expect_err("not a member");
    assert!(err.to_string().contains("not a member"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_replicates_without_voting_until_promoted() {
    let mut c = StoreCluster::start(3).await;
    c.add_learner(4).await;
    let leader = c.leader().await;
    let member = |c: &StoreCluster| {
        c.store(leader)
            .members()
            .0
            .into_iter()
            .find(|m| m.id == 4)
            .expect("member 4")
    };
    assert!(!member(&c).voter, "joined as a learner");
    c.store(leader).put(put("/learn", "1")).await.expect("put");
    wait_until(
        Duration::from_secs(5),
        "the learner to replicate",
        || async { read_serializable(&c, 4, "/learn").await },
    )
    .await;
    // Promote through a follower (forwarded to the leader).
    let via = c
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != 4)
        .expect("follower");
    let members = c.store(via).promote_member(4).await.expect("promote");
    assert!(members.iter().any(|m| m.id == 4 && m.voter));
    assert_eq!(
        c.store(leader)
            .members()
            .0
            .iter()
            .filter(|m| m.voter)
            .count(),
        4
    );
}

/// A watch on a replica cut off from the cluster would silently stop receiving events while the
/// majority goes on: it ends with a retryable error instead, even on the isolated old leader
/// (which openraft lets go on believing it leads), while watches on the majority keep
/// delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_on_a_cut_off_replica_end_so_clients_resume_elsewhere() {
    let c = StoreCluster::start(3).await;
    let (from, to) = prefix("/cut/");
    let req = pb::WatchRequest {
        key: from,
        range_end: to,
        ..Default::default()
    };
    let old_leader = c.leader().await;
    let majority: Vec<u64> = c.ids().into_iter().filter(|&id| id != old_leader).collect();
    let mut on_leader = c.store(old_leader).watch(req.clone());
    let mut on_majority = c.store(majority[0]).watch(req.clone());
    c.isolate(old_leader);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match on_leader.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e,
                None => panic!("the watch ended without an error"),
            }
        }
    })
    .await
    .expect("the watch on the isolated leader ended within 30 s");
    assert!(ended.is_retryable(), "a retryable error: {ended}");
    assert!(ended.to_string().contains("cut off"), "{ended}");
    // The majority elected a leader and its watches see new writes.
    wait_until(
        Duration::from_secs(20),
        "a write on the majority",
        || async { c.store(majority[1]).put(put("/cut/a", "1")).await.ok() },
    )
    .await;
    let delivered = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let resp = on_majority.next().await.expect("stream").expect("response");
            if !resp.events.is_empty() {
                return resp.events.len();
            }
        }
    })
    .await
    .expect("the majority's watch delivers");
    assert_eq!(delivered, 1);
    c.heal();
    c.converged().await;
}
