//! `failover_bench`: how long the control plane is headless after its leader dies. For each
//! round a fresh 3-server in-process cluster runs a ReplicaSet on a simulated node; the leader
//! server is killed and, at once, the ReplicaSet is scaled up through a surviving server. It
//! prints the time from the kill to the first acknowledged write (the scale) and to the first
//! controller action on the new leader (the new pod created), with p50 and max over the rounds.
//!
//! Run: `cargo run --release -p rkube-tests --bin failover_bench -- [--rounds 5]`.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use rkube_client::{KindRef, ListParams};
use rkube_proto::api;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::sim_node::{SimNode, SimNodeSpec};
use rkube_tests::wait::wait_until;
use serde_json::json;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Time from killing the leader to the first write and the first reconcile")]
struct Args {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

async fn round() -> Result<(Duration, Duration)> {
    let mut c = ApiCluster::start_opts(3, ClusterOptions::with_control_loops()).await;
    let leader = c.leader().await;
    let survivor = if leader == 1 { 2 } else { 1 };
    let client = c.client_to(survivor);
    let _node = SimNode::start(client.clone(), SimNodeSpec::new("node-0")).await?;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "kubia"}]}}}});
    client.create(&rs, "default").await?;
    let count = |client: rkube_client::Client| async move {
        client
            .list_typed::<Pod>(&ListParams {
                namespace: "default".into(),
                label_selector: "app=web".into(),
                ..Default::default()
            })
            .await
            .map(|(p, _)| p.len())
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(30), "the first pod", || {
        let client = client.clone();
        async move { (count(client).await == 1).then_some(()) }
    })
    .await;
    // Let the new leader's informers be as warm as in steady state.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let killed = Instant::now();
    c.kill(leader);
    let patch = json!({"spec": {"replicas": 2}}).to_string();
    loop {
        match client
            .patch(
                &KindRef::of::<ReplicaSet>(),
                "default",
                "web",
                api::PatchType::Merge,
                patch.as_bytes(),
                false,
            )
            .await
        {
            Ok(_) => break,
            Err(e) if e.is_retryable() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let first_write = killed.elapsed();
    wait_until(Duration::from_secs(60), "the second pod", || {
        let client = client.clone();
        async move { (count(client).await == 2).then_some(()) }
    })
    .await;
    let first_action = killed.elapsed();
    Ok((first_write, first_action))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut writes = Vec::new();
    let mut actions = Vec::new();
    for i in 0..args.rounds {
        let (w, a) = round().await?;
        eprintln!(
            "round {}: first write {:.0} ms, first controller action {:.0} ms",
            i + 1,
            w.as_secs_f64() * 1e3,
            a.as_secs_f64() * 1e3
        );
        writes.push(w);
        actions.push(a);
    }
    writes.sort();
    actions.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| after killing the leader | p50 ms | max ms |");
    println!("|---|---|---|");
    println!(
        "| first acknowledged write | {:.0} | {:.0} |",
        ms(writes[writes.len() / 2]),
        ms(*writes.last().unwrap())
    );
    println!(
        "| first controller action (pod created) | {:.0} | {:.0} |",
        ms(actions[actions.len() / 2]),
        ms(*actions.last().unwrap())
    );
    Ok(())
}
