//! What every command needs: the API client (from --kubeconfig, $RKUBECONFIG or
//! ~/.rkube/config), the namespace to work in, and resource-name resolution through the
//! server's discovery (kubectl's short names and plurals).

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use rkube_client::{Client, ClientConfig, KindRef};
use rkube_proto::api::ApiResource;
use serde_json::Value;
use tokio::sync::OnceCell;

/// Flags every CLI command accepts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $RKUBECONFIG, then ~/.rkube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace to work in (default: the kubeconfig context's, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// The command context.
pub struct Ctx {
    pub client: Client,
    /// The namespace commands act in.
    pub namespace: String,
    /// Whether -n was given (kubectl refuses a manifest namespace that conflicts with it).
    pub explicit_namespace: bool,
    discovery: OnceCell<Vec<ApiResource>>,
}

impl Ctx {
    pub fn new(global: &GlobalArgs) -> Result<Ctx> {
        let config =
            ClientConfig::locate(global.kubeconfig.as_deref()).map_err(|e| anyhow!("{e}"))?;
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.namespace.clone());
        let client = Client::new(config).map_err(|e| anyhow!("{e}"))?;
        Ok(Ctx {
            client,
            namespace,
            explicit_namespace: global.namespace.is_some(),
            discovery: OnceCell::new(),
        })
    }

    /// A context around an existing client (tests).
    pub fn with_client(client: Client, namespace: &str) -> Ctx {
        Ctx {
            client,
            namespace: namespace.to_string(),
            explicit_namespace: false,
            discovery: OnceCell::new(),
        }
    }

    /// The served kinds (fetched once per command).
    pub async fn resources(&self) -> Result<&[ApiResource]> {
        let r = self
            .discovery
            .get_or_try_init(|| async { self.client.discovery().await.map_err(|e| anyhow!("{e}")) })
            .await?;
        Ok(r.as_slice())
    }

    /// Resolve any name kubectl accepts (`po`, `pods`, `pod`, `Pod`, `deployments.apps`).
    pub async fn resolve(&self, name: &str) -> Result<ApiResource> {
        let n = name.to_ascii_lowercase();
        self.resources()
            .await?
            .iter()
            .find(|r| {
                r.name == n
                    || r.singular_name == n
                    || r.kind.to_ascii_lowercase() == n
                    || r.short_names.contains(&n)
                    || (!r.group.is_empty() && format!("{}.{}", r.name, r.group) == n)
            })
            .cloned()
            .ok_or_else(|| anyhow!("the server doesn't have a resource type \"{name}\""))
    }

    /// The namespace to use for a namespaced kind (None for cluster-scoped).
    pub fn namespace_for(&self, r: &ApiResource) -> &str {
        if r.namespaced {
            &self.namespace
        } else {
            ""
        }
    }
}

/// The KindRef of a discovered resource.
pub fn kind_ref(r: &ApiResource) -> KindRef {
    let api_version = if r.group.is_empty() {
        r.version.clone()
    } else {
        format!("{}/{}", r.group, r.version)
    };
    KindRef::kind(&api_version, &r.kind)
}

/// `deployment.apps/kubia`, as kubectl names objects in its output.
pub fn display_name(r: &ApiResource, name: &str) -> String {
    if r.group.is_empty() {
        format!("{}/{name}", r.singular_name)
    } else {
        format!("{}.{}/{name}", r.singular_name, r.group)
    }
}

/// The same for an object whose kind is only known from its JSON.
pub async fn display_name_of(ctx: &Ctx, obj: &Value) -> Result<String> {
    let kind = obj["kind"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let r = ctx.resolve(kind).await?;
    Ok(display_name(&r, name))
}
