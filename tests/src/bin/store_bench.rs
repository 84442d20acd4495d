//! `store_bench`: write throughput and latency of a 3-server rkube store next to 3-member etcd.
//!
//! Each side runs as separate server processes on loopback (the release `rkube` binary next to
//! this one, and Debian's `/usr/bin/etcd`). For every concurrency level N, N tasks each keep one
//! `Put` of a random value to `bench/<random key>` in flight; after a one-second warm-up,
//! completions are counted and their latencies recorded in a histogram. The clusters take turns
//! level by level, so that other load on the machine weighs on both alike. Clients are first
//! spread round-robin over the three servers (followers forward writes to the leader), then all
//! sent to the leader.
//!
//! Run: `cargo run --release -p rkube-tests --bin store_bench -- [--clients 1,16,64,256]
//! [--duration-secs 10] [--value-size 256] [--keys 100000] [--skip-etcd]`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rkube_proto::store as pb;
use tokio::time::Instant;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The slice of etcd's KV service the benchmark drives (tests/proto/etcd_kv.proto).
mod etcd {
    tonic::include_proto!("etcdserverpb");
}

const WARMUP: Duration = Duration::from_secs(1);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A request slower than this counts as an error (the write may still be applied).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A failing client pauses before its next request, so a dead server is not hammered in a loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// A benchmark process stall longer than this is reported with the level it happened in.
const STALL_WARNING: Duration = Duration::from_millis(100);
/// Distinct error messages kept per run; further ones are counted under "other".
const MAX_ERROR_KINDS: usize = 10;
const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

#[derive(Parser, Debug)]
#[command(about = "Write benchmark: 3-server rkube store vs 3-member etcd on loopback")]
struct Args {
    /// Concurrency levels: numbers of clients, each with one request in flight.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Measured seconds per level (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Bytes of random value per write.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Size of the key space `bench/0..keys`.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Benchmark only rkube.
    #[arg(long)]
    skip_etcd: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    // Ctrl-C drops `run`'s future, whose process guards then kill the servers.
    let outcome = runtime.map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(async {
            tokio::select! {
                r = run(args) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            }
        })
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) || args.keys == 0 {
        bail!("--clients needs positive numbers (e.g. 1,16,64) and --keys a positive number");
    }
    let exe = std::env::current_exe().context("cannot find the benchmark's own executable")?;
    let rkube_bin = exe.with_file_name("rkube");
    if !rkube_bin.exists() {
        bail!(
            "{} not found: run `cargo build --release` first",
            rkube_bin.display()
        );
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; numbers are only meaningful with --release");
    }
    let logs = tempfile::Builder::new()
        .prefix("store-bench-logs-")
        .tempdir()?
        .keep();
    eprintln!("server logs: {}", logs.display());

    let mut clusters = vec![start_rkube(&rkube_bin, &logs)
        .await
        .context("cannot start the rkube cluster")?];
    if !args.skip_etcd {
        clusters.push(
            start_etcd(&logs)
                .await
                .context("cannot start the etcd cluster")?,
        );
    }
    let mut report = Report::default();
    let (start, busy, client) = (Instant::now(), machine_busy_secs(), cpu_secs("self"));
    let servers_before: Vec<f64> = clusters.iter().map(|c| c.procs.cpu()).collect();
    for c in &clusters {
        report
            .leaders
            .push((c.kind, c.leader_or_warn().await, None));
    }
    measure(&mut clusters, &args, &mut report.rows).await?;
    for (c, leaders) in clusters.iter().zip(&mut report.leaders) {
        leaders.2 = c.leader_or_warn().await;
        report.servers.extend(c.procs.usage());
    }
    let servers_cpu = clusters
        .iter()
        .zip(servers_before)
        .map(|(c, b)| c.procs.cpu() - b);
    report.cpu.servers = clusters.iter().map(|c| c.kind).zip(servers_cpu).collect();
    report.cpu.secs = start.elapsed().as_secs_f64();
    report.cpu.client = cpu_secs("self").zip(client).map(|(b, a)| b - a);
    let busy = machine_busy_secs().zip(busy).map(|(b, a)| b - a);
    let ours = report.cpu.servers.iter().map(|s| s.1).sum::<f64>();
    report.cpu.rest = busy.zip(report.cpu.client).map(|(b, c)| b - c - ours);
    report.print(&args, &logs);
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rkube,
    Etcd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rkube => "rkube",
            Kind::Etcd => "etcd",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Placement {
    /// Client i talks to server (leader + 1 + i) mod 3.
    Spread,
    /// Every client talks to the leader.
    Leader,
}

