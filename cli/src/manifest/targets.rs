//! The objects a command acts on: named by manifests (`-f`), by `KIND NAME...` or
//! `KIND/NAME...` arguments, or chosen by `-l SELECTOR` / `--all` among the objects of some kinds;
//! and the per-object failure list that lets a command try every object before it fails.

use anyhow::{anyhow, bail, Result};
use rkube_client::{KindRef, ListParams};
use rkube_proto::api::ApiResource;

use super::Document;
use crate::context::{display_name, kind_ref};
use crate::Ctx;

/// One object to act on.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: ApiResource,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    /// The manifest that named it, if one did.
    pub manifest: Option<Document>,
}

impl Target {
    pub fn kind(&self) -> KindRef {
        kind_ref(&self.resource)
    }

    /// `deployment.apps/kubia`.
    pub fn display(&self) -> String {
        display_name(&self.resource, &self.name)
    }

    /// `kubia.yaml (document 2)` for objects read from manifests.
    pub fn origin(&self) -> Option<String> {
        self.manifest.as_ref().map(Document::origin)
    }
}

/// `deployment.apps` or `pod`: the resource as `kubectl delete` names it (`pod "x" deleted`).
pub fn resource_word(r: &ApiResource) -> String {
    if r.group.is_empty() {
        r.singular_name.clone()
    } else {
        format!("{}.{}", r.singular_name, r.group)
    }
}

/// The served resource of a manifest's `apiVersion` and `kind`.
pub async fn resource_of(ctx: &Ctx, api_version: &str, kind: &str) -> Result<ApiResource> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let resources = ctx.resources().await?;
    if let Some(r) = resources
        .iter()
        .find(|r| r.kind == kind && r.group == group)
    {
        return Ok(r.clone());
    }
    match resources.iter().find(|r| r.kind == kind) {
        Some(r) => bail!(
            "no matches for kind \"{kind}\" in version \"{api_version}\" (rkube serves {kind} as apiVersion: {})",
            kind_ref(r).0.api_version
        ),
        None => bail!("no matches for kind \"{kind}\" in version \"{api_version}\""),
    }
}

/// The target a manifest names. Namespaced objects without a namespace get the command's; one
/// that names another namespace than an explicit `-n` is refused, as kubectl does.
pub async fn target_of(ctx: &Ctx, doc: &Document) -> Result<Target> {
    let resource = resource_of(ctx, doc.api_version(), doc.kind()).await?;
    let namespace = if resource.namespaced {
        manifest_namespace(ctx, doc.namespace())?
    } else {
        String::new()
    };
    Ok(Target {
        resource,
        namespace,
        name: doc.name().to_string(),
        manifest: Some(doc.clone()),
    })
}

fn manifest_namespace(ctx: &Ctx, in_manifest: &str) -> Result<String> {
    if in_manifest.is_empty() {
        return Ok(ctx.namespace.clone());
    }
    if ctx.explicit_namespace && in_manifest != ctx.namespace {
        bail!(
            "the namespace from the provided object \"{in_manifest}\" does not match the namespace \"{}\". You must pass '--namespace={in_manifest}' to perform this operation.",
            ctx.namespace
        );
    }
    Ok(in_manifest.to_string())
}

/// What the positional arguments of `delete`, `label`, `scale`... name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceArgs {
    /// `KIND NAME...` or `KIND/NAME...`: (kind, name) pairs.
    Named(Vec<(String, String)>),
    /// `KIND[,KIND...]` alone: every object of these kinds (with `-l` or `--all`).
    Kinds(Vec<String>),
}

/// Parse `KIND NAME...`, `KIND1,KIND2 NAME...` or `KIND/NAME...` (not empty).
pub fn parse_resource_args(args: &[String]) -> Result<ResourceArgs> {
    let Some(first) = args.first() else {
        bail!("You must provide one or more resources by argument or filename.");
    };
    if first.contains('/') {
        let mut named = Vec::new();
        for a in args {
            match a.split_once('/') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => named.push((kind.to_string(), name.to_string())),
                Some(_) => bail!("arguments in resource/name form must have a single resource and name: {a:?}"),
                None => bail!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'rkube get resource/<resource_name>' instead of 'rkube get resource resource/<resource_name>'"
                ),
            }
        }
        return Ok(ResourceArgs::Named(named));
    }
    let kinds: Vec<String> = first
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    if kinds.is_empty() {
        bail!("resource type {first:?} is empty");
    }
    if let Some(bad) = args[1..].iter().find(|a| a.contains('/')) {
        bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'rkube get resource/<resource_name>' instead of 'rkube get resource {bad}'");
    }
    if args.len() == 1 {
        return Ok(ResourceArgs::Kinds(kinds));
    }
    let named = kinds
        .iter()
        .flat_map(|k| args[1..].iter().map(move |n| (k.clone(), n.clone())))
        .collect();
    Ok(ResourceArgs::Named(named))
}

