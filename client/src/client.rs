//! The client: one logical connection to the cluster over several API servers. Calls go to the
//! current server and fail over to the next one when it is unreachable; watches resume from
//! their last resourceVersion on whichever server answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use rkube_proto::api;
use rkube_proto::api::cluster_client::ClusterClient;
use rkube_proto::api::resources_client::ResourcesClient;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Which kind a call is about: a manifest's apiVersion + kind, or any resource name kubectl
/// accepts (`pods`, `po`, `deployments.apps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindRef(pub api::KindRef);

impl KindRef {
    pub fn resource(name: &str) -> KindRef {
        KindRef(api::KindRef {
            resource: name.to_string(),
            ..Default::default()
        })
    }
    pub fn kind(api_version: &str, kind: &str) -> KindRef {
        KindRef(api::KindRef {
            api_version: api_version.into(),
            kind: kind.into(),
            resource: String::new(),
        })
    }
    /// The kind of a k8s-openapi type.
    pub fn of<K: k8s_openapi::Resource>() -> KindRef {
        Self::kind(K::API_VERSION, K::KIND)
    }
}

/// List and watch parameters.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// Empty: all namespaces.
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
}

/// A change delivered by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Every change up to this resourceVersion has been delivered.
    Bookmark {
        resource_version: String,
        initial_events_end: bool,
    },
}

impl WatchEvent {
    pub fn object(&self) -> Option<&Value> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => Some(o),
            WatchEvent::Bookmark { .. } => None,
        }
    }
}

/// A list result.
#[derive(Debug, Clone)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub resource_version: String,
    pub continue_token: String,
    pub remaining_item_count: i64,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The Raft term this handle stamps its writes with (see [`Client::fenced`]).
    fence: Option<u64>,
}

struct Inner {
    config: ClientConfig,
    tls: ClientTlsConfig,
    servers: Mutex<Vec<String>>,
    current: AtomicUsize,
    channels: Mutex<HashMap<String, Channel>>,
}

/// How long a call keeps asking servers that answer "unavailable" (a Raft election takes about
/// a second after a leader dies).
const ELECTION_RETRY_WINDOW: Duration = Duration::from_secs(5);

/// Largest response accepted: a list of tens of thousands of objects is tens of MiB.
const MAX_RESPONSE_BYTES: usize = 512 << 20;

