//! Controller integration tests against 3-server clusters with simulated nodes: ReplicaSets
//! (scale, adoption, release), cascading deletion in all three modes, Deployments (rolling
//! update, rollback to revision 1, pause/resume, a stuck rollout), namespace deletion, Endpoints
//! following readiness, node death, controllers resuming after the leader is killed, and fencing
//! of a paused (SIGSTOP) leader.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Pod};
use rkube_client::{Client, KindRef, ListParams};
use rkube_proto::api;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::process::{rkube_bin, ProcessCluster};
use rkube_tests::sim_node::{SimNode, SimNodeSpec};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples");

async fn pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    client
        .list_typed::<Pod>(&ListParams {
            namespace: ns.into(),
            label_selector: selector.into(),
            ..Default::default()
        })
        .await
        .map(|(p, _)| p)
        .unwrap_or_default()
}

fn active(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Wait until exactly `n` active pods match `selector`.
async fn wait_pods(client: &Client, selector: &str, n: usize) -> Vec<Pod> {
    wait_until(
        Duration::from_secs(60),
        &format!("{n} pods matching {selector}"),
        || {
            let client = client.clone();
            let selector = selector.to_string();
            async move {
                let all = pods(&client, "default", &selector).await;
                (active(&all).len() == n && all.len() == n).then_some(all)
            }
        },
    )
    .await
}

fn owner_uid(p: &Pod) -> Option<String> {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

async fn nodes(client: &Client, n: usize) -> Vec<SimNode> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(
            SimNode::start(client.clone(), SimNodeSpec::new(&format!("node-{i}")))
                .await
                .expect("node"),
        );
    }
    v
}

fn rs(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "kubia"}]}}}})
}

