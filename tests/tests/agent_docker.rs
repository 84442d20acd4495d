//! The agent's docker runtime, where a Docker engine is available (and `RKUBE_SKIP_DOCKER` is not
//! set): an image built from the test's rkube binary (`deploy/build-image.sh`), an in-process
//! 1-server cluster with its controllers and scheduler, and an in-process agent running pods as
//! Docker containers (one sandbox per pod on the test's own Docker network). The demo Deployment
//! (3 replicas, no `command`: the image's entrypoint runs `demo-app`) reaches Ready with pod IPs
//! on the Docker network and answers through the NodePort from every replica, and `rkube exec -i`
//! into one of them streams stdin and output and returns the exit code; its log has the time of
//! each line. Everything the test
//! created (containers by their node label, the network, the image) is removed even on failure.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use rkube_agent::runtime::DockerOptions;
use rkube_agent::RuntimeKind;
use rkube_client::ListParams;
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(90);

fn docker_available() -> bool {
    std::env::var_os("RKUBE_SKIP_DOCKER").is_none()
        && Command::new("docker")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Removes the node's containers, the network and the image when dropped.
struct DockerLeftovers {
    node: String,
    network: String,
    image: String,
}

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        let label = format!(
            "label={}={}",
            rkube_agent::runtime::docker::NODE_LABEL,
            self.node
        );
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "--force"])
                .args(&ids)
                .stdout(Stdio::null())
                .status();
        }
        for args in [
            ["network", "rm", &self.network],
            ["rmi", "--force", &self.image],
        ] {
            let _ = Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
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
async fn demo_deployment_on_docker_is_ready_and_spread_over_its_replicas() {
    if !docker_available() {
        println!("skipped: docker not available");
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "rkube_agent=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let unique = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond() % 1_000_000
    );
    let leftovers = DockerLeftovers {
        node: format!("docker-node-{unique}"),
        network: format!("rkube-test-{unique}"),
        image: format!("rkube-test:{unique}"),
    };
    let bin = rkube_tests::process::rkube_bin();
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/build-image.sh");
    let out = Command::new(build)
        .args([
            "--binary",
            &bin.to_string_lossy(),
            "--tag",
            &leftovers.image,
        ])
        .output()
        .expect("run build-image.sh");
    assert!(
        out.status.success(),
        "build-image.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let docker = DockerOptions {
        network: leftovers.network.clone(),
        sandbox_image: leftovers.image.clone(),
        ..DockerOptions::default()
    };
    let agent = Agent::start_with(client.clone(), &leftovers.node, |o| {
        o.runtime = RuntimeKind::Docker;
        o.docker = docker;
    });

    let deployment = json!({
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
                        "name": "demo", "image": leftovers.image,
                        // No command: the image's entrypoint (/rkube) runs the args.
                        "args": ["demo-app"],
                        "ports": [{"containerPort": 8080}],
                        "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
                        "readinessProbe": {
                            "httpGet": {"path": "/ready", "port": 8080},
                            "periodSeconds": 1,
                        },
                    }],
                },
            },
        }
    });
    client.create(&deployment, "default").await.unwrap();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "demo"},
            "ports": [{"port": 80, "targetPort": 8080}],
        }
    });
    let created: Service =
        serde_json::from_value(client.create(&service, "default").await.unwrap()).unwrap();
    let node_port = created.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .expect("an allocated nodePort");
    let node_port = u16::try_from(node_port).unwrap();

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
    let (pods, _) = client
        .list_typed::<Pod>(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let status = pod.status.as_ref().unwrap();
        let ip = status.pod_ip.as_deref().unwrap_or_default();
        assert!(
            !ip.is_empty() && !ip.starts_with("127."),
            "pod IP {ip:?} is not a Docker network address"
        );
        let id = status.container_statuses.as_ref().unwrap()[0]
            .container_id
            .clone()
            .unwrap_or_default();
        assert!(id.starts_with("docker://"), "container id {id:?}");
    }

    wait_until(TIMEOUT, "an answer through the node port", || {
        http_get(node_port)
    })
    .await;
    let mut hits = BTreeSet::new();
    for _ in 0..12 {
        let body = http_get(node_port).await.expect("an answer");
        let pod = body
            .strip_prefix("You've hit ")
            .unwrap_or_else(|| panic!("unexpected answer {body:?}"));
        hits.insert(pod.to_string());
    }
    let names: BTreeSet<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(hits, names, "round robin reaches every replica");

    // `rkube exec -i` into a Docker container: stdin reaches the command (and its end closes the
    // command's stdin), stdout and stderr come back apart, and so does the command's exit code.
    let pod_name = pods[0].metadata.name.clone().unwrap();
    let kubeconfig = cluster.kubeconfig();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let script = "cat; echo done >&2; exit 42";
        let mut child = Command::new(rkube_tests::process::rkube_bin())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["exec", "-i", &pod_name, "--", "sh", "-c", script])
            .env_remove("RKUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rkube exec");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello docker\n").unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned()
        ),
        (Some(42), "hello docker\n".to_string(), "done\n".to_string())
    );

    // Its log, as Docker delivered it to the agent, with the time of each line.
    let pod_name = pods[0].metadata.name.clone().unwrap();
    let log = wait_until(TIMEOUT, "the demo app's log", || {
        let (client, pod_name) = (client.clone(), pod_name.clone());
        async move {
            let options = rkube_client::LogOptions {
                timestamps: true,
                ..Default::default()
            };
            let mut stream = client.pod_logs("default", &pod_name, &options).await.ok()?;
            let mut text = Vec::new();
            while let Some(chunk) = stream.next().await {
                text.extend(chunk.ok()?);
            }
            let text = String::from_utf8_lossy(&text).into_owned();
            text.contains("demo app listening").then_some(text)
        }
    })
    .await;
    for line in log.lines() {
        let (time, _) = line.split_once(' ').unwrap_or_default();
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{line:?}");
    }

    agent.stop().await;
    // Stopping the agent stopped its pods' containers and removed their sandboxes.
    let label = format!(
        "label={}={}",
        rkube_agent::runtime::docker::NODE_LABEL,
        leftovers.node
    );
    let running = Command::new("docker")
        .args(["ps", "-q", "--filter", &label])
        .output()
        .unwrap();
    assert!(
        running.stdout.is_empty(),
        "containers still running after the agent stopped: {}",
        String::from_utf8_lossy(&running.stdout)
    );
    drop(leftovers);
}
