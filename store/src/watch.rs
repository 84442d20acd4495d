//! The watch hub: fans applied events out to watchers, and serves each watch from the replica's
//! own history first, then live, switching over without gaps or duplicates.
//!
//! # Correctness
//! A watcher tracks `next`, the first revision it has not delivered. Live batches carry the
//! revision range they cover; a batch that starts after `next` (the watcher lagged, or the replica
//! installed a snapshot) is preceded by a replay of `[next, batch start)` from the history column
//! family, and anything below `next` is skipped. Events therefore arrive in revision order, with
//! no gaps and no duplicates, and a client resumes by watching from its last revision + 1.

use std::sync::Arc;
use std::time::Duration;

use rkube_proto::store as pb;
use tokio::sync::{broadcast, mpsc, watch};

use crate::db::Db;
use crate::encoding::KeyRange;
use crate::error::{Error, Result};
use crate::mvcc;

/// The events of one apply call: every revision in `(from_revision - 1, to_revision]`.
#[derive(Debug)]
pub struct AppliedBatch {
    pub from_revision: i64,
    pub to_revision: i64,
    pub events: Vec<(i64, pb::Event)>,
}

/// Publishes applied batches and the applied revision.
#[derive(Clone)]
pub struct WatchHub {
    tx: broadcast::Sender<Arc<AppliedBatch>>,
    revision: watch::Sender<i64>,
}

/// Most events put in one watch response (a revision is never split across responses).
const MAX_EVENTS_PER_RESPONSE: usize = 1000;

impl WatchHub {
    pub fn new(revision: i64) -> WatchHub {
        let (tx, _) = broadcast::channel(1024);
        let (revision, _) = watch::channel(revision);
        WatchHub { tx, revision }
    }

    /// Announce what an apply call made durable. Called after the write is synced.
    ///
    /// The applied revision moves before the batch is sent, so a watcher that has delivered a
    /// batch always sees an applied revision at least as high (its progress never goes back).
    pub fn publish(&self, batch: AppliedBatch) {
        let to = batch.to_revision;
        self.revision.send_if_modified(|r| {
            let changed = *r != to;
            *r = to;
            changed
        });
        if batch.from_revision <= batch.to_revision {
            let _ = self.tx.send(Arc::new(batch));
        }
    }

    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Wait until the applied revision reaches `rev`, at most `timeout`.
    pub async fn wait_for_revision(&self, rev: i64, timeout: Duration) -> Result<()> {
        let mut rx = self.revision.subscribe();
        let outcome = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= rev))
            .await
            .map(|r| r.is_ok());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Stopped("store closed".into())),
            Err(_) => Err(Error::FutureRevision {
                requested: rev,
                current: self.revision(),
            }),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<AppliedBatch>> {
        self.tx.subscribe()
    }
}

/// How often a watch checks that its replica is still in touch with the cluster.
const CUT_OFF_CHECK: Duration = Duration::from_secs(1);
/// A watch whose replica stayed cut off this long ends with `Unavailable` (longer than a
/// normal election, so failovers do not end watches).
const CUT_OFF_LIMIT: Duration = Duration::from_secs(5);

/// One watch: replay from history, then follow live batches. Responses go to `out` until the
/// receiver is dropped; an error ends the watch and is sent as the last item. `cut_off` says
/// whether the replica is cut off from the cluster right now: a watch on a replica cut off
/// for [`CUT_OFF_LIMIT`] ends with `Unavailable`, since it would silently stop receiving
/// events while the rest of the cluster goes on.
pub async fn run_watch(
    db: Db,
    hub: WatchHub,
    req: pb::WatchRequest,
    header: impl Fn(i64) -> pb::ResponseHeader + Send + 'static,
    cut_off: impl Fn() -> bool + Send + 'static,
    out: mpsc::Sender<Result<pb::WatchResponse>>,
) {
    if let Err(e) = watch_loop(&db, &hub, &req, &header, &cut_off, &out).await {
        let _ = out.send(Err(e)).await;
    }
}

