//! End-to-end tests of the commands that change objects — `apply`, `create`, `delete`, `scale`,
//! `set image`, `label`, `annotate`, `patch` and `edit` — running the real binary against a
//! 3-server cluster through a kubeconfig listing every server: every shared example manifest,
//! kubectl's output lines and exit codes, client-side apply keeping others' changes, the
//! finalizers each cascade mode leaves, and the error messages (bad manifests, unknown kinds,
//! missing objects, an unreachable cluster).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rkube_client::{Client, KindRef};
use rkube_proto::api;
use rkube_tests::api_cluster::ApiCluster;
use rkube_tests::process::{free_port, rkube_bin};
use serde_json::{json, Value};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples");

fn example(name: &str) -> String {
    format!("{EXAMPLES}/{name}")
}

/// What one `rkube` run printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The CLI of one cluster.
struct Rkube {
    kubeconfig: PathBuf,
}

impl Rkube {
    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut child = Command::new(rkube_bin())
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("RKUBECONFIG")
            .env_remove("KUBE_EDITOR")
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rkube");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for rkube");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }

    /// Run and expect success; the standard output.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "rkube {args:?} failed:\n{}{}",
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Run and expect exit code 1 with one line per error on stderr; the run.
    #[track_caller]
    fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(1),
            "rkube {args:?} should fail:\n{}{}",
            run.stdout,
            run.stderr
        );
        run
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn deployments() -> KindRef {
    KindRef::kind("apps/v1", "Deployment")
}

