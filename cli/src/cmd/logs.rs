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
    /// Only lines newer than this duration, like 5s, 2m or 3h (at most one of --since and
    /// --since-time).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only lines logged at or after this time (RFC 3339, e.g. 2026-01-02T15:04:05Z).
    #[arg(long, value_name = "TIME")]
    pub since_time: Option<String>,
    /// Prefix each line with the time it was logged (RFC 3339).
    #[arg(long)]
    pub timestamps: bool,
}

/// `--since`'s duration in whole seconds, rounded up as kubectl does (at least 1).
fn since_seconds(text: &str) -> Result<i64> {
    let duration = super::wait::parse_duration(text)
        .ok()
        .flatten()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow!("error: --since {text:?} is not a positive duration (like 30s, 5m or 1h)")
        })?;
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    Ok(i64::try_from(secs).unwrap_or(i64::MAX))
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
    if a.since.is_some() && a.since_time.is_some() {
        return Err(anyhow!(
            "error: at most one of --since and --since-time may be given"
        ));
    }
    let since_seconds = match &a.since {
        Some(text) => Some(since_seconds(text)?),
        None => None,
    };
    if let Some(time) = &a.since_time {
        time.parse::<jiff::Timestamp>().map_err(|e| {
            anyhow!("error: --since-time {time:?} is not an RFC 3339 time (like 2026-01-02T15:04:05Z): {e}")
        })?;
    }
    let options = LogOptions {
        container: a.container.unwrap_or_default(),
        follow: a.follow,
        previous: a.previous,
        tail_lines: (a.tail >= 0).then_some(a.tail),
        since_seconds,
        since_time: a.since_time,
        timestamps: a.timestamps,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_whole_seconds_rounded_up() {
        assert_eq!(since_seconds("30s").unwrap(), 30);
        assert_eq!(since_seconds("1h30m").unwrap(), 5400);
        assert_eq!(since_seconds("1500ms").unwrap(), 2);
        for bad in ["0", "-5s", "5", "soon"] {
            let err = since_seconds(bad).unwrap_err().to_string();
            assert!(err.contains("is not a positive duration"), "{bad}: {err}");
        }
    }
}
