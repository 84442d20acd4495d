//! `rkube get`: list or fetch objects of one or more kinds and print them as kubectl does (column
//! tables, wide, JSON, YAML, names, JSONPath, custom columns), optionally watching for changes.
//!
//! Resource arguments follow kubectl: `KIND [NAME...]`, `KIND/NAME...`, comma-separated kinds
//! (`po,svc`) and `all`. Missing named objects are reported after what exists is printed, and the
//! command then fails with the (last) error. An empty result prints kubectl's `No resources found`
//! on stderr and succeeds. `-w` keeps printing changes until Ctrl-C, following the client's watch
//! from one API server to the next when a server fails.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use rkube_client::{ListParams, WatchEvent};
use rkube_proto::api::ApiResource;
use serde_json::Value;

use crate::context::{display_name, kind_ref};
use crate::printers::jsonpath::{compare_values, Template};
use crate::printers::output;
use crate::printers::{self, OutputFormat, PrintOptions, WatchPrinter};
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The kind, then names (`pods kubia`); or KIND/NAME pairs (`pod/kubia svc/kubia`). Several
    /// kinds are separated by commas (`po,svc`); `all` is the common workload kinds.
    #[arg(value_name = "KIND [NAME...]")]
    pub resources: Vec<String>,
    /// Output format: wide, json, yaml, name, jsonpath=TEMPLATE or custom-columns=SPEC.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector, e.g. `app=kubia,tier in (web,api),!canary`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector, e.g. `status.phase=Running,spec.nodeName=node-1`.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Label keys to show as columns (comma-separated or repeated).
    #[arg(short = 'L', long = "label-columns", value_delimiter = ',')]
    pub label_columns: Vec<String>,
    /// Show every label as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// After listing, watch for changes and print them until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes without listing first.
    #[arg(long)]
    pub watch_only: bool,
    /// With -w, say which change each line is (ADDED, MODIFIED, DELETED).
    #[arg(long)]
    pub output_watch_events: bool,
    /// List across all namespaces (a NAMESPACE column comes first).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print tables without their header line.
    #[arg(long)]
    pub no_headers: bool,
    /// Sort by a field, as a JSONPath expression (`.metadata.name`, `{.status.startTime}`).
    #[arg(long)]
    pub sort_by: Option<String>,
    /// Succeed quietly when a named object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// Get, print, and with -w watch: see the module documentation.
