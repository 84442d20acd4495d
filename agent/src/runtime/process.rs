//! The process runtime: each container is its command run as a child process of the agent, in a
//! process group of its own (so stopping it signals everything it started), with exactly the
//! environment the agent built, its working directory, and stdout/stderr piped to the agent,
//! which appends them to its log file with the time of each line
//! ([`container_log`](crate::container_log)). There is no image, filesystem or network isolation: pods are told apart by their own
//! loopback address (`POD_IP`, chosen by the agent) which they are expected to bind to.
//!
//! A container with [`Mount`](super::Mount)s runs in its own mount namespace where its volumes
//! are bind-mounted at their targets ([`mount_ns`](super::mount_ns)); exec'd commands join that
//! namespace. This needs root (`CAP_SYS_ADMIN`); without it [`Runtime::check_mounts`] says so.
//!
//! Memory and cpu limits are enforced through cgroups where the machine allows
//! ([`cgroups`](super::cgroups)): a container with limits runs in its own group, joined before
//! its command execs (exec'd commands join it too), and an OOM kill there ends it as
//! `OOMKilled`.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::sync::watch;

#[cfg(test)]
mod cgroup_tests;
mod session;

use super::cgroups::{Cgroups, ContainerCgroup};
use super::{BoxFuture, ContainerSpec, ExecOutput, Exit, Limits, Runtime, Started};
use crate::container_log::{self, Stream};
use crate::error::{Error, Result};

/// How long a container may take to go away after SIGKILL before stopping reports an error.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long an ended container's exit waits for its last output to reach its log (a process
/// that escaped its group and cgroup may hold its pipes open longer).
const LOG_DRAIN: Duration = Duration::from_secs(2);

pub struct ProcessRuntime {
    containers: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    /// Where containers' limits are enforced.
    cgroups: Arc<Cgroups>,
}

struct Entry {
    /// The process group: the main process's pid.
    pgid: Pid,
    exit: watch::Receiver<Option<Exit>>,
    /// The container's environment and working directory, for exec.
    env: Vec<(String, String)>,
    working_dir: std::path::PathBuf,
    /// The main process, whose mount namespace exec'd commands join, when it has mounts.
    mount_ns_of: Option<Pid>,
    /// The container's cgroup, which exec'd commands join, when it has limits to enforce.
    cgroup: Option<Arc<ContainerCgroup>>,
}

impl Default for ProcessRuntime {
    fn default() -> Self {
        ProcessRuntime::new()
    }
}

impl ProcessRuntime {
    /// A runtime enforcing no resource limits.
    pub fn new() -> ProcessRuntime {
        ProcessRuntime::with_cgroups(Arc::new(Cgroups::disabled(
            "the process runtime was started without cgroups",
        )))
    }

    /// A runtime enforcing limits through `cgroups` (see [`Cgroups::detect`]).
    pub fn with_cgroups(cgroups: Arc<Cgroups>) -> ProcessRuntime {
        ProcessRuntime {
            containers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            cgroups,
        }
    }