/// The leader's index among a cluster's addresses and its Raft term, when known.
type Leader = Option<(usize, u64)>;

/// A running 3-server cluster of either kind and how to reach it.
struct Cluster {
    kind: Kind,
    procs: Procs,
    /// Client addresses (host:port), one per server.
    addrs: Vec<String>,
    /// Present for rkube (mutual TLS with the admin certificate); etcd runs plain HTTP.
    tls: Option<ClientTlsConfig>,
    _data: tempfile::TempDir,
}

/// One connection to one server.
enum Client {
    Rkube(pb::kv_client::KvClient<Channel>),
    Etcd(etcd::kv_client::KvClient<Channel>),
}

impl Cluster {
    async fn connect(&self, server: usize) -> Result<Client> {
        let addr = &self.addrs[server];
        let endpoint = match &self.tls {
            Some(tls) => rkube_store::network::endpoint(addr, tls)?,
            None => Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true),
        };
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {} server {addr}", self.kind.name()))?;
        Ok(match self.kind {
            Kind::Rkube => Client::Rkube(pb::kv_client::KvClient::new(channel)),
            Kind::Etcd => Client::Etcd(etcd::kv_client::KvClient::new(channel)),
        })
    }

    /// The leader's index in `addrs` and its Raft term; a failure to learn them is only
    /// reported, since the leader is needed only for the leader pass and the report.
    async fn leader_or_warn(&self) -> Leader {
        let leader = match self.kind {
            Kind::Rkube => rkube_leader(&self.addrs, self.tls.as_ref()).await,
            Kind::Etcd => etcd_leader(&self.addrs).await,
        };
        leader.unwrap_or_else(|e| {
            eprintln!(
                "warning: cannot find the {} leader: {e:#}",
                self.kind.name()
            );
            None
        })
    }
}

impl Client {
    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), tonic::Status> {
        match self {
            Client::Rkube(c) => {
                let req = pb::PutRequest {
                    key,
                    value,
                    ..Default::default()
                };
                c.put(req).await.map(drop)
            }
            Client::Etcd(c) => {
                let req = etcd::PutRequest {
                    key,
                    value,
                    ..Default::default()
                };
                c.put(req).await.map(drop)
            }
        }
    }
}

// ---- cluster start-up -----------------------------------------------------------------------

