//! The docker compose deployment (`deploy/compose.sh`, `deploy/docker-compose.yml`) end to end,
//! where Docker and compose are available (and `RKUBE_SKIP_DOCKER` is not set): build the image
//! from the test's rkube binary, bring up 3 servers and 3 agents under a unique project name,
//! check 3 members and 3 Ready nodes, run the demo Deployment behind a NodePort (one node's port
//! reaching the replicas on every node over the pod network; logs through the API), kill the
//! leader's container, check that writes still succeed and the NodePort still answers, and tear
//! everything down (containers, network, volumes, image) even when the test fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod};
use rkube_client::{Client, ClientConfig, ListParams};
use rkube_tests::wait::wait_until;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(90);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether this machine can run the test: a Docker engine answering and some compose.
fn docker_available() -> bool {
    if std::env::var_os("RKUBE_SKIP_DOCKER").is_some() {
        return false;
    }
    let ok = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ok("docker", &["info"])
        && (ok("docker", &["compose", "version"]) || ok("docker-compose", &["version"]))
}

/// Run a command; its stdout, or a panic with its output.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the compose project (with its volumes) and the image when dropped.
struct Deployment {
    project: String,
    image: String,
    offset: u16,
    dir: tempfile::TempDir,
}

impl Deployment {
    fn compose(&self, command: &str, extra: &[&str]) -> String {
        let offset = self.offset.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut args = vec![
            command,
            "--project",
            &self.project,
            "--image",
            &self.image,
            "--port-offset",
            &offset,
            "--dir",
            &dir,
        ];
        args.extend_from_slice(extra);
        run(repo_root().join("deploy/compose.sh"), &args)
    }

    fn node_port_host(&self, agent: u16, node_port: u16) -> u16 {
        node_port + 1000 * (agent - 1) + self.offset
    }

    /// The container of compose service `service`.
    fn container(&self, service: &str) -> String {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={service}");
        let ids = run(
            "docker",
            &["ps", "-aq", "--filter", &project, "--filter", &service],
        );
        ids.lines().next().expect("a container").trim().to_string()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let offset = self.offset.to_string();
        let status = Command::new(repo_root().join("deploy/compose.sh"))
            .args(["down", "--project", &self.project, "--port-offset", &offset])
            .arg("--volumes")
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("compose down failed for project {}", self.project);
        }
        let _ = Command::new("docker")
            .args(["rmi", "--force", &self.image])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// A port offset whose published ports (API 16441-16443, node ports 30000-30009, 31000-31009
/// and 32000-32009, each plus the offset) are all free on 127.0.0.1 now.
fn free_offset() -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..50u16 {
        let offset = 100 + (seed.wrapping_add(attempt * 37) % 900);
        let ports = (16441..=16443)
            .chain((0..3).flat_map(|a| (30000..=30009).map(move |p| p + 1000 * a)))
            .map(|p| p + offset);
        let free = ports
            .clone()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return offset;
        }
    }
    panic!("no free range of ports for the compose project");
}

