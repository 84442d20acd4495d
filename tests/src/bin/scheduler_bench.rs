//! `scheduler_bench`: end-to-end scheduling throughput. 1,000 simulated nodes are created through
//! the API (no agents), then 10,000 pods; the scheduler of an in-process server binds them. It
//! prints pods created and bound per second and the time from each pod's creation to its
//! binding (p50/p99), as a watch sees it.
//!
//! The server, the load generator and the watch share this process and the machine's cores: the
//! figures are for the whole system on one small machine.
//!
//! Run: `cargo run --release -p rkube-tests --bin scheduler_bench -- [--nodes 1000]
//! [--pods 10000] [--servers 1] [--clients 32]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rkube::control_plane::ControlPlaneArgs;
use rkube_client::{KindRef, ListParams, WatchEvent};
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::sim_node::SimNodeSpec;
use serde_json::json;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Scheduler throughput with simulated nodes")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Control-plane servers (the scheduler runs on the leader).
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Concurrent pod creators.
    #[arg(long, default_value_t = 32)]
    clients: usize,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    eprintln!(
        "starting {} server(s) with only the scheduler ...",
        args.servers
    );
    let cluster = ApiCluster::start_opts(
        args.servers,
        ClusterOptions {
            control_plane: ControlPlaneArgs {
                controllers: vec!["scheduler".into()],
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let client = cluster.client();
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
            "",
        )
        .await?;

    eprintln!("creating {} nodes ...", args.nodes);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, next, n) = (client.clone(), next.clone(), args.nodes);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let zone = format!("zone-{}", i % 3);
                let spec = SimNodeSpec::new(&format!("node-{i:04}"))
                    .capacity("8", "32Gi")
                    .label("topology.kubernetes.io/zone", &zone);
                let node = spec.node();
                let created = client.create(&serde_json::to_value(&node)?, "").await?;
                let mut with_status = created;
                with_status["status"] = serde_json::to_value(&node.status)?;
                client.update_status(&with_status).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!("nodes ready in {:.1}s", started.elapsed().as_secs_f64());

    // Watch bindings.
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let list = client
        .list(
            &KindRef::resource("pods"),
            &ListParams {
                namespace: "bench".into(),
                ..Default::default()
            },
        )
        .await?;
    {
        let bound_at = bound_at.clone();
        let params = ListParams {
            namespace: "bench".into(),
            resource_version: list.resource_version,
            ..Default::default()
        };
        let mut w = Box::pin(client.watch(&KindRef::resource("pods"), &params, false));
        tokio::spawn(async move {
            while let Some(Ok(ev)) = w.next().await {
                if let WatchEvent::Modified(o) = ev {
                    if o["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty())
                    {
                        let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                        bound_at
                            .lock()
                            .unwrap()
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                }
            }
        });
    }

    eprintln!(
        "creating {} pods with {} clients ...",
        args.pods, args.clients
    );
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, next, n, created_at) =
            (client.clone(), next.clone(), args.pods, created_at.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = format!("pod-{i:05}");
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "bench", "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "c", "image": "kubia",
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}});
                let t = Instant::now();
                client.create(&pod, "bench").await?;
                created_at.lock().unwrap().insert(name, t);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let created_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = bound_at.lock().unwrap().len();
        if n >= args.pods {
            break;
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "only {n} of {} pods bound after 10 minutes",
                args.pods
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bound = bound_at.lock().unwrap().clone();
    let created = created_at.lock().unwrap().clone();
    let last = bound.values().max().copied().unwrap_or(start);
    let total_secs = (last - start).as_secs_f64();
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow!("{e}"))?;
    for (name, b) in &bound {
        if let Some(c) = created.get(name) {
            h.record(b.saturating_duration_since(*c).as_micros().max(1) as u64)?;
        }
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("| nodes | pods | servers | created/s | scheduled+bound/s (end to end) | create→bind p50 ms | p99 ms | max ms | RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} |",
        args.nodes,
        args.pods,
        args.servers,
        args.pods as f64 / created_secs,
        args.pods as f64 / total_secs,
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0,
        rss_mib()
    );
    Ok(())
}