async fn start_rkube(bin: &Path, logs: &Path) -> Result<Cluster> {
    let data = tempfile::Builder::new().prefix("rkube-bench-").tempdir()?;
    let ports = free_ports(6)?;
    let (addrs, api_addrs) = (loopback(&ports[..3]), loopback(&ports[3..]));
    let dirs: Vec<PathBuf> = (1..=3).map(|n| data.path().join(format!("d{n}"))).collect();
    let server_args = |n: usize| {
        let flags = format!(
            "server --node-id {n} --listen-peer {} --listen-api {}",
            addrs[n - 1],
            api_addrs[n - 1]
        );
        let mut a = words(&flags);
        a.extend(["--data-dir".into(), dirs[n - 1].display().to_string()]);
        a
    };
    let mut procs = Procs::default();
    procs.spawn("rkube-1", bin, &server_args(1), logs)?;
    let (token_file, identity) = (dirs[0].join("join-token"), dirs[0].join("cluster.json"));
    wait_until(&mut procs, "server 1 to create the cluster", || {
        let ready = token_file.exists() && identity.exists();
        async move { Ok(ready.then_some(())) }
    })
    .await?;
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    // One at a time: a membership change must finish before the next starts.
    for n in 2..=3 {
        let mut a = server_args(n);
        a.extend(words(&format!(
            "--join {} --token {}",
            addrs[0],
            token.trim()
        )));
        procs.spawn(&format!("rkube-{n}"), bin, &a, logs)?;
        let identity = dirs[n - 1].join("cluster.json");
        wait_until(&mut procs, &format!("server {n} to join"), || {
            let joined = has_joined(&identity);
            async move { joined.map(|j| j.then_some(())) }
        })
        .await?;
    }
    let read = |file: &str| {
        let path = dirs[0].join("tls").join(file);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let admin = rkube_store::tls::CertKey {
        cert_pem: read("admin.pem")?,
        key_pem: read("admin.key")?,
    };
    let tls = rkube_store::tls::client_tls_config(&read("ca.pem")?, Some(&admin));
    wait_until(&mut procs, "3 voters and a leader", || {
        rkube_leader(&addrs, Some(&tls))
    })
    .await?;
    Ok(Cluster {
        kind: Kind::Rkube,
        procs,
        addrs,
        tls: Some(tls),
        _data: data,
    })
}

/// Whether a joining server's `cluster.json` exists and no longer has a `pending_join`.
fn has_joined(identity: &Path) -> Result<bool> {
    let Ok(raw) = std::fs::read_to_string(identity) else {
        return Ok(false);
    };
    let v: serde_json::Value = serde_json::from_str(&raw)
        .with_context(|| format!("{} is not JSON", identity.display()))?;
    Ok(v.get("pending_join").is_none_or(|p| p.is_null()))
}

/// Asks server 1 for the members: `Some((leader index, term))` once all are voters.
async fn rkube_leader(addrs: &[String], tls: Option<&ClientTlsConfig>) -> Result<Leader> {
    let tls = tls.ok_or_else(|| anyhow!("rkube needs a TLS configuration"))?;
    let channel = rkube_store::network::endpoint(&addrs[0], tls)?
        .connect()
        .await?;
    let r = pb::cluster_client::ClusterClient::new(channel)
        .members(pb::MembersRequest {})
        .await?
        .into_inner();
    let term = r.header.map_or(0, |h| h.raft_term);
    if r.members.iter().filter(|m| m.voter).count() < addrs.len() {
        return Ok(None);
    }
    let leader = r.members.iter().find(|m| m.id == r.leader_id);
    Ok(leader
        .and_then(|m| addrs.iter().position(|a| *a == m.addr))
        .map(|i| (i, term)))
}

async fn start_etcd(logs: &Path) -> Result<Cluster> {
    if !Path::new(ETCD).exists() {
        bail!("{ETCD} not found: run scripts/setup.sh (Debian's etcd-server) or pass --skip-etcd");
    }
    let data = tempfile::Builder::new().prefix("etcd-bench-").tempdir()?;
    let ports = free_ports(6)?;
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let initial: Vec<String> = (0..3)
        .map(|i| format!("e{}={}", i + 1, url(ports[3 + i])))
        .collect();
    let mut procs = Procs::default();
    for i in 0..3 {
        let (name, client, peer) = (format!("e{}", i + 1), url(ports[i]), url(ports[3 + i]));
        let mut a = words(&format!(
            "--name {name} --listen-client-urls {client} --advertise-client-urls {client} \
             --listen-peer-urls {peer} --initial-advertise-peer-urls {peer} \
             --initial-cluster {} --initial-cluster-state new --initial-cluster-token bench",
            initial.join(",")
        ));
        a.extend([
            "--data-dir".into(),
            data.path().join(&name).display().to_string(),
        ]);
        procs.spawn(&format!("etcd-{}", i + 1), Path::new(ETCD), &a, logs)?;
    }
    let (kind, addrs) = (Kind::Etcd, loopback(&ports[..3]));
    // The processes move into the cluster once they all answer (the probes borrow it).
    let mut cluster = Cluster {
        kind,
        procs: Procs::default(),
        addrs,
        tls: None,
        _data: data,
    };
    for i in 0..3 {
        let c = &cluster;
        let what = format!("etcd member {} to accept writes", i + 1);
        wait_until(&mut procs, &what, || async move {
            c.connect(i)
                .await?
                .put(b"bench/ready".to_vec(), b"1".to_vec())
                .await?;
            Ok(Some(()))
        })
        .await?;
    }
    cluster.procs = procs;
    Ok(cluster)
}

/// Reads `etcdctl endpoint status -w json`: the member whose id equals its leader id leads.
async fn etcd_leader(addrs: &[String]) -> Result<Leader> {
    let endpoints: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let out = tokio::process::Command::new(ETCDCTL)
        .args(words(&format!(
            "--endpoints {} endpoint status -w json",
            endpoints.join(",")
        )))
        .output()
        .await
        .with_context(|| format!("cannot run {ETCDCTL}"))?;
    if !out.status.success() {
        bail!(
            "etcdctl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let statuses: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("etcdctl printed no JSON list")?;
    Ok(statuses.iter().find_map(|s| {
        let (header, leader) = (&s["Status"]["header"], s["Status"]["leader"].as_u64());
        let endpoint = s["Endpoint"].as_str()?;
        (header["member_id"].as_u64()? == leader?).then_some(())?;
        let index = addrs.iter().position(|a| endpoint.ends_with(a.as_str()))?;
        Some((index, header["raft_term"].as_u64().unwrap_or(0)))
    }))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn loopback(ports: &[u16]) -> Vec<String> {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

/// Distinct free loopback ports: all are bound before any is released.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot bind a free loopback port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Polls `probe` until it yields a value; fails as soon as a server process exits, or after
/// `STARTUP_TIMEOUT` with the probe's last error and the logs to read.
async fn wait_until<T, F, Fut>(procs: &mut Procs, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last_error = String::from("none");
    loop {
        procs.check_alive()?;
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = procs.0.iter().map(|p| p.2.display().to_string()).collect();
            bail!(
                "timed out after {STARTUP_TIMEOUT:?} waiting for {what} (last error: \
                 {last_error}); logs: {}",
                logs.join(", ")
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Server processes, killed (and waited for) when dropped: on success, error or panic.
#[derive(Default)]
struct Procs(Vec<(String, Child, PathBuf)>);

/// What one server process used: peak RSS (VmHWM) in KiB and CPU time in seconds.
type Usage = (String, Option<u64>, Option<f64>);

impl Procs {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String], logs: &Path) -> Result<()> {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        self.0.push((name.to_string(), child, log));
        Ok(())
    }

    fn check_alive(&mut self) -> Result<()> {
        for (name, child, log) in &mut self.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}); see {}", log.display());
            }
        }
        Ok(())
    }

    /// CPU seconds used so far by all the processes.
    fn cpu(&self) -> f64 {
        let pids = self.0.iter().map(|p| p.1.id().to_string());
        pids.filter_map(|pid| cpu_secs(&pid)).sum()
    }

    fn usage(&self) -> Vec<Usage> {
        let rss = |pid: u32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        self.0
            .iter()
            .map(|(n, c, _)| (n.clone(), rss(c.id()), cpu_secs(&c.id().to_string())))
            .collect()
    }
}

/// CPU time of a process ("self" or a pid): utime + stime, fields 14 and 15 of
/// /proc/<pid>/stat, in clock ticks (100 Hz).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// CPU time all cores spent busy (neither idle nor waiting for I/O), from /proc/stat.
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((ticks.iter().sum::<u64>() - idle) as f64 / 100.0)
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (name, child, _) in &mut self.0 {
            if let Err(e) = child.kill().and_then(|()| child.wait().map(drop)) {
                eprintln!("warning: cannot stop {name} (pid {}): {e}", child.id());
            }
        }
    }
}

