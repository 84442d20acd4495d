//! The operator's membership procedures from the README, run as real processes through the
//! CLI: add a fourth server, remove one, and replace a dead server with a fresh one, with the
//! data written before each step readable on every remaining member.

use std::path::Path;
use std::time::Duration;

use rkube_client::{Client, KindRef};
use rkube_tests::process::{free_port, rkube_bin, ProcessCluster, ServerProcess};
use rkube_tests::wait::wait_until;
use serde_json::json;

fn cli(kubeconfig: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(rkube_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run rkube");
    assert!(
        out.status.success(),
        "rkube {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn join(cluster: &ProcessCluster, name: &str, id: u64) -> ServerProcess {
    let token = std::fs::read_to_string(cluster.servers[0].data_dir.join("join-token"))
        .expect("join token");
    let id = id.to_string();
    ServerProcess::spawn(
        &rkube_bin(),
        &cluster.dir.path().join(name),
        free_port(),
        &[
            "--controllers",
            "",
            "--node-id",
            &id,
            "--join",
            &cluster.servers[0].addr,
            "--token",
            token.trim(),
        ],
    )
}

/// Wait until `rkube cluster members` (through `kubeconfig`) lists exactly `ids`, every one
/// healthy according to `rkube cluster health`.
async fn wait_for_members(kubeconfig: &Path, ids: &[u64]) {
    let want: Vec<String> = ids.iter().map(u64::to_string).collect();
    wait_until(
        Duration::from_secs(60),
        &format!("members {want:?}, all healthy"),
        || {
            let kubeconfig = kubeconfig.to_path_buf();
            let want = want.clone();
            async move {
                let out = std::process::Command::new(rkube_bin())
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["cluster", "health"])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let listed: Vec<String> = text
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                    .collect();
                (out.status.success() && listed == want).then_some(())
            }
        },
    )
    .await;
}

async fn has_configmaps(client: &Client, n: usize) -> Option<()> {
    let list = client
        .list(
            &KindRef::resource("configmaps"),
            &rkube_client::ListParams {
                namespace: "default".into(),
                ..Default::default()
            },
        )
        .await
        .ok()?;
    let count = list
        .items
        .iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("m-"))
        })
        .count();
    (count == n).then_some(())
}

#[tokio::test]
async fn add_remove_and_replace_servers_through_the_cli() {
    let mut cluster = ProcessCluster::start(3, &["--controllers", ""]).await;
    let kubeconfig = cluster.servers[0].data_dir.join("admin.kubeconfig");
    let client = cluster.client();
    for i in 0..3 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("m-{i}")}});
        client.create(&cm, "default").await.expect("create");
    }

    // Add a fourth server: it joins with the join token and becomes a voter.
    let mut fourth = join(&cluster, "server-4", 4);
    fourth.ready().await;
    wait_for_members(&kubeconfig, &[1, 2, 3, 4]).await;
    let via_fourth = rkube_client::Client::new({
        let mut c = rkube_client::Kubeconfig::load(&kubeconfig)
            .expect("kubeconfig")
            .client_config()
            .expect("config");
        c.servers = vec![fourth.api_addr.clone()];
        c
    })
    .expect("client");
    wait_until(
        Duration::from_secs(30),
        "the fourth server has the data",
        || has_configmaps(&via_fourth, 3),
    )
    .await;

    // Remove a live server cleanly.
    cli(&kubeconfig, &["cluster", "remove-member", "4"]);
    wait_for_members(&kubeconfig, &[1, 2, 3]).await;
    fourth.signal("TERM");
    fourth.exit_status(Duration::from_secs(30)).await;

    // Replace a dead server: server 3 crashes for good; remove it, start a fresh one.
    cluster.servers[2].kill9();
    cli(&kubeconfig, &["cluster", "remove-member", "3"]);
    wait_for_members(&kubeconfig, &[1, 2]).await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m-3"}});
    client
        .create(&cm, "default")
        .await
        .expect("write with two members");
    let mut fresh = join(&cluster, "server-5", 5);
    fresh.ready().await;
    wait_for_members(&kubeconfig, &[1, 2, 5]).await;
    let via_fresh = rkube_client::Client::new({
        let mut c = rkube_client::Kubeconfig::load(&kubeconfig)
            .expect("kubeconfig")
            .client_config()
            .expect("config");
        c.servers = vec![fresh.api_addr.clone()];
        c
    })
    .expect("client");
    wait_until(
        Duration::from_secs(30),
        "the replacement has all the data",
        || has_configmaps(&via_fresh, 4),
    )
    .await;
}
