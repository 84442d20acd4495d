//! Streaming exec on the docker runtime ([`Runtime::exec_stream`](super::Runtime::exec_stream)):
//! Docker's exec API, attached. The command runs in the container with its environment and
//! working directory (Docker's exec inherits them); its multiplexed output is split back into
//! stdout and stderr, the caller's stdin is copied to it and closed (a half-close of the attach
//! connection, which Docker turns into end of input) when the caller drops it, and the exit
//! code comes from inspecting the exec once its output ended.
//!
//! Docker has no call to stop an exec: dropping the session before the command ended kills
//! the exec's process by its host pid, when the agent sees the engine's processes (the pid's
//! cgroup names the container; otherwise it is left running and said so in the log).

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use futures::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream};

use super::{engine, DockerRuntime};
use crate::error::{Error, Result};
use crate::runtime::ExecSession;

/// How much output may wait in each of stdout and stderr for the caller to read it.
const PIPE: usize = 64 * 1024;
/// How long the exec may take to be reported ended once its output did.
const EXIT_WAIT: Duration = Duration::from_secs(10);
const EXIT_POLL: Duration = Duration::from_millis(20);

impl DockerRuntime {
    pub(super) async fn exec_session(
        &self,
        id: &str,
        argv: &[String],
        stdin: bool,
    ) -> Result<ExecSession> {
        let running = self
            .containers
            .lock()
            .expect("containers lock")
            .get(id)
            .is_some_and(|e| e.exit.borrow().is_none());
        if !running {
            return Err(Error::Runtime(format!("container {id} is not running")));
        }
        if argv.is_empty() {
            return Err(Error::Runtime("exec: empty command".into()));
        }
        let what = || format!("exec {argv:?} in container {id}");
        let config = CreateExecOptions {
            cmd: Some(argv.to_vec()),
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(id, config)
            .await
            .map_err(|e| engine(what(), e))?
            .id;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let StartExecResults::Attached { mut output, input } = self
            .docker
            .start_exec(&exec, Some(options))
            .await
            .map_err(|e| engine(what(), e))?
        else {
            return Err(Error::Runtime(format!("{}: started detached", what())));
        };
        let (mut out_tx, out_rx) = tokio::io::duplex(PIPE);
        let (mut err_tx, err_rx) = tokio::io::duplex(PIPE);
        let (stdin_tx, forward) = if stdin {
            let (tx, rx) = tokio::io::duplex(PIPE);
            (Some(tx), Some(tokio::spawn(forward_stdin(rx, input))))
        } else {
            // Kept open until the output ends: nothing is ever written to it.
            (None, Some(tokio::spawn(hold(input))))
        };
        let output_task = tokio::spawn(async move {
            // A caller that stopped reading one stream must not stop the other: write errors
            // are ignored, and the output is read to its end.
            let (mut out_open, mut err_open) = (true, true);
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(LogOutput::StdErr { message }) if err_open => {
                        err_open = err_tx.write_all(&message).await.is_ok()
                    }
                    Ok(LogOutput::StdErr { .. }) => {}
                    Ok(other) if out_open => {
                        out_open = out_tx.write_all(&other.into_bytes()).await.is_ok()
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "exec output ended");
                        break;
                    }
                }
            }
        });
        let guard = KillOnDrop {
            docker: self.docker.clone(),
            exec: exec.clone(),
            container: id.to_string(),
            armed: true,
            tasks: [
                Some(output_task.abort_handle()),
                forward.map(|f| f.abort_handle()),
            ],
        };
        let docker = self.docker.clone();
        let exit = async move {
            let mut guard = guard;
            let _ = output_task.await;
            let code = exit_code(&docker, &guard.exec).await;
            guard.armed = false;
            code
        };
        Ok(ExecSession {
            stdin: stdin_tx.map(|s| Box::pin(s) as Pin<Box<dyn tokio::io::AsyncWrite + Send>>),
            stdout: Box::pin(out_rx),
            stderr: Box::pin(err_rx),
            exit: Box::pin(exit),
        })
    }
}

/// Copy the caller's stdin to the exec's attach connection; when the caller closes (drops) it,
/// half-close the connection: Docker closes the command's stdin.
async fn forward_stdin(mut from: DuplexStream, mut to: Pin<Box<dyn tokio::io::AsyncWrite + Send>>) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        tracing::debug!(error = %e, "exec stdin ended");
    }
    let _ = to.shutdown().await;
}

/// Keep the attach connection's write side open, without writing to it.
async fn hold(input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>) {
    std::future::pending::<()>().await;
    drop(input);
}

/// The exit code of exec `exec` once Docker reports it ended (128 + N when signal N ended it,
/// as Docker reports it).
async fn exit_code(docker: &Docker, exec: &str) -> Result<i32> {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    loop {
        let inspect = docker
            .inspect_exec(exec)
            .await
            .map_err(|e| engine(format!("inspect exec {exec}"), e))?;
        if inspect.running != Some(true) {
            if let Some(code) = inspect.exit_code {
                return Ok(i32::try_from(code).unwrap_or(-1));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Runtime(format!(
                "exec {exec}: its output ended but Docker reports no exit code"
            )));
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// Ends an exec whose session was dropped before it ended (see the module docs).
struct KillOnDrop {
    docker: Docker,
    exec: String,
    container: String,
    armed: bool,
    tasks: [Option<tokio::task::AbortHandle>; 2],
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.tasks.iter().flatten().for_each(|t| t.abort());
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (docker, exec, container) = (
            self.docker.clone(),
            self.exec.clone(),
            self.container.clone(),
        );
        runtime.spawn(async move {
            let pid = match docker.inspect_exec(&exec).await {
                Ok(i) if i.running == Some(true) => i.pid.unwrap_or(0),
                _ => return,
            };
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            match rustix::process::Pid::from_raw(pid as i32) {
                Some(p) if pid > 0 && cgroup.contains(&container) => {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
                _ => tracing::warn!(%exec, %container, "an abandoned exec keeps running: Docker cannot stop it and its process is not visible here"),
            }
        });
    }
}
