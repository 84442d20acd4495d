//! Resource limits on the process runtime: a container's memory and cpu limits enforced through
//! cgroups (v1 hierarchies or the v2 unified hierarchy) where the machine allows, and said to be
//! unenforced otherwise.
//!
//! # Layout
//! At start ([`Cgroups::detect`]) the agent finds, per controller (`memory`, `cpu`), a base
//! group it may manage: by default `rkube-<node>` under the agent's own group in that
//! controller's hierarchy (`--cgroup-root auto`), or a given path under every hierarchy's mount
//! (`--cgroup-root /rkube`); `--cgroup-root none` enforces nothing. A controller counts as
//! usable only once a probe group under the base took an (unlimited) limit. On cgroup v2 the
//! controllers are enabled down to the base (`cgroup.subtree_control`), which a group holding
//! processes refuses: when the agent's own group does (a service's or a login session's), the
//! `auto` base goes at the top of the hierarchy instead (`/rkube-<node>`, like the kubelet's
//! `/kubepods`), and where that fails too the agent reports why and enforces nothing.
//!
//! A container with a limit gets `<base>/pod-<uid>/<container>` in the hierarchies of its
//! limits: `memory.limit_in_bytes` (v1; swap capped at the same value where accounted) or
//! `memory.max` (v2, with `memory.swap.max` 0), and `cpu.cfs_period_us` 100 ms with
//! `cpu.cfs_quota_us` its share of it (v1) or `cpu.max` "quota period" (v2), as the kubelet
//! sets them ([`cpu_quota_us`]). The container's process joins the group before it execs, so
//! everything it starts is inside from the beginning; commands exec'd in the container join it
//! too. When the container ended, the agent reads whether the kernel OOM-killed in the group
//! ([`ContainerCgroup::oom_killed`], reported as `OOMKilled`), kills whatever is left in it and
//! removes the groups.
//!
//! # Reporting
//! [`Cgroups::summary`] is published on the Node (annotation [`ENFORCEMENT_ANNOTATION`]); a
//! container whose limits cannot all be enforced still runs, and its pod gets a Warning Event
//! `ResourceLimitsUnenforced` naming the limit and why ([`Cgroups::unenforced`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Limits;

mod container;
mod mounts;

pub use container::{oom_killed, ContainerCgroup, Join};
pub use mounts::{parse_mountinfo, parse_proc_cgroup, CgroupMount};

/// The Node annotation saying whether and how resource limits are enforced on the node.
pub const ENFORCEMENT_ANNOTATION: &str = "rkube.io/resource-limits";

/// The CFS period the kubelet uses: 100 ms.
pub const CPU_PERIOD_US: i64 = 100_000;
/// The smallest quota the kernel accepts (1 ms), which the kubelet rounds up to.
pub const MIN_CPU_QUOTA_US: i64 = 1_000;

/// How long removing a container's group may wait for its processes to go.
const REMOVE_WAIT: Duration = Duration::from_secs(5);
const REMOVE_POLL: Duration = Duration::from_millis(10);

/// Where the agent's groups live (`rkube agent --cgroup-root`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CgroupRoot {
    /// `rkube-<node>` under the agent's own group in each hierarchy (on cgroup v2, at the top
    /// of the hierarchy when the agent's group holds processes; see the module docs).
    #[default]
    Auto,
    /// Enforce nothing.
    Disabled,
    /// This group path (e.g. `/rkube`) under each hierarchy's mount point.
    Path(String),
}

impl std::str::FromStr for CgroupRoot {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(CgroupRoot::Auto),
            "none" => Ok(CgroupRoot::Disabled),
            p if p.starts_with('/') && !p.split('/').any(|part| part == "..") => {
                Ok(CgroupRoot::Path(p.to_string()))
            }
            other => Err(format!(
                "cgroup root {other:?}: expected \"auto\", \"none\" or an absolute cgroup path such as /rkube"
            )),
        }
    }
}

/// A cgroup version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        }
    }
}

/// A controller the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
        }
    }

    /// The file a probe writes (an unlimited value) to check the controller is usable.
    fn probe(self, version: Version) -> (&'static str, &'static str) {
        match (self, version) {
            (Controller::Memory, Version::V1) => ("memory.limit_in_bytes", "-1"),
            (Controller::Memory, Version::V2) => ("memory.max", "max"),
            (Controller::Cpu, Version::V1) => ("cpu.cfs_quota_us", "-1"),
            (Controller::Cpu, Version::V2) => ("cpu.max", "max"),
        }
    }
}

