//! The agent's view of the cluster's Services and Endpoints: one watch per kind (every
//! namespace) mirrored into a [`ServiceSnapshot`] that is republished on every change. The
//! service proxy ([`crate::proxy`]), the DNS responder ([`crate::dns`]) and the containers'
//! service environment ([`crate::service_env`]) all read it, so the agent holds one copy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use serde_json::Value;
use tokio::sync::{watch, Notify};

/// Services and Endpoints as last seen, keyed by `<namespace>/<name>`.
#[derive(Debug, Clone, Default)]
pub struct ServiceSnapshot {
    /// Both kinds have been listed at least once (before that, a missing Service may simply
    /// not have been read yet).
    pub synced: bool,
    pub services: BTreeMap<String, Service>,
    pub endpoints: HashMap<String, Endpoints>,
}

impl ServiceSnapshot {
    /// The Service `name` in `namespace`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&format!("{namespace}/{name}"))
    }

    /// The Endpoints `name` in `namespace`.
    pub fn endpoints_of(&self, namespace: &str, name: &str) -> Option<&Endpoints> {
        self.endpoints.get(&format!("{namespace}/{name}"))
    }
}

/// The current snapshot; `changed()` wakes on every new one.
pub type ServiceView = watch::Receiver<Arc<ServiceSnapshot>>;

/// The watches behind a [`ServiceView`]; dropping this stops them.
pub struct ServiceWatch {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ServiceWatch {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// Start watching Services and Endpoints in every namespace.
pub fn start(client: Client) -> (ServiceView, ServiceWatch) {
    let changed = Arc::new(Notify::new());
    let services = Mirror::default();
    let endpoints = Mirror::default();
    let (tx, rx) = watch::channel(Arc::new(ServiceSnapshot::default()));
    let tasks = vec![
        tokio::spawn(watch_kind(
            client.clone(),
            KindRef::of::<Service>(),
            services.clone(),
            changed.clone(),
        )),
        tokio::spawn(watch_kind(
            client,
            KindRef::of::<Endpoints>(),
            endpoints.clone(),
            changed.clone(),
        )),
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                let snapshot = ServiceSnapshot {
                    synced: services.synced() && endpoints.synced(),
                    services: services.decode_all(),
                    endpoints: endpoints.decode_all(),
                };
                if tx.send(Arc::new(snapshot)).is_err() {
                    return;
                }
            }
        }),
    ];
    (rx, ServiceWatch { tasks })
}

/// Wait until `view` has listed both kinds once, at most `limit`; whether it has.
pub async fn wait_synced(view: &mut ServiceView, limit: Duration) -> bool {
    tokio::time::timeout(limit, view.wait_for(|s| s.synced))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// The last seen objects of one kind, keyed by `<namespace>/<name>`, and whether a first list
/// has completed.
#[derive(Clone, Default)]
struct Mirror {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    synced: Arc<AtomicBool>,
}

impl Mirror {
    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn decode_all<K: k8s_openapi::serde::de::DeserializeOwned, M: FromIterator<(String, K)>>(
        &self,
    ) -> M {
        let objects = self.objects.lock().expect("objects lock").clone();
        objects
            .into_iter()
            .filter_map(|(key, obj)| match serde_json::from_value(obj) {
                Ok(k) => Some((key, k)),
                Err(e) => {
                    tracing::warn!(object = %key, error = %e, "cannot decode a watched object");
                    None
                }
            })
            .collect()
    }
}

fn object_key(obj: &Value) -> Option<String> {
    let meta = &obj["metadata"];
    Some(format!(
        "{}/{}",
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str()?
    ))
}

/// Mirror one kind, notifying `changed` on every change. The watch resumes across servers in
/// the client; when it ends anyway it is opened again with a fresh list, and objects missing
/// from that list are dropped.
async fn watch_kind(client: Client, kind: KindRef, mirror: Mirror, changed: Arc<Notify>) {
    let params = ListParams::default();
    let mut retry = Duration::from_millis(200);
    loop {
        let mut stream = Box::pin(client.watch(&kind, &params, true));
        let mut listed: Option<Vec<String>> = Some(Vec::new());
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj)) => {
                    retry = Duration::from_millis(200);
                    if let Some(key) = object_key(&obj) {
                        if let Some(seen) = &mut listed {
                            seen.push(key.clone());
                        }
                        mirror
                            .objects
                            .lock()
                            .expect("objects lock")
                            .insert(key, obj);
                        changed.notify_one();
                    }
                }
                Ok(WatchEvent::Deleted(obj)) => {
                    if let Some(key) = object_key(&obj) {
                        mirror.objects.lock().expect("objects lock").remove(&key);
                        changed.notify_one();
                    }
                }
                Ok(WatchEvent::Bookmark {
                    initial_events_end: true,
                    ..
                }) => {
                    if let Some(seen) = listed.take() {
                        let seen: HashSet<String> = seen.into_iter().collect();
                        mirror
                            .objects
                            .lock()
                            .expect("objects lock")
                            .retain(|k, _| seen.contains(k));
                        mirror.synced.store(true, Ordering::Release);
                        changed.notify_one();
                    }
                }
                Ok(WatchEvent::Bookmark { .. }) => {}
                Err(e) => {
                    tracing::warn!(kind = ?kind, error = %e, "service watch ended; listing again");
                    break;
                }
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(10));
    }
}
