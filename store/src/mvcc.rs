//! MVCC over RocksDB, like etcd: applying writes (put, delete, txn, compact) with one global
//! revision per committed write, and reading current or past revisions.
//!
//! # Correctness
//! - Every write that changes something consumes exactly one revision; revisions strictly
//!   increase by one; a transaction is one revision whatever it writes.
//! - Applying is deterministic: the result depends only on the state and the entry (never on
//!   clocks, randomness or on how entries are grouped into apply calls), so every replica ends
//!   in the same state.
//! - An entry's effects (data, events, revision, last-applied) go into one write batch.

use std::collections::BTreeMap;

use rkube_proto::store as pb;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::db::{decode, encode, Db, CF_HISTORY, CF_KV, CF_KV_REV, CF_META};
use crate::encoding::{escape_key, event_key, split_versioned_key, versioned_key, KeyRange};
use crate::error::{Error, Result};
use crate::types::{Op, OpResult};

/// Largest value accepted (Kubernetes objects are limited to 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;
/// Largest key accepted.
pub const MAX_KEY_BYTES: usize = 4096;
/// Most operations in one transaction (etcd's default).
pub const MAX_TXN_OPS: usize = 128;

pub(crate) const META_REVISION: &[u8] = b"revision";
pub(crate) const META_COMPACT: &[u8] = b"compact_revision";

/// A live key as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
}

impl Record {
    pub fn to_kv(&self, key: &[u8]) -> pb::KeyValue {
        pb::KeyValue {
            key: key.to_vec(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// One version of a key in the version column family.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum Version {
    Live(Record),
    Deleted,
}

/// The revision counters kept in the meta column family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revisions {
    pub current: i64,
    pub compacted: i64,
}

pub fn read_revisions(db: &Db) -> Result<Revisions> {
    let read = |k: &[u8]| -> Result<i64> {
        Ok(match db.get(CF_META, k)? {
            Some(v) => decode::<i64>("revision counter", &v)?,
            None => 0,
        })
    };
    Ok(Revisions {
        current: read(META_REVISION)?,
        compacted: read(META_COMPACT)?,
    })
}

/// Check a write request before it is proposed, so that malformed requests fail fast with a
/// message naming the field (apply checks the same rules again, deterministically).
pub fn validate_op(op: &Op) -> Result<()> {
    match op {
        Op::Put(p) => validate_put(p, "put"),
        Op::DeleteRange(d) => validate_delete(d, "delete_range"),
        Op::Txn(t) => validate_txn(t),
        Op::Compact(rev) if *rev <= 0 => Err(Error::Invalid(format!(
            "compaction revision must be positive, got {rev}"
        ))),
        Op::Compact(_) => Ok(()),
    }
}

fn validate_key(key: &[u8], field: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Invalid(format!("{field}.key must not be empty")));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Invalid(format!(
            "{field}.key is {} bytes, at most {MAX_KEY_BYTES} are accepted",
            key.len()
        )));
    }
    Ok(())
}

fn validate_put(p: &pb::PutRequest, field: &str) -> Result<()> {
    validate_key(&p.key, field)?;
    if p.value.len() > MAX_VALUE_BYTES {
        return Err(Error::Invalid(format!(
            "{field}.value is {} bytes, at most {MAX_VALUE_BYTES} (1.5 MiB) are accepted",
            p.value.len()
        )));
    }
    validate_precondition(p.precondition.as_ref(), field)
}

fn validate_precondition(p: Option<&pb::Precondition>, field: &str) -> Result<()> {
    if let Some(pb::Precondition { condition: None }) = p {
        return Err(Error::Invalid(format!(
            "{field}.precondition is empty: set must_not_exist or mod_revision"
        )));
    }
    Ok(())
}

