//! Workload-controller integration tests against in-process servers with simulated nodes: the
//! example DaemonSet lands only on nodes labelled `disk=ssd` and follows relabelling.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use rkube_client::{Client, ListParams};
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::sim_node::{SimNode, SimNodeSpec};
use rkube_tests::wait::wait_until;
use serde_json::Value;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples");

/// The nodes the running (not terminating) pods with `selector` are bound to, sorted.
async fn nodes_of(client: &Client, selector: &str) -> Vec<String> {
    let (pods, _) = client
        .list_typed::<Pod>(&ListParams {
            namespace: "default".into(),
            label_selector: selector.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let mut nodes: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<unbound>".into())
        })
        .collect();
    nodes.sort();
    nodes
}

async fn wait_nodes(client: &Client, selector: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    wait_until(
        Duration::from_secs(60),
        &format!("{selector} pods on {want:?}"),
        || {
            let client = client.clone();
            let want = want.clone();
            let selector = selector.to_string();
            async move { (nodes_of(&client, &selector).await == want).then_some(()) }
        },
    )
    .await;
}

async fn set_label(client: &Client, node: &str, key: &str, value: Option<&str>) {
    wait_until(Duration::from_secs(30), "the node relabelled", || {
        let client = client.clone();
        let (node, key, value) = (node.to_string(), key.to_string(), value.map(str::to_string));
        async move {
            let mut n: Node = client.get_typed("", &node).await.ok()?;
            let labels = n.metadata.labels.get_or_insert_with(BTreeMap::new);
            match value {
                Some(v) => labels.insert(key, v),
                None => labels.remove(&key),
            };
            client.update_typed(&n).await.ok().map(|_| ())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_daemonset_follows_the_ssd_label() {
    let c = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = c.client();
    let _nodes = [
        SimNode::start(
            client.clone(),
            SimNodeSpec::new("ssd-1").label("disk", "ssd"),
        )
        .await
        .unwrap(),
        SimNode::start(
            client.clone(),
            SimNodeSpec::new("ssd-2").label("disk", "ssd"),
        )
        .await
        .unwrap(),
        SimNode::start(
            client.clone(),
            SimNodeSpec::new("hdd-1").label("disk", "hdd"),
        )
        .await
        .unwrap(),
    ];
    let ds: Value = yaml_serde::from_str(
        &std::fs::read_to_string(format!("{EXAMPLES}/ssd-monitor-daemonset.yaml")).unwrap(),
    )
    .unwrap();
    client.create(&ds, "default").await.unwrap();
    wait_nodes(&client, "app=ssd-monitor", &["ssd-1", "ssd-2"]).await;

    // A node that gains the label gets a pod; one that loses it loses its pod.
    set_label(&client, "hdd-1", "disk", Some("ssd")).await;
    wait_nodes(&client, "app=ssd-monitor", &["hdd-1", "ssd-1", "ssd-2"]).await;
    set_label(&client, "ssd-2", "disk", None).await;
    wait_nodes(&client, "app=ssd-monitor", &["hdd-1", "ssd-1"]).await;
}

/// A Job of 5 completions at parallelism 2 runs on a real agent (process runtime): it completes,
/// and never more than 2 of its pods run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_five_pods_two_at_a_time_on_an_agent() {
    use futures::StreamExt;
    use k8s_openapi::api::batch::v1::Job;
    use rkube_client::{KindRef, WatchEvent};

    let c = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = c.client();
    let agent = rkube_tests::agent::Agent::start(client.clone(), "agent-1");

    // Track how many of the Job's pods run at once, from a watch.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (client, peak) = (client.clone(), peak.clone());
        tokio::spawn(async move {
            let mut running = std::collections::HashSet::new();
            let params = ListParams {
                namespace: "default".into(),
                label_selector: "job-name=batch".into(),
                ..Default::default()
            };
            let mut w = Box::pin(client.watch(&KindRef::of::<Pod>(), &params, true));
            while let Some(Ok(ev)) = w.next().await {
                let (obj, gone) = match &ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark { .. } => continue,
                };
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let phase = obj["status"]["phase"].as_str().unwrap_or("");
                if !gone && phase == "Running" {
                    running.insert(name);
                } else {
                    running.remove(&name);
                }
                peak.fetch_max(running.len(), std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
        "spec": {"completions": 5, "parallelism": 2,
            "template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 0.3"]}]}}}});
    client.create(&job, "default").await.unwrap();
    let status = wait_until(Duration::from_secs(90), "the job complete", || {
        let client = client.clone();
        async move {
            let j: Job = client.get_typed("default", "batch").await.ok()?;
            let st = j.status?;
            st.conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
                .then_some(st)
        }
    })
    .await;
    assert_eq!(status.succeeded, Some(5));
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=2).contains(&peak),
        "at most 2 pods ran at once, saw {peak}"
    );
    agent.stop().await;
}
