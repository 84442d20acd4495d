//! Informers: a typed in-memory cache of one kind kept current by a reflector (list, then watch
//! from the list's resourceVersion, relisting when the watch reports it too old), with change
//! handlers that controllers use to enqueue keys.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// What a controller can cache: any Kubernetes kind from k8s-openapi.
pub trait Object:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + DeserializeOwned
    + Serialize
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Object for T where
    T: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + DeserializeOwned
        + Serialize
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// `namespace/name` (namespace empty for cluster-scoped objects).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of<K: Object>(obj: &K) -> ObjectKey {
        let m = obj.metadata();
        ObjectKey::new(
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One change seen by an informer.
#[derive(Debug)]
pub enum Change<K> {
    Added(Arc<K>),
    Modified { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was when deleted).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Modified { new, .. } => new,
        }
    }

    /// The object before the change, if it existed.
    pub fn old(&self) -> Option<&Arc<K>> {
        match self {
            Change::Added(_) => None,
            Change::Modified { old, .. } => Some(old),
            Change::Deleted(o) => Some(o),
        }
    }
}

type Handler<K> = Arc<dyn Fn(&Change<K>) + Send + Sync>;

/// A typed cache of one kind. Clones share the cache.
pub struct Informer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    items: RwLock<BTreeMap<ObjectKey, Arc<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: AtomicBool,
    changed: Notify,
}

impl<K: Object> Default for Informer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Object> Informer<K> {
    pub fn new() -> Informer<K> {
        Informer {
            inner: Arc::new(Inner {
                items: RwLock::new(BTreeMap::new()),
                handlers: RwLock::new(Vec::new()),
                synced: AtomicBool::new(false),
                changed: Notify::new(),
            }),
        }
    }

    /// Call `f` for every change from now on (and for the initial list).
    pub fn on_change(&self, f: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.inner
            .handlers
            .write()
            .expect("handlers lock")
            .push(Arc::new(f));
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.inner
            .items
            .read()
            .expect("items lock")
            .get(&ObjectKey::new(namespace, name))
            .cloned()
    }

    /// Every cached object, in key order.
    pub fn list(&self) -> Vec<Arc<K>> {
        let items = self.inner.items.read().expect("items lock");
        items.values().cloned().collect()
    }

    /// The cached objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let items = self.inner.items.read().expect("items lock");
        let start = ObjectKey::new(namespace, "");
        items
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every cached key.
    pub fn keys(&self) -> Vec<ObjectKey> {
        let items = self.inner.items.read().expect("items lock");
        items.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.items.read().expect("items lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has been loaded.
    pub fn has_synced(&self) -> bool {
        self.inner.synced.load(Ordering::Acquire)
    }

    /// Wait until `pred` holds for this cache (re-checked after every change); false on timeout.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pred(self);
            }
        }
    }

    /// Apply one object as added or modified.
    pub fn upsert(&self, obj: K) {
        let key = ObjectKey::of(&obj);
        let new = Arc::new(obj);
        let old = self
            .inner
            .items
            .write()
            .expect("items lock")
            .insert(key, new.clone());
        let change = match old {
            Some(old) => Change::Modified { old, new },
            None => Change::Added(new),
        };
        self.notify(&change);
    }

    /// Apply one deletion.
    pub fn remove(&self, key: &ObjectKey) {
        let old = self.inner.items.write().expect("items lock").remove(key);
        if let Some(old) = old {
            self.notify(&Change::Deleted(old));
        }
    }

    /// Replace the whole content (a relist), emitting the difference as changes.
    pub fn replace(&self, objs: Vec<K>) {
        let mut fresh: BTreeMap<ObjectKey, Arc<K>> = objs
            .into_iter()
            .map(|o| (ObjectKey::of(&o), Arc::new(o)))
            .collect();
        let old = std::mem::take(&mut *self.inner.items.write().expect("items lock"));
        let mut changes = Vec::new();
        for (k, o) in &old {
            match fresh.get(k) {
                None => changes.push(Change::Deleted(o.clone())),
                Some(n) if resource_version(n.as_ref()) != resource_version(o.as_ref()) => changes
                    .push(Change::Modified {
                        old: o.clone(),
                        new: n.clone(),
                    }),
                Some(_) => {}
            }
        }
        for (k, n) in &fresh {
            if !old.contains_key(k) {
                changes.push(Change::Added(n.clone()));
            }
        }
        std::mem::swap(
            &mut *self.inner.items.write().expect("items lock"),
            &mut fresh,
        );
        self.inner.synced.store(true, Ordering::Release);
        for c in &changes {
            self.notify(c);
        }
        self.inner.changed.notify_waiters();
    }

    fn notify(&self, change: &Change<K>) {
        let handlers = self.inner.handlers.read().expect("handlers lock").clone();
        for h in handlers {
            h(change);
        }
        self.inner.changed.notify_waiters();
    }

    fn apply_event(&self, ev: WatchEvent) -> Result<()> {
        match ev {
            WatchEvent::Added(v) | WatchEvent::Modified(v) => self.upsert(decode(v)?),
            WatchEvent::Deleted(v) => {
                let obj: K = decode(v)?;
                self.remove(&ObjectKey::of(&obj));
            }
            WatchEvent::Bookmark { .. } => {}
        }
        Ok(())
    }

    /// Keep the cache current from `client` until the task is dropped: list, watch from the
    /// list's resourceVersion, relist when the watch fails with "too old" or any other error.
    pub async fn run(self, client: Client) {
        let kind = KindRef::of::<K>();
        let mut failures = 0u32;
        loop {
            match self.list_and_watch(&client, &kind).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let delay = Duration::from_millis(100 * u64::from(failures.min(30)));
                    tracing::debug!(kind = K::KIND, error = %e, ?delay, "reflector: relisting");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn list_and_watch(&self, client: &Client, kind: &KindRef) -> Result<()> {
        let list = client.list_all(kind, &ListParams::default()).await?;
        let objs = list
            .items
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<K>>>()?;
        self.replace(objs);
        let params = ListParams {
            resource_version: list.resource_version,
            ..Default::default()
        };
        let mut stream = Box::pin(client.watch(kind, &params, false));
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if let Err(e) = self.apply_event(ev) {
                        tracing::warn!(kind = K::KIND, error = %e, "reflector: skipping an undecodable event");
                    }
                }
                Err(rkube_client::Error::Gone(msg)) => {
                    tracing::info!(kind = K::KIND, %msg, "reflector: watch too old; relisting");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn resource_version<K: Object>(o: &K) -> Option<&str> {
    o.metadata().resource_version.as_deref()
}

fn decode<K: Object>(v: Value) -> Result<K> {
    serde_json::from_value(v).map_err(|e| Error::Decode(format!("{}: {e}", K::KIND)))
}

/// An informer of any kind, for code that handles kinds generically (the manager, the fake API).
pub trait AnyInformer: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    /// Apply an object given as JSON (added/modified) or remove it.
    fn apply_json(&self, obj: Value, deleted: bool) -> Result<()>;
    /// The cached object as JSON.
    fn get_json(&self, namespace: &str, name: &str) -> Option<Value>;
    /// Run the reflector.
    fn spawn(&self, client: Client) -> tokio::task::JoinHandle<()>;
    fn has_synced(&self) -> bool;
}

impl<K: Object> AnyInformer for Informer<K> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn apply_json(&self, obj: Value, deleted: bool) -> Result<()> {
        let obj: K = decode(obj)?;
        if deleted {
            self.remove(&ObjectKey::of(&obj));
        } else {
            self.upsert(obj);
        }
        Ok(())
    }
    fn get_json(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(namespace, name)
            .and_then(|o| serde_json::to_value(&*o).ok())
    }
    fn spawn(&self, client: Client) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run(client))
    }
    fn has_synced(&self) -> bool {
        Informer::has_synced(self)
    }
}

