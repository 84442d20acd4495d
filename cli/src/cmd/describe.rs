//! `rkube describe`: kubectl's detailed, human-oriented view of objects. The command finds the
//! objects (`TYPE NAME`, `TYPE/NAME`, `TYPE` with `-l`, or a name prefix), fetches what each
//! describer needs besides the object (events, ReplicaSets, pods, endpoints, the node lease),
//! and hands it to a pure describer that lays the text out like kubectl.

mod core_kinds;
pub(crate) mod fields;
mod generic;
pub(crate) mod layout;
pub(crate) mod pod;
mod quantity;
mod volumes;
pub(crate) mod workloads;

#[cfg(test)]
mod generic_tests;
#[cfg(test)]
mod tests;

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use rkube_client::{Error as ClientError, KindRef, ListParams};
use rkube_proto::api::ApiResource;
use serde_json::Value;

use crate::context::kind_ref;
use crate::Ctx;
use fields::{format_labels, label_selector_string, map_pairs, s};
pub use layout::Clock;
use workloads::PodCounts;

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// `TYPE [NAME_PREFIX ...]` or `TYPE/NAME ...` (TYPE may be a comma-separated list).
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,
    /// Selector (label query) to filter on, e.g. `-l app=kubia`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Describe the objects in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Show the events related to each object.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub show_events: bool,
}

/// One kind and, optionally, the name the user gave.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub resource: ApiResource,
    pub name: Option<String>,
}

/// Resolve kubectl's `TYPE NAME...`, `TYPE1,TYPE2` and `TYPE/NAME...` argument forms.
pub(crate) async fn targets(ctx: &Ctx, args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else {
        bail!("you must specify the type of resource to describe");
    };
    let slashed = args.iter().filter(|a| a.contains('/')).count();
    if slashed == args.len() {
        let mut out = Vec::new();
        for a in args {
            let (ty, name) = a.split_once('/').expect("contains a slash");
            if name.is_empty() {
                bail!("arguments in resource/name form must have a single resource and name");
            }
            out.push(Target {
                resource: ctx.resolve(ty).await?,
                name: Some(name.to_string()),
            });
        }
        return Ok(out);
    }
    if slashed > 0 {
        bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'rkube get resource/<resource_name>' instead of 'rkube get resource resource/<resource_name>'");
    }
    let mut out = Vec::new();
    for ty in first.split(',').filter(|t| !t.is_empty()) {
        let resource = ctx.resolve(ty).await?;
        if args.len() == 1 {
            out.push(Target {
                resource,
                name: None,
            });
        } else {
            for name in &args[1..] {
                out.push(Target {
                    resource: resource.clone(),
                    name: Some(name.clone()),
                });
            }
        }
    }
    Ok(out)
}

pub async fn run(ctx: &Ctx, a: DescribeArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let clock = Clock::system();
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for target in targets(ctx, &a.args).await? {
        let ns = if a.all_namespaces {
            ""
        } else {
            ctx.namespace_for(&target.resource)
        };
        let objects = match &target.name {
            Some(name) => find_by_name(ctx, &target.resource, ns, name).await,
            None => {
                let p = ListParams {
                    namespace: ns.to_string(),
                    label_selector: a.selector.clone().unwrap_or_default(),
                    ..Default::default()
                };
                let list = ctx
                    .client
                    .list_all(&kind_ref(&target.resource), &p)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                if list.items.is_empty() {
                    if ns.is_empty() {
                        eprintln!("No resources found");
                    } else {
                        eprintln!("No resources found in {ns} namespace.");
                    }
                }
                Ok(list.items)
            }
        };
        match objects {
            Ok(objects) => {
                for obj in objects {
                    texts.push(
                        describe_object(ctx, &target.resource, &obj, a.show_events, &clock).await?,
                    );
                }
            }
            Err(e) => errors.push(e),
        }
    }
    out.write_all(texts.join("\n\n").as_bytes())?;
    match errors.len() {
        0 => Ok(()),
        _ => Err(anyhow!(errors
            .iter()
            .map(|e| format!("{e:#}"))
            .collect::<Vec<_>>()
            .join("\n"))),
    }
}

