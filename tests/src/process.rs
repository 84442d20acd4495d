//! Running the real `rkube` binary as child processes, and connecting to it with the admin
//! client certificate its data directory holds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rkube_proto::store::cluster_client::ClusterClient;
use rkube_proto::store::kv_client::KvClient;
use rkube_store::tls::{client_tls_config, CertKey};
use tonic::transport::Channel;

/// The `rkube` binary of this checkout, built (once per test process) with the profile the
/// tests were built with. It lives in another package, so cargo does not hand its path to us.
pub fn rkube_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "rkube", "--bin", "rkube"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin rkube failed");
        let bin = profile_dir.join("rkube");
        assert!(bin.exists(), "{} missing after cargo build", bin.display());
        bin
    })
    .clone()
}

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child `rkube server`, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub data_dir: PathBuf,
    pub addr: String,
    /// The API address (a free port chosen at spawn).
    pub api_addr: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Start `rkube server` with these extra arguments; its output goes to `<data_dir>.log`.
    pub fn spawn(bin: &Path, data_dir: &Path, port: u16, extra: &[&str]) -> ServerProcess {
        let addr = format!("127.0.0.1:{port}");
        let api_addr = format!("127.0.0.1:{}", free_port());
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = std::env::temp_dir().join(format!("rkube-test-{}-{n}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen-peer")
            .arg(&addr)
            .arg("--listen-api")
            .arg(&api_addr)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn rkube");
        ServerProcess {
            child,
            data_dir: data_dir.to_path_buf(),
            addr,
            api_addr,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the server logs that it is ready (or exits, which panics with its log).
    pub async fn ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.log_text().contains("rkube server is ready") {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "rkube server exited with {status} before it was ready:\n{}",
                    self.log_text()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rkube server not ready in time:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait for the process to exit on its own.
    pub async fn exit_status(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rkube did not exit in time:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send a signal (e.g. "INT", "TERM", "STOP", "CONT").
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// A channel to this server authenticated with the admin certificate of `pki_dir`
    /// (a server data directory).
    pub async fn admin_channel(&self, pki_dir: &Path) -> Channel {
        let tls = admin_tls(pki_dir);
        rkube_store::network::endpoint(&self.addr, &tls)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn kv(&self, pki_dir: &Path) -> KvClient<Channel> {
        KvClient::new(self.admin_channel(pki_dir).await)
    }

    pub async fn cluster(&self, pki_dir: &Path) -> ClusterClient<Channel> {
        ClusterClient::new(self.admin_channel(pki_dir).await)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client TLS with the admin certificate a server wrote into its data directory.
pub fn admin_tls(data_dir: &Path) -> tonic::transport::ClientTlsConfig {
    let read = |f: &str| {
        std::fs::read_to_string(data_dir.join("tls").join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    client_tls_config(
        &read("ca.pem"),
        Some(&CertKey {
            cert_pem: read("admin.pem"),
            key_pem: read("admin.key"),
        }),
    )
}

/// Several `rkube server` processes forming one cluster (server 1 creates it, the others join),
/// for faults only a real process shows: SIGSTOP, SIGKILL.
pub struct ProcessCluster {
    pub dir: tempfile::TempDir,
    pub servers: Vec<ServerProcess>,
}

impl ProcessCluster {
    /// Start `n` servers, each with `extra` flags, and wait until all are members.
    pub async fn start(n: usize, extra: &[&str]) -> ProcessCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = rkube_bin();
        let mut servers: Vec<ServerProcess> = Vec::new();
        for i in 1..=n {
            let data = dir.path().join(format!("server-{i}"));
            let id = i.to_string();
            let mut args: Vec<String> = vec!["--node-id".into(), id];
            if i > 1 {
                let token = std::fs::read_to_string(servers[0].data_dir.join("join-token"))
                    .expect("join token");
                args.extend([
                    "--join".into(),
                    servers[0].addr.clone(),
                    "--token".into(),
                    token.trim().to_string(),
                ]);
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut s = ServerProcess::spawn(&bin, &data, free_port(), &refs);
            s.ready().await;
            servers.push(s);
        }
        // The admin kubeconfig is written once the API server's bootstrap is done, which may
        // be after the server says it is ready.
        let kubeconfig = servers[0].data_dir.join("admin.kubeconfig");
        crate::wait::wait_until(Duration::from_secs(30), "the admin kubeconfig", || {
            let exists = kubeconfig.exists();
            async move { exists.then_some(()) }
        })
        .await;
        let c = ProcessCluster { dir, servers };
        let client = c.client();
        crate::wait::wait_until(Duration::from_secs(30), "every member serving", || {
            let client = client.clone();
            async move {
                let m = client.members().await.ok()?;
                (m.members.len() == n && m.members.iter().all(|m| !m.api_addr.is_empty()))
                    .then_some(())
            }
        })
        .await;
        c
    }

    /// An admin client listing every server, server `first` (1-based) first.
    pub fn client_to(&self, first: usize) -> rkube_client::Client {
        let path = self.servers[0].data_dir.join("admin.kubeconfig");
        let mut config = rkube_client::Kubeconfig::load(&path)
            .expect("kubeconfig")
            .client_config()
            .expect("client config");
        config.servers = self.servers.iter().map(|s| s.api_addr.clone()).collect();
        config.servers.rotate_left(first - 1);
        rkube_client::Client::new(config).expect("client")
    }

    pub fn client(&self) -> rkube_client::Client {
        self.client_to(1)
    }

    /// The Raft leader's id as server `via` sees it (0: none).
    pub async fn leader_seen_by(&self, via: usize) -> u64 {
        self.client_to(via)
            .members()
            .await
            .map(|m| m.leader_id)
            .unwrap_or(0)
    }
}
