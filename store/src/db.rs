//! The RocksDB database that holds both the Raft log and the MVCC state machine, one column
//! family per concern. RocksDB types never leave the `store` crate.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::error::{Error, Result};

/// Raft log entries: index (u64 BE) -> encoded entry.
pub const CF_LOGS: &str = "logs";
/// Raft metadata: vote, committed, last purged log id.
pub const CF_RAFT: &str = "raft";
/// Current state: user key -> record.
pub const CF_KV: &str = "kv";
/// Versions: escaped key + revision -> record or tombstone (for reads at past revisions).
pub const CF_KV_REV: &str = "kv_rev";
/// Event history: revision + sub-index -> event (for watch replay).
pub const CF_HISTORY: &str = "history";
/// State-machine metadata: last applied log id, membership, revision, compact revision.
pub const CF_META: &str = "meta";

/// The column families a snapshot carries (the whole state machine).
pub const STATE_MACHINE_CFS: [&str; 4] = [CF_KV, CF_KV_REV, CF_HISTORY, CF_META];

const ALL_CFS: [&str; 6] = [CF_LOGS, CF_RAFT, CF_KV, CF_KV_REV, CF_HISTORY, CF_META];

/// A shared handle on the replica's RocksDB.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
}

impl Db {
    /// Open (or create) the database in `path`. A database that cannot be opened (corrupt, locked
    /// by another process, unwritable) is an error naming the path; it is never reset.
    pub fn open(path: &Path) -> Result<Db> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        // Acknowledged writes are synced; keep the WAL as the source of truth for the log.
        opts.set_max_total_wal_size(256 << 20);
        opts.increase_parallelism(2);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            Error::Storage(format!(
                "cannot open the store database in {}: {e}",
                path.display()
            ))
        })?;
        Ok(Db {
            inner: Arc::new(db),
        })
    }

    pub fn cf(&self, name: &str) -> &ColumnFamily {
        // The column families are created at open; a missing one is a programming error.
        self.inner
            .cf_handle(name)
            .expect("column family created at open")
    }

    pub fn raw(&self) -> &DB {
        &self.inner
    }

    /// Write a batch, fsyncing the WAL before returning when `sync`.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.inner
            .write_opt(batch, &opts)
            .map_err(|e| Error::Storage(format!("write failed: {e}")))
    }

    /// Fsync the WAL: every write made so far is durable when this returns.
    pub fn sync_wal(&self) -> Result<()> {
        self.inner
            .flush_wal(true)
            .map_err(|e| Error::Storage(format!("wal sync failed: {e}")))
    }

    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner
            .get_cf(self.cf(cf), key)
            .map_err(|e| Error::Storage(format!("read of {cf} failed: {e}")))
    }
}

/// Encode a value for storage.
pub fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing our own plain data types into a Vec cannot fail.
    postcard::to_stdvec(v).expect("postcard encoding of store types")
}

/// Decode a stored value; failure means corruption.
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Storage(format!("corrupt {what}: {e}")))
}
