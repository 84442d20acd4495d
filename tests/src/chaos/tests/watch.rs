//! Watch streams: duplicates, gaps, reordering, replays after a resume and diverging replicas are
//! flagged; identical streams, resumed or not, pass.

use super::generate::{generate, Params};
use super::*;
use crate::chaos::{check_watches, WatchAnomalyKind, WatchLog, WatchRecord};

use EventType::{Added, Deleted, Modified};

/// A key's life: created at rv 2, modified at 4 and 6, deleted at 7; revisions 3 and 5 changed
/// keys in other namespaces.
fn changes() -> Vec<WatchEvent> {
    vec![
        event(Added, "ns/a", 2, "v1"),
        event(Modified, "ns/a", 4, "v2"),
        event(Modified, "ns/a", 6, "v3"),
        event(Deleted, "ns/a", 7, "v3"),
    ]
}

fn stream(name: &str, events: &[WatchEvent]) -> WatchLog {
    let mut log = WatchLog::new(name, "ns/", 0);
    for e in events {
        log.event(e.clone());
    }
    log
}

fn kinds(history: &History, watches: &[WatchLog]) -> Vec<(String, WatchAnomalyKind, u64)> {
    let report = check_watches(history, watches);
    report
        .anomalies
        .into_iter()
        .map(|a| (a.watch, a.kind, a.rv))
        .collect()
}

fn one(name: &str, kind: WatchAnomalyKind, rv: u64) -> Vec<(String, WatchAnomalyKind, u64)> {
    vec![(name.to_string(), kind, rv)]
}

#[test]
fn identical_streams_pass() {
    let all = changes();
    let watches = [stream("r1", &all), stream("r2", &all), stream("r3", &all)];
    let report = check_watches(&History::new(), &watches);
    assert_eq!(report.anomalies, []);
    assert_eq!((report.streams, report.events), (3, 12));
}

#[test]
fn duplicated_event_is_flagged() {
    let all = changes();
    let mut twice = all.clone();
    twice.insert(2, all[1].clone());
    let watches = [stream("r1", &all), stream("r2", &twice)];
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r2", WatchAnomalyKind::Duplicate, 4)
    );
}

#[test]
fn missing_revision_is_flagged_as_a_gap() {
    let all = changes();
    let mut missing = all.clone();
    missing.remove(1);
    let watches = [stream("r1", &all), stream("r2", &missing)];
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r2", WatchAnomalyKind::Gap, 4)
    );
}

#[test]
fn out_of_order_events_are_flagged() {
    let all = changes();
    let mut swapped = all.clone();
    swapped.swap(1, 2);
    let watches = [stream("r1", &all), stream("r2", &swapped)];
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r2", WatchAnomalyKind::OutOfOrder, 4)
    );
}

#[test]
fn diverging_replicas_are_flagged() {
    let all = changes();
    let mut other = all.clone();
    other[2].value = Some("v3-elsewhere".to_string());
    let watches = [stream("r1", &all), stream("r2", &other)];
    let report = check_watches(&History::new(), &watches);
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r2", WatchAnomalyKind::Diverged, 6)
    );
    assert!(
        report.anomalies[0].description.contains("watch r1"),
        "{}",
        report.anomalies[0]
    );
}

#[test]
fn event_contradicting_an_acknowledged_write_is_flagged() {
    let h = history(vec![op(1, 0, 10, create("ns/a", "v1"), written(2))]);
    let watches = [stream("r1", &[event(Added, "ns/a", 2, "v0")])];
    assert_eq!(
        kinds(&h, &watches),
        one("r1", WatchAnomalyKind::Diverged, 2)
    );
}

