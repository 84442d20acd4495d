//! `rkube scale`: set `spec.replicas` of deployments, replica sets, replication controllers and
//! stateful sets with a merge patch, optionally only if the count (`--current-replicas`) or the
//! resourceVersion (`--resource-version`) is still what the caller saw.

use std::io::Write;

use anyhow::{bail, Result};
use rkube_proto::api::PatchType;
use serde_json::{json, Value};

use crate::manifest::targets::{self, Failures, Selection, Target};
use crate::Ctx;

/// The kinds with a scale subresource.
const SCALABLE: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "StatefulSet",
];

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// `KIND NAME...` or `KIND/NAME...`, or `KIND` with -l or --all.
    pub args: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    pub replicas: Option<i64>,
    /// Precondition: scale only if the current number of replicas is this (-1 = no condition).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i64,
    /// Precondition: scale only if the object's resourceVersion is this.
    #[arg(long)]
    pub resource_version: Option<String>,
    /// Files, directories or `-` (stdin) naming the objects to scale.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
    /// Process the directories named by -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Scale the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Scale every object of the given kinds in the namespace.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(ctx: &Ctx, args: ScaleArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let replicas = match args.replicas {
        Some(n) if n >= 0 => n,
        _ => bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        ),
    };
    if args.args.is_empty() && args.filename.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    }
    let selection = Selection {
        args: &args.args,
        filenames: &args.filename,
        recursive: args.recursive,
        selector: args.selector.as_deref(),
        all: args.all,
        all_namespaces: false,
    };
    let selected = targets::select(ctx, &selection).await?;
    if selected.is_empty() {
        bail!("no objects passed to scale");
    }
    let mut failures = Failures::default();
    for item in selected {
        let result =
            match item {
                Ok(target) => scale(ctx, &target, replicas, &args)
                    .await
                    .map_err(|e| match target.origin() {
                        Some(o) => e.context(o),
                        None => e,
                    }),
                Err(e) => Err(e),
            };
        match result {
            Ok(line) => writeln!(out, "{line}")?,
            Err(e) => failures.record(None, e)?,
        }
    }
    failures.finish()
}

async fn scale(ctx: &Ctx, target: &Target, replicas: i64, args: &ScaleArgs) -> Result<String> {
    if !SCALABLE.contains(&target.resource.kind.as_str()) {
        bail!(
            "cannot scale {} \"{}\": only deployments, replicasets, replicationcontrollers and statefulsets can be scaled",
            target.resource.name,
            target.name
        );
    }
    let mut resource_version = args.resource_version.clone();
    if args.current_replicas >= 0 {
        let current = ctx
            .client
            .get(&target.kind(), &target.namespace, &target.name)
            .await?;
        let actual = current["spec"]["replicas"].as_i64().unwrap_or(1);
        if actual != args.current_replicas {
            bail!(
                "Expected replicas to be {}, was {actual}",
                args.current_replicas
            );
        }
        // The count checked is the count replaced: nobody may scale in between.
        resource_version.get_or_insert_with(|| {
            current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string()
        });
    }
    let body = scale_patch(replicas, resource_version.as_deref());
    ctx.client
        .patch(
            &target.kind(),
            &target.namespace,
            &target.name,
            PatchType::Merge,
            &serde_json::to_vec(&body)?,
            false,
        )
        .await?;
    Ok(format!("{} scaled", target.display()))
}

fn scale_patch(replicas: i64, resource_version: Option<&str>) -> Value {
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_carries_the_precondition() {
        assert_eq!(scale_patch(5, None), json!({"spec": {"replicas": 5}}));
        assert_eq!(
            scale_patch(0, Some("42")),
            json!({"spec": {"replicas": 0}, "metadata": {"resourceVersion": "42"}})
        );
        assert_eq!(scale_patch(1, Some("")), json!({"spec": {"replicas": 1}}));
    }
}
