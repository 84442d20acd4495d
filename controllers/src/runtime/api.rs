//! The writes a controller makes, behind a trait: the real API client (fenced by the leader's
//! Raft term) in production, an in-memory fake that feeds the informers in unit tests. Reads come
//! from the informers' caches, never from this trait.

use std::sync::Arc;

use rkube_client::{Client, KindRef};
use rkube_proto::api;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::runtime::informer::Object;

/// How a delete treats the object's dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// The kind's default (background for most kinds).
    #[default]
    Default,
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the object still has this uid.
    pub precondition_uid: Option<String>,
}

/// The kind of patch a controller sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(Value),
}

/// Writes to the cluster.
///
/// # Correctness
/// Every write of one leadership term carries that term's fence: once another server holds
/// leadership, writes fail with `Fenced` instead of being committed.
#[async_trait::async_trait]
pub trait Api: Send + Sync {
    async fn create(&self, obj: Value, namespace: &str) -> Result<Value>;
    async fn update(&self, obj: Value) -> Result<Value>;
    async fn update_status(&self, obj: Value) -> Result<Value>;
    async fn patch(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        patch: Patch,
        status: bool,
    ) -> Result<Value>;
    /// Delete; `Ok(None)` when the object is gone, `Ok(Some(obj))` when it still exists
    /// (graceful deletion, finalizers).
    async fn delete(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Option<Value>>;
}

/// The shared handle controllers hold.
pub type ApiRef = Arc<dyn Api>;

/// [`Api`] over the real client.
pub struct ClientApi {
    client: Client,
}

impl ClientApi {
    /// `client` should be fenced ([`Client::fenced`]) with the current leadership term.
    pub fn new(client: Client) -> ClientApi {
        ClientApi { client }
    }
}

#[async_trait::async_trait]
impl Api for ClientApi {
    async fn create(&self, obj: Value, namespace: &str) -> Result<Value> {
        Ok(self.client.create(&obj, namespace).await?)
    }

    async fn update(&self, obj: Value) -> Result<Value> {
        Ok(self.client.update(&obj).await?)
    }

    async fn update_status(&self, obj: Value) -> Result<Value> {
        Ok(self.client.update_status(&obj).await?)
    }

    async fn patch(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        patch: Patch,
        status: bool,
    ) -> Result<Value> {
        let (ty, body) = match patch {
            Patch::Merge(v) => (api::PatchType::Merge, v),
            Patch::Json(v) => (api::PatchType::Json, v),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::Decode(e.to_string()))?;
        Ok(self
            .client
            .patch(kind, namespace, name, ty, &bytes, status)
            .await?)
    }

    async fn delete(
        &self,
        kind: &KindRef,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Option<Value>> {
        let propagation = match opts.propagation {
            Propagation::Default => api::PropagationPolicy::PropagationDefault,
            Propagation::Background => api::PropagationPolicy::Background,
            Propagation::Foreground => api::PropagationPolicy::Foreground,
            Propagation::Orphan => api::PropagationPolicy::Orphan,
        };
        let req = api::DeleteRequest {
            grace_period_seconds: opts.grace_period_seconds,
            propagation_policy: propagation as i32,
            precondition_uid: opts.precondition_uid.unwrap_or_default(),
            ..Default::default()
        };
        let (obj, removed) = self.client.delete(kind, namespace, name, req).await?;
        Ok((!removed).then_some(obj))
    }
}

/// Typed conveniences over [`Api`].
#[async_trait::async_trait]
pub trait ApiExt: Api {
    async fn create_object<K: Object>(&self, obj: &K) -> Result<K> {
        let ns = obj.metadata().namespace.clone().unwrap_or_default();
        decode(self.create(encode(obj)?, &ns).await?)
    }

    async fn update_object<K: Object>(&self, obj: &K) -> Result<K> {
        decode(self.update(encode(obj)?).await?)
    }

    async fn update_object_status<K: Object>(&self, obj: &K) -> Result<K> {
        decode(self.update_status(encode(obj)?).await?)
    }

    async fn merge_patch<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        patch: Value,
        status: bool,
    ) -> Result<K> {
        decode(
            self.patch(
                &KindRef::of::<K>(),
                namespace,
                name,
                Patch::Merge(patch),
                status,
            )
            .await?,
        )
    }

    /// Delete an object of kind `K`; a missing object is not an error.
    async fn delete_object<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<()> {
        match self
            .delete(&KindRef::of::<K>(), namespace, name, opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl<T: Api + ?Sized> ApiExt for T {}

/// An object as the JSON the API takes, with its apiVersion and kind set.
pub fn encode<K: Object>(obj: &K) -> Result<Value> {
    let mut v = serde_json::to_value(obj).map_err(|e| Error::Decode(e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(K::API_VERSION.into()));
        m.insert("kind".into(), Value::String(K::KIND.into()));
    }
    Ok(v)
}

pub fn decode<K: Object>(v: Value) -> Result<K> {
    serde_json::from_value(v).map_err(|e| Error::Decode(format!("{}: {e}", K::KIND)))
}
