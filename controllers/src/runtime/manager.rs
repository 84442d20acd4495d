//! The manager: runs every informer all the time (so a newly elected leader starts with warm
//! caches), follows leadership, and runs the controllers' workers only while this server leads,
//! writing through a client fenced with the leadership term.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rkube_client::Client;
use tokio::sync::watch;

use crate::runtime::api::ApiRef;
use crate::runtime::controller::{system_clock, Context, Controller};
use crate::runtime::events::Recorder;
use crate::runtime::informer::Informers;
use crate::runtime::leader::{self, LeaderApi, Leadership};

/// How long a new leader waits for its informers' first lists before it starts anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Manager {
    client: Client,
    identity: String,
    api: Arc<LeaderApi>,
    ctx: Context,
    controllers: Vec<Arc<Controller>>,
}

impl Manager {
    /// A manager for the server `identity` (shown in the Leases) using `client`, which should
    /// reach this server first.
    pub fn new(client: Client, identity: String) -> Manager {
        let api = Arc::new(LeaderApi::new());
        let api_ref: ApiRef = api.clone();
        let ctx = Context {
            informers: Informers::new(),
            recorder: Recorder::new("rkube-controller-manager", api_ref.clone()),
            api: api_ref,
            clock: system_clock(),
        };
        Manager {
            client,
            identity,
            api,
            ctx,
            controllers: Vec::new(),
        }
    }

    /// What controllers are built from.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn add(&mut self, c: Controller) {
        self.controllers.push(Arc::new(c));
    }

    /// Run until `shutdown` completes. `member_id` is this server's Raft member id.
    pub async fn run(self, member_id: u64, shutdown: impl Future<Output = ()>) {
        let reflectors: Vec<_> = self
            .ctx
            .informers
            .all()
            .into_iter()
            .map(|i| i.spawn(self.client.clone()))
            .collect();
        let mut leadership = leader::elect(self.client.clone(), member_id);
        tokio::pin!(shutdown);
        let mut term_stop: Option<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)> = None;
        loop {
            let now = *leadership.borrow_and_update();
            if let Some((stop, tasks)) = term_stop.take() {
                self.api.set(None);
                let _ = stop.send(true);
                for t in tasks {
                    let _ = t.await;
                }
                tracing::info!("controllers stopped");
            }
            if let Leadership::Leader { term } = now {
                term_stop = Some(self.start_term(term).await);
            }
            tokio::select! {
                changed = leadership.changed() => if changed.is_err() { break },
                _ = &mut shutdown => break,
            }
        }
        if let Some((stop, tasks)) = term_stop.take() {
            self.api.set(None);
            let _ = stop.send(true);
            for t in tasks {
                let _ = t.await;
            }
        }
        for r in reflectors {
            r.abort();
        }
    }

    async fn start_term(
        &self,
        term: u64,
    ) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
        let fenced = self.client.fenced(term);
        self.api.set(Some(fenced.clone()));
        tracing::info!(term, identity = %self.identity, "leading: starting controllers");
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Publish the holder.
        {
            let api = self.api.clone();
            let client = fenced;
            let identity = self.identity.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    for name in leader::LEASE_NAMES {
                        if let Err(e) =
                            leader::publish_lease(api.as_ref(), &client, name, &identity, term)
                                .await
                        {
                            tracing::debug!(error = %e, lease = name, "lease not renewed");
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(leader::LEASE_RENEW_INTERVAL) => {}
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        let informers = self.ctx.informers.clone();
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        while !informers.all_synced() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for c in &self.controllers {
            c.resync();
            tasks.push(tokio::spawn(c.clone().run(stop_rx.clone())));
        }
        (stop_tx, tasks)
    }
}
