//! The process runtime's mounts: a container with [`Mount`]s runs in a mount namespace of its
//! own. Between fork and exec the child unshares `CLONE_NEWNS`, makes `/` recursively a slave
//! mount (host mounts still propagate in, nothing the child mounts propagates out), creates each
//! missing target (and its parents) on the filesystem it then sees, bind-mounts each source at
//! its target (remounting it read-only when asked) and changes to its working directory again
//! (it may be under a mount).
//!
//! Everything that allocates — C strings, the list of parent directories, sorting — happens
//! before the fork in [`MountPlan::new`]; the child only makes system calls
//! ([`MountPlan::apply`]), as the code between fork and exec must.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;

use super::Mount;

/// One mount, ready for the child.
struct Prepared {
    source: CString,
    target: CString,
    /// The target's missing-or-not parents, outermost first (created when missing).
    parents: Vec<CString>,
    /// Whether the source is a directory (else the target is created as a file).
    dir: bool,
    read_only: bool,
}

/// The mounts of one container, prepared before the fork.
pub(crate) struct MountPlan {
    mounts: Vec<Prepared>,
    working_dir: CString,
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("path {} holds a NUL byte", path.display()),
        )
    })
}

impl MountPlan {
    /// Check the sources and prepare `mounts` (targets must be absolute; parents mount before
    /// their children, whatever the order given).
    pub(crate) fn new(mounts: &[Mount], working_dir: &Path) -> Result<MountPlan, String> {
        let mut ordered: Vec<&Mount> = mounts.iter().collect();
        ordered.sort_by_key(|m| m.target.components().count());
        let mut prepared = Vec::with_capacity(ordered.len());
        for m in ordered {
            if !m.target.is_absolute() || m.target.components().any(|c| c == Component::ParentDir) {
                return Err(format!(
                    "mount target {} must be an absolute path without \"..\"",
                    m.target.display()
                ));
            }
            let meta = std::fs::metadata(&m.source)
                .map_err(|e| format!("mount source {} is not usable: {e}", m.source.display()))?;
            let mut parents = Vec::new();
            let mut parent = m.target.parent();
            while let Some(p) = parent.filter(|p| *p != Path::new("/")) {
                parents.push(c_path(p).map_err(|e| e.to_string())?);
                parent = p.parent();
            }
            parents.reverse();
            prepared.push(Prepared {
                source: c_path(&m.source).map_err(|e| e.to_string())?,
                target: c_path(&m.target).map_err(|e| e.to_string())?,
                parents,
                dir: meta.is_dir(),
                read_only: m.read_only,
            });
        }
        Ok(MountPlan {
            mounts: prepared,
            working_dir: c_path(working_dir).map_err(|e| e.to_string())?,
        })
    }

    /// In the child, between fork and exec: system calls only, no allocation.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        // SAFETY: CLONE_NEWNS does not unshare the file descriptor table.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )?;
        for m in &self.mounts {
            for parent in &m.parents {
                match rustix::fs::mkdir(parent.as_c_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if m.dir {
                match rustix::fs::mkdir(m.target.as_c_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            } else if let Ok(fd) = rustix::fs::open(
                m.target.as_c_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::from_raw_mode(0o644),
            ) {
                drop(fd);
            }
            rustix::mount::mount_bind_recursive(m.source.as_c_str(), m.target.as_c_str())?;
            if m.read_only {
                rustix::mount::mount_remount(
                    m.target.as_c_str(),
                    MountFlags::BIND | MountFlags::RDONLY,
                    c"",
                )?;
            }
        }
        rustix::process::chdir(self.working_dir.as_c_str())?;
        Ok(())
    }
}

/// Joining a running container's mount namespace (for exec), prepared before the fork.
pub(crate) struct JoinMountNs {
    ns: std::os::fd::OwnedFd,
    working_dir: CString,
}

impl JoinMountNs {
    pub(crate) fn new(pid: i32, working_dir: &Path) -> std::io::Result<JoinMountNs> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?.into();
        Ok(JoinMountNs {
            ns,
            working_dir: c_path(working_dir)?,
        })
    }

    /// In the child, between fork and exec: system calls only.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        use std::os::fd::AsFd;
        rustix::thread::move_into_link_name_space(
            self.ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Mount),
        )?;
        rustix::process::chdir(self.working_dir.as_c_str())?;
        Ok(())
    }
}