/// Control files and the values to write to them, in order.
pub type FileWrites = Vec<(&'static str, String)>;

/// The files (in order) and values that set `limits`' part for `controller`, and the optional
/// files written only where they exist (swap accounting).
pub fn limit_files(
    controller: Controller,
    version: Version,
    limits: &Limits,
) -> (FileWrites, FileWrites) {
    match (controller, version) {
        (Controller::Memory, _) => {
            let Some(bytes) = limits.memory_bytes else {
                return Default::default();
            };
            let bytes = bytes.max(0).to_string();
            match version {
                Version::V1 => (
                    vec![("memory.limit_in_bytes", bytes.clone())],
                    // Memory plus swap capped at the memory limit: no swapping past it.
                    vec![("memory.memsw.limit_in_bytes", bytes)],
                ),
                Version::V2 => (
                    vec![("memory.max", bytes)],
                    vec![("memory.swap.max", "0".into())],
                ),
            }
        }
        (Controller::Cpu, _) => {
            let Some(nano) = limits.nano_cpus else {
                return Default::default();
            };
            let quota = cpu_quota_us(nano);
            match version {
                Version::V1 => (
                    vec![
                        ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                        ("cpu.cfs_quota_us", quota.to_string()),
                    ],
                    vec![],
                ),
                Version::V2 => (
                    vec![("cpu.max", format!("{quota} {CPU_PERIOD_US}"))],
                    vec![],
                ),
            }
        }
    }
}

/// The CFS quota per [`CPU_PERIOD_US`] for `nano_cpus` (10⁹ is one CPU), at least
/// [`MIN_CPU_QUOTA_US`], as the kubelet computes it.
pub fn cpu_quota_us(nano_cpus: i64) -> i64 {
    let quota = i128::from(nano_cpus.max(0)) * i128::from(CPU_PERIOD_US) / 1_000_000_000;
    (quota.min(i128::from(i64::MAX)) as i64).max(MIN_CPU_QUOTA_US)
}

/// A controller's hierarchy and the base group the agent manages in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    version: Version,
    base: PathBuf,
}

/// Which controllers the agent can use, and where (see the module docs).
#[derive(Debug)]
pub struct Cgroups {
    memory: Result<Hierarchy, String>,
    cpu: Result<Hierarchy, String>,
    /// Whether the bases are the agent's own (`auto`), removed when the agent is done.
    owned_bases: bool,
    /// Serializes creating and removing pod groups (a pod's last container removing the pod
    /// group must not race another creating its group in it).
    lock: Mutex<()>,
}

impl Cgroups {
    /// Enforce nothing, because of `why`.
    pub fn disabled(why: &str) -> Cgroups {
        Cgroups {
            memory: Err(why.to_string()),
            cpu: Err(why.to_string()),
            owned_bases: false,
            lock: Mutex::new(()),
        }
    }

