//! The generic registry: create, get, list, update, patch, delete and watch for every kind, done
//! once over the store (keys `/registry/<group>/<resource>/<namespace>/<name>`, resourceVersion =
//! the key's mod revision), with each kind's strategy supplying defaults and validation.
//!
//! # Correctness
//! - Every write is a store transaction guarded by the object's mod revision (or its absence),
//!   so concurrent writers never lose each other's updates: the loser gets Conflict.
//! - A create in a namespace checks, in the same transaction, that the namespace exists.
//! - Objects are stored without `resourceVersion`; it is set from the mod revision on every read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rkube_proto::api;
use rkube_proto::store as pb;
use rkube_store::encoding::prefix_end;
use rkube_store::Store;
use serde_json::{json, Value};

use crate::allocator::ServiceAllocator;
use crate::error::{Error, Result};
use crate::kinds::{self, KindInfo};
use crate::object;
use crate::patch::{self, PatchType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::strategies;
use crate::strategy::Strategy;
use crate::validation::common::{validate_object_meta, NameRule};
use crate::validation::FieldErrors;

/// Largest object accepted, as in Kubernetes (etcd's request limit).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;
/// How often a patch or delete is retried when it races another writer.
const RETRIES: usize = 8;

/// The wall clock the API server stamps into objects (injectable for tests).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// Options of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub namespace: Option<String>,
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
    pub serializable: bool,
}

/// A list page.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<(Value, i64)>,
    pub revision: i64,
    pub continue_token: String,
    pub remaining: i64,
}

/// An object as watches deliver it: decoded and encoded once per replica and shared by every
/// watcher that sees it (with many watchers, per-watcher JSON work dominated the server's CPU).
#[derive(Debug, PartialEq)]
pub struct Shared {
    pub value: Value,
    pub wire: api::Object,
}

impl Shared {
    pub fn new(value: Value) -> Arc<Shared> {
        let wire = to_api_object(&value);
        Arc::new(Shared { value, wire })
    }
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Arc<Shared>),
    Modified(Arc<Shared>),
    Deleted(Arc<Shared>),
    /// Everything up to this revision has been delivered.
    Bookmark {
        revision: i64,
        initial_events_end: bool,
    },
}

/// Delete options.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Propagation,
    pub precondition_uid: String,
    pub precondition_resource_version: String,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Default,
    Orphan,
    Background,
    Foreground,
}

/// Options of a patch.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatchOptions {
    /// Patch the status subresource instead of the object.
    pub status: bool,
    pub dry_run: bool,
}

/// The result of a delete.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub object: Value,
    pub removed: bool,
}

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
    /// The Raft term every write of this handle is stamped with (see [`Registry::fenced`]).
    fence: Option<u64>,
}

struct Inner {
    store: Store,
    strategies: HashMap<&'static str, Box<dyn Strategy>>,
    clock: Clock,
    services: ServiceAllocator,
    events: Arc<EventCache>,
}

/// Recently decoded watch objects, keyed by (store key, resourceVersion, deleted). Bounded: the
/// oldest entries go first; a miss only costs a decode.
#[derive(Default)]
struct EventCache {
    inner: std::sync::Mutex<CacheState>,
}

/// The entries, and their keys oldest first.
type CacheKey = (Vec<u8>, i64, bool);
type CacheState = (
    HashMap<CacheKey, Arc<Shared>>,
    std::collections::VecDeque<CacheKey>,
);

const EVENT_CACHE_ENTRIES: usize = 8192;

impl EventCache {
    /// The shared form of `kv`, with its resourceVersion set to `rv`.
    fn get(&self, kv: &pb::KeyValue, rv: i64, deleted: bool) -> Result<Arc<Shared>> {
        let key = (kv.key.clone(), rv, deleted);
        if let Some(hit) = self.inner.lock().expect("event cache").0.get(&key) {
            return Ok(hit.clone());
        }
        let mut value = Registry::from_kv(kv)?;
        object::set_meta(&mut value, "resourceVersion", json!(rv.to_string()));
        let shared = Shared::new(value);
        let mut guard = self.inner.lock().expect("event cache");
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), shared.clone()).is_none() {
            order.push_back(key);
            if order.len() > EVENT_CACHE_ENTRIES {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        Ok(shared)
    }
}

/// What name rule a kind's objects follow.
fn name_rule(info: &KindInfo) -> NameRule {
    match info.kind {
        "Namespace" => NameRule::Label,
        "Service" => NameRule::Dns1035,
        _ => NameRule::Subdomain,
    }
}

fn random_suffix() -> String {
    // Kubernetes' alphabet for generated names: no vowels, no confusable characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn parse_rv(rv: &str) -> Result<i64> {
    if rv.is_empty() {
        return Ok(0);
    }
    rv.parse::<i64>().map_err(|_| {
        Error::BadRequest(format!(
            "invalid resourceVersion {rv:?}: must be an integer"
        ))
    })
}

