//! The event recorder: controllers report decisions a user wants to see (scaled, created,
//! killed, evicted, scheduled) as core/v1 Events, written in the background so a reconcile never
//! waits for them.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::mpsc;

use crate::runtime::api::{encode, ApiRef};
use crate::runtime::informer::Object;

/// Events waiting to be written; beyond this, new ones are dropped (and logged).
const QUEUE: usize = 4096;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

#[derive(Clone)]
pub struct Recorder {
    component: &'static str,
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    Api(mpsc::Sender<Event>),
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Recorder {
    /// A recorder writing through `api` (fenced like every controller write).
    pub fn new(component: &'static str, api: ApiRef) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let ns = ev.metadata.namespace.clone().unwrap_or_default();
                let outcome = match encode(&ev) {
                    Ok(v) => api.create(v, &ns).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    tracing::debug!(error = %e, reason = ?ev.reason, "event not recorded");
                }
            }
        });
        Recorder {
            component,
            sink: Sink::Api(tx),
        }
    }

    /// A recorder that keeps `"Type Reason message"` lines in memory, for tests.
    pub fn memory(component: &'static str) -> (Recorder, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            Recorder {
                component,
                sink: Sink::Memory(lines.clone()),
            },
            lines,
        )
    }

    /// Record an event about `obj`.
    pub fn event<K: Object>(&self, obj: &K, type_: &str, reason: &str, message: impl Into<String>) {
        let message = message.into();
        let meta = obj.metadata();
        let name = meta.name.clone().unwrap_or_default();
        match &self.sink {
            Sink::Memory(lines) => lines
                .lock()
                .expect("events lock")
                .push(format!("{type_} {reason} {message}")),
            Sink::Api(tx) => {
                let now = jiff::Timestamp::now();
                let namespace = meta
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into());
                let ev = Event {
                    metadata: ObjectMeta {
                        name: Some(format!("{name}.{:016x}", rand::random::<u64>())),
                        namespace: Some(namespace),
                        ..Default::default()
                    },
                    involved_object: ObjectReference {
                        api_version: Some(K::API_VERSION.into()),
                        kind: Some(K::KIND.into()),
                        name: Some(name),
                        namespace: meta.namespace.clone(),
                        uid: meta.uid.clone(),
                        resource_version: meta.resource_version.clone(),
                        ..Default::default()
                    },
                    reason: Some(reason.into()),
                    message: Some(message),
                    type_: Some(type_.into()),
                    source: Some(EventSource {
                        component: Some(self.component.into()),
                        host: None,
                    }),
                    reporting_component: Some(self.component.into()),
                    first_timestamp: Some(Time(now)),
                    last_timestamp: Some(Time(now)),
                    count: Some(1),
                    ..Default::default()
                };
                if tx.try_send(ev).is_err() {
                    tracing::warn!(reason, "event queue full; dropping an event");
                }
            }
        }
    }
}
