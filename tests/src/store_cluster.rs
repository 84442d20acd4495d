//! An in-process store cluster on loopback for integration tests: each replica runs on its own
//! tokio runtime, so killing one drops every task and socket it owns, as a crash would; links
//! between replicas can be cut with the transport's fault injection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rkube_proto::store as pb;
use rkube_store::{ServerOptions, Store, StoreConfig};
use tokio::net::TcpListener;

use crate::wait::wait_until;

/// Short Raft timings so failover tests run quickly.
pub fn fast_timing(c: &mut StoreConfig) {
    c.heartbeat_interval = Duration::from_millis(50);
    c.election_timeout_min = Duration::from_millis(300);
    c.election_timeout_max = Duration::from_millis(600);
    c.request_timeout = Duration::from_secs(3);
}

/// Fast timings plus frequent snapshots and little retained log, to force snapshot catch-up.
pub fn snapshot_often(c: &mut StoreConfig) {
    fast_timing(c);
    c.snapshot_after_logs = 50;
    c.logs_kept_after_snapshot = 5;
}

struct Running {
    runtime: tokio::runtime::Runtime,
    server: rkube_store::RunningServer,
}

struct Replica {
    addr: SocketAddr,
    dir: PathBuf,
    running: Option<Running>,
}

/// A cluster of store replicas with ids 1..=n.
pub struct StoreCluster {
    _base: tempfile::TempDir,
    base: PathBuf,
    token: String,
    tune: fn(&mut StoreConfig),
    replicas: BTreeMap<u64, Replica>,
    /// Threads finishing killed replicas' runtimes (see `reap`).
    reapers: Vec<std::thread::JoinHandle<()>>,
}

/// Drop a runtime as a crash would, in a thread that waits for its blocking tasks (RocksDB
/// writes), so none outlives the process's exit and races RocksDB's static destructors.
fn reap(rt: tokio::runtime::Runtime) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || rt.shutdown_timeout(std::time::Duration::from_secs(30)))
}

impl StoreCluster {
    /// Start `n` replicas: node 1 creates the cluster, the others join it.
    pub async fn start(n: u64) -> StoreCluster {
        Self::start_with(n, fast_timing).await
    }

    pub async fn start_with(n: u64, tune: fn(&mut StoreConfig)) -> StoreCluster {
        let base_dir = tempfile::tempdir().expect("tempdir");
        let base = base_dir.path().to_path_buf();
        let mut c = StoreCluster {
            _base: base_dir,
            base,
            token: String::new(),
            tune,
            replicas: BTreeMap::new(),
            reapers: Vec::new(),
        };
        for id in 1..=n {
            c.add_replica(id).await;
        }
        c.wait_voters(n as usize).await;
        c
    }

    /// Start a new replica with this id and join it to the cluster (or create the cluster).
    pub async fn add_replica(&mut self, id: u64) {
        self.add_replica_as(id, false).await
    }

    /// Like `add_replica`, but the new replica joins as a non-voting learner.
    pub async fn add_learner(&mut self, id: u64) {
        self.add_replica_as(id, true).await
    }

    async fn add_replica_as(&mut self, id: u64, learner: bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let dir = self.base.join(format!("node-{id}"));
        let join = self
            .replicas
            .values()
            .find(|r| r.running.is_some())
            .map(|r| r.addr.to_string());
        self.replicas.insert(
            id,
            Replica {
                addr,
                dir,
                running: None,
            },
        );
        self.launch(id, listener, join, learner).await;
        if self.token.is_empty() {
            let path = self.replicas[&id].dir.join("join-token");
            self.token = std::fs::read_to_string(path)
                .expect("join token")
                .trim()
                .to_string();
        }
    }

