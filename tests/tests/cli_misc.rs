//! End-to-end tests of `rkube describe`, `rollout`, `expose`, `run`, `wait`, `api-resources`,
//! `cluster-info` and `cluster`: the real binary against a 3-server cluster through a kubeconfig
//! listing every server. There are no controllers yet, so the tests play their part: they
//! write statuses, Events and a Deployment's ReplicaSets themselves.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkube_client::{Client, KindRef};
use rkube_tests::api_cluster::ApiCluster;
use rkube_tests::process::rkube_bin;
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

/// What one `rkube` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn rkube(kubeconfig: &Path, args: &[&str]) -> Run {
    let out = Command::new(rkube_bin())
        // Before the command, so that `run ... -- ARGS` leaves it alone.
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("RKUBECONFIG")
        .output()
        .expect("run rkube");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run and expect success; the standard output.
#[track_caller]
fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let run = rkube(kubeconfig, args);
    assert_eq!(
        run.code,
        Some(0),
        "rkube {args:?} failed:\n{}{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// Run and expect exit code 1; the standard error.
#[track_caller]
fn fails(kubeconfig: &Path, args: &[&str]) -> String {
    let run = rkube(kubeconfig, args);
    assert_eq!(
        run.code,
        Some(1),
        "rkube {args:?} should fail:\n{}{}",
        run.stdout,
        run.stderr
    );
    run.stderr
}

/// The whitespace-separated words of one line.
fn line_words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The whitespace-separated words of each line.
fn words(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// A describe text with the Events table's ages blanked out (they move on between runs).
fn without_ages(text: &str) -> String {
    let Some((head, events)) = text.split_once("\nEvents:\n") else {
        return text.to_string();
    };
    let rows: Vec<String> = events
        .lines()
        .map(|l| {
            line_words(l)
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, w)| *w)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    format!("{head}\nEvents:\n{}", rows.join("\n"))
}

/// A running `rkube` whose output lines are collected as they come.
struct Background {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(kubeconfig: &Path, args: &[&str]) -> Background {
        let mut child = Command::new(rkube_bin())
            // Before the command, so that `run ... -- ARGS` leaves it alone.
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("RKUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rkube");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().expect("lines").push(line);
                }
            }));
        }
        Background {
            child,
            lines,
            readers,
        }
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    async fn saw(&self, what: &str, line: &str) {
        wait_until(Duration::from_secs(30), what, || {
            std::future::ready(self.output().iter().any(|l| l.contains(line)).then_some(()))
        })
        .await;
    }

    /// Wait for the exit code; the output lines by then.
    async fn finish(&mut self) -> (Option<i32>, Vec<String>) {
        let child = &mut self.child;
        let status = wait_until(Duration::from_secs(60), "rkube to exit", || {
            std::future::ready(child.try_wait().expect("try_wait"))
        })
        .await;
        // The readers reach end-of-file now that the process is gone.
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        (status.code(), self.output())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "luksa/kubia", "ports": [{"containerPort": 8080}]}]}})
}

fn template(image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": "kubia"});
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "nodejs", "image": image, "ports": [{"containerPort": 8080}]}]}})
}

fn deployment(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kubia", "labels": {"app": "kubia"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kubia"}}, "template": template(image, None)}})
}

/// A ReplicaSet the Deployment controller would have made for one revision.
fn replica_set(d: &Value, hash: &str, image: &str, revision: &str, cause: Option<&str>) -> Value {
    let mut annotations = json!({"deployment.kubernetes.io/revision": revision});
    if let Some(c) = cause {
        annotations["kubernetes.io/change-cause"] = json!(c);
    }
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("kubia-{hash}"),
            "labels": {"app": "kubia", "pod-template-hash": hash},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "kubia",
                "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "kubia", "pod-template-hash": hash}},
            "template": template(image, Some(hash))}})
}

async fn get(client: &Client, api_version: &str, kind: &str, name: &str) -> Value {
    client
        .get(&KindRef::kind(api_version, kind), "default", name)
        .await
        .expect("get")
}