/// (apiVersion, kind) → its informer.
type InformerMap = HashMap<(String, String), Arc<dyn AnyInformer>>;

/// The shared informers of one manager: one per kind, created on first use.
#[derive(Clone, Default)]
pub struct Informers {
    map: Arc<Mutex<InformerMap>>,
}

impl Informers {
    pub fn new() -> Informers {
        Informers::default()
    }

    /// The informer of `K` (the same one for every caller).
    pub fn get<K: Object>(&self) -> Informer<K> {
        let mut map = self.map.lock().expect("informers lock");
        let entry = map
            .entry((K::API_VERSION.to_string(), K::KIND.to_string()))
            .or_insert_with(|| Arc::new(Informer::<K>::new()));
        entry
            .as_any()
            .downcast_ref::<Informer<K>>()
            .expect("one informer type per kind")
            .clone()
    }

    /// The informer of a kind given by apiVersion and kind, if one was created.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<dyn AnyInformer>> {
        let map = self.map.lock().expect("informers lock");
        map.get(&(api_version.to_string(), kind.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<dyn AnyInformer>> {
        self.map
            .lock()
            .expect("informers lock")
            .values()
            .cloned()
            .collect()
    }

    /// Whether every informer has loaded its first list.
    pub fn all_synced(&self) -> bool {
        self.all().iter().all(|i| i.has_synced())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(ns: &str, name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn replace_emits_the_difference() {
        let inf = Informer::<Pod>::new();
        inf.upsert(pod("a", "keep", "1"));
        inf.upsert(pod("a", "change", "1"));
        inf.upsert(pod("a", "gone", "1"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        inf.on_change(move |c| {
            let kind = match c {
                Change::Added(_) => "added",
                Change::Modified { .. } => "modified",
                Change::Deleted(_) => "deleted",
            };
            let name = c.object().metadata.name.clone().unwrap();
            s.lock().unwrap().push(format!("{kind} {name}"));
        });
        inf.replace(vec![
            pod("a", "keep", "1"),
            pod("a", "change", "2"),
            pod("b", "new", "3"),
        ]);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, ["added new", "deleted gone", "modified change"]);
        assert!(inf.has_synced());
        assert_eq!(inf.list_namespace("a").len(), 2);
        assert_eq!(inf.list_namespace("b").len(), 1);
        assert_eq!(inf.list_namespace("c").len(), 0);
    }

    #[tokio::test]
    async fn wait_until_sees_a_later_change() {
        let inf = Informer::<Pod>::new();
        let i2 = inf.clone();
        let waiter = tokio::spawn(async move {
            i2.wait_until(Duration::from_secs(30), |c| c.get("a", "p").is_some())
                .await
        });
        tokio::task::yield_now().await;
        inf.upsert(pod("a", "p", "1"));
        assert!(waiter.await.unwrap());
        let absent = inf
            .wait_until(Duration::from_millis(1), |c| c.get("a", "q").is_some())
            .await;
        assert!(!absent, "times out when the condition never holds");
    }

    #[test]
    fn informers_are_shared_per_kind() {
        let infs = Informers::new();
        infs.get::<Pod>().upsert(pod("a", "p", "1"));
        assert_eq!(infs.get::<Pod>().len(), 1);
        let any = infs.by_kind("v1", "Pod").unwrap();
        assert!(any.get_json("a", "p").is_some());
        any.apply_json(serde_json::to_value(pod("a", "p", "1")).unwrap(), true)
            .unwrap();
        assert!(infs.get::<Pod>().is_empty());
    }
}
