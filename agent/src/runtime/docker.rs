//! The `docker` runtime: containers run by a Docker Engine through its API on a unix socket
//! (`bollard`). Images are the node's own (built locally, e.g. by `deploy/build-image.sh`):
//! nothing is ever pulled, and a missing image keeps the container waiting with
//! `ErrImageNeverPull`.
//!
//! Each pod gets a sandbox container (`rkube pause` from the sandbox image, by default
//! `rkube:dev`) on the runtime's Docker network; the pod's containers join its network
//! namespace (`network_mode: container:<sandbox>`), so they share one address, the pod IP
//! (the sandbox's address on that network), and reach each other on localhost. A container's
//! `command`/`args` become its entrypoint/cmd (without a `command` the image's entrypoint runs
//! the args), env and working directory are passed as given, memory and cpu limits become the
//! container's cgroup limits, and volumes are bind mounts. Stop is Docker's stop (SIGTERM,
//! SIGKILL after the grace period); exec (probes, and `rkube exec` sessions in `session.rs`)
//! uses the exec API; Docker keeps each container's output and the runtime also appends it to
//! the container's log file under the pod directory (in the agent's log format,
//! [`container_log`](crate::container_log)), where the agent's logs serving reads it.
//!
//! Everything created carries the label `rkube.io/node=<node>`; a starting runtime removes
//! what an earlier run on the same node left behind (pods restart, as on the process runtime).
//!
//! A container the kernel OOM-killed is reported as `OOMKilled` (Docker's `State.OOMKilled`).
//!
//! Not done: an exec that times out is reported as an error but keeps running (the Docker API
//! cannot kill an exec), and a sandbox that dies leaves its pod's containers without a network
//! until the pod is recreated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::{BoxFuture, ContainerSpec, ExecOutput, Exit, PodRef, Runtime, Started};
use crate::container_log::{LineSplitter, Stream};
use crate::error::{Error, Result};

mod session;
mod spec;

pub use spec::{CONTAINER_LABEL, NODE_LABEL, POD_UID_LABEL};

/// Where the docker runtime finds the engine, which network pods live on, and which image runs
/// the pod sandboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    /// The engine's unix socket.
    pub socket: PathBuf,
    /// The Docker network pods get their addresses on (created as a bridge network if missing).
    pub network: String,
    /// The image whose `/rkube pause` holds each pod's network namespace.
    pub sandbox_image: String,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            socket: PathBuf::from("/var/run/docker.sock"),
            network: "rkube".into(),
            sandbox_image: "rkube:dev".into(),
        }
    }
}

/// The Docker Engine runtime (see the module docs).
pub struct DockerRuntime {
    docker: Docker,
    node: String,
    options: DockerOptions,
    /// Numbers container names, which Docker wants unique.
    attempts: AtomicU64,
    containers: Mutex<HashMap<String, Entry>>,
    /// Running sandboxes by pod uid.
    sandboxes: Mutex<HashMap<String, Sandbox>>,
}

struct Entry {
    exit: watch::Receiver<Option<Exit>>,
}

#[derive(Clone)]
struct Sandbox {
    id: String,
    ip: String,
}

/// How long one Docker API request may take.
const REQUEST_TIMEOUT_SECS: u64 = 120;

impl DockerRuntime {
    /// Connect to the engine (negotiating the API version), make sure the pod network exists
    /// and remove the containers an earlier run for `node` left.
    pub async fn connect(node: &str, options: DockerOptions) -> Result<DockerRuntime> {
        let socket = options.socket.display().to_string();
        let unreachable = |e: DockerError| {
            Error::Runtime(format!("cannot reach the Docker engine at {socket}: {e}"))
        };
        let docker =
            Docker::connect_with_unix(&socket, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(unreachable)?
                .negotiate_version()
                .await
                .map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        let runtime = DockerRuntime {
            docker,
            node: node.to_string(),
            options,
            attempts: AtomicU64::new(0),
            containers: Mutex::new(HashMap::new()),
            sandboxes: Mutex::new(HashMap::new()),
        };
        runtime.ensure_network().await?;
        let left = remove_labelled(&runtime.docker, NODE_LABEL, node).await?;
        if left > 0 {
            tracing::info!(
                node,
                containers = left,
                "removed containers an earlier agent run left"
            );
        }
        Ok(runtime)
    }

    async fn ensure_network(&self) -> Result<()> {
        let name = &self.options.network;
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(engine(format!("inspect network {name}"), e)),
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([("rkube.io/network".into(), "pods".into())])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => {
                tracing::info!(network = %name, "created the Docker network for pods");
                Ok(())
            }
            // Another agent on this engine created it meanwhile.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(engine(format!("create network {name}"), e)),
        }
    }

