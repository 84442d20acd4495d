//! `startup_bench`: pod startup latency on the process runtime. One in-process server with
//! every control loop and two in-process agents; pods (each one container running `sleep`) are
//! created at a steady rate, and the time from each create call to the first watch event that
//! shows the pod Running is recorded. Prints p50/p90/p99/max and the process's resident memory
//! (server and both agents share this process; the pods' `sleep` processes are not counted),
//! then deletes the pods and waits for them to be gone.
//!
//! Goal (rkube issue 7): p99 under 1 second at 20 pods/s over 500 pods (Kubernetes' SLO is 5 s).
//!
//! Run: `cargo run --release -p rkube-tests --bin startup_bench -- [--pods 500] [--rate 20]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use serde_json::json;
use tokio::time::Instant;

const NAMESPACE: &str = "bench";

#[derive(Parser, Debug)]
#[command(about = "Pod startup latency (create → Running) on the process runtime")]
struct Args {
    #[arg(long, default_value_t = 500)]
    pods: usize,
    /// Pods created per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// In-process agents (nodes).
    #[arg(long, default_value_t = 2)]
    agents: usize,
}

/// Resident memory of this process, in MiB.
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
        "starting a server with its control loops and {} agents ...",
        args.agents
    );
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let rss_before_agents = rss_mib();
    let per_node = u32::try_from(args.pods / args.agents.max(1) + 20)?;
    let agents: Vec<Agent> = (0..args.agents)
        .map(|i| {
            Agent::start_with(client.clone(), &format!("bench-{i}"), |o| {
                o.max_pods = per_node.max(110);
                // Only pods are measured: no service proxy or DNS.
                o.proxy = false;
                o.cluster_ip = false;
                o.cluster_dns = None;
            })
        })
        .collect();
    wait_nodes_ready(&client, args.agents).await?;
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            "",
        )
        .await?;
    let rss_idle = rss_mib();

    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    {
        let running_at = running_at.clone();
        let params = ListParams {
            namespace: NAMESPACE.into(),
            ..Default::default()
        };
        let mut w = Box::pin(client.watch(&KindRef::resource("pods"), &params, true));
        tokio::spawn(async move {
            while let Some(Ok(ev)) = w.next().await {
                if let WatchEvent::Added(o) | WatchEvent::Modified(o) = ev {
                    if o["status"]["phase"].as_str() == Some("Running") {
                        let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                        running_at
                            .lock()
                            .unwrap()
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                }
            }
        });
    }

    eprintln!("creating {} pods at {}/s ...", args.pods, args.rate);
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut creates = Vec::new();
    for i in 0..args.pods {
        ticker.tick().await;
        let (client, created_at) = (client.clone(), created_at.clone());
        creates.push(tokio::spawn(async move {
            let name = format!("pod-{i:04}");
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "sleep", "image": "busybox",
                        "command": ["sleep", "3600"]}]}});
            let t = Instant::now();
            created_at.lock().unwrap().insert(name, t);
            client.create(&pod, NAMESPACE).await.map(|_| ())
        }));
    }
    for c in creates {
        c.await??;
    }
    let create_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = running_at.lock().unwrap().len();
        if n >= args.pods {
            break;
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "only {n} of {} pods Running after 5 minutes",
                args.pods
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_loaded = rss_mib();

    let running = running_at.lock().unwrap().clone();
    let created = created_at.lock().unwrap().clone();
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow!("{e}"))?;
    for (name, r) in &running {
        if let Some(c) = created.get(name) {
            h.record(r.saturating_duration_since(*c).as_micros().max(1) as u64)?;
        }
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("| pods | agents | created/s | create→Running p50 ms | p90 ms | p99 ms | max ms | RSS MiB: server only | + agents idle | with pods |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        args.pods,
        args.agents,
        args.pods as f64 / create_secs,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0,
        rss_before_agents,
        rss_idle,
        rss_loaded,
    );

    eprintln!("deleting the pods ...");
    cleanup(&client).await?;
    for a in agents {
        a.stop().await;
    }
    Ok(())
}

/// Wait until `n` Nodes report Ready.
async fn wait_nodes_ready(client: &Client, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = client
            .list(&KindRef::resource("nodes"), &ListParams::default())
            .await?;
        let ready = list
            .items
            .iter()
            .filter(|node| {
                node["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        if ready >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!("only {ready} of {n} nodes Ready after 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Delete every benchmark pod and wait until they are gone (their processes stopped).
async fn cleanup(client: &Client) -> Result<()> {
    let params = ListParams {
        namespace: NAMESPACE.into(),
        ..Default::default()
    };
    let list = client.list(&KindRef::resource("pods"), &params).await?;
    let mut deletes = Vec::new();
    for p in list.items {
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        let client = client.clone();
        deletes.push(tokio::spawn(async move {
            client
                .delete(
                    &KindRef::resource("pods"),
                    NAMESPACE,
                    &name,
                    Default::default(),
                )
                .await
                .map(|_| ())
        }));
    }
    for d in deletes {
        if let Err(e) = d.await? {
            if !matches!(e, rkube_client::Error::NotFound(_)) {
                return Err(e.into());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = client
            .list(&KindRef::resource("pods"), &params)
            .await?
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!("{left} pods still exist 2 minutes after deletion"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
