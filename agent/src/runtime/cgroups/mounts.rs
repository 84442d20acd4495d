//! Where this process's cgroups are: the cgroup file systems from `/proc/self/mountinfo` (v1
//! hierarchies with their controllers, the v2 unified hierarchy) and the agent's own group in
//! each from `/proc/self/cgroup`, turned into directories on disk.

use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The group the mount shows at its root (`/` unless a container runtime mounted a
    /// sub-tree).
    pub root: String,
    /// `None` for the v2 unified hierarchy; the v1 controllers (and `name=` options) otherwise.
    pub controllers: Option<Vec<String>>,
}

impl CgroupMount {
    /// The directory of group `path` (as `/proc/<pid>/cgroup` names it) under this mount, if
    /// the mount shows it.
    pub fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let root = self.root.trim_end_matches('/');
        let rest = path.strip_prefix(root)?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        Some(join(&self.mount_point, rest))
    }

    pub fn has_controller(&self, name: &str) -> bool {
        self.controllers
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c == name))
    }
}

/// `base` joined with the cgroup path `path` (absolute or not).
pub fn join(base: &Path, path: &str) -> PathBuf {
    let mut dir = base.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
    }
    dir
}

/// The v1 mount options that are not controllers (besides `name=` and `release_agent=`).
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// The cgroup file systems in `mountinfo` (proc(5)'s `/proc/<pid>/mountinfo`).
pub fn parse_mountinfo(mountinfo: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(mount_point), Some(fstype)) =
            (fields.get(3), fields.get(4), fields.get(sep + 1))
        else {
            continue;
        };
        let controllers = match *fstype {
            "cgroup2" => None,
            "cgroup" => Some(
                fields
                    .get(sep + 3)
                    .unwrap_or(&"")
                    .split(',')
                    .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.contains('='))
                    .map(str::to_string)
                    .collect(),
            ),
            _ => continue,
        };
        mounts.push(CgroupMount {
            mount_point: PathBuf::from(unescape(mount_point)),
            root: unescape(root),
            controllers,
        });
    }
    mounts
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The groups of `/proc/<pid>/cgroup`: (controllers, path) per line, with an empty controller
/// list for the v2 unified hierarchy.
pub fn parse_proc_cgroup(content: &str) -> Vec<(Vec<String>, String)> {
    content
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((controllers, path.to_string()))
        })
        .collect()
}

/// The group of the v1 hierarchy holding `controller` in `groups`.
pub fn own_v1_group<'a>(groups: &'a [(Vec<String>, String)], controller: &str) -> Option<&'a str> {
    groups
        .iter()
        .find(|(c, _)| c.iter().any(|c| c == controller))
        .map(|(_, p)| p.as_str())
}

/// The group of the v2 unified hierarchy in `groups`.
pub fn own_v2_group(groups: &[(Vec<String>, String)]) -> Option<&str> {
    groups
        .iter()
        .find(|(c, _)| c.is_empty())
        .map(|(_, p)| p.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup rw shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
35 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct
36 31 0:31 / /sys/fs/cgroup/memory rw shared:14 - cgroup cgroup rw,memory
37 31 0:32 / /sys/fs/cgroup/cpuset rw shared:15 - cgroup cgroup rw,cpuset
38 31 0:33 / /sys/fs/cgroup/systemd rw shared:16 - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn mountinfo_lists_cgroup_hierarchies_and_their_controllers() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].controllers, None);
        assert_eq!(
            mounts[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert!(mounts[1].has_controller("cpu") && mounts[1].has_controller("cpuacct"));
        assert!(!mounts[3].has_controller("cpu"), "cpuset is not cpu");
        assert_eq!(mounts[4].controllers, Some(vec![]));
        let escaped = "40 31 0:34 /a\\040b /mnt/my\\040cgroup rw - cgroup cgroup rw,memory\n";
        let m = &parse_mountinfo(escaped)[0];
        assert_eq!(
            (m.root.as_str(), m.mount_point.as_path()),
            ("/a b", Path::new("/mnt/my cgroup"))
        );
    }

    #[test]
    fn own_groups_map_to_directories_under_their_mount() {
        let groups = parse_proc_cgroup(
            "4:memory:/process_api/7fbe\n1:cpu,cpuacct:/\n9:name=systemd:/user.slice\n0::/init.scope\n",
        );
        assert_eq!(own_v1_group(&groups, "memory"), Some("/process_api/7fbe"));
        assert_eq!(own_v1_group(&groups, "cpu"), Some("/"));
        assert_eq!(own_v1_group(&groups, "pids"), None);
        assert_eq!(own_v2_group(&groups), Some("/init.scope"));
        let mount = CgroupMount {
            mount_point: "/sys/fs/cgroup/memory".into(),
            root: "/".into(),
            controllers: Some(vec!["memory".into()]),
        };
        assert_eq!(
            mount.dir_of("/process_api/7fbe"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/7fbe"))
        );
        assert_eq!(
            mount.dir_of("/"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        // A mount of a sub-tree shows only the groups inside it.
        let sub = CgroupMount {
            root: "/docker/abc".into(),
            ..mount
        };
        assert_eq!(
            sub.dir_of("/docker/abc/x"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/x"))
        );
        assert_eq!(sub.dir_of("/docker/abcd"), None);
        assert_eq!(sub.dir_of("/other"), None);
    }
}
