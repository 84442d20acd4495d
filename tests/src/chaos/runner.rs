//! A chaos run: start a cluster through a [`Backend`], run the workload, the Deployment and the
//! watches while faults are injected on a seeded random schedule, heal, settle, and hand every
//! recording to the checkers; the verdict, the fault table and the failover figures are printed
//! and the raw histories written to the output directory.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rkube_client::{Client, ClientConfig, KindRef, ListParams};
use serde_json::json;

use super::deployment::{self, Change};
use super::docker::{self as docker_mode, DockerBackend, DockerOptions};
use super::faults::{self, Backend, Damage, FaultKind, ProcessBackend, ServerIx};
use super::history::{FinalState, History, ObjectState};
use super::linearizability::CheckOptions;
use super::membership;
use super::nodes::{self, Nodes};
use super::report::{self, Failover, FaultRecord, NodeLoss};
use super::settle::{
    fail, pass, replicas_identical, store_status, wait_deployment, wait_recovered,
};
use super::verdict::{check_all, Verdict};
use super::watch::WatchLog;
use super::workload::{self, Channels, Clock, Recorder, StopFlag, WorkloadOptions, NAMESPACE};

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub seed: u64,
    /// "quick" or "soak", printed.
    pub name: String,
    /// How long faults are injected (at least until the fixed schedule of every kind once and
    /// the combined faults is through).
    pub duration: Duration,
    pub servers: usize,
    pub sim_nodes: usize,
    pub workload: WorkloadOptions,
    /// How long one fault stays before it heals (a random time in this range).
    pub hold: (Duration, Duration),
    /// The pause between healing (once recovered) and the next fault.
    pub quiet: (Duration, Duration),
    /// The linearizability search's budget per key.
    pub budget_per_key: Duration,
    pub rkube_bin: PathBuf,
    pub out_dir: PathBuf,
}

impl RunOptions {
    /// The CI run: every fault kind once, plus combined faults, in about two minutes of faults.
    pub fn quick(rkube_bin: PathBuf, out_dir: PathBuf, seed: u64) -> RunOptions {
        RunOptions {
            seed,
            name: "quick".into(),
            duration: Duration::from_secs(75),
            servers: 3,
            sim_nodes: 3,
            workload: WorkloadOptions {
                clients: 10,
                keys: 16,
                request_timeout: Duration::from_secs(2),
            },
            hold: (Duration::from_secs(2), Duration::from_secs(5)),
            quiet: (Duration::from_millis(500), Duration::from_secs(2)),
            budget_per_key: Duration::from_secs(10),
            rkube_bin,
            out_dir,
        }
    }

    /// A soak run of `duration` with longer faults.
    pub fn soak(rkube_bin: PathBuf, out_dir: PathBuf, seed: u64, duration: Duration) -> Self {
        RunOptions {
            name: "soak".into(),
            duration,
            workload: WorkloadOptions {
                clients: 12,
                keys: 32,
                request_timeout: Duration::from_secs(3),
            },
            hold: (Duration::from_secs(2), Duration::from_secs(15)),
            quiet: (Duration::from_secs(1), Duration::from_secs(5)),
            budget_per_key: Duration::from_secs(60),
            ..Self::quick(rkube_bin, out_dir, seed)
        }
    }
}

/// The outcome of a run.
pub struct RunReport {
    pub mode: String,
    pub verdict: Verdict,
    pub faults: Vec<FaultRecord>,
    pub failovers: Vec<Failover>,
    pub node_losses: Vec<NodeLoss>,
    /// The verdict, fault table and failover figures as printed.
    pub text: String,
}