/// Whether this process may create mount namespaces (and mount in them), probed once on a
/// throwaway thread (unsharing affects only that thread).
pub(crate) fn mount_namespaces() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let probe = std::thread::spawn(|| -> std::io::Result<()> {
                // SAFETY: CLONE_NEWNS does not unshare the file descriptor table; the thread's
                // private namespace goes away with it.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
                rustix::mount::mount_change(
                    c"/",
                    MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
                )?;
                Ok(())
            });
            match probe.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!(
                    "volume mounts need a mount namespace, which this agent cannot create \
                     ({e}): run the agent as root or use the docker runtime"
                )),
                Err(_) => Err("the mount namespace probe panicked".into()),
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_order_parents_first_and_check_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let m = |source: &str, target: &str| Mount {
            source: dir.path().join(source),
            target: target.into(),
            read_only: false,
        };
        let plan = MountPlan::new(&[m("f", "/a/b/c"), m("", "/a")], dir.path()).unwrap();
        let targets: Vec<_> = plan.mounts.iter().map(|m| m.target.clone()).collect();
        assert_eq!(targets, [c"/a".to_owned(), c"/a/b/c".to_owned()]);
        assert!(plan.mounts[0].dir && !plan.mounts[1].dir);
        assert_eq!(
            plan.mounts[1].parents,
            [c"/a".to_owned(), c"/a/b".to_owned()]
        );
        let err = MountPlan::new(&[m("missing", "/x")], dir.path())
            .err()
            .unwrap();
        assert!(err.contains("is not usable"), "{err}");
        let err = MountPlan::new(&[m("", "relative")], dir.path())
            .err()
            .unwrap();
        assert!(err.contains("absolute"), "{err}");
    }

    /// On the process runtime: the container sees its mounts (read-only where asked), its
    /// exec'd commands too, and the host sees only the (created, empty) mount points.
    #[tokio::test]
    async fn containers_see_their_mounts_and_the_host_does_not() {
        use super::super::{ContainerSpec, ProcessRuntime, Runtime};
        use std::path::PathBuf;
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), "hello").unwrap();
        let rw = dir.path().join("mnt/rw");
        let ro = dir.path().join("mnt/ro");
        let file = dir.path().join("mnt/one-file");
        let script = format!(
            "cat {rw}/f; echo; touch {rw}/new && echo rw-ok; touch {ro}/x 2>/dev/null || echo ro-refused; \
             cat {file}; echo; echo done; exec sleep 1000",
            rw = rw.display(),
            ro = ro.display(),
            file = file.display()
        );
        let mount = |source: PathBuf, target: &PathBuf, read_only: bool| Mount {
            source,
            target: target.clone(),
            read_only,
        };
        let spec = ContainerSpec {
            name: "c".into(),
            argv: vec!["sh".into(), "-c".into(), script],
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            working_dir: dir.path().to_path_buf(),
            log_path: dir.path().join("c.log"),
            mounts: vec![
                mount(src.clone(), &rw, false),
                mount(src.clone(), &ro, true),
                mount(src.join("f"), &file, true),
            ],
            engine: Default::default(),
        };
        let rt = ProcessRuntime::new();
        if let Err(why) = mount_namespaces() {
            let err = rt.start(&spec).await.unwrap_err().to_string();
            assert!(err.contains("need a mount namespace"), "{err} ({why})");
            assert_eq!(rt.check_mounts(), Err(why));
            return;
        }
        let started = rt.start(&spec).await.unwrap();
        let log = dir.path().join("c.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("done")) {
            assert!(
                Instant::now() < deadline,
                "the container never finished its checks"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            crate::container_log::decode(&std::fs::read(&log).unwrap()),
            b"hello\nrw-ok\nro-refused\nhello\ndone\n"
        );
        // Written through the read-write mount, into the source.
        assert!(src.join("new").is_file());
        // The host's mount points were created and stay empty.
        assert!(rw.is_dir() && std::fs::read_dir(&rw).unwrap().count() == 0);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
        // Exec joins the container's mount namespace.
        let argv = vec![
            "cat".to_string(),
            rw.join("f").to_string_lossy().into_owned(),
        ];
        let out = rt
            .exec(&started.id, &argv, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!((out.exit_code, out.output.as_str()), (0, "hello"));
        rt.stop(&started.id, Duration::from_secs(1)).await.unwrap();
    }
}
