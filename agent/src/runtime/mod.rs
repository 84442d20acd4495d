//! Container runtimes behind one trait. The agent decides what runs and when (lifecycle,
//! restarts, back-off, status); a runtime only starts a container, reports its exit, runs
//! commands in it (exec probes) and stops it. `process` (the default, needing nothing
//! installed) runs each container's command as a child process; `docker` runs containers
//! through the Docker Engine API, one network namespace per pod (see [`docker`]).
//!
//! # Mounts
//! [`ContainerSpec::mounts`] lists the volumes (or `subPath`s of them) the agent prepared on
//! the host, each to appear at its `target` path inside the container, read-only when asked.
//! Sources exist when the container starts (directories, or single files for `subPath` file
//! mounts); runtimes bind-mount them in order (parents before children) and create missing
//! targets. The process runtime gives each container its own mount namespace for that (see
//! [`process`]); a runtime that cannot mount says why in [`Runtime::check_mounts`], and the
//! agent then keeps containers with mounts waiting (`CreateContainerError`) instead of
//! running them without their volumes.
//!
//! # Resource limits
//! [`EngineSpec::limits`] are enforced by container engines through their cgroups, and by the
//! process runtime through [`cgroups`] where the machine allows; [`Runtime::unenforced_limits`]
//! says which are not (the agent then warns on the pod) and [`Exit::oom_killed`] reports the
//! kernel's OOM kills.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Result;

pub mod cgroups;
pub mod docker;
mod mount_ns;
pub mod process;

pub use docker::{DockerOptions, DockerRuntime};
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
    /// Host paths to bind-mount into the container, in the order given (see the module docs).
    pub mounts: Vec<Mount>,
    /// What container engines need beyond a command line (the process runtime ignores it).
    pub engine: EngineSpec,
}

/// The parts of a container only container engines use: its pod (whose sandbox it joins), its
/// image, where its `command` ends in [`ContainerSpec::argv`], and its resource limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSpec {
    pub pod: PodRef,
    pub image: String,
    /// How many leading `argv` items are the container's `command`: 0 runs `argv` (its `args`)
    /// with the image's entrypoint.
    pub command_len: usize,
    /// The container's own `workingDir`; engines keep the image's when it has none.
    pub working_dir: Option<PathBuf>,
    pub limits: Limits,
}

/// The pod a container belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A container's resource limits as an engine enforces them (through cgroups).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    /// CPU in billionths of a CPU (`500m` is 500_000_000).
    pub nano_cpus: Option<i64>,
}

impl Limits {
    /// The `limits` of `container`'s resources; unparsable quantities (rejected by the API's
    /// validation anyway) count as unset.
    pub fn of(container: &k8s_openapi::api::core::v1::Container) -> Limits {
        let limit = |name: &str| {
            let q = container.resources.as_ref()?.limits.as_ref()?.get(name)?;
            crate::env::resources::parse_nanos(&q.0).ok()
        };
        Limits {
            // Quantities in nano-units: bytes are 10^9 of them, a CPU is 10^9 nano-CPUs.
            memory_bytes: limit("memory").map(|n| ((n + 999_999_999) / 1_000_000_000) as i64),
            nano_cpus: limit("cpu").map(|n| n as i64),
        }
    }
}

/// One bind mount: host path `source` at `target` inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal number when a signal ended it (as container runtimes
    /// report it: 137 for SIGKILL, 143 for SIGTERM).
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: jiff::Timestamp,
    /// The kernel's OOM killer killed (a process of) the container at its memory limit:
    /// reported as `OOMKilled`.
    pub oom_killed: bool,
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
    /// Whether this runtime can give containers their [`ContainerSpec::mounts`]; `Err` says
    /// why not, and containers with mounts then wait with that message. Runtimes that always
    /// can (bind mounts being part of every container engine) keep this default.
    fn check_mounts(&self) -> std::result::Result<(), String> {
        Ok(())
    }
    /// How this runtime enforces containers' resource limits, as published on the Node
    /// ([`cgroups::ENFORCEMENT_ANNOTATION`]). Container engines enforce them through their own
    /// cgroups, which this default says.
    fn limits_enforcement(&self) -> String {
        format!("enforced ({} runtime)", self.name())
    }
    /// Which of `limits` this runtime cannot enforce, and why; `None` when it enforces them
    /// all. Such a container still runs, and its pod gets a Warning Event.
    fn unenforced_limits(&self, _limits: &Limits) -> Option<String> {
        None
    }
    /// Whether a container needs a `command` (the process runtime has no image entrypoint to
    /// fall back on).
    fn needs_command(&self) -> bool {
        true
    }
    /// Prepare pod `pod`'s network before its first container starts: the pod's IP when the
    /// runtime assigns one (the docker runtime's sandbox address), `None` to keep the address
    /// the agent chose.
    fn start_pod<'a>(&'a self, _pod: &'a PodRef) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }
    /// Release what [`Runtime::start_pod`] prepared, once every container of the pod stopped.
    fn stop_pod<'a>(&'a self, _pod: &'a PodRef) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Run `argv` in running container `id` as [`Runtime::exec`] does (its environment and
    /// working directory), streaming: the returned session's stdout and stderr are the
    /// command's as it writes them, its stdin (when `stdin` is set; otherwise the command's
    /// stdin is empty) feeds the command until dropped, and its `exit` resolves to the exit code
    /// (128 + N when signal N ended it). There is no timeout: `rkube exec` sessions last as long
    /// as the user wants. Dropping the session (its `exit` future) before the command ended
    /// kills the command and everything it started. Serves `rkube exec`; a runtime that cannot
    /// keeps this default, which says so.
    fn exec_stream<'a>(
        &'a self,
        _id: &'a str,
        _argv: &'a [String],
        _stdin: bool,
    ) -> BoxFuture<'a, Result<ExecSession>> {
        let name = self.name();
        Box::pin(async move {
            Err(crate::Error::Runtime(format!(
                "the {name} runtime does not support exec sessions yet"
            )))
        })
    }
}

/// A command running in a container, from [`Runtime::exec_stream`].
pub struct ExecSession {
    /// The command's stdin; dropping it closes the command's stdin. `None` without `stdin`.
    pub stdin: Option<Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    pub stdout: Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    pub stderr: Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    /// The exit code. Dropping it before the command ended kills the command.
    pub exit: BoxFuture<'static, Result<i32>>,
}
