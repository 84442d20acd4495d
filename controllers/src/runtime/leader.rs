//! Leader election tied to the Raft term: the controllers and the scheduler of a server act only
//! while that server is the Raft leader, and every write they make is stamped with the term in
//! which it became leader. The store rejects a stamped write committed in any other term, so a
//! deposed leader (paused, partitioned, slow) cannot commit anything after a takeover. The holder
//! is published as Lease objects in `kube-system` for `rkube get leases -n kube-system`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use rkube_client::Client;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::runtime::api::{decode, encode, Api, ClientApi, DeleteOptions, Patch};

/// How often the elector asks its server who leads. Raft elects a new leader within about a
/// second (500-1000 ms election timeout), so a takeover is noticed well within 2 seconds.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How often the holder renews the published Leases.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(2);

/// The Leases published in `kube-system` (Kubernetes' names for the same roles).
pub const LEASE_NAMES: &[&str] = &["kube-controller-manager", "kube-scheduler"];

/// This server's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Follower,
    /// Leader in this Raft term: the fence of every write.
    Leader {
        term: u64,
    },
}

/// Watch the local server's Raft role. `client` should reach this server first; an answer from
/// another server (after failover) never makes this one leader.
pub fn elect(client: Client, member_id: u64) -> watch::Receiver<Leadership> {
    let (tx, rx) = watch::channel(Leadership::Follower);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = match client.members().await {
                Ok(m)
                    if m.member_id == member_id && m.leader_id == member_id && m.raft_term > 0 =>
                {
                    Leadership::Leader { term: m.raft_term }
                }
                Ok(_) => Leadership::Follower,
                Err(e) => {
                    tracing::debug!(error = %e, "leader election: own server unreachable");
                    Leadership::Follower
                }
            };
            if *tx.borrow() != now {
                tracing::info!(?now, "leadership changed");
                if tx.send(now).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The [`Api`] controllers hold for their whole life: while this server leads it writes through
/// a client fenced with the leadership term; otherwise every write fails with `Fenced`.
#[derive(Default)]
pub struct LeaderApi {
    current: RwLock<Option<Arc<ClientApi>>>,
}

impl LeaderApi {
    pub fn new() -> LeaderApi {
        LeaderApi::default()
    }

    /// Start writing with `client` fenced at `term`, or stop writing (`None`).
    pub fn set(&self, fenced: Option<Client>) {
        *self.current.write().expect("leader api lock") =
            fenced.map(|c| Arc::new(ClientApi::new(c)));
    }

    fn get(&self) -> Result<Arc<ClientApi>> {
        self.current
            .read()
            .expect("leader api lock")
            .clone()
            .ok_or_else(|| {
                Error::Api(rkube_client::Error::Fenced(
                    "this server does not hold controller leadership".into(),
                ))
            })
    }
}

#[async_trait::async_trait]
impl Api for LeaderApi {
    async fn create(&self, obj: Value, namespace: &str) -> Result<Value> {
        self.get()?.create(obj, namespace).await
    }
    async fn update(&self, obj: Value) -> Result<Value> {
        self.get()?.update(obj).await
    }
    async fn update_status(&self, obj: Value) -> Result<Value> {
        self.get()?.update_status(obj).await
    }
    async fn patch(
        &self,
        kind: &rkube_client::KindRef,
        namespace: &str,
        name: &str,
        patch: Patch,
        status: bool,
    ) -> Result<Value> {
        self.get()?
            .patch(kind, namespace, name, patch, status)
            .await
    }
    async fn delete(
        &self,
        kind: &rkube_client::KindRef,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Option<Value>> {
        self.get()?.delete(kind, namespace, name, opts).await
    }
}

/// Write (create or renew) the published Lease `name` for `holder`, fenced through `api`.
pub async fn publish_lease(
    api: &dyn Api,
    client: &Client,
    name: &str,
    holder: &str,
    term: u64,
) -> Result<()> {
    let now = MicroTime(jiff::Timestamp::now());
    let current = match client.get_typed::<Lease>("kube-system", name).await {
        Ok(l) => Some(l),
        Err(rkube_client::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let duration = i32::try_from(LEASE_RENEW_INTERVAL.as_secs() * 3).unwrap_or(6);
    match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("kube-system".into()),
                    annotations: Some(
                        [("rkube.io/raft-term".to_string(), term.to_string())].into(),
                    ),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(holder.into()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            api.create(encode(&lease)?, "kube-system").await?;
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(holder) {
                spec.holder_identity = Some(holder.into());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(duration);
            lease
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert("rkube.io/raft-term".into(), term.to_string());
            let _: Lease = decode(api.update(encode(&lease)?).await?)?;
        }
    }
    Ok(())
}