    /// Find and prepare the groups of node `node` under `root` on this machine (from
    /// `/proc/self/mountinfo` and `/proc/self/cgroup`).
    pub fn detect(root: &CgroupRoot, node: &str) -> Cgroups {
        if *root == CgroupRoot::Disabled {
            return Cgroups::disabled("disabled by --cgroup-root none");
        }
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
        };
        let (mountinfo, own) = match (read("/proc/self/mountinfo"), read("/proc/self/cgroup")) {
            (Ok(m), Ok(c)) => (m, c),
            (Err(e), _) | (_, Err(e)) => return Cgroups::disabled(&e),
        };
        Cgroups::detect_in(
            &parse_mountinfo(&mountinfo),
            &parse_proc_cgroup(&own),
            root,
            node,
        )
    }

    /// [`Cgroups::detect`] on given mounts and own groups.
    pub fn detect_in(
        mounts: &[CgroupMount],
        own: &[(Vec<String>, String)],
        root: &CgroupRoot,
        node: &str,
    ) -> Cgroups {
        if *root == CgroupRoot::Disabled {
            return Cgroups::disabled("disabled by --cgroup-root none");
        }
        let setup = |c| setup(c, mounts, own, root, node);
        let cgroups = Cgroups {
            memory: setup(Controller::Memory),
            cpu: setup(Controller::Cpu),
            owned_bases: *root == CgroupRoot::Auto,
            lock: Mutex::new(()),
        };
        tracing::info!(enforcement = %cgroups.summary(), "resource limits");
        cgroups
    }

    fn hierarchy(&self, c: Controller) -> &Result<Hierarchy, String> {
        match c {
            Controller::Memory => &self.memory,
            Controller::Cpu => &self.cpu,
        }
    }

    /// Whether limits are enforced, and how, for the Node: `enforced (cgroup v1: memory,
    /// cpu)`, `unenforced: <why>`, or partly.
    pub fn summary(&self) -> String {
        match (&self.memory, &self.cpu) {
            (Ok(m), Ok(c)) if m.version == c.version => {
                format!("enforced ({}: memory, cpu)", m.version.name())
            }
            (Ok(m), Ok(c)) => format!(
                "enforced (memory: {}, cpu: {})",
                m.version.name(),
                c.version.name()
            ),
            (Ok(m), Err(e)) => format!(
                "partly enforced ({}: memory); cpu unenforced: {e}",
                m.version.name()
            ),
            (Err(e), Ok(c)) => format!(
                "partly enforced ({}: cpu); memory unenforced: {e}",
                c.version.name()
            ),
            (Err(a), Err(b)) if a == b => format!("unenforced: {a}"),
            (Err(a), Err(b)) => format!("unenforced: memory: {a}; cpu: {b}"),
        }
    }

    /// Which of `limits` this node cannot enforce, and why; `None` when it enforces them all.
    pub fn unenforced(&self, limits: &Limits) -> Option<String> {
        let mut missing = Vec::new();
        if let (Some(bytes), Err(why)) = (limits.memory_bytes, &self.memory) {
            missing.push(format!("memory limit {bytes} bytes is not enforced: {why}"));
        }
        if let (Some(nano), Err(why)) = (limits.nano_cpus, &self.cpu) {
            missing.push(format!(
                "cpu limit {}m is not enforced: {why}",
                (nano + 999_999) / 1_000_000
            ));
        }
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    /// Create the group of container `container` of pod `pod_uid` with `limits` (only in the
    /// hierarchies of the limits it has and this node enforces); `None` when there is none to
    /// enforce. A group left by an earlier agent run has its processes killed first.
    pub async fn create(
        self: &Arc<Self>,
        pod_uid: &str,
        container: &str,
        limits: &Limits,
    ) -> Result<Option<ContainerCgroup>, String> {
        let wanted: Vec<(Controller, &Hierarchy)> = [
            (Controller::Memory, limits.memory_bytes.is_some()),
            (Controller::Cpu, limits.nano_cpus.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .filter_map(|(c, _)| self.hierarchy(c).as_ref().ok().map(|h| (c, h)))
        .collect();
        if wanted.is_empty() {
            return Ok(None);
        }
        let mut group = ContainerCgroup {
            owner: self.clone(),
            dirs: Vec::new(),
            memory: None,
        };
        let mut stale = Vec::new();
        {
            let _guard = self.lock.lock().expect("cgroups lock");
            for (c, h) in &wanted {
                let pod_dir = h.base.join(format!("pod-{pod_uid}"));
                let dir = pod_dir.join(container);
                if !group.dirs.iter().any(|(_, d)| *d == dir) {
                    make_dir(&pod_dir)?;
                    if h.version == Version::V2 {
                        let controllers: Vec<Controller> = wanted
                            .iter()
                            .filter(|(_, other)| other.base == h.base)
                            .map(|(c, _)| *c)
                            .collect();
                        for c in controllers {
                            enable(&pod_dir, c)?;
                        }
                    }
                    match std::fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            stale.push(dir.clone())
                        }
                        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
                    }
                    group.dirs.push((h.version, dir.clone()));
                }
                if *c == Controller::Memory {
                    group.memory = Some((h.version, dir));
                }
            }
        }
        for dir in &stale {
            tracing::info!(group = %dir.display(), "killing what an earlier run left in a container's cgroup");
            container::kill_all(dir).await;
            // Fresh, so that no old limit constrains the new ones (v1 refuses a memory limit
            // above the memory+swap limit).
            let _guard = self.lock.lock().expect("cgroups lock");
            if std::fs::remove_dir(dir).is_ok() {
                make_dir(dir)?;
            }
        }
        for (c, h) in &wanted {
            let dir = h.base.join(format!("pod-{pod_uid}")).join(container);
            let (files, optional) = limit_files(*c, h.version, limits);
            let written = files
                .iter()
                .try_for_each(|(file, value)| write_file(&dir, file, value))
                .and_then(|()| {
                    optional
                        .iter()
                        .filter(|(file, _)| dir.join(file).exists())
                        .try_for_each(|(file, value)| write_file(&dir, file, value))
                });
            if let Err(e) = written {
                group.remove().await;
                return Err(e);
            }
        }
        Ok(Some(group))
    }
}

