//! The agent's configuration sources and volumes on the process runtime against an in-process
//! 1-server cluster with its controllers: ConfigMap and Secret values in env (`valueFrom`,
//! `envFrom` with a prefix) and in files (configMap, secret, downwardAPI volumes, emptyDir,
//! subPath, readOnly), resourceFieldRef env (the `downward-env.yaml` example), downwardAPI
//! files following a label patch, ConfigMap volumes following an update, a pod waiting with
//! CreateContainerConfigError (or a FailedMount-style message) until its ConfigMap exists, a
//! claim bound to a hostPath PersistentVolume shared by two pods, and the volume parts of the
//! `fortune-configmap-volume.yaml` example with commands added (its images have none, and the
//! process runtime has no image entrypoint).
//!
//! Mount paths are under each test's temporary directory: the agent creates missing mount
//! points on the host, and the containers' bind mounts live in their own mount namespaces (the
//! agent runs as root here), so the host's directories stay empty.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Client, KindRef};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "rkube_agent=debug,warn".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn start(node: &str) -> (ApiCluster, Client, Agent) {
    init_tracing();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = Agent::start_with(client.clone(), node, |o| {
        o.proxy = false;
        o.cluster_dns = None;
    });
    (cluster, client, agent)
}

fn pod(name: &str, node: &str, containers: Value, volumes: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "demo"}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
            "volumes": volumes,
        }
    })
}

async fn get_pod(client: &Client, name: &str) -> Option<Pod> {
    client.get_typed::<Pod>("default", name).await.ok()
}