fn validate_delete(d: &pb::DeleteRangeRequest, field: &str) -> Result<()> {
    validate_key(&d.key, field)?;
    if d.precondition.is_some() && !d.range_end.is_empty() {
        return Err(Error::Invalid(format!(
            "{field}.precondition is only allowed when deleting a single key (range_end empty)"
        )));
    }
    validate_precondition(d.precondition.as_ref(), field)
}

fn validate_txn(t: &pb::TxnRequest) -> Result<()> {
    for (branch, ops) in [("success", &t.success), ("failure", &t.failure)] {
        if ops.len() > MAX_TXN_OPS {
            return Err(Error::Invalid(format!(
                "txn.{branch} has {} operations, at most {MAX_TXN_OPS} are accepted",
                ops.len()
            )));
        }
        let mut put_keys = std::collections::HashSet::new();
        for (i, op) in ops.iter().enumerate() {
            let field = format!("txn.{branch}[{i}]");
            match &op.request {
                None => return Err(Error::Invalid(format!("{field} has no operation"))),
                Some(pb::request_op::Request::Put(p)) => {
                    validate_put(p, &field)?;
                    if !put_keys.insert(p.key.clone()) {
                        return Err(Error::Invalid(format!(
                            "{field}: duplicate key given in txn request"
                        )));
                    }
                }
                Some(pb::request_op::Request::DeleteRange(d)) => validate_delete(d, &field)?,
                Some(pb::request_op::Request::Range(r)) => validate_key(&r.key, &field)?,
            }
        }
    }
    for (i, c) in t.compare.iter().enumerate() {
        validate_key(&c.key, &format!("txn.compare[{i}]"))?;
    }
    Ok(())
}

/// Applies the ops of one Raft entry to one write batch.
pub struct Applier<'a> {
    db: &'a Db,
    batch: WriteBatch,
    /// Current-state changes made by this entry so far (None = deleted).
    overlay: BTreeMap<Vec<u8>, Option<Record>>,
    /// The revision before this entry: everything at or below it is in the database.
    base_revision: i64,
    revs: Revisions,
    /// The events written, in revision order.
    pub events: Vec<pb::Event>,
    /// The revisions of `events`, parallel to it.
    pub event_revisions: Vec<i64>,
}

impl<'a> Applier<'a> {
    pub fn new(db: &'a Db, revs: Revisions) -> Applier<'a> {
        Applier {
            db,
            batch: WriteBatch::default(),
            overlay: BTreeMap::new(),
            base_revision: revs.current,
            revs,
            events: Vec::new(),
            event_revisions: Vec::new(),
        }
    }

    pub fn revisions(&self) -> Revisions {
        self.revs
    }

    /// The batch with the revision counters written; the caller adds last-applied and writes it.
    pub fn finish(mut self) -> (WriteBatch, Vec<(i64, pb::Event)>, Revisions) {
        let meta = self.db.cf(CF_META);
        self.batch
            .put_cf(meta, META_REVISION, encode(&self.revs.current));
        self.batch
            .put_cf(meta, META_COMPACT, encode(&self.revs.compacted));
        let events = self.event_revisions.into_iter().zip(self.events).collect();
        (self.batch, events, self.revs)
    }

    /// Apply one op committed in `term`.
    pub fn apply(&mut self, op: &Op, term: u64) -> Result<OpResult> {
        if let Some(stamped) = op.fence() {
            if stamped != term {
                return Err(Error::Fenced {
                    stamped,
                    committed: term,
                });
            }
        }
        validate_op(op)?;
        match op {
            Op::Put(p) => {
                let rev = self.revs.current + 1;
                let resp = self.put(p, rev, 0)?;
                if resp.succeeded {
                    self.revs.current = rev;
                }
                Ok(OpResult::Put(pb::PutResponse {
                    header: Some(self.header()),
                    ..resp
                }))
            }
            Op::DeleteRange(d) => {
                let rev = self.revs.current + 1;
                let mut sub = 0;
                let resp = self.delete(d, rev, &mut sub)?;
                if resp.deleted > 0 {
                    self.revs.current = rev;
                }
                Ok(OpResult::DeleteRange(pb::DeleteRangeResponse {
                    header: Some(self.header()),
                    ..resp
                }))
            }
            Op::Txn(t) => self.txn(t).map(OpResult::Txn),
            Op::Compact(rev) => self.compact(*rev).map(OpResult::Compact),
        }
    }

    fn header(&self) -> pb::ResponseHeader {
        pb::ResponseHeader {
            revision: self.revs.current,
            ..Default::default()
        }
    }

    fn current(&self, key: &[u8]) -> Result<Option<Record>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        match self.db.get(CF_KV, key)? {
            Some(b) => Ok(Some(decode("record", &b)?)),
            None => Ok(None),
        }
    }

