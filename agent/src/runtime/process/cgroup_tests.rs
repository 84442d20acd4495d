//! Tests of the process runtime's resource limits on this machine's real cgroups: they run
//! where the agent may create cgroups (root, a writable memory and cpu hierarchy) and say
//! that they were skipped otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::cgroups::{self, CgroupRoot, Cgroups};
use crate::runtime::{ContainerSpec, Limits, ProcessRuntime, Runtime};

/// Cgroups for a node of this test process, or `None` (with a message) when `limits` cannot be
/// enforced here.
fn cgroups_for(test: &str, limits: &Limits) -> Option<Arc<Cgroups>> {
    let node = format!("unit-{test}-{}", std::process::id());
    let cgroups = Cgroups::detect(&CgroupRoot::Auto, &node);
    if let Some(why) = cgroups.unenforced(limits) {
        eprintln!("SKIPPED {test}: resource limits are unenforced on this machine: {why}");
        return None;
    }
    Some(Arc::new(cgroups))
}

fn spec(dir: &std::path::Path, script: &str, limits: Limits) -> ContainerSpec {
    let mut engine = crate::runtime::EngineSpec {
        limits,
        ..Default::default()
    };
    engine.pod.uid = "uid-1".into();
    ContainerSpec {
        name: "c".into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        working_dir: dir.to_path_buf(),
        log_path: dir.join("c.log"),
        mounts: vec![],
        engine,
    }
}

/// The directory of process `pid`'s group in the hierarchy of `controller`.
fn group_of(pid: u32, controller: &str) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mounts = cgroups::parse_mountinfo(&mountinfo);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let groups = cgroups::parse_proc_cgroup(&own);
    if let Some(mount) = mounts.iter().find(|m| m.has_controller(controller)) {
        let (_, path) = groups
            .iter()
            .find(|(c, _)| c.iter().any(|c| c == controller))?;
        return mount.dir_of(path);
    }
    let mount = mounts.iter().find(|m| m.controllers.is_none())?;
    let (_, path) = groups.iter().find(|(c, _)| c.is_empty())?;
    mount.dir_of(path)
}

#[tokio::test]
async fn a_container_runs_in_groups_with_its_limits_which_go_when_it_stops() {
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        nano_cpus: Some(250_000_000),
    };
    let Some(cgroups) = cgroups_for("limits", &limits) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::with_cgroups(cgroups);
    let started = rt
        .start(&spec(dir.path(), "exec sleep 1000", limits))
        .await
        .unwrap();
    let pid = started.pid.unwrap();
    let memory = group_of(pid, "memory").unwrap();
    let cpu = group_of(pid, "cpu").unwrap();
    assert!(memory.ends_with("pod-uid-1/c"), "{}", memory.display());
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap().trim().to_string();
    if memory.join("memory.max").exists() {
        assert_eq!(read(memory.join("memory.max")), "67108864");
        assert_eq!(read(cpu.join("cpu.max")), "25000 100000");
    } else {
        assert_eq!(read(memory.join("memory.limit_in_bytes")), "67108864");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "25000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
    }
    // An exec'd command joins the container's groups.
    let argv: Vec<String> = ["sh", "-c", "cat /proc/self/cgroup"]
        .map(String::from)
        .to_vec();
    let out = rt
        .exec(&started.id, &argv, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(out.output.contains("pod-uid-1/c"), "{}", out.output);

    let exit = rt.stop(&started.id, Duration::from_secs(5)).await.unwrap();
    assert!(!exit.oom_killed);
    assert!(!memory.exists() && !cpu.exists(), "the groups are removed");
    assert!(
        !memory.parent().unwrap().exists(),
        "the pod's group is removed"
    );
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let limits = Limits {
        memory_bytes: Some(16 << 20),
        nano_cpus: None,
    };
    let Some(cgroups) = cgroups_for("oom", &limits) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::with_cgroups(cgroups);
    // `tail` keeps the one endless "line" of /dev/zero in memory.
    let started = rt
        .start(&spec(dir.path(), "echo start; exec tail /dev/zero", limits))
        .await
        .unwrap();
    let mut exit = started.exit.clone();
    let exit = tokio::time::timeout(Duration::from_secs(60), exit.wait_for(Option::is_some))
        .await
        .expect("the container ends")
        .unwrap()
        .unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    // SIGKILL, as the kernel kills.
    assert_eq!(exit.exit_code, 137, "{exit:?}");
}