/// How a command's objects are chosen.
#[derive(Debug, Clone, Default)]
pub struct Selection<'a> {
    pub args: &'a [String],
    pub filenames: &'a [String],
    pub recursive: bool,
    pub selector: Option<&'a str>,
    pub all: bool,
    pub all_namespaces: bool,
}

/// The objects `sel` names, in order. The outer error aborts the command (bad arguments, an
/// unreadable manifest, a failed list); an inner one is about one manifest (an unknown kind, a
/// conflicting namespace), names it, and the command goes on with the others.
pub async fn select(ctx: &Ctx, sel: &Selection<'_>) -> Result<Vec<Result<Target>>> {
    if !sel.filenames.is_empty() {
        if !sel.args.is_empty() {
            bail!("when paths, URLs, or stdin is provided as input, you may not specify resource arguments as well");
        }
        if sel.selector.is_some() || sel.all {
            bail!("-l and --all cannot be combined with -f: the manifests name the objects");
        }
        let docs = super::read(sel.filenames, sel.recursive)?;
        if docs.is_empty() {
            bail!("no objects passed to this command");
        }
        ctx.resources().await?;
        let mut out = Vec::new();
        for doc in &docs {
            let target = target_of(ctx, doc).await.and_then(|t| {
                if t.name.is_empty() {
                    bail!("resource name may not be empty")
                }
                Ok(t)
            });
            out.push(target.map_err(|e| e.context(doc.origin())));
        }
        return Ok(out);
    }
    match parse_resource_args(sel.args)? {
        ResourceArgs::Named(named) => {
            if sel.selector.is_some() {
                bail!("name cannot be provided when a selector is specified");
            }
            if sel.all {
                bail!("name cannot be provided when --all is specified");
            }
            let mut out = Vec::new();
            for (kind, name) in named {
                let resource = ctx.resolve(&kind).await?;
                let namespace = ctx.namespace_for(&resource).to_string();
                out.push(Ok(Target {
                    resource,
                    namespace,
                    name,
                    manifest: None,
                }));
            }
            Ok(out)
        }
        ResourceArgs::Kinds(kinds) => {
            if sel.selector.is_none() && !sel.all {
                bail!("resource(s) were provided, but no name was specified");
            }
            let mut out = Vec::new();
            for kind in kinds {
                let resource = ctx.resolve(&kind).await?;
                let namespace = if sel.all_namespaces {
                    ""
                } else {
                    ctx.namespace_for(&resource)
                };
                let params = ListParams {
                    namespace: namespace.to_string(),
                    label_selector: sel.selector.unwrap_or("").to_string(),
                    ..Default::default()
                };
                let list = ctx.client.list_all(&kind_ref(&resource), &params).await?;
                for item in list.items {
                    let meta = &item["metadata"];
                    out.push(Ok(Target {
                        resource: resource.clone(),
                        namespace: meta["namespace"].as_str().unwrap_or("").to_string(),
                        name: meta["name"].as_str().unwrap_or("").to_string(),
                        manifest: None,
                    }));
                }
            }
            Ok(out)
        }
    }
}

/// The failures of a command that acts on several objects: kubectl tries every object, reports
/// each failure, and exits 1 at the end.
#[derive(Debug, Default)]
pub struct Failures {
    messages: Vec<String>,
}

