//! The HorizontalPodAutoscaler end to end on an in-process 1-server cluster with every control
//! loop and a real agent: a Deployment of the demo app requesting 100m of cpu, autoscaled
//! (autoscaling/v2, 1 to 3 replicas, 50% cpu utilization) on the metrics the agent measures,
//! scales up to 3 when its pod is told to burn half a core (`POST /busy`), and back down to 1
//! once the pods are idle, only after the scale-down stabilization window.
//!
//! The autoscaler's clock runs [`CLOCK_RATE`] times fast (its 15 s sync period and the windows
//! shrink alike; the metrics are real time): the window of 60 autoscaler seconds lasts 12 s.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
};
use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Client, ListParams};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "hpa-node-1";
const NS: &str = "default";
const APP: &str = "hpa-demo";
const TIMEOUT: Duration = Duration::from_secs(90);
/// How much faster than real time the autoscaler's clock runs.
const CLOCK_RATE: f64 = 5.0;
/// `behavior.scaleDown.stabilizationWindowSeconds`, in autoscaler (fast) seconds.
const DOWN_WINDOW_SECONDS: i32 = 60;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// `POST <path>` to the demo app at `ip:8080`; panics unless it answers 200.
async fn post(ip: &str, path: &str) {
    let attempt = async {
        let mut conn = tokio::net::TcpStream::connect((ip, 8080)).await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: demo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| panic!("POST {path} to {ip}:8080 timed out"))
        .unwrap_or_else(|e| panic!("POST {path} to {ip}:8080: {e}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "POST {path}: {answer}");
}

fn condition<'a>(
    status: &'a HorizontalPodAutoscalerStatus,
    type_: &str,
) -> Option<&'a HorizontalPodAutoscalerCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn is_true(status: &HorizontalPodAutoscalerStatus, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

/// The cpu utilization (percent of requests) the autoscaler last measured.
fn cpu_utilization(status: &HorizontalPodAutoscalerStatus) -> Option<i32> {
    status
        .current_metrics
        .iter()
        .flatten()
        .filter_map(|m| m.resource.as_ref())
        .find(|r| r.name == "cpu")?
        .current
        .average_utilization
}

async fn hpa_status(client: &Client) -> Option<HorizontalPodAutoscalerStatus> {
    let hpa: HorizontalPodAutoscaler = client.get_typed(NS, APP).await.ok()?;
    hpa.status
}

/// (spec.replicas, status.readyReplicas) of the Deployment.
async fn deployment_replicas(client: &Client) -> Option<(i32, i32)> {
    let d: Deployment = client.get_typed(NS, APP).await.ok()?;
    let ready = d.status.as_ref()?.ready_replicas.unwrap_or(0);
    Some((d.spec.replicas?, ready))
}

/// The app's pods that are not being deleted.
async fn pods(client: &Client) -> Vec<Pod> {
    let params = ListParams {
        namespace: NS.into(),
        label_selector: format!("app={APP}"),
        ..Default::default()
    };
    let (pods, _) = client.list_typed::<Pod>(&params).await.unwrap_or_default();
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// `rkube top pods` against the cluster.
fn top_pods(kubeconfig: &std::path::Path) -> String {
    let out = std::process::Command::new(rkube_tests::process::rkube_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["top", "pods", "-n", NS])
        .env_remove("RKUBECONFIG")
        .output()
        .expect("run rkube top pods");
    assert!(
        out.status.success(),
        "rkube top pods: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_the_demo_app_up_under_cpu_load_and_down_after_the_window() {
    init_tracing();
    let bin = rkube_tests::process::rkube_bin();
    let cluster = ApiCluster::start_opts(
        1,
        ClusterOptions::with_control_loops().with_clock_rate(CLOCK_RATE),
    )
    .await;
    let client = cluster.client();
    let agent = Agent::start_with(client.clone(), NODE, |o| {
        o.proxy = false;
        o.cluster_ip = false;
        o.cluster_dns = None;
    });

    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "demo", "image": "rkube-demo",
                        "command": [bin.to_string_lossy(), "demo-app"],
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "100m"}},
                        "readinessProbe": {
                            "httpGet": {"path": "/ready", "port": 8080},
                            "periodSeconds": 1,
                        },
                    }],
                },
            },
        }
    });
    client.create(&deployment, NS).await.unwrap();
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50},
                },
            }],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": DOWN_WINDOW_SECONDS}},
        }
    });
    client.create(&hpa, NS).await.unwrap();

    // The one replica runs and is ready.
    let pod = wait_until(TIMEOUT, "the first replica ready", || {
        let client = client.clone();
        async move {
            let pods = pods(&client).await;
            let [pod] = pods.as_slice() else { return None };
            let status = pod.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.pod_ip.is_some()).then(|| pod.clone())
        }
    })
    .await;
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let pod_name = pod.metadata.name.clone().unwrap();

    // Idle, the autoscaler measures it and keeps one replica.
    let idle = wait_until(TIMEOUT, "the autoscaler measuring the idle pod", || {
        let client = client.clone();
        async move {
            let s = hpa_status(&client).await?;
            (is_true(&s, "ScalingActive") && cpu_utilization(&s).is_some()).then_some(s)
        }
    })
    .await;
    assert_eq!(idle.desired_replicas, 1, "{idle:?}");
    assert!(cpu_utilization(&idle).unwrap() < 50, "{idle:?}");

    // Half a core against a request of 100m: 500% of a 50% target asks for 10 replicas,
    // limited to 3.
    post(&ip, "/busy?millicores=500").await;
    let busy = wait_until(TIMEOUT, "the autoscaler scaling up to 3", || {
        let client = client.clone();
        async move {
            let s = hpa_status(&client).await?;
            (s.desired_replicas == 3).then_some(s)
        }
    })
    .await;
    assert!(is_true(&busy, "AbleToScale"), "{busy:?}");
    assert!(is_true(&busy, "ScalingActive"), "{busy:?}");
    assert!(busy.last_scale_time.is_some(), "{busy:?}");
    assert!(cpu_utilization(&busy).unwrap() > 50, "{busy:?}");
    wait_until(TIMEOUT, "3 ready replicas", || {
        let client = client.clone();
        async move { (deployment_replicas(&client).await? == (3, 3)).then_some(()) }
    })
    .await;

    // `rkube top pods` shows the busy pod's usage in millicores.
    let kubeconfig = cluster.kubeconfig();
    wait_until(TIMEOUT, "rkube top pods showing the busy pod", || {
        let kubeconfig = kubeconfig.clone();
        let pod_name = pod_name.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || top_pods(&kubeconfig))
                .await
                .ok()?;
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{pod_name} ")))?;
            let cpu: u64 = line
                .split_whitespace()
                .nth(1)?
                .strip_suffix('m')?
                .parse()
                .ok()?;
            (cpu >= 100).then_some(())
        }
    })
    .await;

    // Idle again: the autoscaler sees the usage drop well below the target, yet keeps 3
    // replicas while the busy recommendations are within the stabilization window...
    post(&ip, "/idle").await;
    let held = wait_until(
        TIMEOUT,
        "the scale-down held by the stabilization window",
        || {
            let client = client.clone();
            async move {
                let s = hpa_status(&client).await?;
                let low = cpu_utilization(&s)? < 30;
                let stabilized = condition(&s, "AbleToScale").is_some_and(|c| {
                    c.status == "True" && c.reason.as_deref() == Some("ScaleDownStabilized")
                });
                (low && stabilized).then_some(s)
            }
        },
    )
    .await;
    assert_eq!(held.desired_replicas, 3, "{held:?}");
    assert_eq!(deployment_replicas(&client).await.unwrap().0, 3);

    // ...then scales down to the minimum.
    let down = wait_until(TIMEOUT, "the autoscaler scaling down to 1", || {
        let client = client.clone();
        async move {
            let s = hpa_status(&client).await?;
            (s.desired_replicas == 1).then_some(s)
        }
    })
    .await;
    assert!(is_true(&down, "AbleToScale"), "{down:?}");
    assert!(is_true(&down, "ScalingActive"), "{down:?}");
    wait_until(TIMEOUT, "the Deployment back to 1 replica", || {
        let client = client.clone();
        async move {
            let (replicas, _) = deployment_replicas(&client).await?;
            (replicas == 1 && pods(&client).await.len() == 1).then_some(())
        }
    })
    .await;

    agent.stop().await;
}