/// Server flags of a chaos run: history is kept long enough that a watch can always resume
/// from where it broke, and a silent node's pods are evicted after seconds rather than minutes
/// (so the agent-kill fault's pods run elsewhere within the fault).
fn server_flags(options: &RunOptions) -> Vec<String> {
    let compaction = format!("{}s", (options.duration.as_secs() * 2).max(3600));
    [
        "--compaction-interval",
        &compaction,
        "--node-monitor-grace-period",
        "10s",
        "--default-toleration-seconds",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

/// Run the suite in docker mode where Docker allows it, else in process mode; the report says
/// which (and why not docker).
pub async fn run_best(
    options: RunOptions,
    repo_root: &std::path::Path,
) -> anyhow::Result<RunReport> {
    match docker_mode::unavailable() {
        None => run_docker(options, repo_root).await,
        Some(why) => {
            println!("chaos: docker mode unavailable ({why}); running in process mode");
            run_processes(options).await
        }
    }
}

/// Run the suite against the compose deployment of `deploy/` (see [`super::docker`]), its
/// image built from `options.rkube_bin`.
pub async fn run_docker(
    options: RunOptions,
    repo_root: &std::path::Path,
) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("creating {}", options.out_dir.display()))?;
    let server_flags = server_flags(&options).join(" ");
    let docker_options = DockerOptions {
        repo_root,
        rkube_bin: &options.rkube_bin,
        out_dir: &options.out_dir,
        server_flags: &server_flags,
        agent_flags: "--heartbeat-interval 2s",
    };
    println!("chaos: building the image and starting the compose deployment");
    let mut backend = tokio::task::block_in_place(|| DockerBackend::start(&docker_options))?;
    let mut agents = Nodes::Containers(backend.agents());
    let result = run_on(&mut backend, &mut agents, &options).await;
    tokio::task::block_in_place(|| backend.shutdown());
    result
}

/// Run the suite against server processes of this checkout's `rkube` binary.
pub async fn run_processes(options: RunOptions) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("creating {}", options.out_dir.display()))?;
    let data = tempfile::tempdir().context("creating a data directory")?;
    let extra = server_flags(&options);
    let mut backend = ProcessBackend::start(
        &options.rkube_bin,
        options.servers,
        data.path(),
        &options.out_dir,
        &extra,
    )
    .await?;
    let mut sim_nodes = Nodes::simulated(options.sim_nodes);
    let result = run_on(&mut backend, &mut sim_nodes, &options).await;
    backend.shutdown();
    result
}

/// Connect to the backend's cluster as its admin and run.
async fn run_on<B: Backend>(
    backend: &mut B,
    nodes: &mut Nodes,
    options: &RunOptions,
) -> anyhow::Result<RunReport> {
    let path = backend.admin_dir().join("admin.kubeconfig");
    let mut config = rkube_client::Kubeconfig::load(&path)
        .with_context(|| format!("loading {}", path.display()))?
        .client_config()?;
    config.servers = backend.api_addrs();
    let pki = backend.admin_dir().to_path_buf();
    let peers = backend.peer_addrs();
    run(backend, nodes, config, options, |revision_probe| {
        let pki = pki.clone();
        let peers = peers.clone();
        async move { store_status(&pki, &peers, revision_probe).await }
    })
    .await
}

