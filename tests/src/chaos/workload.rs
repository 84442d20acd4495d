//! The chaos workload: clients doing create / compare-and-swap update / get / delete on
//! ConfigMaps with unique values, one request in flight each, and one watch per server replica,
//! recording a [`History`] and [`WatchLog`]s for the checkers.
//!
//! Requests go through the generated gRPC client on a channel to one server, not through
//! `rkube_client::Client`, whose fail-over retries a write after a timeout: a retried create
//! that had been applied answers AlreadyExists, which the recording could not tell apart from
//! an anomaly. Here every request is sent once; no answer is an unknown outcome, and the client
//! moves on to the next server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rkube_client::ClientConfig;
use rkube_proto::api;
use rkube_proto::api::resources_client::ResourcesClient;
use serde_json::{json, Value};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::history::{ClientId, History, Nanos, Operation, Outcome, Revision};
use super::watch::{EventType, WatchEvent, WatchLog};

/// The namespace the workload's ConfigMaps live in.
pub const NAMESPACE: &str = "chaos";

/// The run's clock: nanoseconds since the run began, shared by every client.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }
    pub fn now(&self) -> Nanos {
        self.0.elapsed().as_nanos() as Nanos
    }
}

/// Lazily connected channels to each API server, without fail-over.
#[derive(Clone)]
pub struct Channels {
    pub servers: Vec<String>,
    channels: Vec<Channel>,
    token: Option<String>,
}

impl Channels {
    pub fn new(config: &ClientConfig) -> anyhow::Result<Channels> {
        // Creating a client installs the TLS crypto provider the channels need.
        rkube_client::Client::new(config.clone())?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&config.ca_pem))
            .domain_name(config.tls_server_name.clone());
        if let (Some(c), Some(k)) = (&config.client_cert_pem, &config.client_key_pem) {
            tls = tls.identity(Identity::from_pem(c, k));
        }
        let mut channels = Vec::new();
        for addr in &config.servers {
            let ep = Endpoint::from_shared(format!("https://{addr}"))?
                .tls_config(tls.clone())?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true);
            channels.push(ep.connect_lazy());
        }
        Ok(Channels {
            servers: config.servers.clone(),
            channels,
            token: config.token.clone(),
        })
    }

    /// A request with the configuration's bearer token, if any.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(v) = self
            .token
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            req.metadata_mut().insert("authorization", v);
        }
        req
    }

    pub fn resources(&self, server: usize) -> ResourcesClient<Channel> {
        ResourcesClient::new(self.channels[server % self.channels.len()].clone())
    }
}

/// Workload settings.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    pub clients: u32,
    pub keys: u32,
    /// How long a client waits for an answer before recording an unknown outcome.
    pub request_timeout: Duration,
}

/// The clients' histories, each pushed when its client stops, and the answers the workload
/// did not expect (a workload or configuration bug, e.g. Unauthorized), which fail the run.
#[derive(Default)]
pub struct Recorder {
    pub histories: Mutex<Vec<History>>,
    pub unexpected: Mutex<Vec<String>>,
}

/// Stops the workload's tasks.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The resourceVersion each key was last seen at, shared so compare-and-swaps often succeed.
pub type Known = Arc<Mutex<HashMap<String, Revision>>>;

pub fn key_name(k: u32) -> String {
    format!("k-{k}")
}

/// A ConfigMap holding `value`.
pub fn config_map(name: &str, value: &str, rv: Option<Revision>) -> Value {
    let mut meta = json!({"name": name, "namespace": NAMESPACE});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}})
}

fn config_maps() -> api::KindRef {
    api::KindRef {
        resource: "configmaps".into(),
        ..Default::default()
    }
}

/// The value and resourceVersion of a ConfigMap as the API returned it.
pub fn read_object(obj: &api::Object) -> Option<(String, Revision)> {
    let v: Value = serde_json::from_slice(&obj.json).ok()?;
    let value = v["data"]["v"].as_str()?.to_string();
    Some((value, obj.resource_version.parse().ok()?))
}

/// What every client of one workload shares.
pub struct Shared {
    /// The run's seed; each client derives its own generator from it.
    pub seed: u64,
    pub channels: Channels,
    pub options: WorkloadOptions,
    pub clock: Clock,
    pub known: Known,
    pub stop: StopFlag,
    pub recorder: Arc<Recorder>,
}

/// One client's loop until `stop`: pick a key and an operation, send it, record it.
pub async fn run_client(id: ClientId, shared: Shared) {
    let Shared {
        seed,
        channels,
        options,
        clock,
        known,
        stop,
        recorder,
    } = shared;
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(id) << 32));
    let mut history = History::new();
    let mut server = id as usize;
    let mut seq = 0u64;
    while !stop.stopped() {
        let k = rng.random_range(0..options.keys);
        let name = key_name(k);
        let key = format!("{NAMESPACE}/{name}");
        seq += 1;
        let value = format!("c{id}-{seq}");
        let expected = known.lock().expect("known").get(&key).copied();
        let op = match rng.random_range(0..100) {
            0..20 => Operation::Create { key, value },
            20..55 => match expected {
                Some(rv) => Operation::Update {
                    key,
                    expected_rv: rv,
                    value,
                },
                None => Operation::Get { key },
            },
            55..85 => Operation::Get { key },
            _ => Operation::Delete { key },
        };
        let entry = history.invoke(id, op.clone(), clock.now());
        let mut client = channels.resources(server);
        let outcome = match tokio::time::timeout(
            options.request_timeout,
            send(&channels, &mut client, &name, &op, &recorder),
        )
        .await
        {
            Ok(o) => o,
            Err(_) => Outcome::Unknown,
        };
        let at = clock.now();
        match &outcome {
            Outcome::Written { rv } | Outcome::Found { rv, .. } => {
                known
                    .lock()
                    .expect("known")
                    .insert(op.key().to_string(), *rv);
            }
            Outcome::Deleted | Outcome::NotFound => {
                known.lock().expect("known").remove(op.key());
            }
            Outcome::Unknown => {
                // Try another server next; pause briefly so a dead cluster is not hammered.
                server += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..100))).await;
            }
            _ => {}
        }
        history.complete(entry, outcome, at);
    }
    recorder.histories.lock().expect("histories").push(history);
}

