//! One pod's lifecycle on this node: init containers one at a time in order, then every app
//! container; exits handled by the restart policy with crash-loop back-off; the view published
//! to the pod's reporter whenever it changes; and on deletion every container stopped (SIGTERM,
//! then SIGKILL after the grace period) before the deletion is confirmed with a zero grace
//! period. The worker never waits on the API: it keeps running containers when no server
//! answers, and its reporter catches up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rkube_client::Client;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::env::{args_line, command_line, container_env, Sources};
use crate::report::{self, Target};
use crate::runtime::{ContainerSpec, EngineSpec, Exit, Limits, PodRef, Runtime, Started};
use crate::status::{self, PodView};
use crate::{AgentOptions, IpPool};

mod config;
mod probing;
mod serving;
mod terminate;

/// What every pod worker shares.
pub(crate) struct Context {
    pub client: Client,
    pub runtime: Arc<dyn Runtime>,
    pub ips: IpPool,
    pub options: Arc<AgentOptions>,
    /// What the agent service ([`crate::serve`]) knows of the pods.
    pub node_pods: Arc<crate::serve::NodePods>,
    /// Services and Endpoints, for the containers' service variables.
    pub services: crate::services::ServiceView,
}

/// What the dispatcher tells a worker.
#[derive(Debug, Clone)]
pub(crate) enum Desired {
    /// The pod as last seen in the API.
    Pod(Box<Pod>),
    /// The pod is gone from the API (deleted outright, or absent from a fresh list).
    Gone,
    /// The agent is shutting down: stop the containers, leave the pod alone.
    AgentStopping,
}

/// How long a container whose image is missing waits before it is tried again (the kubelet's
/// image back-off starts at 10 s too).
const IMAGE_RETRY: Duration = Duration::from_secs(10);
/// How long a container waits after its pod's sandbox failed to start.
const SANDBOX_RETRY: Duration = Duration::from_secs(2);

/// The `PATH` containers get when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run one pod until it is deleted or the agent stops.
pub(crate) async fn run(ctx: Arc<Context>, mut desired: watch::Receiver<Desired>) {
    let Desired::Pod(pod) = desired.borrow_and_update().clone() else {
        return;
    };
    let mut worker = Worker::new(ctx.clone(), *pod);
    worker.publish();
    let (views, views_rx) = watch::channel(None);
    let target = Target {
        namespace: worker.namespace.clone(),
        name: worker.name.clone(),
        uid: worker.uid.clone(),
    };
    let reporter = tokio::spawn(report::run(ctx.client.clone(), target, views_rx));
    let end = worker.live(&mut desired, &views).await;
    let grace = match end {
        End::Deleted => worker.pod.metadata.deletion_grace_period_seconds,
        End::Gone | End::AgentStopping => None,
    }
    .or(worker.spec_grace())
    .unwrap_or(30);
    worker
        .stop_all(Duration::from_secs(grace.max(0) as u64))
        .await;
    reporter.abort();
    if matches!(end, End::Deleted) {
        worker.confirm_deletion(&mut desired).await;
    }
    if let Err(e) = ctx.runtime.stop_pod(&worker.pod_ref()).await {
        tracing::warn!(pod = %worker.name, namespace = %worker.namespace, error = %e, "cannot release the pod's sandbox");
    }
    ctx.ips.release(&worker.ip);
    ctx.node_pods
        .remove(&worker.namespace, &worker.name, &worker.uid);
    if !matches!(end, End::AgentStopping) {
        worker.release_volumes();
        if let Err(e) = std::fs::remove_dir_all(&worker.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %worker.dir.display(), error = %e, "cannot remove the pod directory");
            }
        }
    }
}

enum End {
    Deleted,
    Gone,
    AgentStopping,
}

/// One container of the pod.
struct Slot {
    container: Container,
    init: bool,
    status: ContainerStatus,
    live: Option<Started>,
    backoff: Backoff,
    /// When a container waiting out its back-off may start again.
    restart_at: Option<Instant>,
    /// Start attempts, counting those of a previous agent run.
    attempts: i32,
    /// A configuration problem stops it from starting (reported as its waiting reason).
    blocked: bool,
    /// The running container's probes.
    probes: Option<probing::Probes>,
    /// The pod was told (a Warning Event) that some of the container's limits are unenforced.
    limits_warned: bool,
}

