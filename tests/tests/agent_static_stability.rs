//! Static stability: when no API server answers, the agent keeps its pods running (and keeps
//! restarting their crashed containers on its own); once a server is back it reports what
//! happened meanwhile and follows changes made while it was cut off.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_client::Client;
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::json;

const NODE: &str = "stable-1";
const TIMEOUT: Duration = Duration::from_secs(30);

fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

/// The pid the container wrote into `file`, once it is a live process.
async fn live_pid(file: &std::path::Path) -> u32 {
    wait_until(TIMEOUT, "the container's pid", || {
        let pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        async move { pid }
    })
    .await
}

async fn wait_pod(client: &Client, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    wait_until(TIMEOUT, what, || {
        let client = client.clone();
        let check = &check;
        async move {
            client
                .get_typed::<Pod>("default", "steady")
                .await
                .ok()
                .filter(|p| check(p))
        }
    })
    .await
}

#[tokio::test]
async fn pods_keep_running_without_the_control_plane_and_status_catches_up() {
    let mut cluster = ApiCluster::start_opts(1, ClusterOptions::default()).await;
    let client = cluster.client();
    let agent = Agent::start(client.clone(), NODE);
    let tmp = tempfile::tempdir().expect("tempdir");
    let pid_file = tmp.path().join("pid");
    // `$$$$`: Kubernetes' variable expansion turns `$$` into `$`, so the shell sees `$$`.
    let script = format!("echo $$$$ > {}; exec sleep 3600", pid_file.display());
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "steady", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
        }
    });
    client.create(&pod, "default").await.expect("create pod");
    wait_pod(&client, "running", running).await;
    let first = live_pid(&pid_file).await;

    // Every server is gone.
    cluster.kill(1);
    wait_until(TIMEOUT, "the API unreachable", || {
        let client = client.clone();
        async move { client.members().await.is_err().then_some(()) }
    })
    .await;
    // Sleeping only to show that nothing happens: the pod is not stopped for lack of a server.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        std::path::Path::new(&format!("/proc/{first}")).exists(),
        "the container keeps running while no server answers"
    );
    // A crash while cut off is handled locally: the container is restarted.
    std::fs::remove_file(&pid_file).expect("rm pid");
    let _ = std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status();
    let second = live_pid(&pid_file).await;
    assert_ne!(first, second, "the crashed container was started again");

    // The server returns: the restart is reported, and a deletion made now is followed.
    cluster.restart(1).await;
    wait_pod(&client, "the restart reported", |p| {
        restart_count(p) >= 1 && running(p)
    })
    .await;
    client
        .delete(
            &rkube_client::KindRef::of::<Pod>(),
            "default",
            "steady",
            Default::default(),
        )
        .await
        .expect("delete");
    wait_until(TIMEOUT, "the container stopped after the deletion", || {
        let gone = !std::path::Path::new(&format!("/proc/{second}")).exists();
        async move { gone.then_some(()) }
    })
    .await;
    agent.stop().await;
}