async fn watch_loop(
    db: &Db,
    hub: &WatchHub,
    req: &pb::WatchRequest,
    header: &(impl Fn(i64) -> pb::ResponseHeader + Send),
    cut_off: &(impl Fn() -> bool + Send),
    out: &mpsc::Sender<Result<pb::WatchResponse>>,
) -> Result<()> {
    if req.key.is_empty() && req.range_end.is_empty() {
        return Err(Error::Invalid("watch.key must not be empty".into()));
    }
    let range = KeyRange::new(&req.key, &req.range_end);
    // Subscribe before reading the applied revision, so no batch falls between the two.
    let mut live = hub.subscribe();
    let applied = hub.revision();
    let mut next = if req.start_revision > 0 {
        req.start_revision
    } else {
        applied + 1
    };
    next = replay(db, &range, next, applied, header, out).await?;

    let mut progress = (req.progress_interval_ms > 0)
        .then(|| tokio::time::interval(Duration::from_millis(req.progress_interval_ms)));
    if let Some(p) = progress.as_mut() {
        p.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        p.reset();
    }
    let mut health = tokio::time::interval(CUT_OFF_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cut_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            batch = live.recv() => match batch {
                Ok(b) => {
                    if b.to_revision < next {
                        continue;
                    }
                    if b.from_revision > next {
                        next = replay(db, &range, next, b.from_revision - 1, header, out).await?;
                    }
                    let events: Vec<_> = b.events.iter()
                        .filter(|(rev, ev)| *rev >= next && ev.kv.as_ref().is_some_and(|kv| range.contains(&kv.key)))
                        .cloned()
                        .collect();
                    send_events(events, b.to_revision, header, out).await?;
                    next = b.to_revision + 1;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let applied = hub.revision();
                    next = replay(db, &range, next, applied, header, out).await?;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Error::Stopped("the replica is shutting down; resume the watch on another replica".into()));
                }
            },
            _ = async { progress.as_mut().expect("guarded").tick().await }, if progress.is_some() => {
                // Everything below `next` was delivered; a watch that starts in the future must
                // still not claim a revision the replica has not applied.
                let through = (next - 1).min(hub.revision());
                let resp = pb::WatchResponse { header: Some(header(through)), events: vec![], progress_notify: true };
                if out.send(Ok(resp)).await.is_err() {
                    return Ok(());
                }
            }
            _ = health.tick() => {
                if !cut_off() {
                    cut_since = None;
                } else if cut_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= CUT_OFF_LIMIT {
                    return Err(Error::Unavailable(format!(
                        "this replica has been cut off from the cluster's leader for {CUT_OFF_LIMIT:?}; resume the watch on another replica"
                    )));
                }
            }
            _ = out.closed() => return Ok(()),
        }
    }
}

/// Deliver history `[from, to]` and return the next revision to deliver (`to + 1`).
async fn replay(
    db: &Db,
    range: &KeyRange,
    from: i64,
    to: i64,
    header: &(impl Fn(i64) -> pb::ResponseHeader + Send),
    out: &mpsc::Sender<Result<pb::WatchResponse>>,
) -> Result<i64> {
    if from > to {
        return Ok(from);
    }
    let (db2, range2) = (db.clone(), range.clone());
    let events = tokio::task::spawn_blocking(move || mvcc::history(&db2, &range2, from, to))
        .await
        .map_err(|e| Error::Storage(format!("history read task failed: {e}")))??;
    send_events(events, to, header, out).await?;
    Ok(to + 1)
}

/// Send events (in revision order) in responses of bounded size, never splitting a revision.
async fn send_events(
    events: Vec<(i64, pb::Event)>,
    through: i64,
    header: &(impl Fn(i64) -> pb::ResponseHeader + Send),
    out: &mpsc::Sender<Result<pb::WatchResponse>>,
) -> Result<()> {
    let mut chunk: Vec<pb::Event> = Vec::new();
    let mut last_rev = 0;
    let mut iter = events.into_iter().peekable();
    while let Some((rev, ev)) = iter.next() {
        chunk.push(ev);
        last_rev = rev;
        let next_rev = iter.peek().map(|(r, _)| *r);
        if chunk.len() >= MAX_EVENTS_PER_RESPONSE && next_rev != Some(rev) {
            let resp = pb::WatchResponse {
                header: Some(header(rev)),
                events: std::mem::take(&mut chunk),
                progress_notify: false,
            };
            if out.send(Ok(resp)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let resp = pb::WatchResponse {
            header: Some(header(through.max(last_rev))),
            events: chunk,
            progress_notify: false,
        };
        let _ = out.send(Ok(resp)).await;
    }
    Ok(())
}