async fn get(client: &Client, kind: &KindRef, ns: &str, name: &str) -> Value {
    client
        .get(kind, ns, name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
}

async fn merge_patch(client: &Client, kind: &KindRef, ns: &str, name: &str, patch: Value) {
    client
        .patch(
            kind,
            ns,
            name,
            api::PatchType::Merge,
            &serde_json::to_vec(&patch).unwrap(),
            false,
        )
        .await
        .expect("patch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_every_example_then_leaves_them_unchanged_and_keeps_others_changes() {
    let c = ApiCluster::start(3).await;
    let k = Rkube {
        kubeconfig: c.kubeconfig(),
    };
    let client = c.client();

    let created = k.ok(&["apply", "-f", EXAMPLES]);
    assert_eq!(
        lines(&created),
        vec![
            "job.batch/batch-job created",
            "cronjob.batch/cron-batch-job created",
            "namespace/custom-namespace created",
            "pod/kubia-manual created",
            "pod/downward created",
            "endpoints/external-api created",
            "service/external-api created",
            "service/external-name created",
            "configmap/fortune-config created",
            "pod/fortune-configmap-volume created",
            "deployment.apps/kubia created",
            "pod/kubia-gpu created",
            "pod/kubia-liveness created",
            "pod/kubia-manual created",
            "replicationcontroller/kubia created",
            "replicaset.apps/kubia created",
            "service/kubia created",
            "service/kubia-nodeport created",
            "service/kubia-headless created",
            "persistentvolume/mongodb-pv created",
            "persistentvolumeclaim/mongodb-pvc created",
            "pod/mongodb created",
            "daemonset.apps/ssd-monitor created",
        ]
    );
    // The namespace of the manifest, the YAML 1.1 octal mode, and the last applied configuration.
    get(
        &client,
        &KindRef::kind("v1", "Pod"),
        "custom-namespace",
        "kubia-manual",
    )
    .await;
    let fortune = get(
        &client,
        &KindRef::kind("v1", "Pod"),
        "default",
        "fortune-configmap-volume",
    )
    .await;
    assert_eq!(
        fortune["spec"]["volumes"][1]["configMap"]["defaultMode"],
        json!(438)
    );
    let deploy = get(&client, &deployments(), "default", "kubia").await;
    let last: Value = serde_json::from_str(
        deploy["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("annotation"),
    )
    .unwrap();
    assert_eq!(
        last["metadata"],
        json!({"name": "kubia", "namespace": "default"})
    );
    assert_eq!(last["spec"]["replicas"], json!(3));

    // Applying again changes nothing.
    let again = k.ok(&["apply", "-f", EXAMPLES, "-R"]);
    let expected_unchanged: Vec<String> = lines(&created)
        .iter()
        .map(|l| l.replace(" created", " unchanged"))
        .collect();
    assert_eq!(lines(&again), expected_unchanged);

    // Someone else labels the deployment and sets a field the manifest does not have; the
    // manifest then changes replicas and the image and drops minReadySeconds.
    merge_patch(&client, &deployments(), "default", "kubia", json!({"metadata": {"labels": {"added-by": "someone"}}, "spec": {"revisionHistoryLimit": 4}})).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        std::fs::read_to_string(example("kubia-deployment-v3-with-readinesscheck.yaml")).unwrap();
    let changed = manifest
        .replace("replicas: 3", "replicas: 4")
        .replace("image: kubia:v3", "image: kubia:v4")
        .replace("  minReadySeconds: 10\n", "");
    assert_ne!(changed, manifest);
    let file = dir.path().join("kubia.yaml");
    std::fs::write(&file, &changed).unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        k.ok(&["apply", "-f", file]),
        "deployment.apps/kubia configured\n"
    );
    let deploy = get(&client, &deployments(), "default", "kubia").await;
    assert_eq!(deploy["spec"]["replicas"], json!(4));
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("kubia:v4")
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"],
        json!(1)
    );
    assert!(
        deploy["spec"]
            .get("minReadySeconds")
            .is_none_or(|m| m == &json!(0)),
        "{}",
        deploy["spec"]
    );
    assert_eq!(deploy["metadata"]["labels"]["added-by"], json!("someone"));
    assert_eq!(deploy["spec"]["revisionHistoryLimit"], json!(4));
    assert_eq!(
        k.ok(&["apply", "-f", file]),
        "deployment.apps/kubia unchanged\n"
    );

    // Stdin, JSON, and -n for objects without a namespace.
    k.ok(&["create", "namespace", "team"]);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-stdin"}, "data": {"a": "1"}});
    let run = k.run_with(
        &["apply", "-f", "-", "-n", "team"],
        &[],
        Some(&cm.to_string()),
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "configmap/from-stdin created\n"),
        "{}",
        run.stderr
    );
    get(
        &client,
        &KindRef::kind("v1", "ConfigMap"),
        "team",
        "from-stdin",
    )
    .await;
    assert_eq!(
        k.ok(&["apply", "-n", "team", "-f", &example("kubia-pod.yaml")]),
        "pod/kubia-manual created\n"
    );
    get(&client, &KindRef::kind("v1", "Pod"), "team", "kubia-manual").await;

    // A manifest namespace that contradicts -n is refused (the Namespace itself is cluster-scoped).
    let run = k.fails(&[
        "apply",
        "-f",
        &example("custom-namespace.yaml"),
        "-n",
        "team",
    ]);
    assert_eq!(run.stdout, "namespace/custom-namespace unchanged\n");
    assert_eq!(
        run.stderr,
        format!(
            "error: {} (document 2): the namespace from the provided object \"custom-namespace\" does not match the namespace \"team\". You must pass '--namespace=custom-namespace' to perform this operation.\n",
            example("custom-namespace.yaml")
        )
    );

    // An object created without apply gets the annotation on its first apply.
    k.ok(&["create", "configmap", "imperative", "--from-literal=a=1"]);
    let dir2 = tempfile::tempdir().unwrap();
    let cm_file = dir2.path().join("cm.yaml");
    std::fs::write(
        &cm_file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: imperative\ndata:\n  a: \"1\"\n",
    )
    .unwrap();
    let run = k.run(&["apply", "-f", cm_file.to_str().unwrap()]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "configmap/imperative configured\n")
    );
    assert!(
        run.stderr
            .contains("is missing the kubectl.kubernetes.io/last-applied-configuration annotation"),
        "{}",
        run.stderr
    );
    assert_eq!(
        k.ok(&["apply", "-f", cm_file.to_str().unwrap()]),
        "configmap/imperative unchanged\n"
    );
    // A key dropped from the manifest is deleted; one added by someone else stays.
    merge_patch(
        &client,
        &KindRef::kind("v1", "ConfigMap"),
        "default",
        "imperative",
        json!({"data": {"theirs": "x"}}),
    )
    .await;
    std::fs::write(
        &cm_file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: imperative\ndata:\n  b: \"2\"\n",
    )
    .unwrap();
    assert_eq!(
        k.ok(&["apply", "-f", cm_file.to_str().unwrap()]),
        "configmap/imperative configured\n"
    );
    let cm = get(
        &client,
        &KindRef::kind("v1", "ConfigMap"),
        "default",
        "imperative",
    )
    .await;
    assert_eq!(cm["data"], json!({"b": "2", "theirs": "x"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_files_and_generators() {
    let c = ApiCluster::start(3).await;
    let k = Rkube {
        kubeconfig: c.kubeconfig(),
    };
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();

    assert_eq!(
        k.ok(&["create", "namespace", "staging"]),
        "namespace/staging created\n"
    );
    assert_eq!(
        k.ok(&["create", "ns", "other"]),
        "namespace/other created\n"
    );

    // configmap: literals, files (named by the file or by key=), env files.
    assert_eq!(
        k.ok(&[
            "create",
            "configmap",
            "literals",
            "-n",
            "staging",
            "--from-literal=sleep-interval=25",
            "--from-literal=url=http://x/?a=b"
        ]),
        "configmap/literals created\n"
    );
    let cm = get(
        &client,
        &KindRef::kind("v1", "ConfigMap"),
        "staging",
        "literals",
    )
    .await;
    assert_eq!(
        cm["data"],
        json!({"sleep-interval": "25", "url": "http://x/?a=b"})
    );
    std::fs::write(path("nginx.conf"), "server {\n  listen 80;\n}\n").unwrap();
    std::fs::write(path("app.env"), "# settings\nMODE=prod\n\nLEVEL=debug\n").unwrap();
    k.ok(&[
        "create",
        "cm",
        "files",
        "--from-file",
        &path("nginx.conf"),
        &format!("--from-file=gzip.conf={}", path("nginx.conf")),
    ]);
    let cm = get(
        &client,
        &KindRef::kind("v1", "ConfigMap"),
        "default",
        "files",
    )
    .await;
    assert_eq!(
        cm["data"],
        json!({"nginx.conf": "server {\n  listen 80;\n}\n", "gzip.conf": "server {\n  listen 80;\n}\n"})
    );
    k.ok(&[
        "create",
        "configmap",
        "envs",
        &format!("--from-env-file={}", path("app.env")),
    ]);
    let cm = get(
        &client,
        &KindRef::kind("v1", "ConfigMap"),
        "default",
        "envs",
    )
    .await;
    assert_eq!(cm["data"], json!({"MODE": "prod", "LEVEL": "debug"}));

    // secret generic: the same sources, base64 in data.
    assert_eq!(
        k.ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
            &format!("--from-file=conf={}", path("nginx.conf"))
        ]),
        "secret/creds created\n"
    );
    let s = get(&client, &KindRef::kind("v1", "Secret"), "default", "creds").await;
    assert_eq!(s["data"]["user"], json!("YWRtaW4="));
    assert_eq!(s["data"]["conf"], json!("c2VydmVyIHsKICBsaXN0ZW4gODA7Cn0K"));
    k.ok(&[
        "create",
        "secret",
        "generic",
        "env-secret",
        &format!("--from-env-file={}", path("app.env")),
    ]);
    let s = get(
        &client,
        &KindRef::kind("v1", "Secret"),
        "default",
        "env-secret",
    )
    .await;
    assert_eq!(s["data"], json!({"MODE": "cHJvZA==", "LEVEL": "ZGVidWc="}));

    // --dry-run=client prints and creates nothing.
    assert_eq!(
        k.ok(&[
            "create",
            "configmap",
            "dry",
            "--from-literal=a=b",
            "--dry-run=client",
            "-o",
            "yaml"
        ]),
        "apiVersion: v1\ndata:\n  a: b\nkind: ConfigMap\nmetadata:\n  name: dry\n"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "secret",
            "generic",
            "dry",
            "--from-literal=a=b",
            "--dry-run=client"
        ]),
        "secret/dry created (dry run)\n"
    );
    assert!(matches!(
        client
            .get(&KindRef::kind("v1", "ConfigMap"), "default", "dry")
            .await,
        Err(rkube_client::Error::NotFound(_))
    ));
    assert!(matches!(
        client
            .get(&KindRef::kind("v1", "Secret"), "default", "dry")
            .await,
        Err(rkube_client::Error::NotFound(_))
    ));

    // Generator errors.
    let run = k.fails(&["create", "configmap", "x", "--from-literal=novalue"]);
    assert_eq!(
        run.stderr,
        "error: invalid literal source novalue, expected key=value\n"
    );
    let run = k.fails(&[
        "create",
        "configmap",
        "x",
        "--from-literal=a=1",
        "--from-literal=a=2",
    ]);
    assert_eq!(run.stderr, "error: cannot add key \"a\", another key by that name already exists in Data for ConfigMap \"x\"\n");
    let run = k.fails(&["create", "namespace", "staging"]);
    assert_eq!(
        run.stderr,
        "Error from server (AlreadyExists): namespaces \"staging\" already exists\n"
    );

    // create -f tries every object and fails at the end for those that exist.
    std::fs::write(
        path("two.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: literals\n  namespace: staging\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fresh\n",
    )
    .unwrap();
    let run = k.fails(&["create", "-f", &path("two.yaml")]);
    assert_eq!(run.stdout, "configmap/fresh created\n");
    assert_eq!(
        run.stderr,
        format!("error: {} (document 1): Error from server (AlreadyExists): configmaps \"literals\" already exists\n", path("two.yaml"))
    );
    // --save-config lets apply take over.
    assert_eq!(
        k.ok(&["create", "--save-config", "-f", &example("kubia-pod.yaml")]),
        "pod/kubia-manual created\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", &example("kubia-pod.yaml")]),
        "pod/kubia-manual unchanged\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_label_annotate_patch_set_image_and_edit() {
    let c = ApiCluster::start(3).await;
    let k = Rkube {
        kubeconfig: c.kubeconfig(),
    };
    let client = c.client();
    k.ok(&[
        "apply",
        "-f",
        &example("kubia-deployment-v3-with-readinesscheck.yaml"),
        "-f",
        &example("kubia-rc.yaml"),
        "-f",
        &example("kubia-pod.yaml"),
    ]);
    let deploy = || async { get(&client, &deployments(), "default", "kubia").await };

    // scale
    assert_eq!(
        k.ok(&["scale", "deployment", "kubia", "--replicas=5"]),
        "deployment.apps/kubia scaled\n"
    );
    assert_eq!(deploy().await["spec"]["replicas"], json!(5));
    assert_eq!(
        k.ok(&[
            "scale",
            "rc/kubia",
            "--replicas",
            "1",
            "--current-replicas=3"
        ]),
        "replicationcontroller/kubia scaled\n"
    );
    let run = k.fails(&[
        "scale",
        "deploy/kubia",
        "--replicas=2",
        "--current-replicas=4",
    ]);
    assert_eq!(run.stderr, "error: Expected replicas to be 4, was 5\n");
    assert_eq!(deploy().await["spec"]["replicas"], json!(5));
    let run = k.fails(&["scale", "pod", "kubia-manual", "--replicas=2"]);
    assert!(
        run.stderr
            .starts_with("error: cannot scale pods \"kubia-manual\""),
        "{}",
        run.stderr
    );
    let run = k.fails(&["scale", "deploy", "nope", "--replicas=2"]);
    assert_eq!(
        run.stderr,
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );

    // label
    assert_eq!(
        k.ok(&["label", "deployment", "kubia", "tier=web"]),
        "deployment.apps/kubia labeled\n"
    );
    let run = k.fails(&["label", "deployment", "kubia", "tier=db"]);
    assert_eq!(
        run.stderr,
        "error: 'tier' already has a value (web), and --overwrite is false\n"
    );
    assert_eq!(
        k.ok(&["label", "deploy/kubia", "tier=db", "--overwrite"]),
        "deployment.apps/kubia labeled\n"
    );
    assert_eq!(deploy().await["metadata"]["labels"]["tier"], json!("db"));
    assert_eq!(
        k.ok(&["label", "deploy/kubia", "tier=db"]),
        "deployment.apps/kubia not labeled\n"
    );
    assert_eq!(
        k.ok(&["label", "deploy/kubia", "tier-"]),
        "deployment.apps/kubia labeled\n"
    );
    assert!(deploy().await["metadata"]["labels"].get("tier").is_none());
    let rv = deploy().await["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let run = k.fails(&["label", "deploy/kubia", "stale=yes", "--resource-version=1"]);
    assert!(
        run.stderr.starts_with("Error from server (Conflict): "),
        "{}",
        run.stderr
    );
    assert_eq!(
        k.ok(&[
            "label",
            "deploy/kubia",
            "fresh=yes",
            &format!("--resource-version={rv}")
        ]),
        "deployment.apps/kubia labeled\n"
    );
    // By selector: every matching pod.
    for name in ["sel-a", "sel-b"] {
        client
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"group": "sel"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}), "default")
            .await
            .unwrap();
    }
    assert_eq!(
        k.ok(&["label", "pods", "-l", "group=sel", "checked=yes"]),
        "pod/sel-a labeled\npod/sel-b labeled\n"
    );
    let run = k.fails(&["label", "pods", "checked=yes"]);
    assert_eq!(
        run.stderr,
        "error: resource(s) were provided, but no name was specified\n"
    );

    // annotate
    assert_eq!(
        k.ok(&["annotate", "deployment", "kubia", "note=first version"]),
        "deployment.apps/kubia annotated\n"
    );
    let run = k.fails(&["annotate", "deployment", "kubia", "note=second"]);
    assert_eq!(
        run.stderr,
        "error: 'note' already has a value (first version), and --overwrite is false\n"
    );
    k.ok(&[
        "annotate",
        "deployment",
        "kubia",
        "note=second",
        "--overwrite",
    ]);
    assert_eq!(
        deploy().await["metadata"]["annotations"]["note"],
        json!("second")
    );
    k.ok(&["annotate", "deployment", "kubia", "note-"]);
    assert!(deploy().await["metadata"]["annotations"]
        .get("note")
        .is_none());

    // patch: strategic (the default) merges containers by name, merge, json, status.
    assert_eq!(
        k.ok(&["patch", "deployment", "kubia", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"nodejs","env":[{"name":"A","value":"1"}]}]}}}}"#]),
        "deployment.apps/kubia patched\n"
    );
    let d = deploy().await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("kubia:v3")
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(
        k.ok(&["patch", "deploy/kubia", "-p", r#"{"spec":{"replicas":5}}"#]),
        "deployment.apps/kubia patched (no change)\n"
    );
    assert_eq!(
        k.ok(&[
            "patch",
            "deploy/kubia",
            "--type",
            "merge",
            "-p",
            "metadata:\n  labels:\n    patched: merge\n"
        ]),
        "deployment.apps/kubia patched\n"
    );
    assert_eq!(
        k.ok(&[
            "patch",
            "deploy/kubia",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/minReadySeconds","value":7}]"#
        ]),
        "deployment.apps/kubia patched\n"
    );
    let d = deploy().await;
    assert_eq!(
        (
            d["metadata"]["labels"]["patched"].clone(),
            d["spec"]["minReadySeconds"].clone()
        ),
        (json!("merge"), json!(7))
    );
    let patch_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(patch_file.path(), r#"{"status":{"observedGeneration":42}}"#).unwrap();
    k.ok(&[
        "patch",
        "deploy/kubia",
        "--type=merge",
        "--subresource=status",
        "--patch-file",
        patch_file.path().to_str().unwrap(),
    ]);
    assert_eq!(deploy().await["status"]["observedGeneration"], json!(42));
    let run = k.fails(&[
        "patch",
        "deploy/kubia",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/nope"}]"#,
    ]);
    assert!(
        run.stderr.starts_with(
            "Error from server (BadRequest): json patch operation 0 (remove /spec/nope) failed"
        ),
        "{}",
        run.stderr
    );

    // set image
    assert_eq!(
        k.ok(&["set", "image", "deployment/kubia", "nodejs=kubia:v4"]),
        "deployment.apps/kubia image updated\n"
    );
    let d = deploy().await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("kubia:v4")
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(
        k.ok(&["set", "image", "pod", "kubia-manual", "kubia=kubia:3"]),
        "pod/kubia-manual image updated\n"
    );
    let run = k.fails(&["set", "image", "deployment/kubia", "nope=x"]);
    assert_eq!(
        run.stderr,
        "error: unable to find container named \"nope\"\n"
    );

    // edit with a non-interactive editor.
    let editor = [("EDITOR", "sed -i 's/replicas: 5/replicas: 6/'")];
    let run = k.run_with(&["edit", "deployment", "kubia"], &editor, None);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "deployment.apps/kubia edited\n"),
        "{}",
        run.stderr
    );
    assert_eq!(deploy().await["spec"]["replicas"], json!(6));
    // KUBE_EDITOR wins over EDITOR; an editor that changes nothing cancels.
    let run = k.run_with(
        &["edit", "deploy/kubia"],
        &[("EDITOR", "false"), ("KUBE_EDITOR", "true")],
        None,
    );
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(0), "", "Edit cancelled, no changes made.\n")
    );
    // Invalid YAML: the error names the kept file.
    let run = k.run_with(
        &["edit", "deploy/kubia"],
        &[("EDITOR", "printf 'spec:\\n replicas: [\\n' >>")],
        None,
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.starts_with("error: error parsing /"),
        "{}",
        run.stderr
    );
    let kept = run
        .stderr
        .split("A copy of your changes has been stored to \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the kept file is named");
    assert!(
        run.stderr
            .starts_with(&format!("error: error parsing {kept} (document 1): ")),
        "{}",
        run.stderr
    );
    assert!(Path::new(kept).exists());
    std::fs::remove_file(kept).unwrap();
    // Someone else changes the object while it is being edited: Conflict, changes kept.
    let sneaky = format!(
        "{} --kubeconfig {} label deploy kubia sneaky=yes >/dev/null && sed -i 's/replicas: 6/replicas: 7/'",
        rkube_bin().display(),
        k.kubeconfig.display()
    );
    let run = k.run_with(&["edit", "deploy/kubia"], &[("EDITOR", &sneaky)], None);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.starts_with("Error from server (Conflict): Operation cannot be fulfilled on deployments.apps \"kubia\""),
        "{}",
        run.stderr
    );
    let kept = run
        .stderr
        .split("stored to \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the kept file is named");
    assert!(std::fs::read_to_string(kept)
        .unwrap()
        .contains("replicas: 7"));
    std::fs::remove_file(kept).unwrap();
    assert_eq!(deploy().await["spec"]["replicas"], json!(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_in_every_form_and_cascade_mode() {
    let c = ApiCluster::start(3).await;
    let k = Rkube {
        kubeconfig: c.kubeconfig(),
    };
    let client = c.client();
    let deployment = |name: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    };
    for name in ["bg", "fg", "orphan", "false", "default"] {
        client.create(&deployment(name), "default").await.unwrap();
    }
    let finalizers = |name: &'static str| {
        let client = client.clone();
        async move {
            match client.get(&deployments(), "default", name).await {
                Ok(d) => Some(d["metadata"]["finalizers"].clone()),
                Err(rkube_client::Error::NotFound(_)) => None,
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(
        k.ok(&["delete", "deployment", "bg", "--cascade=background"]),
        "deployment.apps \"bg\" deleted\n"
    );
    assert_eq!(finalizers("bg").await, None);
    assert_eq!(
        k.ok(&["delete", "deploy/fg", "--cascade=foreground"]),
        "deployment.apps \"fg\" deleted\n"
    );
    assert_eq!(finalizers("fg").await, Some(json!(["foregroundDeletion"])));
    assert_eq!(
        k.ok(&["delete", "deployments", "orphan", "--cascade=orphan"]),
        "deployment.apps \"orphan\" deleted\n"
    );
    assert_eq!(finalizers("orphan").await, Some(json!(["orphan"])));
    k.ok(&["delete", "deploy", "false", "--cascade=false"]);
    assert_eq!(finalizers("false").await, Some(json!(["orphan"])));
    k.ok(&["delete", "deploy", "default", "--wait"]);
    assert_eq!(finalizers("default").await, None);
    let run = k.fails(&["delete", "deploy", "x", "--cascade=sideways"]);
    assert_eq!(run.stderr, "error: invalid cascade value (sideways). Must be \"background\", \"foreground\", or \"orphan\".\n");

    // Missing objects: NotFound after trying the others, or nothing with --ignore-not-found.
    k.ok(&[
        "apply",
        "-f",
        &example("kubia-pod.yaml"),
        "-f",
        &example("kubia-gpu-pod.yaml"),
    ]);
    let run = k.fails(&["delete", "pod", "nope", "kubia-gpu"]);
    assert_eq!(run.stdout, "pod \"kubia-gpu\" deleted\n");
    assert_eq!(
        run.stderr,
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    assert_eq!(k.ok(&["delete", "pod", "nope", "--ignore-not-found"]), "");
    let run = k.run(&["delete", "pod/kubia-manual", "--force", "--grace-period=0"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "pod \"kubia-manual\" deleted\n")
    );
    assert!(
        run.stderr
            .starts_with("Warning: Immediate deletion does not wait"),
        "{}",
        run.stderr
    );

    // From manifests, by selector, --all.
    k.ok(&["apply", "-f", &example("kubia-services.yaml")]);
    assert_eq!(
        k.ok(&["delete", "-f", &example("kubia-services.yaml")]),
        "service \"kubia\" deleted\nservice \"kubia-nodeport\" deleted\nservice \"kubia-headless\" deleted\n"
    );
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        client
            .create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": app}}}), "default")
            .await
            .unwrap();
    }
    assert_eq!(
        k.ok(&["delete", "cm", "-l", "app=x"]),
        "configmap \"a\" deleted\nconfigmap \"b\" deleted\n"
    );
    assert_eq!(
        k.ok(&["delete", "cm", "-l", "app=none"]),
        "No resources found\n"
    );
    assert_eq!(
        k.ok(&["delete", "configmaps", "--all"]),
        "configmap \"c\" deleted\n"
    );
    let run = k.fails(&["delete", "pods"]);
    assert_eq!(
        run.stderr,
        "error: resource(s) were provided, but no name was specified\n"
    );
    let run = k.fails(&["delete"]);
    assert_eq!(
        run.stderr,
        "error: You must provide one or more resources by argument or filename.\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_manifest_the_object_or_the_servers() {
    let c = ApiCluster::start(3).await;
    let k = Rkube {
        kubeconfig: c.kubeconfig(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();

    // A YAML error names the file and the document; nothing is applied.
    std::fs::write(
        path("broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n labels: x\n",
    )
    .unwrap();
    let run = k.fails(&["apply", "-f", &path("broken.yaml")]);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "error: error parsing {} (document 2): did not find expected key at line 10 column 2, while parsing a block mapping at line 6 column 1\n",
            path("broken.yaml")
        )
    );
    let run = k.fails(&["create", "-f", &path("broken.yaml")]);
    assert!(
        run.stderr.starts_with(&format!(
            "error: error parsing {} (document 2)",
            path("broken.yaml")
        )),
        "{}",
        run.stderr
    );

    // A server validation error and an unknown kind name the document; the others are applied.
    std::fs::write(
        path("mixed.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: empty\nspec:\n  containers: []\n---\napiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: f\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n",
    )
    .unwrap();
    let run = k.fails(&["apply", "-f", &path("mixed.yaml")]);
    assert_eq!(run.stdout, "configmap/fine created\n");
    let errors = lines(&run.stderr);
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    assert!(
        errors[0].starts_with(&format!(
            "error: {} (document 1): Error from server (Invalid): Pod \"empty\" is invalid: ",
            path("mixed.yaml")
        )),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors[1],
        format!(
            "error: {} (document 2): no matches for kind \"Frobnicator\" in version \"v1\"",
            path("mixed.yaml")
        )
    );
    let run = k.fails(&["delete", "frobs", "x"]);
    assert_eq!(
        run.stderr,
        "error: the server doesn't have a resource type \"frobs\"\n"
    );
    let run = k.fails(&["apply", "-f", &path("nothing-here.yaml")]);
    assert_eq!(
        run.stderr,
        format!(
            "error: the path \"{}\" does not exist\n",
            path("nothing-here.yaml")
        )
    );

    // Missing objects.
    for args in [
        vec!["delete", "pod", "x"],
        vec!["label", "pod", "x", "a=b"],
        vec!["annotate", "pod/x", "a=b"],
        vec!["patch", "pod", "x", "-p", "{}"],
        vec!["edit", "pod", "x"],
        vec!["set", "image", "pod/x", "c=i"],
    ] {
        let run = k.fails(&args);
        assert_eq!(
            run.stderr, "Error from server (NotFound): pods \"x\" not found\n",
            "{args:?}"
        );
    }

    // An unreachable cluster: the error names every address tried.
    let (a, b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let config = c.client_config();
    let dead = dir.path().join("dead.kubeconfig");
    rkube_apiserver::server::write_kubeconfig(
        &dead,
        &a,
        &[format!("https://{b}")],
        &config.ca_pem,
        config.token.as_deref().unwrap_or(""),
    )
    .unwrap();
    let k_dead = Rkube { kubeconfig: dead };
    for args in [
        vec!["apply", "-f", &example("kubia-pod.yaml")],
        vec!["delete", "pod", "x"],
        vec!["create", "namespace", "n"],
    ] {
        let run = k_dead.fails(&args);
        assert!(
            run.stderr.contains("Unable to connect to the server"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&a) && run.stderr.contains(&b),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(lines(&run.stderr).len(), 1, "{}", run.stderr);
    }
}
