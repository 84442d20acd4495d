//! Restoring a backup (the bytes `Store::backup` returns, saved by `rkube cluster snapshot
//! save`) into the database of a replica that will start a *new* cluster.
//!
//! A restored cluster is a new epoch: a new cluster id, a new Raft log, and the MVCC revision
//! bumped far past anything the old cluster reached, with everything below the bumped revision
//! marked compacted (as `etcdutl snapshot restore --bump-revision --mark-compacted` does). A
//! client or agent that resumes a watch or a past-revision read with a resourceVersion of the
//! old cluster is therefore told "compacted, relist" instead of silently missing the writes the
//! old cluster made after the backup (the restored state may be older than what it cached).

use std::path::Path;

use rocksdb::WriteBatch;

use crate::db::{encode, Db, CF_META};
use crate::error::{Error, Result};
use crate::mvcc::{read_revisions, Applier, META_COMPACT, META_REVISION};
use crate::state_machine::{load_snapshot, META_APPLIED, META_MEMBERSHIP};
use crate::types::Op;

/// How far the revision jumps on restore by default: far beyond the writes an old cluster can
/// have made after its backup (etcd's documentation suggests the same figure).
pub const DEFAULT_REVISION_BUMP: i64 = 1_000_000_000;

/// The revisions a restore produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The revision the backup was taken at.
    pub backup_revision: i64,
    /// The restored cluster's revision (also its compacted revision).
    pub revision: i64,
}

/// Load `backup` into the fresh database at `db_path`: its keys with their create/mod
/// revisions and versions, without the old cluster's Raft state (last applied entry,
/// membership), with history dropped and the revision bumped by `bump` and marked compacted.
/// The caller must not have the database open; the database is closed again on return.
pub fn restore_backup(db_path: &Path, backup: &[u8], bump: i64) -> Result<Restored> {
    if bump < 1 {
        return Err(Error::Invalid(format!(
            "revision bump must be at least 1, got {bump}"
        )));
    }
    let db = Db::open(db_path)?;
    load_snapshot(&db, backup)
        .map_err(|e| Error::Invalid(format!("not a usable rkube backup: {e}")))?;
    let revs = read_revisions(&db)?;
    // History is not kept across a restore: compact it away at the backup's revision first, so
    // nothing below the new compacted revision lingers as garbage no later compaction removes.
    let mut batch = if revs.current > revs.compacted {
        let mut applier = Applier::new(&db, revs);
        applier.apply(&Op::Compact(revs.current), 0)?;
        applier.finish().0
    } else {
        WriteBatch::default()
    };
    let meta = db.cf(CF_META);
    batch.delete_cf(meta, META_APPLIED);
    batch.delete_cf(meta, META_MEMBERSHIP);
    let revision = revs.current.checked_add(bump).ok_or_else(|| {
        Error::Invalid(format!(
            "revision bump {bump} overflows the backup's revision {}",
            revs.current
        ))
    })?;
    batch.put_cf(meta, META_REVISION, encode(&revision));
    batch.put_cf(meta, META_COMPACT, encode(&revision));
    db.write(batch, true)?;
    Ok(Restored {
        backup_revision: revs.current,
        revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc;
    use crate::state_machine::dump_snapshot;
    use rkube_proto::store as pb;

    fn put(db: &Db, key: &str, value: &str) {
        let revs = read_revisions(db).expect("revs");
        let mut a = Applier::new(db, revs);
        a.apply(
            &Op::Put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }),
            1,
        )
        .expect("put");
        db.write(a.finish().0, true).expect("write");
    }

    fn get(db: &Db, key: &str, revision: i64) -> Result<pb::RangeResponse> {
        mvcc::range(
            db,
            &pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                revision,
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_restore_keeps_the_data_and_marks_everything_before_the_bump_compacted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let old = Db::open(&tmp.path().join("old")).expect("open");
        put(&old, "/a", "1");
        put(&old, "/a", "2");
        put(&old, "/b", "x");
        let (_, backup) = dump_snapshot(&old).expect("dump");
        let (old_hash, _) = mvcc::content_hash(&old).expect("hash");
        drop(old);

        let path = tmp.path().join("new");
        let restored = restore_backup(&path, &backup, 1000).expect("restore");
        assert_eq!(
            restored,
            Restored {
                backup_revision: 3,
                revision: 1003
            }
        );
        let db = Db::open(&path).expect("reopen");
        assert_eq!(mvcc::content_hash(&db).expect("hash").0, old_hash);
        let a = get(&db, "/a", 0).expect("get");
        assert_eq!(a.kvs[0].value, b"2");
        assert_eq!(a.kvs[0].mod_revision, 2, "mod revisions are kept");
        assert_eq!(a.header.expect("header").revision, 1003);
        // Reads and history below the new revision are refused as compacted.
        assert!(matches!(get(&db, "/a", 2), Err(Error::Compacted { .. })));
        assert!(get(&db, "/a", 1003).is_ok());
        // The old cluster's Raft state is gone.
        assert!(db.get(CF_META, META_APPLIED).expect("get").is_none());
        assert!(db.get(CF_META, META_MEMBERSHIP).expect("get").is_none());
        let revs = read_revisions(&db).expect("revs");
        assert_eq!((revs.current, revs.compacted), (1003, 1003));
    }

    #[test]
    fn corrupt_backups_and_bad_bumps_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let old = Db::open(&tmp.path().join("old")).expect("open");
        put(&old, "/a", "1");
        let (_, mut backup) = dump_snapshot(&old).expect("dump");
        drop(old);
        assert!(matches!(
            restore_backup(&tmp.path().join("n0"), &backup, 0),
            Err(Error::Invalid(m)) if m.contains("at least 1")
        ));
        let last = backup.len() - 40;
        backup[last] ^= 0xff;
        let err = restore_backup(&tmp.path().join("n1"), &backup, 10).expect_err("corrupt");
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = restore_backup(&tmp.path().join("n2"), b"hello", 10).expect_err("garbage");
        assert!(
            err.to_string().contains("not a usable rkube backup"),
            "{err}"
        );
    }
}
