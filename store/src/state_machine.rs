//! The MVCC state machine as openraft's `RaftStateMachine`: applies committed entries (one synced
//! write per apply call, last-applied included), builds point-in-time snapshots of every state
//! column family, and installs snapshots received from the leader.
// openraft's traits fix the (large) `StorageError` type; boxing it here would only add copies.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::PathBuf;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
};
use rocksdb::{IteratorMode, WriteBatch};

use crate::db::{decode, encode, Db, CF_META, STATE_MACHINE_CFS};
use crate::error::Error;
use crate::mvcc::{self, Applier, Revisions};
use crate::types::{
    CommandResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::watch::{AppliedBatch, WatchHub};

pub(crate) const META_APPLIED: &[u8] = b"last_applied";
pub(crate) const META_MEMBERSHIP: &[u8] = b"membership";
const SNAPSHOT_MAGIC: &[u8] = b"RKUBE-SNAPSHOT-2\n";
/// Length of the trailing SHA-256 of everything before it: a snapshot cut anywhere, even between
/// records, is detected.
const SNAPSHOT_DIGEST_LEN: usize = 32;

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::Snapshot(None),
        verb,
        std::io::Error::other(e.to_string()),
    )
}

/// The state machine; holds the shared database and the watch hub it publishes to.
pub struct StateMachine {
    db: Db,
    hub: WatchHub,
    snapshot_dir: PathBuf,
    revs: Revisions,
}

impl StateMachine {
    pub fn open(db: Db, snapshot_dir: PathBuf) -> Result<StateMachine, Error> {
        std::fs::create_dir_all(&snapshot_dir).map_err(|e| {
            Error::Storage(format!("cannot create {}: {e}", snapshot_dir.display()))
        })?;
        let revs = mvcc::read_revisions(&db)?;
        Ok(StateMachine {
            hub: WatchHub::new(revs.current),
            db,
            snapshot_dir,
            revs,
        })
    }

    pub fn hub(&self) -> WatchHub {
        self.hub.clone()
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        db: &Db,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match db
            .get(CF_META, key)
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
        {
            Some(b) => decode("state machine metadata", &b)
                .map(Some)
                .map_err(|e| sm_err(ErrorVerb::Read, e)),
            None => Ok(None),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = Self::read_meta::<LogId>(&self.db, META_APPLIED)?;
        let membership =
            Self::read_meta::<StoredMembership>(&self.db, META_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let from_revision = self.revs.current + 1;
        let mut results = Vec::new();
        let mut events = Vec::new();
        for entry in entries {
            let mut applier = Applier::new(&self.db, self.revs);
            let mut result = CommandResult::default();
            let mut membership = None;
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => {
                    for op in &cmd.ops {
                        match applier.apply(op, entry.log_id.leader_id.term) {
                            Err(Error::Storage(e)) => return Err(sm_err(ErrorVerb::Write, e)),
                            r => result.results.push(r),
                        }
                    }
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                }
            }
            let (mut batch, evs, revs) = applier.finish();
            let meta = self.db.cf(CF_META);
            batch.put_cf(meta, META_APPLIED, encode(&entry.log_id));
            if let Some(m) = membership {
                batch.put_cf(meta, META_MEMBERSHIP, encode(&m));
            }
            self.db
                .write(batch, false)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
            self.revs = revs;
            events.extend(evs);
            results.push(result);
        }
        // One fsync makes every entry of this call durable before any result is returned.
        self.db
            .sync_wal()
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.hub.publish(AppliedBatch {
            from_revision,
            to_revision: self.revs.current,
            events,
        });
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            dir: self.snapshot_dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let db = self.db.clone();
        let data2 = data.clone();
        tokio::task::spawn_blocking(move || load_snapshot(&db, &data2))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))??;
        save_snapshot_file(&self.snapshot_dir, meta, &data)?;
        self.revs = mvcc::read_revisions(&self.db).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        tracing::info!(snapshot = %meta.snapshot_id, revision = self.revs.current, "installed snapshot from the leader");
        // Watchers see the jump and replay the gap from the installed history.
        self.hub.publish(AppliedBatch {
            from_revision: self.revs.current + 1,
            to_revision: self.revs.current,
            events: vec![],
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        load_snapshot_file(&self.snapshot_dir)
    }
}

/// Builds snapshots from a RocksDB point-in-time view while apply continues.
pub struct SnapshotBuilder {
    db: Db,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let db = self.db.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || dump_snapshot(&db))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))??;
        save_snapshot_file(&self.dir, &meta, &data)?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Serialize every state-machine column family as of one RocksDB snapshot. Frame format:
