//! A StatefulSet with a volume claim template on a loopback cluster with its control loops and two
//! real in-process agents (process runtime): `web-0..2` start in order (OrderedReady), each
//! writes its name, uid and a random token into its claim once.
//!
//! The local provisioner waits for each claim's first pod (WaitForFirstConsumer): the scheduler
//! writes the chosen node into the claim, and the volume is provisioned there with node affinity
//! to it. So after `web-1` is deleted its replacement (a new uid) lands on the same node, mounts
//! the same claim `data-web-1` bound to the same volume, and sees the first pod's file. When
//! that node goes away (agent stopped, Node deleted, its pods force-deleted) the replacement
//! stays Pending with "volume node affinity conflict" instead of starting elsewhere on an empty
//! directory, and runs again with its data once the node is back. Deleting a claim then removes
//! its volume and, through the agent of the volume's node, its directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use rkube_proto::api;
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(60);
const NODES: [&str; 2] = ["sts-a", "sts-b"];

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// One pod creation seen by the watch: the pod's name and uid, and which pods were Ready at the
/// time (in the watch's revision order).
#[derive(Debug, Clone)]
struct Creation {
    name: String,
    uid: String,
    ready_before: BTreeSet<String>,
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Watch the `app=web` pods from before the StatefulSet exists, recording each new pod (by uid).
fn watch_creations(client: &Client) -> Arc<Mutex<Vec<Creation>>> {
    let seen = Arc::new(Mutex::new(Vec::<Creation>::new()));
    let (client, out) = (client.clone(), seen.clone());
    tokio::spawn(async move {
        let params = ListParams {
            namespace: "default".into(),
            label_selector: "app=web".into(),
            ..Default::default()
        };
        let mut w = Box::pin(client.watch(&KindRef::of::<Pod>(), &params, true));
        // name -> (uid, ready) of the pods that exist.
        let mut pods: BTreeMap<String, (String, bool)> = BTreeMap::new();
        while let Some(Ok(ev)) = w.next().await {
            let (o, deleted) = match &ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                WatchEvent::Deleted(o) => (o, true),
                WatchEvent::Bookmark { .. } => continue,
            };
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            let uid = o["metadata"]["uid"].as_str().unwrap_or("").to_string();
            if deleted {
                pods.remove(&name);
                continue;
            }
            if pods.get(&name).is_none_or(|(u, _)| *u != uid) {
                let ready_before = pods
                    .iter()
                    .filter(|(_, (_, r))| *r)
                    .map(|(n, _)| n.clone())
                    .collect();
                out.lock().unwrap().push(Creation {
                    name: name.clone(),
                    uid: uid.clone(),
                    ready_before,
                });
            }
            pods.insert(name, (uid, is_ready(o)));
        }
    });
    seen
}

fn stateful_set(mount: &str) -> Value {
    // The process runtime runs the command on the host: the file is written only by the first
    // pod of an ordinal; every start prints what it finds.
    let script = format!(
        "f={mount}/identity; \
         [ -f \"$f\" ] || echo \"$POD_NAME $POD_UID $(cat /proc/sys/kernel/random/uuid)\" > \"$f\"; \
         echo \"seen=$(cat \"$f\")\"; exec sleep 1000"
    );
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "serviceName": "web",
            "replicas": 3,
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main", "image": "busybox",
                        "command": ["sh", "-c", script],
                        "env": [
                            {"name": "POD_NAME",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_UID",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                        ],
                        "volumeMounts": [{"name": "data", "mountPath": mount}],
                    }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "local",
                    "resources": {"requests": {"storage": "1Mi"}},
                },
            }],
        },
    })
}

fn headless_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": "web"},
            "ports": [{"name": "web", "port": 80}],
        },
    })
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// The pod `name` once it is Running and Ready (and not `not_uid`).
async fn wait_running(client: &Client, name: &str, not_uid: Option<&str>) -> Pod {
    wait_until(TIMEOUT, &format!("pod {name} running and ready"), || {
        let client = client.clone();
        async move {
            let p: Pod = client.get_typed("default", name).await.ok()?;
            let v = serde_json::to_value(&p).ok()?;
            (phase(&p) == "Running"
                && is_ready(&v)
                && p.metadata.deletion_timestamp.is_none()
                && Some(uid(&p).as_str()) != not_uid)
                .then_some(p)
        }
    })
    .await
}

