//! `rkube logs`: print (or follow) a container's log, through the API server, which proxies to
//! the pod's node agent.

use std::io::Write;

use anyhow::{anyhow, Result};
use futures::StreamExt;
use rkube_client::LogOptions;

use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The pod: `NAME` or `pod/NAME`.
    pub pod: String,
    /// The container (default: the pod's only container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new output until the container's instance ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The log of the previous instance of a restarted container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
}

/// `pod/NAME` or `NAME` as the pod's name.
pub(crate) fn pod_name(arg: &str) -> Result<&str> {
    let name = match arg.split_once('/') {
        Some(("pod" | "pods" | "po", name)) => name,
        Some((kind, _)) => {
            return Err(anyhow!(
                "error: only pods are supported here, not {kind:?} (use pod/NAME or NAME)"
            ))
        }
        None => arg,
    };
    if name.is_empty() {
        return Err(anyhow!("error: a pod name is required"));
    }
    Ok(name)
}

pub async fn run(ctx: &Ctx, a: LogsArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let name = pod_name(&a.pod)?;
    let options = LogOptions {
        container: a.container.unwrap_or_default(),
        follow: a.follow,
        previous: a.previous,
        tail_lines: (a.tail >= 0).then_some(a.tail),
    };
    let mut stream = ctx
        .client
        .pod_logs(&ctx.namespace, name, &options)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk.map_err(|e| anyhow!("{e}"))?)?;
        out.flush()?;
    }
    Ok(())
}