struct Worker {
    ctx: Arc<Context>,
    pod: Pod,
    namespace: String,
    name: String,
    uid: String,
    dir: PathBuf,
    ip: String,
    start_time: Time,
    slots: Vec<Slot>,
    /// The pod had already finished (Succeeded/Failed) when this worker started: nothing runs.
    finished: bool,
    /// Probe results from the containers' probe tasks.
    probe_tx: mpsc::UnboundedSender<probing::ProbeUpdate>,
    probe_rx: mpsc::UnboundedReceiver<probing::ProbeUpdate>,
    /// ConfigMaps, Secrets and volumes ([`config`]).
    config: config::ConfigState,
}

impl Worker {
    fn new(ctx: Arc<Context>, pod: Pod) -> Worker {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = ctx
            .options
            .data_dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        let previous = pod.status.clone().unwrap_or_default();
        let finished = matches!(previous.phase.as_deref(), Some("Succeeded" | "Failed"));
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
        let mut blocked_reason = None;
        let ip = match ctx.ips.allocate(previous.pod_ip.as_deref()) {
            Ok(ip) => ip,
            Err(e) => {
                blocked_reason = Some(("NoPodAddress", e.to_string()));
                String::new()
            }
        };
        let previous_statuses: Vec<ContainerStatus> = previous
            .init_container_statuses
            .iter()
            .flatten()
            .chain(previous.container_statuses.iter().flatten())
            .cloned()
            .collect();
        let containers = spec
            .init_containers
            .into_iter()
            .flatten()
            .map(|c| (c, true))
            .chain(spec.containers.into_iter().map(|c| (c, false)));
        let slots = containers
            .map(|(container, init)| {
                let reason = if init || has_init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                };
                // Containers that ran under a previous agent run count their restarts on.
                let attempts = previous_statuses
                    .iter()
                    .find(|s| s.name == container.name)
                    .filter(|s| {
                        s.last_state.is_some()
                            || s.state.as_ref().is_some_and(|st| st.waiting.is_none())
                    })
                    .map_or(0, |s| s.restart_count + 1);
                let (reason, message) = match &blocked_reason {
                    Some((r, m)) => (*r, Some(m.clone())),
                    None => (reason, None),
                };
                Slot {
                    status: ContainerStatus {
                        name: container.name.clone(),
                        image: container.image.clone().unwrap_or_default(),
                        restart_count: (attempts - 1).max(0),
                        started: Some(false),
                        state: Some(waiting(reason, message)),
                        ..Default::default()
                    },
                    container,
                    init,
                    live: None,
                    backoff: Backoff::default(),
                    restart_at: None,
                    attempts,
                    blocked: blocked_reason.is_some(),
                    probes: None,
                    limits_warned: false,
                }
            })
            .collect();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        Worker {
            start_time: previous
                .start_time
                .unwrap_or_else(|| Time(jiff::Timestamp::now())),
            ctx,
            pod,
            namespace,
            name,
            uid,
            dir,
            ip,
            slots,
            finished,
            probe_tx,
            probe_rx,
            config: config::ConfigState::new(),
        }
    }

    /// Run the containers until the pod is deleted, gone, or the agent stops.
    async fn live(
        &mut self,
        desired: &mut watch::Receiver<Desired>,
        views: &watch::Sender<Option<PodView>>,
    ) -> End {
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                return End::Deleted;
            }
            self.sync().await;
            self.keep_volumes_current().await;
            if !self.finished {
                let view = self.view();
                views.send_if_modified(|current| {
                    let changed = current.as_ref() != Some(&view);
                    if changed {
                        *current = Some(view);
                    }
                    changed
                });
            }
            let restart_at = self
                .slots
                .iter()
                .filter_map(|s| s.restart_at)
                .chain(self.config.wake_at())
                .min();
            let exits = self.exits();
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        return End::Gone;
                    }
                    match desired.borrow_and_update().clone() {
                        Desired::Pod(pod) => self.pod = *pod,
                        Desired::Gone => return End::Gone,
                        Desired::AgentStopping => return End::AgentStopping,
                    }
                }
                (i, exit) = exits => self.on_exit(i, exit),
                Some(update) = self.probe_rx.recv() => self.on_probe(update),
                _ = tokio::time::sleep_until(restart_at.unwrap_or_else(Instant::now)), if restart_at.is_some() => {}
            }
        }
    }

    /// Start whatever is due: the next init container, or every app container once all init
    /// containers succeeded. A finished pod starts nothing.
    async fn sync(&mut self) {
        if self.finished || matches!(self.phase(), "Succeeded" | "Failed") {
            return;
        }
        if !self.volumes_ready().await {
            return;
        }
        let now = Instant::now();
        let due = |s: &Slot| {
            s.live.is_none()
                && !s.blocked
                && match s.restart_at {
                    Some(t) => t <= now,
                    None => s
                        .status
                        .state
                        .as_ref()
                        .is_some_and(|st| st.waiting.is_some()),
                }
        };
        let n_init = self.slots.iter().take_while(|s| s.init).count();
        for i in 0..n_init {
            if succeeded(&self.slots[i].status) {
                continue;
            }
            if due(&self.slots[i]) {
                self.start(i).await;
            }
            return;
        }
        for i in n_init..self.slots.len() {
            if due(&self.slots[i]) {
                self.start(i).await;
            }
        }
    }

    async fn start(&mut self, i: usize) {
        if let Err(e) = self.start_pod().await {
            self.retry_later(i, e);
            return;
        }
        let container = self.slots[i].container.clone();
        let spec = match self
            .env_sources(&container)
            .await
            .and_then(|sources| self.container_spec(&container, &sources))
        {
            Ok(spec) => {
                self.config.succeeded(i);
                spec
            }
            Err((reason @ ("CreateContainerConfigError" | "ContainerCreating"), message)) => {
                self.config_failed(i, reason, message);
                return;
            }
            Err((reason, message)) => {
                let slot = &mut self.slots[i];
                tracing::info!(pod = %self.name, namespace = %self.namespace, container = %slot.container.name, reason, %message, "container cannot start");
                slot.blocked = true;
                slot.status.state = Some(waiting(reason, Some(message)));
                return;
            }
        };
        let runtime = self.ctx.runtime.clone();
        let dir_error = std::fs::create_dir_all(&self.dir).err().map(|e| {
            format!(
                "cannot create the pod directory {}: {e}",
                self.dir.display()
            )
        });
        let slot = &mut self.slots[i];
        slot.attempts += 1;
        slot.status.restart_count = slot.attempts - 1;
        let started = match dir_error {
            Some(message) => Err(crate::Error::Runtime(message)),
            None => {
                if slot.attempts > 1 {
                    // A restart: the instance that ended keeps its log as the previous one.
                    crate::serve::logs::rotate(&spec.log_path);
                }
                runtime.start(&spec).await
            }
        };
        match started {
            Ok(started) => {
                slot.status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(started.started_at)),
                    }),
                    ..Default::default()
                });
                slot.status.container_id = Some(format!("{}://{}", runtime.name(), started.id));
                slot.restart_at = None;
                slot.live = Some(started);
                if !slot.limits_warned {
                    if let Some(why) = runtime.unenforced_limits(&spec.engine.limits) {
                        slot.limits_warned = true;
                        tracing::warn!(pod = %self.name, namespace = %self.namespace, container = %spec.name, %why, "resource limits unenforced");
                        crate::events::record(
                            &self.ctx.client,
                            &self.ctx.options.node_name,
                            &self.pod,
                            &spec.name,
                            crate::events::WARNING,
                            "ResourceLimitsUnenforced",
                            format!("container {}: {why}", spec.name),
                        );
                    }
                }
                self.publish();
                self.start_probes(i);
            }
            Err(e @ crate::Error::ImageNotPresent(_)) => {
                // Nothing ran: this attempt does not count as a restart.
                slot.attempts -= 1;
                slot.status.restart_count = (slot.attempts - 1).max(0);
                self.retry_later(i, e);
            }
            Err(e) => {
                tracing::info!(pod = %self.name, namespace = %self.namespace, container = %slot.container.name, error = %e, "container failed to start");
                let exit = Exit {
                    exit_code: 128,
                    signal: None,
                    finished_at: jiff::Timestamp::now(),
                    oom_killed: false,
                };
                self.record_exit(i, exit, None, "StartError", Some(e.to_string()));
            }
        }
    }

    fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    /// Have the runtime prepare the pod (the docker runtime's sandbox; idempotent) and take the
    /// pod IP it assigns.
    async fn start_pod(&mut self) -> crate::Result<()> {
        if let Some(ip) = self.ctx.runtime.start_pod(&self.pod_ref()).await? {
            if ip != self.ip {
                self.ctx.ips.release(&self.ip);
                self.ip = ip;
            }
        }
        Ok(())
    }

    /// Container `i` could not be started for a reason that may pass (a missing image, a pod
    /// sandbox that failed): it waits with that reason and is tried again later.
    fn retry_later(&mut self, i: usize, e: crate::Error) {
        let (reason, delay, message) = match e {
            crate::Error::ImageNotPresent(m) => ("ErrImageNeverPull", IMAGE_RETRY, m),
            other => (
                "ContainerCreating",
                SANDBOX_RETRY,
                format!("cannot start the pod sandbox: {other}"),
            ),
        };
        let slot = &mut self.slots[i];
        tracing::info!(pod = %self.name, namespace = %self.namespace, container = %slot.container.name, reason, %message, "container cannot start yet");
        slot.status.state = Some(waiting(reason, Some(message)));
        slot.restart_at = Some(Instant::now() + delay);
    }

    /// The runtime's spec for `c`, or why it cannot run (a waiting reason and message).
    fn container_spec(
        &self,
        c: &Container,
        sources: &Sources,
    ) -> Result<ContainerSpec, (&'static str, String)> {
        let mounts = self.container_mounts(c)?;
        let fields = self.pod_fields();
        let mut base = vec![
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
            ),
            ("HOSTNAME".to_string(), self.name.clone()),
            ("POD_IP".to_string(), self.ip.clone()),
        ];
        let services = crate::service_env::for_pod(&self.pod, &self.ctx.services.borrow());
        base.extend(services.map_err(|e| ("CreateContainerConfigError", e))?);
        let env = container_env(c, &fields, &base, sources)
            .map_err(|e| ("CreateContainerConfigError", e.0))?;
        let command_len = c.command.as_ref().map_or(0, Vec::len);
        // Container engines run the image's entrypoint when there is no command.
        let argv = if command_len == 0 && !self.ctx.runtime.needs_command() {
            args_line(c, &env)
        } else {
            command_line(c, &env).map_err(|e| ("NoCommand", e.to_string()))?
        };
        let engine = EngineSpec {
            pod: self.pod_ref(),
            image: c.image.clone().unwrap_or_default(),
            command_len,
            working_dir: c.working_dir.as_ref().map(PathBuf::from),
            limits: Limits::of(c),
        };
        Ok(ContainerSpec {
            name: c.name.clone(),
            argv,
            env,
            working_dir: c
                .working_dir
                .as_ref()
                .map_or_else(|| self.dir.clone(), PathBuf::from),
            log_path: self.dir.join(format!("{}.log", c.name)),
            mounts,
            engine,
        })
    }

    /// A future resolving when the first of the running containers exits.
    fn exits(&self) -> impl std::future::Future<Output = (usize, Exit)> + 'static {
        let waits: Vec<_> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let mut rx = s.live.as_ref()?.exit.clone();
                Some(Box::pin(async move {
                    let exit = rx.wait_for(Option::is_some).await.ok().and_then(|e| *e);
                    // A runtime that lost its container without an exit: call it an error.
                    (
                        i,
                        exit.unwrap_or(Exit {
                            exit_code: 128,
                            signal: None,
                            finished_at: jiff::Timestamp::now(),
                            oom_killed: false,
                        }),
                    )
                }))
            })
            .collect();
        async move {
            if waits.is_empty() {
                std::future::pending().await
            } else {
                select_all(waits).await.0
            }
        }
    }

    fn on_exit(&mut self, i: usize, exit: Exit) {
        let Some(started) = self.slots[i].live.take() else {
            return;
        };
        self.ctx.runtime.remove(&started.id);
        self.publish();
        let reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        tracing::debug!(pod = %self.name, namespace = %self.namespace, container = %self.slots[i].container.name, exit_code = exit.exit_code, "container exited");
        self.record_exit(i, exit, Some(started.started_at), reason, None);
    }

    /// Record that container `i` ended, and decide by the restart policy whether (and after
    /// which back-off) it starts again.
    fn record_exit(
        &mut self,
        i: usize,
        exit: Exit,
        started_at: Option<jiff::Timestamp>,
        reason: &str,
        message: Option<String>,
    ) {
        let policy = self.restart_policy();
        let pod_ref = format!("{}_{}({})", self.name, self.namespace, self.uid);
        let backoff_policy = self.ctx.options.backoff;
        let slot = &mut self.slots[i];
        let terminated = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.exit_code,
                signal: exit.signal,
                reason: Some(reason.into()),
                message,
                started_at: started_at.map(Time),
                finished_at: Some(Time(exit.finished_at)),
                container_id: slot.status.container_id.clone(),
            }),
            ..Default::default()
        };
        slot.status.ready = false;
        slot.status.started = Some(false);
        slot.probes = None;
        let restart = match (slot.init, policy.as_str()) {
            (_, "Never") => false,
            (true, _) | (false, "OnFailure") => exit.exit_code != 0,
            (false, _) => true,
        };
        if !restart {
            slot.status.state = Some(terminated);
            slot.restart_at = None;
            return;
        }
        let ran_for = started_at
            .and_then(|s| Duration::try_from(exit.finished_at.duration_since(s)).ok())
            .unwrap_or_default();
        let delay = slot.backoff.on_exit(&backoff_policy, ran_for);
        slot.status.last_state = Some(terminated);
        slot.status.state = Some(waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {} restarting failed container={} pod={pod_ref}",
                go_duration(delay),
                slot.container.name
            )),
        ));
        slot.restart_at = Some(Instant::now() + delay);
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn spec_grace(&self) -> Option<i64> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
    }

    fn statuses(&self, init: bool) -> Vec<ContainerStatus> {
        self.slots
            .iter()
            .filter(|s| s.init == init)
            .map(|s| s.status.clone())
            .collect()
    }

    fn phase(&self) -> &'static str {
        status::pod_phase(
            &self.restart_policy(),
            &self.statuses(true),
            &self.statuses(false),
        )
    }

    fn view(&self) -> PodView {
        let (init, app) = (self.statuses(true), self.statuses(false));
        let phase = status::pod_phase(&self.restart_policy(), &init, &app);
        let gates = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        PodView {
            phase,
            conditions: status::conditions(phase, &init, &app, gates),
            host_ip: self.ctx.options.host_ip.clone(),
            pod_ip: (!self.ip.is_empty()).then(|| self.ip.clone()),
            start_time: self.start_time.clone(),
            init_container_statuses: init,
            container_statuses: app,
        }
    }
}

/// A duration as Go prints it (the kubelet's messages do): `400ms`, `10s`, `5m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        _ if !ms.is_multiple_of(1000) || ms < 60_000 => {
            let (m, s) = (ms / 60_000, (ms % 60_000) as f64 / 1000.0);
            if m > 0 {
                format!("{m}m{s}s")
            } else {
                format!("{s}s")
            }
        }
        _ => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn succeeded(status: &ContainerStatus) -> bool {
    status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        let cases = [
            (400, "400ms"),
            (10_000, "10s"),
            (1_500, "1.5s"),
            (80_000, "1m20s"),
            (300_000, "5m0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(Duration::from_millis(ms)), want);
        }
    }
}