async fn scale_rs(client: &Client, name: &str, replicas: i32) {
    let patch = json!({"spec": {"replicas": replicas}}).to_string();
    // Retried while a server is down (the leader was just killed).
    wait_until(Duration::from_secs(30), "the scale accepted", || {
        let client = client.clone();
        let patch = patch.clone();
        let name = name.to_string();
        async move {
            match client
                .patch(
                    &KindRef::of::<ReplicaSet>(),
                    "default",
                    &name,
                    api::PatchType::Merge,
                    patch.as_bytes(),
                    false,
                )
                .await
            {
                Ok(_) => Some(()),
                Err(e) if e.is_retryable() => None,
                Err(e) => panic!("scale: {e}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicasets_scale_adopt_release_and_cascade_in_three_modes() {
    let c = ApiCluster::start_opts(3, ClusterOptions::with_control_loops()).await;
    let client = c.client_to(2);
    let _nodes = nodes(&client, 2).await;

    // The example manifest (set-based selector) keeps 3 pods.
    let v: Value = yaml_serde::from_str(
        &std::fs::read_to_string(format!("{EXAMPLES}/kubia-replicaset.yaml")).unwrap(),
    )
    .unwrap();
    client.create(&v, "default").await.unwrap();
    let kubia = wait_pods(&client, "app=kubia", 3).await;
    let rs_uid = client
        .get_typed::<ReplicaSet>("default", "kubia")
        .await
        .unwrap()
        .metadata
        .uid;
    assert!(kubia.iter().all(|p| owner_uid(p) == rs_uid));

    // Scale up and down.
    client.create(&rs("web", 2), "default").await.unwrap();
    wait_pods(&client, "app=web", 2).await;
    scale_rs(&client, "web", 5).await;
    wait_pods(&client, "app=web", 5).await;
    scale_rs(&client, "web", 1).await;
    wait_pods(&client, "app=web", 1).await;

    // An orphan with matching labels is adopted (and the extra one removed).
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "kubia"}]}}),
            "default",
        )
        .await
        .unwrap();
    let web_uid = client
        .get_typed::<ReplicaSet>("default", "web")
        .await
        .unwrap()
        .metadata
        .uid;
    wait_until(Duration::from_secs(30), "the stray pod handled", || {
        let client = client.clone();
        let web_uid = web_uid.clone();
        async move {
            let all = pods(&client, "default", "app=web").await;
            let owned = all.iter().filter(|p| owner_uid(p) == web_uid).count();
            (all.len() == 1 && owned == 1).then_some(())
        }
    })
    .await;

    // A pod whose labels stop matching is released and replaced.
    let kept = wait_pods(&client, "app=web", 1).await;
    let name = kept[0].metadata.name.clone().unwrap();
    client
        .patch(
            &KindRef::of::<Pod>(),
            "default",
            &name,
            api::PatchType::Merge,
            br#"{"metadata": {"labels": {"app": "released"}}}"#,
            false,
        )
        .await
        .unwrap();
    wait_pods(&client, "app=web", 1).await;
    wait_until(Duration::from_secs(30), "the released pod orphaned", || {
        let client = client.clone();
        let name = name.clone();
        async move {
            let p: Pod = client.get_typed("default", &name).await.ok()?;
            owner_uid(&p).is_none().then_some(())
        }
    })
    .await;

    // Cascading deletion: background removes the pods after the owner.
    client.create(&rs("bg", 2), "default").await.unwrap();
    wait_pods(&client, "app=bg", 2).await;
    delete(&client, "bg", api::PropagationPolicy::Background).await;
    wait_pods(&client, "app=bg", 0).await;

    // Foreground: the owner waits (foregroundDeletion) until its pods are gone.
    client.create(&rs("fg", 2), "default").await.unwrap();
    wait_pods(&client, "app=fg", 2).await;
    delete(&client, "fg", api::PropagationPolicy::Foreground).await;
    wait_pods(&client, "app=fg", 0).await;
    gone::<ReplicaSet>(&client, "fg").await;

    // Orphan: the pods stay, without owner.
    client.create(&rs("or", 2), "default").await.unwrap();
    wait_pods(&client, "app=or", 2).await;
    delete(&client, "or", api::PropagationPolicy::Orphan).await;
    gone::<ReplicaSet>(&client, "or").await;
    let orphans = wait_until(Duration::from_secs(30), "orphaned pods", || {
        let client = client.clone();
        async move {
            let all = pods(&client, "default", "app=or").await;
            (all.len() == 2 && all.iter().all(|p| owner_uid(p).is_none())).then_some(all)
        }
    })
    .await;
    assert_eq!(orphans.len(), 2);
}

async fn delete(client: &Client, name: &str, policy: api::PropagationPolicy) {
    client
        .delete(
            &KindRef::of::<ReplicaSet>(),
            "default",
            name,
            api::DeleteRequest {
                propagation_policy: policy as i32,
                ..Default::default()
            },
        )
        .await
        .expect("delete");
}

async fn gone<K: k8s_openapi::Resource + serde::de::DeserializeOwned>(client: &Client, name: &str) {
    wait_until(Duration::from_secs(30), &format!("{name} gone"), || {
        let client = client.clone();
        let name = name.to_string();
        async move {
            matches!(
                client.get_typed::<K>("default", &name).await,
                Err(rkube_client::Error::NotFound(_))
            )
            .then_some(())
        }
    })
    .await;
}

