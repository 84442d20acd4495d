//! Fault injection for the chaos suite: the faults, a [`Backend`] that injects them into one
//! deployment, and the process backend: `rkube server` child processes on fixed loopback ports,
//! crashed with SIGKILL, paused with SIGSTOP, and partitioned through each server's
//! `--peer-fault-file` (the peer ids its Raft transport refuses to send to).
//!
//! Why the fault file rather than a TCP proxy per peer link: the peer transport already has a
//! switch of blocked peers that covers every replica-to-replica request (Raft, forwarded writes,
//! read-index), a blocked link fails at once like an unreachable peer, and nothing sits on the
//! data path when no fault is active. A one-way drop is one server's file naming the other.
//! The docker mode's backend is [`super::docker::DockerBackend`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// A server, by its index in the cluster (node id = index + 1).
pub type ServerIx = usize;

/// What a backend can do to the servers of one deployment.
pub trait Backend: Send {
    /// Which mode this is, printed with the verdict.
    fn mode(&self) -> &'static str;
    fn servers(&self) -> usize;
    /// The Raft node id of a server.
    fn node_id(&self, server: ServerIx) -> u64 {
        server as u64 + 1
    }
    /// The API address of each server.
    fn api_addrs(&self) -> Vec<String>;
    /// The peer (store) address of each server.
    fn peer_addrs(&self) -> Vec<String>;
    /// A directory holding `admin.kubeconfig` and the admin's `tls/` credentials.
    fn admin_dir(&self) -> &Path;
    /// Crash the server (SIGKILL).
    fn kill(&mut self, server: ServerIx) -> anyhow::Result<()>;
    /// Start a crashed or stopped server again from its data.
    fn restart(&mut self, server: ServerIx) -> anyhow::Result<()>;
    fn pause(&mut self, server: ServerIx) -> anyhow::Result<()>;
    fn resume(&mut self, server: ServerIx) -> anyhow::Result<()>;
    /// Make `from` unable to send to every server in `to` (replacing what it blocked before).
    fn block(&mut self, from: ServerIx, to: &BTreeSet<ServerIx>) -> anyhow::Result<()>;
    /// Whether the server's process is up (not killed).
    fn is_running(&mut self, server: ServerIx) -> bool;
    /// Start a fresh server (empty data) that joins the cluster as node `id` through server
    /// `via`, becoming a voter on its own (the membership-change fault). It is not one of
    /// [`Backend::servers`]: no other fault touches it.
    fn start_joiner(&mut self, id: u64, via: ServerIx) -> anyhow::Result<()>;
    /// Stop a joiner (after it was removed from the membership) and throw its data away.
    fn stop_joiner(&mut self, id: u64) -> anyhow::Result<()>;
}

/// One fault, with its targets chosen when it is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the leader; restart it when healing.
    KillLeader,
    /// SIGKILL a random server; restart it when healing.
    KillRandom,
    /// SIGSTOP the leader; SIGCONT when healing.
    PauseLeader,
    /// SIGKILL every server and start them all again at once.
    RestartAll,
    /// Cut the leader off from the others, both ways.
    IsolateLeader,
    /// Cut a random follower off (majority with the leader, minority alone).
    SplitMinority,
    /// The leader cannot send to anyone; it still receives.
    OneWayFromLeader,
    /// Kill the agent of the node with the most Deployment pods; start it again when healing
    /// (after its pods run elsewhere).
    KillAgent,
    /// A fresh fourth server joins and becomes a voter; it is removed again when healing.
    MembershipChange,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillLeader,
        FaultKind::KillRandom,
        FaultKind::PauseLeader,
        FaultKind::RestartAll,
        FaultKind::IsolateLeader,
        FaultKind::SplitMinority,
        FaultKind::OneWayFromLeader,
        FaultKind::KillAgent,
        FaultKind::MembershipChange,
    ];

    /// Whether [`inject`] handles it (server faults); the runner handles the others, which
    /// need the API (agents, membership).
    pub fn is_server_fault(self) -> bool {
        !matches!(self, FaultKind::KillAgent | FaultKind::MembershipChange)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).expect("serializes");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

/// What has to be undone when a fault heals.
#[derive(Debug, Default, Clone)]
pub struct Damage {
    pub killed: BTreeSet<ServerIx>,
    pub paused: BTreeSet<ServerIx>,
    pub partitioned: bool,
}