async fn wait_pod(client: &Client, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    wait_until(TIMEOUT, &format!("pod {name}: {what}"), || {
        let client = client.clone();
        let check = &check;
        async move { get_pod(&client, name).await.filter(|p| check(p)) }
    })
    .await
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The waiting reason and message of container `i`.
fn waiting(p: &Pod, i: usize) -> Option<(String, String)> {
    let w = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .get(i)?
        .state
        .as_ref()?
        .waiting
        .clone()?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

/// Wait for a line of `log` that starts with `key=` and satisfies `check`; returns the value.
async fn logged_where(path: &Path, key: &str, check: impl Fn(&str) -> bool) -> String {
    wait_until(TIMEOUT, &format!("{key}= in {}", path.display()), || {
        let check = &check;
        async move {
            let log = rkube_tests::agent::read_log(path).ok()?;
            log.lines()
                .filter_map(|l| l.strip_prefix(&format!("{key}=")))
                .find(|v| check(v))
                .map(str::to_string)
        }
    })
    .await
}

async fn logged(path: &Path, key: &str) -> String {
    logged_where(path, key, |_| true).await
}

async fn delete_pod(client: &Client, name: &str) {
    client
        .delete(&KindRef::of::<Pod>(), "default", name, Default::default())
        .await
        .unwrap();
    wait_until(TIMEOUT, &format!("pod {name} gone"), || {
        let client = client.clone();
        async move { get_pod(&client, name).await.is_none().then_some(()) }
    })
    .await;
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_secrets_and_downward_api_reach_env_and_files() {
    const NODE: &str = "config-1";
    let (_cluster, client, agent) = start(NODE).await;
    let root = tempfile::tempdir().unwrap();
    let m = |name: &str| path_str(&root.path().join(name));
    client
        .create(
            &json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "app-config"},
                "data": {"greeting": "hello", "app.conf": "x=1", "sleep-interval": "25"},
            }),
            "default",
        )
        .await
        .unwrap();
    client
        .create(
            &json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db"},
                "stringData": {"password": "hunter2", "user": "admin"},
            }),
            "default",
        )
        .await
        .unwrap();
    let script = format!(
        "echo greeting=$GREETING; echo password=$PASSWORD; echo prefixed=$CONF_greeting; \
         echo cpu=$CPU_M; echo mem=$MEM_KI; \
         echo file=$(cat {cfg}/app.conf); echo secret=$(cat {sec}/pw); \
         echo secret_mode=$(stat -L -c %a {sec}/pw); echo user=$(ls {sec}); \
         echo name=$(cat {dw}/name); \
         touch {cfg}/new 2>/dev/null && echo cfg_writable=yes || echo cfg_writable=no; \
         echo scratch > {scratch}/f && echo scratch=$(cat {scratch}/f); \
         echo cache > {cache}/f && echo cache=$(cat {cache}/f); \
         while true; do echo labels=$(tr '\\n' ' ' < {dw}/labels); \
         echo conf=$(cat {cfg}/app.conf); sleep 0.2; done",
        cfg = m("config"),
        sec = m("secret"),
        dw = m("downward"),
        scratch = m("scratch"),
        cache = m("cache"),
    );
    let containers = json!([{
        "name": "main", "image": "busybox",
        "command": ["sh", "-c", script],
        "resources": {"requests": {"cpu": "15m", "memory": "100Ki"}, "limits": {"cpu": "100m", "memory": "4Mi"}},
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "MEM_KI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Ki"}}},
        ],
        "envFrom": [{"prefix": "CONF_", "configMapRef": {"name": "app-config"}}],
        "volumeMounts": [
            {"name": "config", "mountPath": m("config")},
            {"name": "secret", "mountPath": m("secret")},
            {"name": "downward", "mountPath": m("downward")},
            {"name": "scratch", "mountPath": m("scratch")},
            {"name": "cache", "mountPath": m("cache")},
        ],
    }]);
    let volumes = json!([
        {"name": "config", "configMap": {"name": "app-config"}},
        {"name": "secret", "secret": {"secretName": "db", "items": [{"key": "password", "path": "pw", "mode": 0o400}]}},
        {"name": "downward", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        ]}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]);
    client
        .create(&pod("configured", NODE, containers, volumes), "default")
        .await
        .unwrap();
    let p = wait_pod(&client, "configured", "running", |p| phase(p) == "Running").await;
    let log = agent.pod_dir(&p).join("main.log");
    assert_eq!(logged(&log, "greeting").await, "hello");
    assert_eq!(logged(&log, "password").await, "hunter2");
    assert_eq!(logged(&log, "prefixed").await, "hello");
    assert_eq!(logged(&log, "cpu").await, "100");
    assert_eq!(logged(&log, "mem").await, "4096");
    assert_eq!(logged(&log, "file").await, "x=1");
    assert_eq!(logged(&log, "secret").await, "hunter2");
    assert_eq!(logged(&log, "secret_mode").await, "400");
    assert_eq!(logged(&log, "user").await, "pw", "only the listed items");
    assert_eq!(logged(&log, "name").await, "configured");
    assert_eq!(logged(&log, "cfg_writable").await, "no");
    assert_eq!(logged(&log, "scratch").await, "scratch");
    assert_eq!(logged(&log, "cache").await, "cache");
    assert_eq!(logged(&log, "labels").await, "app=\"demo\"");
    // The volumes are the pod's: under its directory, and not visible on the host's mount
    // points (those were created empty).
    let volumes_dir = agent.pod_dir(&p).join("volumes");
    assert!(volumes_dir.join("scratch/f").is_file());
    // Secret volumes and `medium: Memory` emptyDirs are memory-backed: a tmpfs of their own
    // (or a directory in /dev/shm).
    for name in ["secret", "cache"] {
        let dir = volumes_dir.join(name);
        let own_device = std::fs::metadata(&dir).unwrap().dev()
            != std::fs::metadata(&volumes_dir).unwrap().dev();
        let in_shm = std::fs::read_link(&dir).is_ok_and(|t| t.starts_with("/dev/shm"));
        assert!(
            own_device || in_shm,
            "{} is not memory-backed",
            dir.display()
        );
    }
    assert!(volumes_dir.join("cache/f").is_file());
    assert!(root.path().join("config").is_dir());
    assert_eq!(
        std::fs::read_dir(root.path().join("config"))
            .unwrap()
            .count(),
        0
    );

    // A label patch reaches the downwardAPI file; a ConfigMap update reaches the configMap
    // volume (re-read periodically).
    client
        .patch(
            &KindRef::of::<Pod>(),
            "default",
            "configured",
            rkube_proto::api::PatchType::Merge,
            br#"{"metadata":{"labels":{"tier":"backend"}}}"#,
            false,
        )
        .await
        .unwrap();
    logged_where(&log, "labels", |v| v == "app=\"demo\" tier=\"backend\"").await;
    let mut cm = client
        .get(&KindRef::resource("configmaps"), "default", "app-config")
        .await
        .unwrap();
    cm["data"]["app.conf"] = json!("x=2");
    client.update(&cm).await.unwrap();
    logged_where(&log, "conf", |v| v == "x=2").await;

    // Deleting the pod removes its volumes (emptyDir with it).
    delete_pod(&client, "configured").await;
    wait_until(TIMEOUT, "the pod directory removed", || {
        let dir = volumes_dir.clone();
        async move { (!dir.exists()).then_some(()) }
    })
    .await;

    // downward-env.yaml, with a command that prints its variables.
    let downward: Value = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "downward", "namespace": "default"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", "env | grep ^E_ | sort; exec sleep 1000"],
            "resources": {"requests": {"cpu": "15m", "memory": "100Ki"}, "limits": {"cpu": "100m", "memory": "4Mi"}},
            "env": [
                {"name": "E_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "E_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "E_REQ_CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "E_LIMIT_MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Ki"}}},
            ],
        }]},
    });
    client.create(&downward, "default").await.unwrap();
    let p = wait_pod(&client, "downward", "running", |p| phase(p) == "Running").await;
    let log = agent.pod_dir(&p).join("main.log");
    assert_eq!(logged(&log, "E_REQ_CPU").await, "15");
    assert_eq!(logged(&log, "E_LIMIT_MEM").await, "4096");
    assert_eq!(logged(&log, "E_POD_NAMESPACE").await, "default");
    let ip = p.status.unwrap().pod_ip.unwrap();
    assert_eq!(logged(&log, "E_POD_IP").await, ip);
    delete_pod(&client, "downward").await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_wait_for_missing_config_maps_and_start_once_they_exist() {
    const NODE: &str = "config-2";
    let (_cluster, client, agent) = start(NODE).await;
    let root = tempfile::tempdir().unwrap();
    let env_pod = pod(
        "env-late",
        NODE,
        json!([{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", "echo value=$VALUE; exec sleep 1000"],
            "env": [{"name": "VALUE", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "k"}}}],
        }]),
        json!([]),
    );
    client.create(&env_pod, "default").await.unwrap();
    let mount = path_str(&root.path().join("cfg"));
    let volume_pod = pod(
        "volume-late",
        NODE,
        json!([{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", format!("echo value=$(cat {mount}/k); exec sleep 1000")],
            "volumeMounts": [{"name": "cfg", "mountPath": mount}],
        }]),
        json!([{"name": "cfg", "configMap": {"name": "late-volume"}}]),
    );
    client.create(&volume_pod, "default").await.unwrap();
    let p = wait_pod(&client, "env-late", "CreateContainerConfigError", |p| {
        waiting(p, 0).is_some_and(|(r, _)| r == "CreateContainerConfigError")
    })
    .await;
    let (_, message) = waiting(&p, 0).unwrap();
    assert!(
        message.contains("configmap \"late\" not found"),
        "{message}"
    );
    let p = wait_pod(&client, "volume-late", "a mount failure message", |p| {
        waiting(p, 0).is_some_and(|(_, m)| m.contains("MountVolume.SetUp failed"))
    })
    .await;
    let (reason, message) = waiting(&p, 0).unwrap();
    assert_eq!(reason, "ContainerCreating");
    assert!(
        message.contains("for volume \"cfg\" : configmap \"late-volume\" not found"),
        "{message}"
    );

    // A ConfigMap without the key: the message names the key.
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}, "data": {"other": "x"}}),
            "default",
        )
        .await
        .unwrap();
    wait_pod(&client, "env-late", "a missing key", |p| {
        waiting(p, 0)
            .is_some_and(|(_, m)| m.contains("couldn't find key k in ConfigMap default/late"))
    })
    .await;
    let mut cm = client
        .get(&KindRef::resource("configmaps"), "default", "late")
        .await
        .unwrap();
    cm["data"]["k"] = json!("finally");
    client.update(&cm).await.unwrap();
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late-volume"}, "data": {"k": "mounted"}}),
            "default",
        )
        .await
        .unwrap();
    let p = wait_pod(&client, "env-late", "running", |p| phase(p) == "Running").await;
    assert_eq!(
        logged(&agent.pod_dir(&p).join("main.log"), "value").await,
        "finally"
    );
    let p = wait_pod(&client, "volume-late", "running", |p| phase(p) == "Running").await;
    assert_eq!(
        logged(&agent.pod_dir(&p).join("main.log"), "value").await,
        "mounted"
    );
    delete_pod(&client, "env-late").await;
    delete_pod(&client, "volume-late").await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bound_to_host_path_volumes_are_shared_between_pods() {
    const NODE: &str = "config-3";
    let (_cluster, client, agent) = start(NODE).await;
    let root = tempfile::tempdir().unwrap();
    let pv_path: PathBuf = root.path().join("pv");
    client
        .create(
            &json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "data-pv"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "manual",
                    "hostPath": {"path": path_str(&pv_path), "type": "DirectoryOrCreate"},
                },
            }),
            "",
        )
        .await
        .unwrap();
    client
        .create(
            &json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "manual",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }),
            "default",
        )
        .await
        .unwrap();
    let mount = path_str(&root.path().join("mnt"));
    let writer = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "writer", "namespace": "default"},
        "spec": {
            "nodeName": NODE, "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", format!("echo from-writer > {mount}/shared.txt")],
                "volumeMounts": [{"name": "data", "mountPath": mount}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    });
    client.create(&writer, "default").await.unwrap();
    wait_pod(&client, "writer", "succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(
        std::fs::read_to_string(pv_path.join("shared.txt")).unwrap(),
        "from-writer\n"
    );
    let reader = pod(
        "reader",
        NODE,
        json!([{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", format!("echo read=$(cat {mount}/shared.txt); exec sleep 1000")],
            "volumeMounts": [{"name": "data", "mountPath": mount, "readOnly": true}],
        }]),
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
    );
    client.create(&reader, "default").await.unwrap();
    let p = wait_pod(&client, "reader", "running", |p| phase(p) == "Running").await;
    assert_eq!(
        logged(&agent.pod_dir(&p).join("main.log"), "read").await,
        "from-writer"
    );

    // A claim that does not bind keeps its pod waiting with the reason.
    client
        .create(
            &json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "unbound"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "nothing-serves-this",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }),
            "default",
        )
        .await
        .unwrap();
    let waiter = pod(
        "waiter",
        NODE,
        json!([{
            "name": "main", "image": "busybox", "command": ["true"],
            "volumeMounts": [{"name": "data", "mountPath": mount}],
        }]),
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "unbound"}}]),
    );
    client.create(&waiter, "default").await.unwrap();
    wait_pod(&client, "waiter", "an unbound claim message", |p| {
        waiting(p, 0)
            .is_some_and(|(_, m)| m.contains("persistentvolumeclaim \"unbound\" is not bound"))
    })
    .await;
    for name in ["writer", "reader", "waiter"] {
        delete_pod(&client, name).await;
    }
    assert!(
        pv_path.join("shared.txt").is_file(),
        "a claim's data outlives its pods"
    );
    agent.stop().await;
}