/// The run proper, against any backend; `status` reads every server's revision and hash.
async fn run<B, S, F>(
    backend: &mut B,
    nodes: &mut Nodes,
    config: ClientConfig,
    options: &RunOptions,
    status: S,
) -> anyhow::Result<RunReport>
where
    B: Backend,
    S: Fn(()) -> F,
    F: std::future::Future<Output = Vec<Option<(i64, String)>>>,
{
    let mode = backend.mode().to_string();
    println!(
        "chaos {} run, {mode}; seed {} (rerun with --seed {})",
        options.name, options.seed, options.seed
    );
    let mut rng = StdRng::seed_from_u64(options.seed);
    let client = Client::new(config.clone())?;
    let per_server: Vec<Client> = backend
        .api_addrs()
        .into_iter()
        .map(|a| {
            Client::new(ClientConfig {
                servers: vec![a],
                ..config.clone()
            })
        })
        .collect::<Result<_, _>>()?;
    wait_recovered(&per_server, Duration::from_secs(60))
        .await
        .context("the cluster did not come up")?;

    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    client
        .create(&ns, "")
        .await
        .context("creating the namespace")?;
    nodes.start(&client).await?;
    client
        .create(&deployment::manifest(3), NAMESPACE)
        .await
        .context("creating the Deployment")?;
    let (mut replicas, mut version) = (3i32, 1u32);
    wait_deployment(&client, replicas, version, Duration::from_secs(90)).await?;
    println!("cluster up, Deployment ready; starting the workload");

    let clock = Clock::start();
    let channels = Channels::new(&ClientConfig {
        servers: backend.api_addrs(),
        ..config.clone()
    })?;
    let start = client
        .list(&KindRef::resource("configmaps"), &list_params())
        .await?
        .resource_version
        .parse()
        .context("a list resourceVersion")?;
    let stop = StopFlag::default();
    let recorder = Arc::new(Recorder::default());
    let known = workload::Known::default();
    let mut watches = Vec::new();
    for s in 0..backend.servers() {
        let log = Arc::new(Mutex::new(WatchLog::new(
            format!("server-{}", s + 1),
            format!("{NAMESPACE}/"),
            start,
        )));
        let task = tokio::spawn(workload::run_watch(
            format!("server-{}", s + 1),
            channels.clone(),
            s,
            start,
            log.clone(),
        ));
        watches.push((log, task));
    }
    let mut clients = Vec::new();
    for id in 0..options.workload.clients {
        clients.push(tokio::spawn(workload::run_client(
            id,
            workload::Shared {
                seed: options.seed,
                channels: channels.clone(),
                options: options.workload.clone(),
                clock,
                known: known.clone(),
                stop: stop.clone(),
                recorder: recorder.clone(),
            },
        )));
    }

    // The fault schedule: every kind once in a seeded order, then combined and random ones.
    let mut schedule: Vec<Vec<FaultKind>> = FaultKind::ALL.iter().map(|&k| vec![k]).collect();
    schedule.shuffle(&mut rng);
    schedule.push(vec![FaultKind::IsolateLeader, FaultKind::KillRandom]);
    schedule.push(vec![FaultKind::PauseLeader, FaultKind::SplitMinority]);
    let mut faults = Vec::new();
    let mut failover_tasks = Vec::new();
    let mut not_recovered = Vec::new();
    let mut node_losses = Vec::new();
    let mut next_joiner = backend.servers() as u64 + 1;
    let began = Instant::now();
    // Faults start once the workload has writes acknowledged on several keys,
    // so the history holds operations from before the first fault.
    let warm = (options.workload.clients.min(options.workload.keys) / 2).max(1) as usize;
    crate::wait::wait_until(Duration::from_secs(60), "the workload under way", || {
        let seen = known.lock().expect("known").len();
        async move { (seen >= warm).then_some(()) }
    })
    .await;
    let mut step = 0usize;
    while began.elapsed() < options.duration || step < schedule.len() {
        let kinds = match schedule.get(step) {
            Some(k) => k.clone(),
            None => {
                let n = if rng.random_bool(0.3) { 2 } else { 1 };
                (0..n)
                    .map(|_| FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())])
                    .collect()
            }
        };
        step += 1;
        let leader = leader(&client).await;
        let mut damage = Damage::default();
        let mut described = Vec::new();
        // A joiner starts first, while every server runs: in docker mode a container created
        // while a server is down could take the address that server comes back at.
        let mut joiner = None;
        if kinds.contains(&FaultKind::MembershipChange) {
            let id = next_joiner;
            next_joiner += 1;
            let via = leader.filter(|&l| l < backend.servers()).unwrap_or(0);
            backend.start_joiner(id, via)?;
            let c = client.clone();
            let task = tokio::spawn(async move {
                membership::wait_voter(&c, id, Instant::now(), Duration::from_secs(60)).await
            });
            described.push(format!("server {id} joins through server {}", via + 1));
            joiner = Some((id, task));
        }
        for &kind in kinds.iter().filter(|k| k.is_server_fault()) {
            let mut pick = |n: usize| rng.random_range(0..n.max(1));
            described.push(faults::inject(
                backend,
                kind,
                leader,
                &mut pick,
                &mut damage,
            )?);
        }
        // Unavailability counts from the moment the fault is in place (a docker command or a
        // set of iptables rules takes a while; writes finishing meanwhile do not count).
        let at = clock.now();
        let killed_at = Instant::now();
        // The faults that need the API: an agent killed, a server joining.
        let mut node_down = None;
        if kinds.contains(&FaultKind::KillAgent) {
            let names = nodes.names();
            let i = nodes::busiest(&client, &names).await;
            nodes.kill(i)?;
            let (c, dead) = (client.clone(), names[i].clone());
            let task = tokio::spawn(async move {
                nodes::running_elsewhere(&c, &dead, killed_at, Duration::from_secs(120)).await
            });
            described.push(format!("kill the agent of node {}", names[i]));
            node_down = Some((i, names[i].clone(), task));
        }
        // Control-loop work during the fault: a scale-up right after a leader kill is timed;
        // otherwise a random scale or roll. A node loss is timed by itself, without changes.
        if node_down.is_none() && kinds.contains(&FaultKind::KillLeader) {
            replicas = (replicas + 1).min(6);
            let (c, want) = (client.clone(), replicas);
            failover_tasks.push((
                at,
                tokio::spawn(async move {
                    let acked = deployment::apply(&c, Change::Scale(want), Duration::from_secs(60))
                        .await
                        .ok()
                        .map(|()| killed_at.elapsed());
                    let reacted = deployment::controller_reaction(
                        &c,
                        want as usize,
                        killed_at,
                        Duration::from_secs(90),
                    )
                    .await;
                    (acked, reacted)
                }),
            ));
        } else if node_down.is_none() {
            let change = if rng.random_bool(0.5) {
                replicas = rng.random_range(2..=5);
                Change::Scale(replicas)
            } else {
                version += 1;
                Change::Roll(version)
            };
            let c = client.clone();
            failover_tasks.push((
                0,
                tokio::spawn(async move {
                    if let Err(e) = deployment::apply(&c, change, Duration::from_secs(60)).await {
                        tracing::warn!(error = %e, "chaos: Deployment change not applied");
                    }
                    (None, None)
                }),
            ));
        }
        let mut description = described.join("; ");
        println!("[{:>6.1}s] fault: {description}", at as f64 / 1e9);
        let hold = rng.random_range(options.hold.0..=options.hold.1);
        tokio::time::sleep(hold).await;
        // A joiner gets to be a voter and a lost node's pods get to run elsewhere before the
        // fault heals (each bounded by its own deadline).
        if let Some((id, task)) = &mut joiner {
            let voter = task.await.context("a membership task panicked")?;
            description.push_str(&match voter {
                Some(d) => format!(" (voter after {} ms)", d.as_millis()),
                None => format!(" (server {id} did not become a voter within 60 s)"),
            });
        }
        if let Some((_, node, task)) = &mut node_down {
            let elsewhere = task.await.context("a node-loss task panicked")?;
            node_losses.push(NodeLoss {
                node: node.clone(),
                running_elsewhere_ms: elsewhere.map(|d| d.as_millis() as u64),
            });
        }
        faults::heal(backend, &mut damage)?;
        if let Some((id, _)) = joiner {
            match membership::remove(&client, id, Duration::from_secs(60)).await {
                Ok(d) => description.push_str(&format!("; removed after {} ms", d.as_millis())),
                Err(e) => not_recovered.push(format!("after {description}: {e:#}")),
            }
            backend.stop_joiner(id)?;
        }
        if let Some((i, _, _)) = node_down {
            nodes.restart(i, &client).await?;
        }
        let healed = clock.now();
        let healed_instant = Instant::now();
        let recovered = wait_recovered(&per_server, Duration::from_secs(60)).await;
        if let Err(e) = &recovered {
            not_recovered.push(format!("after {description}: {e:#}"));
        }
        faults.push(FaultRecord {
            kinds,
            description,
            at,
            healed,
            unavailable_ms: None,
            recovered_ms: recovered
                .ok()
                .map(|()| healed_instant.elapsed().as_millis() as u64),
        });
        let quiet = rng.random_range(options.quiet.0..=options.quiet.1);
        tokio::time::sleep(quiet).await;
    }
    println!("faults done; stopping the workload and settling");
    stop.stop();
    for c in clients {
        c.await.context("a workload client panicked")?;
    }
    let history = History::merge(std::mem::take(
        &mut *recorder.histories.lock().expect("histories"),
    ));

    // Failover figures and the final Deployment state.
    let mut failovers = Vec::new();
    for (at, task) in failover_tasks {
        let (acked, reacted) = task.await.context("a Deployment task panicked")?;
        if at > 0 || acked.is_some() {
            failovers.push(Failover {
                first_write_ms: report::unavailability(&history, at),
                scale_acked_ms: acked.map(|d| d.as_millis() as u64),
                controller_action_ms: reacted.map(|d| d.as_millis() as u64),
            });
        }
    }
    for f in &mut faults {
        f.unavailable_ms = report::unavailability(&history, f.at);
    }
    replicas = 3;
    deployment::apply(&client, Change::Scale(replicas), Duration::from_secs(60)).await?;
    deployment::apply(&client, Change::Roll(version), Duration::from_secs(60)).await?;
    let deployment_check =
        match wait_deployment(&client, replicas, version, Duration::from_secs(120)).await {
            Ok(()) => pass(
                "Deployment converged",
                format!("{replicas} replicas of version {version}"),
            ),
            Err(e) => fail(
                "Deployment converged",
                "after healing".into(),
                vec![format!("{e:#}")],
            ),
        };

    // The state after healing, then a fence write every watch must deliver.
    let list = client
        .list_all(&KindRef::resource("configmaps"), &list_params())
        .await?;
    let mut final_state = FinalState::new();
    for item in &list.items {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let rv = item["metadata"]["resourceVersion"].as_str().unwrap_or("0");
        let value = item["data"]["v"].as_str().unwrap_or_default();
        final_state.insert(
            format!("{NAMESPACE}/{name}"),
            ObjectState {
                value: value.to_string(),
                rv: rv.parse().unwrap_or(0),
            },
        );
    }
    let fence = client
        .create(&workload::config_map("zz-fence", "fence", None), NAMESPACE)
        .await
        .context("writing the fence")?;
    let fence_rv: u64 = fence["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .parse()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut watch_logs = Vec::new();
    for (log, task) in watches {
        while Instant::now() < deadline
            && !log.lock().expect("log").events().any(|e| e.rv >= fence_rv)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
        let mut log = log.lock().expect("log").clone();
        log.until = Some(fence_rv);
        watch_logs.push(log);
    }
    nodes.stop();

    let replicas_check = replicas_identical(&status, Duration::from_secs(60)).await;
    let recovery_check = if not_recovered.is_empty() {
        pass(
            "cluster recovered after each fault",
            format!("{} faults", faults.len()),
        )
    } else {
        fail(
            "cluster recovered after each fault",
            format!("{} faults", faults.len()),
            not_recovered,
        )
    };

    println!("checking {} operations", history.entries.len());
    let check_options = CheckOptions {
        budget_per_key: options.budget_per_key,
    };
    let mut verdict = check_all(&history, Some(&final_state), &watch_logs, &check_options);
    verdict.checks.push(replicas_check);
    verdict.checks.push(deployment_check);
    verdict.checks.push(recovery_check);
    let unexpected = std::mem::take(&mut *recorder.unexpected.lock().expect("unexpected"));
    verdict.checks.push(if unexpected.is_empty() {
        pass(
            "workload answers understood",
            format!("{} operations", history.entries.len()),
        )
    } else {
        fail(
            "workload answers understood",
            "unexpected errors".into(),
            unexpected,
        )
    });
    verdict.summary.push(("mode".into(), mode.clone()));
    verdict.summary.push(("run".into(), options.name.clone()));
    verdict
        .summary
        .push(("seed".into(), options.seed.to_string()));
    let unknown = history
        .entries
        .iter()
        .filter(|e| e.outcome == super::history::Outcome::Unknown)
        .count();
    verdict.summary.push((
        "operations with unknown outcome".into(),
        unknown.to_string(),
    ));
    verdict.summary.extend(report::fault_summary(&faults));
    let mut text = verdict.render();
    text.push('\n');
    text.push_str(&report::render_failovers(&failovers));
    text.push_str(&report::render_node_losses(&node_losses));
    println!("{text}");
    report::write_outputs(
        &options.out_dir,
        &report::Outputs {
            history: &history,
            final_state: &final_state,
            watches: &watch_logs,
            faults: &faults,
            failovers: &failovers,
            node_losses: &node_losses,
            verdict: &verdict,
            text: &text,
        },
    )?;
    println!("raw histories in {}", options.out_dir.display());
    Ok(RunReport {
        mode,
        verdict,
        faults,
        failovers,
        node_losses,
        text,
    })
}

fn list_params() -> ListParams {
    ListParams {
        namespace: NAMESPACE.into(),
        ..Default::default()
    }
}

/// The current leader as the cluster reports it.
async fn leader(client: &Client) -> Option<ServerIx> {
    let m = client.members().await.ok()?;
    (m.leader_id > 0).then(|| m.leader_id as usize - 1)
}