// ---- workload -------------------------------------------------------------------------------

/// The outcome of one concurrency level on one cluster (or of one client task).
struct Outcome {
    /// Latency in µs of every write that completed in the measured window.
    latency_us: Histogram<u64>,
    /// Error message → count, for every failed request of the level (warm-up included).
    error_kinds: BTreeMap<String, u64>,
    /// See [`longest_stall`].
    stall: Duration,
}

impl Outcome {
    fn new() -> Result<Outcome> {
        let latency_us = Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
        let error_kinds = BTreeMap::new();
        let stall = Duration::ZERO;
        Ok(Outcome {
            latency_us,
            error_kinds,
            stall,
        })
    }

    fn errors(&self) -> u64 {
        self.error_kinds.values().sum()
    }

    fn error(&mut self, message: String, count: u64) {
        let known = self.error_kinds.contains_key(&message);
        let key = if known || self.error_kinds.len() < MAX_ERROR_KINDS {
            message
        } else {
            "other".into()
        };
        *self.error_kinds.entry(key).or_default() += count;
    }

    fn merge(&mut self, other: Outcome) -> Result<()> {
        self.latency_us.add(&other.latency_us)?;
        other
            .error_kinds
            .into_iter()
            .for_each(|(m, n)| self.error(m, n));
        Ok(())
    }
}