impl Drop for Cgroups {
    /// The agent's own bases go with it (empty groups only: nothing running is touched).
    fn drop(&mut self) {
        if !self.owned_bases {
            return;
        }
        for base in [&self.memory, &self.cpu]
            .into_iter()
            .filter_map(|h| h.as_ref().ok())
            .map(|h| &h.base)
        {
            if let Ok(entries) = std::fs::read_dir(base) {
                for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                    if let Ok(children) = std::fs::read_dir(entry.path()) {
                        for child in children.flatten().filter(|e| e.path().is_dir()) {
                            let _ = std::fs::remove_dir(child.path());
                        }
                    }
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
            let _ = std::fs::remove_dir(base);
        }
    }
}

/// Find `c`'s hierarchy, prepare the base group under `root` and check that it takes a limit.
fn setup(
    c: Controller,
    mounts: &[CgroupMount],
    own: &[(Vec<String>, String)],
    root: &CgroupRoot,
    node: &str,
) -> Result<Hierarchy, String> {
    let leaf = format!("rkube-{node}");
    let name = c.name();
    let (version, base) = if let Some(mount) = mounts.iter().find(|m| m.has_controller(name)) {
        let base = match root {
            CgroupRoot::Path(p) => mounts::join(&mount.mount_point, p),
            _ => {
                let group = mounts::own_v1_group(own, name).ok_or_else(|| {
                    format!("the agent's own {name} cgroup is not in /proc/self/cgroup")
                })?;
                own_dir(mount, group)?.join(&leaf)
            }
        };
        make_dirs(&base)?;
        (Version::V1, base)
    } else {
        let mount = mounts
            .iter()
            .find(|m| m.controllers.is_none())
            .ok_or_else(|| format!("no cgroup hierarchy has the {name} controller"))?;
        let available = mount.mount_point.join("cgroup.controllers");
        let available = std::fs::read_to_string(&available)
            .map_err(|e| format!("cannot read {}: {e}", available.display()))?;
        if !available.split_whitespace().any(|a| a == name) {
            return Err(format!(
                "no cgroup hierarchy has the {name} controller (cgroup v2 offers: {})",
                available.trim()
            ));
        }
        let base = match root {
            CgroupRoot::Path(p) => {
                // Enable the controller on every group from the hierarchy's root down.
                let mut dir = mount.mount_point.clone();
                for part in p.split('/').filter(|p| !p.is_empty()) {
                    enable(&dir, c)?;
                    dir.push(part);
                    make_dir(&dir)?;
                }
                dir
            }
            _ => {
                let group = mounts::own_v2_group(own).ok_or_else(|| {
                    "the agent's own cgroup is not in /proc/self/cgroup".to_string()
                })?;
                let own = own_dir(mount, group)?;
                let parent = match enable(&own, c) {
                    Ok(()) => own,
                    // The agent's group holds processes (a service's or a login session's
                    // group): its groups go at the top of the hierarchy, as the kubelet's
                    // `/kubepods` does.
                    Err(own_error) if own != mount.mount_point => {
                        enable(&mount.mount_point, c).map_err(|e| {
                            format!("{own_error}; nor at the top of the hierarchy: {e}")
                        })?;
                        mount.mount_point.clone()
                    }
                    Err(e) => return Err(e),
                };
                let base = parent.join(&leaf);
                make_dir(&base)?;
                base
            }
        };
        enable(&base, c)?;
        (Version::V2, base)
    };
    let probe = base.join("probe");
    make_dir(&probe)?;
    let (file, unlimited) = c.probe(version);
    let written = write_file(&probe, file, unlimited);
    if let Err(e) = std::fs::remove_dir(&probe) {
        tracing::debug!(group = %probe.display(), error = %e, "cannot remove the probe cgroup");
    }
    written?;
    Ok(Hierarchy { version, base })
}

fn own_dir(mount: &CgroupMount, group: &str) -> Result<PathBuf, String> {
    mount.dir_of(group).ok_or_else(|| {
        format!(
            "the agent's own cgroup {group} is outside the mount at {}",
            mount.mount_point.display()
        )
    })
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

fn make_dirs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    let path = dir.join(file);
    std::fs::write(&path, value)
        .map_err(|e| format!("cannot write {value:?} to {}: {e}", path.display()))
}

/// Make `c` available to the groups under `dir` (cgroup v2's `cgroup.subtree_control`).
fn enable(dir: &Path, c: Controller) -> Result<(), String> {
    let path = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.split_whitespace().any(|x| x == c.name()) {
        return Ok(());
    }
    std::fs::write(&path, format!("+{}", c.name())).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
            format!(
                "cannot enable the {} controller below {}: that group holds processes (cgroup v2 \
                 enables controllers only below groups without any): run the agent in a group of \
                 its own or pass --cgroup-root",
                c.name(),
                dir.display()
            )
        } else {
            format!(
                "cannot enable the {} controller in {}: {e}",
                c.name(),
                path.display()
            )
        }
    })
}

#[cfg(test)]
mod tests;
