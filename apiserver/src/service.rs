//! The gRPC services of the API (`rkube.api.v1`): Resources and Cluster. Each call is
//! authenticated, then handed to the registry; errors become statuses in `error.rs`.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rkube_proto::api;
use rkube_proto::api::cluster_server::Cluster;
use rkube_proto::api::resources_server::Resources;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::error::{Error, Result};
use crate::kinds::{self, KindInfo};
use crate::members;
use crate::patch::PatchType;
use crate::registry::{
    to_api_event, to_api_object, DeleteOptions, ListOptions, PatchOptions, Propagation, Registry,
    MAX_OBJECT_BYTES,
};

/// Default interval of watch bookmarks.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ApiService {
    pub registry: Registry,
    pub auth: Authenticator,
}

fn resolve(kind: Option<&api::KindRef>) -> Result<&'static KindInfo> {
    let k = kind.ok_or_else(|| Error::BadRequest("kind is required".into()))?;
    if !k.kind.is_empty() {
        let version = if k.api_version.is_empty() {
            kinds::resolve(&k.kind)
                .map(|i| i.api_version())
                .unwrap_or_default()
        } else {
            k.api_version.clone()
        };
        return kinds::lookup(&version, &k.kind).map_err(Error::BadRequest);
    }
    kinds::resolve(&k.resource).ok_or_else(|| {
        Error::BadRequest(format!(
            "the server doesn't have a resource type \"{}\"",
            k.resource
        ))
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value> {
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(Error::RequestTooLarge(format!(
            "the request is {} bytes, at most {MAX_OBJECT_BYTES} (1.5 MiB) are accepted",
            bytes.len()
        )));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::BadRequest(format!("the object is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::BadRequest("the object must be a JSON object".into()));
    }
    Ok(v)
}

/// The metadata key a leader-elected writer stamps its writes with (see `api.proto`, "Fencing").
pub const FENCE_TERM_METADATA: &str = "rkube-fence-term";

impl ApiService {
    async fn authn<T>(&self, req: &Request<T>) -> Result<crate::auth::User> {
        self.auth.authenticate(req).await
    }

    /// The registry that serves a write: fenced by the request's `rkube-fence-term`, if any.
    fn writer<T>(&self, req: &Request<T>) -> Result<Registry> {
        let Some(v) = req.metadata().get(FENCE_TERM_METADATA) else {
            return Ok(self.registry.clone());
        };
        let term = v
            .to_str()
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "metadata {FENCE_TERM_METADATA} must be a positive Raft term, got {v:?}"
                ))
            })?;
        Ok(self.registry.fenced(term))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<api::WatchEvent, Status>> + Send>>;
type SnapshotStream = Pin<Box<dyn Stream<Item = Result<api::SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Resources for ApiService {
    async fn discovery(
        &self,
        req: Request<api::DiscoveryRequest>,
    ) -> Result<Response<api::DiscoveryResponse>, Status> {
        self.authn(&req).await?;
        let resources = kinds::KINDS
            .iter()
            .map(|k| api::ApiResource {
                name: k.plural.into(),
                singular_name: k.singular.into(),
                short_names: k.short_names.iter().map(|s| s.to_string()).collect(),
                group: k.group.into(),
                version: k.version.into(),
                kind: k.kind.into(),
                namespaced: k.namespaced,
                has_status: k.has_status,
            })
            .collect();
        Ok(Response::new(api::DiscoveryResponse { resources }))
    }

    async fn create(
        &self,
        req: Request<api::CreateRequest>,
    ) -> Result<Response<api::Object>, Status> {
        self.authn(&req).await?;
        let registry = self.writer(&req)?;
        let r = req.into_inner();
        let obj = parse_json(&r.json)?;
        let created = registry.create(obj, &r.namespace, r.dry_run).await?;
        Ok(Response::new(to_api_object(&created)))
    }

    async fn get(&self, req: Request<api::GetRequest>) -> Result<Response<api::Object>, Status> {
        self.authn(&req).await?;
        let r = req.into_inner();
        let info = resolve(r.kind.as_ref())?;
        let obj = self
            .registry
            .get(info, &r.namespace, &r.name, r.serializable)
            .await?;
        Ok(Response::new(to_api_object(&obj)))
    }

    async fn list(
        &self,
        req: Request<api::ListRequest>,
    ) -> Result<Response<api::ListResponse>, Status> {
        self.authn(&req).await?;
        let r = req.into_inner();
        let info = resolve(r.kind.as_ref())?;
        let page = self
            .registry
            .list(
                info,
                &ListOptions {
                    namespace: Some(r.namespace),
                    label_selector: r.label_selector,
                    field_selector: r.field_selector,
                    limit: r.limit,
                    continue_token: r.continue_token,
                    resource_version: r.resource_version,
                    serializable: r.serializable,
                },
            )
            .await?;
        Ok(Response::new(api::ListResponse {
            resource_version: page.revision.to_string(),
            continue_token: page.continue_token,
            remaining_item_count: page.remaining,
            items: page.items.iter().map(|(o, _)| to_api_object(o)).collect(),
        }))
    }

    async fn update(
        &self,
        req: Request<api::UpdateRequest>,
    ) -> Result<Response<api::Object>, Status> {
        self.authn(&req).await?;
        let registry = self.writer(&req)?;
        let r = req.into_inner();
        let obj = registry
            .update(parse_json(&r.json)?, false, r.dry_run)
            .await?;
        Ok(Response::new(to_api_object(&obj)))
    }

    async fn update_status(
        &self,
        req: Request<api::UpdateRequest>,
    ) -> Result<Response<api::Object>, Status> {
        self.authn(&req).await?;
        let registry = self.writer(&req)?;
        let r = req.into_inner();
        let obj = registry
            .update(parse_json(&r.json)?, true, r.dry_run)
            .await?;
        Ok(Response::new(to_api_object(&obj)))
    }

    async fn patch(
        &self,
        req: Request<api::PatchRequest>,
    ) -> Result<Response<api::Object>, Status> {
        self.authn(&req).await?;
        let registry = self.writer(&req)?;
        let r = req.into_inner();
        let info = resolve(r.kind.as_ref())?;
        let ty = match api::PatchType::try_from(r.r#type) {
            Ok(api::PatchType::Merge) => PatchType::Merge,
            Ok(api::PatchType::Json) => PatchType::Json,
            Ok(api::PatchType::Strategic) => PatchType::Strategic,
            _ => {
                return Err(
                    Error::BadRequest("patch type must be MERGE, JSON or STRATEGIC".into()).into(),
                )
            }
        };
        if r.patch.len() > MAX_OBJECT_BYTES {
            return Err(Error::RequestTooLarge("the patch is larger than 1.5 MiB".into()).into());
        }
        let obj = registry
            .patch(
                info,
                &r.namespace,
                &r.name,
                ty,
                &r.patch,
                PatchOptions {
                    status: r.status,
                    dry_run: r.dry_run,
                },
            )
            .await?;
        Ok(Response::new(to_api_object(&obj)))
    }

    async fn delete(
        &self,
        req: Request<api::DeleteRequest>,
    ) -> Result<Response<api::DeleteResponse>, Status> {
        self.authn(&req).await?;
        let registry = self.writer(&req)?;
        let r = req.into_inner();
        let info = resolve(r.kind.as_ref())?;
        let propagation = match api::PropagationPolicy::try_from(r.propagation_policy) {
            Ok(api::PropagationPolicy::Orphan) => Propagation::Orphan,
            Ok(api::PropagationPolicy::Background) => Propagation::Background,
            Ok(api::PropagationPolicy::Foreground) => Propagation::Foreground,
            _ => Propagation::Default,
        };
        let d = registry
            .delete(
                info,
                &r.namespace,
                &r.name,
                &DeleteOptions {
                    grace_period_seconds: r.grace_period_seconds,
                    propagation,
                    precondition_uid: r.precondition_uid,
                    precondition_resource_version: r.precondition_resource_version,
                    dry_run: r.dry_run,
                },
            )
            .await?;
        Ok(Response::new(api::DeleteResponse {
            object: Some(to_api_object(&d.object)),
            removed: d.removed,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<api::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.authn(&req).await?;
        let r = req.into_inner();
        let info = resolve(r.kind.as_ref())?;
        let every = match r.bookmark_interval_seconds {
            0 => DEFAULT_BOOKMARK_INTERVAL,
            s => Duration::from_secs(u64::from(s)),
        };
        let opts = ListOptions {
            namespace: Some(r.namespace),
            label_selector: r.label_selector,
            field_selector: r.field_selector,
            resource_version: r.resource_version,
            ..Default::default()
        };
        let events = self
            .registry
            .watch(info, &opts, r.send_initial_events, every)
            .await?;
        let stream = events.map(|e| e.map(to_api_event).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl Cluster for ApiService {
    async fn members(
        &self,
        req: Request<api::MembersRequest>,
    ) -> Result<Response<api::MembersResponse>, Status> {
        self.authn(&req).await?;
        Ok(Response::new(
            members::members(self.registry.store()).await?,
        ))
    }

    async fn health(
        &self,
        req: Request<api::HealthRequest>,
    ) -> Result<Response<api::HealthResponse>, Status> {
        self.authn(&req).await?;
        Ok(Response::new(members::health(self.registry.store()).await?))
    }

    async fn add_member(
        &self,
        req: Request<api::AddMemberRequest>,
    ) -> Result<Response<api::MembersResponse>, Status> {
        self.authn(&req).await?;
        let r = req.into_inner();
        if r.id == 0 || r.peer_addr.is_empty() {
            return Err(Error::BadRequest(
                "add member needs a non-zero id and a peer address".into(),
            )
            .into());
        }
        self.registry
            .store()
            .add_member(r.id, r.peer_addr, r.learner_only)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(
            members::members(self.registry.store()).await?,
        ))
    }

    async fn promote_member(
        &self,
        req: Request<api::PromoteMemberRequest>,
    ) -> Result<Response<api::MembersResponse>, Status> {
        self.authn(&req).await?;
        self.registry
            .store()
            .promote_member(req.into_inner().id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(
            members::members(self.registry.store()).await?,
        ))
    }

    async fn remove_member(
        &self,
        req: Request<api::RemoveMemberRequest>,
    ) -> Result<Response<api::MembersResponse>, Status> {
        self.authn(&req).await?;
        self.registry
            .store()
            .remove_member(req.into_inner().id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(
            members::members(self.registry.store()).await?,
        ))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        req: Request<api::SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        self.authn(&req).await?;
        let data = self.registry.store().backup().await.map_err(Error::from)?;
        let chunks: Vec<Result<api::SnapshotChunk, Status>> = data
            .chunks(1 << 20)
            .map(|c| Ok(api::SnapshotChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}
