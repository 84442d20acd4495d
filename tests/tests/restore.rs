//! Backup and restore: a backup taken with `rkube cluster snapshot save` starts a new cluster
//! (`rkube server --restore-from`) that keeps the old CA, so old kubeconfigs still work; clients
//! that cached the old cluster's state are told to relist; servers joining the restored cluster
//! receive the restored data.

use std::time::Duration;

use futures::StreamExt;
use rkube_client::{Client, Error, KindRef, ListParams};
use rkube_tests::process::{free_port, rkube_bin, ProcessCluster, ServerProcess};
use rkube_tests::wait::wait_until;
use serde_json::json;

fn cm(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}})
}

async fn names(client: &Client) -> Vec<String> {
    let list = client
        .list(
            &KindRef::resource("configmaps"),
            &ListParams {
                namespace: "default".into(),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with("keep-") || n.starts_with("late-"))
        .collect();
    names.sort();
    names
}

fn client_for(old: &ProcessCluster, servers: Vec<String>) -> Client {
    let path = old.servers[0].data_dir.join("admin.kubeconfig");
    let mut config = rkube_client::Kubeconfig::load(&path)
        .expect("kubeconfig")
        .client_config()
        .expect("client config");
    config.servers = servers;
    Client::new(config).expect("client")
}

#[tokio::test]
async fn a_restored_cluster_serves_the_backup_and_makes_old_clients_relist() {
    let mut old = ProcessCluster::start(1, &["--controllers", ""]).await;
    let client = old.client();
    for i in 0..5 {
        client
            .create(&cm(&format!("keep-{i}")), "default")
            .await
            .expect("create");
    }
    let backup = old.dir.path().join("backup.snap");
    let out = std::process::Command::new(rkube_bin())
        .arg("--kubeconfig")
        .arg(old.servers[0].data_dir.join("admin.kubeconfig"))
        .args(["cluster", "snapshot", "save"])
        .arg(&backup)
        .output()
        .expect("run rkube");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let late = client
        .create(&cm("late-0"), "default")
        .await
        .expect("create after the backup");
    let late_rv = late["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();

    let new_dir = old.dir.path().join("restored");
    old.servers[0].kill9();
    let old_tls = old.servers[0].data_dir.join("tls");
    let ca_arg = old_tls.to_string_lossy().to_string();
    let backup_arg = backup.to_string_lossy().to_string();
    let mut restored = ServerProcess::spawn(
        &rkube_bin(),
        &new_dir,
        free_port(),
        &[
            "--controllers",
            "",
            "--restore-from",
            &backup_arg,
            "--restore-ca-dir",
            &ca_arg,
        ],
    );
    restored.ready().await;
    assert!(
        restored.log_text().contains("restored the backup"),
        "{}",
        restored.log_text()
    );
    let new_api = restored.api_addr.clone();

    // The old kubeconfig (old CA, old token) works against the restored cluster, which holds
    // exactly what was acknowledged before the backup.
    let client = client_for(&old, vec![new_api.clone()]);
    wait_until(
        Duration::from_secs(30),
        "the restored cluster serves",
        || {
            let client = client.clone();
            async move { client.members().await.ok() }
        },
    )
    .await;
    assert_eq!(
        names(&client).await,
        (0..5).map(|i| format!("keep-{i}")).collect::<Vec<_>>()
    );

    // Revisions jump past the old cluster's, and a watch resuming from a resourceVersion of
    // the old cluster (as every informer and agent does after losing its server) is told to
    // relist rather than silently missing what the old cluster did after the backup.
    let list = client
        .list(
            &KindRef::resource("configmaps"),
            &ListParams {
                namespace: "default".into(),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    let new_rv: i64 = list.resource_version.parse().expect("numeric rv");
    assert!(
        new_rv > 1_000_000_000,
        "revisions jump past the old cluster's: {new_rv}"
    );
    let mut resumed = Box::pin(client.watch(
        &KindRef::resource("configmaps"),
        &ListParams {
            namespace: "default".into(),
            resource_version: late_rv.clone(),
            ..Default::default()
        },
        false,
    ));
    match tokio::time::timeout(Duration::from_secs(30), resumed.next()).await {
        Ok(Some(Err(Error::Gone(_)))) => {}
        other => panic!(
            "a watch from the old cluster's resourceVersion must be told to relist, got {other:?}"
        ),
    }
    // A server joining the restored cluster receives the restored data (as a snapshot: the
    // restored state is in no log entry).
    let token = std::fs::read_to_string(new_dir.join("join-token")).expect("join token");
    let restored_peer = restored.addr.clone();
    let mut joiner = ServerProcess::spawn(
        &rkube_bin(),
        &old.dir.path().join("joiner"),
        free_port(),
        &[
            "--controllers",
            "",
            "--join",
            &restored_peer,
            "--token",
            token.trim(),
        ],
    );
    joiner.ready().await;
    let via_joiner = client_for(&old, vec![joiner.api_addr.clone()]);
    wait_until(
        Duration::from_secs(30),
        "the joiner serves the restored data",
        || {
            let c = via_joiner.clone();
            async move {
                (names(&c).await == (0..5).map(|i| format!("keep-{i}")).collect::<Vec<_>>())
                    .then_some(())
            }
        },
    )
    .await;
    // And the restored cluster takes writes replicated to both.
    client
        .create(&cm("late-1"), "default")
        .await
        .expect("write to the restored cluster");
    wait_until(
        Duration::from_secs(30),
        "the joiner has the new write",
        || {
            let c = via_joiner.clone();
            async move {
                names(&c)
                    .await
                    .contains(&"late-1".to_string())
                    .then_some(())
            }
        },
    )
    .await;
}
