//! The node agent on the process runtime against an in-process 1-server cluster with its
//! scheduler and controllers: registration and heartbeats, a pod running with its own loopback
//! address and a log file, graceful deletion killing the process, crash-loop restarts with
//! back-off, a pod that succeeds, a container without a command, and a ReplicaSet's pods.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use rkube_client::{Client, KindRef, ListParams};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

const NODE: &str = "agent-1";
const TIMEOUT: Duration = Duration::from_secs(30);

fn pod(name: &str, restart_policy: &str, command: Option<&str>) -> Value {
    let mut container = json!({"name": "main", "image": "busybox"});
    if let Some(script) = command {
        container["command"] = json!(["sh", "-c", script]);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 5,
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
        async move {
            let pod = get_pod(&client, name).await;
            if let Some(p) = &pod {
                tracing::trace!(pod = %serde_json::to_string(p).unwrap_or_default(), "waiting");
            }
            pod.filter(|p| check(p))
        }
    })
    .await
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
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

fn container(p: &Pod) -> k8s_openapi::api::core::v1::ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
        .unwrap_or_default()
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
}

/// The value of `key=` in a log written by the test scripts.
async fn logged(path: &Path, key: &str) -> String {
    wait_until(
        TIMEOUT,
        &format!("{key} in {}", path.display()),
        || async move {
            let log = rkube_tests::agent::read_log(path).ok()?;
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
        },
    )
    .await
}

/// Whether process `pid` still runs (a zombie awaiting its reaper counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat[stat.rfind(')').map_or(0, |i| i + 2)..]
            .split(' ')
            .next();
        state != Some("Z")
    })
}

/// Logs its address and pid, then sleeps. `$$$$` is the shell's `$$` once Kubernetes' `$(VAR)`
/// expansion has turned `$$` into `$`.
const SLEEPER: &str = "echo hello; echo ip=$POD_IP; echo pid=$$$$; exec sleep 1000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_pods_on_the_process_runtime() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "rkube_agent=debug,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = Agent::start(client.clone(), NODE);

    // Registration: the Node is Ready with its hostname label and capacity, the Lease renewed.
    let node = wait_until(TIMEOUT, "node agent-1 Ready", || {
        let client = client.clone();
        async move {
            let node: Node = client.get_typed("", NODE).await.ok()?;
            let ready = node
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(node)
        }
    })
    .await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    let capacity = node.status.unwrap().capacity.unwrap();
    assert_eq!(capacity["pods"].0, "110");
    let first_renewal = wait_until(TIMEOUT, "the node lease", || {
        let client = client.clone();
        async move {
            let lease: Lease = client.get_typed("kube-node-lease", NODE).await.ok()?;
            lease.spec?.renew_time
        }
    })
    .await;
    wait_until(TIMEOUT, "the node lease renewed", || {
        let client = client.clone();
        let first = first_renewal.clone();
        async move {
            let lease: Lease = client.get_typed("kube-node-lease", NODE).await.ok()?;
            (lease.spec?.renew_time? != first).then_some(())
        }
    })
    .await;

    // A long-running pod: Running and Ready with its own 127.x address, logging to its file.
    client
        .create(&pod("hello", "Always", Some(SLEEPER)), "default")
        .await
        .unwrap();
    let hello = wait_pod(&client, "hello", "running and ready", running_and_ready).await;
    let status = hello.status.clone().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "pod IP {ip}");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());
    let c = container(&hello);
    assert!(c.ready && c.state.unwrap().running.is_some() && c.restart_count == 0);
    let log = agent.pod_dir(&hello).join("main.log");
    assert_eq!(logged(&log, "ip").await, ip);
    assert!(rkube_tests::agent::read_log(&log)
        .unwrap()
        .starts_with("hello\n"));
    let pid: u32 = logged(&log, "pid").await.parse().unwrap();
    assert!(alive(pid));

    // Graceful deletion: the process is stopped, the agent confirms, the pod is gone.
    client
        .delete(
            &KindRef::of::<Pod>(),
            "default",
            "hello",
            Default::default(),
        )
        .await
        .unwrap();
    wait_until(TIMEOUT, "pod hello gone", || {
        let client = client.clone();
        async move { get_pod(&client, "hello").await.is_none().then_some(()) }
    })
    .await;
    wait_until(TIMEOUT, "the process of pod hello gone", || async move {
        (!alive(pid)).then_some(())
    })
    .await;

    // Crash loop: restarts counted, with back-off between them.
    client
        .create(&pod("crasher", "Always", Some("exit 3")), "default")
        .await
        .unwrap();
    let crasher = wait_pod(&client, "crasher", "restarted 3 times", |p| {
        container(p).restart_count >= 3
    })
    .await;
    let c = container(&crasher);
    let last = c.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    assert_eq!(phase(&crasher), "Running");
    wait_pod(&client, "crasher", "waiting in CrashLoopBackOff", |p| {
        container(p)
            .state
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .as_deref()
            == Some("CrashLoopBackOff")
    })
    .await;

    // restartPolicy Never and exit 0: Succeeded, the container terminated Completed.
    client
        .create(&pod("once", "Never", Some("echo done")), "default")
        .await
        .unwrap();
    let once = wait_pod(&client, "once", "Succeeded", |p| phase(p) == "Succeeded").await;
    let c = container(&once);
    let t = c.state.unwrap().terminated.unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref(), c.restart_count),
        (0, Some("Completed"), 0)
    );
    assert_eq!(condition(&once, "Ready").as_deref(), Some("False"));

    // No command: a clear waiting reason, and the pod stays Pending.
    client
        .create(&pod("nocmd", "Always", None), "default")
        .await
        .unwrap();
    let nocmd = wait_pod(&client, "nocmd", "waiting with NoCommand", |p| {
        container(p)
            .state
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .as_deref()
            == Some("NoCommand")
    })
    .await;
    assert_eq!(phase(&nocmd), "Pending");
    let message = container(&nocmd)
        .state
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(message.contains("has no command"), "{message}");

    // A ReplicaSet of two: two processes, two addresses.
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "sleepers", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "sleepers"}},
            "template": {
                "metadata": {"labels": {"app": "sleepers"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", SLEEPER]}],
                },
            },
        }
    });
    client.create(&rs, "default").await.unwrap();
    let replicas = wait_until(TIMEOUT, "2 running ReplicaSet pods", || {
        let client = client.clone();
        async move {
            let (pods, _) = client
                .list_typed::<Pod>(&ListParams {
                    namespace: "default".into(),
                    label_selector: "app=sleepers".into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            (pods.len() == 2 && pods.iter().all(running_and_ready)).then_some(pods)
        }
    })
    .await;
    let mut pids = Vec::new();
    let mut ips = Vec::new();
    for p in &replicas {
        let log = agent.pod_dir(p).join("main.log");
        pids.push(logged(&log, "pid").await.parse::<u32>().unwrap());
        ips.push(p.status.as_ref().unwrap().pod_ip.clone().unwrap());
    }
    assert_ne!(pids[0], pids[1]);
    assert_ne!(ips[0], ips[1]);
    assert!(pids.iter().all(|p| alive(*p)));

    // Stopping the agent stops its containers.
    agent.stop().await;
    assert!(pids.iter().all(|p| !alive(*p)));
}
