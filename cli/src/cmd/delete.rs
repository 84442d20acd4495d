//! `rkube delete`: objects named by manifests (`-f`), by `KIND NAME...` or `KIND/NAME...`, or
//! chosen with `-l SELECTOR` / `--all`, with kubectl's cascade and grace-period flags.
//!
//! Unlike kubectl, `--wait` defaults to false: an object held by finalizers (an orphaning or
//! foreground deletion waits for the controllers) would keep the command waiting. With
//! `--wait` the command polls until every deleted object is gone or `--timeout` passes.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rkube_proto::api::{DeleteRequest, PropagationPolicy};

use crate::manifest::targets::{self, resource_word, Failures, Selection, Target};
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// `KIND NAME...`, `KIND/NAME...`, or `KIND[,KIND...]` with -l or --all.
    pub args: Vec<String>,
    /// Files, directories or `-` (stdin) naming the objects to delete.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
    /// Process the directories named by -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects matching this label selector (`app=kubia,tier!=web`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the given kinds in the namespace.
    #[arg(long)]
    pub all: bool,
    /// With -l or --all: in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// What becomes of dependents: `background` (default), `foreground` or `orphan`
    /// (`true` = background, `false` = orphan).
    #[arg(long, value_name = "MODE", default_value = "background", num_args = 0..=1, require_equals = true, default_missing_value = "background")]
    pub cascade: String,
    /// Seconds a pod gets to terminate; -1 = its own terminationGracePeriodSeconds. 0 needs
    /// --force (without it, 0 becomes 1, as in kubectl).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Delete immediately (a grace period of 1 second).
    #[arg(long)]
    pub now: bool,
    /// Remove the objects at once, without waiting for pods to stop (grace period 0).
    #[arg(long)]
    pub force: bool,
    /// An object that does not exist is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone (rkube's default is false: an object that finalizers
    /// hold would keep the command waiting).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// How long --wait waits (`30s`, `2m`, or seconds).
    #[arg(long, default_value = "60s")]
    pub timeout: String,
}

pub async fn run(ctx: &Ctx, args: DeleteArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    if args.args.is_empty() && args.filename.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    }
    let propagation = cascade(&args.cascade)?;
    let grace = grace_period(args.grace_period, args.now, args.force)?;
    let timeout = parse_timeout(&args.timeout)?;
    if args.force {
        eprintln!("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.");
    }
    let selection = Selection {
        args: &args.args,
        filenames: &args.filename,
        recursive: args.recursive,
        selector: args.selector.as_deref(),
        all: args.all,
        all_namespaces: args.all_namespaces,
    };
    let selected = targets::select(ctx, &selection).await?;
    let listed = args.selector.is_some() || args.all;
    if selected.is_empty() && listed {
        writeln!(out, "No resources found")?;
        return Ok(());
    }
    let mut failures = Failures::default();
    let mut pending = Vec::new();
    for item in selected {
        let target = match item {
            Ok(t) => t,
            Err(e) => {
                failures.record(None, e)?;
                continue;
            }
        };
        let origin = target.origin();
        let request = DeleteRequest {
            grace_period_seconds: grace,
            propagation_policy: propagation as i32,
            ..Default::default()
        };
        match ctx
            .client
            .delete(&target.kind(), &target.namespace, &target.name, request)
            .await
        {
            Ok((_, removed)) => {
                writeln!(
                    out,
                    "{} \"{}\" deleted",
                    resource_word(&target.resource),
                    target.name
                )?;
                if !removed {
                    pending.push(target);
                }
            }
            Err(rkube_client::Error::NotFound(_)) if args.ignore_not_found => {}
            Err(e) => failures.record(origin.as_deref(), e.into())?,
        }
    }
    if args.wait {
        for target in &pending {
            if let Err(e) = wait_gone(ctx, target, timeout).await {
                failures.record(None, e)?;
            }
        }
    }
    failures.finish()
}

/// `--cascade` as kubectl reads it.
fn cascade(value: &str) -> Result<PropagationPolicy> {
    Ok(match value {
        "background" | "true" => PropagationPolicy::Background,
        "orphan" | "false" => PropagationPolicy::Orphan,
        "foreground" => PropagationPolicy::Foreground,
        other => bail!("invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\"."),
    })
}

/// The grace period to send, from `--grace-period`, `--now` and `--force` as kubectl combines them.
fn grace_period(requested: i64, now: bool, force: bool) -> Result<Option<i64>> {
    let mut grace = requested;
    if now {
        if grace != -1 {
            bail!("--now and --grace-period cannot be specified together");
        }
        grace = 1;
    }
    if grace == 0 && !force {
        // kubectl's guard against accidental data loss: 0 means "as soon as possible" only with --force.
        grace = 1;
    }
    if force && grace < 0 {
        grace = 0;
    }
    Ok((grace >= 0).then_some(grace))
}

fn parse_timeout(s: &str) -> Result<Duration> {
    let bad = || anyhow!("invalid --timeout {s:?}: expected e.g. 30s, 2m or 1h");
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// Poll until the object is gone.
async fn wait_gone(ctx: &Ctx, target: &Target, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match ctx
            .client
            .get(&target.kind(), &target.namespace, &target.name)
            .await
        {
            Err(rkube_client::Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "timed out waiting for the condition on {}/{}",
                target.resource.name,
                target.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_values() {
        for (v, want) in [
            ("background", PropagationPolicy::Background),
            ("true", PropagationPolicy::Background),
            ("foreground", PropagationPolicy::Foreground),
            ("orphan", PropagationPolicy::Orphan),
            ("false", PropagationPolicy::Orphan),
        ] {
            assert_eq!(cascade(v).unwrap(), want, "{v}");
        }
        assert_eq!(
            cascade("sideways").unwrap_err().to_string(),
            "invalid cascade value (sideways). Must be \"background\", \"foreground\", or \"orphan\"."
        );
    }

    #[test]
    fn grace_periods_combine_like_kubectl() {
        for ((requested, now, force), want) in [
            ((-1, false, false), Some(None)),
            ((30, false, false), Some(Some(30))),
            ((0, false, false), Some(Some(1))),
            ((0, false, true), Some(Some(0))),
            ((-1, false, true), Some(Some(0))),
            ((-1, true, false), Some(Some(1))),
            ((5, true, false), None),
        ] {
            assert_eq!(
                grace_period(requested, now, force).ok(),
                want,
                "{requested} {now} {force}"
            );
        }
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("7").unwrap(), Duration::from_secs(7));
        assert!(parse_timeout("soon").is_err());
    }
}