    async fn start_process(&self, spec: &ContainerSpec) -> Result<Started> {
        let Some((program, args)) = spec.argv.split_first() else {
            return Err(Error::Runtime(format!(
                "container {:?}: empty command line",
                spec.name
            )));
        };
        if !spec.working_dir.is_dir() {
            return Err(Error::Runtime(format!(
                "container {:?}: working directory {} does not exist on this node",
                spec.name,
                spec.working_dir.display()
            )));
        }
        if let Some(dir) = spec.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(|e| Error::io(&spec.log_path, e))?;
        let log_err = log.try_clone().map_err(|e| Error::io(&spec.log_path, e))?;
        let mount_plan = if spec.mounts.is_empty() {
            None
        } else {
            super::mount_ns::mount_namespaces()
                .map_err(|e| Error::Runtime(format!("container {:?}: {e}", spec.name)))?;
            let plan = super::mount_ns::MountPlan::new(&spec.mounts, &spec.working_dir)
                .map_err(|e| Error::Runtime(format!("container {:?}: {e}", spec.name)))?;
            Some(plan)
        };
        let mut command = tokio::process::Command::new(program);
        let pod_uid = &spec.engine.pod.uid;
        let cgroup = self
            .cgroups
            .create(pod_uid, &spec.name, &spec.engine.limits)
            .await
            .map_err(|e| {
                Error::Runtime(format!(
                    "container {:?}: cannot set up its cgroup: {e}",
                    spec.name
                ))
            })?
            .map(Arc::new);
        if let Some(group) = &cgroup {
            let join = match group.join() {
                Ok(join) => join,
                Err(e) => {
                    group.remove().await;
                    return Err(Error::Runtime(format!(
                        "container {:?}: cannot open its cgroup: {e}",
                        spec.name
                    )));
                }
            };
            // Joined first, so that everything after (mounts, exec) is accounted to it.
            // SAFETY: `apply` only writes to open files (no allocation, no locks).
            unsafe {
                command.pre_exec(move || join.apply());
            }
        }
        if let Some(plan) = mount_plan {
            // SAFETY: `apply` only makes system calls (no allocation, no locks).
            unsafe {
                command.pre_exec(move || plan.apply());
            }
        }
        let spawned = command
            .args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        if spawned.is_err() {
            if let Some(group) = &cgroup {
                group.remove().await;
            }
        }
        let mut child = spawned.map_err(|e| {
            let mounts = if spec.mounts.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = spec
                    .mounts
                    .iter()
                    .map(|m| format!("{} at {}", m.source.display(), m.target.display()))
                    .collect();
                format!(" (or mount {})", list.join(", "))
            };
            let cgroup = match &cgroup {
                Some(_) => " (or join its cgroup)",
                None => "",
            };
            Error::Runtime(format!(
                "container {:?}: cannot run {program:?}{mounts}{cgroup}: {e}",
                spec.name
            ))
        })?;
        let started_at = jiff::Timestamp::now();
        let mut copies = Vec::new();
        if let Some(out) = child.stdout.take() {
            let path = spec.log_path.clone();
            copies.push(tokio::spawn(container_log::copy(
                out,
                Stream::Stdout,
                log,
                path,
            )));
        }
        if let Some(err) = child.stderr.take() {
            let path = spec.log_path.clone();
            copies.push(tokio::spawn(container_log::copy(
                err,
                Stream::Stderr,
                log_err,
                path,
            )));
        }
        let pid = child.id();
        let pgid = pid
            .and_then(|p| Pid::from_raw(p as i32))
            .ok_or_else(|| Error::Runtime(format!("container {:?}: no process id", spec.name)))?;
        let (tx, rx) = watch::channel(None);
        let name = spec.name.clone();
        let group = cgroup.clone();
        tokio::spawn(async move {
            let (exit_code, signal) = match child.wait().await {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => (code, None),
                    (None, Some(sig)) => (128 + sig, Some(sig)),
                    (None, None) => (128, None),
                },
                Err(e) => {
                    tracing::warn!(container = %name, error = %e, "cannot wait for container process");
                    (128, None)
                }
            };
            // A container ends with its main process: whatever it left behind goes too.
            let _ = kill_process_group(pgid, Signal::KILL);
            let finished_at = jiff::Timestamp::now();
            // Read before the group goes (with what is left in it).
            let oom_killed = match &group {
                Some(group) => {
                    let oom = group.oom_killed(signal == Some(Signal::KILL.as_raw()));
                    group.remove().await;
                    oom
                }
                None => false,
            };
            let drained = tokio::time::timeout(LOG_DRAIN, futures::future::join_all(copies));
            if drained.await.is_err() {
                tracing::debug!(container = %name, "output still open after the container ended");
            }
            let _ = tx.send(Some(Exit {
                exit_code,
                signal,
                finished_at,
                oom_killed,
            }));
        });
        let id = format!(
            "{}-{}",
            pgid.as_raw_nonzero(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        self.containers.lock().expect("containers lock").insert(
            id.clone(),
            Entry {
                pgid,
                exit: rx.clone(),
                env: spec.env.clone(),
                working_dir: spec.working_dir.clone(),
                mount_ns_of: (!spec.mounts.is_empty()).then_some(pgid),
                cgroup,
            },
        );
        Ok(Started {
            id,
            pid,
            started_at,
            exit: rx,
        })
    }

    async fn stop_process(&self, id: &str, grace: Duration) -> Result<Exit> {
        let (pgid, mut exit) = {
            let containers = self.containers.lock().expect("containers lock");
            let entry = containers
                .get(id)
                .ok_or_else(|| Error::Runtime(format!("no container with id {id}")))?;
            (entry.pgid, entry.exit.clone())
        };
        if let Some(exit) = *exit.borrow() {
            return Ok(exit);
        }
        let _ = kill_process_group(pgid, Signal::TERM);
        let exited = |exit: &mut watch::Receiver<Option<Exit>>| {
            let mut exit = exit.clone();
            async move { exit.wait_for(Option::is_some).await.ok().and_then(|e| *e) }
        };
        if let Ok(Some(e)) = tokio::time::timeout(grace, exited(&mut exit)).await {
            return Ok(e);
        }
        let _ = kill_process_group(pgid, Signal::KILL);
        match tokio::time::timeout(KILL_WAIT, exited(&mut exit)).await {
            Ok(Some(e)) => Ok(e),
            _ => Err(Error::Runtime(format!(
                "container {id} (process group {}) did not exit after SIGKILL",
                pgid.as_raw_nonzero()
            ))),
        }
    }
}