    /// Current live keys in the range: the database merged with this entry's overlay.
    fn current_range(&self, range: &KeyRange) -> Result<Vec<(Vec<u8>, Record)>> {
        // `BTreeMap::range` panics when the start is above the end; such a range is empty.
        if range.is_empty() {
            return Ok(Vec::new());
        }
        if range.single {
            return Ok(self
                .current(&range.start)?
                .map(|r| (range.start.clone(), r))
                .into_iter()
                .collect());
        }
        let mut merged: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        scan_current(self.db, None, range, |k, r| {
            merged.insert(k.to_vec(), r);
            true
        })?;
        let upper = match &range.end {
            Some(e) => std::ops::Bound::Excluded(e.clone()),
            None => std::ops::Bound::Unbounded,
        };
        for (k, v) in self
            .overlay
            .range((std::ops::Bound::Included(range.start.clone()), upper))
        {
            match v {
                Some(r) => merged.insert(k.clone(), r.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn precondition_holds(cond: Option<&pb::Precondition>, cur: Option<&Record>) -> bool {
        use pb::precondition::Condition;
        match cond.and_then(|c| c.condition.as_ref()) {
            None => true,
            Some(Condition::MustNotExist(_)) => cur.is_none(),
            Some(Condition::ModRevision(m)) => cur.is_some_and(|r| r.mod_revision == *m),
        }
    }

    fn record_event(&mut self, rev: i64, sub: u32, event: pb::Event) {
        self.batch
            .put_cf(self.db.cf(CF_HISTORY), event_key(rev, sub), encode(&event));
        self.event_revisions.push(rev);
        self.events.push(event);
    }

    fn put(&mut self, p: &pb::PutRequest, rev: i64, sub: u32) -> Result<pb::PutResponse> {
        let cur = self.current(&p.key)?;
        if !Self::precondition_holds(p.precondition.as_ref(), cur.as_ref()) {
            return Ok(pb::PutResponse {
                header: None,
                succeeded: false,
                prev_kv: cur.map(|r| r.to_kv(&p.key)),
            });
        }
        let rec = Record {
            create_revision: cur.as_ref().map_or(rev, |c| c.create_revision),
            mod_revision: rev,
            version: cur.as_ref().map_or(1, |c| c.version + 1),
            value: p.value.clone(),
        };
        let prev_kv = cur.map(|r| r.to_kv(&p.key));
        self.batch.put_cf(self.db.cf(CF_KV), &p.key, encode(&rec));
        self.batch.put_cf(
            self.db.cf(CF_KV_REV),
            versioned_key(&p.key, rev),
            encode(&Version::Live(rec.clone())),
        );
        self.record_event(
            rev,
            sub,
            pb::Event {
                r#type: pb::event::EventType::Put as i32,
                kv: Some(rec.to_kv(&p.key)),
                prev_kv: prev_kv.clone(),
            },
        );
        self.overlay.insert(p.key.clone(), Some(rec));
        Ok(pb::PutResponse {
            header: None,
            succeeded: true,
            prev_kv,
        })
    }

    fn delete(
        &mut self,
        d: &pb::DeleteRangeRequest,
        rev: i64,
        sub: &mut u32,
    ) -> Result<pb::DeleteRangeResponse> {
        let range = KeyRange::new(&d.key, &d.range_end);
        let victims = self.current_range(&range)?;
        if d.precondition.is_some()
            && !Self::precondition_holds(d.precondition.as_ref(), victims.first().map(|(_, r)| r))
        {
            return Ok(pb::DeleteRangeResponse {
                header: None,
                succeeded: false,
                deleted: 0,
                prev_kvs: victims.iter().map(|(k, r)| r.to_kv(k)).collect(),
            });
        }
        let mut prev_kvs = Vec::with_capacity(victims.len());
        for (key, rec) in victims {
            let prev = rec.to_kv(&key);
            self.batch.delete_cf(self.db.cf(CF_KV), &key);
            self.batch.put_cf(
                self.db.cf(CF_KV_REV),
                versioned_key(&key, rev),
                encode(&Version::Deleted),
            );
            let tomb = pb::KeyValue {
                key: key.clone(),
                mod_revision: rev,
                ..Default::default()
            };
            self.record_event(
                rev,
                *sub,
                pb::Event {
                    r#type: pb::event::EventType::Delete as i32,
                    kv: Some(tomb),
                    prev_kv: Some(prev.clone()),
                },
            );
            *sub += 1;
            self.overlay.insert(key, None);
            prev_kvs.push(prev);
        }
        Ok(pb::DeleteRangeResponse {
            header: None,
            succeeded: true,
            deleted: prev_kvs.len() as i64,
            prev_kvs,
        })
    }

    fn compare_holds(&self, c: &pb::Compare) -> Result<bool> {
        use pb::compare::{Result as CompareResult, Target as CompareTarget, TargetUnion};
        let cur = self.current(&c.key)?;
        let target = CompareTarget::try_from(c.target)
            .map_err(|_| Error::Invalid(format!("compare.target {} is unknown", c.target)))?;
        let result = CompareResult::try_from(c.result)
            .map_err(|_| Error::Invalid(format!("compare.result {} is unknown", c.result)))?;
        let ord = match (target, &c.target_union) {
            (CompareTarget::Value, Some(TargetUnion::Value(v))) => match &cur {
                // etcd: a value compare against a missing key is false.
                None => return Ok(false),
                Some(r) => r.value.as_slice().cmp(v.as_slice()),
            },
            (CompareTarget::Version, Some(TargetUnion::Version(v))) => {
                cur.as_ref().map_or(0, |r| r.version).cmp(v)
            }
            (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => {
                cur.as_ref().map_or(0, |r| r.create_revision).cmp(v)
            }
            (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => {
                cur.as_ref().map_or(0, |r| r.mod_revision).cmp(v)
            }
            (t, _) => {
                return Err(Error::Invalid(format!(
                    "compare on {} needs target_union of the same kind",
                    t.as_str_name()
                )))
            }
        };
        use std::cmp::Ordering::*;
        Ok(match result {
            CompareResult::Equal => ord == Equal,
            CompareResult::NotEqual => ord != Equal,
            CompareResult::Greater => ord == Greater,
            CompareResult::Less => ord == Less,
        })
    }

    fn txn(&mut self, t: &pb::TxnRequest) -> Result<pb::TxnResponse> {
        let mut succeeded = true;
        for c in &t.compare {
            if !self.compare_holds(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &t.success } else { &t.failure };
        // Every error must come before the first write: a write already in the batch would be
        // committed without its revision being counted.
        for op in ops {
            if let Some(pb::request_op::Request::Range(r)) = &op.request {
                self.check_txn_read(r.revision)?;
            }
        }
        let rev = self.revs.current + 1;
        let mut sub = 0u32;
        let mut wrote = false;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            use pb::request_op::Request;
            let resp = match op.request.as_ref().expect("validated") {
                Request::Put(p) => {
                    let r = self.put(p, rev, sub)?;
                    if r.succeeded {
                        sub += 1;
                        wrote = true;
                    }
                    pb::response_op::Response::Put(r)
                }
                Request::DeleteRange(d) => {
                    let r = self.delete(d, rev, &mut sub)?;
                    wrote |= r.deleted > 0;
                    pb::response_op::Response::DeleteRange(r)
                }
                Request::Range(r) => pb::response_op::Response::Range(self.txn_range(r)?),
            };
            responses.push(pb::ResponseOp {
                response: Some(resp),
            });
        }
        if wrote {
            self.revs.current = rev;
        }
        Ok(pb::TxnResponse {
            header: Some(self.header()),
            succeeded,
            responses,
        })
    }

    /// Whether a range inside a transaction can read `revision`: the current one (0), or a past
    /// one that is entirely in the database and not compacted (etcd checks the same up front).
    fn check_txn_read(&self, revision: i64) -> Result<()> {
        if revision <= 0 || revision == self.revs.current {
            Ok(())
        } else if revision > self.revs.current {
            Err(Error::FutureRevision {
                requested: revision,
                current: self.revs.current,
            })
        } else if revision > self.base_revision {
            Err(Error::Invalid(format!(
                "range.revision {revision} was written earlier in the same batch; read it after the write is acknowledged"
            )))
        } else if revision < self.revs.compacted {
            Err(Error::Compacted {
                requested: revision,
                compacted: self.revs.compacted,
            })
        } else {
            Ok(())
        }
    }

    /// A range inside a transaction: the current state including this entry's earlier writes, or a
    /// past revision that is entirely in the database (checked by `check_txn_read`).
    fn txn_range(&self, r: &pb::RangeRequest) -> Result<pb::RangeResponse> {
        self.check_txn_read(r.revision)?;
        let range = KeyRange::new(&r.key, &r.range_end);
        if r.revision <= 0 || r.revision == self.revs.current {
            let rows = self.current_range(&range)?;
            Ok(shape_range(
                r,
                rows.len() as i64,
                rows.into_iter().take(limit_of(r)).collect(),
                self.revs.current,
            ))
        } else {
            range_at(self.db, None, r, self.revs)
        }
    }

    fn compact(&mut self, rev: i64) -> Result<pb::CompactionResponse> {
        if rev > self.revs.current {
            return Err(Error::FutureRevision {
                requested: rev,
                current: self.revs.current,
            });
        }
        if rev <= self.revs.compacted {
            return Err(Error::Compacted {
                requested: rev,
                compacted: self.revs.compacted,
            });
        }
        // History below `rev` goes; the state at `rev` stays readable.
        self.batch
            .delete_range_cf(self.db.cf(CF_HISTORY), event_key(0, 0), event_key(rev, 0));
        // Of each key's versions at or below `rev`, only the newest live one is still needed.
        let cf = self.db.cf(CF_KV_REV);
        let mut last: Option<(Vec<u8>, Vec<u8>, bool)> = None; // (user key, encoded, live)
        for item in self.db.raw().iterator_cf(cf, IteratorMode::Start) {
            let (k, v) =
                item.map_err(|e| Error::Storage(format!("compaction scan failed: {e}")))?;
            let Some((user_key, r)) = split_versioned_key(&k) else {
                return Err(Error::Storage("corrupt version key".into()));
            };
            if r > rev {
                continue;
            }
            let live = matches!(decode::<Version>("version", &v)?, Version::Live(_));
            if let Some((pk, penc, plive)) = last.take() {
                if pk == user_key || !plive {
                    // Superseded by a newer version at or below `rev`, or a tombstone at the end.
                    self.batch.delete_cf(cf, &penc);
                }
            }
            last = Some((user_key, k.to_vec(), live));
        }
        if let Some((_, penc, false)) = last {
            self.batch.delete_cf(cf, &penc);
        }
        self.revs.compacted = rev;
        Ok(pb::CompactionResponse {
            header: Some(self.header()),
        })
    }
}

fn limit_of(r: &pb::RangeRequest) -> usize {
    if r.limit > 0 {
        r.limit as usize
    } else {
        usize::MAX
    }
}

fn shape_range(
    r: &pb::RangeRequest,
    count: i64,
    rows: Vec<(Vec<u8>, Record)>,
    revision: i64,
) -> pb::RangeResponse {
    let more = count > rows.len() as i64;
    let kvs = if r.count_only {
        Vec::new()
    } else {
        rows.into_iter()
            .map(|(k, mut rec)| {
                if r.keys_only {
                    rec.value = Vec::new();
                }
                rec.to_kv(&k)
            })
            .collect()
    };
    pb::RangeResponse {
        header: Some(pb::ResponseHeader {
            revision,
            ..Default::default()
        }),
        kvs,
        more: more && !r.count_only,
        count,
    }
}

/// Iterate the current state over `range`, calling `f` until it returns false.
fn scan_current(
    db: &Db,
    snap: Option<&rocksdb::Snapshot<'_>>,
    range: &KeyRange,
    mut f: impl FnMut(&[u8], Record) -> bool,
) -> Result<()> {
    let mut opts = ReadOptions::default();
    if let Some(s) = snap {
        opts.set_snapshot(s);
    }
    if let Some(end) = &range.end {
        opts.set_iterate_upper_bound(end.clone());
    }
    let iter = db.raw().iterator_cf_opt(
        db.cf(CF_KV),
        opts,
        IteratorMode::From(&range.start, Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.map_err(|e| Error::Storage(format!("range scan failed: {e}")))?;
        if !f(&k, decode("record", &v)?) {
            break;
        }
    }
    Ok(())
}

/// Serve a range read from the database (outside apply), at the request's revision or the
/// current one, from one consistent RocksDB snapshot.
pub fn range(db: &Db, r: &pb::RangeRequest) -> Result<pb::RangeResponse> {
    let snap = db.raw().snapshot();
    let revs = {
        let read = |k: &[u8]| -> Result<i64> {
            match snap
                .get_cf(db.cf(CF_META), k)
                .map_err(|e| Error::Storage(e.to_string()))?
            {
                Some(v) => decode("revision counter", &v),
                None => Ok(0),
            }
        };
        Revisions {
            current: read(META_REVISION)?,
            compacted: read(META_COMPACT)?,
        }
    };
    range_at(db, Some(&snap), r, revs)
}

fn range_at(
    db: &Db,
    snap: Option<&rocksdb::Snapshot<'_>>,
    r: &pb::RangeRequest,
    revs: Revisions,
) -> Result<pb::RangeResponse> {
    if r.key.is_empty() && r.range_end.is_empty() {
        return Err(Error::Invalid(
            "range.key must not be empty (use range_end \"\\0\" for every key)".into(),
        ));
    }
    let range = KeyRange::new(&r.key, &r.range_end);
    let at = if r.revision <= 0 {
        revs.current
    } else {
        r.revision
    };
    if at > revs.current {
        return Err(Error::FutureRevision {
            requested: at,
            current: revs.current,
        });
    }
    if at < revs.compacted {
        return Err(Error::Compacted {
            requested: at,
            compacted: revs.compacted,
        });
    }
    let limit = limit_of(r);
    let mut rows = Vec::new();
    let mut count = 0i64;
    if range.is_empty() {
        return Ok(shape_range(r, 0, rows, at));
    }
    if at == revs.current {
        scan_current(db, snap, &range, |k, rec| {
            count += 1;
            if rows.len() < limit {
                rows.push((k.to_vec(), rec));
            }
            true
        })?;
    } else {
        scan_versions(db, snap, &range, at, |k, rec| {
            count += 1;
            if rows.len() < limit {
                rows.push((k, rec));
            }
        })?;
    }
    Ok(shape_range(r, count, rows, at))
}

/// The live keys of `range` as they were at revision `at`.
fn scan_versions(
    db: &Db,
    snap: Option<&rocksdb::Snapshot<'_>>,
    range: &KeyRange,
    at: i64,
    mut f: impl FnMut(Vec<u8>, Record),
) -> Result<()> {
    let mut opts = ReadOptions::default();
    if let Some(s) = snap {
        opts.set_snapshot(s);
    }
    if let Some(end) = &range.end {
        opts.set_iterate_upper_bound(escape_key(end));
    }
    let start = escape_key(&range.start);
    let iter = db.raw().iterator_cf_opt(
        db.cf(CF_KV_REV),
        opts,
        IteratorMode::From(&start, Direction::Forward),
    );
    let mut best: Option<(Vec<u8>, Version)> = None;
    for item in iter {
        let (k, v) = item.map_err(|e| Error::Storage(format!("version scan failed: {e}")))?;
        let (key, rev) =
            split_versioned_key(&k).ok_or_else(|| Error::Storage("corrupt version key".into()))?;
        if best.as_ref().is_some_and(|(bk, _)| *bk != key) {
            if let Some((bk, Version::Live(rec))) = best.take() {
                f(bk, rec);
            }
            best = None;
        }
        if rev <= at {
            best = Some((key, decode("version", &v)?));
        }
    }
    if let Some((bk, Version::Live(rec))) = best {
        f(bk, rec);
    }
    Ok(())
}

/// The events with revision in `[from, to]` whose key is in `range`, in revision order.
pub fn history(db: &Db, range: &KeyRange, from: i64, to: i64) -> Result<Vec<(i64, pb::Event)>> {
    let mut out = Vec::new();
    if from > to {
        return Ok(out);
    }
    let snap = db.raw().snapshot();
    let compacted = match snap
        .get_cf(db.cf(CF_META), META_COMPACT)
        .map_err(|e| Error::Storage(e.to_string()))?
    {
        Some(v) => decode::<i64>("compact revision", &v)?,
        None => 0,
    };
    if from < compacted {
        return Err(Error::Compacted {
            requested: from,
            compacted,
        });
    }
    let mut opts = ReadOptions::default();
    opts.set_snapshot(&snap);
    opts.set_iterate_upper_bound(event_key(to + 1, 0).to_vec());
    let start = event_key(from, 0);
    let iter = db.raw().iterator_cf_opt(
        db.cf(CF_HISTORY),
        opts,
        IteratorMode::From(&start, Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.map_err(|e| Error::Storage(format!("history scan failed: {e}")))?;
        let ev: pb::Event = decode("event", &v)?;
        if ev.kv.as_ref().is_some_and(|kv| range.contains(&kv.key)) {
            out.push((crate::encoding::event_key_revision(&k), ev));
        }
    }
    Ok(out)
}

/// SHA-256 over every live key with its metadata, and the revision it reflects.
pub fn content_hash(db: &Db) -> Result<(String, i64)> {
    use sha2::Digest;
    let snap = db.raw().snapshot();
    let rev = match snap
        .get_cf(db.cf(CF_META), META_REVISION)
        .map_err(|e| Error::Storage(e.to_string()))?
    {
        Some(v) => decode::<i64>("revision", &v)?,
        None => 0,
    };
    let mut h = sha2::Sha256::new();
    let everything = KeyRange {
        start: Vec::new(),
        end: None,
        single: false,
    };
    scan_current(db, Some(&snap), &everything, |k, r| {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        h.update(r.create_revision.to_be_bytes());
        h.update(r.mod_revision.to_be_bytes());
        h.update(r.version.to_be_bytes());
        h.update((r.value.len() as u64).to_be_bytes());
        h.update(&r.value);
        true
    })?;
    Ok((hex::encode(h.finalize()), rev))
}
