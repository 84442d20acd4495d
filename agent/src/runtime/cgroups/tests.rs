//! Tests of the cgroup arithmetic and file layout, against temporary directories posing as
//! cgroup mounts (the kernel's own files are created by the tests where the code reads them).

use std::collections::HashMap;

use super::*;

fn limits(memory: Option<i64>, nano_cpus: Option<i64>) -> Limits {
    Limits {
        memory_bytes: memory,
        nano_cpus,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn cpu_quota_is_the_share_of_a_100ms_period_and_at_least_1ms() {
    assert_eq!(cpu_quota_us(1_000_000_000), 100_000);
    assert_eq!(cpu_quota_us(250_000_000), 25_000);
    assert_eq!(cpu_quota_us(2_500_000_000), 250_000);
    assert_eq!(cpu_quota_us(1_000_000), MIN_CPU_QUOTA_US); // 1m
    assert_eq!(cpu_quota_us(0), MIN_CPU_QUOTA_US);
    assert_eq!(cpu_quota_us(i64::MAX), i64::MAX / 10_000);
}

#[test]
fn limit_files_follow_the_cgroup_version() {
    let l = limits(Some(64 << 20), Some(500_000_000));
    let v1_mem = limit_files(Controller::Memory, Version::V1, &l);
    assert_eq!(
        v1_mem,
        (
            vec![("memory.limit_in_bytes", "67108864".to_string())],
            vec![("memory.memsw.limit_in_bytes", "67108864".to_string())]
        )
    );
    let v2_mem = limit_files(Controller::Memory, Version::V2, &l);
    assert_eq!(
        v2_mem,
        (
            vec![("memory.max", "67108864".to_string())],
            vec![("memory.swap.max", "0".to_string())]
        )
    );
    let v1_cpu = limit_files(Controller::Cpu, Version::V1, &l).0;
    assert_eq!(
        v1_cpu,
        vec![
            ("cpu.cfs_period_us", "100000".to_string()),
            ("cpu.cfs_quota_us", "50000".to_string())
        ]
    );
    let v2_cpu = limit_files(Controller::Cpu, Version::V2, &l).0;
    assert_eq!(v2_cpu, vec![("cpu.max", "50000 100000".to_string())]);
    // Nothing to write for a limit that is not set.
    assert_eq!(
        limit_files(Controller::Cpu, Version::V1, &limits(Some(1), None)),
        Default::default()
    );
}

#[test]
fn cgroup_roots_parse() {
    assert_eq!("auto".parse::<CgroupRoot>(), Ok(CgroupRoot::Auto));
    assert_eq!("none".parse::<CgroupRoot>(), Ok(CgroupRoot::Disabled));
    assert_eq!(
        "/rkube".parse::<CgroupRoot>(),
        Ok(CgroupRoot::Path("/rkube".into()))
    );
    assert!("rkube".parse::<CgroupRoot>().is_err());
    assert!("/a/../b".parse::<CgroupRoot>().is_err());
}

/// A v1 layout: `memory` and `cpu,cpuacct` hierarchies under `dir`.
fn v1_mounts(dir: &Path) -> Vec<CgroupMount> {
    let mem = dir.join("memory");
    let cpu = dir.join("cpu,cpuacct");
    std::fs::create_dir_all(&mem).unwrap();
    std::fs::create_dir_all(&cpu).unwrap();
    vec![
        CgroupMount {
            mount_point: mem,
            root: "/".into(),
            controllers: Some(vec!["memory".into()]),
        },
        CgroupMount {
            mount_point: cpu,
            root: "/".into(),
            controllers: Some(vec!["cpu".into(), "cpuacct".into()]),
        },
    ]
}

#[tokio::test]
async fn v1_groups_live_under_the_agents_own_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let mounts = v1_mounts(tmp.path());
    let own = parse_proc_cgroup("4:memory:/jobs/7\n1:cpu,cpuacct:/\n0::/\n");
    let cgroups = Arc::new(Cgroups::detect_in(&mounts, &own, &CgroupRoot::Auto, "n1"));
    assert_eq!(cgroups.summary(), "enforced (cgroup v1: memory, cpu)");
    let mem_base = tmp.path().join("memory/jobs/7/rkube-n1");
    let cpu_base = tmp.path().join("cpu,cpuacct/rkube-n1");
    // The probes took an unlimited value.
    assert_eq!(read(&mem_base.join("probe/memory.limit_in_bytes")), "-1");
    assert_eq!(read(&cpu_base.join("probe/cpu.cfs_quota_us")), "-1");
    assert_eq!(cgroups.unenforced(&limits(Some(1), Some(1))), None);

    let l = limits(Some(64 << 20), Some(250_000_000));
    let group = cgroups.create("uid-1", "web", &l).await.unwrap().unwrap();
    let mem = mem_base.join("pod-uid-1/web");
    let cpu = cpu_base.join("pod-uid-1/web");
    assert_eq!(group.dirs().collect::<Vec<_>>(), vec![&mem, &cpu]);
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
    // Swap accounting is off on this "kernel": its file is not there, so it is not written.
    assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "25000");

    // A child joins by writing "0" (itself) to every group's cgroup.procs.
    for dir in [&mem, &cpu] {
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
    }
    group.join().unwrap().apply().unwrap();
    assert_eq!(read(&mem.join("cgroup.procs")), "0");
    assert_eq!(read(&cpu.join("cgroup.procs")), "0");

    // Only the hierarchies of the limits set: a memory-only container has no cpu group. Its
    // group is left from an earlier run (reused), on a "kernel" accounting swap.
    std::fs::create_dir_all(mem_base.join("pod-uid-1/side")).unwrap();
    std::fs::write(
        mem_base.join("pod-uid-1/side/memory.memsw.limit_in_bytes"),
        "",
    )
    .unwrap();
    let only_memory = cgroups
        .create("uid-1", "side", &limits(Some(4096), None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only_memory.dirs().count(), 1);
    let side = mem_base.join("pod-uid-1/side");
    assert_eq!(read(&side.join("memory.limit_in_bytes")), "4096");
    assert_eq!(read(&side.join("memory.memsw.limit_in_bytes")), "4096");
    assert!(!cpu_base.join("pod-uid-1/side").exists());
    // No limits: no group.
    assert!(cgroups
        .create("uid-1", "free", &limits(None, None))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn v2_groups_enable_their_controllers_and_set_max_files() {
    let tmp = tempfile::tempdir().unwrap();
    let unified = tmp.path().join("unified");
    std::fs::create_dir_all(unified.join("agent.scope")).unwrap();
    std::fs::write(
        unified.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap();
    let mounts = vec![CgroupMount {
        mount_point: unified.clone(),
        root: "/".into(),
        controllers: None,
    }];
    let own = parse_proc_cgroup("0::/agent.scope\n");
    let cgroups = Arc::new(Cgroups::detect_in(&mounts, &own, &CgroupRoot::Auto, "n2"));
    assert_eq!(cgroups.summary(), "enforced (cgroup v2: memory, cpu)");
    let base = unified.join("agent.scope/rkube-n2");
    // Controllers were enabled below the agent's group and below the base (this directory
    // keeps the last write; the kernel's file accumulates them).
    assert!(read(&unified.join("agent.scope/cgroup.subtree_control")).starts_with('+'));
    assert!(read(&base.join("cgroup.subtree_control")).starts_with('+'));
    assert_eq!(read(&base.join("probe/cpu.max")), "max");

    let pod = base.join("pod-u");
    std::fs::create_dir_all(pod.join("c")).unwrap();
    std::fs::write(pod.join("c/memory.swap.max"), "max").unwrap();
    let l = limits(Some(1 << 20), Some(1_500_000_000));
    let group = cgroups.create("u", "c", &l).await.unwrap().unwrap();
    // One group for both controllers in the unified hierarchy.
    assert_eq!(group.dirs().collect::<Vec<_>>(), vec![&pod.join("c")]);
    assert_eq!(read(&pod.join("c/memory.max")), "1048576");
    assert_eq!(read(&pod.join("c/memory.swap.max")), "0");
    assert_eq!(read(&pod.join("c/cpu.max")), "150000 100000");
}

#[test]
fn on_v2_a_busy_own_group_puts_the_base_at_the_top() {
    let tmp = tempfile::tempdir().unwrap();
    let unified = tmp.path().join("unified");
    // A control file that cannot be written, as the kernel refuses to enable controllers
    // below a group holding processes.
    std::fs::create_dir_all(unified.join("session.scope/cgroup.subtree_control")).unwrap();
    std::fs::write(unified.join("cgroup.controllers"), "cpu memory\n").unwrap();
    std::fs::write(unified.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
    let mounts = vec![CgroupMount {
        mount_point: unified.clone(),
        root: "/".into(),
        controllers: None,
    }];
    let own = parse_proc_cgroup("0::/session.scope\n");
    let cgroups = Cgroups::detect_in(&mounts, &own, &CgroupRoot::Auto, "n3");
    assert_eq!(cgroups.summary(), "enforced (cgroup v2: memory, cpu)");
    assert!(unified.join("rkube-n3/probe/memory.max").is_file());
    assert!(!unified.join("session.scope/rkube-n3").exists());
}

#[test]
fn an_explicit_root_is_used_under_every_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let mounts = v1_mounts(tmp.path());
    let root = CgroupRoot::Path("/rkube/nodes".into());
    let cgroups = Cgroups::detect_in(&mounts, &[], &root, "n1");
    assert_eq!(cgroups.summary(), "enforced (cgroup v1: memory, cpu)");
    assert!(tmp.path().join("memory/rkube/nodes/probe").is_dir());
    assert!(tmp.path().join("cpu,cpuacct/rkube/nodes/probe").is_dir());
}

#[test]
fn what_cannot_be_enforced_is_said_with_why() {
    let off = Cgroups::detect_in(&[], &[], &CgroupRoot::Disabled, "n1");
    assert_eq!(off.summary(), "unenforced: disabled by --cgroup-root none");
    assert_eq!(
        off.unenforced(&limits(Some(64 << 20), Some(250_000_000)))
            .as_deref(),
        Some(
            "memory limit 67108864 bytes is not enforced: disabled by --cgroup-root none; \
             cpu limit 250m is not enforced: disabled by --cgroup-root none"
        )
    );
    assert_eq!(off.unenforced(&limits(None, None)), None);

    // Only a memory hierarchy, and a v2 hierarchy without the cpu controller.
    let tmp = tempfile::tempdir().unwrap();
    let mut mounts = v1_mounts(tmp.path());
    mounts.truncate(1);
    let unified = tmp.path().join("unified");
    std::fs::create_dir_all(&unified).unwrap();
    std::fs::write(unified.join("cgroup.controllers"), "hugetlb\n").unwrap();
    mounts.push(CgroupMount {
        mount_point: unified,
        root: "/".into(),
        controllers: None,
    });
    let own = parse_proc_cgroup("4:memory:/\n0::/\n");
    let partly = Cgroups::detect_in(&mounts, &own, &CgroupRoot::Auto, "n1");
    assert_eq!(
        partly.summary(),
        "partly enforced (cgroup v1: memory); cpu unenforced: no cgroup hierarchy has the cpu \
         controller (cgroup v2 offers: hugetlb)"
    );
    assert_eq!(partly.unenforced(&limits(Some(1), None)), None);
    assert!(partly
        .unenforced(&limits(Some(1), Some(1)))
        .unwrap()
        .starts_with("cpu limit 1m is not enforced: no cgroup hierarchy has the cpu controller"));

    // Unwritable: a file where the base should be.
    let tmp = tempfile::tempdir().unwrap();
    let mounts = v1_mounts(tmp.path());
    std::fs::write(tmp.path().join("memory/rkube-n1"), "").unwrap();
    let broken = Cgroups::detect_in(&mounts, &own_all(), &CgroupRoot::Auto, "n1");
    assert!(
        broken
            .summary()
            .starts_with("partly enforced (cgroup v1: cpu); memory unenforced: cannot create"),
        "{}",
        broken.summary()
    );
}

fn own_all() -> Vec<(Vec<String>, String)> {
    parse_proc_cgroup("4:memory:/\n1:cpu,cpuacct:/\n")
}

#[test]
fn oom_kills_are_read_from_the_memory_group() {
    let files = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let check = |version, f: &HashMap<String, String>, killed| {
        oom_killed(version, |name| f.get(name).cloned(), killed)
    };
    let v1 = files(&[(
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    )]);
    assert!(check(Version::V1, &v1, true));
    // Counted even when a child was the victim and the main process exited on its own.
    assert!(check(Version::V1, &v1, false));
    let v1_none = files(&[(
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    )]);
    assert!(!check(Version::V1, &v1_none, true));
    // Kernels before 4.13 have no oom_kill counter: peak usage at the limit with failed charges.
    let old = files(&[
        ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
        ("memory.max_usage_in_bytes", "67108864\n"),
        ("memory.limit_in_bytes", "67108864\n"),
        ("memory.failcnt", "12\n"),
    ]);
    assert!(check(Version::V1, &old, true));
    assert!(!check(Version::V1, &old, false));
    let v2 = files(&[(
        "memory.events",
        "low 0\nhigh 0\nmax 20\noom 1\noom_kill 1\n",
    )]);
    assert!(check(Version::V2, &v2, false));
    let v2_none = files(&[(
        "memory.events",
        "low 0\nhigh 0\nmax 20\noom 0\noom_kill 0\n",
    )]);
    assert!(!check(Version::V2, &v2_none, true));
    assert!(!check(Version::V2, &files(&[]), true));
}
