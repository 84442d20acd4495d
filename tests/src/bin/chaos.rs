//! `chaos`: the chaos suite against the compose deployment (docker mode) or a local cluster of
//! `rkube server` processes (process mode), in quick (CI) or soak mode; prints the verdict
//! table and the failover figures, keeps the raw histories, and exits non-zero on any anomaly.
//!
//! ```text
//! cargo build -p rkube --bin rkube && cargo run -p rkube-tests --bin chaos -- --quick
//! cargo run --release -p rkube-tests --bin chaos -- --duration 30m --out target/chaos/soak
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use rkube_tests::chaos::runner::{run_best, run_docker, run_processes, RunOptions};

#[derive(Parser)]
#[command(
    about = "Chaos suite: faults against a 3-server rkube cluster, then linearizability and convergence checks"
)]
struct Args {
    /// The CI run: every fault kind once, about two minutes of faults.
    #[arg(long, conflicts_with = "duration")]
    quick: bool,
    /// Soak run: inject faults for this long (e.g. 30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Seed of the fault schedule and the workload (random if not given; always printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the verdict, the raw histories and the server logs go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `rkube` binary (default: next to this program).
    #[arg(long)]
    rkube_bin: Option<PathBuf>,
    /// Workload clients (one request in flight each).
    #[arg(long)]
    clients: Option<u32>,
    /// `docker` (the compose deployment: docker kill/pause, iptables partitions), `process`
    /// (server processes, signals, the fault-injecting peer transport) or `auto` (docker where
    /// Docker, compose, nsenter and iptables are usable as root, else process).
    #[arg(long, default_value = "auto", value_parser = ["auto", "docker", "process"])]
    mode: String,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.quick && args.duration.is_none() {
        anyhow::bail!("choose a mode: --quick or --duration DURATION");
    }
    let bin = match args.rkube_bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("the program's directory")?
            .join("rkube"),
    };
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build -p rkube --bin rkube, with --release for a release run) or pass --rkube-bin",
        bin.display()
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("target/chaos").join(format!(
            "{}-{seed}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S")
        ))
    });
    let mut options = match args.duration {
        Some(d) => RunOptions::soak(bin, out, seed, d),
        None => RunOptions::quick(bin, out, seed),
    };
    if let Some(c) = args.clients {
        options.workload.clients = c;
    }
    let repo_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository root")?
        .to_path_buf();
    let report = match args.mode.as_str() {
        "docker" => run_docker(options, &repo_root).await?,
        "process" => run_processes(options).await?,
        _ => run_best(options, &repo_root).await?,
    };
    if !report.verdict.is_clean() {
        anyhow::bail!(
            "the chaos run found {} anomalies ({})",
            report.verdict.anomalies(),
            report.mode
        );
    }
    Ok(())
}