fn resources_client(ch: Channel) -> ResourcesClient<Channel> {
    ResourcesClient::new(ch).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

fn decode(obj: &api::Object) -> Result<Value> {
    serde_json::from_slice(&obj.json)
        .map_err(|e| Error::Decode(format!("the server sent an object that is not JSON: {e}")))
}

impl Client {
    /// A client for `config`. No connection is made until the first call.
    pub fn new(config: ClientConfig) -> Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&config.ca_pem))
            .domain_name(config.tls_server_name.clone());
        match (&config.client_cert_pem, &config.client_key_pem) {
            (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(c, k)),
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "a client certificate needs both the certificate and its key".into(),
                ))
            }
        }
        if config.servers.is_empty() {
            return Err(Error::Config("no API server address configured".into()));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                servers: Mutex::new(config.servers.clone()),
                config,
                tls,
                current: AtomicUsize::new(0),
                channels: Mutex::new(HashMap::new()),
            }),
            fence: None,
        })
    }

    /// This client with every request stamped `rkube-fence-term: term`: the servers commit its
    /// writes only in that Raft term and answer [`Error::Fenced`] once another leader took over.
    /// Connections are shared with `self`.
    pub fn fenced(&self, term: u64) -> Client {
        Client {
            inner: self.inner.clone(),
            fence: Some(term),
        }
    }

    /// The fencing term this handle stamps its requests with, if any.
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// The cluster CA certificate (PEM) the servers are verified against.
    pub fn ca_pem(&self) -> &str {
        &self.inner.config.ca_pem
    }

    /// The namespace of the configuration's context.
    pub fn default_namespace(&self) -> &str {
        &self.inner.config.namespace
    }

    /// The servers this client knows, in order.
    pub fn servers(&self) -> Vec<String> {
        self.inner.servers.lock().expect("servers lock").clone()
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut map = self.inner.channels.lock().expect("channels lock");
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| Error::Config(format!("bad server address {addr:?}: {e}")))?
            .tls_config(self.inner.tls.clone())
            .map_err(|e| Error::Config(format!("TLS configuration: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let ch = ep.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(t) = &self.inner.config.token {
            if let Ok(v) = format!("Bearer {t}").parse() {
                req.metadata_mut().insert("authorization", v);
            }
        }
        if let Some(term) = self.fence {
            req.metadata_mut().insert(
                "rkube-fence-term",
                tonic::metadata::MetadataValue::from(term),
            );
        }
        req
    }

    /// Run `f` against the current server, failing over to the others on transport errors.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        // A server that answers "unavailable" itself (no Raft leader yet: an election after the
        // leader died) is worth asking again shortly; servers that cannot be reached at all are
        // not waited for.
        let deadline = tokio::time::Instant::now() + ELECTION_RETRY_WINDOW;
        let mut pause = Duration::from_millis(100);
        loop {
            let servers = self.servers();
            let start = self.inner.current.load(Ordering::Relaxed);
            let mut errors = Vec::new();
            let mut answered_unavailable = false;
            for i in 0..servers.len() {
                let idx = (start + i) % servers.len();
                let addr = &servers[idx];
                let outcome = match self.channel(addr) {
                    Ok(ch) => f(ch).await.map_err(|status| {
                        answered_unavailable |= status
                            .metadata()
                            .get("rkube-reason")
                            .is_some_and(|r| r == "ServiceUnavailable");
                        Error::from(status)
                    }),
                    Err(e) => Err(e),
                };
                match outcome {
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(server = %addr, error = %e, "API server unavailable; trying the next one");
                        errors.push(format!("{addr}: {e}"));
                    }
                    other => {
                        self.inner.current.store(idx, Ordering::Relaxed);
                        return other;
                    }
                }
            }
            if !answered_unavailable || tokio::time::Instant::now() + pause > deadline {
                return Err(Error::Unavailable(format!(
                    "Unable to connect to the server: no API server answered (tried {})",
                    errors.join("; ")
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Learn the API servers of every cluster member (best effort).
    pub async fn discover_servers(&self) -> Result<Vec<String>> {
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::MembersRequest {});
                async move { ClusterClient::new(ch).members(req).await }
            })
            .await?
            .into_inner();
        let mut servers = self.inner.servers.lock().expect("servers lock");
        for m in resp.members {
            if !m.api_addr.is_empty() && !servers.contains(&m.api_addr) {
                servers.push(m.api_addr);
            }
        }
        Ok(servers.clone())
    }

    // ---- dynamic objects -------------------------------------------------------------------

    pub async fn create(&self, obj: &Value, namespace: &str) -> Result<Value> {
        let json = serde_json::to_vec(obj).map_err(|e| Error::Decode(e.to_string()))?;
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::CreateRequest {
                    json: json.clone(),
                    namespace: namespace.to_string(),
                    dry_run: false,
                });
                async move { resources_client(ch).create(req).await }
            })
            .await?;
        decode(&resp.into_inner())
    }

    pub async fn get(&self, kind: &KindRef, namespace: &str, name: &str) -> Result<Value> {
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::GetRequest {
                    kind: Some(kind.0.clone()),
                    namespace: namespace.into(),
                    name: name.into(),
                    serializable: false,
                });
                async move { resources_client(ch).get(req).await }
            })
            .await?;
        decode(&resp.into_inner())
    }

    /// One page of a list.
    pub async fn list(&self, kind: &KindRef, p: &ListParams) -> Result<ObjectList> {
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::ListRequest {
                    kind: Some(kind.0.clone()),
                    namespace: p.namespace.clone(),
                    label_selector: p.label_selector.clone(),
                    field_selector: p.field_selector.clone(),
                    limit: p.limit,
                    continue_token: p.continue_token.clone(),
                    resource_version: p.resource_version.clone(),
                    serializable: false,
                });
                async move { resources_client(ch).list(req).await }
            })
            .await?
            .into_inner();
        Ok(ObjectList {
            items: resp.items.iter().map(decode).collect::<Result<_>>()?,
            resource_version: resp.resource_version,
            continue_token: resp.continue_token,
            remaining_item_count: resp.remaining_item_count,
        })
    }

    /// Every page of a list, at one resourceVersion.
    pub async fn list_all(&self, kind: &KindRef, p: &ListParams) -> Result<ObjectList> {
        let mut page = self.list(kind, p).await?;
        let mut items = std::mem::take(&mut page.items);
        while !page.continue_token.is_empty() {
            page = self
                .list(
                    kind,
                    &ListParams {
                        continue_token: page.continue_token.clone(),
                        ..p.clone()
                    },
                )
                .await?;
            items.append(&mut page.items);
        }
        Ok(ObjectList { items, ..page })
    }

    pub async fn update(&self, obj: &Value) -> Result<Value> {
        self.update_inner(obj, false).await
    }

    pub async fn update_status(&self, obj: &Value) -> Result<Value> {
        self.update_inner(obj, true).await
    }

    async fn update_inner(&self, obj: &Value, status: bool) -> Result<Value> {
        let json = serde_json::to_vec(obj).map_err(|e| Error::Decode(e.to_string()))?;
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::UpdateRequest {
                    json: json.clone(),
                    dry_run: false,
                });
                async move {
                    let mut c = resources_client(ch);
                    if status {
                        c.update_status(req).await
                    } else {
                        c.update(req).await
                    }
                }
            })
            .await?;
        decode(&resp.into_inner())
    }

    pub async fn patch(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        ty: api::PatchType,
        patch: &[u8],
        status: bool,
    ) -> Result<Value> {
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::PatchRequest {
                    kind: Some(kind.0.clone()),
                    namespace: namespace.into(),
                    name: name.into(),
                    r#type: ty as i32,
                    patch: patch.to_vec(),
                    status,
                    dry_run: false,
                });
                async move { resources_client(ch).patch(req).await }
            })
            .await?;
        decode(&resp.into_inner())
    }

    /// Delete; returns the object as it is afterwards and whether it is gone.
    pub async fn delete(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        opts: api::DeleteRequest,
    ) -> Result<(Value, bool)> {
        let me = self.clone();
        let resp = self
            .call(|ch| {
                let req = me.request(api::DeleteRequest {
                    kind: Some(kind.0.clone()),
                    namespace: namespace.into(),
                    name: name.into(),
                    ..opts.clone()
                });
                async move { resources_client(ch).delete(req).await }
            })
            .await?
            .into_inner();
        let obj = resp
            .object
            .as_ref()
            .map(decode)
            .transpose()?
            .unwrap_or(Value::Null);
        Ok((obj, resp.removed))
    }

    /// Watch a kind. The stream resumes from the last delivered resourceVersion on another server
    /// when its server fails; it ends with `Error::Gone` when that version is compacted (relist).
    pub fn watch(
        &self,
        kind: &KindRef,
        p: &ListParams,
        send_initial_events: bool,
    ) -> impl Stream<Item = Result<WatchEvent>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let me = self.clone();
        let kind = kind.clone();
        let p = p.clone();
        tokio::spawn(async move {
            let mut rv = p.resource_version.clone();
            let mut initial = send_initial_events;
            let mut failures = 0u32;
            loop {
                let req = api::WatchRequest {
                    kind: Some(kind.0.clone()),
                    namespace: p.namespace.clone(),
                    label_selector: p.label_selector.clone(),
                    field_selector: p.field_selector.clone(),
                    resource_version: rv.clone(),
                    send_initial_events: initial,
                    bookmark_interval_seconds: 0,
                };
                let opened = me
                    .call(|ch| {
                        let r = me.request(req.clone());
                        async move { resources_client(ch).watch(r).await }
                    })
                    .await;
                let mut stream = match opened {
                    Ok(s) => s.into_inner(),
                    Err(e) if e.is_retryable() && failures < 100 => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(
                            100 * u64::from(failures.min(20)),
                        ))
                        .await;
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                failures = 0;
                initial = false;
                loop {
                    match stream.next().await {
                        Some(Ok(ev)) => {
                            let obj = ev.object.unwrap_or_default();
                            if !obj.resource_version.is_empty() {
                                rv = obj.resource_version.clone();
                            }
                            let out = match api::EventType::try_from(ev.r#type) {
                                Ok(api::EventType::Bookmark) => Ok(WatchEvent::Bookmark {
                                    resource_version: obj.resource_version,
                                    initial_events_end: ev.initial_events_end,
                                }),
                                Ok(api::EventType::Added) => decode(&obj).map(WatchEvent::Added),
                                Ok(api::EventType::Modified) => {
                                    decode(&obj).map(WatchEvent::Modified)
                                }
                                Ok(api::EventType::Deleted) => {
                                    decode(&obj).map(WatchEvent::Deleted)
                                }
                                _ => Err(Error::Decode(format!(
                                    "unknown watch event type {}",
                                    ev.r#type
                                ))),
                            };
                            if tx.send(out).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(status)) => {
                            let e = Error::from(status);
                            if e.is_retryable() {
                                // Resume elsewhere from the last resourceVersion.
                                me.rotate();
                                break;
                            }
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                        None => {
                            // The server closed the stream (shutting down): resume elsewhere.
                            me.rotate();
                            break;
                        }
                    }
                }
            }
        });
        tokio_stream_from(rx)
    }

    fn rotate(&self) {
        let n = self
            .inner
            .servers
            .lock()
            .expect("servers lock")
            .len()
            .max(1);
        let cur = self.inner.current.load(Ordering::Relaxed);
        self.inner.current.store((cur + 1) % n, Ordering::Relaxed);
    }

    // ---- typed objects ---------------------------------------------------------------------

    pub async fn get_typed<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<K> {
        from_value(self.get(&KindRef::of::<K>(), namespace, name).await?)
    }

    pub async fn list_typed<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        p: &ListParams,
    ) -> Result<(Vec<K>, String)> {
        let list = self.list_all(&KindRef::of::<K>(), p).await?;
        let items = list
            .items
            .into_iter()
            .map(from_value)
            .collect::<Result<_>>()?;
        Ok((items, list.resource_version))
    }

    pub async fn create_typed<K: k8s_openapi::Resource + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
        namespace: &str,
    ) -> Result<K> {
        from_value(self.create(&to_value(obj)?, namespace).await?)
    }

    pub async fn update_typed<K: k8s_openapi::Resource + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
    ) -> Result<K> {
        from_value(self.update(&to_value(obj)?).await?)
    }

    pub async fn update_status_typed<K: k8s_openapi::Resource + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
    ) -> Result<K> {
        from_value(self.update_status(&to_value(obj)?).await?)
    }

    // ---- the control plane -----------------------------------------------------------------

    /// The kinds the server serves.
    pub async fn discovery(&self) -> Result<Vec<api::ApiResource>> {
        let me = self.clone();
        Ok(self
            .call(|ch| {
                let r = me.request(api::DiscoveryRequest {});
                async move { resources_client(ch).discovery(r).await }
            })
            .await?
            .into_inner()
            .resources)
    }

    pub async fn members(&self) -> Result<api::MembersResponse> {
        let me = self.clone();
        Ok(self
            .call(|ch| {
                let r = me.request(api::MembersRequest {});
                async move { ClusterClient::new(ch).members(r).await }
            })
            .await?
            .into_inner())
    }

    pub async fn health(&self) -> Result<api::HealthResponse> {
        let me = self.clone();
        Ok(self
            .call(|ch| {
                let r = me.request(api::HealthRequest {});
                async move { ClusterClient::new(ch).health(r).await }
            })
            .await?
            .into_inner())
    }

    /// Add a server to the Raft cluster (as a learner that catches up, then a voter unless
    /// `learner_only`).
    pub async fn add_member(
        &self,
        id: u64,
        peer_addr: &str,
        learner_only: bool,
    ) -> Result<api::MembersResponse> {
        let me = self.clone();
        Ok(self
            .call(|ch| {
                let r = me.request(api::AddMemberRequest {
                    id,
                    peer_addr: peer_addr.to_string(),
                    learner_only,
                });
                async move { ClusterClient::new(ch).add_member(r).await }
            })
            .await?
            .into_inner())
    }

    /// Make a learner a voter.
    pub async fn promote_member(&self, id: u64) -> Result<api::MembersResponse> {
        let me = self.clone();
        Ok(self
            .call(|ch| {
                let r = me.request(api::PromoteMemberRequest { id });
                async move { ClusterClient::new(ch).promote_member(r).await }
            })
            .await?
            .into_inner())
    }

    /// Remove a server from the Raft cluster.
    pub async fn remove_member(&self, id: u64) -> Result<api::MembersResponse> {
        let me = self.clone();
        Ok(self
            .call(|ch| {
                let r = me.request(api::RemoveMemberRequest { id });
                async move { ClusterClient::new(ch).remove_member(r).await }
            })
            .await?
            .into_inner())
    }

    /// A consistent backup of the store.
    pub async fn snapshot(&self) -> Result<Vec<u8>> {
        let me = self.clone();
        let mut stream = self
            .call(|ch| {
                let r = me.request(api::SnapshotRequest {});
                async move { ClusterClient::new(ch).snapshot(r).await }
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend(chunk.map_err(Error::from)?.data);
        }
        Ok(out)
    }
}

/// Convert a JSON object into a typed one.
pub fn from_value<K: DeserializeOwned>(v: Value) -> Result<K> {
    serde_json::from_value(v).map_err(|e| Error::Decode(format!("cannot decode the object: {e}")))
}

pub fn to_value<K: Serialize>(obj: &K) -> Result<Value> {
    serde_json::to_value(obj).map_err(|e| Error::Decode(e.to_string()))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
