//! The nodes the chaos Deployment runs on, and the agent-kill fault: simulated nodes in
//! process mode (killing one silences it, as a dead agent would be), the compose deployment's
//! agent containers in docker mode (`docker kill`, and its pods die with it).

use std::time::{Duration, Instant};

use rkube_client::Client;

use super::deployment;
use super::docker;
use crate::sim_node::{SimNode, SimNodeSpec};

/// The Deployment's nodes.
pub enum Nodes {
    Simulated {
        specs: Vec<SimNodeSpec>,
        running: Vec<Option<SimNode>>,
    },
    /// Agent containers: (node name, container id).
    Containers(Vec<(String, String)>),
}

impl Nodes {
    /// `n` simulated nodes `sim-1`..`sim-n`, started by [`Nodes::start`].
    pub fn simulated(n: usize) -> Nodes {
        Nodes::Simulated {
            specs: (1..=n)
                .map(|i| SimNodeSpec::new(&format!("sim-{i}")))
                .collect(),
            running: (0..n).map(|_| None).collect(),
        }
    }

    /// Start whatever is not running yet (simulated nodes register and heartbeat).
    pub async fn start(&mut self, client: &Client) -> anyhow::Result<()> {
        if let Nodes::Simulated { specs, running } = self {
            for (spec, slot) in specs.iter().zip(running.iter_mut()) {
                // Registering races the node lifecycle controller's updates (a conflict) and
                // may meet an election: retry for a while.
                let deadline = Instant::now() + Duration::from_secs(60);
                while slot.is_none() {
                    match SimNode::start(client.clone(), spec.clone()).await {
                        Ok(node) => *slot = Some(node),
                        Err(e) if Instant::now() > deadline => {
                            return Err(e.context(format!("registering node {}", spec.name)))
                        }
                        Err(e) => {
                            tracing::debug!(node = %spec.name, error = %e, "chaos: node not registered yet");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        match self {
            Nodes::Simulated { specs, .. } => specs.iter().map(|s| s.name.clone()).collect(),
            Nodes::Containers(agents) => agents.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    /// Kill node `i`'s agent.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Nodes::Simulated { running, .. } => {
                if let Some(mut node) = running[i].take() {
                    node.stop();
                }
                Ok(())
            }
            Nodes::Containers(agents) => {
                docker::docker(&["kill", "--signal", "KILL", &agents[i].1])
            }
        }
    }

    /// Start node `i`'s agent again.
    pub async fn restart(&mut self, i: usize, client: &Client) -> anyhow::Result<()> {
        match self {
            Nodes::Simulated { .. } => self.start(client).await,
            Nodes::Containers(agents) => docker::docker(&["start", &agents[i].1]),
        }
    }

    /// Silence every simulated node (containers stop with their deployment).
    pub fn stop(&mut self) {
        if let Nodes::Simulated { running, .. } = self {
            running.iter_mut().for_each(|n| drop(n.take()));
        }
    }
}

/// The node hosting the most live pods of the Deployment (the first node when none has any).
pub async fn busiest(client: &Client, names: &[String]) -> usize {
    let pods = deployment::pods(client).await.unwrap_or_default();
    let count = |name: &str| {
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
            .count()
    };
    (0..names.len())
        .max_by_key(|&i| (count(&names[i]), std::cmp::Reverse(i)))
        .unwrap_or(0)
}

/// Wait until the Deployment is whole again without node `dead`: as many ready, live pods as
/// it asks for, none of them on `dead`. Returns the time since `since`.
pub async fn running_elsewhere(
    client: &Client,
    dead: &str,
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    while since.elapsed() < timeout {
        if deployment::whole_without(client, dead).await {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
