//! `rollout status`: kubectl's status viewers (what a Deployment's, DaemonSet's or
//! StatefulSet's status says about its rollout) and the watch that follows it until done.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use rkube_client::{ListParams, WatchEvent};
use rkube_proto::api::ApiResource;
use serde_json::Value;

use crate::cmd::describe::fields::{arr, int, s};
use crate::context::kind_ref;
use crate::Ctx;

/// What one look at the object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    /// Still rolling out: print the message and keep watching.
    Waiting(String),
    /// Finished: print the message and stop.
    Done(String),
}

/// kubectl's status viewer for `kind`. Errors (a missed progress deadline, a revision that is
/// not the running one) end the command.
pub fn status_message(kind: &str, obj: &Value, revision: i64) -> Result<RolloutState> {
    let name = s(obj, "/metadata/name");
    let generation = int(obj, "/metadata/generation");
    let observed = int(obj, "/status/observedGeneration");
    let desired = obj.pointer("/spec/replicas").and_then(Value::as_i64);
    match kind {
        "Deployment" => {
            if revision > 0 {
                let running = s(
                    obj,
                    "/metadata/annotations/deployment.kubernetes.io~1revision",
                )
                .parse::<i64>()
                .unwrap_or(0);
                if running != revision {
                    bail!("desired revision ({revision}) is different from the running revision ({running})");
                }
            }
            if generation > observed {
                return Ok(RolloutState::Waiting(
                    "Waiting for deployment spec update to be observed...".into(),
                ));
            }
            let progressing = arr(obj, "/status/conditions")
                .iter()
                .find(|c| s(c, "/type") == "Progressing");
            if progressing.is_some_and(|c| s(c, "/reason") == "ProgressDeadlineExceeded") {
                bail!("deployment {name:?} exceeded its progress deadline");
            }
            let updated = int(obj, "/status/updatedReplicas");
            let replicas = int(obj, "/status/replicas");
            let available = int(obj, "/status/availableReplicas");
            let waiting = |m: String| {
                Ok(RolloutState::Waiting(format!(
                    "Waiting for deployment {name:?} rollout to finish: {m}..."
                )))
            };
            if let Some(desired) = desired.filter(|d| updated < *d) {
                return waiting(format!(
                    "{updated} out of {desired} new replicas have been updated"
                ));
            }
            if replicas > updated {
                return waiting(format!(
                    "{} old replicas are pending termination",
                    replicas - updated
                ));
            }
            if available < updated {
                return waiting(format!(
                    "{available} of {updated} updated replicas are available"
                ));
            }
            Ok(RolloutState::Done(format!(
                "deployment {name:?} successfully rolled out"
            )))
        }
        "DaemonSet" => {
            if s(obj, "/spec/updateStrategy/type") != "RollingUpdate" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if generation > observed {
                return Ok(RolloutState::Waiting(
                    "Waiting for daemon set spec update to be observed...".into(),
                ));
            }
            let desired = int(obj, "/status/desiredNumberScheduled");
            let updated = int(obj, "/status/updatedNumberScheduled");
            let available = int(obj, "/status/numberAvailable");
            if updated < desired {
                return Ok(RolloutState::Waiting(format!(
                    "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
                )));
            }
            if available < desired {
                return Ok(RolloutState::Waiting(format!(
                    "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
                )));
            }
            Ok(RolloutState::Done(format!(
                "daemon set {name:?} successfully rolled out"
            )))
        }
        "StatefulSet" => {
            if s(obj, "/spec/updateStrategy/type") != "RollingUpdate" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if observed == 0 || generation > observed {
                return Ok(RolloutState::Waiting(
                    "Waiting for statefulset spec update to be observed...".into(),
                ));
            }
            let ready = int(obj, "/status/readyReplicas");
            if let Some(desired) = desired.filter(|d| ready < *d) {
                return Ok(RolloutState::Waiting(format!(
                    "Waiting for {} pods to be ready...",
                    desired - ready
                )));
            }
            let updated = int(obj, "/status/updatedReplicas");
            if let (Some(desired), Some(partition)) = (
                desired,
                obj.pointer("/spec/updateStrategy/rollingUpdate/partition")
                    .and_then(Value::as_i64),
            ) {
                if updated < desired - partition {
                    return Ok(RolloutState::Waiting(format!(
                        "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                        desired - partition
                    )));
                }
                return Ok(RolloutState::Done(format!(
                    "partitioned roll out complete: {updated} new pods have been updated..."
                )));
            }
            let (update_rev, current_rev) = (
                s(obj, "/status/updateRevision"),
                s(obj, "/status/currentRevision"),
            );
            if update_rev != current_rev {
                return Ok(RolloutState::Waiting(format!(
                    "waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}..."
                )));
            }
            Ok(RolloutState::Done(format!(
                "statefulset rolling update complete {} pods at revision {current_rev}...",
                int(obj, "/status/currentReplicas")
            )))
        }
        other => bail!("no status viewer has been implemented for {other}"),
    }
}

/// Print the rollout's status, and with `watch` keep following it (through a watch on the one
/// object) until it is done, fails, or `timeout` passes.
pub async fn follow(
    ctx: &Ctx,
    r: &ApiResource,
    name: &str,
    watch: bool,
    revision: i64,
    timeout: Option<Duration>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let deadline = timeout
        .filter(|t| !t.is_zero())
        .map(|t| tokio::time::Instant::now() + t);
    let ns = ctx.namespace_for(r);
    // A plain get first, for the server's own NotFound message.
    let obj = ctx
        .client
        .get(&kind_ref(r), ns, name)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut last = None;
    if report(r, &obj, revision, &mut last, out)? || !watch {
        return Ok(());
    }
    let p = ListParams {
        namespace: ns.to_string(),
        field_selector: format!("metadata.name={name}"),
        ..Default::default()
    };
    let mut events = Box::pin(ctx.client.watch(&kind_ref(r), &p, true));
    loop {
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d, events.next())
                .await
                .map_err(|_| anyhow!("timed out waiting for the condition"))?,
            None => events.next().await,
        };
        match next {
            None => bail!("the watch on {name:?} ended unexpectedly"),
            Some(Err(e)) => bail!("{e}"),
            Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                if report(r, &obj, revision, &mut last, out)? {
                    return Ok(());
                }
            }
            Some(Ok(WatchEvent::Deleted(_))) => bail!("object has been deleted"),
            Some(Ok(WatchEvent::Bookmark { .. })) => {}
        }
    }
}

/// Print the status if it changed; true when the rollout is done.
fn report(
    r: &ApiResource,
    obj: &Value,
    revision: i64,
    last: &mut Option<String>,
    out: &mut (dyn Write + Send),
) -> Result<bool> {
    let (message, done) = match status_message(&r.kind, obj, revision)? {
        RolloutState::Waiting(m) => (m, false),
        RolloutState::Done(m) => (m, true),
    };
    if last.as_deref() != Some(message.as_str()) {
        writeln!(out, "{message}")?;
        out.flush()?;
        *last = Some(message);
    }
    Ok(done)
}