/// Inject `kind` given the current leader (if known); returns a description of what was done.
pub fn inject(
    backend: &mut dyn Backend,
    kind: FaultKind,
    leader: Option<ServerIx>,
    pick: &mut impl FnMut(usize) -> usize,
    damage: &mut Damage,
) -> anyhow::Result<String> {
    let n = backend.servers();
    let healthy: Vec<ServerIx> = (0..n)
        .filter(|s| !damage.killed.contains(s) && !damage.paused.contains(s))
        .collect();
    let leader = leader
        .filter(|l| healthy.contains(l))
        .or_else(|| healthy.first().copied());
    let Some(leader) = leader else {
        return Ok(format!("{kind}: skipped, no healthy server"));
    };
    let random = healthy[pick(healthy.len())];
    let others = |s: ServerIx| -> BTreeSet<ServerIx> { (0..n).filter(|&o| o != s).collect() };
    let node = |s: ServerIx| backend_node(s);
    Ok(match kind {
        FaultKind::KillAgent | FaultKind::MembershipChange => {
            anyhow::bail!("{kind} is not a server fault: the runner injects it")
        }
        FaultKind::KillLeader => {
            backend.kill(leader)?;
            damage.killed.insert(leader);
            format!("SIGKILL leader {}", node(leader))
        }
        FaultKind::KillRandom => {
            backend.kill(random)?;
            damage.killed.insert(random);
            format!("SIGKILL {}", node(random))
        }
        FaultKind::PauseLeader => {
            backend.pause(leader)?;
            damage.paused.insert(leader);
            format!("SIGSTOP leader {}", node(leader))
        }
        FaultKind::RestartAll => {
            for s in 0..n {
                if backend.is_running(s) {
                    backend.kill(s)?;
                }
            }
            for s in 0..n {
                backend.restart(s)?;
                damage.killed.remove(&s);
                damage.paused.remove(&s);
            }
            "SIGKILL every server, then start them all".to_string()
        }
        FaultKind::IsolateLeader => {
            isolate(backend, leader, &others(leader))?;
            damage.partitioned = true;
            format!("isolate leader {}", node(leader))
        }
        FaultKind::SplitMinority => {
            let follower = healthy
                .iter()
                .copied()
                .filter(|&s| s != leader)
                .nth(pick(healthy.len().saturating_sub(1).max(1)))
                .unwrap_or(random);
            isolate(backend, follower, &others(follower))?;
            damage.partitioned = true;
            format!("isolate follower {} (minority)", node(follower))
        }
        FaultKind::OneWayFromLeader => {
            backend.block(leader, &others(leader))?;
            damage.partitioned = true;
            format!("drop everything leader {} sends", node(leader))
        }
    })
}

fn backend_node(s: ServerIx) -> String {
    format!("server {}", s + 1)
}

/// Cut `server` off from `others` in both directions.
fn isolate(
    backend: &mut dyn Backend,
    server: ServerIx,
    others: &BTreeSet<ServerIx>,
) -> anyhow::Result<()> {
    backend.block(server, others)?;
    for &o in others {
        backend.block(o, &BTreeSet::from([server]))?;
    }
    Ok(())
}

/// Undo everything `damage` records: heal the network, resume paused and restart killed servers.
pub fn heal(backend: &mut dyn Backend, damage: &mut Damage) -> anyhow::Result<()> {
    if damage.partitioned {
        for s in 0..backend.servers() {
            backend.block(s, &BTreeSet::new())?;
        }
        damage.partitioned = false;
    }
    for s in std::mem::take(&mut damage.paused) {
        backend.resume(s)?;
    }
    for s in std::mem::take(&mut damage.killed) {
        backend.restart(s)?;
    }
    Ok(())
}

/// One `rkube server` child process with fixed ports, so it comes back at the same addresses.
struct Server {
    data_dir: PathBuf,
    peer_addr: String,
    api_addr: String,
    fault_file: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Flags for the first start only (joining).
    first_start: Vec<String>,
}

/// The process backend: servers as child processes of this program.
pub struct ProcessBackend {
    bin: PathBuf,
    servers: Vec<Server>,
    extra: Vec<String>,
    data_dir: PathBuf,
    log_dir: PathBuf,
    joiners: std::collections::BTreeMap<u64, Child>,
}

impl ProcessBackend {
    /// Start `n` servers with data under `data_dir` and logs under `log_dir`: server 1 creates
    /// the cluster, the others join it. Returns once every process has logged that it is ready.
    pub async fn start(
        bin: &Path,
        n: usize,
        data_dir: &Path,
        log_dir: &Path,
        extra: &[String],
    ) -> anyhow::Result<ProcessBackend> {
        let mut backend = ProcessBackend {
            bin: bin.to_path_buf(),
            servers: Vec::new(),
            extra: extra.to_vec(),
            data_dir: data_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            joiners: Default::default(),
        };
        for i in 0..n {
            let port = |_| crate::process::free_port();
            let mut server = Server {
                data_dir: data_dir.join(format!("server-{}", i + 1)),
                peer_addr: format!("127.0.0.1:{}", port(())),
                api_addr: format!("127.0.0.1:{}", port(())),
                fault_file: data_dir.join(format!("peer-faults-{}", i + 1)),
                log: log_dir.join(format!("server-{}.log", i + 1)),
                child: None,
                first_start: Vec::new(),
            };
            if i > 0 {
                let first = &backend.servers[0];
                let token = std::fs::read_to_string(first.data_dir.join("join-token"))
                    .context("reading the join token of server 1")?;
                server.first_start = vec![
                    "--join".into(),
                    first.peer_addr.clone(),
                    "--token".into(),
                    token.trim().to_string(),
                ];
            }
            backend.servers.push(server);
            backend.spawn(i, true)?;
            backend.ready(i).await?;
        }
        Ok(backend)
    }