    /// `Ok` when `image` is on this node; [`Error::ImageNotPresent`] when it is not.
    async fn check_image(&self, image: &str, what: &str) -> Result<()> {
        if image.is_empty() {
            return Err(Error::Runtime(format!(
                "{what} has no image: the docker runtime needs one"
            )));
        }
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(Error::ImageNotPresent(format!(
                "image {image:?} ({what}) is not present on node {} and the docker runtime never pulls: build it there (deploy/build-image.sh builds rkube:dev)",
                self.node
            ))),
            Err(e) => Err(engine(format!("inspect image {image}"), e)),
        }
    }

    async fn start_container(&self, spec: &ContainerSpec) -> Result<Started> {
        let pod = &spec.engine.pod;
        let sandbox = self
            .sandboxes
            .lock()
            .expect("sandboxes lock")
            .get(&pod.uid)
            .cloned()
            .ok_or_else(|| {
                Error::Runtime(format!(
                    "pod {}/{} has no sandbox: its network was not started",
                    pod.namespace, pod.name
                ))
            })?;
        self.check_image(&spec.engine.image, &format!("container {:?}", spec.name))
            .await?;
        let attempt = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let name = spec::container_name(&self.node, pod, &spec.name, attempt);
        let body = spec::container_body(&self.node, spec, &sandbox.id);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| engine(format!("create container {:?}", spec.name), e))?
            .id;
        if let Err(e) = self.docker.start_container(&id, None).await {
            self.remove_now(&id).await;
            return Err(engine(format!("start container {:?}", spec.name), e));
        }
        let state = self
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| engine(format!("inspect container {:?}", spec.name), e))?
            .state
            .unwrap_or_default();
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        tokio::spawn(copy_logs(
            self.docker.clone(),
            id.clone(),
            spec.log_path.clone(),
        ));
        tokio::spawn(watch_exit(self.docker.clone(), id.clone(), tx));
        self.containers
            .lock()
            .expect("containers lock")
            .insert(id.clone(), Entry { exit: rx.clone() });
        tracing::debug!(container = %spec.name, pod = %pod.name, %id, "docker container started");
        Ok(Started {
            pid: state
                .pid
                .filter(|p| *p > 0)
                .and_then(|p| u32::try_from(p).ok()),
            started_at: parse_time(state.started_at.as_deref()),
            exit: rx,
            id,
        })
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<Exit> {
        let rx = self
            .containers
            .lock()
            .expect("containers lock")
            .get(id)
            .map(|e| e.exit.clone());
        let Some(mut rx) = rx else {
            return Err(Error::Runtime(format!("no container {id} on this runtime")));
        };
        if let Some(exit) = *rx.borrow() {
            return Ok(exit);
        }
        // Docker counts the grace period in whole seconds: round up.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(secs).unwrap_or(i32::MAX))
            .build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => {}
            // 304: already stopped; 404: gone (the exit watcher reports it either way).
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => {}
            Err(e) => return Err(engine(format!("stop container {id}"), e)),
        }
        let exit = tokio::time::timeout(
            grace + Duration::from_secs(30),
            rx.wait_for(Option::is_some),
        )
        .await
        .map_err(|_| Error::Runtime(format!("container {id} did not stop")))?
        .map_err(|_| Error::Runtime(format!("container {id}: its exit was lost")))?;
        Ok(exit.expect("waited for an exit"))
    }

    async fn exec_in(&self, id: &str, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        if argv.is_empty() {
            return Err(Error::Runtime("exec: empty command".into()));
        }
        let config = CreateExecOptions {
            cmd: Some(argv.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(id, config)
            .await
            .map_err(|e| engine(format!("exec in container {id}"), e))?;
        let run = async {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(|e| engine(format!("exec in container {id}"), e))?
            {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| engine(format!("exec in container {id}"), e))? {
                        bollard::container::LogOutput::StdErr { message } => {
                            stderr.extend_from_slice(&message)
                        }
                        other => stdout.extend_from_slice(&other.into_bytes()),
                    }
                }
            }
            let inspect = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| engine(format!("exec in container {id}"), e))?;
            stdout.extend_from_slice(&stderr);
            Ok(ExecOutput {
                exit_code: inspect
                    .exit_code
                    .and_then(|c| i32::try_from(c).ok())
                    .unwrap_or(-1),
                output: String::from_utf8_lossy(&stdout).into_owned(),
            })
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| {
            Error::Runtime(format!(
                "exec {argv:?} in container {id} timed out after {timeout:?} (the command may still run: Docker cannot kill an exec)"
            ))
        })?
    }

    async fn start_sandbox(&self, pod: &PodRef) -> Result<Option<String>> {
        if let Some(s) = self.sandboxes.lock().expect("sandboxes lock").get(&pod.uid) {
            return Ok(Some(s.ip.clone()));
        }
        let image = &self.options.sandbox_image;
        self.check_image(image, "the pod sandbox").await?;
        let name = spec::sandbox_name(&self.node, pod);
        // A sandbox left by an earlier attempt (or agent run) for this pod.
        self.remove_now(&name).await;
        let network = &self.options.network;
        let body = spec::sandbox_body(&self.node, pod, image, network);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let what = || format!("the sandbox of pod {}/{}", pod.namespace, pod.name);
        let id = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| engine(format!("create {}", what()), e))?
            .id;
        if let Err(e) = self.docker.start_container(&id, None).await {
            self.remove_now(&id).await;
            return Err(engine(format!("start {}", what()), e));
        }
        let inspect = self
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| engine(format!("inspect {}", what()), e))?;
        let ip = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty());
        let Some(ip) = ip else {
            self.remove_now(&id).await;
            return Err(Error::Runtime(format!(
                "{} got no address on Docker network {network}",
                what()
            )));
        };
        tracing::debug!(pod = %pod.name, namespace = %pod.namespace, %ip, "pod sandbox started");
        self.sandboxes
            .lock()
            .expect("sandboxes lock")
            .insert(pod.uid.clone(), Sandbox { id, ip: ip.clone() });
        Ok(Some(ip))
    }

    async fn stop_sandbox(&self, pod: &PodRef) -> Result<()> {
        self.sandboxes
            .lock()
            .expect("sandboxes lock")
            .remove(&pod.uid);
        // The sandbox and whatever container of the pod is left.
        remove_labelled(&self.docker, POD_UID_LABEL, &pod.uid).await?;
        Ok(())
    }

    /// Remove container `id` (a name works too) now, whatever its state; errors are logged.
    async fn remove_now(&self, id: &str) {
        remove_container(&self.docker, id).await;
    }
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn start<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<Started>> {
        Box::pin(self.start_container(spec))
    }

    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<Exit>> {
        Box::pin(self.stop_container(id, grace))
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput>> {
        Box::pin(self.exec_in(id, argv, timeout))
    }

    fn remove(&self, id: &str) {
        self.containers.lock().expect("containers lock").remove(id);
        let (docker, id) = (self.docker.clone(), id.to_string());
        tokio::spawn(async move { remove_container(&docker, &id).await });
    }

    fn needs_command(&self) -> bool {
        false
    }

    fn exec_stream<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        stdin: bool,
    ) -> BoxFuture<'a, Result<super::ExecSession>> {
        Box::pin(self.exec_session(id, argv, stdin))
    }

    fn start_pod<'a>(&'a self, pod: &'a PodRef) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(self.start_sandbox(pod))
    }

    fn stop_pod<'a>(&'a self, pod: &'a PodRef) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.stop_sandbox(pod))
    }
}

