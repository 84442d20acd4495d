//! Integration tests of the Kubernetes resource API over gRPC against 3-server clusters:
//! concurrency, generateName, finalizers, pagination, selectors, watch failover and expiry,
//! errors for bad input, authentication and Service allocation.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use rkube_client::{Client, Error, KindRef, ListParams, WatchEvent};
use rkube_proto::api;
use rkube_tests::api_cluster::ApiCluster;
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

fn cm(name: &str, data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "test"}}, "data": {"k": data}})
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "kubia"}]}})
}

fn rv(v: &Value) -> i64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric")
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_with_conflicts_generate_name_and_server_fields() {
    let c = ApiCluster::start(3).await;
    let client = c.client_to(2);
    let created = client
        .create(&cm("config", "1"), "default")
        .await
        .expect("create");
    assert!(created["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(created["metadata"]["creationTimestamp"].as_str().is_some());
    let err = client
        .create(&cm("config", "1"), "default")
        .await
        .expect_err("duplicate");
    assert_eq!(
        err,
        Error::AlreadyExists("configmaps \"config\" already exists".into())
    );

    // Update with the current resourceVersion succeeds; the stale one then conflicts.
    let mut v1 = created.clone();
    v1["data"]["k"] = json!("2");
    let updated = client.update(&v1).await.expect("update");
    assert!(rv(&updated) > rv(&created));
    let mut stale = created.clone();
    stale["data"]["k"] = json!("3");
    let err = client.update(&stale).await.expect_err("stale update");
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("the object has been modified")),
        "{err}"
    );

    // Reads on every server see the update.
    for id in 1..=3 {
        let got = c
            .client_to(id)
            .get(&KindRef::resource("cm"), "default", "config")
            .await
            .expect("get");
        assert_eq!(got["data"]["k"], "2", "server {id}");
    }

    // generateName
    let gen =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}});
    let a = client.create(&gen, "default").await.expect("generate");
    let b = client.create(&gen, "default").await.expect("generate");
    let (an, bn) = (
        a["metadata"]["name"].as_str().unwrap(),
        b["metadata"]["name"].as_str().unwrap(),
    );
    assert!(
        an.starts_with("cfg-") && an.len() == 9 && an != bn,
        "{an} {bn}"
    );

    // Spec changes bump generation; status updates do not change spec.
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "kubia"}]}}}});
    let d = client.create(&d, "default").await.expect("deployment");
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%",
        "defaults applied"
    );
    let mut scaled = d.clone();
    scaled["spec"]["replicas"] = json!(3);
    let scaled = client.update(&scaled).await.expect("scale");
    assert_eq!(scaled["metadata"]["generation"], 2);
    let mut status = scaled.clone();
    status["status"] = json!({"replicas": 3});
    status["spec"]["replicas"] = json!(7);
    let s = client.update_status(&status).await.expect("status");
    assert_eq!(s["spec"]["replicas"], 3, "status update cannot change spec");
    assert_eq!(s["status"]["replicas"], 3);
    assert_eq!(s["metadata"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_until_removed() {
    let c = ApiCluster::start(3).await;
    let client = c.client();
    let mut obj = cm("held", "x");
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    client.create(&obj, "default").await.expect("create");
    let (after, removed) = client
        .delete(
            &KindRef::resource("configmaps"),
            "default",
            "held",
            api::DeleteRequest::default(),
        )
        .await
        .expect("delete");
    assert!(!removed);
    assert!(after["metadata"]["deletionTimestamp"].as_str().is_some());
    let still = client
        .get(&KindRef::resource("cm"), "default", "held")
        .await
        .expect("still there");
    let mut release = still.clone();
    release["metadata"]["finalizers"] = json!([]);
    client.update(&release).await.expect("remove finalizer");
    let err = client
        .get(&KindRef::resource("cm"), "default", "held")
        .await
        .expect_err("gone");
    assert_eq!(err, Error::NotFound("configmaps \"held\" not found".into()));

    // Orphan and foreground deletion are recorded as finalizers for the garbage collector.
    client
        .create(&cm("orphan-me", "x"), "default")
        .await
        .expect("create");
    let (o, _) = client
        .delete(
            &KindRef::resource("cm"),
            "default",
            "orphan-me",
            api::DeleteRequest {
                propagation_policy: api::PropagationPolicy::Orphan as i32,
                ..Default::default()
            },
        )
        .await
        .expect("delete");
    assert_eq!(o["metadata"]["finalizers"], json!(["orphan"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_consistent_under_concurrent_writes() {
    let c = ApiCluster::start(3).await;
    let client = c.client();
    for i in 0..40 {
        client
            .create(&cm(&format!("page-{i:02}"), "v"), "default")
            .await
            .expect("create");
    }
    let kind = KindRef::resource("configmaps");
    let first = client
        .list(
            &kind,
            &ListParams {
                namespace: "default".into(),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 10);
    assert!(!first.continue_token.is_empty());
    // Writes between pages must not show up in later pages of the same list.
    let writer = {
        let client = c.client_to(3);
        tokio::spawn(async move {
            for i in 0..20 {
                client
                    .create(&cm(&format!("page-zz-{i:02}"), "v"), "default")
                    .await
                    .expect("create");
                let _ = client
                    .delete(
                        &KindRef::resource("cm"),
                        "default",
                        &format!("page-{:02}", 39 - i),
                        api::DeleteRequest::default(),
                    )
                    .await;
            }
        })
    };
    let mut all = first.items.clone();
    let mut token = first.continue_token.clone();
    while !token.is_empty() {
        let page = client
            .list(
                &kind,
                &ListParams {
                    namespace: "default".into(),
                    limit: 10,
                    continue_token: token.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("next page");
        assert_eq!(
            page.resource_version, first.resource_version,
            "every page is at the same revision"
        );
        all.extend(page.items);
        token = page.continue_token;
    }
    writer.await.expect("writer");
    let got: Vec<String> = names(&all)
        .into_iter()
        .filter(|n| n.starts_with("page-"))
        .collect();
    let want: Vec<String> = (0..40).map(|i| format!("page-{i:02}")).collect();
    assert_eq!(
        got, want,
        "the paged list is the state at the first page's revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors_filter_lists_and_watches() {
    let c = ApiCluster::start(3).await;
    let client = c.client();
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
            "",
        )
        .await
        .expect("ns");
    client
        .create(
            &pod("web-1", json!({"app": "web", "tier": "front"})),
            "default",
        )
        .await
        .expect("pod");
    client
        .create(
            &pod("web-2", json!({"app": "web", "tier": "back"})),
            "default",
        )
        .await
        .expect("pod");
    client
        .create(&pod("db-1", json!({"app": "db"})), "default")
        .await
        .expect("pod");
    client
        .create(&pod("web-3", json!({"app": "web"})), "other")
        .await
        .expect("pod");
    let pods = KindRef::resource("po");
    let list = |ns: &str, l: &str, f: &str| {
        let client = client.clone();
        let p = ListParams {
            namespace: ns.into(),
            label_selector: l.into(),
            field_selector: f.into(),
            ..Default::default()
        };
        let pods = pods.clone();
        async move {
            let mut n = names(&client.list(&pods, &p).await.expect("list").items);
            n.sort();
            n
        }
    };
    assert_eq!(list("default", "app=web", "").await, vec!["web-1", "web-2"]);
    assert_eq!(
        list("", "app=web", "").await,
        vec!["web-1", "web-2", "web-3"],
        "all namespaces"
    );
    assert_eq!(list("default", "app!=web", "").await, vec!["db-1"]);
    assert_eq!(
        list("default", "tier in (front,middle)", "").await,
        vec!["web-1"]
    );
    assert_eq!(
        list("default", "tier notin (front)", "").await,
        vec!["db-1", "web-2"]
    );
    assert_eq!(list("default", "tier", "").await, vec!["web-1", "web-2"]);
    assert_eq!(list("default", "!tier", "").await, vec!["db-1"]);
    assert_eq!(list("", "", "metadata.name=web-3").await, vec!["web-3"]);
    assert_eq!(
        list(
            "default",
            "",
            "metadata.namespace=default,status.phase=Pending"
        )
        .await,
        vec!["db-1", "web-1", "web-2"]
    );
    assert_eq!(
        list("default", "", "spec.nodeName=").await.len(),
        3,
        "unscheduled pods"
    );
    let err = client
        .list(
            &pods,
            &ListParams {
                field_selector: "spec.bogus=1".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("bad field");
    assert!(
        matches!(&err, Error::BadRequest(m) if m.contains("field label not supported: spec.bogus")),
        "{err}"
    );
    let err = client
        .list(
            &pods,
            &ListParams {
                label_selector: "app in web".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("bad label");
    assert!(matches!(err, Error::BadRequest(_)), "{err}");

    // A watch with a selector sees an object enter and leave its view.
    let mut w = Box::pin(client.watch(
        &pods,
        &ListParams {
            namespace: "default".into(),
            label_selector: "tier=front".into(),
            ..Default::default()
        },
        true,
    ));
    let first = w.next().await.expect("event").expect("ok");
    assert!(
        matches!(&first, WatchEvent::Added(o) if o["metadata"]["name"] == "web-1"),
        "{first:?}"
    );
    assert!(matches!(
        w.next().await.expect("event").expect("ok"),
        WatchEvent::Bookmark {
            initial_events_end: true,
            ..
        }
    ));
    client
        .patch(
            &pods,
            "default",
            "web-2",
            api::PatchType::Merge,
            br#"{"metadata":{"labels":{"tier":"front"}}}"#,
            false,
        )
        .await
        .expect("relabel");
    client
        .patch(
            &pods,
            "default",
            "web-1",
            api::PatchType::Merge,
            br#"{"metadata":{"labels":{"tier":"back"}}}"#,
            false,
        )
        .await
        .expect("relabel");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch stalled")
            .expect("event")
            .expect("ok")
        {
            WatchEvent::Added(o) => {
                seen.push(format!("added {}", o["metadata"]["name"].as_str().unwrap()))
            }
            WatchEvent::Deleted(o) => seen.push(format!(
                "deleted {}",
                o["metadata"]["name"].as_str().unwrap()
            )),
            WatchEvent::Modified(o) => seen.push(format!(
                "modified {}",
                o["metadata"]["name"].as_str().unwrap()
            )),
            WatchEvent::Bookmark { .. } => {}
        }
    }
    assert_eq!(seen, vec!["added web-2", "deleted web-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_another_server_after_its_server_is_killed() {
    let mut c = ApiCluster::start(3).await;
    let writer = c.client_to(2);
    // The watcher prefers server 3, then 1, then 2.
    let watcher = c.client_to(3);
    let kind = KindRef::resource("configmaps");
    let start = writer
        .create(&cm("w-0", "0"), "default")
        .await
        .expect("create");
    let mut w = Box::pin(watcher.watch(
        &kind,
        &ListParams {
            namespace: "default".into(),
            resource_version: rv(&start).to_string(),
            ..Default::default()
        },
        false,
    ));
    let mut seen = Vec::new();
    for i in 1..=30 {
        writer
            .create(&cm(&format!("w-{i}"), "x"), "default")
            .await
            .expect("create");
        if i == 10 {
            // Make sure the watch is delivering from server 3 before killing it.
            while seen.len() < 10 {
                if let WatchEvent::Added(o) = w.next().await.expect("event").expect("ok") {
                    seen.push(o["metadata"]["name"].as_str().unwrap().to_string());
                }
            }
            c.kill(3);
        }
    }
    while seen.len() < 30 {
        match tokio::time::timeout(Duration::from_secs(30), w.next())
            .await
            .expect("watch did not resume")
            .expect("stream")
            .expect("event")
        {
            WatchEvent::Added(o) => seen.push(o["metadata"]["name"].as_str().unwrap().to_string()),
            WatchEvent::Bookmark { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<String> = (1..=30).map(|i| format!("w-{i}")).collect();
    assert_eq!(seen, want, "no gap, no duplicate across the failover");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_resource_version_is_told_to_relist() {
    let c = ApiCluster::start_with(1, Duration::from_millis(300)).await;
    let client = c.client();
    let first_rv = rv(&client
        .create(&cm("old", "1"), "default")
        .await
        .expect("create"));
    // Compaction runs every 300 ms and compacts to the revision seen one interval earlier.
    wait_until(Duration::from_secs(20), "history before the first write to be compacted", || {
        let client = client.clone();
        async move {
            client.create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "tick-"}}), "default").await.ok()?;
            let mut w = Box::pin(client.watch(&KindRef::resource("cm"), &ListParams { namespace: "default".into(), resource_version: (first_rv - 1).to_string(), ..Default::default() }, false));
            match tokio::time::timeout(Duration::from_secs(5), w.next()).await.ok()?? {
                Err(Error::Gone(m)) => Some(m),
                _ => None,
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let c = ApiCluster::start(1).await;
    let client = c.client();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "x"}}),
            "use apiVersion: apps/v1",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Frobnicator", "metadata": {"name": "x"}}),
            "rkube serves the kinds",
        ),
        (json!({"kind": "Pod"}), "apiVersion or kind"),
        (
            pod("Bad_Name", json!({})),
            "metadata.name: Invalid value: \"Bad_Name\"",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": true}]}]}}),
            "spec.containers[0].env[0].value",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containerz": []}}),
            "spec.containerz: Unknown field",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "x".repeat(1600 * 1024)}}),
            "1.5 MiB",
        ),
    ];
    for (obj, want) in cases {
        let err = client.create(&obj, "default").await.expect_err("must fail");
        assert!(
            err.to_string().contains(want),
            "{err} should contain {want}"
        );
    }
    let err = client
        .create(&cm("x", "1"), "no-such-namespace")
        .await
        .expect_err("namespace missing");
    assert_eq!(
        err,
        Error::NotFound("namespaces \"no-such-namespace\" not found".into())
    );
    let err = client
        .get(&KindRef::resource("frobs"), "default", "x")
        .await
        .expect_err("unknown resource");
    assert!(
        err.to_string()
            .contains("the server doesn't have a resource type \"frobs\""),
        "{err}"
    );
    // Built-in namespaces exist.
    for ns in ["default", "kube-system", "kube-node-lease"] {
        client
            .get(&KindRef::resource("ns"), "", ns)
            .await
            .expect(ns);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_callers_are_refused() {
    let c = ApiCluster::start(1).await;
    let mut config = c.client_config();
    config.token = Some("not-a-token".into());
    let err = Client::new(config.clone())
        .unwrap()
        .get(&KindRef::resource("ns"), "", "default")
        .await
        .expect_err("bad token");
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    config.token = None;
    let err = Client::new(config.clone())
        .unwrap()
        .get(&KindRef::resource("ns"), "", "default")
        .await
        .expect_err("no credentials");
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    // A client certificate issued by the cluster CA authenticates without a token.
    let tls = c.data_dir(1).join("tls");
    config.client_cert_pem = Some(std::fs::read_to_string(tls.join("admin.pem")).expect("cert"));
    config.client_key_pem = Some(std::fs::read_to_string(tls.join("admin.key")).expect("key"));
    Client::new(config)
        .unwrap()
        .get(&KindRef::resource("ns"), "", "default")
        .await
        .expect("client certificate accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_cluster_ips_and_node_ports() {
    let c = ApiCluster::start(3).await;
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for i in 0..12 {
        let client = c.client_to(i % 3 + 1);
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}});
        let s = client.create(&svc, "default").await.expect("service");
        assert!(ips.insert(
            s["spec"]["clusterIP"]
                .as_str()
                .expect("cluster ip")
                .to_string()
        ));
        let port = s["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .expect("node port");
        assert!((30000..=32767).contains(&port));
        assert!(ports.insert(port));
    }
    let taken = *ports.iter().next().unwrap();
    let dup = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dup"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": taken}]}});
    let err = c
        .client()
        .create(&dup, "default")
        .await
        .expect_err("port taken");
    assert!(
        err.to_string()
            .contains("provided port is already allocated"),
        "{err}"
    );
    // Deleting a Service releases its port.
    let owner = c
        .client()
        .list(
            &KindRef::resource("svc"),
            &ListParams {
                namespace: "default".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| s["spec"]["ports"][0]["nodePort"].as_i64() == Some(taken))
        .unwrap();
    c.client()
        .delete(
            &KindRef::resource("svc"),
            "default",
            owner["metadata"]["name"].as_str().unwrap(),
            api::DeleteRequest::default(),
        )
        .await
        .expect("delete");
    c.client()
        .create(&dup, "default")
        .await
        .expect("the port is free again");
}