/// The claim `data-<pod>` once Bound, and the hostPath of its PersistentVolume.
async fn claim_and_path(client: &Client, pod: &str) -> (PersistentVolumeClaim, String, PathBuf) {
    let claim_name = format!("data-{pod}");
    let claim: PersistentVolumeClaim = wait_until(TIMEOUT, &format!("{claim_name} bound"), || {
        let client = client.clone();
        let claim_name = claim_name.clone();
        async move {
            let c: PersistentVolumeClaim = client.get_typed("default", &claim_name).await.ok()?;
            let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            bound.then_some(c)
        }
    })
    .await;
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .expect("a bound claim names its volume");
    let pv: PersistentVolume = client.get_typed("", &volume).await.unwrap();
    let spec = pv.spec.expect("volume spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
    let path = spec.host_path.expect("a provisioned hostPath volume").path;
    (claim, volume, PathBuf::from(path))
}

/// The `seen=` line the pod's container printed, from whichever agent runs it.
async fn seen_line(agents: &[Agent], pod: &Pod) -> String {
    let logs: Vec<PathBuf> = agents
        .iter()
        .map(|a| a.pod_dir(pod).join("main.log"))
        .collect();
    wait_until(TIMEOUT, "the container's seen= line", || {
        let logs = &logs;
        async move {
            logs.iter().find_map(|log| {
                let text = rkube_tests::agent::read_log(log).ok()?;
                text.lines()
                    .find_map(|l| l.strip_prefix("seen="))
                    .map(str::to_string)
            })
        }
    })
    .await
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("a scheduled pod")
}

fn start_agent(client: &Client, node: &str) -> Agent {
    Agent::start_with(client.clone(), node, |o| {
        o.proxy = false;
        o.cluster_dns = None;
    })
}

/// Delete pod `name` (with this grace period, else its own).
async fn delete_pod(client: &Client, name: &str, grace: Option<i64>) {
    client
        .delete(
            &KindRef::of::<Pod>(),
            "default",
            name,
            api::DeleteRequest {
                grace_period_seconds: grace,
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// Wait until pod `name` with uid `uid` no longer exists (a pod of that name may).
async fn wait_gone(client: &Client, name: &str, old_uid: &str) {
    wait_until(TIMEOUT, &format!("pod {name} ({old_uid}) gone"), || {
        let client = client.clone();
        async move {
            match client.get_typed::<Pod>("default", name).await {
                Err(rkube_client::Error::NotFound(_)) => Some(()),
                Ok(p) if uid(&p) != old_uid => Some(()),
                _ => None,
            }
        }
    })
    .await;
}

/// The `app=web` pods bound to `node`.
async fn pods_on(client: &Client, node: &str) -> Vec<Pod> {
    let params = ListParams {
        namespace: "default".into(),
        label_selector: "app=web".into(),
        ..Default::default()
    };
    let (pods, _) = client.list_typed::<Pod>(&params).await.unwrap();
    pods.into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .collect()
}

/// The message of the pod's `PodScheduled=False` condition.
fn unschedulable_message(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?
        .message
        .clone()
}

/// The node the scheduler selected for a claim waiting for its first consumer.
fn selected_node(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .metadata
        .annotations
        .as_ref()?
        .get("volume.kubernetes.io/selected-node")
        .map(String::as_str)
}

/// The `kubernetes.io/hostname` values the volume's required node affinity allows.
fn volume_hostnames(pv: &PersistentVolume) -> Vec<String> {
    let terms = &pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .expect("the volume has required node affinity")
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .filter(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
        .flat_map(|e| e.values.iter().flatten().cloned())
        .collect()
}

fn read_identity(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("identity"))
        .unwrap_or_else(|e| panic!("{}/identity: {e}", dir.display()))
        .trim_end()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_of_3_with_claims_keeps_each_pods_data_across_a_pod_deletion() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let volumes = root.path().join("volumes");
    let opts = ClusterOptions::with_control_loops().with_volume_root(&volumes);
    let cluster = ApiCluster::start_opts(1, opts).await;
    let client = cluster.client();
    let mut agents: Vec<Agent> = NODES
        .iter()
        .map(|node| start_agent(&client, node))
        .collect();
    let mount = root.path().join("data").to_str().unwrap().to_string();
    let creations = watch_creations(&client);

    client.create(&headless_service(), "default").await.unwrap();
    client
        .create(&stateful_set(&mount), "default")
        .await
        .unwrap();

    let mut first = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        let pod = wait_running(&client, &name, None).await;
        let (claim, volume, dir) = claim_and_path(&client, &name).await;
        assert!(
            dir.starts_with(&volumes),
            "{} is provisioned",
            dir.display()
        );
        let content = read_identity(&dir);
        assert!(
            content.starts_with(&format!("{name} {} ", uid(&pod))),
            "{name} wrote its name and uid into {}: {content:?}",
            dir.display()
        );
        assert_eq!(seen_line(&agents, &pod).await, content);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        first.push((pod, claim, volume, dir, content));
    }
    let tokens: BTreeSet<&str> = first.iter().map(|f| f.4.as_str()).collect();
    assert_eq!(tokens.len(), 3, "each pod has its own claim and file");

    // OrderedReady: each pod was created only once its predecessors were Ready.
    {
        let seen = creations.lock().unwrap().clone();
        let names: Vec<&str> = seen.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["web-0", "web-1", "web-2"],
            "creation order: {seen:?}"
        );
        for (i, c) in seen.iter().enumerate() {
            let want: BTreeSet<String> = (0..i).map(|j| format!("web-{j}")).collect();
            assert!(
                want.is_subset(&c.ready_before),
                "{} was created when only {:?} were ready",
                c.name,
                c.ready_before
            );
            assert_eq!(c.uid, uid(&first[i].0));
        }
    }

    // Each volume was provisioned on its pod's node: the claim names the node the scheduler
    // chose, and the volume's node affinity requires it.
    for (pod, claim, volume, _, _) in &first {
        let node = node_of(pod);
        assert_eq!(
            selected_node(claim),
            Some(node.as_str()),
            "{:?} was provisioned for its first pod's node",
            claim.metadata.name
        );
        let pv: PersistentVolume = client.get_typed("", volume).await.unwrap();
        assert_eq!(
            volume_hostnames(&pv),
            [node.as_str()],
            "{volume} has node affinity to {node}"
        );
    }

    // Delete web-1: its replacement, with a new uid, comes back on the node of its volume, with
    // the same claim, volume and data.
    let (old, old_claim, old_volume, old_dir, old_content) = &first[1];
    let old_node = node_of(old);
    delete_pod(&client, "web-1", None).await;
    let new = wait_running(&client, "web-1", Some(&uid(old))).await;
    assert_ne!(uid(&new), uid(old));
    assert_eq!(
        node_of(&new),
        old_node,
        "the replacement follows its volume's node affinity"
    );
    let claims: Vec<&str> = new
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .unwrap()
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
        .collect();
    assert_eq!(claims, ["data-web-1"]);
    let (claim, volume, dir) = claim_and_path(&client, "web-1").await;
    assert_eq!(claim.metadata.uid, old_claim.metadata.uid, "the same claim");
    assert_eq!(&volume, old_volume, "the same volume");
    assert_eq!(&dir, old_dir);
    assert_eq!(
        &read_identity(&dir),
        old_content,
        "the file was not rewritten"
    );
    assert_eq!(
        &seen_line(&agents, &new).await,
        old_content,
        "the new web-1 sees the first web-1's file through its mount"
    );
    // Every claim survived, still bound to its first volume, and the other pods kept running.
    for (i, (pod, claim, volume, _, _)) in first.iter().enumerate() {
        let name = format!("web-{i}");
        let (now, now_volume, _) = claim_and_path(&client, &name).await;
        assert_eq!(now.metadata.uid, claim.metadata.uid, "claim of {name}");
        assert_eq!(&now_volume, volume);
        if i != 1 {
            let p: Pod = client.get_typed("default", &name).await.unwrap();
            assert_eq!(uid(&p), uid(pod), "{name} was not recreated");
        }
    }
    {
        let seen = creations.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "one replacement pod: {seen:?}");
        assert_eq!(seen[3].name, "web-1");
        assert_eq!(seen[3].uid, uid(&new));
    }

    // web-1's node goes away: its agent stops, the Node is deleted and the pods bound to it are
    // force-deleted (what an operator does for a dead machine). The first of them to be
    // recreated (OrderedReady) stays Pending with Kubernetes' reason, and never runs on the other
    // node with an empty volume.
    let index = NODES.iter().position(|n| *n == old_node).unwrap();
    agents.remove(index).stop().await;
    client
        .delete(&KindRef::of::<Node>(), "", &old_node, Default::default())
        .await
        .unwrap();
    let lost: Vec<(String, String)> = pods_on(&client, &old_node)
        .await
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap(), uid(&p)))
        .collect();
    assert!(
        lost.iter().any(|(name, _)| name == "web-1"),
        "web-1 ran on {old_node}: {lost:?}"
    );
    for (name, uid) in &lost {
        delete_pod(&client, name, Some(0)).await;
        wait_gone(&client, name, uid).await;
    }
    let (first_lost, first_lost_uid) = lost.iter().min().unwrap().clone();
    let pending = wait_until(
        TIMEOUT,
        &format!("{first_lost} recreated and unschedulable"),
        || {
            let client = client.clone();
            let (name, old_uid) = (first_lost.clone(), first_lost_uid.clone());
            async move {
                let p: Pod = client.get_typed("default", &name).await.ok()?;
                (uid(&p) != old_uid && unschedulable_message(&p).is_some()).then_some(p)
            }
        },
    )
    .await;
    assert_eq!(
        unschedulable_message(&pending).as_deref(),
        Some("0/1 nodes are available: 1 node(s) had volume node affinity conflict."),
    );
    assert_eq!(
        pending.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        None,
        "{first_lost} is not started anywhere without its data"
    );

    // The node comes back (a new agent of the same name): the pods run there again, each with
    // the data its first pod wrote.
    agents.push(start_agent(&client, &old_node));
    for (name, _) in &lost {
        let i: usize = name.trim_start_matches("web-").parse().unwrap();
        let back = wait_running(&client, name, Some(&uid(&first[i].0))).await;
        assert_eq!(
            node_of(&back),
            old_node,
            "{name} is back on its volume's node"
        );
        assert_eq!(
            seen_line(&agents, &back).await,
            first[i].4,
            "{name} finds its data again"
        );
    }

    // Reclaim policy Delete: once its pods are gone, deleting claim data-web-1 deletes its volume,
    // and the agent of the volume's node removes the directory; the other claims keep theirs.
    client
        .delete(
            &KindRef::of::<StatefulSet>(),
            "default",
            "web",
            Default::default(),
        )
        .await
        .unwrap();
    wait_until(TIMEOUT, "the StatefulSet's pods gone", || {
        let client = client.clone();
        async move {
            let params = ListParams {
                namespace: "default".into(),
                label_selector: "app=web".into(),
                ..Default::default()
            };
            let (pods, _) = client.list_typed::<Pod>(&params).await.ok()?;
            pods.is_empty().then_some(())
        }
    })
    .await;
    client
        .delete(
            &KindRef::of::<PersistentVolumeClaim>(),
            "default",
            "data-web-1",
            Default::default(),
        )
        .await
        .unwrap();
    wait_until(
        TIMEOUT,
        "the volume of data-web-1 and its directory gone",
        || {
            let client = client.clone();
            let (volume, dir) = (old_volume.clone(), old_dir.clone());
            async move {
                let gone = matches!(
                    client.get_typed::<PersistentVolume>("", &volume).await,
                    Err(rkube_client::Error::NotFound(_))
                );
                (gone && !dir.exists()).then_some(())
            }
        },
    )
    .await;
    for (i, (_, _, volume, dir, content)) in first.iter().enumerate() {
        if i != 1 {
            assert_eq!(&read_identity(dir), content, "web-{i}'s data stays");
            let _: PersistentVolume = client.get_typed("", volume).await.unwrap();
        }
    }
    for agent in agents {
        agent.stop().await;
    }
}
