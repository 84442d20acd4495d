//! Node loss with real agents: two in-process agents on the process runtime run a ReplicaSet;
//! one agent dies (its runtime is dropped with every task, so it stops heartbeating); the node lifecycle controller
//! marks its node unreachable and evicts its pods, and the ReplicaSet's pods end up running on
//! the surviving agent. Short grace periods keep the test quick.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Client, ListParams};
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::json;

/// An agent on its own runtime: dropping the runtime kills it as a crash would.
fn agent(client: &Client, name: &str, data: &std::path::Path) -> tokio::runtime::Runtime {
    let mut options = rkube_agent::AgentOptions::new(name, data.to_path_buf());
    options.heartbeat_interval = Duration::from_millis(500);
    let client = client.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.spawn(async move {
        let _ = rkube_agent::run(client, options, std::future::pending()).await;
    });
    rt
}

/// (node, phase) of the ReplicaSet's pods that are not being deleted.
async fn placements(client: &Client) -> Vec<(String, String)> {
    let (pods, _) = client
        .list_typed::<Pod>(&ListParams {
            namespace: "default".into(),
            label_selector: "app=web".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let mut v: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            (
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_agent_are_recreated_on_the_other_node() {
    let mut opts = ClusterOptions::with_control_loops();
    opts.control_plane.node_monitor_grace_period = Duration::from_secs(6);
    opts.control_plane.default_toleration_seconds = 1;
    let c = ApiCluster::start_opts(1, opts).await;
    let client = c.client();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let doomed = agent(&client, "agent-doomed", dirs.0.path());

    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox",
                    "command": ["sh", "-c", "sleep 60"]}]}}}});
    client.create(&rs, "default").await.unwrap();
    wait_until(
        Duration::from_secs(60),
        "2 pods running on agent-doomed",
        || {
            let client = client.clone();
            async move {
                let want = vec![("agent-doomed".to_string(), "Running".to_string()); 2];
                (placements(&client).await == want).then_some(())
            }
        },
    )
    .await;

    let survivor = agent(&client, "agent-survivor", dirs.1.path());
    doomed.shutdown_background();
    wait_until(
        Duration::from_secs(120),
        "2 pods running on agent-survivor",
        || {
            let client = client.clone();
            async move {
                let want = vec![("agent-survivor".to_string(), "Running".to_string()); 2];
                (placements(&client).await == want).then_some(())
            }
        },
    )
    .await;
    survivor.shutdown_background();
}
