//! The RocksDB database that holds both the Raft log and the MVCC state machine, one column
//! family per concern. RocksDB types never leave the `store` crate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Set on the first failed write or sync. RocksDB must not be written again after a failed
    /// WAL write (it cannot tell what reached the disk), so the replica fails every later write
    /// and stops instead.
    failed: Arc<AtomicBool>,
    /// Writes are refused (and the replica stops) when the file system holding the database has
    /// less free space than this; 0 disables the check.
    reserve_bytes: u64,
    path: PathBuf,
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
        opts.set_max_total_wal_size(64 << 20);
        opts.increase_parallelism(2);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf = Options::default();
            // Small memtables keep a flush's disk need well below the free-space reserve.
            cf.set_write_buffer_size(32 << 20);
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            Error::Storage(format!(
                "cannot open the store database in {}: {e}",
                path.display()
            ))
        })?;
        Ok(Db {
            inner: Arc::new(db),
            failed: Arc::new(AtomicBool::new(false)),
            reserve_bytes: 0,
            path: path.to_path_buf(),
        })
    }

    /// Keep at least `bytes` free on the database's file system: a write that finds less stops
    /// the replica with a clear message before RocksDB runs into a full disk (after a failed WAL
    /// write RocksDB cannot continue safely).
    pub fn with_disk_reserve(mut self, bytes: u64) -> Db {
        self.reserve_bytes = bytes;
        self
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
        self.check_healthy()?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        let r = self.inner.write_opt(batch, &opts);
        self.record(r, "write")
    }

    /// Fsync the WAL: every write made so far is durable when this returns.
    pub fn sync_wal(&self) -> Result<()> {
        self.check_healthy()?;
        let r = self.inner.flush_wal(true);
        self.record(r, "wal sync")
    }

    fn check_healthy(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::Storage(
                "an earlier write failed; this replica has stopped writing".into(),
            ));
        }
        if self.reserve_bytes > 0 {
            let free = rustix::fs::statvfs(&self.path)
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                .map_err(|e| {
                    Error::Storage(format!(
                        "cannot check free space in {}: {e}",
                        self.path.display()
                    ))
                });
            let low = match free {
                Ok(free) if free < self.reserve_bytes => Some(format!(
                    "disk nearly full: {} MiB free in {}, below the reserve of {} MiB",
                    free >> 20,
                    self.path.display(),
                    self.reserve_bytes >> 20
                )),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = low {
                return self.record(Err(why), "write");
            }
        }
        Ok(())
    }

    fn record<E: std::fmt::Display>(
        &self,
        r: std::result::Result<(), E>,
        what: &str,
    ) -> Result<()> {
        r.map_err(|e| {
            if !self.failed.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    error = %e,
                    "storage failure: {what} failed (disk full or data directory unwritable?); this replica stops \
                     rather than acknowledge writes it cannot persist"
                );
            }
            Error::Storage(format!("{what} failed: {e}"))
        })
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