/// Remove every container (running or not) labelled `key=value`; how many there were.
pub async fn remove_labelled(docker: &Docker, key: &str, value: &str) -> Result<usize> {
    let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| engine(format!("list containers labelled {key}={value}"), e))?;
    let ids: Vec<String> = found.into_iter().filter_map(|c| c.id).collect();
    for id in &ids {
        remove_container(docker, id).await;
    }
    Ok(ids.len())
}

async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => {}
        // Gone already, or being removed by another call.
        Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
        Err(e) => tracing::warn!(container = %id, error = %e, "cannot remove a docker container"),
    }
}

/// Report the container's exit once it stopped running (however it ended).
async fn watch_exit(docker: Docker, id: String, tx: Arc<watch::Sender<Option<Exit>>>) {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut waits = docker.wait_container(&id, Some(options));
    let waited = waits.next().await;
    // A non-zero exit comes back as an error carrying the code; the inspect below reads it.
    if let Some(Err(e)) = &waited {
        if !matches!(e, DockerError::DockerContainerWaitError { .. }) {
            tracing::debug!(container = %id, error = %e, "waiting for a docker container failed");
        }
    }
    let exit = match docker.inspect_container(&id, None).await {
        Ok(inspect) => {
            let state = inspect.state.unwrap_or_default();
            let code = state
                .exit_code
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(128);
            Exit {
                exit_code: code,
                // Docker reports 128 + N when signal N ended the main process.
                signal: (129..=159).contains(&code).then_some(code - 128),
                finished_at: parse_time(state.finished_at.as_deref()),
                oom_killed: state.oom_killed.unwrap_or(false),
            }
        }
        // Removed behind our back: an error exit.
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "cannot inspect a stopped docker container");
            Exit {
                exit_code: 128,
                signal: None,
                finished_at: jiff::Timestamp::now(),
                oom_killed: false,
            }
        }
    };
    tx.send_replace(Some(exit));
}

