//! The chaos suite's control-loop workload: a Deployment on simulated nodes that is scaled and
//! rolled while faults happen, the time from a leader kill to the controllers' next action, and
//! the final check that it converged to its replica count with no extra pods.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Client, KindRef, ListParams};
use serde_json::json;

use super::workload::NAMESPACE;

pub const NAME: &str = "chaos-web";
const SELECTOR: &str = "app=chaos-web";

/// The Deployment the run starts with: `replicas` pods of template version 1.
pub fn manifest(replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                // Simulated nodes ignore the command; agents (docker mode) run the demo app.
                "spec": {"containers": [{
                    "name": "web",
                    "image": "sim/web:1",
                    "command": ["/rkube", "demo-app"],
                }]}
            }
        }
    })
}

/// A change to the Deployment.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    Scale(i32),
    /// Roll to template version `n` (a new image tag).
    Roll(u32),
}

/// Apply `change`, retrying conflicts and unavailability until `timeout`; returns when the
/// server acknowledged it.
pub async fn apply(client: &Client, change: Change, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let mut d: Deployment = client.get_typed(NAMESPACE, NAME).await?;
            let spec = &mut d.spec;
            match change {
                Change::Scale(n) => spec.replicas = Some(n),
                Change::Roll(v) => {
                    let pod = spec.template.spec.as_mut().expect("a pod template spec");
                    pod.containers[0].image = Some(format!("sim/web:{v}"));
                }
            }
            client.update_typed(&d).await.map(|_| ())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, ?change, "chaos deployment change failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => anyhow::bail!("could not apply {change:?} within {timeout:?}: {e}"),
        }
    }
}

/// The Deployment's pods (including terminating ones).
pub async fn pods(client: &Client) -> rkube_client::Result<Vec<Pod>> {
    let list = client
        .list_all(
            &KindRef::of::<Pod>(),
            &ListParams {
                namespace: NAMESPACE.into(),
                label_selector: SELECTOR.into(),
                ..Default::default()
            },
        )
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// Wait until the controllers acted on a change to `replicas` made at `since`: the number of
/// live pods reaches it. Returns the time that took.
pub async fn controller_reaction(
    client: &Client,
    replicas: usize,
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    while since.elapsed() < timeout {
        if let Ok(pods) = pods(client).await {
            let live = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            if live >= replicas {
                return Some(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Whether the Deployment has as many ready, live pods as its spec asks for and none of its
/// live pods is on node `dead`.
pub async fn whole_without(client: &Client, dead: &str) -> bool {
    let Ok(d) = client.get_typed::<Deployment>(NAMESPACE, NAME).await else {
        return false;
    };
    let want = d.spec.replicas.unwrap_or(1) as usize;
    let Ok(pods) = pods(client).await else {
        return false;
    };
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let on = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    !live.iter().any(|p| on(p).as_deref() == Some(dead))
        && live.iter().filter(|p| ready(p)).count() >= want
}

/// Why the Deployment has not converged yet, or `None` once it has: its status reports
/// `replicas` updated, ready and available replicas for the current generation, and exactly
/// `replicas` pods exist, all of the newest ReplicaSet and running with image version `version`.
pub async fn not_converged(client: &Client, replicas: i32, version: u32) -> Option<String> {
    let d: Deployment = match client.get_typed(NAMESPACE, NAME).await {
        Ok(d) => d,
        Err(e) => return Some(format!("cannot read the Deployment: {e}")),
    };
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if status.observed_generation != Some(generation) {
        return Some(format!(
            "status observed generation {:?}, the Deployment is at {generation}",
            status.observed_generation
        ));
    }
    let counts = (
        status.replicas.unwrap_or(0),
        status.updated_replicas.unwrap_or(0),
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    );
    if counts != (replicas, replicas, replicas, replicas) {
        return Some(format!(
            "status (replicas, updated, ready, available) = {counts:?}, want {replicas} each"
        ));
    }
    let pods = match pods(client).await {
        Ok(p) => p,
        Err(e) => return Some(format!("cannot list pods: {e}")),
    };
    let image = format!("sim/web:{version}");
    let wrong: Vec<String> = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some()
                || p.spec
                    .as_ref()
                    .and_then(|s| s.containers[0].image.as_deref())
                    != Some(image.as_str())
                || p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
        })
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    if pods.len() != replicas as usize || !wrong.is_empty() {
        return Some(format!(
            "{} pods, want {replicas}; not running {image} or terminating: {wrong:?}",
            pods.len()
        ));
    }
    let sets = client
        .list_typed::<ReplicaSet>(&ListParams {
            namespace: NAMESPACE.into(),
            label_selector: SELECTOR.into(),
            ..Default::default()
        })
        .await;
    match sets {
        Ok((sets, _)) => {
            let extra: Vec<String> = sets
                .iter()
                .filter(|rs| rs.spec.replicas.unwrap_or(0) > 0)
                .filter(|rs| {
                    rs.spec
                        .template
                        .as_ref()
                        .and_then(|t| t.spec.as_ref())
                        .and_then(|s| s.containers[0].image.as_deref())
                        != Some(image.as_str())
                })
                .map(|rs| rs.metadata.name.clone().unwrap_or_default())
                .collect();
            (!extra.is_empty()).then(|| format!("old ReplicaSets still scaled up: {extra:?}"))
        }
        Err(e) => Some(format!("cannot list ReplicaSets: {e}")),
    }
}