fn rkube_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(rkube_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("RKUBECONFIG")
        .output()
        .expect("run rkube");
    assert!(
        out.status.success(),
        "rkube {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn replica_sets(client: &Client) -> BTreeMap<String, (String, i32)> {
    let (list, _) = client
        .list_typed::<ReplicaSet>(&ListParams {
            namespace: "default".into(),
            label_selector: "app=kubia".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    list.into_iter()
        .map(|r| {
            let image = r
                .spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let revision = r
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .cloned()
                .unwrap_or_default();
            let replicas = r.spec.replicas.unwrap_or(0);
            (image, (revision, replicas))
        })
        .collect()
}

/// Wait until every pod of the deployment runs `image` and `n` are ready.
async fn rolled_out(client: &Client, image: &str, n: usize) {
    wait_until(
        Duration::from_secs(90),
        &format!("{n} ready pods of {image}"),
        || {
            let client = client.clone();
            let image = image.to_string();
            async move {
                let all = pods(&client, "default", "app=kubia").await;
                let ok = all.len() == n
                    && all.iter().all(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && p.spec
                                .as_ref()
                                .and_then(|s| s.containers.first())
                                .and_then(|c| c.image.as_deref())
                                == Some(image.as_str())
                            && p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                    });
                ok.then_some(())
            }
        },
    )
    .await;
}

fn deployment(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "kubia"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kubia"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "kubia"}},
                "spec": {"containers": [{"name": "nodejs", "image": image}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_rolls_back_pauses_and_stops_on_unready_pods() {
    let c = ApiCluster::start_opts(3, ClusterOptions::with_control_loops()).await;
    let client = c.client_to(3);
    let kubeconfig = c.kubeconfig();
    let mut specs = Vec::new();
    for i in 0..3 {
        let mut s = SimNodeSpec::new(&format!("node-{i}"));
        s.never_ready_images = vec!["kubia:v3".into()];
        specs.push(s);
    }
    let mut _nodes = Vec::new();
    for s in specs {
        _nodes.push(SimNode::start(client.clone(), s).await.unwrap());
    }

    client
        .create(&deployment("kubia:v1"), "default")
        .await
        .unwrap();
    rolled_out(&client, "kubia:v1", 3).await;

    // Rolling update to v2.
    rkube_ok(
        &kubeconfig,
        &["set", "image", "deployment/kubia", "nodejs=kubia:v2"],
    );
    rolled_out(&client, "kubia:v2", 3).await;
    let sets = replica_sets(&client).await;
    assert_eq!(sets["kubia:v1"], ("1".to_string(), 0));
    assert_eq!(sets["kubia:v2"], ("2".to_string(), 3));

    // Roll back to revision 1: the v1 ReplicaSet is reused as revision 3.
    rkube_ok(
        &kubeconfig,
        &["rollout", "undo", "deployment/kubia", "--to-revision=1"],
    );
    rolled_out(&client, "kubia:v1", 3).await;
    let sets = replica_sets(&client).await;
    assert_eq!(sets.len(), 2, "{sets:?}");
    assert_eq!(sets["kubia:v1"], ("3".to_string(), 3));

    // Paused: a template change makes no new ReplicaSet until resumed.
    rkube_ok(&kubeconfig, &["rollout", "pause", "deployment/kubia"]);
    rkube_ok(
        &kubeconfig,
        &["set", "image", "deployment/kubia", "nodejs=kubia:v4"],
    );
    wait_until(Duration::from_secs(30), "the pause observed", || {
        let client = client.clone();
        async move {
            let d: Deployment = client.get_typed("default", "kubia").await.ok()?;
            let st = d.status?;
            let progressing = st
                .conditions?
                .into_iter()
                .find(|c| c.type_.as_deref() == Some("Progressing"))?;
            (st.observed_generation == d.metadata.generation
                && progressing.reason.as_deref() == Some("DeploymentPaused"))
            .then_some(())
        }
    })
    .await;
    assert!(!replica_sets(&client).await.contains_key("kubia:v4"));
    rkube_ok(&kubeconfig, &["rollout", "resume", "deployment/kubia"]);
    rolled_out(&client, "kubia:v4", 3).await;

    // The example manifest with a readiness check: v3 never becomes ready, so the rollout stops
    // after one new pod and the three old pods stay. Its 600 s progress deadline is cut to 11 s (it
    // must exceed minReadySeconds) so that the controller's verdict shows the rollout stopped.
    let mut v3: Value = yaml_serde::from_str(
        &std::fs::read_to_string(format!(
            "{EXAMPLES}/kubia-deployment-v3-with-readinesscheck.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    v3["spec"]["progressDeadlineSeconds"] = json!(11);
    wait_until(Duration::from_secs(30), "the v3 spec written", || {
        let client = client.clone();
        let spec = v3["spec"].clone();
        async move {
            let mut current = client
                .get(&KindRef::of::<Deployment>(), "default", "kubia")
                .await
                .ok()?;
            current["spec"] = spec;
            match client.update(&current).await {
                Ok(_) => Some(()),
                Err(rkube_client::Error::Conflict(_)) => None,
                Err(e) => panic!("update: {e}"),
            }
        }
    })
    .await;
    let stuck = wait_until(Duration::from_secs(60), "one unready v3 pod", || {
        let client = client.clone();
        async move {
            let all = pods(&client, "default", "app=kubia").await;
            let v3: Vec<_> = all.iter().filter(|p| image_of(p) == "kubia:v3").collect();
            let v4 = all.iter().filter(|p| image_of(p) == "kubia:v4").count();
            (v3.len() == 1
                && v4 == 3
                && v3[0]
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_ref())
                    .is_some())
            .then_some(all.len())
        }
    })
    .await;
    assert_eq!(stuck, 4);
    wait_until(
        Duration::from_secs(60),
        "the rollout declared stuck",
        || {
            let client = client.clone();
            async move {
                let d: Deployment = client.get_typed("default", "kubia").await.ok()?;
                let progressing = d
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_.as_deref() == Some("Progressing"))?;
                (progressing.status.as_deref() == Some("False")
                    && progressing.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                .then_some(())
            }
        },
    )
    .await;
    // Past its deadline the rollout still has not touched the old pods.
    let all = pods(&client, "default", "app=kubia").await;
    assert_eq!(all.iter().filter(|p| image_of(p) == "kubia:v4").count(), 3);
    assert_eq!(all.iter().filter(|p| image_of(p) == "kubia:v3").count(), 1);
}

fn image_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_and_endpoints_following_readiness() {
    let c = ApiCluster::start_opts(3, ClusterOptions::with_control_loops()).await;
    let client = c.client();
    let _nodes = nodes(&client, 2).await;

    // Endpoints: ready pods under addresses with the named target port resolved.
    client.create(&rs("svc", 2), "default").await.unwrap();
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                "spec": {"selector": {"app": "svc"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
            "default",
        )
        .await
        .unwrap();
    let ready = wait_pods(&client, "app=svc", 2).await;
    let addresses = |e: &Endpoints, not_ready: bool| -> usize {
        e.subsets
            .iter()
            .flatten()
            .map(|s| {
                if not_ready {
                    s.not_ready_addresses.as_ref().map_or(0, |a| a.len())
                } else {
                    s.addresses.as_ref().map_or(0, |a| a.len())
                }
            })
            .sum()
    };
    wait_until(Duration::from_secs(30), "2 ready endpoints", || {
        let client = client.clone();
        async move {
            let e: Endpoints = client.get_typed("default", "svc").await.ok()?;
            (addresses(&e, false) == 2).then_some(())
        }
    })
    .await;
    // A pod turning unready moves to notReadyAddresses.
    let name = ready[0].metadata.name.clone().unwrap();
    let mut unready: Pod = client.get_typed("default", &name).await.unwrap();
    for c in unready
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
    {
        if c.type_ == "Ready" || c.type_ == "ContainersReady" {
            c.status = "False".into();
        }
    }
    client.update_status_typed(&unready).await.unwrap();
    wait_until(
        Duration::from_secs(30),
        "1 ready and 1 not-ready endpoint",
        || {
            let client = client.clone();
            async move {
                let e: Endpoints = client.get_typed("default", "svc").await.ok()?;
                (addresses(&e, false) == 1 && addresses(&e, true) == 1).then_some(())
            }
        },
    )
    .await;

    // Namespace deletion removes the content, then the namespace.
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
            "",
        )
        .await
        .unwrap();
    client
        .create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}}), "doomed")
        .await
        .unwrap();
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "kubia"}]}}),
            "doomed",
        )
        .await
        .unwrap();
    client
        .delete(
            &KindRef::of::<Namespace>(),
            "",
            "doomed",
            Default::default(),
        )
        .await
        .unwrap();
    wait_until(Duration::from_secs(60), "namespace doomed removed", || {
        let client = client.clone();
        async move {
            matches!(
                client.get_typed::<Namespace>("", "doomed").await,
                Err(rkube_client::Error::NotFound(_))
            )
            .then_some(())
        }
    })
    .await;
    assert!(matches!(
        client.get_typed::<ConfigMap>("doomed", "cm").await,
        Err(rkube_client::Error::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_node_are_recreated_elsewhere() {
    let mut opts = ClusterOptions::with_control_loops();
    opts.control_plane.node_monitor_grace_period = Duration::from_secs(3);
    opts.control_plane.default_toleration_seconds = 1;
    let c = ApiCluster::start_opts(3, opts).await;
    let client = c.client();
    let mut doomed = SimNode::start(client.clone(), SimNodeSpec::new("node-doomed"))
        .await
        .unwrap();
    client.create(&rs("web", 3), "default").await.unwrap();
    wait_until(Duration::from_secs(30), "3 pods on node-doomed", || {
        let client = client.clone();
        async move {
            let all = pods(&client, "default", "app=web").await;
            (all.len() == 3
                && all.iter().all(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-doomed")
                }))
            .then_some(())
        }
    })
    .await;
    let _spare = SimNode::start(client.clone(), SimNodeSpec::new("node-spare"))
        .await
        .unwrap();
    doomed.stop();
    wait_until(Duration::from_secs(90), "3 pods on node-spare", || {
        let client = client.clone();
        async move {
            let all = pods(&client, "default", "app=web").await;
            let spare = all
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-spare")
                })
                .count();
            (spare == 3).then_some(())
        }
    })
    .await;
}

