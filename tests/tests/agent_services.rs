//! Service traffic inside the node against an in-process 1-server cluster with its scheduler
//! and controllers and one in-process agent: a pod reaches a ClusterIP Service of 3 demo-app
//! replicas through the `DEMO_SERVICE_HOST`/`DEMO_SERVICE_PORT` variables the agent gives it
//! (load spread over the replicas), the Docker-link variables are there too, and the agent's
//! DNS responder answers a ClusterIP Service, a headless one (the pods' addresses, and a
//! StatefulSet-style hostname) and an ExternalName one (a CNAME, from the shared
//! `external-endpoints.yaml` example).
//!
//! Cluster IPs need the service range made local on the host (a route, so root or
//! CAP_NET_ADMIN): without it the test prints why and skips.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const NODE: &str = "services-node-1";
const TIMEOUT: Duration = Duration::from_secs(60);

/// `GET /` over a fresh connection: the body of a 200 answer, else `None`.
async fn http_get(addr: SocketAddr) -> Option<String> {
    let attempt = async {
        let mut conn = TcpStream::connect(addr).await.ok()?;
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

/// One DNS query over UDP to `server`; `None` when no answer comes.
async fn dns(server: SocketAddr, name: &str, qtype: RecordType) -> Option<Message> {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(Name::from_ascii(name).ok()?, qtype));
    let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    socket.send_to(&request.to_vec().ok()?, server).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    let answer = Message::from_vec(&buf[..len]).ok()?;
    (answer.metadata.id == request.metadata.id).then_some(answer)
}

fn a_records(m: &Message) -> BTreeSet<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The documents of a shared example manifest.
fn example(file: &str) -> Vec<Value> {
    let path = format!("/work/shared/examples/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_cluster_ips_by_env_and_dns_answers_services() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| {
            "rkube_agent::proxy=debug,rkube_agent::dns=debug,rkube_agent=info,warn".into()
        }))
        .with_test_writer()
        .try_init();
    let cidr: rkube_agent::service_cidr::ServiceCidr =
        rkube_agent::service_cidr::DEFAULT_SERVICE_CIDR
            .parse()
            .unwrap();
    if let Err(e) = rkube_agent::service_cidr::make_local(cidr).await {
        println!("skipped: the service range cannot be made local on this host: {e}");
        return;
    }
    // A DNS address of this test's own, so agents of tests running at the same time (which
    // share the default address through SO_REUSEPORT) never answer our queries.
    let dns_addr = SocketAddr::new(
        Ipv4Addr::new(
            10,
            96,
            rand::random_range(200..=254),
            rand::random_range(1..=254),
        )
        .into(),
        53,
    );
    let bin = rkube_tests::process::rkube_bin();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = Agent::start_with(client.clone(), NODE, |o| o.cluster_dns = Some(dns_addr));

    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {
                "metadata": {"labels": {"app": "demo", "headless": "yes"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "demo", "image": "rkube-demo",
                        "command": [bin.to_string_lossy(), "demo-app"],
                        "ports": [{"name": "http", "containerPort": 8080}],
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
            "selector": {"app": "demo"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        }
    });
    let created: Service =
        serde_json::from_value(client.create(&service, "default").await.unwrap()).unwrap();
    let cluster_ip: Ipv4Addr = created
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .expect("an allocated cluster IP")
        .parse()
        .unwrap();
    assert!(
        cidr.contains(cluster_ip.into()),
        "{cluster_ip} outside {cidr}"
    );
    let headless = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "demo-headless", "namespace": "default"},
        "spec": {
            "clusterIP": "None",
            "selector": {"headless": "yes"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        }
    });
    client.create(&headless, "default").await.unwrap();
    for doc in example("external-endpoints.yaml") {
        client.create(&doc, "default").await.unwrap();
    }

    let ready_ips = wait_until(TIMEOUT, "3 ready endpoint addresses", || {
        let client = client.clone();
        async move {
            let ep: Endpoints = client.get_typed("default", "demo").await.ok()?;
            let ips: BTreeSet<Ipv4Addr> = ep
                .subsets?
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .filter_map(|a| a.ip.parse().ok())
                .collect();
            (ips.len() == 3).then_some(ips)
        }
    })
    .await;

    // From this node (the process runtime shares the host's network, so this is what a pod
    // does): the cluster IP answers from every replica, round robin.
    let service_addr = SocketAddr::new(cluster_ip.into(), 80);
    // The agent's view of the Endpoints may be a little behind this client's.
    wait_until(
        TIMEOUT,
        "the cluster IP to reach 3 replicas",
        || async move {
            let mut bodies = BTreeSet::new();
            for _ in 0..6 {
                bodies.insert(http_get(service_addr).await?);
            }
            (bodies.len() == 3).then_some(())
        },
    )
    .await;
    let mut seen = BTreeSet::new();
    for i in 0..30 {
        let body = http_get(service_addr)
            .await
            .unwrap_or_else(|| panic!("request {i} to the cluster IP failed"));
        seen.insert(body);
    }
    assert_eq!(seen.len(), 3, "answers came from {seen:?}");

    // A pod started now gets the Service's variables and reaches it with them.
    let client_pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "bash",
                "command": ["bash", "-c", concat!(
                    "env | sort; ",
                    "for i in 1 2 3 4 5 6 7 8 9; do ",
                    "exec 3<>/dev/tcp/$DEMO_SERVICE_HOST/$DEMO_SERVICE_PORT_HTTP || exit 1; ",
                    "printf 'GET / HTTP/1.1\\r\\nHost: demo\\r\\nConnection: close\\r\\n\\r\\n' >&3; ",
                    "cat <&3 | tail -n 1; echo; exec 3<&-; done",
                )],
            }],
        }
    });
    client.create(&client_pod, "default").await.unwrap();
    let done: Pod = wait_until(TIMEOUT, "the client pod to finish", || {
        let client = client.clone();
        async move {
            let pod: Pod = client.get_typed("default", "client").await.ok()?;
            let phase = pod.status.as_ref()?.phase.clone()?;
            (phase == "Succeeded" || phase == "Failed").then_some(pod)
        }
    })
    .await;
    let log = rkube_tests::agent::read_log(&agent.pod_dir(&done).join("main.log")).unwrap();
    assert_eq!(
        done.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded"),
        "client log:\n{log}"
    );
    let ip = cluster_ip.to_string();
    for (name, value) in [
        ("DEMO_SERVICE_HOST", ip.clone()),
        ("DEMO_SERVICE_PORT", "80".into()),
        ("DEMO_SERVICE_PORT_HTTP", "80".into()),
        ("DEMO_PORT", format!("tcp://{ip}:80")),
        ("DEMO_PORT_80_TCP", format!("tcp://{ip}:80")),
        ("DEMO_PORT_80_TCP_PROTO", "tcp".into()),
        ("DEMO_PORT_80_TCP_PORT", "80".into()),
        ("DEMO_PORT_80_TCP_ADDR", ip.clone()),
        ("EXTERNAL_API_SERVICE_PORT", "80".into()),
    ] {
        let line = format!("{name}={value}");
        assert!(log.lines().any(|l| l == line), "no {line} in:\n{log}");
    }
    // Headless and ExternalName Services have no variables.
    assert!(!log.contains("DEMO_HEADLESS_"), "{log}");
    assert!(!log.contains("EXTERNAL_NAME_"), "{log}");
    let hits: BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("You've hit "))
        .collect();
    assert_eq!(hits.len(), 3, "the pod reached {hits:?}; log:\n{log}");

    // DNS: the cluster IP, the headless Service's pods, the ExternalName's CNAME.
    let answer = wait_until(TIMEOUT, "the DNS responder", || {
        dns(dns_addr, "demo.default.svc.cluster.local.", RecordType::A)
    })
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&answer), BTreeSet::from([cluster_ip]));
    let pods = wait_until(TIMEOUT, "the headless Service's addresses", || async {
        let m = dns(
            dns_addr,
            "demo-headless.default.svc.cluster.local.",
            RecordType::A,
        )
        .await?;
        let ips = a_records(&m);
        (ips.len() == 3).then_some(ips)
    })
    .await;
    assert_eq!(pods, ready_ips);
    let ext = dns(
        dns_addr,
        "external-name.default.svc.cluster.local.",
        RecordType::A,
    )
    .await
    .expect("an answer");
    let cname: Vec<String> = ext
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(cname, ["www.example.com."]);
    let srv = dns(
        dns_addr,
        "_http._tcp.demo.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await
    .expect("an answer");
    assert!(
        srv.answers
            .iter()
            .any(|r| matches!(&r.data, RData::SRV(s) if s.port == 80)),
        "{srv:?}"
    );
    let missing = dns(dns_addr, "nope.default.svc.cluster.local.", RecordType::A)
        .await
        .expect("an answer");
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    let outside = dns(dns_addr, "example.com.", RecordType::A)
        .await
        .expect("an answer");
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);

    // A StatefulSet-style pod (hostname + subdomain = the headless Service) gets a stable name.
    let db = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "default", "labels": {"headless": "yes"}},
        "spec": {
            "hostname": "db-0",
            "subdomain": "demo-headless",
            "containers": [{
                "name": "demo", "image": "rkube-demo",
                "command": [bin.to_string_lossy(), "demo-app"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": 8080},
                    "periodSeconds": 1,
                },
            }],
        }
    });
    client.create(&db, "default").await.unwrap();
    let db_ip = wait_until(TIMEOUT, "db-0.demo-headless resolving", || async {
        let m = dns(
            dns_addr,
            "db-0.demo-headless.default.svc.cluster.local.",
            RecordType::A,
        )
        .await?;
        a_records(&m).into_iter().next()
    })
    .await;
    let db_pod: Pod = client.get_typed("default", "db-0").await.unwrap();
    assert_eq!(
        db_pod.status.and_then(|s| s.pod_ip),
        Some(db_ip.to_string())
    );

    agent.stop().await;
}
