//! One container's cgroups: joining them from the child before exec, reading whether the
//! kernel OOM-killed in them, and killing what is left and removing them when it ended.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::process::{kill_process, Pid, Signal};

use super::{Cgroups, Version, REMOVE_POLL, REMOVE_WAIT};

/// The processes in group `dir` (empty when it is gone).
fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// SIGKILL everything in group `dir` until it is empty (or [`REMOVE_WAIT`] passed).
pub(super) async fn kill_all(dir: &Path) {
    let deadline = tokio::time::Instant::now() + REMOVE_WAIT;
    loop {
        let pids = procs(dir);
        if pids.is_empty() {
            return;
        }
        for pid in pids.into_iter().filter_map(Pid::from_raw) {
            let _ = kill_process(pid, Signal::KILL);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(group = %dir.display(), "processes are left in a container's cgroup");
            return;
        }
        tokio::time::sleep(REMOVE_POLL).await;
    }
}

/// One container's groups (see the module docs).
#[derive(Debug)]
pub struct ContainerCgroup {
    pub(super) owner: Arc<Cgroups>,
    /// The container's group in each hierarchy it is in.
    pub(super) dirs: Vec<(Version, PathBuf)>,
    /// Its group in the memory hierarchy, when it has a memory limit.
    pub(super) memory: Option<(Version, PathBuf)>,
}

impl ContainerCgroup {
    /// The container's group directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// What a child process needs to join the groups before it execs ([`Join::apply`]).
    pub fn join(&self) -> std::io::Result<Join> {
        let files = self
            .dirs
            .iter()
            .map(|(_, dir)| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Join(files))
    }

    /// Whether the kernel's OOM killer killed a process of the container (call once it ended,
    /// before [`ContainerCgroup::remove`]); `killed`: SIGKILL ended its main process.
    pub fn oom_killed(&self, killed: bool) -> bool {
        let Some((version, dir)) = &self.memory else {
            return false;
        };
        oom_killed(
            *version,
            |f| std::fs::read_to_string(dir.join(f)).ok(),
            killed,
        )
    }

    /// Kill what is left in the groups and remove them (and the pod's group once empty).
    pub async fn remove(&self) {
        let deadline = tokio::time::Instant::now() + REMOVE_WAIT;
        for (_, dir) in &self.dirs {
            loop {
                kill_all(dir).await;
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::warn!(group = %dir.display(), error = %e, "cannot remove a container's cgroup");
                        break;
                    }
                    Err(_) => tokio::time::sleep(REMOVE_POLL).await,
                }
            }
        }
        let _guard = self.owner.lock.lock().expect("cgroups lock");
        for (_, dir) in &self.dirs {
            if let Some(pod_dir) = dir.parent() {
                // Fails while another container of the pod has its group there.
                let _ = std::fs::remove_dir(pod_dir);
            }
        }
    }
}

/// Open `cgroup.procs` files of a container's groups, for a child to join them.
#[derive(Debug)]
pub struct Join(Vec<std::fs::File>);

impl Join {
    /// Move the calling process into the groups. Safe between fork and exec: it only writes
    /// to open files (no allocation, no locks).
    pub fn apply(&self) -> std::io::Result<()> {
        for mut file in &self.0 {
            // "0" is the writing process itself.
            file.write_all(b"0")?;
        }
        Ok(())
    }
}

/// Whether a memory group's files (read by `read`) show an OOM kill: `oom_kill` in
/// `memory.events` (v2) or `memory.oom_control` (v1, kernels 4.13+); on older kernels a group
/// that is under OOM, or whose peak usage reached its limit with failed charges, when SIGKILL
/// ended the container (`killed`).
pub fn oom_killed(version: Version, read: impl Fn(&str) -> Option<String>, killed: bool) -> bool {
    let field = |content: &str, key: &str| {
        content.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    };
    let number = |file: &str| read(file).and_then(|c| c.trim().parse::<u64>().ok());
    match version {
        Version::V2 => {
            let events = read("memory.events").unwrap_or_default();
            match field(&events, "oom_kill") {
                Some(n) => n > 0,
                None => killed && field(&events, "oom").is_some_and(|n| n > 0),
            }
        }
        Version::V1 => {
            let control = read("memory.oom_control").unwrap_or_default();
            if let Some(n) = field(&control, "oom_kill") {
                return n > 0;
            }
            if field(&control, "under_oom") == Some(1) {
                return true;
            }
            let reached = match (
                number("memory.max_usage_in_bytes"),
                number("memory.limit_in_bytes"),
            ) {
                (Some(peak), Some(limit)) => peak >= limit,
                _ => false,
            };
            killed && reached && number("memory.failcnt").is_some_and(|n| n > 0)
        }
    }
}