/// Kill the leader: the controllers of the new leader act again (a scale-up is reconciled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_resume_on_the_new_leader_after_a_kill() {
    let mut c = ApiCluster::start_opts(3, ClusterOptions::with_control_loops()).await;
    let leader = c.leader().await;
    let survivor = if leader == 1 { 2 } else { 1 };
    let client = c.client_to(survivor);
    let _nodes = nodes(&client, 1).await;
    client.create(&rs("web", 1), "default").await.unwrap();
    wait_pods(&client, "app=web", 1).await;
    c.kill(leader);
    scale_rs(&client, "web", 3).await;
    wait_pods(&client, "app=web", 3).await;
    // The Lease names the new holder.
    let holder = wait_until(Duration::from_secs(30), "a new lease holder", || {
        let client = client.clone();
        async move {
            let l: Lease = client
                .get_typed("kube-system", "kube-controller-manager")
                .await
                .ok()?;
            let h = l.spec?.holder_identity?;
            (h != format!("server-{leader}")).then_some(h)
        }
    })
    .await;
    assert!(holder.starts_with("server-"));
}

/// SIGSTOP the leader, let another take over, resume it: a write stamped with its old term is
/// refused, and no Lease write of the old holder lands after the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_cannot_commit_after_a_takeover() {
    let c = ProcessCluster::start(3, &[]).await;
    let client = c.client();
    let before = client.members().await.unwrap();
    let old_leader = before.leader_id as usize;
    let via_old = c.client_to(old_leader);
    let old_term = via_old.members().await.unwrap().raft_term;
    let other = if old_leader == 1 { 2 } else { 1 };
    let survivor = c.client_to(other);
    // The old leader's controllers hold the Lease.
    wait_until(
        Duration::from_secs(30),
        "the lease held by the leader",
        || {
            let survivor = survivor.clone();
            async move {
                let l: Lease = survivor
                    .get_typed("kube-system", "kube-controller-manager")
                    .await
                    .ok()?;
                (l.spec?.holder_identity? == format!("server-{old_leader}")).then_some(())
            }
        },
    )
    .await;

    c.servers[old_leader - 1].signal("STOP");
    let new_term = wait_until(Duration::from_secs(30), "a new leader", || {
        let survivor = survivor.clone();
        async move {
            let m = survivor.members().await.ok()?;
            (m.leader_id != 0 && m.leader_id as usize != old_leader && m.raft_term > old_term)
                .then_some(m.raft_term)
        }
    })
    .await;
    // The new leader's controllers take the Lease.
    let taken = wait_until(Duration::from_secs(30), "the lease taken over", || {
        let survivor = survivor.clone();
        async move {
            let l: Lease = survivor
                .get_typed("kube-system", "kube-controller-manager")
                .await
                .ok()?;
            let h = l.spec.as_ref()?.holder_identity.clone()?;
            (h != format!("server-{old_leader}")).then_some(l)
        }
    })
    .await;
    let taken_rv: i64 = taken.metadata.resource_version.unwrap().parse().unwrap();
    c.servers[old_leader - 1].signal("CONT");

    // A write stamped with the old term, sent to the old leader, is refused.
    let stale = via_old.fenced(old_term);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stale"}, "data": {"a": "b"}});
    let err = wait_until(Duration::from_secs(30), "a refused stale write", || {
        let stale = stale.clone();
        let cm = cm.clone();
        async move {
            match stale.create(&cm, "default").await {
                Err(e @ rkube_client::Error::Fenced(_)) => Some(e),
                Err(e) if e.is_retryable() => None,
                other => panic!("a write stamped with the old term was not fenced: {other:?}"),
            }
        }
    })
    .await;
    assert!(err.to_string().contains("lost leadership"), "{err}");
    assert!(matches!(
        survivor.get_typed::<ConfigMap>("default", "stale").await,
        Err(rkube_client::Error::NotFound(_))
    ));
    // The current term's fence is accepted.
    survivor
        .fenced(new_term)
        .create(&cm, "default")
        .await
        .expect("a write stamped with the current term");

    // The resumed server learns that it was deposed; after that the new holder renews the Lease
    // twice, so the resumed server's loops had a whole renewal period in which to write.
    wait_until(
        Duration::from_secs(30),
        "the old leader to see the new one",
        || {
            let via_old = via_old.clone();
            async move {
                let m = via_old.members().await.ok()?;
                (m.member_id as usize == old_leader
                    && m.leader_id != 0
                    && m.leader_id as usize != old_leader)
                    .then_some(())
            }
        },
    )
    .await;
    let mut last_rv = lease_rv(&survivor, 0).await;
    for _ in 0..2 {
        last_rv = lease_rv(&survivor, last_rv).await;
    }
    // The Lease history since the takeover: no write names the old holder.
    let mut history = Vec::new();
    let params = ListParams {
        namespace: "kube-system".into(),
        field_selector: "metadata.name=kube-controller-manager".into(),
        resource_version: taken_rv.to_string(),
        ..Default::default()
    };
    let mut w = Box::pin(survivor.watch(&KindRef::of::<Lease>(), &params, false));
    while let Some(ev) = futures::StreamExt::next(&mut w).await {
        let Some(o) = ev.expect("lease watch").object().cloned() else {
            continue;
        };
        history.push(
            o["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
        let rv: i64 = o["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if rv >= last_rv {
            break;
        }
    }
    assert!(
        !history.iter().any(|h| h == &format!("server-{old_leader}")),
        "the old leader wrote the lease after the takeover: {history:?}"
    );
}

/// Wait until the controller-manager Lease is written after revision `after`; its new revision.
async fn lease_rv(client: &Client, after: i64) -> i64 {
    wait_until(Duration::from_secs(30), "a lease renewal", || {
        let client = client.clone();
        async move {
            let l: Lease = client
                .get_typed("kube-system", "kube-controller-manager")
                .await
                .ok()?;
            let rv: i64 = l.metadata.resource_version?.parse().ok()?;
            (rv > after).then_some(rv)
        }
    })
    .await
}