/// Send one operation and classify the answer.
async fn send(
    channels: &Channels,
    client: &mut ResourcesClient<Channel>,
    name: &str,
    op: &Operation,
    recorder: &Recorder,
) -> Outcome {
    let classify = |s: &tonic::Status| classify(s, recorder);
    let written = |r: Result<tonic::Response<api::Object>, tonic::Status>| match r {
        Ok(obj) => match obj.into_inner().resource_version.parse() {
            Ok(rv) => Outcome::Written { rv },
            Err(_) => Outcome::Unknown,
        },
        Err(s) => classify(&s),
    };
    match op {
        Operation::Create { value, .. } => {
            let req = api::CreateRequest {
                json: config_map(name, value, None).to_string().into_bytes(),
                namespace: NAMESPACE.into(),
                dry_run: false,
            };
            written(client.create(channels.request(req)).await)
        }
        Operation::Update {
            expected_rv, value, ..
        } => {
            let req = api::UpdateRequest {
                json: config_map(name, value, Some(*expected_rv))
                    .to_string()
                    .into_bytes(),
                dry_run: false,
            };
            written(client.update(channels.request(req)).await)
        }
        Operation::Get { .. } => {
            let req = api::GetRequest {
                kind: Some(config_maps()),
                namespace: NAMESPACE.into(),
                name: name.into(),
                serializable: false,
            };
            match client.get(channels.request(req)).await {
                Ok(obj) => match read_object(&obj.into_inner()) {
                    Some((value, rv)) => Outcome::Found { value, rv },
                    None => Outcome::Unknown,
                },
                Err(s) => classify(&s),
            }
        }
        Operation::Delete { .. } => {
            let req = api::DeleteRequest {
                kind: Some(config_maps()),
                namespace: NAMESPACE.into(),
                name: name.into(),
                ..Default::default()
            };
            match client.delete(channels.request(req)).await {
                Ok(r) if r.get_ref().removed => Outcome::Deleted,
                Ok(_) => Outcome::Unknown,
                Err(s) => classify(&s),
            }
        }
    }
}

/// A definite answer, or `Unknown` for anything that may have left the request applied.
fn classify(status: &tonic::Status, recorder: &Recorder) -> Outcome {
    use rkube_client::Error;
    match Error::from(status.clone()) {
        Error::NotFound(_) => Outcome::NotFound,
        Error::AlreadyExists(_) => Outcome::AlreadyExists,
        Error::Conflict(_) => Outcome::Conflict,
        e @ (Error::Unavailable(_) | Error::Timeout(_)) => {
            tracing::debug!(error = %e, "chaos client: no definite answer");
            Outcome::Unknown
        }
        e => {
            let mut unexpected = recorder.unexpected.lock().expect("unexpected");
            if unexpected.len() < 100 {
                unexpected.push(e.to_string());
            }
            Outcome::Unknown
        }
    }
}

/// One watch on one server: records every event of the namespace, and after any error resumes
/// from the last delivered resourceVersion on the same server. Runs until aborted (after the
/// workload stopped, once the final fence write arrived).
pub async fn run_watch(
    name: String,
    channels: Channels,
    server: usize,
    start: Revision,
    log: Arc<Mutex<WatchLog>>,
) {
    let mut last = start;
    let mut first = true;
    loop {
        if !first {
            log.lock().expect("watch log").resumed(last);
        }
        first = false;
        let req = api::WatchRequest {
            kind: Some(config_maps()),
            namespace: NAMESPACE.into(),
            resource_version: last.to_string(),
            ..Default::default()
        };
        let mut client = channels.resources(server);
        let opened =
            tokio::time::timeout(Duration::from_secs(3), client.watch(channels.request(req))).await;
        let mut stream = match opened {
            Ok(Ok(s)) => s.into_inner(),
            Ok(Err(e)) => {
                tracing::debug!(watch = %name, error = %e, "chaos watch: cannot open");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => continue,
        };
        while let Some(item) = stream.next().await {
            let ev = match item {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(watch = %name, error = %e, "chaos watch: stream broke");
                    break;
                }
            };
            let kind = match api::EventType::try_from(ev.r#type) {
                Ok(api::EventType::Added) => EventType::Added,
                Ok(api::EventType::Modified) => EventType::Modified,
                Ok(api::EventType::Deleted) => EventType::Deleted,
                _ => continue,
            };
            let Some(obj) = ev.object else { continue };
            let Ok(rv) = obj.resource_version.parse::<Revision>() else {
                continue;
            };
            let value = read_object(&obj).map(|(v, _)| v);
            log.lock().expect("watch log").event(WatchEvent {
                kind,
                key: format!("{}/{}", obj.namespace, obj.name),
                rv,
                value,
            });
            last = last.max(rv);
        }
    }
}
