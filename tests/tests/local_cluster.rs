//! `deploy/local-cluster.sh` end to end with this checkout's binary: `up` returns with every
//! server a voter and every agent's node Ready and writes a working kubeconfig; each server and
//! agent keeps its data and log under the directory; `status` lists them running; `down` leaves
//! no process behind; `up` again restarts the same cluster from its data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use rkube_client::{Client, ClientConfig, ListParams};
use rkube_tests::process::rkube_bin;
use rkube_tests::wait::wait_until;
use serde_json::json;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("deploy/local-cluster.sh")
}

/// Run the script; its stdout, or a panic with its output.
fn local_cluster(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .env("RKUBE_BIN", rkube_bin())
        .output()
        .expect("run local-cluster.sh");
    assert!(
        out.status.success(),
        "local-cluster.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A base port whose peer (base+1..) and API (base+101..) ports are free now.
fn free_base(servers: u16) -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..100u16 {
        let base = 20000 + (seed.wrapping_add(attempt * 211) % 9000);
        let free = (1..=servers)
            .flat_map(|i| [base + i, base + 100 + i])
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port range for the local cluster");
}

/// The pids the script recorded, read before `down` removes the files.
fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "pid")
                .then(|| std::fs::read_to_string(&path).ok()?.trim().parse().ok())
                .flatten()
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie (exited, not reaped yet) is not running.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Stops the cluster even when the test fails.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["down", "--dir"])
            .arg(&self.0)
            .env("RKUBE_BIN", rkube_bin())
            .output();
    }
}

async fn ready_nodes(client: &Client) -> usize {
    let Ok((nodes, _)) = client.list_typed::<Node>(&ListParams::default()).await else {
        return 0;
    };
    nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_down_and_up_again_from_the_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cluster");
    let dir_arg = dir.to_string_lossy().into_owned();
    let base = free_base(3).to_string();
    let _down = Down(dir.clone());
    let up = [
        "up",
        "--servers",
        "3",
        "--agents",
        "2",
        "--dir",
        &dir_arg,
        "--base-port",
        &base,
    ];
    local_cluster(&up);

    let kubeconfig = dir.join("kubeconfig");
    let client =
        Client::new(ClientConfig::locate(Some(&kubeconfig)).expect("kubeconfig")).expect("client");
    let members = client.members().await.expect("members");
    assert_eq!(members.members.len(), 3, "{members:?}");
    assert!(members.members.iter().all(|m| m.voter), "{members:?}");
    wait_until(Duration::from_secs(60), "2 Ready nodes", || {
        let client = client.clone();
        async move { (ready_nodes(&client).await == 2).then_some(()) }
    })
    .await;
    for name in ["server-1", "server-2", "server-3", "agent-1", "agent-2"] {
        assert!(dir.join(name).is_dir(), "{name}'s data directory");
        assert!(dir.join(format!("{name}.log")).is_file(), "{name}'s log");
    }
    let status = local_cluster(&["status", "--dir", &dir_arg]);
    assert_eq!(status.matches(": running (pid").count(), 5, "{status}");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kept", "namespace": "default"}, "data": {"k": "v"}});
    client.create(&cm, "default").await.expect("create");

    let started = pids(&dir);
    assert_eq!(started.len(), 5, "pid files: {started:?}");
    local_cluster(&["down", "--dir", &dir_arg]);
    let left: Vec<i32> = started.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still running after down: {left:?}");
    let status = local_cluster(&["status", "--dir", &dir_arg]);
    assert!(!status.contains("running"), "{status}");

    // `up` on the same directory restarts the same cluster with its data.
    local_cluster(&up);
    let client =
        Client::new(ClientConfig::locate(Some(&kubeconfig)).expect("kubeconfig")).expect("client");
    let kept: serde_json::Value = wait_until(Duration::from_secs(60), "the ConfigMap", || {
        let client = client.clone();
        async move {
            client
                .get(
                    &rkube_client::KindRef::resource("configmaps"),
                    "default",
                    "kept",
                )
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(kept["data"]["k"], "v");
    assert_eq!(client.members().await.expect("members").members.len(), 3);
}
