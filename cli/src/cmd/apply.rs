//! `rkube apply -f`: create each object of the manifests, or bring an existing one to the
//! manifest with kubectl's client-side apply (a three-way strategic merge patch, see
//! [`merge`]), printing `created`, `configured` or `unchanged` for each.

pub mod merge;

use std::io::Write;

use anyhow::{bail, Result};
use rkube_proto::api::PatchType;

use crate::manifest::targets::{self, Failures};
use crate::manifest::{self, Document};
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Files, directories (their .yaml, .yml and .json files) or `-` (stdin) holding the
    /// configuration to apply.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
    /// Process the directories named by -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

pub async fn run(ctx: &Ctx, args: ApplyArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    if args.filename.is_empty() {
        bail!("must specify -f: the files, directories or stdin (-f -) to apply");
    }
    let docs = manifest::read(&args.filename, args.recursive)?;
    if docs.is_empty() {
        bail!("no objects passed to apply");
    }
    ctx.resources().await?;
    let mut failures = Failures::default();
    for doc in &docs {
        match apply_one(ctx, doc).await {
            Ok(line) => writeln!(out, "{line}")?,
            Err(e) => failures.record(Some(&doc.origin()), e)?,
        }
    }
    failures.finish()
}

/// Apply one object; the line to print.
async fn apply_one(ctx: &Ctx, doc: &Document) -> Result<String> {
    let target = targets::target_of(ctx, doc).await?;
    if target.name.is_empty() {
        bail!("resource name may not be empty");
    }
    let mut manifest = doc.value.clone();
    if target.resource.namespaced {
        manifest["metadata"]["namespace"] = target.namespace.clone().into();
    } else if let Some(meta) = manifest["metadata"].as_object_mut() {
        meta.remove("namespace");
    }
    let modified = merge::with_last_applied(&manifest);
    let kind = target.kind();
    let current = match ctx.client.get(&kind, &target.namespace, &target.name).await {
        Ok(current) => current,
        Err(rkube_client::Error::NotFound(_)) => {
            ctx.client.create(&modified, &target.namespace).await?;
            return Ok(format!("{} created", target.display()));
        }
        Err(e) => return Err(e.into()),
    };
    let original = merge::last_applied(&current);
    if original.is_none() {
        eprintln!(
            "Warning: resource {}/{} is missing the {} annotation which is required by rkube apply. rkube apply should only be used on resources created declaratively by either rkube create --save-config or rkube apply. The missing annotation will be patched automatically.",
            target.resource.name,
            target.name,
            merge::LAST_APPLIED
        );
    }
    let patch = merge::three_way(
        &target.resource.kind,
        original.as_ref(),
        &modified,
        &current,
    );
    if patch.is_empty() {
        return Ok(format!("{} unchanged", target.display()));
    }
    let body = serde_json::to_vec(&patch)?;
    ctx.client
        .patch(
            &kind,
            &target.namespace,
            &target.name,
            PatchType::Strategic,
            &body,
            false,
        )
        .await?;
    Ok(format!("{} configured", target.display()))
}