pub async fn run(ctx: &Ctx, a: GetArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let format = OutputFormat::parse(a.output.as_deref().unwrap_or("")).map_err(|e| anyhow!(e))?;
    let (requests, several_kinds) = resolve_requests(ctx, &a.resources).await?;
    let named = requests.iter().any(|r| !r.names.is_empty());
    // One name of one kind prints as the object itself in JSON and YAML, else as a List.
    let single_name = requests.len() == 1 && requests[0].names.len() == 1;
    if named && (a.selector.is_some() || a.field_selector.is_some()) {
        bail!("name cannot be provided when a selector is specified");
    }
    if named && a.all_namespaces {
        bail!("a resource cannot be retrieved by name across all namespaces");
    }
    let sort_by = a
        .sort_by
        .as_deref()
        .map(Template::parse_relaxed)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    if a.watch || a.watch_only {
        let found = requests.iter().map(|r| r.names.len().max(1)).sum::<usize>();
        if requests.len() != 1 || found != 1 {
            bail!("watch is only supported on individual resources and resource collections, but {found} resources were found");
        }
        let request = requests.into_iter().next().expect("one request");
        return watch(ctx, &a, &format, request, sort_by.as_ref(), out).await;
    }

    let all_namespaced = requests.iter().all(|r| r.resource.namespaced);
    let (groups, mut errors) = fetch(ctx, &a, requests, sort_by.as_ref()).await?;
    let total: usize = groups.iter().map(|g| g.items.len()).sum();
    let single_item = single_name && total == 1;
    let text = render(&a, &format, groups, several_kinds, single_item)?;
    out.write_all(text.as_bytes())?;
    out.flush()?;

    let human = matches!(format, OutputFormat::Table { .. });
    if human && total == 0 && errors.is_empty() && !a.ignore_not_found {
        // kubectl names the namespace only when every kind asked for lives in one.
        if all_namespaced && !a.all_namespaces {
            eprintln!("No resources found in {} namespace.", ctx.namespace);
        } else {
            eprintln!("No resources found");
        }
    }
    let last = errors.pop();
    for e in errors {
        eprintln!("{e}");
    }
    match last {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The kinds `get all` lists, in kubectl's order.
const ALL: &[&str] = &[
    "pods",
    "replicationcontrollers",
    "services",
    "daemonsets",
    "deployments",
    "replicasets",
    "statefulsets",
    "horizontalpodautoscalers",
    "cronjobs",
    "jobs",
];

/// One kind to get, with the names asked for (none: list).
struct Request {
    resource: ApiResource,
    names: Vec<String>,
}

/// The objects got for one kind.
struct Group {
    resource: ApiResource,
    items: Vec<Value>,
}

/// List or get each kind's objects (sorted if asked). Errors about named objects are collected
/// so that what exists still prints; any other error ends the command.
async fn fetch(
    ctx: &Ctx,
    a: &GetArgs,
    requests: Vec<Request>,
    sort_by: Option<&Template>,
) -> Result<(Vec<Group>, Vec<anyhow::Error>)> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for request in requests {
        let mut items = Vec::new();
        let kind = kind_ref(&request.resource);
        let namespace = ctx.namespace_for(&request.resource);
        if request.names.is_empty() {
            items = ctx
                .client
                .list_all(&kind, &list_params(ctx, a, &request.resource))
                .await?
                .items;
        }
        for name in &request.names {
            match ctx.client.get(&kind, namespace, name).await {
                Ok(obj) => items.push(obj),
                Err(rkube_client::Error::NotFound(_)) if a.ignore_not_found => {}
                Err(e) => errors.push(anyhow::Error::new(e)),
            }
        }
        if let Some(t) = sort_by {
            sort_items(&mut items, t)?;
        }
        groups.push(Group {
            resource: request.resource,
            items,
        });
    }
    Ok((groups, errors))
}

/// The output for the objects got: a table per kind (blank lines between), names, or the
/// object (`single_item`) or a List of all of them in a structured format.
fn render(
    a: &GetArgs,
    format: &OutputFormat,
    groups: Vec<Group>,
    several_kinds: bool,
    single_item: bool,
) -> Result<String> {
    let wide = matches!(format, OutputFormat::Table { wide: true });
    let opts = |g: &Group| print_options(a, &g.resource, several_kinds, a.sort_by.is_some(), wide);
    Ok(match format {
        OutputFormat::Table { .. } => groups
            .iter()
            .filter(|g| !g.items.is_empty())
            .map(|g| printers::table(&g.resource.kind, &g.items, &opts(g)).render(a.no_headers))
            .collect::<Vec<_>>()
            .join("\n"),
        OutputFormat::CustomColumns(columns) => {
            let items: Vec<Value> = groups.into_iter().flat_map(|g| g.items).collect();
            if items.is_empty() {
                return Ok(String::new());
            }
            output::custom_columns_table(columns, &items)
                .map_err(|e| anyhow!(e))?
                .render(a.no_headers)
        }
        OutputFormat::Name => groups
            .iter()
            .flat_map(|g| {
                g.items
                    .iter()
                    .map(|o| display_name(&g.resource, object_name(o)) + "\n")
            })
            .collect(),
        OutputFormat::Json | OutputFormat::Yaml | OutputFormat::JsonPath(_) => {
            let mut items: Vec<Value> = groups.into_iter().flat_map(|g| g.items).collect();
            let data = if single_item {
                items.pop().expect("one item")
            } else {
                output::list(items)
            };
            match format {
                OutputFormat::Json => output::to_json(&data),
                OutputFormat::Yaml => output::to_yaml(&data)?,
                OutputFormat::JsonPath(t) => t.render(&data).map_err(|e| anyhow!(e))?,
                _ => unreachable!("a structured format"),
            }
        }
    })
}

fn object_name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

/// The kinds and names the arguments ask for, and whether several kinds are involved (then
/// names print as `kind/name`).
async fn resolve_requests(ctx: &Ctx, args: &[String]) -> Result<(Vec<Request>, bool)> {
    let Some(first) = args.first() else {
        bail!(
            "You must specify the type of resource to get. Use \"rkube api-resources\" for a complete \
             list of supported resources."
        );
    };
    let mut requests: Vec<Request> = Vec::new();
    let mut add = |resource: ApiResource, name: Option<&str>| {
        let names = name.map(|n| vec![n.to_string()]).unwrap_or_default();
        match requests
            .iter_mut()
            .find(|r| r.resource.kind == resource.kind && r.resource.group == resource.group)
        {
            Some(r) => r.names.extend(names),
            None => requests.push(Request { resource, names }),
        }
    };
    let several_kinds;
    if first.contains('/') {
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                bail!(
                    "there is no need to specify a resource type as a separate argument when passing \
                     arguments in resource/name form (e.g. 'rkube get resource/<resource_name>' instead \
                     of 'rkube get resource resource/<resource_name>')"
                );
            };
            if name.is_empty() {
                bail!("arguments in resource/name form must have a single resource and name");
            }
            add(ctx.resolve(kind).await?, Some(name));
        }
        several_kinds = requests.len() > 1;
    } else {
        let mut kinds = Vec::new();
        for kind in first.split(',').filter(|k| !k.is_empty()) {
            if kind == "all" {
                kinds.extend(ALL.iter().map(|k| k.to_string()));
            } else {
                kinds.push(kind.to_string());
            }
        }
        several_kinds = first.contains(',') || first.split(',').any(|k| k == "all");
        for kind in &kinds {
            let resource = ctx.resolve(kind).await?;
            if args.len() == 1 {
                add(resource.clone(), None);
            }
            for name in &args[1..] {
                add(resource.clone(), Some(name));
            }
        }
        if requests.is_empty() {
            bail!("the server doesn't have a resource type \"{first}\"");
        }
    }
    Ok((requests, several_kinds))
}

