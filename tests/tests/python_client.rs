//! A Python client (grpcio, stubs generated from `proto/` at test time) drives a real `rkube
//! server`: proof that another language can use the API from the .proto files and a kubeconfig.
//!
//! The script is `tests/python/api_client_test.py`. Its Python environment is a venv cached in
//! `target/python-venv`; when python3 or PyPI is unavailable the test says `SKIPPED` and passes,
//! but a failing script always fails it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rkube_tests::process::{free_port, rkube_bin, ServerProcess};
use rkube_tests::wait::wait_until;

/// What the script needs from PyPI.
const PACKAGES: &[&str] = &["grpcio", "grpcio-tools", "grpcio-health-checking", "pyyaml"];

/// Every call in the script has its own deadline; this only bounds a script that hangs anyway.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn a_python_grpc_client_uses_the_api_from_the_proto_files_alone() {
    let python = match python_venv() {
        Ok(python) => python,
        Err(reason) => {
            eprintln!(
                "SKIPPED: no Python gRPC environment ({reason}); \
                 the Python client test did not run"
            );
            return;
        }
    };

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut server = ServerProcess::spawn(&rkube_bin(), &dir, free_port(), &[]);
    server.ready().await;
    let kubeconfig = dir.join("admin.kubeconfig");
    // Written atomically (temporary file, then rename), so existing means complete.
    wait_until(Duration::from_secs(30), "the admin kubeconfig", || {
        let k = kubeconfig.clone();
        async move { k.exists().then_some(()) }
    })
    .await;

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = repo.join("tests/python/api_client_test.py");
    let proto_dir = repo.join("proto/proto");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&server.api_addr)
        .arg(&kubeconfig)
        .arg(&proto_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not finish within {SCRIPT_TIMEOUT:?}; server log:\n{}",
                script.display(),
                server.log_text()
            )
        })
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == "PYTHON CLIENT OK"),
        "the Python client failed ({}):\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}\
         --- server log ---\n{}",
        output.status,
        server.log_text()
    );
    println!("--- python stdout ---\n{stdout}--- python stderr ---\n{stderr}");
}

/// The python of a venv with [`PACKAGES`] installed, created once and cached in
/// `target/python-venv`. Concurrent test runs each build in a private directory and rename it
/// into place, so the cached venv is always complete; the loser of a race uses the winner's.
/// An error says why no environment could be made (no python3, no PyPI).
fn python_venv() -> Result<PathBuf, String> {
    let target = target_dir();
    let venv = target.join("python-venv");
    if usable(&venv) {
        return Ok(python_in(&venv));
    }
    if venv.exists() {
        // Stale (e.g. its base interpreter is gone): move it aside and build anew.
        let trash = target.join(format!("python-venv.stale-{}", std::process::id()));
        if std::fs::rename(&venv, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        }
    }

    let building = target.join(format!(
        "python-venv.building-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let result = build_venv(&building);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first: use its venv.
        let _ = std::fs::remove_dir_all(&building);
    }
    if usable(&venv) {
        Ok(python_in(&venv))
    } else {
        Err(format!(
            "{} cannot import the packages it was built with",
            venv.display()
        ))
    }
}

/// Create a venv at `dir` and install [`PACKAGES`] into it.
fn build_venv(dir: &Path) -> Result<(), String> {
    eprintln!("creating a Python venv with {}", PACKAGES.join(" "));
    run_quietly(
        Command::new("python3").arg("-m").arg("venv").arg(dir),
        "python3 -m venv",
    )?;
    run_quietly(
        Command::new(python_in(dir))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
        "pip install",
    )
}

/// Run a setup command; an error carries its exit status and output.
fn run_quietly(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether the venv at `dir` runs and has every package the script imports.
fn usable(dir: &Path) -> bool {
    Command::new(python_in(dir))
        .args([
            "-c",
            "import grpc, grpc_tools.protoc, grpc_health.v1.health_pb2_grpc, yaml",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python_in(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// `target/`, found from this test's executable (`target/<profile>/deps/<test>`), so a custom
/// `CARGO_TARGET_DIR` is honoured.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("target dir above target/<profile>/deps")
        .to_path_buf()
}
