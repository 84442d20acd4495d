//! Volumes backed by host paths: `hostPath` with its type checks, `persistentVolumeClaim` bound
//! to a hostPath PersistentVolume, and memory-backed directories (tmpfs) for secrets and
//! `emptyDir` with `medium: Memory`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use rkube_client::Client;

use super::get_optional;

/// Check (and for the `…OrCreate` types, create) hostPath `path` of type `type_` as the kubelet
/// does; `""` checks nothing, and a missing path is created as a directory (as container
/// engines create missing bind sources).
pub(super) fn host_path(path: &str, type_: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(format!("hostPath {path:?} must be an absolute path"));
    }
    let meta = std::fs::metadata(&p);
    let failed = |what: &str| format!("hostPath type check failed: {path} is not {what}");
    match type_ {
        "" => {
            if meta.is_err() {
                std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {path}: {e}"))?;
            }
        }
        "DirectoryOrCreate" => match meta {
            Ok(m) if !m.is_dir() => return Err(failed("a directory")),
            Ok(_) => {}
            Err(_) => {
                std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {path}: {e}"))?;
            }
        },
        "Directory" => {
            if !meta.is_ok_and(|m| m.is_dir()) {
                return Err(failed("a directory"));
            }
        }
        "FileOrCreate" => match meta {
            Ok(m) if m.is_dir() => return Err(failed("a file")),
            Ok(_) => {}
            Err(_) => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(|e| format!("cannot create {path}: {e}"))?;
            }
        },
        "File" => {
            if !meta.is_ok_and(|m| m.is_file()) {
                return Err(failed("a file"));
            }
        }
        "Socket" => {
            if !meta.is_ok_and(|m| m.file_type().is_socket()) {
                return Err(failed("a socket file"));
            }
        }
        "CharDevice" => {
            if !meta.is_ok_and(|m| m.file_type().is_char_device()) {
                return Err(failed("a character device"));
            }
        }
        "BlockDevice" => {
            if !meta.is_ok_and(|m| m.file_type().is_block_device()) {
                return Err(failed("a block device"));
            }
        }
        other => {
            return Err(format!(
                "hostPath type {other:?} is not supported; supported: \"\", DirectoryOrCreate, \
                 Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice"
            ));
        }
    }
    Ok(p)
}

/// The host path of claim `claim` for a pod on node `node`: it must be Bound to a hostPath
/// PersistentVolume (such as the local provisioner's) that lives on this node, so a pod never
/// starts on an empty directory while its data is on another machine.
pub(super) async fn claim_path(
    client: &Client,
    namespace: &str,
    claim: &str,
    node: &str,
) -> Result<PathBuf, String> {
    let pvc: PersistentVolumeClaim = get_optional(client, namespace, claim)
        .await
        .map_err(|e| format!("cannot read persistentvolumeclaim {claim:?}: {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(format!(
            "persistentvolumeclaim {claim:?} is not bound (phase {phase})"
        ));
    }
    let pv: PersistentVolume = get_optional(client, "", &volume_name)
        .await
        .map_err(|e| format!("cannot read persistentvolume {volume_name:?}: {e}"))?
        .ok_or_else(|| format!("persistentvolume {volume_name:?} of claim {claim:?} not found"))?;
    let Some(hp) = pv.spec.as_ref().and_then(|s| s.host_path.as_ref()) else {
        return Err(format!(
            "persistentvolume {volume_name:?} of claim {claim:?} is not a hostPath volume: \
             this agent mounts only hostPath persistent volumes (such as the local \
             provisioner's, class \"local\")"
        ));
    };
    if let Some(owner) = super::reclaim::volume_node(&pv).filter(|n| *n != node) {
        return Err(format!(
            "persistentvolume {volume_name:?} of claim {claim:?} is on node {owner:?} (its node \
             affinity), not on this node {node:?}"
        ));
    }
    host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub(super) fn is_mount_point(path: &Path) -> bool {
    let (Ok(meta), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    meta.is_dir() && std::fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev())
}

