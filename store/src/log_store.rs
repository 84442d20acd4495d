//! The Raft log and vote in RocksDB (openraft's `RaftLogStorage`): every append, vote and
//! truncation is fsynced before it is acknowledged.
// openraft's traits fix the (large) `StorageError` type; boxing it here would only add copies.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{decode, encode, Db, CF_LOGS, CF_RAFT};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The log store; cheap to clone (a handle on the shared database).
#[derive(Clone)]
pub struct LogStore {
    db: Db,
}

fn idx(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn storage_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

impl LogStore {
    pub fn new(db: Db) -> LogStore {
        LogStore { db }
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self
            .db
            .get(CF_RAFT, key)
            .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Read, e))?
        {
            Some(b) => decode(std::str::from_utf8(key).unwrap_or("raft meta"), &b)
                .map(Some)
                .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Read, e)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        v: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.db.cf(CF_RAFT), key, encode(v));
        self.db
            .write(b, sync)
            .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut it = self
            .db
            .raw()
            .iterator_cf(self.db.cf(CF_LOGS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) =
                    item.map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let e: Entry = decode("log entry", &v)
                    .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(e.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let from = idx(start);
        let mut out = Vec::new();
        for item in self.db.raw().iterator_cf(
            self.db.cf(CF_LOGS),
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let i = u64::from_be_bytes(k.as_ref().try_into().expect("8-byte log index"));
            if !range.contains(&i) {
                break;
            }
            out.push(decode("log entry", &v).map_err(|e| {
                storage_err(
                    ErrorSubject::Log(openraft::LogId::default()),
                    ErrorVerb::Read,
                    e,
                )
            })?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let db = self.clone();
        let vote = *vote;
        tokio::task::spawn_blocking(move || db.put_meta(KEY_VOTE, &vote, true))
            .await
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, e))?
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: the committed index is an optimisation for restart, recomputed if lost.
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(self.db.cf(CF_LOGS), idx(e.log_id.index), encode(&e));
        }
        let db = self.db.clone();
        let res = tokio::task::spawn_blocking(move || db.write(batch, true))
            .await
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot persist raft log entries; stopping this replica");
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(storage_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut b = WriteBatch::default();
        b.delete_range_cf(self.db.cf(CF_LOGS), idx(log_id.index), idx(u64::MAX));
        self.db
            .write(b, true)
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.db.cf(CF_RAFT), KEY_LAST_PURGED, encode(&log_id));
        b.delete_range_cf(self.db.cf(CF_LOGS), idx(0), idx(log_id.index + 1));
        self.db
            .write(b, true)
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
