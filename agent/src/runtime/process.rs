//! The process runtime: each container is its command run as a child process of the agent, in a
//! process group of its own (so stopping it signals everything it started), with exactly the
//! environment the agent built, its working directory, and stdout/stderr appended to its log
//! file. There is no image, filesystem or network isolation: pods are told apart by their own
//! loopback address (`POD_IP`, chosen by the agent) which they are expected to bind to.
//!
//! A container with [`Mount`](super::Mount)s runs in its own mount namespace where its volumes
//! are bind-mounted at their targets ([`mount_ns`](super::mount_ns)); exec'd commands join that
//! namespace. This needs root (`CAP_SYS_ADMIN`); without it [`Runtime::check_mounts`] says so.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::sync::watch;

mod session;

use super::{BoxFuture, ContainerSpec, ExecOutput, Exit, Runtime, Started};
use crate::error::{Error, Result};

/// How long a container may take to go away after SIGKILL before stopping reports an error.
const KILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct ProcessRuntime {
    containers: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
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
}

impl ProcessRuntime {
    pub fn new() -> ProcessRuntime {
        ProcessRuntime::default()
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
        let mut command = tokio::process::Command::new(program);
        if !spec.mounts.is_empty() {
            super::mount_ns::mount_namespaces()
                .map_err(|e| Error::Runtime(format!("container {:?}: {e}", spec.name)))?;
            let plan = super::mount_ns::MountPlan::new(&spec.mounts, &spec.working_dir)
                .map_err(|e| Error::Runtime(format!("container {:?}: {e}", spec.name)))?;
            // SAFETY: `apply` only makes system calls (no allocation, no locks).
            unsafe {
                command.pre_exec(move || plan.apply());
            }
        }
        let mut child = command
            .args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
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
                Error::Runtime(format!(
                    "container {:?}: cannot run {program:?}{mounts}: {e}",
                    spec.name
                ))
            })?;
        let started_at = jiff::Timestamp::now();
        let pid = child.id();
        let pgid = pid
            .and_then(|p| Pid::from_raw(p as i32))
            .ok_or_else(|| Error::Runtime(format!("container {:?}: no process id", spec.name)))?;
        let (tx, rx) = watch::channel(None);
        let name = spec.name.clone();
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
            let _ = tx.send(Some(Exit {
                exit_code,
                signal,
                finished_at: jiff::Timestamp::now(),
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
        let (env, working_dir, mount_ns_of) = {
            let containers = self.containers.lock().expect("containers lock");
            let entry = containers
                .get(id)
                .filter(|e| e.exit.borrow().is_none())
                .ok_or_else(|| Error::Runtime(format!("container {id} is not running")))?;
            (
                entry.env.clone(),
                entry.working_dir.clone(),
                entry.mount_ns_of,
            )
        };
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::Runtime("exec: empty command".into()));
        };
        let mut command = tokio::process::Command::new(program);
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
        let log = std::fs::read_to_string(dir.path().join("logs/c.log")).unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(log, format!("hi there\n{}\noops\n", cwd.display()));
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
        assert_eq!(live_in_group(s.pid.unwrap()), Vec::<u32>::new());
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