    async fn launch(
        &mut self,
        id: u64,
        listener: TcpListener,
        join: Option<String>,
        learner: bool,
    ) {
        let r = self.replicas.get_mut(&id).expect("replica");
        let mut opts = ServerOptions::new(&r.dir);
        opts.node_id = Some(id);
        opts.join = join;
        opts.learner = learner;
        opts.token = (!self.token.is_empty()).then(|| self.token.clone());
        opts.tune = Some(self.tune);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("node-{id}"))
            .enable_all()
            .build()
            .expect("runtime");
        let listener = listener.into_std().expect("std listener");
        let handle = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            rkube_store::start(opts, listener).await
        });
        let server = handle
            .await
            .expect("start task")
            .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"));
        r.running = Some(Running { runtime, server });
    }

    /// The replica `id` (panics if it is not running).
    pub fn store(&self, id: u64) -> &Store {
        &self.replicas[&id]
            .running
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .server
            .store
    }

    pub fn ids(&self) -> Vec<u64> {
        self.replicas.keys().copied().collect()
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.running.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.replicas[&id].addr
    }

    /// Kill the replica as a crash would: its runtime is dropped with every task and socket.
    pub fn kill(&mut self, id: u64) {
        if let Some(r) = self.replicas.get_mut(&id).and_then(|r| r.running.take()) {
            self.reapers.push(reap(r.runtime));
            drop(r.server);
        }
    }

    /// Restart a killed replica on its old address from its data directory.
    pub async fn restart(&mut self, id: u64) {
        let addr = self.replicas[&id].addr;
        // The killed runtime closes its listener once its worker threads stop, which takes a
        // while on a loaded machine (the reaper allows 30 s).
        let listener = wait_until(
            Duration::from_secs(40),
            "the old port to be free",
            || async move { TcpListener::bind(addr).await.ok() },
        )
        .await;
        // The killed runtime's blocking threads may still hold the database lock for a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        let mut listener = Some(listener);
        loop {
            let l = listener.take().expect("listener");
            let std_l = l.into_std().expect("std listener");
            let std_clone = std_l.try_clone().expect("clone listener");
            let r = self.replicas.get_mut(&id).expect("replica");
            let mut opts = ServerOptions::new(&r.dir);
            opts.node_id = Some(id);
            opts.tune = Some(self.tune);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let handle = runtime.spawn(async move {
                let listener = TcpListener::from_std(std_l).expect("listener");
                rkube_store::start(opts, listener).await
            });
            match handle.await.expect("start task") {
                Ok(server) => {
                    r.running = Some(Running { runtime, server });
                    return;
                }
                Err(e)
                    if e.to_string().contains("lock") && tokio::time::Instant::now() < deadline =>
                {
                    runtime.shutdown_background();
                    listener = Some(TcpListener::from_std(std_clone).expect("listener"));
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("node {id} failed to restart: {e}"),
            }
        }
    }

    /// Cut both directions between `id` and every other replica.
    pub fn isolate(&self, id: u64) {
        for other in self.running_ids() {
            if other != id {
                self.store(other).pool().faults.block(id);
                self.store(id).pool().faults.block(other);
            }
        }
    }

    /// Restore every link.
    pub fn heal(&self) {
        for id in self.running_ids() {
            self.store(id).pool().faults.heal();
        }
    }

    /// Wait until the running replicas agree on a leader among them, and return it.
    pub async fn leader(&self) -> u64 {
        let ids = self.running_ids();
        wait_until(Duration::from_secs(10), "a leader", || {
            let ids = ids.clone();
            async move {
                let leaders: Vec<Option<u64>> = ids
                    .iter()
                    .map(|id| self.store(*id).raft().metrics().borrow().current_leader)
                    .collect();
                let l = leaders.first().copied().flatten()?;
                (ids.contains(&l) && leaders.iter().all(|x| *x == Some(l))).then_some(l)
            }
        })
        .await
    }

    /// Wait until the leader's membership has `n` voters.
    pub async fn wait_voters(&self, n: usize) {
        wait_until(
            Duration::from_secs(20),
            "the expected number of voters",
            || async move {
                let id = *self.running_ids().first()?;
                let (members, _) = self.store(id).members();
                (members.iter().filter(|m| m.voter).count() == n).then_some(())
            },
        )
        .await
    }

    /// Wait until every running replica has applied the same revision with the same content,
    /// and return (revision, hash).
    pub async fn converged(&self) -> (i64, String) {
        wait_until(
            Duration::from_secs(20),
            "every replica to reach the same revision and content hash",
            || async move {
                let mut seen = Vec::new();
                for id in self.running_ids() {
                    let st = self.store(id).status(true).await.ok()?;
                    seen.push((st.header?.revision, st.content_hash));
                }
                let first = seen.first()?.clone();
                seen.iter().all(|s| *s == first).then_some(first)
            },
        )
        .await
    }
}

impl Drop for StoreCluster {
    fn drop(&mut self) {
        for r in self.replicas.values_mut() {
            if let Some(r) = r.running.take() {
                self.reapers.push(reap(r.runtime));
            }
        }
        for r in self.reapers.drain(..) {
            let _ = r.join();
        }
    }
}

/// A put request of `value` at `key`.
pub fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A linearizable single-key read.
pub fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A range over every key under `prefix`.
pub fn prefix(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    (
        prefix.as_bytes().to_vec(),
        rkube_store::encoding::prefix_end(prefix.as_bytes()),
    )
}