/// `fortune-configmap-volume.yaml` with commands (its images `fortuneloop` and `nginx` have
/// entrypoints the process runtime cannot run): the generator writes into the shared
/// emptyDir, the "web server" reads it read-only and sees the ConfigMap item at its subPath.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fortune_example_volumes_work_with_commands() {
    const NODE: &str = "config-4";
    let (_cluster, client, agent) = start(NODE).await;
    let root = tempfile::tempdir().unwrap();
    let htdocs = path_str(&root.path().join("var/htdocs"));
    let html = path_str(&root.path().join("usr/share/nginx/html"));
    let gzip = path_str(&root.path().join("etc/nginx/conf.d/gzip_in.conf"));
    client
        .create(
            &json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "fortune-config"},
                "data": {
                    "sleep-interval": "25",
                    "my-nginx-config.conf": "server {\n  listen 80;\n  gzip on;\n}\n",
                },
            }),
            "default",
        )
        .await
        .unwrap();
    let fortune = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fortune-configmap-volume", "namespace": "default"},
        "spec": {
            "nodeName": NODE, "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "html-generator", "image": "fortuneloop",
                    "command": ["sh", "-c", format!(
                        "echo interval=$INTERVAL; tr '\\0' '\\n' < /proc/$$$$/environ | grep ^CONF_; \
                         echo 'fortune every '$INTERVAL's' > {htdocs}/index.html; exec sleep 1000")],
                    "env": [{"name": "INTERVAL", "valueFrom": {"configMapKeyRef": {"key": "sleep-interval", "name": "fortune-config"}}}],
                    "envFrom": [{"prefix": "CONF_", "configMapRef": {"name": "fortune-config"}}],
                    "volumeMounts": [{"mountPath": htdocs, "name": "html"}],
                },
                {
                    "name": "web-server", "image": "nginx",
                    "command": ["sh", "-c", format!(
                        "while [ ! -s {html}/index.html ]; do sleep 0.1; done; \
                         echo page=$(cat {html}/index.html); \
                         echo gzip=$(grep gzip {gzip}); \
                         echo gzip_mode=$(stat -c %a {gzip}); \
                         touch {html}/x 2>/dev/null && echo html_writable=yes || echo html_writable=no; \
                         exec sleep 1000")],
                    "volumeMounts": [
                        {"mountPath": html, "name": "html", "readOnly": true},
                        {"mountPath": gzip, "name": "config", "subPath": "gzip.conf", "readOnly": true},
                    ],
                    "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                },
            ],
            "volumes": [
                {"name": "html", "emptyDir": {}},
                {"name": "config", "configMap": {
                    "name": "fortune-config", "defaultMode": 0o666,
                    "items": [{"key": "my-nginx-config.conf", "path": "gzip.conf"}],
                }},
            ],
        },
    });
    client.create(&fortune, "default").await.unwrap();
    let p = wait_pod(&client, "fortune-configmap-volume", "running", |p| {
        phase(p) == "Running"
    })
    .await;
    let generator = agent.pod_dir(&p).join("html-generator.log");
    let web = agent.pod_dir(&p).join("web-server.log");
    assert_eq!(logged(&generator, "interval").await, "25");
    // Names a shell would not export: read from the process's own environment.
    assert_eq!(logged(&generator, "CONF_sleep-interval").await, "25");
    assert_eq!(
        logged(&generator, "CONF_my-nginx-config.conf").await,
        "server {"
    );
    assert_eq!(logged(&web, "page").await, "fortune every 25s");
    assert_eq!(logged(&web, "gzip").await.trim(), "gzip on;");
    assert_eq!(logged(&web, "gzip_mode").await, "666");
    assert_eq!(logged(&web, "html_writable").await, "no");
    delete_pod(&client, "fortune-configmap-volume").await;
    agent.stop().await;
}