fn txn_put(key: &str, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            ..Default::default()
        })),
    }
}

fn txn_delete(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::DeleteRange(
            pb::DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            },
        )),
    }
}

fn txn_get(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::Range(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

pub(crate) fn cmp_version(key: &str, result: pb::compare::Result, version: i64) -> pb::Compare {
    pb::Compare {
        key: key.as_bytes().to_vec(),
        target: pb::compare::Target::Version as i32,
        result: result as i32,
        target_union: Some(pb::compare::TargetUnion::Version(version)),
    }
}

fn cmp_mod(key: &str, rev: i64) -> pb::Compare {
    pb::Compare {
        key: key.as_bytes().to_vec(),
        target: pb::compare::Target::Mod as i32,
        result: pb::compare::Result::Equal as i32,
        target_union: Some(pb::compare::TargetUnion::ModRevision(rev)),
    }
}

fn txn_revision(resp: &pb::TxnResponse) -> i64 {
    resp.header.as_ref().map_or(0, |h| h.revision)
}

impl Registry {
    pub fn new(store: Store, clock: Clock, services: ServiceAllocator) -> Registry {
        let strategies = strategies::all()
            .into_iter()
            .map(|s| (s.info().kind, s))
            .collect();
        Registry {
            inner: Arc::new(Inner {
                store,
                strategies,
                clock,
                services,
                events: Arc::default(),
            }),
            fence: None,
        }
    }

    /// This registry with every store write stamped with the fencing `term`: a write committed in
    /// any other Raft term is rejected by the store (`Error::Fenced`), so a leader-elected writer
    /// that lost leadership cannot change anything.
    pub fn fenced(&self, term: u64) -> Registry {
        Registry {
            inner: self.inner.clone(),
            fence: Some(term),
        }
    }

    fn fence_token(&self) -> Option<pb::FencingToken> {
        self.fence.map(|raft_term| pb::FencingToken { raft_term })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn strategy(&self, info: &KindInfo) -> &dyn Strategy {
        self.inner.strategies[info.kind].as_ref()
    }

    fn now(&self) -> jiff::Timestamp {
        (self.inner.clock)()
    }

    /// The store key of an object.
    pub fn key(info: &KindInfo, namespace: &str, name: &str) -> String {
        if info.namespaced {
            format!("{}{namespace}/{name}", info.key_prefix())
        } else {
            format!("{}{name}", info.key_prefix())
        }
    }

    fn namespace_key(ns: &str) -> String {
        let info = kinds::resolve("namespaces").expect("namespaces are served");
        Self::key(info, "", ns)
    }

    /// Turn stored bytes into the object with its resourceVersion.
    fn from_kv(kv: &pb::KeyValue) -> Result<Value> {
        let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
            Error::Internal(format!(
                "stored object {} is not JSON: {e}",
                String::from_utf8_lossy(&kv.key)
            ))
        })?;
        object::set_meta(
            &mut v,
            "resourceVersion",
            Value::String(kv.mod_revision.to_string()),
        );
        Ok(v)
    }

    fn to_bytes(obj: &Value) -> Result<Vec<u8>> {
        let mut stored = obj.clone();
        object::meta_mut(&mut stored).remove("resourceVersion");
        let bytes = serde_json::to_vec(&stored).map_err(|e| Error::Internal(e.to_string()))?;
        if bytes.len() > MAX_OBJECT_BYTES {
            return Err(Error::RequestTooLarge(format!(
                "the object is {} bytes, at most {MAX_OBJECT_BYTES} (1.5 MiB) are accepted",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn not_found(info: &KindInfo, name: &str) -> Error {
        Error::NotFound {
            resource: info.qualified_plural(),
            name: name.to_string(),
        }
    }

    fn invalid(info: &KindInfo, name: &str, errors: FieldErrors) -> Error {
        Error::Invalid {
            kind: info.kind.to_string(),
            name: name.to_string(),
            errors,
        }
    }

    /// Which kind a JSON object is.
    pub fn kind_of(obj: &Value) -> Result<&'static KindInfo> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version.is_empty() || kind.is_empty() {
            return Err(Error::BadRequest(
                "the object has no apiVersion or kind: both are required".into(),
            ));
        }
        kinds::lookup(api_version, kind).map_err(Error::BadRequest)
    }

    /// Strictly decode, default and validate `obj` as a new object (metadata included).
    fn admit_new(&self, info: &'static KindInfo, obj: &Value) -> Result<Value> {
        let name = object::name(obj)
            .or_else(|| object::meta_str(obj, "generateName"))
            .unwrap_or("")
            .to_string();
        let strategy = self.strategy(info);
        let canonical = strategy
            .decode_and_default(obj)
            .map_err(|e| Self::invalid(info, &name, e))?;
        let mut errs = self.validate_meta(info, &canonical);
        errs.extend(strategy.validate(&canonical));
        if !errs.is_empty() {
            return Err(Self::invalid(info, &name, errs));
        }
        Ok(canonical)
    }

    fn validate_meta(&self, info: &KindInfo, obj: &Value) -> FieldErrors {
        let mut errs = Vec::new();
        let meta: ObjectMeta = obj
            .get("metadata")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .ok()
            .flatten()
            .unwrap_or_default();
        validate_object_meta(&meta, info.namespaced, name_rule(info), &mut errs);
        errs
    }

    // ---- create ----------------------------------------------------------------------------

    /// Create an object. `default_namespace` applies when the object names none.
    pub async fn create(
        &self,
        mut obj: Value,
        default_namespace: &str,
        dry_run: bool,
    ) -> Result<Value> {
        let info = Self::kind_of(&obj)?;
        if !obj.get("metadata").is_none_or(Value::is_object) {
            return Err(Error::BadRequest("metadata must be an object".into()));
        }
        if info.namespaced {
            if object::namespace(&obj).is_none() {
                let ns = if default_namespace.is_empty() {
                    "default"
                } else {
                    default_namespace
                };
                object::set_meta(&mut obj, "namespace", json!(ns));
            }
        } else if let Some(ns) = object::namespace(&obj) {
            return Err(Error::BadRequest(format!(
                "{} is cluster-scoped: metadata.namespace must not be set (got {ns:?})",
                info.kind
            )));
        }
        // Server-owned fields are never taken from the client.
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            object::meta_mut(&mut obj).remove(f);
        }
        let generate = object::name(&obj).is_none();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut candidate = obj.clone();
            if generate {
                if let Some(prefix) = object::meta_str(&obj, "generateName") {
                    let generated = format!("{prefix}{}", random_suffix());
                    object::set_meta(&mut candidate, "name", json!(generated));
                }
            }
            // The uid is known before defaulting: some defaults derive from it (a Job's selector).
            object::set_meta(
                &mut candidate,
                "uid",
                json!(uuid::Uuid::new_v4().to_string()),
            );
            let mut admitted = self.admit_new(info, &candidate)?;
            self.prepare_for_create(info, &mut admitted);
            match self.insert(info, admitted, dry_run).await {
                Err(Error::AlreadyExists { .. }) if generate && attempts < 5 => continue,
                other => return other,
            }
        }
    }

    /// Server-set fields and the status a new object starts with.
    fn prepare_for_create(&self, info: &KindInfo, obj: &mut Value) {
        let now = self.now();
        object::set_meta(
            obj,
            "creationTimestamp",
            json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        if info.has_status {
            object::set_meta(obj, "generation", json!(1));
        }
        match info.kind {
            // Nodes, namespaces and volumes may be created with their status (agents register
            // nodes whole); everything else starts from an empty status.
            "Node" | "PersistentVolume" | "PersistentVolumeClaim" => {}
            "Namespace" => obj["status"] = json!({"phase": "Active"}),
            "Pod" => obj["status"] = json!({"phase": "Pending", "qosClass": pod_qos_class(obj)}),
            _ if info.has_status => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
            _ => {}
        }
        if (info.kind == "PersistentVolume" || info.kind == "PersistentVolumeClaim")
            && obj.get("status").and_then(|s| s.get("phase")).is_none()
        {
            obj["status"] = json!({"phase": "Pending"});
        }
    }

    async fn insert(
        &self,
        info: &'static KindInfo,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value> {
        let ns = object::namespace(&obj).unwrap_or("").to_string();
        let name = object::name(&obj).unwrap_or("").to_string();
        let key = Self::key(info, &ns, &name);
        for _ in 0..RETRIES {
            let mut compare = vec![cmp_version(&key, pb::compare::Result::Equal, 0)];
            let mut success = Vec::new();
            if info.namespaced {
                compare.push(cmp_version(
                    &Self::namespace_key(&ns),
                    pb::compare::Result::Greater,
                    0,
                ));
            }
            if info.kind == "Service" {
                let claims = self
                    .inner
                    .services
                    .allocate(&self.inner.store, &mut obj, None)
                    .await?;
                for c in &claims {
                    compare.push(cmp_version(c, pb::compare::Result::Equal, 0));
                    success.push(txn_put(c, key.clone().into_bytes()));
                }
            }
            let bytes = Self::to_bytes(&obj)?;
            if dry_run {
                return Ok(obj);
            }
            success.insert(0, txn_put(&key, bytes));
            let failure = vec![txn_get(&key), txn_get(&Self::namespace_key(&ns))];
            let resp = self
                .inner
                .store
                .txn(pb::TxnRequest {
                    compare,
                    success,
                    failure,
                    fence: self.fence_token(),
                })
                .await?;
            if resp.succeeded {
                object::set_meta(
                    &mut obj,
                    "resourceVersion",
                    json!(txn_revision(&resp).to_string()),
                );
                return Ok(obj);
            }
            let found = |i: usize| {
                matches!(&resp.responses.get(i).and_then(|r| r.response.as_ref()),
                    Some(pb::response_op::Response::Range(r)) if !r.kvs.is_empty())
            };
            if found(0) {
                return Err(Error::AlreadyExists {
                    resource: info.qualified_plural(),
                    name,
                });
            }
            if info.namespaced && !found(1) {
                return Err(Error::NotFound {
                    resource: "namespaces".into(),
                    name: ns,
                });
            }
            // An allocation raced another create: pick again.
        }
        Err(Error::Unavailable(
            "too many concurrent allocations; retry".into(),
        ))
    }

    // ---- read ------------------------------------------------------------------------------

    async fn get_kv(
        &self,
        info: &KindInfo,
        ns: &str,
        name: &str,
        serializable: bool,
    ) -> Result<Option<pb::KeyValue>> {
        let key = Self::key(info, ns, name);
        let resp = self
            .inner
            .store
            .range(pb::RangeRequest {
                key: key.into_bytes(),
                serializable,
                ..Default::default()
            })
            .await?;
        Ok(resp.kvs.into_iter().next())
    }

    pub async fn get(
        &self,
        info: &'static KindInfo,
        ns: &str,
        name: &str,
        serializable: bool,
    ) -> Result<Value> {
        let ns = if info.namespaced { ns } else { "" };
        match self.get_kv(info, ns, name, serializable).await? {
            Some(kv) => Self::from_kv(&kv),
            None => Err(Self::not_found(info, name)),
        }
    }

    /// List objects, one page at one revision.
    pub async fn list(&self, info: &'static KindInfo, opts: &ListOptions) -> Result<ListPage> {
        let labels = LabelSelector::parse(&opts.label_selector).map_err(Error::BadRequest)?;
        let fields = FieldSelector::parse(&opts.field_selector).map_err(Error::BadRequest)?;
        fields.validate_for(info).map_err(Error::BadRequest)?;
        let prefix = match (&opts.namespace, info.namespaced) {
            (Some(ns), true) if !ns.is_empty() => format!("{}{ns}/", info.key_prefix()),
            _ => info.key_prefix(),
        };
        let end = prefix_end(prefix.as_bytes());
        let (mut start, mut revision) = (
            prefix.clone().into_bytes(),
            parse_rv(&opts.resource_version)?,
        );
        if !opts.continue_token.is_empty() {
            let (rev, key) = decode_continue(&opts.continue_token)?;
            if !key.starts_with(prefix.as_bytes()) {
                return Err(Error::BadRequest(
                    "the continue token belongs to another list".into(),
                ));
            }
            start = key;
            revision = rev;
        }
        if !opts.serializable && revision == 0 {
            self.inner.store.linearize().await?;
        }
        let limit = if opts.limit > 0 {
            opts.limit as usize
        } else {
            usize::MAX
        };
        let filtered =
            !opts.label_selector.trim().is_empty() || !opts.field_selector.trim().is_empty();
        let mut items = Vec::new();
        let mut next_key: Option<Vec<u8>> = None;
        let mut remaining = 0;
        // Read in chunks until the page is full (selectors may drop items) or the range ends.
        loop {
            let chunk = if limit == usize::MAX {
                0
            } else {
                (limit - items.len()).max(64) as i64
            };
            let resp = self
                .inner
                .store
                .range(pb::RangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    limit: chunk,
                    revision,
                    serializable: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| match e {
                    rkube_store::Error::Compacted { .. } if !opts.continue_token.is_empty() => {
                        Error::Gone {
                            requested: revision,
                            compacted: 0,
                        }
                    }
                    other => other.into(),
                })?;
            if revision == 0 {
                revision = resp.header.as_ref().map_or(0, |h| h.revision);
            }
            let n = resp.kvs.len();
            for (i, kv) in resp.kvs.iter().enumerate() {
                let obj = Self::from_kv(kv)?;
                if labels.matches(&object::labels(&obj))
                    && fields.matches(&obj, info).map_err(Error::BadRequest)?
                {
                    items.push((obj, kv.mod_revision));
                    if items.len() == limit {
                        let more_in_chunk = i + 1 < n;
                        if more_in_chunk || resp.more {
                            let mut k = kv.key.clone();
                            k.push(0);
                            next_key = Some(k);
                            if !filtered {
                                remaining = resp.count - (i as i64 + 1);
                            }
                        }
                        break;
                    }
                }
            }
            if items.len() == limit || !resp.more || n == 0 {
                break;
            }
            let mut k = resp.kvs.last().expect("non-empty").key.clone();
            k.push(0);
            start = k;
        }
        let continue_token = next_key
            .map(|k| encode_continue(revision, &k))
            .unwrap_or_default();
        Ok(ListPage {
            items,
            revision,
            continue_token,
            remaining,
        })
    }

    // ---- update ----------------------------------------------------------------------------

    /// Replace an object (or only its status). A resourceVersion in `obj` must match the stored
    /// one; without it the update applies to whatever is stored.
    pub async fn update(&self, obj: Value, status_only: bool, dry_run: bool) -> Result<Value> {
        let info = Self::kind_of(&obj)?;
        if status_only && !info.has_status {
            return Err(Error::MethodNotSupported(format!(
                "{} has no status subresource",
                info.qualified_plural()
            )));
        }
        let ns = if info.namespaced {
            object::namespace(&obj).unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let name = object::name(&obj)
            .ok_or_else(|| Error::BadRequest("metadata.name is required for an update".into()))?
            .to_string();
        let want_rv = parse_rv(object::meta_str(&obj, "resourceVersion").unwrap_or(""))?;
        let kv = self
            .get_kv(info, &ns, &name, false)
            .await?
            .ok_or_else(|| Self::not_found(info, &name))?;
        if want_rv != 0 && want_rv != kv.mod_revision {
            return Err(conflict(info, &name));
        }
        let old = Self::from_kv(&kv)?;
        let mut new = obj;
        if info.namespaced {
            object::set_meta(&mut new, "namespace", json!(ns));
        }
        self.replace(info, &old, kv.mod_revision, new, status_only, dry_run)
            .await
    }

    /// Write `new` over `old` (stored at `mod_revision`) applying the update rules.
    async fn replace(
        &self,
        info: &'static KindInfo,
        old: &Value,
        mod_revision: i64,
        new: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value> {
        let name = object::name(old).unwrap_or("").to_string();
        let mut merged = if status_only {
            // Only status changes; everything else stays as stored.
            let mut m = old.clone();
            m["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if m["status"].is_null() {
                m.as_object_mut().expect("object").remove("status");
            }
            m
        } else {
            let mut m = new;
            if info.has_status {
                match old.get("status") {
                    Some(s) => m["status"] = s.clone(),
                    None => {
                        m.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            }
            m
        };
        // Server-owned metadata stays as stored.
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match old.get("metadata").and_then(|m| m.get(f)) {
                Some(v) => object::set_meta(&mut merged, f, v.clone()),
                None => object::set_meta(&mut merged, f, Value::Null),
            }
        }
        object::set_meta(&mut merged, "resourceVersion", Value::Null);
        let strategy = self.strategy(info);
        let canonical = strategy
            .decode_and_default(&merged)
            .map_err(|e| Self::invalid(info, &name, e))?;
        let mut canonical = canonical;
        let mut errs = self.validate_meta(info, &canonical);
        errs.extend(strategy.validate_update(&canonical, old));
        if !errs.is_empty() {
            return Err(Self::invalid(info, &name, errs));
        }
        if info.has_status && object::spec_part(&canonical) != object::spec_part(old) {
            object::set_meta(
                &mut canonical,
                "generation",
                json!(object::generation(old) + 1),
            );
        }
        let mut old_cmp = old.clone();
        object::set_meta(&mut old_cmp, "resourceVersion", Value::Null);
        if canonical == old_cmp {
            // Nothing changed: no write, the resourceVersion stays (as in Kubernetes).
            return Ok(old.clone());
        }
        let ns = object::namespace(old).unwrap_or("").to_string();
        let key = Self::key(info, &ns, &name);
        // The last finalizer of an object being deleted is gone: remove the object.
        if object::is_deleting(&canonical)
            && object::finalizers(&canonical).is_empty()
            && graceful_wait_over(info, &canonical)
        {
            if dry_run {
                return Ok(canonical);
            }
            return self
                .remove(info, &key, &canonical, mod_revision)
                .await
                .map(|_| canonical);
        }
        let mut compare = vec![cmp_mod(&key, mod_revision)];
        let mut success = Vec::new();
        if info.kind == "Service" {
            let (claims, releases) = self
                .inner
                .services
                .reallocate(&self.inner.store, &mut canonical, old)
                .await?;
            for c in &claims {
                compare.push(cmp_version(c, pb::compare::Result::Equal, 0));
                success.push(txn_put(c, key.clone().into_bytes()));
            }
            for r in &releases {
                success.push(txn_delete(r));
            }
        }
        let bytes = Self::to_bytes(&canonical)?;
        if dry_run {
            return Ok(canonical);
        }
        success.insert(0, txn_put(&key, bytes));
        let resp = self
            .inner
            .store
            .txn(pb::TxnRequest {
                compare,
                success,
                failure: vec![],
                fence: self.fence_token(),
            })
            .await?;
        if !resp.succeeded {
            // Deleted meanwhile: NotFound, as Kubernetes answers after re-reading (a Conflict
            // would claim the object still exists, at another version).
            if self.get_kv(info, &ns, &name, false).await?.is_none() {
                return Err(Self::not_found(info, &name));
            }
            return Err(conflict(info, &name));
        }
        object::set_meta(
            &mut canonical,
            "resourceVersion",
            json!(txn_revision(&resp).to_string()),
        );
        Ok(canonical)
    }

    /// Remove an object (and what it holds, like a Service's allocations) if unchanged since
    /// `mod_revision`.
    async fn remove(
        &self,
        info: &KindInfo,
        key: &str,
        obj: &Value,
        mod_revision: i64,
    ) -> Result<i64> {
        let mut success = vec![txn_delete(key)];
        if info.kind == "Service" {
            for r in self.inner.services.claims_of(obj) {
                success.push(txn_delete(&r));
            }
        }
        let resp = self
            .inner
            .store
            .txn(pb::TxnRequest {
                compare: vec![cmp_mod(key, mod_revision)],
                success,
                failure: vec![],
                fence: self.fence_token(),
            })
            .await?;
        if !resp.succeeded {
            return Err(conflict(info, object::name(obj).unwrap_or("")));
        }
        Ok(txn_revision(&resp))
    }

    /// Apply a patch to the stored object and write it, retrying if another writer raced it.
    pub async fn patch(
        &self,
        info: &'static KindInfo,
        ns: &str,
        name: &str,
        ty: PatchType,
        patch_bytes: &[u8],
        opts: PatchOptions,
    ) -> Result<Value> {
        let ns = if info.namespaced { ns } else { "" };
        for _ in 0..RETRIES {
            let kv = self
                .get_kv(info, ns, name, false)
                .await?
                .ok_or_else(|| Self::not_found(info, name))?;
            let old = Self::from_kv(&kv)?;
            let patched = patch::apply(info, &old, patch_bytes, ty).map_err(Error::BadRequest)?;
            // A resourceVersion the patch itself sets is a precondition (Kubernetes' optimistic
            // patch); otherwise the patch applies to whatever version is current, retrying on
            // concurrent writes.
            let want_rv = if patch_sets_resource_version(patch_bytes, ty) {
                parse_rv(object::meta_str(&patched, "resourceVersion").unwrap_or(""))?
            } else {
                0
            };
            if want_rv != 0 && want_rv != kv.mod_revision {
                return Err(conflict(info, name));
            }
            if object::name(&patched) != Some(name) {
                return Err(Error::BadRequest(
                    "a patch may not change metadata.name".into(),
                ));
            }
            match self
                .replace(
                    info,
                    &old,
                    kv.mod_revision,
                    patched,
                    opts.status,
                    opts.dry_run,
                )
                .await
            {
                Err(Error::Conflict { .. }) if want_rv == 0 => continue,
                other => return other,
            }
        }
        Err(conflict(info, name))
    }

    // ---- delete ----------------------------------------------------------------------------

    pub async fn delete(
        &self,
        info: &'static KindInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        let ns = if info.namespaced { ns } else { "" };
        for _ in 0..RETRIES {
            let kv = self
                .get_kv(info, ns, name, false)
                .await?
                .ok_or_else(|| Self::not_found(info, name))?;
            let cur = Self::from_kv(&kv)?;
            if !opts.precondition_uid.is_empty()
                && object::meta_str(&cur, "uid") != Some(opts.precondition_uid.as_str())
            {
                return Err(Error::Conflict {
                    resource: info.qualified_plural(),
                    name: name.into(),
                    message: format!(
                        "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                        opts.precondition_uid,
                        object::meta_str(&cur, "uid").unwrap_or("")
                    ),
                });
            }
            if !opts.precondition_resource_version.is_empty()
                && parse_rv(&opts.precondition_resource_version)? != kv.mod_revision
            {
                return Err(Error::Conflict {
                    resource: info.qualified_plural(),
                    name: name.into(),
                    message: format!("Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {}", opts.precondition_resource_version, kv.mod_revision),
                });
            }
            let key = Self::key(info, ns, name);
            let mut finalizers = object::finalizers(&cur);
            let policy = match opts.propagation {
                Propagation::Default => Propagation::Background,
                p => p,
            };
            let extra = match policy {
                Propagation::Orphan => Some("orphan"),
                Propagation::Foreground => Some("foregroundDeletion"),
                _ => None,
            };
            if let Some(f) = extra {
                if !finalizers.iter().any(|x| x == f) && !object::is_deleting(&cur) {
                    finalizers.push(f.to_string());
                }
            }
            let grace = self.grace_period(info, &cur, opts.grace_period_seconds);
            let namespace_kind = info.kind == "Namespace";
            if finalizers.is_empty() && grace == 0 && !namespace_kind {
                if opts.dry_run {
                    return Ok(Deleted {
                        object: cur,
                        removed: true,
                    });
                }
                match self.remove(info, &key, &cur, kv.mod_revision).await {
                    Ok(_) => {
                        return Ok(Deleted {
                            object: cur,
                            removed: true,
                        })
                    }
                    Err(Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            // Graceful: mark the object; its finalizers' owners (or the agent) finish the job.
            let mut marked = cur.clone();
            let now = self.now();
            if !object::is_deleting(&cur) {
                let at = now
                    .checked_add(jiff::SignedDuration::from_secs(grace))
                    .unwrap_or(now);
                object::set_meta(
                    &mut marked,
                    "deletionTimestamp",
                    json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                object::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace));
            } else if let Some(prev) = cur["metadata"]["deletionGracePeriodSeconds"].as_i64() {
                // A shorter grace period may replace a longer one (kubectl delete --grace-period=0 --force).
                if grace < prev {
                    let at = now
                        .checked_add(jiff::SignedDuration::from_secs(grace))
                        .unwrap_or(now);
                    object::set_meta(
                        &mut marked,
                        "deletionTimestamp",
                        json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                    object::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace));
                }
            }
            object::set_finalizers(&mut marked, &finalizers);
            if namespace_kind {
                marked["status"] = json!({"phase": "Terminating"});
            }
            if marked == cur {
                return Ok(Deleted {
                    object: cur,
                    removed: false,
                });
            }
            if opts.dry_run {
                return Ok(Deleted {
                    object: marked,
                    removed: false,
                });
            }
            object::set_meta(&mut marked, "resourceVersion", Value::Null);
            let bytes = Self::to_bytes(&marked)?;
            let resp = self
                .inner
                .store
                .txn(pb::TxnRequest {
                    compare: vec![cmp_mod(&key, kv.mod_revision)],
                    success: vec![txn_put(&key, bytes)],
                    failure: vec![],
                    fence: self.fence_token(),
                })
                .await?;
            if !resp.succeeded {
                continue;
            }
            object::set_meta(
                &mut marked,
                "resourceVersion",
                json!(txn_revision(&resp).to_string()),
            );
            return Ok(Deleted {
                object: marked,
                removed: false,
            });
        }
        Err(conflict(info, name))
    }

    /// Seconds a deletion waits: pods that run on a node get their grace period so the agent can
    /// stop them; everything else goes at once.
    fn grace_period(&self, info: &KindInfo, obj: &Value, requested: Option<i64>) -> i64 {
        if info.kind != "Pod" {
            return 0;
        }
        let spec = &obj["spec"];
        let phase = obj["status"]["phase"].as_str().unwrap_or("");
        let bound = spec["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        if !bound || phase == "Succeeded" || phase == "Failed" {
            return 0;
        }
        requested
            .unwrap_or_else(|| spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30))
            .max(0)
    }

    // ---- watch -----------------------------------------------------------------------------

    /// Watch objects of a kind. With `send_initial_events` the current objects come first as
    /// Added events, then a bookmark marking their end.
    pub async fn watch(
        &self,
        info: &'static KindInfo,
        opts: &ListOptions,
        send_initial_events: bool,
        bookmark_every: Duration,
    ) -> Result<impl Stream<Item = Result<WatchEvent>> + Send + 'static> {
        let labels = LabelSelector::parse(&opts.label_selector).map_err(Error::BadRequest)?;
        let fields = FieldSelector::parse(&opts.field_selector).map_err(Error::BadRequest)?;
        fields.validate_for(info).map_err(Error::BadRequest)?;
        let mut initial = Vec::new();
        let mut from = parse_rv(&opts.resource_version)?;
        if send_initial_events || from == 0 {
            let page = self
                .list(
                    info,
                    &ListOptions {
                        limit: 0,
                        continue_token: String::new(),
                        ..opts.clone()
                    },
                )
                .await?;
            if send_initial_events {
                initial = page
                    .items
                    .into_iter()
                    .map(|(o, _)| Ok(WatchEvent::Added(Shared::new(o))))
                    .collect();
                initial.push(Ok(WatchEvent::Bookmark {
                    revision: page.revision,
                    initial_events_end: true,
                }));
            }
            if from == 0 || send_initial_events {
                from = page.revision;
            }
        }
        let prefix = match (&opts.namespace, info.namespaced) {
            (Some(ns), true) if !ns.is_empty() => format!("{}{ns}/", info.key_prefix()),
            _ => info.key_prefix(),
        };
        let raw = self.inner.store.watch(pb::WatchRequest {
            key: prefix.clone().into_bytes(),
            range_end: prefix_end(prefix.as_bytes()),
            start_revision: from + 1,
            progress_interval_ms: bookmark_every.as_millis() as u64,
        });
        let cache = self.inner.events.clone();
        let events = raw.flat_map(move |item| {
            let out: Vec<Result<WatchEvent>> = match item {
                Err(e) => vec![Err(Error::from(e))],
                Ok(resp) if resp.progress_notify => {
                    vec![Ok(WatchEvent::Bookmark {
                        revision: resp.header.map_or(0, |h| h.revision),
                        initial_events_end: false,
                    })]
                }
                Ok(resp) => resp
                    .events
                    .iter()
                    .filter_map(|ev| translate(ev, &cache, &labels, &fields, info).transpose())
                    .collect(),
            };
            futures::stream::iter(out)
        });
        Ok(futures::stream::iter(initial).chain(events))
    }
}

/// A store event as the watcher of a filtered view sees it: objects entering the view are
/// Added, leaving it Deleted (as Kubernetes' watch cache does).
fn translate(
    ev: &pb::Event,
    cache: &EventCache,
    labels: &LabelSelector,
    fields: &FieldSelector,
    info: &KindInfo,
) -> Result<Option<WatchEvent>> {
    let unfiltered = labels.is_empty() && fields.is_empty();
    let visible = |o: &Value| -> Result<bool> {
        Ok(unfiltered
            || (labels.matches(&object::labels(o))
                && fields.matches(o, info).map_err(Error::BadRequest)?))
    };
    let kv = ev
        .kv
        .as_ref()
        .ok_or_else(|| Error::Internal("watch event without kv".into()))?;
    if ev.r#type == pb::event::EventType::Delete as i32 {
        let Some(prev) = &ev.prev_kv else {
            return Ok(None);
        };
        // The last state, at the deleting revision.
        let last = cache.get(prev, kv.mod_revision, true)?;
        return Ok(visible(&last.value)?.then_some(WatchEvent::Deleted(last)));
    }
    let cur = cache.get(kv, kv.mod_revision, false)?;
    let now_visible = visible(&cur.value)?;
    let was_visible = match &ev.prev_kv {
        Some(_) if unfiltered => true,
        Some(p) => visible(&cache.get(p, p.mod_revision, false)?.value)?,
        None => false,
    };
    Ok(match (was_visible, now_visible) {
        (false, true) => Some(WatchEvent::Added(cur)),
        (true, true) => Some(WatchEvent::Modified(cur)),
        // Left the view: Kubernetes reports the new state as Deleted.
        (true, false) => Some(WatchEvent::Deleted(cur)),
        (false, false) => None,
    })
}

/// Whether a patch names `metadata.resourceVersion` (then it is a precondition).
fn patch_sets_resource_version(patch_bytes: &[u8], ty: PatchType) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(patch_bytes) else {
        return false;
    };
    match ty {
        PatchType::Json => v.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["path"].as_str() == Some("/metadata/resourceVersion"))
        }),
        PatchType::Merge | PatchType::Strategic => v["metadata"]["resourceVersion"].is_string(),
    }
}