#[test]
fn acknowledged_write_missing_from_every_stream_is_a_gap() {
    let h = history(vec![
        op(1, 0, 10, create("ns/a", "v1"), written(2)),
        op(1, 20, 30, update("ns/a", 2, "v2"), written(4)),
        op(1, 40, 50, update("ns/a", 4, "v3"), written(6)),
        // Another namespace: not this watch's business.
        op(2, 20, 30, create("other/b", "b1"), written(3)),
    ]);
    let all = changes();
    let watches = [stream("r1", &[all[0].clone(), all[2].clone()])];
    assert_eq!(kinds(&h, &watches), one("r1", WatchAnomalyKind::Gap, 4));
}

#[test]
fn resumed_watch_without_gaps_passes() {
    let all = changes();
    let mut resumed = WatchLog::new("r2", "ns/", 0);
    resumed.event(all[0].clone());
    resumed.event(all[1].clone());
    resumed.resumed(4);
    resumed.event(all[2].clone());
    resumed.event(all[3].clone());
    let watches = [stream("r1", &all), resumed];
    assert_eq!(kinds(&History::new(), &watches), []);
}

#[test]
fn events_replayed_after_a_resume_are_flagged() {
    let all = changes();
    let mut replayed = WatchLog::new("r2", "ns/", 0);
    replayed.event(all[0].clone());
    replayed.event(all[1].clone());
    replayed.resumed(4);
    replayed.event(all[1].clone());
    replayed.event(all[2].clone());
    replayed.event(all[3].clone());
    let watches = [stream("r1", &all), replayed];
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r2", WatchAnomalyKind::Duplicate, 4)
    );

    // A watch started at rv 4 that delivers rv 4 again replays an event it was not asked for.
    let mut late = WatchLog::new("r3", "ns/", 4);
    late.event(all[1].clone());
    late.event(all[2].clone());
    late.event(all[3].clone());
    let watches = [stream("r1", &all), late];
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r3", WatchAnomalyKind::Replayed, 4)
    );
}

#[test]
fn resumed_watch_that_loses_an_event_is_flagged() {
    let all = changes();
    let mut resumed = WatchLog::new("r2", "ns/", 0);
    resumed.event(all[0].clone());
    resumed.event(all[1].clone());
    resumed.resumed(4);
    resumed.event(all[3].clone());
    let watches = [stream("r1", &all), resumed];
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r2", WatchAnomalyKind::Gap, 6)
    );
}

#[test]
fn streams_are_compared_only_on_the_revisions_they_cover() {
    let all = changes();
    // r2 started at rv 4 and stopped after rv 6, and skipped rv 2 ..= 4 legitimately.
    let mut late = WatchLog::new("r2", "ns/", 3);
    late.resumed(4);
    late.event(all[2].clone());
    let watches = [stream("r1", &all), late];
    assert_eq!(kinds(&History::new(), &watches), []);

    // Claiming to have drained up to rv 7 makes the missing deletion a gap.
    let mut drained = WatchLog::new("r2", "ns/", 4);
    drained.event(all[2].clone());
    drained.until = Some(7);
    let watches = [stream("r1", &all), drained];
    assert_eq!(
        kinds(&History::new(), &watches),
        one("r2", WatchAnomalyKind::Gap, 7)
    );
}

#[test]
fn generated_streams_with_resumes_match_the_history() {
    let run = generate(&Params {
        seed: 5,
        clients: 4,
        ops_per_client: 300,
        keys: 10,
        unknown_percent: 5,
    });
    let mut watches = Vec::new();
    for (replica, every) in [("r1", 0), ("r2", 7), ("r3", 31)] {
        let mut log = WatchLog::new(replica, "ns/", 0);
        for (i, e) in run.events.iter().enumerate() {
            if every > 0 && i % every == every - 1 {
                log.resumed(run.events[i - 1].rv);
            }
            log.event(e.clone());
        }
        watches.push(log);
    }
    assert_eq!(check_watches(&run.history, &watches).anomalies, []);

    watches[1]
        .records
        .retain(|r| !matches!(r, WatchRecord::Event(e) if e.rv == run.events[100].rv));
    let found = kinds(&run.history, &watches);
    assert_eq!(found, one("r2", WatchAnomalyKind::Gap, run.events[100].rv));
}
