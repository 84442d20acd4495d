//! `rkube set image`: change container images of a pod or of a workload's pod template with a
//! strategic merge patch on the containers (merged by name), as kubectl does.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use rkube_proto::api::PatchType;
use serde_json::{json, Map, Value};

use crate::manifest::targets::{self, Failures, Selection, Target};
use crate::Ctx;

#[derive(Debug, clap::Subcommand)]
pub enum SetCommand {
    /// Update the images of a pod or of a pod template (deployment, replicaset, daemonset,
    /// statefulset, replicationcontroller, job, cronjob).
    Image(SetImageArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetImageArgs {
    /// `KIND/NAME...` or `KIND NAME...`, then `CONTAINER=IMAGE` pairs (`*=IMAGE`: every container).
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Files, directories or `-` (stdin) naming the objects to update.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
    /// Process the directories named by -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Update the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Update every object of the given kinds in the namespace.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(ctx: &Ctx, command: SetCommand, out: &mut (dyn Write + Send)) -> Result<()> {
    match command {
        SetCommand::Image(args) => set_image(ctx, args, out).await,
    }
}

async fn set_image(ctx: &Ctx, args: SetImageArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let (resources, images) = split_images(&args.args)?;
    if resources.is_empty() && args.filename.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    }
    let selection = Selection {
        args: &resources,
        filenames: &args.filename,
        recursive: args.recursive,
        selector: args.selector.as_deref(),
        all: args.all,
        all_namespaces: false,
    };
    let mut failures = Failures::default();
    for item in targets::select(ctx, &selection).await? {
        let result = match item {
            Ok(target) => update(ctx, &target, &images).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(Some(line)) => writeln!(out, "{line}")?,
            Ok(None) => {}
            Err(e) => failures.record(None, e)?,
        }
    }
    failures.finish()
}

/// Patch one object; the line to print, or None when every image is already as asked (kubectl
/// prints nothing then).
async fn update(ctx: &Ctx, target: &Target, images: &[ImageChange]) -> Result<Option<String>> {
    let obj = ctx
        .client
        .get(&target.kind(), &target.namespace, &target.name)
        .await?;
    let Some(patch) = image_patch(&target.resource.kind, &obj, images)? else {
        return Ok(None);
    };
    ctx.client
        .patch(
            &target.kind(),
            &target.namespace,
            &target.name,
            PatchType::Strategic,
            &serde_json::to_vec(&patch)?,
            false,
        )
        .await?;
    Ok(Some(format!("{} image updated", target.display())))
}

/// A container name (or `*`) and the image it is to run.
type ImageChange = (String, String);

/// Split `deployment/kubia nodejs=kubia:v2` into the resources and the (container, image) pairs.
fn split_images(args: &[String]) -> Result<(Vec<String>, Vec<ImageChange>)> {
    let first_pair = args
        .iter()
        .position(|a| a.contains('='))
        .unwrap_or(args.len());
    let (resources, pairs) = args.split_at(first_pair);
    let mut images = Vec::new();
    for p in pairs {
        match p.split_once('=') {
            Some((name, image)) if !name.is_empty() && !image.is_empty() => {
                images.push((name.to_string(), image.to_string()))
            }
            _ => bail!("all resources must be specified before image changes: {p}"),
        }
    }
    if images.is_empty() {
        bail!("at least one image update is required");
    }
    Ok((resources.to_vec(), images))
}

/// Where a kind keeps its pod spec.
fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&["spec"]),
        "Deployment"
        | "ReplicaSet"
        | "ReplicationController"
        | "DaemonSet"
        | "StatefulSet"
        | "Job" => Some(&["spec", "template", "spec"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

/// The strategic merge patch setting the images, or None if nothing changes. A container
/// name that matches no container or init container is an error.
fn image_patch(kind: &str, obj: &Value, images: &[ImageChange]) -> Result<Option<Value>> {
    let path = pod_spec_path(kind).ok_or_else(|| {
        anyhow!("the object is not a pod or does not have a pod template: {kind}")
    })?;
    let spec = path.iter().fold(obj, |v, k| &v[*k]);
    let mut lists: Map<String, Value> = Map::new();
    for (name, image) in images {
        let mut found = false;
        for field in ["initContainers", "containers"] {
            for c in spec[field].as_array().into_iter().flatten() {
                let cname = c["name"].as_str().unwrap_or("");
                if name != "*" && name != cname {
                    continue;
                }
                found = true;
                if c["image"].as_str() == Some(image.as_str()) {
                    continue;
                }
                let list = lists
                    .entry(field)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .expect("array");
                list.retain(|e| e["name"] != json!(cname));
                list.push(json!({"name": cname, "image": image}));
            }
        }
        if !found && name != "*" {
            bail!("unable to find container named {name:?}");
        }
    }
    if lists.is_empty() {
        return Ok(None);
    }
    let patch = path
        .iter()
        .rev()
        .fold(Value::Object(lists), |inner, key| json!({ *key: inner }));
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn arguments_split_into_resources_and_images() {
        let args: Vec<String> = ["deployment/kubia", "nodejs=kubia:v2", "side=busybox"]
            .map(String::from)
            .to_vec();
        let (resources, images) = split_images(&args).unwrap();
        assert_eq!(resources, vec!["deployment/kubia"]);
        assert_eq!(
            images,
            pairs(&[("nodejs", "kubia:v2"), ("side", "busybox")])
        );
        for (args, message) in [
            (
                vec!["deploy/kubia"],
                "at least one image update is required",
            ),
            (
                vec!["deploy/kubia", "a=b", "oops"],
                "all resources must be specified before image changes: oops",
            ),
        ] {
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            assert_eq!(split_images(&args).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn patches_name_the_containers() {
        let deploy = json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "nodejs", "image": "kubia:v1"}, {"name": "side", "image": "busybox"}]}}}});
        assert_eq!(
            image_patch("Deployment", &deploy, &pairs(&[("nodejs", "kubia:v2")])).unwrap(),
            Some(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "nodejs", "image": "kubia:v2"}]}}}})
            )
        );
        assert_eq!(
            image_patch("Deployment", &deploy, &pairs(&[("*", "busybox")])).unwrap(),
            Some(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "nodejs", "image": "busybox"}]}}}})
            )
        );
        assert_eq!(
            image_patch("Deployment", &deploy, &pairs(&[("init", "alpine")])).unwrap(),
            Some(
                json!({"spec": {"template": {"spec": {"initContainers": [{"name": "init", "image": "alpine"}]}}}})
            )
        );
        assert_eq!(
            image_patch("Deployment", &deploy, &pairs(&[("nodejs", "kubia:v1")])).unwrap(),
            None
        );
        assert_eq!(
            image_patch("Deployment", &deploy, &pairs(&[("x", "y")]))
                .unwrap_err()
                .to_string(),
            "unable to find container named \"x\""
        );
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(
            image_patch("Pod", &pod, &pairs(&[("c", "b")])).unwrap(),
            Some(json!({"spec": {"containers": [{"name": "c", "image": "b"}]}}))
        );
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}}}}});
        assert!(image_patch("CronJob", &cron, &pairs(&[("c", "b")]))
            .unwrap()
            .is_some());
        assert!(image_patch("Service", &pod, &pairs(&[("c", "b")])).is_err());
    }
}
