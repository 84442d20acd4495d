//! The agent's NodePort service proxy against an in-process 1-server cluster with its scheduler
//! and controllers: a Deployment of 3 demo-app replicas behind a NodePort Service answers
//! through `127.0.0.1:<nodePort>` from every replica (round robin), and from one replica only
//! once the Service has `sessionAffinity: ClientIP`.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use rkube_client::KindRef;
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NODE: &str = "proxy-node-1";
const TIMEOUT: Duration = Duration::from_secs(60);

/// `GET /` over a fresh connection with `Connection: close`: the response body, or `None` when
/// the connection fails or the answer is not a 200.
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

/// The pod name in a demo-app answer `You've hit <hostname>`.
fn hit(body: &str) -> String {
    body.strip_prefix("You've hit ")
        .unwrap_or_else(|| panic!("unexpected answer {body:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_spreads_over_ready_replicas_and_honours_client_ip_affinity() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "rkube_agent::proxy=debug,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let bin = rkube_tests::process::rkube_bin();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = Agent::start(client.clone(), NODE);

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
                        "name": "demo", "image": "rkube-demo",
                        "command": [bin.to_string_lossy(), "demo-app"],
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
    // The proxy follows the Endpoints through its own watch, a little behind this client:
    // wait until it has all three (round robin then reaches three pods in six requests).
    wait_until(
        TIMEOUT,
        "the node port to reach 3 replicas",
        || async move {
            let mut pods = BTreeSet::new();
            for _ in 0..6 {
                pods.insert(hit(&http_get(node_port).await?));
            }
            (pods.len() == 3).then_some(())
        },
    )
    .await;

    // Round robin: 30 connections reach all three replicas.
    let mut seen = BTreeSet::new();
    for i in 0..30 {
        let body = http_get(node_port)
            .await
            .unwrap_or_else(|| panic!("request {i} through the node port failed"));
        seen.insert(hit(&body));
    }
    assert_eq!(seen.len(), 3, "answers came from {seen:?}");
    assert!(seen.iter().all(|p| p.starts_with("demo-")), "{seen:?}");

    // Client IP affinity: once the proxy has it, every connection from 127.0.0.1 hits one pod.
    client
        .patch(
            &KindRef::of::<Service>(),
            "default",
            "demo",
            rkube_proto::api::PatchType::Merge,
            br#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
            false,
        )
        .await
        .unwrap();
    let sticky = wait_until(TIMEOUT, "client IP affinity in effect", || async move {
        let mut pods = BTreeSet::new();
        for _ in 0..4 {
            pods.insert(hit(&http_get(node_port).await?));
        }
        (pods.len() == 1).then(|| pods.into_iter().next().unwrap_or_default())
    })
    .await;
    for i in 0..10 {
        let body = http_get(node_port)
            .await
            .unwrap_or_else(|| panic!("sticky request {i} failed"));
        assert_eq!(hit(&body), sticky, "request {i} left its pod");
    }

    // Deleting the Service closes the node port.
    client
        .delete(
            &KindRef::of::<Service>(),
            "default",
            "demo",
            Default::default(),
        )
        .await
        .unwrap();
    wait_until(TIMEOUT, "the node port closed", || async move {
        TcpStream::connect(("127.0.0.1", node_port))
            .await
            .is_err()
            .then_some(())
    })
    .await;

    agent.stop().await;
}