/// Set a status as the controllers would (the status subresource).
async fn set_status(client: &Client, api_version: &str, kind: &str, name: &str, status: Value) {
    let mut obj = get(client, api_version, kind, name).await;
    obj["status"] = status;
    client.update_status(&obj).await.expect("update status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_objects_with_their_events() {
    let c = ApiCluster::start(3).await;
    let k = c.kubeconfig();
    let client = c.client();

    client
        .create(&pod("kubia-pod", json!({"app": "kubia"})), "default")
        .await
        .expect("pod");
    // The server's clock, as the agent would stamp its events.
    let now = get(&client, "v1", "Pod", "kubia-pod").await["metadata"]["creationTimestamp"]
        .as_str()
        .expect("creationTimestamp")
        .to_string();
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "kubia-pod.pulled"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "kubia-pod", "namespace": "default",
            "fieldPath": "spec.containers{main}"},
        "reason": "Pulled", "message": "Container image \"luksa/kubia\" already present on machine",
        "type": "Normal", "source": {"component": "kubelet"}, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now});
    client.create(&event, "default").await.expect("event");
    // An event about another object must not show.
    let mut other = event.clone();
    other["metadata"]["name"] = json!("other.pulled");
    other["involvedObject"]["name"] = json!("other-pod");
    other["reason"] = json!("Killing");
    client.create(&other, "default").await.expect("other event");
    set_status(&client, "v1", "Pod", "kubia-pod", json!({
        "phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "main", "image": "luksa/kubia", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": now}}}]}))
    .await;

    let text = ok(&k, &["describe", "pod", "kubia-pod"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Name:         kubia-pod", "{text}");
    assert_eq!(lines[1], "Namespace:    default", "{text}");
    for expected in [
        "Priority:     0",
        "Node:         <none>",
        "Labels:       app=kubia",
        "Status:       Running",
        "IP:           10.1.0.5",
        "Containers:",
        "  main:",
        "    Image:          luksa/kubia",
        "    Port:           8080/TCP",
        "    State:          Running",
        "    Ready:          True",
        "Conditions:",
        "QoS Class:       BestEffort",
        "Events:",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{text}"
        );
    }
    let events = &lines[lines.iter().position(|l| *l == "Events:").unwrap() + 1..];
    assert_eq!(
        line_words(events[0]),
        ["Type", "Reason", "Age", "From", "Message"],
        "{text}"
    );
    assert_eq!(
        line_words(events[1]),
        ["----", "------", "----", "----", "-------"],
        "{text}"
    );
    assert_eq!(events.len(), 3, "only the pod's own event:\n{text}");
    let row = line_words(events[2]);
    assert_eq!(
        (row[0], row[1], row[3]),
        ("Normal", "Pulled", "kubelet"),
        "{text}"
    );
    assert!(
        events[2].ends_with(
            "spec.containers{main}: Container image \"luksa/kubia\" already present on machine"
        ),
        "{text}"
    );
    // Columns line up under their headers.
    let reason_at = events[0].find("Reason").unwrap();
    assert_eq!(&events[2][reason_at..reason_at + 6], "Pulled", "{text}");

    // A name prefix, TYPE/NAME, and all of a kind by label describe the same pod.
    let same = |other: String| without_ages(&other) == without_ages(&text);
    assert!(same(ok(&k, &["describe", "po", "kubia"])), "by prefix");
    assert!(same(ok(&k, &["describe", "pods/kubia-pod"])), "TYPE/NAME");
    assert!(
        same(ok(&k, &["describe", "pods", "-l", "app=kubia"])),
        "by label"
    );
    let quiet = ok(&k, &["describe", "pod", "kubia-pod", "--show-events=false"]);
    assert!(!quiet.contains("Events:"), "{quiet}");

    // ConfigMap: every value under a rule; a Secret shows only sizes.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fortune-config"},
        "data": {"sleep-interval": "25"}});
    client.create(&cm, "default").await.expect("configmap");
    assert_eq!(
        ok(&k, &["describe", "configmap", "fortune-config"]),
        "Name:         fortune-config\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\n\
         Data\n====\nsleep-interval:\n----\n25\n\n\nBinaryData\n====\n\nEvents:  <none>\n"
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "type": "Opaque", "data": {"password": "c2VjcmV0ISE="}});
    client.create(&secret, "default").await.expect("secret");
    let described = ok(&k, &["describe", "secret", "creds"]);
    assert!(
        described.ends_with("\nType:  Opaque\n\nData\n====\npassword:  8 bytes\n"),
        "{described}"
    );
    assert!(!described.contains("secret!!"), "{described}");

    // Deployment with its status, ReplicaSets and template.
    let d = client
        .create(&deployment("luksa/kubia:v1"), "default")
        .await
        .expect("deployment");
    client
        .create(
            &replica_set(&d, "v1", "luksa/kubia:v1", "1", None),
            "default",
        )
        .await
        .expect("rs");
    set_status(&client, "apps/v1", "Deployment", "kubia", json!({
        "observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2, "unavailableReplicas": 1,
        "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}))
    .await;
    let text = ok(&k, &["describe", "deploy", "kubia"]);
    for expected in [
        "Name:                   kubia",
        "Selector:               app=kubia",
        "Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable",
        "StrategyType:           RollingUpdate",
        "MinReadySeconds:        0",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "Pod Template:",
        "  Labels:  app=kubia",
        "   nodejs:",
        "OldReplicaSets:  <none>",
        "NewReplicaSet:   kubia-v1 (0/0 replicas created)",
        "Events:          <none>",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected:?} in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| line_words(l) == ["Available", "False", "MinimumReplicasUnavailable"]),
        "{text}"
    );
    let rs_text = ok(&k, &["describe", "rs", "kubia-v1"]);
    assert!(
        rs_text.contains("Controlled By:  Deployment/kubia\n"),
        "{rs_text}"
    );
    assert!(
        rs_text.contains("Pods Status:    0 Running / 0 Waiting / 0 Succeeded / 0 Failed\n"),
        "{rs_text}"
    );

    // Service (through expose, below the describer's concern) and the generic describer.
    ok(
        &k,
        &[
            "expose",
            "deployment",
            "kubia",
            "--port=80",
            "--target-port=8080",
        ],
    );
    let svc = ok(&k, &["describe", "svc", "kubia"]);
    let ip = get(&client, "v1", "Service", "kubia").await["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    for expected in [
        "Selector:                 app=kubia".to_string(),
        "Type:                     ClusterIP".to_string(),
        format!("IP:                       {ip}"),
        "Port:                     <unset>  80/TCP".into(),
        "TargetPort:               8080/TCP".into(),
        "Endpoints:                <none>".into(),
        "Session Affinity:         None".into(),
        "Internal Traffic Policy:  Cluster".into(),
    ] {
        assert!(
            svc.lines().any(|l| l == expected),
            "missing {expected:?} in:\n{svc}"
        );
    }
    let ns = ok(&k, &["describe", "ns", "default"]);
    assert!(ns.starts_with("Name:         default\n"), "{ns}");
    assert!(ns.contains("Status:       Active\n"), "{ns}");

    // Several objects are separated by a blank line; a missing one fails after the others.
    let both = rkube(
        &k,
        &[
            "describe",
            "cm/fortune-config",
            "cm/missing",
            "secret/creds",
        ],
    );
    assert_eq!(both.code, Some(1));
    assert!(
        both.stdout
            .contains("Events:  <none>\n\n\nName:         creds\n"),
        "{}",
        both.stdout
    );
    assert_eq!(
        both.stderr,
        "Error from server (NotFound): configmaps \"missing\" not found\n"
    );
    assert_eq!(
        fails(&k, &["describe", "frobs", "x"]),
        "error: the server doesn't have a resource type \"frobs\"\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_follows_pauses_restarts_and_undoes() {
    let c = ApiCluster::start(3).await;
    let k = c.kubeconfig();
    let client = c.client();
    let d = client
        .create(&deployment("luksa/kubia:v2"), "default")
        .await
        .expect("deployment");

    // Pause and resume, with kubectl's complaints when there is nothing to do.
    assert_eq!(
        ok(&k, &["rollout", "pause", "deployment/kubia"]),
        "deployment.apps/kubia paused\n"
    );
    assert_eq!(
        get(&client, "apps/v1", "Deployment", "kubia").await["spec"]["paused"],
        json!(true)
    );
    assert_eq!(
        fails(&k, &["rollout", "pause", "deploy", "kubia"]),
        "error: deployments.apps \"kubia\" is already paused\n"
    );
    assert!(fails(&k, &["rollout", "restart", "deployment/kubia"])
        .contains("can't restart paused deployment"));
    assert_eq!(
        ok(&k, &["rollout", "resume", "deployment/kubia"]),
        "deployment.apps/kubia resumed\n"
    );
    assert_eq!(
        fails(&k, &["rollout", "resume", "deployment/kubia"]),
        "error: deployments.apps \"kubia\" is not paused\n"
    );

    // Restart stamps the template.
    assert_eq!(
        ok(&k, &["rollout", "restart", "deployment/kubia"]),
        "deployment.apps/kubia restarted\n"
    );
    let restarted = get(&client, "apps/v1", "Deployment", "kubia").await;
    let stamp = restarted["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .expect("restartedAt")
        .to_string();
    assert!(
        stamp.len() >= 20 && stamp.as_bytes()[10] == b'T',
        "not RFC 3339: {stamp}"
    );

    // History from the ReplicaSets the Deployment owns; the current template is revision 2
    // (apart from the restart annotation, which revision 2's ReplicaSet also carries).
    let mut v2_template = template("luksa/kubia:v2", Some("v2"));
    v2_template["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/restartedAt": stamp});
    let mut rs2 = replica_set(
        &d,
        "v2",
        "luksa/kubia:v2",
        "2",
        Some("kubectl set image deployment/kubia nodejs=luksa/kubia:v2"),
    );
    rs2["spec"]["template"] = v2_template;
    client
        .create(
            &replica_set(&d, "v1", "luksa/kubia:v1", "1", None),
            "default",
        )
        .await
        .expect("rs v1");
    client.create(&rs2, "default").await.expect("rs v2");
    let mut stranger = replica_set(&d, "x", "luksa/kubia:x", "7", None);
    stranger["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    client
        .create(&stranger, "default")
        .await
        .expect("unowned rs");
    assert_eq!(
        ok(&k, &["rollout", "history", "deployment/kubia"]),
        "deployment.apps/kubia \nREVISION  CHANGE-CAUSE\n1         <none>\n2         kubectl set image deployment/kubia nodejs=luksa/kubia:v2\n\n"
    );
    let one = ok(
        &k,
        &["rollout", "history", "deployment/kubia", "--revision=1"],
    );
    assert!(one.starts_with("deployment.apps/kubia with revision #1\nPod Template:\n  Labels:\tapp=kubia\n\tpod-template-hash=v1\n"), "{one}");
    assert!(one.contains("    Image:\tluksa/kubia:v1\n"), "{one}");
    assert_eq!(
        fails(
            &k,
            &["rollout", "history", "deployment/kubia", "--revision=5"]
        ),
        "error: unable to find the specified revision\n"
    );

    // Undo to the previous revision: revision 1's template, without the hash label.
    assert_eq!(
        fails(
            &k,
            &["rollout", "undo", "deployment/kubia", "--to-revision=9"]
        ),
        "error: unable to find specified revision 9 in history\n"
    );
    assert_eq!(
        ok(&k, &["rollout", "undo", "deployment/kubia"]),
        "deployment.apps/kubia rolled back\n"
    );
    let undone = get(&client, "apps/v1", "Deployment", "kubia").await;
    assert_eq!(
        undone["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("luksa/kubia:v1")
    );
    assert_eq!(
        undone["spec"]["template"]["metadata"]["labels"],
        json!({"app": "kubia"})
    );
    assert_eq!(
        ok(
            &k,
            &["rollout", "undo", "deployment/kubia", "--to-revision=1"]
        ),
        "deployment.apps/kubia skipped rollback (current template already matches revision 1)\n"
    );
    assert_eq!(
        ok(
            &k,
            &["rollout", "undo", "deployment/kubia", "--to-revision=2"]
        ),
        "deployment.apps/kubia rolled back\n"
    );
    let redone = get(&client, "apps/v1", "Deployment", "kubia").await;
    assert_eq!(
        redone["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("luksa/kubia:v2")
    );
    assert_eq!(
        redone["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        json!(stamp)
    );

    // Status: nothing has observed the latest spec yet.
    assert_eq!(
        ok(
            &k,
            &["rollout", "status", "deployment/kubia", "--watch=false"]
        ),
        "Waiting for deployment spec update to be observed...\n"
    );
    let generation = redone["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    let status = |updated: i64, available: i64| json!({"observedGeneration": generation, "replicas": 3, "updatedReplicas": updated, "availableReplicas": available});
    set_status(&client, "apps/v1", "Deployment", "kubia", status(1, 1)).await;
    let mut follow = Background::start(
        &k,
        &["rollout", "status", "deployment/kubia", "--timeout=60s"],
    );
    follow
        .saw(
            "the first progress line",
            "1 out of 3 new replicas have been updated",
        )
        .await;
    set_status(&client, "apps/v1", "Deployment", "kubia", status(3, 2)).await;
    follow
        .saw(
            "the availability line",
            "2 of 3 updated replicas are available",
        )
        .await;
    set_status(&client, "apps/v1", "Deployment", "kubia", status(3, 3)).await;
    let (code, lines) = follow.finish().await;
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(
        lines,
        [
            "Waiting for deployment \"kubia\" rollout to finish: 1 out of 3 new replicas have been updated...",
            "Waiting for deployment \"kubia\" rollout to finish: 2 of 3 updated replicas are available...",
            "deployment \"kubia\" successfully rolled out",
        ]
    );

    // A missed progress deadline ends the command with an error; so does the timeout.
    let mut stuck = status(1, 1);
    stuck["conditions"] =
        json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
    set_status(&client, "apps/v1", "Deployment", "kubia", stuck).await;
    assert_eq!(
        fails(&k, &["rollout", "status", "deployment/kubia"]),
        "error: deployment \"kubia\" exceeded its progress deadline\n"
    );
    set_status(&client, "apps/v1", "Deployment", "kubia", status(1, 1)).await;
    let slow = rkube(
        &k,
        &["rollout", "status", "deployment/kubia", "--timeout=1s"],
    );
    assert_eq!(slow.code, Some(1));
    assert_eq!(slow.stderr, "error: timed out waiting for the condition\n");
    assert_eq!(
        fails(&k, &["rollout", "status", "deployment/nope"]),
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expose_run_and_wait() {
    let c = ApiCluster::start(3).await;
    let k = c.kubeconfig();
    let client = c.client();

    // expose: selector and ports from the exposed object.
    client
        .create(&deployment("luksa/kubia:v1"), "default")
        .await
        .expect("deployment");
    assert_eq!(
        ok(
            &k,
            &[
                "expose",
                "deployment",
                "kubia",
                "--port=80",
                "--target-port=8080",
                "--type=NodePort",
                "--name=kubia-http"
            ]
        ),
        "service/kubia-http exposed\n"
    );
    let svc = get(&client, "v1", "Service", "kubia-http").await;
    assert_eq!(svc["spec"]["selector"], json!({"app": "kubia"}));
    assert_eq!(svc["spec"]["type"], json!("NodePort"));
    assert_eq!(svc["spec"]["ports"][0]["port"], json!(80));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], json!(8080));
    assert!(
        svc["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .is_some_and(|p| (30000..=32767).contains(&p)),
        "{svc}"
    );
    client
        .create(&pod("lonely", json!({"run": "lonely"})), "default")
        .await
        .expect("pod");
    assert_eq!(
        ok(&k, &["expose", "pod/lonely"]),
        "service/lonely exposed\n"
    );
    let svc = get(&client, "v1", "Service", "lonely").await;
    assert_eq!(
        (
            svc["spec"]["selector"].clone(),
            svc["spec"]["ports"][0]["port"].clone()
        ),
        (json!({"run": "lonely"}), json!(8080))
    );
    assert_eq!(
        ok(&k, &["expose", "deploy/kubia"]),
        "service/kubia exposed\n"
    );
    assert_eq!(
        get(&client, "v1", "Service", "kubia").await["spec"]["ports"][0]["port"],
        json!(8080)
    );
    assert_eq!(
        fails(&k, &["expose", "deploy/kubia"]),
        "Error from server (AlreadyExists): services \"kubia\" already exists\n"
    );

    // run: kubectl's pod, or only its YAML with a client dry run.
    assert_eq!(
        ok(
            &k,
            &[
                "run",
                "web",
                "--image=nginx",
                "--port=80",
                "--labels=app=web",
                "--env=MODE=prod",
                "--",
                "nginx",
                "-g",
                "daemon off;"
            ]
        ),
        "pod/web created\n"
    );
    let web = get(&client, "v1", "Pod", "web").await;
    assert_eq!(web["metadata"]["labels"], json!({"app": "web"}));
    let container = &web["spec"]["containers"][0];
    assert_eq!(
        (container["name"].as_str(), container["image"].as_str()),
        (Some("web"), Some("nginx"))
    );
    assert_eq!(container["args"], json!(["nginx", "-g", "daemon off;"]));
    assert_eq!(container["env"], json!([{"name": "MODE", "value": "prod"}]));
    assert_eq!(container["ports"][0]["containerPort"], json!(80));
    assert_eq!(
        ok(&k, &["run", "dry", "--image=busybox", "--restart=Never", "--dry-run=client", "-o", "yaml", "--command", "--", "sleep", "3600"]),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: null\n  labels:\n    run: dry\n  name: dry\nspec:\n  containers:\n  \
         - command:\n    - sleep\n    - '3600'\n    image: busybox\n    name: dry\n    resources: {}\n  dnsPolicy: ClusterFirst\n  \
         restartPolicy: Never\nstatus: {}\n"
    );
    assert_eq!(
        fails(&k, &["get", "pod", "dry"]),
        "Error from server (NotFound): pods \"dry\" not found\n"
    );
    assert_eq!(
        fails(&k, &["run", "x", "--image=i", "--restart=Sometimes"]),
        "error: invalid restart policy: Sometimes, valid values are: Always, OnFailure, Never\n"
    );

    // wait: blocks while the pod is not Ready, returns once a status update makes it so.
    let mut waiter = Background::start(
        &k,
        &["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"],
    );
    // Showing that something does not happen needs a little time: wait must still be waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        waiter.child.try_wait().expect("try_wait").is_none(),
        "wait returned early: {:?}",
        waiter.output()
    );
    set_status(
        &client,
        "v1",
        "Pod",
        "web",
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .await;
    let (code, lines) = waiter.finish().await;
    assert_eq!(
        (code, lines),
        (Some(0), vec!["pod/web condition met".to_string()])
    );

    // Several objects, a JSONPath condition, and a timeout.
    client
        .create(&pod("slow", json!({"app": "slow"})), "default")
        .await
        .expect("pod");
    assert_eq!(
        ok(
            &k,
            &[
                "wait",
                "--for=jsonpath={.status.phase}=Running",
                "pod/web",
                "pods/web"
            ]
        ),
        "pod/web condition met\npod/web condition met\n"
    );
    assert_eq!(
        fails(
            &k,
            &[
                "wait",
                "--for=condition=Ready",
                "pod/web",
                "pod/slow",
                "--timeout=1s"
            ]
        ),
        "error: timed out waiting for the condition on pods/slow\n"
    );
    assert_eq!(
        fails(
            &k,
            &["wait", "--for=condition=Ready", "pod/ghost", "--timeout=5s"]
        ),
        "Error from server (NotFound): pods \"ghost\" not found\n"
    );
    assert_eq!(
        fails(
            &k,
            &["wait", "--for=condition=Ready", "pod", "-l", "app=none"]
        ),
        "error: no matching resources found\n"
    );
    assert_eq!(
        ok(
            &k,
            &["wait", "--for=condition=Ready", "pod", "-l", "app=web"]
        ),
        "pod/web condition met\n"
    );

    // --for=delete returns when the object goes.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "doomed"}});
    client.create(&cm, "default").await.expect("configmap");
    let mut deletion = Background::start(
        &k,
        &["wait", "--for=delete", "configmap/doomed", "--timeout=60s"],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        deletion.child.try_wait().expect("try_wait").is_none(),
        "wait returned early: {:?}",
        deletion.output()
    );
    client
        .delete(
            &KindRef::kind("v1", "ConfigMap"),
            "default",
            "doomed",
            Default::default(),
        )
        .await
        .expect("delete");
    let (code, lines) = deletion.finish().await;
    assert_eq!(
        (code, lines),
        (Some(0), vec!["configmap/doomed condition met".to_string()])
    );
    assert_eq!(ok(&k, &["wait", "--for=delete", "configmap/doomed"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_cluster_info_and_cluster_commands() {
    let c = ApiCluster::start(3).await;
    let k = c.kubeconfig();

    let table = ok(&k, &["api-resources"]);
    let rows = words(&table);
    assert_eq!(
        rows[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{table}"
    );
    assert!(
        rows.contains(&vec!["pods", "po", "v1", "true", "Pod"]),
        "{table}"
    );
    assert!(
        rows.contains(&vec![
            "deployments",
            "deploy",
            "apps/v1",
            "true",
            "Deployment"
        ]),
        "{table}"
    );
    let kind_at = table.lines().next().unwrap().find("KIND").unwrap();
    assert!(
        table
            .lines()
            .all(|l| l.len() > kind_at && !l[..kind_at].ends_with(|c: char| !c.is_whitespace())),
        "{table}"
    );
    let cluster_scoped = ok(&k, &["api-resources", "--namespaced=false", "-o", "name"]);
    let names: Vec<&str> = cluster_scoped.lines().collect();
    assert!(
        names.contains(&"nodes") && names.contains(&"namespaces"),
        "{cluster_scoped}"
    );
    assert!(!names.contains(&"pods"), "{cluster_scoped}");

    let info = ok(&k, &["cluster-info"]);
    for id in 1..=3 {
        let line = format!(
            "rkube control plane is running at https://{}",
            c.api_addr(id)
        );
        assert!(
            info.lines().any(|l| l == line),
            "missing {line:?} in:\n{info}"
        );
    }
    assert!(
        info.lines()
            .any(|l| l.starts_with("Raft leader is member ")),
        "{info}"
    );

    let members = ok(&k, &["cluster", "members"]);
    let rows = words(&members);
    assert_eq!(
        rows[0],
        ["ID", "PEER", "ADDRESS", "API", "ADDRESS", "VOTER", "LEADER"],
        "{members}"
    );
    assert_eq!(rows.len(), 4, "{members}");
    assert_eq!(
        rows[1..].iter().filter(|r| r[4] == "true").count(),
        1,
        "one leader:\n{members}"
    );
    assert!(
        rows[1..].iter().all(|r| r[3] == "true"),
        "all voters:\n{members}"
    );

    let health = ok(&k, &["cluster", "health"]);
    let rows = words(&health);
    assert_eq!(
        rows[0],
        ["ID", "API", "ADDRESS", "HEALTHY", "RAFT", "STATE", "APPLIED", "REVISION", "ERROR"],
        "{health}"
    );
    assert!(
        rows[1..].iter().all(|r| r[2] == "true" && r[5] == "<none>"),
        "{health}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.snap");
    let saved = ok(&k, &["cluster", "snapshot", "save", file.to_str().unwrap()]);
    let size = std::fs::metadata(&file).expect("snapshot file").len();
    assert!(size > 0);
    assert_eq!(
        saved,
        format!("Snapshot saved at {} ({size} bytes)\n", file.display())
    );

    // Membership changes go through the Cluster service; bad requests fail with its message.
    assert!(fails(&k, &["cluster", "remove-member", "9"]).contains("node 9 is not a member"));
    assert!(fails(
        &k,
        &[
            "cluster",
            "add-member",
            "--id",
            "0",
            "--peer-addr",
            "127.0.0.1:1"
        ]
    )
    .contains("non-zero id"));
}