/// The object with this name, or (as kubectl does) every object whose name starts with it.
async fn find_by_name(ctx: &Ctx, r: &ApiResource, ns: &str, name: &str) -> Result<Vec<Value>> {
    match ctx.client.get(&kind_ref(r), ns, name).await {
        Ok(obj) => Ok(vec![obj]),
        Err(ClientError::NotFound(msg)) => {
            let p = ListParams {
                namespace: ns.to_string(),
                ..Default::default()
            };
            let list = ctx
                .client
                .list_all(&kind_ref(r), &p)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let matching: Vec<Value> = list
                .items
                .into_iter()
                .filter(|o| s(o, "/metadata/name").starts_with(name))
                .collect();
            if matching.is_empty() {
                Err(anyhow!("{}", ClientError::NotFound(msg)))
            } else {
                Ok(matching)
            }
        }
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// Fetch what the kind's describer needs and describe `obj`.
pub async fn describe_object(
    ctx: &Ctx,
    r: &ApiResource,
    obj: &Value,
    show_events: bool,
    clock: &Clock,
) -> Result<String> {
    let ns = s(obj, "/metadata/namespace");
    // kubectl shows no events for Namespaces and Secrets.
    let wants_events = show_events
        && !matches!(
            (r.group.as_str(), r.kind.as_str()),
            ("", "Namespace" | "Secret")
        );
    let events = if wants_events {
        events_for(ctx, obj).await
    } else {
        None
    };
    let events = events.as_deref();
    let text = match (r.group.as_str(), r.kind.as_str()) {
        ("", "Pod") => pod::describe_pod(obj, events, clock),
        ("apps", "Deployment") => {
            let rss = owned_replica_sets(ctx, obj).await.unwrap_or_default();
            let (new, old) = workloads::new_and_old_replica_sets(obj, &rss);
            workloads::describe_deployment(obj, new, &old, events, clock)
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            let selector = if r.kind == "ReplicaSet" {
                label_selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null))
            } else {
                format_labels(&map_pairs(obj, "/spec/selector"))
            };
            let p = ListParams {
                namespace: ns.to_string(),
                label_selector: selector,
                ..Default::default()
            };
            let counts = ctx
                .client
                .list_all(&KindRef::kind("v1", "Pod"), &p)
                .await
                .ok()
                .map(|l| PodCounts::of(&l.items, s(obj, "/metadata/uid")));
            workloads::describe_replicated(obj, counts, events, clock)
        }
        ("", "Service") => {
            let endpoints = ctx
                .client
                .get(
                    &KindRef::kind("v1", "Endpoints"),
                    ns,
                    s(obj, "/metadata/name"),
                )
                .await
                .ok();
            core_kinds::describe_service(obj, endpoints.as_ref(), events, clock)
        }
        ("", "Node") => {
            let name = s(obj, "/metadata/name");
            let p = ListParams {
                field_selector: format!(
                    "spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed"
                ),
                ..Default::default()
            };
            let pods = ctx
                .client
                .list_all(&KindRef::kind("v1", "Pod"), &p)
                .await
                .ok()
                .map(|l| l.items);
            let lease = ctx
                .client
                .get(
                    &KindRef::kind("coordination.k8s.io/v1", "Lease"),
                    "kube-node-lease",
                    name,
                )
                .await
                .map_err(|e| {
                    e.to_string()
                        .trim_start_matches("Error from server (NotFound): ")
                        .to_string()
                });
            core_kinds::describe_node(
                obj,
                pods.as_deref(),
                lease.as_ref().map_err(Clone::clone),
                events,
                clock,
            )
        }
        ("", "Namespace") => core_kinds::describe_namespace(obj, clock),
        ("", "ConfigMap") => core_kinds::describe_config_map(obj, events, clock),
        ("", "Secret") => core_kinds::describe_secret(obj),
        _ => generic::describe_generic(obj, events, clock),
    };
    Ok(text)
}

/// The events about `obj`: those in its namespace whose involvedObject names it. None when they
/// cannot be listed (describe still shows the object).
pub async fn events_for(ctx: &Ctx, obj: &Value) -> Option<Vec<Value>> {
    let ns = s(obj, "/metadata/namespace");
    let mut selector = format!("involvedObject.name={}", s(obj, "/metadata/name"));
    if !ns.is_empty() {
        selector.push_str(&format!(",involvedObject.namespace={ns}"));
    }
    selector.push_str(&format!(",involvedObject.kind={}", s(obj, "/kind")));
    let p = ListParams {
        namespace: ns.to_string(),
        field_selector: selector,
        ..Default::default()
    };
    ctx.client
        .list_all(&KindRef::kind("v1", "Event"), &p)
        .await
        .ok()
        .map(|l| l.items)
}

/// The ReplicaSets a Deployment controls (their owner reference carries its uid).
pub(crate) async fn owned_replica_sets(ctx: &Ctx, deployment: &Value) -> Result<Vec<Value>> {
    let p = ListParams {
        namespace: s(deployment, "/metadata/namespace").to_string(),
        ..Default::default()
    };
    let list = ctx
        .client
        .list_all(&KindRef::kind("apps/v1", "ReplicaSet"), &p)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let uid = s(deployment, "/metadata/uid");
    Ok(list
        .items
        .into_iter()
        .filter(|rs| {
            fields::arr(rs, "/metadata/ownerReferences")
                .iter()
                .any(|o| s(o, "/uid") == uid)
        })
        .collect())
}
