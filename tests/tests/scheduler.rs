//! Scheduler integration tests against in-process servers with simulated nodes: placement by
//! selectors, affinity, anti-affinity and tolerations, Kubernetes' Pending messages, a pod that
//! becomes schedulable when a node is labelled, and leader failover with 500 pods waiting.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use rkube_client::{Client, KindRef, ListParams};
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::sim_node::{SimNode, SimNodeSpec};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

async fn apply_yaml(client: &Client, yaml: &str) {
    let v: Value = yaml_serde::from_str(yaml).expect("yaml");
    client.create(&v, "default").await.expect("create");
}

/// Wait until pod `name` is bound and return its node.
async fn bound_node(client: &Client, name: &str) -> String {
    wait_until(
        Duration::from_secs(30),
        &format!("pod {name} bound"),
        || {
            let client = client.clone();
            let name = name.to_string();
            async move {
                let p: Pod = client.get_typed("default", &name).await.ok()?;
                p.spec?.node_name.filter(|n| !n.is_empty())
            }
        },
    )
    .await
}

/// Wait until pod `name` carries PodScheduled=False and return its message.
async fn pending_message(client: &Client, name: &str) -> String {
    wait_until(
        Duration::from_secs(30),
        &format!("pod {name} unschedulable"),
        || {
            let client = client.clone();
            let name = name.to_string();
            async move {
                let p: Pod = client.get_typed("default", &name).await.ok()?;
                let c = p
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
                assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
                c.message
            }
        },
    )
    .await
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "kubia"}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
}

