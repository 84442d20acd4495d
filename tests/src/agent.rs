//! An in-process node agent for tests: `rkube_agent::run` on the test's runtime with a temporary
//! data directory, fast heartbeats and a short crash-loop back-off, stopped as SIGTERM would.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_agent::{AgentOptions, BackoffPolicy};
use rkube_client::Client;

/// A container's log file (under [`Agent::pod_dir`]) as the container wrote it: the agent keeps
/// it as records with times ([`rkube_agent::container_log`]).
pub fn read_log(path: &std::path::Path) -> std::io::Result<String> {
    let file = std::fs::read(path)?;
    Ok(String::from_utf8_lossy(&rkube_agent::container_log::decode(&file)).into_owned())
}

/// A running in-process agent; [`Agent::stop`] shuts it down.
pub struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<rkube_agent::Result<()>>,
    data: tempfile::TempDir,
}

impl Agent {
    /// Start an agent for node `node` (500 ms heartbeats, back-off 100 ms doubling to 400 ms).
    pub fn start(client: Client, node: &str) -> Agent {
        Agent::start_with(client, node, |_| {})
    }

    /// [`Agent::start`] with the options changed by `configure` first (e.g. the runtime).
    pub fn start_with(
        client: Client,
        node: &str,
        configure: impl FnOnce(&mut AgentOptions),
    ) -> Agent {
        let data = tempfile::tempdir().expect("tempdir");
        let mut options = AgentOptions::new(node, data.path().to_path_buf());
        options.heartbeat_interval = Duration::from_millis(500);
        options.backoff = BackoffPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(60),
        };
        configure(&mut options);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rkube_agent::run(client, options, async {
            let _ = stopped.await;
        }));
        Agent {
            stop: Some(stop),
            task,
            data,
        }
    }

    /// Where the agent keeps a pod's files (its containers' logs).
    pub fn pod_dir(&self, pod: &Pod) -> PathBuf {
        let m = &pod.metadata;
        self.data.path().join("pods").join(format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            m.uid.as_deref().unwrap_or_default()
        ))
    }

    /// Stop the agent (its pods' processes with it) and check that it ended cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.expect("agent task").expect("agent run");
    }
}
