//! An in-memory [`Api`] for unit tests: writes are recorded as actions and applied to the
//! informers, as a real server's watch would, so a controller's next reconcile sees them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rkube_client::KindRef;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::runtime::api::{Api, DeleteOptions, Patch};
use crate::runtime::informer::Informers;

/// One write a controller made.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create {
        kind: String,
        key: String,
    },
    Update {
        kind: String,
        key: String,
    },
    UpdateStatus {
        kind: String,
        key: String,
    },
    Patch {
        kind: String,
        key: String,
        patch: Value,
    },
    Delete {
        kind: String,
        key: String,
        opts: DeleteOptions,
    },
}

impl Action {
    /// `"create Pod default/web-x"`-style summary, handy in assertions.
    pub fn summary(&self) -> String {
        match self {
            Action::Create { kind, key } => format!("create {kind} {key}"),
            Action::Update { kind, key } => format!("update {kind} {key}"),
            Action::UpdateStatus { kind, key } => format!("update-status {kind} {key}"),
            Action::Patch { kind, key, .. } => format!("patch {kind} {key}"),
            Action::Delete { kind, key, .. } => format!("delete {kind} {key}"),
        }
    }
}

pub struct FakeApi {
    informers: Informers,
    actions: Mutex<Vec<Action>>,
    revision: AtomicU64,
    /// Errors returned by the next writes, in order.
    failures: Mutex<Vec<Error>>,
}

impl FakeApi {
    pub fn new(informers: Informers) -> FakeApi {
        FakeApi {
            informers,
            actions: Mutex::new(Vec::new()),
            revision: AtomicU64::new(1000),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// The writes made so far (and forget them).
    pub fn take_actions(&self) -> Vec<Action> {
        std::mem::take(&mut *self.actions.lock().expect("actions lock"))
    }

    /// Summaries of the writes made so far (and forget them).
    pub fn take_summaries(&self) -> Vec<String> {
        self.take_actions().iter().map(Action::summary).collect()
    }

    /// Make the next write fail with `err`.
    pub fn fail_next(&self, err: Error) {
        self.failures.lock().expect("failures lock").push(err);
    }

    fn injected_failure(&self) -> Result<()> {
        let mut f = self.failures.lock().expect("failures lock");
        if f.is_empty() {
            Ok(())
        } else {
            Err(f.remove(0))
        }
    }

    fn record(&self, a: Action) {
        self.actions.lock().expect("actions lock").push(a);
    }

    fn next_rv(&self) -> String {
        (self.revision.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    fn store(&self, obj: &Value, deleted: bool) -> Result<()> {
        let av = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let inf = self.informers.by_kind(av, kind).ok_or_else(|| {
            Error::Invalid(format!("the fake API has no informer for {av} {kind}"))
        })?;
        inf.apply_json(obj.clone(), deleted)
    }

    fn current(&self, av: &str, kind: &str, ns: &str, name: &str) -> Result<Value> {
        self.informers
            .by_kind(av, kind)
            .and_then(|i| i.get_json(ns, name))
            .ok_or_else(|| {
                Error::Api(rkube_client::Error::NotFound(format!(
                    "{} \"{name}\" not found",
                    kind.to_lowercase()
                )))
            })
    }

    fn replace(&self, mut obj: Value, status: bool) -> Result<Value> {
        self.injected_failure()?;
        let (av, kind, ns, name) = identity(&obj);
        let cur = self.current(&av, &kind, &ns, &name)?;
        let sent_rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !sent_rv.is_empty() && sent_rv != cur["metadata"]["resourceVersion"] {
            return Err(Error::Api(rkube_client::Error::Conflict(format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified",
                kind.to_lowercase()
            ))));
        }
        if status {
            let mut merged = cur.clone();
            merged["status"] = obj["status"].take();
            obj = merged;
        } else {
            obj["status"] = cur["status"].clone();
            if obj.get("spec") != cur.get("spec") {
                let g = cur["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(g + 1);
            }
        }
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        let key = key(&ns, &name);
        self.record(if status {
            Action::UpdateStatus { kind, key }
        } else {
            Action::Update { kind, key }
        });
        self.store(&obj, false)?;
        Ok(obj)
    }
}

fn identity(obj: &Value) -> (String, String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&obj["apiVersion"]),
        s(&obj["kind"]),
        s(&obj["metadata"]["namespace"]),
        s(&obj["metadata"]["name"]),
    )
}

fn key(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

#[async_trait::async_trait]
impl Api for FakeApi {
    async fn create(&self, mut obj: Value, namespace: &str) -> Result<Value> {
        self.injected_failure()?;
        let rv = self.next_rv();
        let meta = &mut obj["metadata"];
        if meta["name"].as_str().unwrap_or_default().is_empty() {
            let prefix = meta["generateName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            meta["name"] = json!(format!("{prefix}{}", &rv[rv.len().saturating_sub(5)..]));
        }
        if !namespace.is_empty() {
            meta["namespace"] = json!(namespace);
        }
        meta["uid"] = json!(format!("uid-{rv}"));
        meta["resourceVersion"] = json!(rv);
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
        let (av, kind, ns, name) = identity(&obj);
        if self.current(&av, &kind, &ns, &name).is_ok() {
            return Err(Error::Api(rkube_client::Error::AlreadyExists(format!(
                "{} \"{name}\" already exists",
                kind.to_lowercase()
            ))));
        }
        self.record(Action::Create {
            kind,
            key: key(&ns, &name),
        });
        self.store(&obj, false)?;
        Ok(obj)
    }

    async fn update(&self, obj: Value) -> Result<Value> {
        self.replace(obj, false)
    }

    async fn update_status(&self, obj: Value) -> Result<Value> {
        self.replace(obj, true)
    }

    async fn patch(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        patch: Patch,
        _status: bool,
    ) -> Result<Value> {
        self.injected_failure()?;
        let (av, k) = (kind.0.api_version.clone(), kind.0.kind.clone());
        let mut obj = self.current(&av, &k, namespace, name)?;
        let body = match &patch {
            Patch::Merge(p) => {
                json_patch::merge(&mut obj, p);
                p.clone()
            }
            Patch::Json(p) => {
                let ops: json_patch::Patch = serde_json::from_value(p.clone())
                    .map_err(|e| Error::Invalid(format!("bad JSON patch: {e}")))?;
                json_patch::patch(&mut obj, &ops)
                    .map_err(|e| Error::Invalid(format!("JSON patch failed: {e}")))?;
                p.clone()
            }
        };
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.record(Action::Patch {
            kind: k,
            key: key(namespace, name),
            patch: body,
        });
        self.store(&obj, false)?;
        Ok(obj)
    }

    async fn delete(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Option<Value>> {
        self.injected_failure()?;
        let (av, k) = (kind.0.api_version.clone(), kind.0.kind.clone());
        let obj = self.current(&av, &k, namespace, name)?;
        self.record(Action::Delete {
            kind: k,
            key: key(namespace, name),
            opts,
        });
        self.store(&obj, true)?;
        Ok(None)
    }
}
