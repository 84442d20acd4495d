//! Streaming exec on the process runtime ([`Runtime::exec_stream`](super::Runtime::exec_stream)):
//! the command runs like an exec probe's (the container's environment, working directory,
//! mount namespace and cgroup, a process group of its own) with piped stdio and no timeout; when the session
//! is dropped before it ended, its whole process group is killed.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use rustix::process::{kill_process_group, Pid, Signal};

use super::ProcessRuntime;
use crate::error::{Error, Result};
use crate::runtime::ExecSession;

impl ProcessRuntime {
    pub(super) async fn exec_session(
        &self,
        id: &str,
        argv: &[String],
        stdin: bool,
    ) -> Result<ExecSession> {
        let super::ExecContext {
            env,
            working_dir,
            mount_ns_of,
            cgroup,
        } = self.exec_context(id)?;
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::Runtime("exec: empty command".into()));
        };
        let mut command = tokio::process::Command::new(program);
        super::join_cgroup(&mut command, cgroup.as_deref(), id)?;
        if let Some(pid) = mount_ns_of {
            let join = crate::runtime::mount_ns::JoinMountNs::new(
                pid.as_raw_nonzero().get(),
                &working_dir,
            )
            .map_err(|e| Error::Runtime(format!("exec in container {id}: {e}")))?;
            // SAFETY: `apply` only makes system calls (no allocation, no locks).
            unsafe {
                command.pre_exec(move || join.apply());
            }
        }
        let mut child = command
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(&working_dir)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Runtime(format!("exec: cannot run {program:?}: {e}")))?;
        let missing = || Error::Runtime("exec: the command's output pipes are missing".into());
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let stdin = child
            .stdin
            .take()
            .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
        let group = GroupGuard(child.id().and_then(|p| Pid::from_raw(p as i32)));
        let program = program.clone();
        let exit = async move {
            let status = child
                .wait()
                .await
                .map_err(|e| Error::Runtime(format!("exec {program:?}: {e}")));
            // Whatever it left behind goes with it (the guard, dropped here).
            drop(group);
            let status = status?;
            Ok(match (status.code(), status.signal()) {
                (Some(code), _) => code,
                (None, Some(sig)) => 128 + sig,
                (None, None) => 128,
            })
        };
        Ok(ExecSession {
            stdin,
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            exit: Box::pin(exit),
        })
    }
}

/// Kills an exec'd command's process group when dropped.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::runtime::{ContainerSpec, ProcessRuntime, Runtime};

    #[tokio::test]
    async fn a_session_streams_stdin_to_stdout_and_reports_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let spec = ContainerSpec {
            name: "c".into(),
            argv: vec!["sleep".into(), "1000".into()],
            env: vec![
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
                ("WHO".into(), "container".into()),
            ],
            working_dir: dir.path().to_path_buf(),
            log_path: dir.path().join("c.log"),
            mounts: Vec::new(),
            engine: Default::default(),
        };
        let started = rt.start(&spec).await.unwrap();
        let argv: Vec<String> = ["sh", "-c", "echo $WHO; tr a-z A-Z; echo bad >&2; exit 7"]
            .map(String::from)
            .to_vec();
        let mut s = rt.exec_stream(&started.id, &argv, true).await.unwrap();
        let mut stdin = s.stdin.take().unwrap();
        stdin.write_all(b"hello\n").await.unwrap();
        drop(stdin);
        let (mut out, mut err) = (String::new(), String::new());
        s.stdout.read_to_string(&mut out).await.unwrap();
        s.stderr.read_to_string(&mut err).await.unwrap();
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("container\nHELLO\n", "bad\n")
        );
        assert_eq!(s.exit.await.unwrap(), 7);
        let not_running = rt.exec_stream("nope", &argv, false).await.err().unwrap();
        assert!(not_running.to_string().contains("is not running"));
    }
}