/// Append the container's stdout and stderr (as Docker keeps them) to `path` until it exits, as
/// [`container_log`](crate::container_log) records timed when the agent received them.
async fn copy_logs(docker: Docker, id: String, path: PathBuf) {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await;
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open a container log file");
            return;
        }
    };
    let options = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(&id, Some(options));
    let mut stdout = LineSplitter::new(Stream::Stdout);
    let mut stderr = LineSplitter::new(Stream::Stderr);
    let mut records = Vec::new();
    loop {
        let chunk = logs.next().await;
        let now = jiff::Timestamp::now();
        let ended = !matches!(chunk, Some(Ok(_)));
        match chunk {
            Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                stderr.push(&message, now, &mut records)
            }
            Some(Ok(other)) => stdout.push(&other.into_bytes(), now, &mut records),
            end => {
                if let Some(Err(e)) = end {
                    tracing::debug!(container = %id, error = %e, "docker log stream ended");
                }
                stdout.finish(now, &mut records);
                stderr.finish(now, &mut records);
            }
        }
        if !records.is_empty() {
            if let Err(e) = file.write_all(&records).await {
                tracing::warn!(path = %path.display(), error = %e, "cannot write a container log file");
                break;
            }
            let _ = file.flush().await;
            records.clear();
        }
        if ended {
            break;
        }
    }
    let _ = file.flush().await;
}

/// The HTTP status of an engine error, if it is one.
fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn engine(what: String, e: DockerError) -> Error {
    match e {
        DockerError::DockerResponseServerError { message, .. } => {
            Error::Runtime(format!("{what}: {message}"))
        }
        other => Error::Runtime(format!("{what}: {other}")),
    }
}

/// A Docker timestamp (RFC 3339 with nanoseconds); now when absent or unreadable.
fn parse_time(s: Option<&str>) -> jiff::Timestamp {
    s.and_then(|s| s.parse().ok())
        .unwrap_or_else(jiff::Timestamp::now)
}
