//! `api_bench`: the resource API of a 3-server rkube cluster on loopback: pod create latency at a
//! fixed rate, create/get throughput with concurrent clients, listing 10,000 pods, and
//! watch-delivery latency with many open watches.
//!
//! The three servers run in this process (each on its own tokio runtime, as in the integration
//! tests) and share the 2-core machine with the load generator: figures are for the whole
//! system on one small machine, not for a server alone.
//!
//! Run: `cargo run --release -p rkube-tests --bin api_bench -- [--rate 500] [--rate-secs 10]
//! [--watches 1000] [--watch-rates 20,50,100] [--clients 64] [--pods 10000]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use rkube_tests::api_cluster::ApiCluster;
use serde_json::{json, Value};
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Resource API benchmark on a 3-server loopback cluster")]
struct Args {
    /// Pods created per second in the fixed-rate phase.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of the fixed-rate phase.
    #[arg(long, default_value_t = 10)]
    rate_secs: u64,
    /// Open watches during the fixed-rate phases.
    #[arg(long, default_value_t = 1000)]
    watches: usize,
    /// Further phases measuring watch delivery with the same number of watches at these lower
    /// create rates (events per second), e.g. 20,100. Each watch receives every event, so a
    /// phase delivers watches x rate events per second.
    #[arg(long, value_delimiter = ',', default_value = "20,50,100")]
    watch_rates: Vec<u64>,
    /// Concurrent clients in the throughput phases.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Pods in the namespace when listing.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Seconds of each throughput phase.
    #[arg(long, default_value_t = 5)]
    secs: u64,
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bench", "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "kubia", "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}})
}

fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow!("histogram: {e}"))
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn row(what: &str, ops: u64, secs: f64, h: &Histogram<u64>, errors: u64) {
    println!(
        "| {what} | {ops} | {:.0} | {:.2} | {:.2} | {:.2} | {errors} |",
        ops as f64 / secs,
        ms(h, 0.5),
        ms(h, 0.99),
        h.max() as f64 / 1000.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    eprintln!("starting a 3-server cluster ...");
    let cluster = ApiCluster::start(3).await;
    let clients: Vec<Client> = (1..=3).map(|id| cluster.client_to(id)).collect();
    clients[0]
        .create(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
            "",
        )
        .await
        .context("create namespace")?;
    println!("| phase | operations | ops/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|");

    // Create latency at the fixed rate with the watches open, then watch delivery with the
    // same watches at each lower event rate asked for.
    rate_phase(&cluster, &clients, &args, args.rate, "rate").await?;
    for &rate in &args.watch_rates {
        rate_phase(&cluster, &clients, &args, rate, &format!("w{rate}")).await?;
    }

    // Closed-loop create and get throughput.
    let created = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for phase in ["create", "get"] {
        let hist = Arc::new(Mutex::new(histogram()?));
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ops = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(args.secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..args.clients {
            let client = clients[c % 3].clone();
            let (hist, errors, ops, created) =
                (hist.clone(), errors.clone(), ops.clone(), created.clone());
            tasks.push(tokio::spawn(async move {
                let mut local = histogram().expect("histogram");
                let mut n = 0u64;
                while Instant::now() < until {
                    let t = Instant::now();
                    let r = if phase == "create" {
                        let i = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        client
                            .create(&pod(&format!("load-{i}")), "bench")
                            .await
                            .map(|_| ())
                    } else {
                        let name = format!("rate-{}", (c as u64 * 7919 + n) % 1000);
                        client
                            .get(&KindRef::resource("pods"), "bench", &name)
                            .await
                            .map(|_| ())
                    };
                    n += 1;
                    match r {
                        Ok(()) => {
                            let _ = local.record(t.elapsed().as_micros() as u64);
                            ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                hist.lock().expect("hist").add(&local).expect("merge");
            }));
        }
        for t in tasks {
            t.await?;
        }
        let secs = start.elapsed().as_secs_f64();
        row(
            &format!("{phase} ({} clients)", args.clients),
            ops.load(std::sync::atomic::Ordering::Relaxed),
            secs,
            &hist.lock().expect("hist"),
            errors.load(std::sync::atomic::Ordering::Relaxed),
        );
    }

    // Fill up to `pods` and list them all.
    let have = clients[0]
        .list(
            &KindRef::resource("pods"),
            &ListParams {
                namespace: "bench".into(),
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    let existing = have.remaining_item_count as usize + have.items.len();
    let missing = args.pods.saturating_sub(existing);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let client = clients[c % 3].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= missing {
                    return;
                }
                let _ = client.create(&pod(&format!("fill-{i}")), "bench").await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let mut list_hist = histogram()?;
    let mut items = 0;
    let start = Instant::now();
    for i in 0..10 {
        let t = Instant::now();
        let list = clients[i % 3]
            .list(
                &KindRef::resource("pods"),
                &ListParams {
                    namespace: "bench".into(),
                    ..Default::default()
                },
            )
            .await?;
        items = list.items.len();
        let _ = list_hist.record(t.elapsed().as_micros() as u64);
    }
    row(
        &format!("list {items} pods"),
        10,
        start.elapsed().as_secs_f64(),
        &list_hist,
        0,
    );
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .unwrap_or_default();
    println!(
        "\npeak memory of the process (3 servers + load generator): {} MiB",
        rss.parse::<u64>().unwrap_or(0) / 1024
    );
    Ok(())
}

/// One fixed-rate phase: `args.watches` watches open, pods named `PREFIX-N` created at `rate`
/// per second for `args.rate_secs`; prints the create latency and the watch delivery latency
/// (each watch's delivery of each pod after its create was acknowledged).
async fn rate_phase(
    cluster: &ApiCluster,
    clients: &[Client],
    args: &Args,
    rate: u64,
    prefix: &str,
) -> Result<()> {
    let end_name = format!("{prefix}-end");
    // Watches, opened before the fixed-rate phase; each records delivery latency after the
    // create was acknowledged (clamped at zero: a follower may deliver before the ack arrives).
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let delivery = Arc::new(Mutex::new(histogram()?));
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Separate clients spread the watch streams over several connections per server.
    let watch_clients: Vec<Client> = (0..(args.watches / 100).max(1))
        .map(|i| cluster.client_to(i % 3 + 1))
        .collect();
    // A watch counts as open once it delivered a warm-up pod (`PREFIX-warm-N`, not measured).
    let warm_prefix = format!("{prefix}-warm-");
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for i in 0..args.watches {
        let client = watch_clients[i % watch_clients.len()].clone();
        let (acked, delivery, delivered) = (acked.clone(), delivery.clone(), delivered.clone());
        let (end_name, warm_prefix, open) = (end_name.clone(), warm_prefix.clone(), open.clone());
        watchers.push(tokio::spawn(async move {
            let mut local = histogram().expect("histogram");
            let params = ListParams {
                namespace: "bench".into(),
                ..Default::default()
            };
            let mut w = Box::pin(client.watch(&KindRef::resource("pods"), &params, false));
            let mut warm = false;
            while let Some(ev) = w.next().await {
                if let Ok(WatchEvent::Added(o)) = ev {
                    let now = Instant::now();
                    let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                    if name.starts_with(&warm_prefix) {
                        if !std::mem::replace(&mut warm, true) {
                            open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        continue;
                    }
                    let at = acked.lock().expect("acked").get(&name).copied();
                    let us = at.map_or(0, |t| now.saturating_duration_since(t).as_micros() as u64);
                    let _ = local.record(us.max(1));
                    delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if name == end_name {
                        break;
                    }
                }
            }
            delivery
                .lock()
                .expect("delivery")
                .add(&local)
                .expect("merge");
        }));
    }
    // Every watch open before the measured phase: warm-up pods until each has delivered one.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut n = 0;
    while open.load(std::sync::atomic::Ordering::Relaxed) < args.watches {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} watches open after 120 s",
            open.load(std::sync::atomic::Ordering::Relaxed),
            args.watches
        );
        clients[0]
            .create(&pod(&format!("{warm_prefix}{n}")), "bench")
            .await
            .context("warm-up create")?;
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Fixed-rate creates.
    let total = rate * args.rate_secs;
    let create_hist = Arc::new(Mutex::new(histogram()?));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        tick.tick().await;
        let client = clients[i as usize % 3].clone();
        let (acked, hist, errors) = (acked.clone(), create_hist.clone(), errors.clone());
        let name = format!("{prefix}-{i}");
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match client.create(&pod(&name), "bench").await {
                Ok(_) => {
                    let done = Instant::now();
                    acked.lock().expect("acked").insert(name, done);
                    let _ = hist
                        .lock()
                        .expect("hist")
                        .record(done.duration_since(t).as_micros() as u64);
                }
                Err(_) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    row(
        &format!("create at {}/s", rate),
        total,
        secs,
        &create_hist.lock().expect("hist"),
        errors.load(std::sync::atomic::Ordering::Relaxed),
    );
    acked
        .lock()
        .expect("acked")
        .insert(end_name.clone(), Instant::now());
    clients[0]
        .create(&pod(&end_name), "bench")
        .await
        .context("final create")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    for w in watchers {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, w).await.is_err() {
            eprintln!("a watch did not see the last pod within 120 s");
            break;
        }
    }
    let d = delivery.lock().expect("delivery").clone();
    println!(
        "| watch delivery ({} watches, {rate} events/s) | {} | - | {:.2} | {:.2} | {:.2} | - |",
        args.watches,
        delivered.load(std::sync::atomic::Ordering::Relaxed),
        ms(&d, 0.5),
        ms(&d, 0.99),
        d.max() as f64 / 1000.0
    );

    Ok(())
}
