//! The kubectl-like commands of rkube. An API client only: everything goes through
//! `rkube-client`, so the commands work unchanged against any rkube server.

pub mod cmd;
pub mod context;
pub mod manifest;
pub mod printers;

use std::io::Write;

pub use context::{Ctx, GlobalArgs};

/// Every CLI command (the `rkube` binary adds `server`, `agent` and `completion`).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply a configuration to a resource by file name or stdin (create or update).
    Apply(cmd::apply::ApplyArgs),
    /// Create a resource from a file or stdin, or a namespace, configmap or secret.
    Create(cmd::create::CreateArgs),
    /// Display one or many resources.
    Get(cmd::get::GetArgs),
    /// Show details of a specific resource or group of resources.
    Describe(cmd::describe::DescribeArgs),
    /// Delete resources by file names, stdin, resources and names, or by label selector.
    Delete(cmd::delete::DeleteArgs),
    /// Set a new size for a deployment, replica set, replication controller, or stateful set.
    Scale(cmd::scale::ScaleArgs),
    /// Set specific features on objects (`set image`).
    #[command(subcommand)]
    Set(cmd::set::SetCommand),
    /// Update the labels on a resource.
    Label(cmd::label::LabelArgs),
    /// Update the annotations on a resource.
    Annotate(cmd::label::LabelArgs),
    /// Edit a resource in $EDITOR.
    Edit(cmd::edit::EditArgs),
    /// Update fields of a resource with a merge, JSON or strategic merge patch.
    Patch(cmd::patch::PatchArgs),
    /// Manage the rollout of a deployment.
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCommand),
    /// Expose a deployment, replica set, replication controller or pod as a new Service.
    Expose(cmd::expose::ExposeArgs),
    /// Run a particular image in a pod.
    Run(cmd::run::RunArgs),
    /// Wait for a specific condition on one or many resources.
    Wait(cmd::wait::WaitArgs),
    /// Print the logs for a container in a pod.
    Logs(cmd::logs::LogsArgs),
    /// Execute a command in a container.
    Exec(cmd::exec::ExecArgs),
    /// Forward one or more local ports to a pod.
    PortForward(cmd::port_forward::PortForwardArgs),
    /// Display resource (CPU/memory) usage of nodes or pods.
    #[command(subcommand)]
    Top(cmd::top::TopCommand),
    /// Print the supported API resources on the server.
    ApiResources(cmd::api_resources::ApiResourcesArgs),
    /// Display addresses of the control plane.
    ClusterInfo,
    /// The Raft cluster of servers: members, health, snapshot backups.
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCommand),
}

/// Run a command, writing its output to `out`. Errors are returned for the caller to print
/// (one line on stderr) and turn into a non-zero exit code, as kubectl does.
pub async fn run(
    global: &GlobalArgs,
    command: Command,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let ctx = Ctx::new(global)?;
    match command {
        Command::Apply(a) => cmd::apply::run(&ctx, a, out).await,
        Command::Create(a) => cmd::create::run(&ctx, a, out).await,
        Command::Get(a) => cmd::get::run(&ctx, a, out).await,
        Command::Describe(a) => cmd::describe::run(&ctx, a, out).await,
        Command::Delete(a) => cmd::delete::run(&ctx, a, out).await,
        Command::Scale(a) => cmd::scale::run(&ctx, a, out).await,
        Command::Set(c) => cmd::set::run(&ctx, c, out).await,
        Command::Label(a) => cmd::label::run(&ctx, a, cmd::label::Which::Labels, out).await,
        Command::Annotate(a) => cmd::label::run(&ctx, a, cmd::label::Which::Annotations, out).await,
        Command::Edit(a) => cmd::edit::run(&ctx, a, out).await,
        Command::Patch(a) => cmd::patch::run(&ctx, a, out).await,
        Command::Rollout(c) => cmd::rollout::run(&ctx, c, out).await,
        Command::Expose(a) => cmd::expose::run(&ctx, a, out).await,
        Command::Run(a) => cmd::run::run(&ctx, a, out).await,
        Command::Wait(a) => cmd::wait::run(&ctx, a, out).await,
        Command::Logs(a) => cmd::logs::run(&ctx, a, out).await,
        Command::Exec(a) => cmd::exec::run(&ctx, a, out).await,
        Command::PortForward(a) => cmd::port_forward::run(&ctx, a, out).await,
        Command::Top(c) => cmd::top::run(&ctx, c, out).await,
        Command::ApiResources(a) => cmd::api_resources::run(&ctx, a, out).await,
        Command::ClusterInfo => cmd::cluster::cluster_info(&ctx, out).await,
        Command::Cluster(c) => cmd::cluster::run(&ctx, c, out).await,
    }
}