/// Where memory-backed volumes live when the agent cannot mount a tmpfs.
const SHM_ROOT: &str = "/dev/shm/rkube";

/// Make `path` (volume `volume` of pod `uid`) memory-backed: a tmpfs mounted there (of
/// `size_bytes` when given), else a symlink to a directory under `/dev/shm`, else a plain
/// directory with a warning. Idempotent (an agent restart finds it ready).
pub(super) fn memory_dir(
    path: &Path,
    uid: &str,
    volume: &str,
    size_bytes: Option<i128>,
) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        || is_mount_point(path)
    {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut options = "mode=0755".to_string();
    if let Some(size) = size_bytes.filter(|s| *s > 0) {
        options.push_str(&format!(",size={size}"));
    }
    let options = std::ffi::CString::new(options).expect("no NUL in tmpfs options");
    let mounted = rustix::mount::mount(
        "tmpfs",
        path,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        options.as_c_str(),
    );
    let Err(e) = mounted else {
        return Ok(());
    };
    let shm = Path::new(SHM_ROOT).join(uid).join(volume);
    if Path::new("/dev/shm").is_dir() && std::fs::create_dir_all(&shm).is_ok() {
        std::fs::remove_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::os::unix::fs::symlink(&shm, path).map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(volume, dir = %shm.display(), error = %e, "cannot mount a tmpfs; the memory-backed volume lives under /dev/shm");
    } else {
        tracing::warn!(volume, dir = %path.display(), error = %e, "cannot mount a tmpfs and /dev/shm is unavailable: this volume is NOT memory-backed");
    }
    Ok(())
}

/// Undo [`memory_dir`] for every volume of pod `uid` under `root`: unmount tmpfs mounts and
/// remove its `/dev/shm` directories. Best effort (logged).
pub(super) fn release_memory(root: &Path, uid: &str) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if is_mount_point(&path) {
                if let Err(e) = rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH) {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot unmount a volume");
                }
            }
        }
    }
    if !uid.is_empty() {
        let shm = Path::new(SHM_ROOT).join(uid);
        if let Err(e) = std::fs::remove_dir_all(&shm) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %shm.display(), error = %e, "cannot remove memory-backed volumes");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types_are_checked_and_created() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert!(host_path(&p("new-dir"), "DirectoryOrCreate")
            .unwrap()
            .is_dir());
        assert!(host_path(&p("plain/nested"), "").unwrap().is_dir());
        assert!(host_path(&p("new-file"), "FileOrCreate").unwrap().is_file());
        assert!(host_path(&p("file"), "File").is_ok());
        assert!(host_path(&p("new-dir"), "Directory").is_ok());
        let cases = [
            ("missing", "Directory", "is not a directory"),
            ("file", "Directory", "is not a directory"),
            ("file", "DirectoryOrCreate", "is not a directory"),
            ("missing", "File", "is not a file"),
            ("new-dir", "FileOrCreate", "is not a file"),
            ("new-dir", "Socket", "is not a socket file"),
            ("file", "Weird", "is not supported"),
        ];
        for (name, ty, want) in cases {
            let err = host_path(&p(name), ty).unwrap_err();
            assert!(err.contains(want), "{name} {ty}: {err}");
        }
        assert!(host_path("relative", "").is_err());
    }

    #[test]
    fn memory_dirs_are_idempotent_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("volumes");
        let vol = root.join("cache");
        memory_dir(&vol, "test-uid-memory", "cache", Some(1 << 20)).unwrap();
        memory_dir(&vol, "test-uid-memory", "cache", None).unwrap();
        std::fs::write(vol.join("f"), "x").unwrap();
        release_memory(&root, "test-uid-memory");
        assert!(!is_mount_point(&vol));
        assert!(!Path::new(SHM_ROOT).join("test-uid-memory").exists());
    }
}
