//! Resource limits on the process runtime against an in-process 1-server cluster: where this
//! machine lets the agent create cgroups, a pod over its memory limit is OOM-killed, reported
//! as `OOMKilled` and restarted, and a cpu-limited pod's cgroup has its CFS quota (the test
//! says it was skipped otherwise, after checking what the agent reports instead); with
//! `--cgroup-root none` the Node says limits are unenforced and pods with limits get a
//! `ResourceLimitsUnenforced` Warning Event.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod};
use rkube_agent::runtime::cgroups::{self, CgroupRoot, ENFORCEMENT_ANNOTATION};
use rkube_client::{Client, KindRef, ListParams};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(60);

fn pod(name: &str, node: &str, limits: Value, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", script],
                "resources": {"limits": limits},
            }],
        }
    })
}

async fn start(node: &str, root: CgroupRoot) -> (ApiCluster, Client, Agent) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "rkube_agent=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::default()).await;
    let client = cluster.client();
    let agent = Agent::start_with(client.clone(), node, |o| {
        o.proxy = false;
        o.cluster_dns = None;
        o.cgroup_root = root;
    });
    (cluster, client, agent)
}

/// The Node's resource limits annotation, once registered.
async fn enforcement(client: &Client, node: &str) -> String {
    wait_until(TIMEOUT, &format!("node {node} registered"), || async move {
        let node: Node = client.get_typed("", node).await.ok()?;
        node.metadata
            .annotations?
            .get(ENFORCEMENT_ANNOTATION)
            .cloned()
    })
    .await
}

async fn wait_pod(client: &Client, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    wait_until(TIMEOUT, &format!("pod {name}: {what}"), || {
        let check = &check;
        async move {
            let p: Pod = client.get_typed("default", name).await.ok()?;
            check(&p).then_some(p)
        }
    })
    .await
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

/// Wait for a Warning Event `reason` about pod `name`; its message.
async fn wait_warning(client: &Client, name: &str, reason: &str) -> String {
    wait_until(
        TIMEOUT,
        &format!("{reason} event about {name}"),
        || async move {
            let params = ListParams {
                namespace: "default".into(),
                ..Default::default()
            };
            let (events, _) = client.list_typed::<Event>(&params).await.ok()?;
            events.into_iter().find_map(|e| {
                (e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning"))
                .then(|| e.message.unwrap_or_default())
            })
        },
    )
    .await
}

/// The directory of the cgroup the in-process agent gives container `main` of `pod` in the
/// hierarchy of `controller`: `rkube-<node>/pod-<uid>/main` under this process's own group.
fn container_group(node: &str, pod: &Pod, controller: &str) -> PathBuf {
    let mounts =
        cgroups::parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let own = cgroups::parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
    let own_dir = match mounts.iter().find(|m| m.has_controller(controller)) {
        Some(mount) => {
            let (_, path) = own
                .iter()
                .find(|(c, _)| c.iter().any(|c| c == controller))
                .unwrap();
            mount.dir_of(path).unwrap()
        }
        None => {
            let mount = mounts.iter().find(|m| m.controllers.is_none()).unwrap();
            let (_, path) = own.iter().find(|(c, _)| c.is_empty()).unwrap();
            mount.dir_of(path).unwrap()
        }
    };
    let uid = pod.metadata.uid.as_deref().unwrap();
    own_dir
        .join(format!("rkube-{node}"))
        .join(format!("pod-{uid}"))
        .join("main")
}

async fn delete_pod(client: &Client, name: &str) {
    client
        .delete(&KindRef::of::<Pod>(), "default", name, Default::default())
        .await
        .unwrap();
    wait_until(TIMEOUT, &format!("pod {name} gone"), || async move {
        client
            .get_typed::<Pod>("default", name)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_cpu_limits_are_enforced_through_cgroups() {
    const NODE: &str = "limits-1";
    let (_cluster, client, agent) = start(NODE, CgroupRoot::Auto).await;
    let enforced = enforcement(&client, NODE).await;
    if !enforced.starts_with("enforced") {
        // What the agent must do instead: say so on the Node and on the pod.
        client
            .create(
                &pod(
                    "unenforced",
                    NODE,
                    json!({"memory": "64Mi"}),
                    "exec sleep 1000",
                ),
                "default",
            )
            .await
            .unwrap();
        let message = wait_warning(&client, "unenforced", "ResourceLimitsUnenforced").await;
        assert!(
            message.contains("memory limit 67108864 bytes is not enforced"),
            "{message}"
        );
        println!(
            "SKIPPED memory_and_cpu_limits_are_enforced_through_cgroups: this machine does not \
             let the agent enforce limits ({enforced}); checked the Node annotation and the \
             ResourceLimitsUnenforced event instead"
        );
        agent.stop().await;
        return;
    }

    // Over its memory limit: OOM-killed, reported as such, restarted.
    client
        .create(
            &pod(
                "hog",
                NODE,
                json!({"memory": "64Mi"}),
                "echo start; exec tail /dev/zero",
            ),
            "default",
        )
        .await
        .unwrap();
    let hog = wait_pod(&client, "hog", "OOM-killed and restarted", |p| {
        let c = container(p);
        let last = c.last_state.and_then(|s| s.terminated);
        c.restart_count >= 1 && last.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
    })
    .await;
    let last = container(&hog).last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.signal), (137, Some(9)), "{last:?}");

    // A cpu limit: the container's cgroup has its quota of the 100 ms period, and goes with it.
    client
        .create(
            &pod("capped", NODE, json!({"cpu": "250m"}), "exec sleep 1000"),
            "default",
        )
        .await
        .unwrap();
    let capped = wait_pod(&client, "capped", "running", running).await;
    let group = container_group(NODE, &capped, "cpu");
    let read = |file: &str| std::fs::read_to_string(group.join(file)).map(|s| s.trim().to_string());
    match read("cpu.max") {
        Ok(max) => assert_eq!(max, "25000 100000"),
        Err(_) => {
            assert_eq!(read("cpu.cfs_quota_us").unwrap(), "25000");
            assert_eq!(read("cpu.cfs_period_us").unwrap(), "100000");
        }
    }
    assert!(
        !read("cgroup.procs").unwrap().is_empty(),
        "the container runs in it"
    );
    delete_pod(&client, "capped").await;
    assert!(
        !group.exists(),
        "{} is removed with its pod",
        group.display()
    );
    delete_pod(&client, "hog").await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_limits_are_reported_unenforced() {
    const NODE: &str = "limits-2";
    let (_cluster, client, agent) = start(NODE, CgroupRoot::Disabled).await;
    assert_eq!(
        enforcement(&client, NODE).await,
        "unenforced: disabled by --cgroup-root none"
    );
    client
        .create(
            &pod(
                "free",
                NODE,
                json!({"memory": "64Mi", "cpu": "250m"}),
                "exec sleep 1000",
            ),
            "default",
        )
        .await
        .unwrap();
    // It runs anyway, and its pod is told which limits are not enforced and why.
    wait_pod(&client, "free", "running", running).await;
    let message = wait_warning(&client, "free", "ResourceLimitsUnenforced").await;
    assert_eq!(
        message,
        "container main: memory limit 67108864 bytes is not enforced: disabled by --cgroup-root \
         none; cpu limit 250m is not enforced: disabled by --cgroup-root none"
    );
    delete_pod(&client, "free").await;
    agent.stop().await;
}
