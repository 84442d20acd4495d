//! The chaos suite's quick runs in CI, in both modes: against three `rkube server` processes
//! (SIGKILL, SIGSTOP, restart of all, partitions and one-way drops through the peer fault
//! files, simulated nodes) and against the compose deployment (docker kill and pause, iptables
//! partitions, real agents; skipped, saying so, where Docker is unavailable). Every fault kind
//! is injected, including an agent kill and a server joining and leaving under load; every
//! checker must find zero anomalies. Availability figures are printed, not asserted. Set
//! `RKUBE_CHAOS_SEED` to replay a schedule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rkube_tests::chaos::docker;
use rkube_tests::chaos::faults::FaultKind;
use rkube_tests::chaos::runner::{run_docker, run_processes, RunOptions, RunReport};
use rkube_tests::process::rkube_bin;

fn seed() -> u64 {
    std::env::var("RKUBE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Kept after the run for inspection: the verdict, raw histories and server logs.
fn out_dir(mode: &str, seed: u64) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{mode}-{seed}"))
}

fn assert_clean(report: &RunReport, seed: u64, out: &Path) {
    let injected: BTreeSet<FaultKind> = report
        .faults
        .iter()
        .flat_map(|f| f.kinds.iter().copied())
        .collect();
    let missing: Vec<_> = FaultKind::ALL
        .iter()
        .filter(|k| !injected.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "fault kinds never injected: {missing:?}"
    );
    let ops = report.verdict.operations;
    assert!(ops > 500, "the workload ran ({ops} operations)");
    assert!(
        !report.node_losses.is_empty()
            && report
                .node_losses
                .iter()
                .all(|l| l.running_elsewhere_ms.is_some()),
        "seed {seed}: a killed agent's pods did not run elsewhere:\n{}",
        report.text
    );
    assert_eq!(
        report.verdict.anomalies(),
        0,
        "seed {seed}: anomalies found (raw histories were in {}):\n{}",
        out.display(),
        report.text
    );
    assert!(
        report.verdict.is_clean(),
        "seed {seed}: a check was inconclusive:\n{}",
        report.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_chaos_run_finds_no_anomaly() {
    let seed = seed();
    let out = out_dir("process", seed);
    let options = RunOptions::quick(rkube_bin(), out.clone(), seed);
    let report = run_processes(options).await.expect("the chaos run");
    assert!(
        report.mode.starts_with("process mode"),
        "unexpected mode {}",
        report.mode
    );
    assert_clean(&report, seed, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_chaos_run_in_docker_finds_no_anomaly() {
    if let Some(why) = docker::unavailable() {
        eprintln!("SKIPPED: the docker mode of the chaos suite cannot run here: {why}");
        return;
    }
    let seed = seed();
    let out = out_dir("docker", seed);
    let options = RunOptions::quick(rkube_bin(), out.clone(), seed);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root");
    let report = run_docker(options, root).await.expect("the chaos run");
    assert!(
        report.mode.starts_with("docker mode"),
        "unexpected mode {}",
        report.mode
    );
    assert_clean(&report, seed, &out);
}