    fn spawn(&mut self, i: ServerIx, first: bool) -> anyhow::Result<()> {
        let s = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .with_context(|| format!("opening {}", s.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&s.data_dir)
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--listen-peer", &s.peer_addr])
            .args(["--listen-api", &s.api_addr])
            .arg("--peer-fault-file")
            .arg(&s.fault_file)
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if first {
            cmd.args(&s.first_start);
        }
        s.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", self.bin.display()))?,
        );
        Ok(())
    }

    /// Wait until server `i` logs readiness for the first time.
    async fn ready(&mut self, i: ServerIx) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let log = std::fs::read_to_string(&self.servers[i].log).unwrap_or_default();
            if log.contains("rkube server is ready") {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.servers[i].child.as_mut().map(Child::try_wait) {
                anyhow::bail!(
                    "server {} exited with {status} before it was ready:\n{log}",
                    i + 1
                );
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("server {} not ready within 60 s:\n{log}", i + 1);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Stop every server (SIGCONT first, in case one is paused).
    pub fn shutdown(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.joiners) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for s in &mut self.servers {
            if let Some(mut c) = s.child.take() {
                let _ = signal(&c, "CONT");
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for ProcessBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn signal(child: &Child, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{sig} {} failed", child.id());
    Ok(())
}

impl Backend for ProcessBackend {
    fn mode(&self) -> &'static str {
        "process mode: faults by signals and a fault-injecting peer transport"
    }

    fn servers(&self) -> usize {
        self.servers.len()
    }

    fn api_addrs(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.api_addr.clone()).collect()
    }

    fn peer_addrs(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.peer_addr.clone()).collect()
    }

    /// Server 1's data directory.
    fn admin_dir(&self) -> &Path {
        &self.servers[0].data_dir
    }

    fn kill(&mut self, i: ServerIx) -> anyhow::Result<()> {
        if let Some(mut c) = self.servers[i].child.take() {
            c.kill().context("SIGKILL")?;
            c.wait().context("reaping a killed server")?;
        }
        Ok(())
    }

    fn restart(&mut self, i: ServerIx) -> anyhow::Result<()> {
        if !self.is_running(i) {
            self.spawn(i, false)?;
        }
        Ok(())
    }

    fn pause(&mut self, i: ServerIx) -> anyhow::Result<()> {
        match &self.servers[i].child {
            Some(c) => signal(c, "STOP"),
            None => anyhow::bail!("server {} is not running; cannot pause it", i + 1),
        }
    }

    fn resume(&mut self, i: ServerIx) -> anyhow::Result<()> {
        match &self.servers[i].child {
            Some(c) => signal(c, "CONT"),
            None => Ok(()),
        }
    }

    fn block(&mut self, from: ServerIx, to: &BTreeSet<ServerIx>) -> anyhow::Result<()> {
        let ids: Vec<String> = to.iter().map(|&s| self.node_id(s).to_string()).collect();
        let file = &self.servers[from].fault_file;
        // Write then rename, so the server never reads half a file.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, ids.join("\n"))
            .and_then(|()| std::fs::rename(&tmp, file))
            .with_context(|| format!("writing {}", file.display()))
    }

    fn start_joiner(&mut self, id: u64, via: ServerIx) -> anyhow::Result<()> {
        let token = std::fs::read_to_string(self.servers[0].data_dir.join("join-token"))
            .context("reading the join token of server 1")?;
        let data = self.data_dir.join(format!("joiner-{id}"));
        let log_path = self.log_dir.join(format!("server-{id}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--node-id", &id.to_string()])
            .args([
                "--listen-peer",
                &format!("127.0.0.1:{}", crate::process::free_port()),
            ])
            .args([
                "--listen-api",
                &format!("127.0.0.1:{}", crate::process::free_port()),
            ])
            .args([
                "--join",
                &self.servers[via].peer_addr,
                "--token",
                token.trim(),
            ])
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.joiners.insert(id, child);
        Ok(())
    }

    fn stop_joiner(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut c) = self.joiners.remove(&id) {
            c.kill().context("SIGKILL")?;
            c.wait().context("reaping a joiner")?;
            let data = self.data_dir.join(format!("joiner-{id}"));
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("removing {}", data.display()))?;
        }
        Ok(())
    }

    fn is_running(&mut self, i: ServerIx) -> bool {
        match self.servers[i].child.as_mut() {
            None => false,
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                _ => {
                    self.servers[i].child = None;
                    false
                }
            },
        }
    }
}