fn three_nodes() -> Vec<SimNodeSpec> {
    vec![
        SimNodeSpec::new("node-a")
            .capacity("2", "4Gi")
            .label("disk", "ssd")
            .label("topology.kubernetes.io/zone", "zone-a"),
        SimNodeSpec::new("node-b")
            .capacity("4", "8Gi")
            .label("gpu-model", "a100")
            .label("topology.kubernetes.io/zone", "zone-b")
            .taint("dedicated", "gpu", "NoSchedule"),
        SimNodeSpec::new("node-c")
            .capacity("1", "2Gi")
            .label("topology.kubernetes.io/zone", "zone-c"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_filters_and_pending_messages() {
    let c = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = c.client();
    let mut nodes = Vec::new();
    for spec in three_nodes() {
        nodes.push(SimNode::start(client.clone(), spec).await.expect("node"));
    }

    // nodeSelector.
    client
        .create(
            &pod("ssd", json!({"nodeSelector": {"disk": "ssd"}})),
            "default",
        )
        .await
        .unwrap();
    assert_eq!(bound_node(&client, "ssd").await, "node-a");

    // A toleration and required node affinity (In) reach the tainted node.
    let gpu = json!({
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu-model", "operator": "In", "values": ["a100"]}]}]}}}
    });
    client
        .create(&pod("trainer", gpu), "default")
        .await
        .unwrap();
    assert_eq!(bound_node(&client, "trainer").await, "node-b");

    // Pod affinity: next to the trainer (same hostname).
    let near = json!({
        "tolerations": [{"operator": "Exists"}],
        "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "trainer"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    });
    client
        .create(&pod("near-trainer", near), "default")
        .await
        .unwrap();
    assert_eq!(bound_node(&client, "near-trainer").await, "node-b");

    // Too much cpu everywhere.
    let big = json!({"containers": [], "tolerations": []});
    let mut big_pod = pod("big", big);
    big_pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "8"}});
    client.create(&big_pod, "default").await.unwrap();
    assert_eq!(
        pending_message(&client, "big").await,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
    );

    // Too much memory, tolerating every taint.
    let mut hungry = pod("hungry", json!({"tolerations": [{"operator": "Exists"}]}));
    hungry["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": "100Gi"}});
    client.create(&hungry, "default").await.unwrap();
    assert_eq!(
        pending_message(&client, "hungry").await,
        "0/3 nodes are available: 3 Insufficient memory."
    );

    // Required pod affinity to pods that exist nowhere.
    let lonely = json!({
        "tolerations": [{"operator": "Exists"}],
        "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "nobody"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    });
    client
        .create(&pod("lonely", lonely), "default")
        .await
        .unwrap();
    assert_eq!(
        pending_message(&client, "lonely").await,
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
    );

    // A host port taken on the only node a pod may use.
    let port = |name: &str| {
        let mut p = pod(
            name,
            json!({"nodeSelector": {"kubernetes.io/hostname": "node-c"}}),
        );
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 9000}]);
        p
    };
    client.create(&port("port-1"), "default").await.unwrap();
    assert_eq!(bound_node(&client, "port-1").await, "node-c");
    client.create(&port("port-2"), "default").await.unwrap();
    assert_eq!(
        pending_message(&client, "port-2").await,
        "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}."
    );

    // The example manifest: Pending until a node is labelled gpu=true.
    apply_yaml(
        &client,
        &std::fs::read_to_string(format!("{EXAMPLES}/kubia-gpu-pod.yaml")).unwrap(),
    )
    .await;
    assert_eq!(
        pending_message(&client, "kubia-gpu").await,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector."
    );
    let (events, _) = client
        .list_typed::<Event>(&ListParams {
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling")
                && e.involved_object.name.as_deref() == Some("kubia-gpu")),
        "a FailedScheduling event: {events:?}"
    );
    let mut node_c: Node = client.get_typed("", "node-c").await.unwrap();
    node_c
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("gpu".into(), "true".into());
    client.update_typed(&node_c).await.unwrap();
    assert_eq!(bound_node(&client, "kubia-gpu").await, "node-c");

    // A Deployment whose replicas must land on distinct nodes (required anti-affinity on the
    // hostname); a fourth replica cannot fit anywhere.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cache"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "cache"}},
            "template": {"metadata": {"labels": {"tier": "cache"}},
                "spec": {"containers": [{"name": "c", "image": "redis"}],
                    "tolerations": [{"operator": "Exists"}],
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"tier": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}}});
    client.create(&deployment, "default").await.unwrap();
    let placed = wait_until(Duration::from_secs(60), "3 cache replicas bound", || {
        let client = client.clone();
        async move {
            let (pods, _) = client
                .list_typed::<Pod>(&ListParams {
                    namespace: "default".into(),
                    label_selector: "tier=cache".into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            let mut nodes: Vec<String> = pods
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            nodes.sort();
            (pods.len() == 3 && nodes.len() == 3).then_some(nodes)
        }
    })
    .await;
    assert_eq!(placed, ["node-a", "node-b", "node-c"]);
    client
        .patch(
            &KindRef::resource("deployments"),
            "default",
            "cache",
            rkube_proto::api::PatchType::Merge,
            br#"{"spec": {"replicas": 4}}"#,
            false,
        )
        .await
        .unwrap();
    let fourth = wait_until(
        Duration::from_secs(60),
        "a fourth, unschedulable replica",
        || {
            let client = client.clone();
            async move {
                let (pods, _) = client
                    .list_typed::<Pod>(&ListParams {
                        namespace: "default".into(),
                        label_selector: "tier=cache".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                pods.into_iter()
                    .find(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_none()))
                    .and_then(|p| p.metadata.name)
            }
        },
    )
    .await;
    assert_eq!(
        pending_message(&client, &fourth).await,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
}

/// A high-priority pod that fits nowhere evicts a lower-priority one (graceful delete and an
/// Event) and takes its place; a pod of equal priority does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_pods_preempt_lower_priority_ones() {
    let c = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = c.client();
    let _node = SimNode::start(
        client.clone(),
        SimNodeSpec::new("small").capacity("1", "2Gi"),
    )
    .await
    .unwrap();
    for (name, value) in [("low", 10), ("high", 1000)] {
        client
            .create(
                &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": name}, "value": value}),
                "",
            )
            .await
            .unwrap();
    }
    let sized = |name: &str, class: &str| {
        let mut p = pod(name, json!({"priorityClassName": class}));
        p["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "700m"}});
        p
    };
    client
        .create(&sized("batch", "low"), "default")
        .await
        .unwrap();
    assert_eq!(bound_node(&client, "batch").await, "small");
    // Equal priority: no preemption, it stays Pending.
    client
        .create(&sized("batch-2", "low"), "default")
        .await
        .unwrap();
    assert_eq!(
        pending_message(&client, "batch-2").await,
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    // Higher priority: the running low-priority pod is evicted.
    client
        .create(&sized("urgent", "high"), "default")
        .await
        .unwrap();
    assert_eq!(bound_node(&client, "urgent").await, "small");
    wait_until(Duration::from_secs(30), "the victim gone", || {
        let client = client.clone();
        async move {
            matches!(
                client.get_typed::<Pod>("default", "batch").await,
                Err(rkube_client::Error::NotFound(_))
            )
            .then_some(())
        }
    })
    .await;
    let (events, _) = client
        .list_typed::<Event>(&ListParams {
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Preempted")
                && e.involved_object.name.as_deref() == Some("batch")),
        "a Preempted event on the victim: {events:?}"
    );
}

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples");

/// Kill the server holding scheduler leadership while 500 pods wait: every pod ends up bound
/// exactly once (a pod's nodeName never changes once set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_failover_binds_every_pod_exactly_once() {
    let mut c = ApiCluster::start_opts(3, ClusterOptions::with_control_loops()).await;
    let leader = c.leader().await;
    let survivor = if leader == 1 { 2 } else { 1 };
    let client = c.client_to(survivor);
    let mut nodes = Vec::new();
    for i in 0..5 {
        let spec = SimNodeSpec::new(&format!("node-{i}")).capacity("64", "256Gi");
        let mut spec = spec;
        spec.pods = 200;
        spec.run_pods = false;
        nodes.push(SimNode::start(client.clone(), spec).await.expect("node"));
    }
    // Record every binding as the watch sees it.
    let bindings = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<String, String>::new()));
    let rebinds = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let (bindings, rebinds) = (bindings.clone(), rebinds.clone());
        let watcher = c.client_to(survivor);
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut w =
                Box::pin(watcher.watch(&KindRef::of::<Pod>(), &ListParams::default(), true));
            while let Some(Ok(ev)) = w.next().await {
                let Some(obj) = ev.object() else { continue };
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let node = obj["spec"]["nodeName"].as_str().unwrap_or("").to_string();
                if node.is_empty() {
                    continue;
                }
                let mut b = bindings.lock().unwrap();
                if let Some(prev) = b.insert(name.clone(), node.clone()) {
                    if prev != node {
                        rebinds
                            .lock()
                            .unwrap()
                            .push(format!("{name}: {prev} -> {node}"));
                    }
                }
            }
        });
    }
    // Create 500 pods while the scheduler is busy; kill the leader midway.
    let mut tasks = Vec::new();
    for w in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let p = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("p-{w}-{i}")},
                    "spec": {"containers": [{"name": "c", "image": "kubia"}]}});
                loop {
                    match client.create(&p, "default").await {
                        Ok(_) | Err(rkube_client::Error::AlreadyExists(_)) => break,
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => panic!("create: {e}"),
                    }
                }
            }
        }));
    }
    wait_until(Duration::from_secs(60), "some pods bound", || {
        let b = bindings.clone();
        async move { (b.lock().unwrap().len() >= 50).then_some(()) }
    })
    .await;
    c.kill(leader);
    for t in tasks {
        t.await.unwrap();
    }
    let all_bound = wait_until(Duration::from_secs(120), "all 500 pods bound", || {
        let client = client.clone();
        async move {
            let (pods, _) = client
                .list_typed::<Pod>(&ListParams::default())
                .await
                .ok()?;
            let bound = pods
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                .count();
            (pods.len() == 500 && bound == 500).then_some(pods)
        }
    })
    .await;
    assert_eq!(all_bound.len(), 500);
    assert!(
        rebinds.lock().unwrap().is_empty(),
        "rebound: {:?}",
        rebinds.lock().unwrap()
    );
    drop(nodes);
}