impl ProcessRuntime {
    async fn exec_process(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let ExecContext {
            env,
            working_dir,
            mount_ns_of,
            cgroup,
        } = self.exec_context(id)?;
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::Runtime("exec: empty command".into()));
        };
        let mut command = tokio::process::Command::new(program);
        join_cgroup(&mut command, cgroup.as_deref(), id)?;
        if let Some(pid) = mount_ns_of {
            let join = super::mount_ns::JoinMountNs::new(pid.as_raw_nonzero().get(), &working_dir)
                .map_err(|e| Error::Runtime(format!("exec in container {id}: {e}")))?;
            // SAFETY: `apply` only makes system calls (no allocation, no locks).
            unsafe {
                command.pre_exec(move || join.apply());
            }
        }
        let child = command
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(&working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Runtime(format!("exec: cannot run {program:?}: {e}")))?;
        let pgid = child.id().and_then(|p| Pid::from_raw(p as i32));
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                if let Some(pgid) = pgid {
                    let _ = kill_process_group(pgid, Signal::KILL);
                }
                let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                output.push_str(&String::from_utf8_lossy(&out.stderr));
                let exit_code = match (out.status.code(), out.status.signal()) {
                    (Some(code), _) => code,
                    (None, Some(sig)) => 128 + sig,
                    (None, None) => 128,
                };
                Ok(ExecOutput { exit_code, output })
            }
            Ok(Err(e)) => Err(Error::Runtime(format!("exec {program:?}: {e}"))),
            Err(_) => {
                if let Some(pgid) = pgid {
                    let _ = kill_process_group(pgid, Signal::KILL);
                }
                Err(Error::Runtime(format!(
                    "command {argv:?} timed out after {}s",
                    timeout.as_secs_f64()
                )))
            }
        }
    }
}

/// What a command exec'd in a running container runs with.
struct ExecContext {
    env: Vec<(String, String)>,
    working_dir: std::path::PathBuf,
    /// The process whose mount namespace it joins.
    mount_ns_of: Option<Pid>,
    cgroup: Option<Arc<ContainerCgroup>>,
}

impl ProcessRuntime {
    /// What a command exec'd in running container `id` runs with: its environment, working
    /// directory, mount namespace and cgroup.
    fn exec_context(&self, id: &str) -> Result<ExecContext> {
        let containers = self.containers.lock().expect("containers lock");
        let entry = containers
            .get(id)
            .filter(|e| e.exit.borrow().is_none())
            .ok_or_else(|| Error::Runtime(format!("container {id} is not running")))?;
        Ok(ExecContext {
            env: entry.env.clone(),
            working_dir: entry.working_dir.clone(),
            mount_ns_of: entry.mount_ns_of,
            cgroup: entry.cgroup.clone(),
        })
    }
}

/// Have `command` join container `id`'s cgroup (when it has one) before it execs, like the
/// container's own processes.
fn join_cgroup(
    command: &mut tokio::process::Command,
    cgroup: Option<&ContainerCgroup>,
    id: &str,
) -> Result<()> {
    if let Some(group) = cgroup {
        let join = group
            .join()
            .map_err(|e| Error::Runtime(format!("exec in container {id}: its cgroup: {e}")))?;
        // SAFETY: `apply` only writes to open files (no allocation, no locks).
        unsafe {
            command.pre_exec(move || join.apply());
        }
    }
    Ok(())
}

impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<Started>> {
        Box::pin(self.start_process(spec))
    }

    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<Exit>> {
        Box::pin(self.stop_process(id, grace))
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput>> {
        Box::pin(self.exec_process(id, argv, timeout))
    }

    fn remove(&self, id: &str) {
        self.containers.lock().expect("containers lock").remove(id);
    }

    fn check_mounts(&self) -> std::result::Result<(), String> {
        super::mount_ns::mount_namespaces()
    }

    fn limits_enforcement(&self) -> String {
        self.cgroups.summary()
    }

    fn unenforced_limits(&self, limits: &Limits) -> Option<String> {
        self.cgroups.unenforced(limits)
    }

    fn exec_stream<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        stdin: bool,
    ) -> BoxFuture<'a, Result<super::ExecSession>> {
        Box::pin(self.exec_session(id, argv, stdin))
    }
}

impl Drop for ProcessRuntime {
    /// The containers are the agent's children: they do not outlive it.
    fn drop(&mut self) {
        let containers = self.containers.get_mut().expect("containers lock");
        for entry in containers.values() {
            if entry.exit.borrow().is_none() {
                let _ = kill_process_group(entry.pgid, Signal::KILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: "c".into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
                ("GREETING".into(), "hi there".into()),
            ],
            working_dir: dir.to_path_buf(),
            log_path: dir.join("logs/c.log"),
            mounts: vec![],
            engine: Default::default(),
        }
    }

    #[tokio::test]
    async fn runs_with_env_and_logs_and_reports_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let s = rt
            .start(&spec(
                dir.path(),
                "echo $GREETING; pwd; echo oops >&2; exit 3",
            ))
            .await
            .unwrap();
        let mut exit = s.exit.clone();
        let e = exit.wait_for(Option::is_some).await.unwrap().unwrap();
        assert_eq!((e.exit_code, e.signal), (3, None));
        let file = std::fs::read(dir.path().join("logs/c.log")).unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        // Each line a record with its time and stream (the two streams are two pipes: lines
        // of one keep their order, the streams interleave as their output arrived).
        let text = String::from_utf8(file).unwrap();
        let of = |stream: &str| -> Vec<String> {
            text.lines()
                .map(|l| container_log::parse(l.as_bytes()))
                .filter(|r| r.stream.map(container_log::Stream::name) == Some(stream))
                .map(|r| String::from_utf8_lossy(r.content).into_owned())
                .collect()
        };
        assert_eq!(
            of("stdout"),
            ["hi there".to_string(), cwd.display().to_string()]
        );
        assert_eq!(of("stderr"), ["oops"]);
        // Stopping an exited container answers its exit.
        assert_eq!(rt.stop(&s.id, Duration::ZERO).await.unwrap(), e);
    }

    #[tokio::test]
    async fn stop_signals_the_whole_group_and_kills_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        // The shell ignores SIGTERM; its child does not matter: the group is killed.
        let s = rt
            .start(&spec(
                dir.path(),
                "trap '' TERM; sleep 1000 & echo ready; wait",
            ))
            .await
            .unwrap();
        // Signal only once the shell ignores SIGTERM.
        let log = dir.path().join("logs/c.log");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready")) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the shell never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = rt.stop(&s.id, Duration::from_millis(200)).await.unwrap();
        assert_eq!((e.exit_code, e.signal), (137, Some(9)));
        // SIGKILL reaches the rest of the group asynchronously: poll until none is left.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let live = live_in_group(s.pid.unwrap());
            if live.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still alive in the group 10 s after the kill: {live:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The processes of group `pgid` that are alive (not zombies waiting for a reaper).
    fn live_in_group(pgid: u32) -> Vec<u32> {
        let mut live = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            if fields[2] == pgid.to_string() && fields[0] != "Z" {
                live.push(pid);
            }
        }
        live
    }

    #[tokio::test]
    async fn a_missing_program_or_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let mut s = spec(dir.path(), "");
        s.argv = vec!["/nonexistent/program".into()];
        let err = rt.start(&s).await.unwrap_err().to_string();
        assert!(err.contains("cannot run \"/nonexistent/program\""), "{err}");
        let mut s = spec(dir.path(), "true");
        s.working_dir = dir.path().join("missing");
        let err = rt.start(&s).await.unwrap_err().to_string();
        assert!(err.contains("working directory"), "{err}");
    }
}