impl Failures {
    /// Record the failure of one object (named by `origin` when it came from a manifest). An
    /// unreachable cluster is returned at once instead: every other object would fail the same.
    pub fn record(&mut self, origin: Option<&str>, e: anyhow::Error) -> Result<()> {
        if is_unavailable(&e) {
            return Err(e);
        }
        let msg = format!("{e:#}");
        self.messages.push(match origin {
            Some(o) => format!("{o}: {msg}"),
            None => msg,
        });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Ok when nothing failed; else every failure, one line each.
    pub fn finish(self) -> Result<()> {
        match self.messages.as_slice() {
            [] => Ok(()),
            [one] => Err(anyhow!("{one}")),
            many => Err(anyhow!(
                "{}",
                many.iter()
                    .map(|m| as_line(m))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        }
    }
}

/// A message as kubectl prints it on stderr: server errors as they are, others after `error: `.
fn as_line(msg: &str) -> String {
    if msg.starts_with("Error from server") || msg.starts_with("error:") {
        msg.to_string()
    } else {
        format!("error: {msg}")
    }
}

/// Whether `e` says no API server could be reached.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<rkube_client::Error>()
            .is_some_and(rkube_client::Error::is_retryable)
    })
}

/// Whether `e` is the server's NotFound.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rkube_client::Error>(),
            Some(rkube_client::Error::NotFound(_))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn named(pairs: &[(&str, &str)]) -> ResourceArgs {
        ResourceArgs::Named(
            pairs
                .iter()
                .map(|(k, n)| (k.to_string(), n.to_string()))
                .collect(),
        )
    }

    #[test]
    fn resource_arguments_in_every_form() {
        for (input, want) in [
            (vec!["pod", "a"], named(&[("pod", "a")])),
            (
                vec!["pods", "a", "b"],
                named(&[("pods", "a"), ("pods", "b")]),
            ),
            (vec!["deploy/kubia"], named(&[("deploy", "kubia")])),
            (
                vec!["deploy/kubia", "svc/kubia"],
                named(&[("deploy", "kubia"), ("svc", "kubia")]),
            ),
            (vec!["po,svc", "x"], named(&[("po", "x"), ("svc", "x")])),
            (vec!["pods"], ResourceArgs::Kinds(vec!["pods".into()])),
            (
                vec!["pods,services"],
                ResourceArgs::Kinds(vec!["pods".into(), "services".into()]),
            ),
        ] {
            assert_eq!(
                parse_resource_args(&args(&input)).unwrap(),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn resource_argument_errors() {
        for (input, message) in [
            (
                vec![],
                "You must provide one or more resources by argument or filename.",
            ),
            (
                vec!["deploy/kubia", "kubia"],
                "there is no need to specify a resource type as a separate argument",
            ),
            (
                vec!["deploy", "deploy/kubia"],
                "there is no need to specify a resource type as a separate argument",
            ),
            (
                vec!["deploy/"],
                "arguments in resource/name form must have a single resource and name",
            ),
        ] {
            let err = parse_resource_args(&args(&input)).unwrap_err().to_string();
            assert!(err.starts_with(message), "{input:?}: {err}");
        }
    }

    #[test]
    fn failures_are_reported_one_line_each() {
        let mut f = Failures::default();
        assert!(f.is_empty());
        f.record(
            Some("a.yaml (document 1)"),
            anyhow::Error::new(rkube_client::Error::Invalid("Pod \"x\" is invalid".into())),
        )
        .unwrap();
        f.record(
            None,
            anyhow::Error::new(rkube_client::Error::NotFound("pods \"y\" not found".into())),
        )
        .unwrap();
        f.record(None, anyhow!("unable to find container named \"z\""))
            .unwrap();
        assert_eq!(
            f.finish().unwrap_err().to_string(),
            "error: a.yaml (document 1): Error from server (Invalid): Pod \"x\" is invalid\nError from server (NotFound): pods \"y\" not found\nerror: unable to find container named \"z\""
        );
        let mut one = Failures::default();
        one.record(Some("a.yaml (document 1)"), anyhow!("boom"))
            .unwrap();
        assert_eq!(
            one.finish().unwrap_err().to_string(),
            "a.yaml (document 1): boom"
        );
        // An unreachable cluster stops the command at once.
        let mut f = Failures::default();
        let e = f
            .record(
                None,
                anyhow::Error::new(rkube_client::Error::Unavailable("Unable to connect".into())),
            )
            .unwrap_err();
        assert!(is_unavailable(&e));
        assert!(f.finish().is_ok());
        assert!(is_not_found(&anyhow::Error::new(
            rkube_client::Error::NotFound("x".into())
        )));
    }
}
