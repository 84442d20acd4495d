//! End-to-end tests of `rkube get`: the real binary against a 3-server cluster, through a
//! kubeconfig listing every server. Tables, wide, JSON, YAML, names, JSONPath, selectors, -A,
//! several kinds, the NotFound / empty / unknown-kind messages and exit codes, and `get -w`
//! streaming on while the server it is connected to is killed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkube_client::Client;
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
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
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

/// The whitespace-separated words of each line.
fn words(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

fn pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "luksa/kubia"}]}})
}

fn config_map(name: &str, namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace}, "data": {"k": "v"}})
}

async fn create(client: &Client, obj: Value, namespace: &str) {
    client.create(&obj, namespace).await.expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_kubectl_tables_and_formats() {
    let c = ApiCluster::start(3).await;
    let k = c.kubeconfig();
    let client = c.client();

    // An empty list is not an error: kubectl's message goes to stderr.
    let empty = rkube(&k, &["get", "pods"]);
    assert_eq!((empty.code, empty.stdout.as_str()), (Some(0), ""));
    assert_eq!(empty.stderr, "No resources found in default namespace.\n");

    for (name, app) in [("kubia-1", "kubia"), ("kubia-2", "kubia"), ("other", "api")] {
        create(&client, pod(name, app), "default").await;
    }
    create(&client, config_map("app-config", "default"), "default").await;
    create(
        &client,
        config_map("sys-config", "kube-system"),
        "kube-system",
    )
    .await;

    let table = ok(&k, &["get", "po"]);
    let rows = words(&table);
    assert_eq!(
        rows[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["kubia-1", "kubia-2", "other"], "{table}");
    assert!(
        rows[1..].iter().all(|r| r[1] == "0/1" && r[3] == "0"),
        "{table}"
    );
    // Columns line up: every row's READY starts where the header's does.
    let ready_at = table.lines().next().unwrap().find("READY").unwrap();
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| &l[ready_at..ready_at + 3] == "0/1"),
        "{table}"
    );

    let wide = ok(&k, &["get", "pods", "-o", "wide"]);
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .ends_with("AGE   IP       NODE     NOMINATED NODE   READINESS GATES"),
        "{wide}"
    );

    let json_text = ok(&k, &["get", "po", "kubia-1", "-o", "json"]);
    let obj: Value = serde_json::from_str(&json_text).expect("JSON output");
    assert_eq!(
        (obj["kind"].as_str(), obj["metadata"]["name"].as_str()),
        (Some("Pod"), Some("kubia-1"))
    );
    let list: Value =
        serde_json::from_str(&ok(&k, &["get", "po", "-o", "json"])).expect("JSON list");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3));
    let yaml = ok(&k, &["get", "cm", "app-config", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: v1\ndata:\n  k: v\nkind: ConfigMap\n"),
        "{yaml}"
    );

    assert_eq!(
        ok(&k, &["get", "po", "-o", "name"]),
        "pod/kubia-1\npod/kubia-2\npod/other\n"
    );
    assert_eq!(
        ok(
            &k,
            &["get", "po", "-o", "jsonpath={.items[*].metadata.name}"]
        ),
        "kubia-1 kubia-2 other"
    );
    assert_eq!(
        ok(
            &k,
            &[
                "get",
                "po",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.app}{"\n"}{end}"#
            ]
        ),
        "kubia-1=kubia\nkubia-2=kubia\nother=api\n"
    );
    assert_eq!(
        ok(
            &k,
            &[
                "get",
                "po",
                "other",
                "-o",
                "jsonpath={.spec.containers[0].image}"
            ]
        ),
        "luksa/kubia"
    );

    assert_eq!(
        ok(&k, &["get", "po", "-l", "app=kubia", "-o", "name"]),
        "pod/kubia-1\npod/kubia-2\n"
    );
    assert_eq!(
        ok(&k, &["get", "po", "-l", "app!=kubia", "-o", "name"]),
        "pod/other\n"
    );
    assert_eq!(
        ok(
            &k,
            &[
                "get",
                "po",
                "--field-selector",
                "metadata.name=other",
                "-o",
                "name"
            ]
        ),
        "pod/other\n"
    );
    assert_eq!(
        ok(
            &k,
            &[
                "get",
                "po",
                "--sort-by",
                "{.metadata.labels.app}",
                "--no-headers",
                "-o",
                "custom-columns=N:.metadata.name"
            ]
        ),
        "other\nkubia-1\nkubia-2\n"
    );

    let labels_text = ok(&k, &["get", "po", "-L", "app", "--show-labels"]);
    let labels = words(&labels_text);
    assert_eq!(labels[0][5..], ["APP", "LABELS"]);
    assert_eq!(labels[3][5..], ["api", "app=api"]);

    let all_ns_text = ok(&k, &["get", "cm", "-A"]);
    let all_ns = words(&all_ns_text);
    assert_eq!(all_ns[0], ["NAMESPACE", "NAME", "DATA", "AGE"]);
    assert!(
        all_ns
            .iter()
            .any(|r| r[..3] == ["kube-system", "sys-config", "1"]),
        "{all_ns:?}"
    );
    assert!(
        all_ns
            .iter()
            .any(|r| r[..3] == ["default", "app-config", "1"]),
        "{all_ns:?}"
    );
    assert_eq!(
        ok(&k, &["get", "cm", "-n", "kube-system", "-o", "name"]),
        "configmap/sys-config\n"
    );

    // Several kinds: a table each, names with their kind, a blank line between.
    let both = ok(&k, &["get", "po,cm", "-l", "app=kubia"]);
    assert_eq!(
        words(&both)
            .iter()
            .map(|r| r.first().copied().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["NAME", "pod/kubia-1", "pod/kubia-2"]
    );
    let pairs = ok(&k, &["get", "pod/other", "configmap/app-config"]);
    let pair_rows = words(&pairs);
    assert_eq!(
        (pair_rows[1][0], pair_rows[2].len(), pair_rows[4][0]),
        ("pod/other", 0, "configmap/app-config"),
        "{pairs}"
    );
    let all = ok(&k, &["get", "all"]);
    assert!(all.lines().any(|l| l.starts_with("pod/kubia-1 ")), "{all}");

    // The built-in namespaces, once bootstrapping has created them.
    let namespaces = wait_until(Duration::from_secs(30), "the built-in namespaces", || {
        let text = ok(&k, &["get", "ns"]);
        let found = ["default", "kube-node-lease", "kube-system"]
            .iter()
            .all(|ns| words(&text).iter().any(|r| r[0] == *ns && r[1] == "Active"));
        std::future::ready(found.then_some(text))
    })
    .await;
    assert_eq!(words(&namespaces)[0], ["NAME", "STATUS", "AGE"]);

    // Errors: kubectl's messages and exit code 1.
    let missing = rkube(&k, &["get", "po", "missing"]);
    assert_eq!((missing.code, missing.stdout.as_str()), (Some(1), ""));
    assert_eq!(
        missing.stderr,
        "Error from server (NotFound): pods \"missing\" not found\n"
    );
    let some = rkube(&k, &["get", "po", "kubia-1", "missing", "-o", "name"]);
    assert_eq!(some.code, Some(1));
    assert_eq!(some.stdout, "pod/kubia-1\n");
    assert_eq!(
        some.stderr,
        "Error from server (NotFound): pods \"missing\" not found\n"
    );
    let ignored = rkube(&k, &["get", "po", "missing", "--ignore-not-found"]);
    assert_eq!(
        (
            ignored.code,
            ignored.stdout.as_str(),
            ignored.stderr.as_str()
        ),
        (Some(0), "", "")
    );
    let deployments = rkube(&k, &["get", "deploy"]);
    assert_eq!(
        (deployments.code, deployments.stdout.as_str()),
        (Some(0), "")
    );
    assert_eq!(
        deployments.stderr,
        "No resources found in default namespace.\n"
    );
    let nodes = rkube(&k, &["get", "nodes"]);
    assert_eq!(
        (nodes.code, nodes.stderr.as_str()),
        (Some(0), "No resources found\n")
    );
    let unknown = rkube(&k, &["get", "frobs"]);
    assert_eq!(unknown.code, Some(1));
    assert_eq!(
        unknown.stderr,
        "error: the server doesn't have a resource type \"frobs\"\n"
    );
    let bad_format = rkube(&k, &["get", "po", "-o", "xml"]);
    assert_eq!(bad_format.code, Some(1));
    assert!(bad_format
        .stderr
        .contains("unable to match a printer suitable for the output format \"xml\""));
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_keeps_streaming_when_its_server_is_killed() {
    let mut c = ApiCluster::start(3).await;
    let k = c.kubeconfig();
    let mut child = Command::new(rkube_bin())
        .args(["get", "cm", "-w", "--kubeconfig"])
        .arg(&k)
        .env_remove("RKUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rkube get -w");
    let stdout = child.stdout.take().expect("stdout");
    let mut child = KillOnDrop(child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    let saw = |name: &'static str| {
        let lines = lines.clone();
        move || {
            let found = lines
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.starts_with(&format!("{name} ")));
            std::future::ready(found.then_some(()))
        }
    };

    // A long first name, so that the later, shorter row shows the remembered column widths.
    c.client()
        .create(&config_map("first-configmap", "default"), "default")
        .await
        .expect("create");
    wait_until(
        Duration::from_secs(30),
        "the first ConfigMap's line",
        saw("first-configmap"),
    )
    .await;

    // Kill the server the CLI is connected to (its kubeconfig lists server 1 first).
    c.kill(1);
    let survivor = c.client_to(2);
    wait_until(
        Duration::from_secs(60),
        "a write after the failover",
        || {
            let survivor = survivor.clone();
            async move {
                survivor
                    .create(&config_map("second", "default"), "default")
                    .await
                    .ok()
                    .map(|_| ())
            }
        },
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "the second ConfigMap's line after the failover",
        saw("second"),
    )
    .await;

    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "get -w must still be running"
    );
    let lines = lines.lock().expect("lines").clone();
    assert_eq!(words(&lines[0]), [["NAME", "DATA", "AGE"]], "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "one header: {lines:?}"
    );
    // Later rows keep the column widths of the rows before them.
    let data_at = lines[0].find("DATA").expect("DATA column");
    assert!(
        lines[1..].iter().all(|l| &l[data_at..data_at + 1] == "1"),
        "{lines:?}"
    );
}