/// Runs every concurrency level in both placements, the clusters taking turns at each level so
/// that whatever else the machine is doing meanwhile weighs on both alike.
async fn measure(
    clusters: &mut [Cluster],
    args: &Args,
    rows: &mut BTreeMap<(Placement, usize), Row>,
) -> Result<()> {
    for placement in [Placement::Spread, Placement::Leader] {
        for &n in &args.clients {
            for cluster in clusters.iter_mut() {
                let count = cluster.addrs.len();
                let servers: Vec<usize> = match (placement, cluster.leader_or_warn().await) {
                    // Start after the leader, so that even a single client goes through a follower.
                    (Placement::Spread, leader) => {
                        let first = leader.map_or(0, |(l, _)| l + 1);
                        (first..first + count).map(|i| i % count).collect()
                    }
                    (Placement::Leader, Some((l, _))) => vec![l],
                    (Placement::Leader, None) => {
                        eprintln!("{}: leader unknown; skipping", cluster.kind.name());
                        continue;
                    }
                };
                eprintln!("{} {placement:?} {n} clients ...", cluster.kind.name());
                let outcome = run_level(cluster, &servers, n, args).await?;
                cluster.procs.check_alive()?;
                let row = rows.entry((placement, n)).or_default();
                match cluster.kind {
                    Kind::Rkube => row.rkube = Some(outcome),
                    Kind::Etcd => row.etcd = Some(outcome),
                }
            }
        }
    }
    Ok(())
}

/// N clients over `servers` round-robin, each with one request in flight, for warm-up + duration.
async fn run_level(cluster: &Cluster, servers: &[usize], n: usize, args: &Args) -> Result<Outcome> {
    let connects = (0..n).map(|i| cluster.connect(servers[i % servers.len()]));
    let clients = futures::future::try_join_all(connects).await?;
    let measure_from = Instant::now() + WARMUP;
    let until = measure_from + Duration::from_secs(args.duration_secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            tokio::spawn(client_loop(
                c,
                args.keys,
                args.value_size,
                measure_from,
                until,
            ))
        })
        .collect();
    let stall = tokio::spawn(longest_stall(until));
    let mut total = Outcome::new()?;
    for task in tasks {
        total.merge(task.await.context("a client task panicked")??)?;
    }
    total.stall = stall.await.context("the stall watchdog panicked")?;
    Ok(total)
}

/// The longest time a 10 ms timer of this process fired late before `until`: a long one means
/// the benchmark (and likely the whole machine) did not get the CPU, so the level's latencies
/// say more about the machine than about the servers.
async fn longest_stall(until: Instant) -> Duration {
    let mut longest = Duration::ZERO;
    while Instant::now() < until {
        let asleep = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        longest = longest.max(asleep.elapsed().saturating_sub(Duration::from_millis(10)));
    }
    longest
}

async fn client_loop(
    mut client: Client,
    keys: u64,
    value_size: usize,
    measure_from: Instant,
    until: Instant,
) -> Result<Outcome> {
    let mut rng = StdRng::from_os_rng();
    let mut value = vec![0u8; value_size];
    let mut outcome = Outcome::new()?;
    loop {
        let sent = Instant::now();
        if sent >= until {
            return Ok(outcome);
        }
        let key = format!("bench/{}", rng.random_range(0..keys)).into_bytes();
        rng.fill(&mut value[..]);
        let result = tokio::time::timeout(REQUEST_TIMEOUT, client.put(key, value.clone())).await;
        let done = Instant::now();
        let message = match result {
            Ok(Ok(())) if done >= measure_from && done <= until => {
                let micros = u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX);
                outcome.latency_us.saturating_record(micros);
                continue;
            }
            Ok(Ok(())) => continue,
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
        };
        outcome.error(message, 1);
        tokio::time::sleep(ERROR_BACKOFF).await;
    }
}

// ---- report ---------------------------------------------------------------------------------

#[derive(Default)]
struct Row {
    rkube: Option<Outcome>,
    etcd: Option<Outcome>,
}

#[derive(Default)]
struct Report {
    rows: BTreeMap<(Placement, usize), Row>,
    servers: Vec<Usage>,
    /// Each cluster's leader (index, term) before and after the runs.
    leaders: Vec<(Kind, Leader, Leader)>,
    cpu: CpuShare,
}

/// Who used the machine's CPU, in seconds, while the levels ran.
#[derive(Default)]
struct CpuShare {
    secs: f64,
    servers: Vec<(Kind, f64)>,
    client: Option<f64>,
    /// Everything else: other processes, kernel threads (file-system journal), interrupts.
    rest: Option<f64>,
}

