//! The chaos suite's quick run in CI: three `rkube server` processes under every fault kind
//! (SIGKILL, SIGSTOP, restart of all, partitions and one-way drops through the peer fault
//! files), then every checker must find zero anomalies. Availability figures are printed, not
//! asserted. Set `RKUBE_CHAOS_SEED` to replay a schedule.

use rkube_tests::chaos::runner::{run_processes, RunOptions};
use rkube_tests::process::rkube_bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_chaos_run_finds_no_anomaly() {
    let seed = std::env::var("RKUBE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    // Kept after the run for inspection: the verdict, raw histories and server logs.
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{seed}"));
    let options = RunOptions::quick(rkube_bin(), out.clone(), seed);
    let report = run_processes(options).await.expect("the chaos run");
    assert!(
        report.mode.starts_with("process mode"),
        "unexpected mode {}",
        report.mode
    );
    assert!(
        report.faults.len() >= 9,
        "every fault kind and the combined ones are injected: {:?}",
        report.faults
    );
    let ops = report.verdict.operations;
    assert!(ops > 500, "the workload ran ({ops} operations)");
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
