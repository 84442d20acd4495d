//! Container runtimes behind one trait. The agent decides what runs and when (lifecycle,
//! restarts, back-off, status); a runtime only starts a container, reports its exit, runs
//! commands in it (exec probes) and stops it. `process` (the default, needing nothing
//! installed) runs each container's command as a child process; a Docker Engine runtime is a
//! later slice and is refused with a clear error.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Result;

pub mod process;

pub use process::ProcessRuntime;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything a runtime needs to start one container, already resolved by the agent (env
/// expanded, command line built).
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The container's name in its pod.
    pub name: String,
    /// The command line: `command` followed by `args`.
    pub argv: Vec<String>,
    /// The complete environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    /// Stdout and stderr are appended here.
    pub log_path: PathBuf,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal number when a signal ended it (as container runtimes
    /// report it: 137 for SIGKILL, 143 for SIGTERM).
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: jiff::Timestamp,
}

/// What a command run in a container (an exec probe) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// Stdout followed by stderr.
    pub output: String,
}

/// A container that was started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The runtime's id, reported as `containerID` `<runtime>://<id>`.
    pub id: String,
    /// The main process, where the runtime has one on this host.
    pub pid: Option<u32>,
    pub started_at: jiff::Timestamp,
    /// Becomes `Some` once, when the container has exited.
    pub exit: watch::Receiver<Option<Exit>>,
}

/// A container runtime.
///
/// # Correctness
/// - `start` returns only once the container runs (or failed to); its `exit` receiver then
///   reports exactly one exit, whatever ended the container.
/// - `stop` returns only when the container and everything it started are gone: it sends
///   SIGTERM, waits up to the grace period, then kills. Stopping an exited container returns its
///   exit at once.
/// - Containers a runtime started do not outlive the runtime value on the process runtime
///   (dropping it kills them); other runtimes may keep them running.
pub trait Runtime: Send + Sync {
    /// The scheme of container ids (`process://…`).
    fn name(&self) -> &'static str;
    fn start<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<Started>>;
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<Exit>>;
    /// Run `argv` in running container `id`'s environment and working directory, killing it
    /// (and everything it started) after `timeout`, which is an error.
    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput>>;
    /// Forget an exited container (its exit is no longer needed).
    fn remove(&self, id: &str);
}