impl Report {
    fn print(&self, args: &Args, logs: &Path) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let (secs, size, keys) = (args.duration_secs, args.value_size, args.keys);
        println!(
            "\n## Store write benchmark\n\n\
             Put of {size} random bytes to `bench/<0..{keys}>`; {secs} s measured per level after \
             a 1 s warm-up; one connection per client, one request in flight each.\n\
             All processes share this {cores}-core machine: the benchmark client (a multi-threaded \
             tokio runtime) and both clusters, which take turns level by level (the idle one only \
             sends heartbeats).\n\
             rkube: mutual TLS gRPC. *spread*: clients round-robin over the 3 servers, starting \
             with a follower (followers forward writes to the leader); *leader*: all on the leader."
        );
        if !args.skip_etcd {
            println!(
                "etcd 3.4: plain-text gRPC without TLS on loopback, which favours it (no \
                 encryption cost on client or server)."
            );
        }
        println!(
            "Latencies in ms; ratio = rkube writes/s ÷ etcd writes/s; `*` = the run had errors.\n"
        );
        println!(
            "| clients | rkube writes/s | rkube p50 | rkube p99 | rkube max | etcd writes/s \
             | etcd p50 | etcd p99 | etcd max | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let rate = |o: &Outcome| o.latency_us.len() as f64 / secs as f64;
        for ((placement, n), row) in &self.rows {
            let ratio = match (&row.rkube, &row.etcd) {
                (Some(r), Some(e)) if rate(e) > 0.0 => format!("{:.2}", rate(r) / rate(e)),
                _ => "–".to_string(),
            };
            let placement = format!("{placement:?}").to_lowercase();
            let cells = |o: &Option<Outcome>| match o {
                None => "– | – | – | –".to_string(),
                Some(o) => {
                    let h = &o.latency_us;
                    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
                    let mark = if o.errors() > 0 { "*" } else { "" };
                    let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
                    format!(
                        "{:.0}{mark} | {} | {} | {}",
                        rate(o),
                        ms(p50),
                        ms(p99),
                        ms(h.max())
                    )
                }
            };
            println!(
                "| {n} ({placement}) | {} | {} | {ratio} |",
                cells(&row.rkube),
                cells(&row.etcd)
            );
        }
        println!("\nServer processes (peak RSS = VmHWM at the end; CPU = user + system time):\n");
        for (name, rss, cpu) in &self.servers {
            let rss = rss.map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0));
            let cpu = cpu.map_or("?".into(), |s| format!("{s:.1} s"));
            println!("- {name}: peak RSS {rss}, CPU {cpu}");
        }
        println!();
        let c = &self.cpu;
        let secs = |s: Option<f64>| s.map_or("?".into(), |s| format!("{s:.0} s"));
        let servers: Vec<String> = c
            .servers
            .iter()
            .map(|(k, s)| format!("{} servers {s:.0} s", k.name()))
            .collect();
        println!(
            "CPU while measuring ({:.0} s × {cores} cores = {:.0} core-seconds): {}, benchmark \
             client {}, everything else on the machine (other processes, kernel threads, \
             interrupts) {}.",
            c.secs,
            c.secs * cores as f64,
            servers.join(", "),
            secs(c.client),
            secs(c.rest)
        );
        for (kind, before, after) in &self.leaders {
            let show = |l: &Leader| {
                l.map_or("unknown".into(), |(i, t)| {
                    format!("server {} (term {t})", i + 1)
                })
            };
            let (before, after) = (show(before), show(after));
            let changed = if before == after {
                ""
            } else {
                " (leadership changed under load)"
            };
            println!(
                "{} leader: {before} before, {after} after{changed}.",
                kind.name()
            );
        }
        let mut failed = 0;
        for ((placement, n), row) in &self.rows {
            for (kind, outcome) in [("rkube", &row.rkube), ("etcd", &row.etcd)] {
                if let Some(o) = outcome.as_ref().filter(|o| o.stall > STALL_WARNING) {
                    let stall = o.stall.as_millis();
                    println!("{kind} {placement:?} with {n} clients: the benchmark process stalled \
                              for {stall} ms at once (machine overloaded?); take this row with care.");
                }
                let Some(o) = outcome.as_ref().filter(|o| o.errors() > 0) else {
                    continue;
                };
                failed += o.errors();
                println!(
                    "\n{kind} {placement:?} with {n} clients: {} failed requests:",
                    o.errors()
                );
                o.error_kinds
                    .iter()
                    .for_each(|(m, c)| println!("  {c} × {m}"));
            }
        }
        match failed {
            0 => println!("\nNo request failed. Server logs: {}", logs.display()),
            _ => println!(
                "\nTHIS RUN HAD {failed} FAILED REQUESTS (above). Server logs: {}",
                logs.display()
            ),
        }
    }
}