/// magic, then per pair: cf index (u8), key length (u32 BE), key, value length (u32 BE), value.
pub(crate) fn dump_snapshot(db: &Db) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let snap = db.raw().snapshot();
    let read_meta = |k: &[u8]| -> Result<Option<Vec<u8>>, StorageError> {
        snap.get_cf(db.cf(CF_META), k)
            .map_err(|e| snap_err(ErrorVerb::Read, e))
    };
    let last_log_id: Option<LogId> = read_meta(META_APPLIED)?
        .map(|b| decode("last applied", &b))
        .transpose()
        .map_err(|e| snap_err(ErrorVerb::Read, e))?;
    let last_membership: StoredMembership = read_meta(META_MEMBERSHIP)?
        .map(|b| decode("membership", &b))
        .transpose()
        .map_err(|e| snap_err(ErrorVerb::Read, e))?
        .unwrap_or_default();
    let mut data = SNAPSHOT_MAGIC.to_vec();
    for (i, cf) in STATE_MACHINE_CFS.iter().enumerate() {
        for item in snap.iterator_cf(db.cf(cf), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| snap_err(ErrorVerb::Read, e))?;
            data.push(i as u8);
            data.extend_from_slice(&(k.len() as u32).to_be_bytes());
            data.extend_from_slice(&k);
            data.extend_from_slice(&(v.len() as u32).to_be_bytes());
            data.extend_from_slice(&v);
        }
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&data);
    data.extend_from_slice(&digest);
    let snapshot_id = match &last_log_id {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, rand::random::<u32>()),
        None => format!("empty-{}", rand::random::<u32>()),
    };
    Ok((
        SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        },
        data,
    ))
}

/// Replace the state machine with a snapshot's content, in one synced batch: a snapshot that
/// turns out to be corrupt, or a crash part-way, leaves the previous state as it was (a
/// half-installed state machine would have neither the old nor the new last-applied log id).
pub(crate) fn load_snapshot(db: &Db, data: &[u8]) -> Result<(), StorageError> {
    if data.len() < SNAPSHOT_MAGIC.len() + SNAPSHOT_DIGEST_LEN {
        return Err(snap_err(ErrorVerb::Read, "snapshot is truncated"));
    }
    let (signed, digest) = data.split_at(data.len() - SNAPSHOT_DIGEST_LEN);
    if <sha2::Sha256 as sha2::Digest>::digest(signed).as_slice() != digest {
        return Err(snap_err(
            ErrorVerb::Read,
            "snapshot checksum mismatch (truncated or corrupt)",
        ));
    }
    let body = signed
        .strip_prefix(SNAPSHOT_MAGIC)
        .ok_or_else(|| snap_err(ErrorVerb::Read, "not an rkube snapshot (bad header)"))?;
    let mut batch = WriteBatch::default();
    for cf in STATE_MACHINE_CFS {
        for item in db.raw().iterator_cf(db.cf(cf), IteratorMode::Start) {
            let (k, _) = item.map_err(|e| snap_err(ErrorVerb::Write, e))?;
            batch.delete_cf(db.cf(cf), k);
        }
    }
    let truncated = || snap_err(ErrorVerb::Read, "snapshot is truncated");
    let mut pos = 0;
    while pos < body.len() {
        let cf = *STATE_MACHINE_CFS
            .get(body[pos] as usize)
            .ok_or_else(|| snap_err(ErrorVerb::Read, "bad column family in snapshot"))?;
        pos += 1;
        let mut field = || -> Result<&[u8], StorageError> {
            let len_bytes = body.get(pos..pos + 4).ok_or_else(truncated)?;
            let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            let v = body.get(pos + 4..pos + 4 + len).ok_or_else(truncated)?;
            pos += 4 + len;
            Ok(v)
        };
        let k = field()?;
        let v = field()?;
        batch.put_cf(db.cf(cf), k, v);
    }
    db.write(batch, true)
        .map_err(|e| snap_err(ErrorVerb::Write, e))
}

fn save_snapshot_file(
    dir: &std::path::Path,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let tmp = dir.join("current.snap.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        let meta_bytes = encode(meta);
        f.write_all(&(meta_bytes.len() as u32).to_be_bytes())?;
        f.write_all(&meta_bytes)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join("current.snap"))?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| snap_err(ErrorVerb::Write, e))
}

fn load_snapshot_file(dir: &std::path::Path) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
    let path = dir.join("current.snap");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(snap_err(ErrorVerb::Read, e)),
    };
    let bad = || {
        snap_err(
            ErrorVerb::Read,
            format!("corrupt snapshot file {}", path.display()),
        )
    };
    let len =
        u32::from_be_bytes(bytes.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes")) as usize;
    let meta: SnapshotMeta =
        decode("snapshot meta", bytes.get(4..4 + len).ok_or_else(bad)?).map_err(|_| bad())?;
    let data = bytes[4 + len..].to_vec();
    Ok(Some(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    }))
}