fn list_params(ctx: &Ctx, a: &GetArgs, r: &ApiResource) -> ListParams {
    ListParams {
        namespace: if a.all_namespaces {
            String::new()
        } else {
            ctx.namespace_for(r).to_string()
        },
        label_selector: a.selector.clone().unwrap_or_default(),
        field_selector: a.field_selector.clone().unwrap_or_default(),
        ..Default::default()
    }
}

fn print_options(
    a: &GetArgs,
    r: &ApiResource,
    several_kinds: bool,
    sorted: bool,
    wide: bool,
) -> PrintOptions {
    let prefix = display_name(r, "");
    PrintOptions {
        wide,
        with_namespace: a.all_namespaces && r.namespaced,
        kind_prefix: several_kinds.then(|| prefix.trim_end_matches('/').to_string()),
        label_columns: a.label_columns.clone(),
        show_labels: a.show_labels,
        keep_order: sorted,
        now: jiff::Timestamp::now(),
    }
}

/// Sort by the first value the path selects; objects without one come first.
fn sort_items(items: &mut [Value], path: &Template) -> Result<()> {
    let mut keyed = Vec::with_capacity(items.len());
    for item in items.iter() {
        keyed.push(
            path.values(item)
                .map_err(|e| anyhow!(e))?
                .into_iter()
                .next(),
        );
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|x, y| match (&keyed[*x], &keyed[*y]) {
        (Some(a), Some(b)) => compare_values(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    });
    let sorted: Vec<Value> = order.iter().map(|i| items[*i].take()).collect();
    for (slot, item) in items.iter_mut().zip(sorted) {
        *slot = item;
    }
    Ok(())
}

// ---- watching -----------------------------------------------------------------------------------

/// `get -w`: print the current objects (unless --watch-only), then each change from the list's
/// resourceVersion on, until Ctrl-C (success) or the watch fails.
async fn watch(
    ctx: &Ctx,
    a: &GetArgs,
    format: &OutputFormat,
    request: Request,
    sort_by: Option<&Template>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let r = &request.resource;
    let kind = kind_ref(r);
    let mut params = list_params(ctx, a, r);
    if let Some(name) = request.names.first() {
        // One named object: watch it through a field selector, as kubectl does.
        params.field_selector = format!("metadata.name={name}");
    }
    let list = ctx.client.list_all(&kind, &params).await?;
    if let (Some(name), true) = (request.names.first(), list.items.is_empty()) {
        let plural = if r.group.is_empty() {
            r.name.clone()
        } else {
            format!("{}.{}", r.name, r.group)
        };
        return Err(rkube_client::Error::NotFound(format!("{plural} \"{name}\" not found")).into());
    }
    let wide = matches!(format, OutputFormat::Table { wide: true });
    let kind_name = display_name(r, "");
    let mut printer = WatchPrinter::new(
        format.clone(),
        &r.kind,
        kind_name.trim_end_matches('/'),
        print_options(a, r, false, true, wide),
        a.no_headers,
        a.output_watch_events,
    );
    if !a.watch_only {
        let mut items = list.items;
        if let Some(t) = sort_by {
            sort_items(&mut items, t)?;
        }
        let text = printer.print("ADDED", &items, jiff::Timestamp::now())?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }

    params.resource_version = list.resource_version;
    let stream = ctx.client.watch(&kind, &params, false);
    let mut stream = std::pin::pin!(stream);
    let ctrl_c = tokio::signal::ctrl_c();
    let mut ctrl_c = std::pin::pin!(ctrl_c);
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = &mut ctrl_c => return Ok(()),
        };
        let (ty, obj) = match event {
            None => return Ok(()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(WatchEvent::Bookmark { .. })) => continue,
            Some(Ok(WatchEvent::Added(o))) => ("ADDED", o),
            Some(Ok(WatchEvent::Modified(o))) => ("MODIFIED", o),
            Some(Ok(WatchEvent::Deleted(o))) => ("DELETED", o),
        };
        let text = printer.print(ty, std::slice::from_ref(&obj), jiff::Timestamp::now())?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sort_by_orders_numbers_numerically_and_puts_missing_values_first() {
        let item = |name: &str, restarts: Option<i64>| match restarts {
            Some(r) => json!({"metadata": {"name": name}, "status": {"restarts": r}}),
            None => json!({"metadata": {"name": name}}),
        };
        let mut items = vec![
            item("ten", Some(10)),
            item("none", None),
            item("nine", Some(9)),
            item("zero", Some(0)),
        ];
        let path = Template::parse_relaxed(".status.restarts").unwrap();
        sort_items(&mut items, &path).unwrap();
        let names: Vec<&str> = items.iter().map(object_name).collect();
        assert_eq!(names, ["none", "zero", "nine", "ten"]);
    }
}
