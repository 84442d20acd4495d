//! Probes on the node agent (process runtime) against an in-process 1-server cluster: an HTTP
//! readiness probe gated by a tcpSocket startup probe, an exec readiness probe following a file,
//! a failing liveness probe restarting its container with Unhealthy and Killing events, and a
//! failing startup probe restarting its container.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use rkube_client::{Client, ListParams};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

const NODE: &str = "probes-1";
const TIMEOUT: Duration = Duration::from_secs(40);

fn pod(name: &str, container: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 2,
            "containers": [container],
        }
    })
}

async fn get_pod(client: &Client, name: &str) -> Option<Pod> {
    client.get_typed::<Pod>("default", name).await.ok()
}

/// Wait until pod `name` satisfies `check`.
async fn wait_pod(client: &Client, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    wait_until(TIMEOUT, &format!("pod {name}: {what}"), || {
        let client = client.clone();
        let check = &check;
        async move { get_pod(&client, name).await.filter(|p| check(p)) }
    })
    .await
}

fn condition(p: &Pod, ty: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| c.status.clone())
}

fn container(p: &Pod) -> ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
        .unwrap_or_default()
}

fn running(p: &Pod) -> bool {
    container(p).state.is_some_and(|s| s.running.is_some())
}

fn ready(p: &Pod) -> bool {
    container(p).ready && condition(p, "Ready").as_deref() == Some("True")
}

fn not_ready(p: &Pod) -> bool {
    !container(p).ready
        && condition(p, "Ready").as_deref() == Some("False")
        && condition(p, "ContainersReady").as_deref() == Some("False")
}

/// The `reason message` lines of the Events about pod `name`.
async fn events(client: &Client, name: &str) -> Vec<String> {
    let params = ListParams {
        namespace: "default".into(),
        ..Default::default()
    };
    let (events, _) = client
        .list_typed::<Event>(&params)
        .await
        .unwrap_or_default();
    events
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

/// Wait for an event about pod `name` starting with `prefix`.
async fn wait_event(client: &Client, name: &str, prefix: &str) -> String {
    wait_until(
        TIMEOUT,
        &format!("event {prefix:?} about {name}"),
        || async move {
            events(client, name)
                .await
                .into_iter()
                .find(|e| e.starts_with(prefix))
        },
    )
    .await
}

fn touch(path: &Path) {
    std::fs::write(path, "").expect("write a trigger file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_drive_readiness_and_restarts() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "rkube_agent=debug,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = Agent::start(client.clone(), NODE);
    let triggers = tempfile::tempdir().expect("tempdir");
    let go = triggers.path().join("go");
    let ready_file = triggers.path().join("ready");
    let probe = |handler: Value, extra: Value| {
        let mut p = json!({"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1});
        for (k, v) in handler
            .as_object()
            .unwrap()
            .iter()
            .chain(extra.as_object().unwrap())
        {
            p[k] = v.clone();
        }
        p
    };

    // An HTTP server that starts only once `go` exists; a tcpSocket startup probe gates an
    // httpGet readiness probe on the named port.
    let web = json!({
        "name": "web", "image": "python",
        "command": ["sh", "-c", format!(
            "while [ ! -f {} ]; do sleep 0.1; done; exec python3 -m http.server 8080 --bind $POD_IP",
            go.display()
        )],
        "ports": [{"name": "http", "containerPort": 8080}],
        "startupProbe": probe(json!({"tcpSocket": {"port": 8080}}), json!({"failureThreshold": 60})),
        "readinessProbe": probe(json!({"httpGet": {"port": "http", "path": "/", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}}), json!({})),
    });
    client.create(&pod("web", web), "default").await.unwrap();
    // An exec readiness probe following a file.
    let filer = json!({
        "name": "main", "image": "busybox", "command": ["sleep", "1000"],
        "readinessProbe": probe(json!({"exec": {"command": ["test", "-f", ready_file.display().to_string()]}}), json!({})),
    });
    client
        .create(&pod("filer", filer), "default")
        .await
        .unwrap();
    // A liveness probe that fails after its initial delay.
    let doomed = json!({
        "name": "main", "image": "busybox", "command": ["sleep", "1000"],
        "livenessProbe": probe(json!({"exec": {"command": ["false"]}}), json!({"initialDelaySeconds": 1})),
    });
    client
        .create(&pod("doomed", doomed), "default")
        .await
        .unwrap();
    // A startup probe that never succeeds.
    let slow = json!({
        "name": "main", "image": "busybox", "command": ["sleep", "1000"],
        "startupProbe": probe(json!({"exec": {"command": ["sh", "-c", "exit 1"]}}), json!({"failureThreshold": 2})),
    });
    client.create(&pod("slow", slow), "default").await.unwrap();

    // web: running but neither started nor ready while nothing listens.
    let web = wait_pod(&client, "web", "running, not started", |p| {
        running(p) && container(p).started == Some(false) && not_ready(p)
    })
    .await;
    assert_eq!(container(&web).restart_count, 0);
    touch(&go);
    let web = wait_pod(&client, "web", "started and ready", |p| {
        container(p).started == Some(true) && ready(p)
    })
    .await;
    assert_eq!(container(&web).restart_count, 0);

    // filer: ready exactly while the file exists.
    wait_pod(&client, "filer", "running, not ready", |p| {
        running(p) && container(p).started == Some(true) && not_ready(p)
    })
    .await;
    wait_event(&client, "filer", "Unhealthy Readiness probe failed:").await;
    touch(&ready_file);
    wait_pod(&client, "filer", "ready", ready).await;
    std::fs::remove_file(&ready_file).unwrap();
    wait_pod(&client, "filer", "not ready again", |p| {
        running(p) && not_ready(p)
    })
    .await;

    // doomed: killed and restarted, with the kubelet's events and the exit recorded.
    let doomed = wait_pod(&client, "doomed", "restarted twice", |p| {
        container(p).restart_count >= 2
    })
    .await;
    let last = container(&doomed).last_state.unwrap().terminated.unwrap();
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(last.exit_code, 143, "sleep ends on SIGTERM");
    let unhealthy = wait_event(&client, "doomed", "Unhealthy Liveness probe failed:").await;
    assert!(unhealthy.contains("exited with 1"), "{unhealthy}");
    assert_eq!(
        wait_event(&client, "doomed", "Killing").await,
        "Killing Container main failed liveness probe, will be restarted"
    );

    // slow: the startup probe's failures restart it; it never becomes started or ready.
    let slow = wait_pod(&client, "slow", "restarted", |p| {
        container(p).restart_count >= 1
    })
    .await;
    assert!(!container(&slow).ready);
    wait_event(
        &client,
        "slow",
        "Killing Container main failed startup probe",
    )
    .await;

    agent.stop().await;
}
