//! `rollout history` and `rollout undo`: a Deployment's revisions are the ReplicaSets it owns,
//! numbered by their `deployment.kubernetes.io/revision` annotation; undoing copies a chosen
//! revision's pod template back into the Deployment.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{anyhow, bail, Result};
use rkube_proto::api::ApiResource;
use serde_json::{Map, Value};

use crate::cmd::describe::fields::flag;
use crate::cmd::describe::layout::Out;
use crate::cmd::describe::workloads::{equal_ignore_hash, template_without_hash};
use crate::cmd::describe::{owned_replica_sets, pod};
use crate::context::display_name;
use crate::Ctx;

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Deployment annotations an undo keeps from the Deployment rather than copying from the
/// ReplicaSet (kubectl's `annotationsToSkip`).
const KEEP_ON_ROLLBACK: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

fn revision_of(rs: &Value) -> Option<i64> {
    rs.pointer("/metadata/annotations")?
        .get(REVISION)?
        .as_str()?
        .parse()
        .ok()
}

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The ReplicaSets by revision (a later one wins a duplicate revision, as in kubectl's map).
fn by_revision(replica_sets: &[Value]) -> BTreeMap<i64, &Value> {
    replica_sets
        .iter()
        .filter_map(|rs| Some((revision_of(rs)?, rs)))
        .collect()
}

/// The `REVISION  CHANGE-CAUSE` table, or kubectl's "No rollout history found.".
pub fn history_table(replica_sets: &[Value]) -> String {
    let revisions = by_revision(replica_sets);
    if revisions.is_empty() {
        return "No rollout history found.".into();
    }
    let mut w = Out::new();
    w.write(0, "REVISION\tCHANGE-CAUSE\n");
    for (rev, rs) in revisions {
        let cause = match annotation(rs, CHANGE_CAUSE) {
            "" => "<none>",
            c => c,
        };
        w.write(0, &format!("{rev}\t{cause}\n"));
    }
    w.finish()
}

/// One revision's pod template as `rollout history --revision` prints it: kubectl's pod
/// template description, through a bare prefix writer (tabs unaligned), with the revision's
/// change cause among the template annotations.
pub fn revision_template(replica_sets: &[Value], revision: i64) -> Result<String> {
    let revisions = by_revision(replica_sets);
    let rs = revisions
        .get(&revision)
        .ok_or_else(|| anyhow!("unable to find the specified revision"))?;
    let mut template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let cause = annotation(rs, CHANGE_CAUSE);
    if !cause.is_empty() {
        if let Some(meta) = template.as_object_mut().map(|t| {
            t.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
        }) {
            if let Some(m) = meta.as_object_mut() {
                let annotations = m
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(a) = annotations.as_object_mut() {
                    a.insert(CHANGE_CAUSE.into(), Value::String(cause.into()));
                }
            }
        }
    }
    let mut w = Out::new();
    pod::pod_template(&mut w, Some(&template));
    Ok(w.finish_raw())
}

/// The ReplicaSet to roll back to: revision `to_revision`, or with 0 the one before the latest.
pub fn select_revision<'a>(
    replica_sets: &'a [Value],
    to_revision: i64,
    deployment: &str,
) -> Result<&'a Value> {
    if to_revision < 0 {
        bail!("unable to find specified revision {to_revision} in history");
    }
    let revisions = by_revision(replica_sets);
    if to_revision > 0 {
        return revisions
            .get(&to_revision)
            .copied()
            .ok_or_else(|| anyhow!("unable to find specified revision {to_revision} in history"));
    }
    revisions
        .values()
        .rev()
        .nth(1)
        .copied()
        .ok_or_else(|| anyhow!("no rollout history found for deployment {deployment:?}"))
}

/// The Deployment rolled back to `rs`'s template, or None when it already has that template.
pub fn rollback(deployment: &Value, rs: &Value) -> Option<Value> {
    let rs_template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let current = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    if equal_ignore_hash(&rs_template, &current) {
        return None;
    }
    let mut d = deployment.clone();
    d["spec"]["template"] = template_without_hash(&rs_template);
    let mut annotations = Map::new();
    let kept = deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    for key in KEEP_ON_ROLLBACK {
        if let Some(v) = kept.and_then(|a| a.get(*key)) {
            annotations.insert(key.to_string(), v.clone());
        }
    }
    if let Some(from) = rs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in from {
            if !KEEP_ON_ROLLBACK.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    d["metadata"]["annotations"] = Value::Object(annotations);
    Some(d)
}

fn deployments_only(r: &ApiResource, what: &str) -> Result<()> {
    if r.kind != "Deployment" {
        bail!(
            "no {what} has been implemented for \"{}.{}\"",
            r.kind,
            r.group
        );
    }
    Ok(())
}

pub async fn history(
    ctx: &Ctx,
    r: &ApiResource,
    name: &str,
    revision: i64,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    deployments_only(r, "history viewer")?;
    let d = super::get(ctx, r, name).await?;
    let rss = owned_replica_sets(ctx, &d).await?;
    if revision > 0 {
        let text = revision_template(&rss, revision)?;
        write!(
            out,
            "{} with revision #{revision}\n{text}\n",
            display_name(r, name)
        )?;
    } else {
        write!(out, "{} \n{}\n", display_name(r, name), history_table(&rss))?;
    }
    Ok(())
}

pub async fn undo(
    ctx: &Ctx,
    r: &ApiResource,
    name: &str,
    to_revision: i64,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    deployments_only(r, "rollbacker")?;
    // The deployment controller writes the object too (revision annotation, status): re-read and
    // try again when the update loses that race, as kubectl's rollbacker does.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let d = super::get(ctx, r, name).await?;
        let rss = owned_replica_sets(ctx, &d).await?;
        let rs = select_revision(&rss, to_revision, name)?;
        if flag(&d, "/spec/paused") {
            bail!("you cannot rollback a paused deployment; resume it first with 'rkube rollout resume' and try again");
        }
        match rollback(&d, rs) {
            None => writeln!(
                out,
                "{} skipped rollback (current template already matches revision {})",
                display_name(r, name),
                revision_of(rs).unwrap_or(to_revision)
            )?,
            Some(updated) => match ctx.client.update(&updated).await {
                Ok(_) => writeln!(out, "{} rolled back", display_name(r, name))?,
                Err(rkube_client::Error::Conflict(_)) if attempts < 5 => continue,
                Err(e) => bail!(
                    "failed restoring revision {}: {e}",
                    revision_of(rs).unwrap_or(0)
                ),
            },
        }
        break;
    }
    Ok(())
}
