//! `rkube rollout`: follow a Deployment's rollout live (`status`), list and restore its
//! revisions from the ReplicaSets it owns (`history`, `undo`), and `pause`, `resume` or
//! `restart` it, with kubectl's messages.

mod history;
mod status;
#[cfg(test)]
mod tests;

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use rkube_proto::api::{ApiResource, PatchType};
use serde_json::{json, Value};

use crate::cmd::describe::fields::{flag, s};
use crate::cmd::describe::{targets, Target};
use crate::context::{display_name, kind_ref};
use crate::Ctx;

pub use history::{history_table, rollback, select_revision};
pub use status::{status_message, RolloutState};

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Show the status of the rollout, following it until it is done.
    Status(StatusArgs),
    /// View the rollout history (the revisions of the ReplicaSets a deployment owns).
    History(HistoryArgs),
    /// Roll back to a previous revision.
    Undo(UndoArgs),
    /// Mark a deployment as paused: changes to its template start no rollout.
    Pause(TargetArgs),
    /// Resume a paused deployment.
    Resume(TargetArgs),
    /// Restart a resource: its pods are replaced by a new rollout.
    Restart(TargetArgs),
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// `TYPE NAME` or `TYPE/NAME`.
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,
    /// Watch the status of the rollout until it's done.
    #[arg(short = 'w', long, default_value = "true", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub watch: bool,
    /// How long to wait before giving up (`30s`, `5m`); 0 means never.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Pin to a specific revision; 0 means the latest.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,
    /// Show the pod template of this revision.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Debug, clap::Args)]
pub struct UndoArgs {
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,
    /// The revision to roll back to; 0 means the previous one.
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
}

pub async fn run(ctx: &Ctx, a: RolloutCommand, out: &mut (dyn Write + Send)) -> Result<()> {
    match a {
        RolloutCommand::Status(a) => {
            let timeout = crate::cmd::wait::parse_duration(&a.timeout)?;
            for (r, name) in named(ctx, &a.args).await? {
                status::follow(ctx, &r, &name, a.watch, a.revision, timeout, out).await?;
            }
            Ok(())
        }
        RolloutCommand::History(a) => {
            for (r, name) in named(ctx, &a.args).await? {
                history::history(ctx, &r, &name, a.revision, out).await?;
            }
            Ok(())
        }
        RolloutCommand::Undo(a) => {
            for (r, name) in named(ctx, &a.args).await? {
                history::undo(ctx, &r, &name, a.to_revision, out).await?;
            }
            Ok(())
        }
        RolloutCommand::Pause(a) => set_paused(ctx, &a.args, true, out).await,
        RolloutCommand::Resume(a) => set_paused(ctx, &a.args, false, out).await,
        RolloutCommand::Restart(a) => restart(ctx, &a.args, out).await,
    }
}

/// The objects named on the command line (rollout commands need names).
async fn named(ctx: &Ctx, args: &[String]) -> Result<Vec<(ApiResource, String)>> {
    targets(ctx, args)
        .await?
        .into_iter()
        .map(|Target { resource, name }| match name {
            Some(n) => Ok((resource, n)),
            None => Err(anyhow!(
                "a resource name is required: {} NAME or {}/NAME",
                resource.singular_name,
                resource.singular_name
            )),
        })
        .collect()
}

/// `deployments.apps`, as Kubernetes names a resource in messages.
fn qualified(r: &ApiResource) -> String {
    if r.group.is_empty() {
        r.name.clone()
    } else {
        format!("{}.{}", r.name, r.group)
    }
}

async fn get(ctx: &Ctx, r: &ApiResource, name: &str) -> Result<Value> {
    ctx.client
        .get(&kind_ref(r), ctx.namespace_for(r), name)
        .await
        .map_err(|e| anyhow!("{e}"))
}

async fn merge_patch(ctx: &Ctx, r: &ApiResource, name: &str, patch: &Value) -> Result<Value> {
    let bytes = serde_json::to_vec(patch)?;
    ctx.client
        .patch(
            &kind_ref(r),
            ctx.namespace_for(r),
            name,
            PatchType::Merge,
            &bytes,
            false,
        )
        .await
        .map_err(|e| anyhow!("{e}"))
}

async fn set_paused(
    ctx: &Ctx,
    args: &[String],
    pause: bool,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    for (r, name) in named(ctx, args).await? {
        if r.kind != "Deployment" {
            bail!(
                "{} {name:?} {} is not supported",
                qualified(&r),
                if pause { "pausing" } else { "resuming" }
            );
        }
        let d = get(ctx, &r, &name).await?;
        match (pause, flag(&d, "/spec/paused")) {
            (true, true) => bail!("{} {name:?} is already paused", qualified(&r)),
            (false, false) => bail!("{} {name:?} is not paused", qualified(&r)),
            _ => {}
        }
        merge_patch(ctx, &r, &name, &json!({"spec": {"paused": pause}})).await?;
        writeln!(
            out,
            "{} {}",
            display_name(&r, &name),
            if pause { "paused" } else { "resumed" }
        )?;
    }
    Ok(())
}

async fn restart(ctx: &Ctx, args: &[String], out: &mut (dyn Write + Send)) -> Result<()> {
    for (r, name) in named(ctx, args).await? {
        if !matches!(r.kind.as_str(), "Deployment" | "DaemonSet" | "StatefulSet") {
            bail!("{} {name:?} restarting is not supported", qualified(&r));
        }
        let obj = get(ctx, &r, &name).await?;
        if flag(&obj, "/spec/paused") {
            bail!(
                "{} {name:?} can't restart paused deployment (run rollout resume first)",
                qualified(&r)
            );
        }
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": rfc3339_now(),
        }}}}});
        merge_patch(ctx, &r, s(&obj, "/metadata/name"), &patch).await?;
        writeln!(out, "{} restarted", display_name(&r, &name))?;
    }
    Ok(())
}

/// Now as Go's `time.RFC3339` in local time (`2024-05-01T12:00:00+02:00`, `...Z` in UTC).
fn rfc3339_now() -> String {
    let now = jiff::Zoned::now();
    if now.offset().seconds() == 0 {
        now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        now.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}