/// `GET /` on 127.0.0.1:`port`: the body of a 200 answer.
async fn http_get(port: u16) -> Option<String> {
    let attempt = async {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        conn.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.trim().to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_cluster_serves_a_node_port_and_survives_killing_the_leader() {
    if !docker_available() {
        println!("skipped: docker not available");
        return;
    }
    let started = std::time::Instant::now();
    let bin = rkube_tests::process::rkube_bin();
    let unique = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond() % 1_000_000
    );
    let deployment = Deployment {
        project: format!("rkube-test-{unique}"),
        image: format!("rkube-test:{unique}"),
        offset: free_offset(),
        dir: tempfile::tempdir().expect("tempdir"),
    };
    run(
        repo_root().join("deploy/build-image.sh"),
        &[
            "--binary",
            &bin.to_string_lossy(),
            "--tag",
            &deployment.image,
        ],
    );
    println!("binary and image ready after {:?}", started.elapsed());
    // `up` returns once 3 servers are members and 3 nodes are Ready.
    deployment.compose("up", &[]);
    println!("compose cluster up after {:?}", started.elapsed());
    let kubeconfig = deployment.dir.path().join("kubeconfig");
    let client =
        Client::new(ClientConfig::locate(Some(&kubeconfig)).expect("kubeconfig")).expect("client");

    let members = client.members().await.expect("members");
    assert_eq!(members.members.len(), 3, "{members:?}");
    assert!(members.members.iter().all(|m| m.voter), "{members:?}");
    let (nodes, _) = client
        .list_typed::<Node>(&ListParams::default())
        .await
        .expect("nodes");
    let ready = nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    assert_eq!(ready, 3, "Ready nodes");

    // The demo app runs as a process in each agent's container (the image holds /rkube).
    let app = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {
                "metadata": {"labels": {"app": "demo"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "demo", "image": "rkube:dev",
                        "command": ["/rkube", "demo-app"],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {
                            "httpGet": {"path": "/ready", "port": 8080},
                            "periodSeconds": 1,
                        },
                    }],
                },
            },
        }
    });
    client
        .create(&app, "default")
        .await
        .expect("create deployment");
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "demo"},
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30000}],
        }
    });
    client
        .create(&service, "default")
        .await
        .expect("create service");
    wait_until(TIMEOUT, "3 ready endpoint addresses", || {
        let client = client.clone();
        async move {
            let ep: Endpoints = client.get_typed("default", "demo").await.ok()?;
            let ready: usize = ep
                .subsets?
                .iter()
                .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                .sum();
            (ready == 3).then_some(())
        }
    })
    .await;
    // The pod network: agent-1's node port reaches the replicas on every node (pods have
    // addresses from their node's range, routed between the agents' containers).
    let (pods, _) = client
        .list_typed::<Pod>(&ListParams {
            namespace: "default".into(),
            label_selector: "app=demo".into(),
            ..Default::default()
        })
        .await
        .expect("pods");
    let nodes_used: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert!(
        nodes_used.len() >= 2,
        "replicas spread over nodes: {nodes_used:?}"
    );
    for p in &pods {
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        assert!(
            ip.starts_with("10.244."),
            "pod address {ip:?} from its node's range"
        );
    }
    let agent_1 = deployment.node_port_host(1, 30000);
    let hit = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    wait_until(TIMEOUT, "every replica through agent-1's node port", || {
        let hit = hit.clone();
        async move {
            if let Some(body) = http_get(agent_1).await {
                // "You've hit demo-...-xxxxx\n"
                let replica = body.trim_start_matches("You've hit ").to_string();
                hit.lock().expect("hit").insert(replica);
            }
            (hit.lock().expect("hit").len() == 3).then_some(())
        }
    })
    .await;
    // The API servers reach every agent's service: logs of a pod on another node than
    // server-1's first choice, through the CLI.
    let other = pods
        .iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some("agent-1"))
        .expect("a replica off agent-1");
    let logs = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", other.metadata.name.as_deref().unwrap_or_default()])
        .output()
        .expect("rkube logs");
    assert!(
        logs.status.success(),
        "rkube logs failed: {}",
        String::from_utf8_lossy(&logs.stderr)
    );

    let ports: Vec<u16> = (1..=3)
        .map(|a| deployment.node_port_host(a, 30000))
        .collect();
    let answer_on_any_agent = || {
        let ports = ports.clone();
        async move {
            for port in ports {
                if let Some(body) = http_get(port).await {
                    return Some(body);
                }
            }
            None
        }
    };
    let body = wait_until(
        TIMEOUT,
        "an answer through a node port",
        answer_on_any_agent,
    )
    .await;
    assert!(body.starts_with("You've hit demo-"), "{body}");

    // Kill the leader's container: a new leader is elected and writes go on.
    let leader = deployment.compose("leader", &[]).trim().to_string();
    assert!(leader.starts_with("server-"), "leader {leader:?}");
    run("docker", &["kill", &deployment.container(&leader)]);
    let killed_at = tokio::time::Instant::now();
    wait_until(TIMEOUT, "a write after the leader was killed", || {
        let client = client.clone();
        async move {
            let cm = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "after-failover", "namespace": "default"},
                "data": {"written": "after the leader was killed"},
            });
            client.create(&cm, "default").await.ok().map(|_| ())
        }
    })
    .await;
    println!(
        "first acknowledged write {:?} after killing {leader}",
        killed_at.elapsed()
    );
    let members = client.members().await.expect("members after failover");
    let new_leader = members
        .members
        .iter()
        .find(|m| m.id == members.leader_id)
        .map(|m| m.api_addr.clone())
        .unwrap_or_default();
    assert!(
        !new_leader.starts_with(&format!("{leader}:")),
        "the killed server {leader} still leads ({new_leader})"
    );
    let body = wait_until(TIMEOUT, "an answer after the failover", answer_on_any_agent).await;
    assert!(body.starts_with("You've hit demo-"), "{body}");
    drop(deployment);
}