/// Whether an object whose finalizers are gone may be removed now: pods wait for the agent to
/// confirm with a zero grace period; namespaces wait for their `spec.finalizers` (the namespace
/// controller empties them once the namespace's content is gone).
fn graceful_wait_over(info: &KindInfo, obj: &Value) -> bool {
    match info.kind {
        "Pod" => {
            obj["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                == 0
        }
        "Namespace" => obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        _ => true,
    }
}

fn conflict(info: &KindInfo, name: &str) -> Error {
    Error::Conflict {
        resource: info.qualified_plural(),
        name: name.to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

/// Kubernetes' QoS class of a pod from its containers' requests and limits.
fn pod_qos_class(pod: &Value) -> &'static str {
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c["resources"]["requests"].as_object();
        let lim = c["resources"]["limits"].as_object();
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(r));
            let q = req.and_then(|q| q.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn encode_continue(revision: i64, key: &[u8]) -> String {
    let raw = json!({"rv": revision, "start": hex::encode(key)}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(i64, Vec<u8>)> {
    let bad = || Error::BadRequest("invalid continue token".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().ok_or_else(bad)?;
    let key = hex::decode(v["start"].as_str().ok_or_else(bad)?).map_err(|_| bad())?;
    Ok((rev, key))
}

/// Convert a registry watch event for the wire.
pub fn to_api_event(ev: WatchEvent) -> api::WatchEvent {
    let (ty, obj, end) = match ev {
        WatchEvent::Added(o) => (api::EventType::Added, Some(o.wire.clone()), false),
        WatchEvent::Modified(o) => (api::EventType::Modified, Some(o.wire.clone()), false),
        WatchEvent::Deleted(o) => (api::EventType::Deleted, Some(o.wire.clone()), false),
        WatchEvent::Bookmark {
            revision,
            initial_events_end,
        } => (
            api::EventType::Bookmark,
            Some(api::Object {
                resource_version: revision.to_string(),
                ..Default::default()
            }),
            initial_events_end,
        ),
    };
    api::WatchEvent {
        r#type: ty as i32,
        object: obj,
        initial_events_end: end,
    }
}

/// The wire form of an object: envelope fields plus JSON.
pub fn to_api_object(o: &Value) -> api::Object {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    api::Object {
        api_version: s(&o["apiVersion"]),
        kind: s(&o["kind"]),
        namespace: object::namespace(o).unwrap_or("").to_string(),
        name: object::name(o).unwrap_or("").to_string(),
        resource_version: object::meta_str(o, "resourceVersion")
            .unwrap_or("")
            .to_string(),
        uid: object::meta_str(o, "uid").unwrap_or("").to_string(),
        json: serde_json::to_vec(o).unwrap_or_default(),
    }
}
