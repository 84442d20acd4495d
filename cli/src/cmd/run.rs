//! `rkube run`: create a Pod running one image, as kubectl builds it (label `run=NAME`, one
//! container named after the pod, extra arguments as args or, with `--command`, the command),
//! optionally with a ClusterIP Service in front (`--expose`), or just print it (`--dry-run`).

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};

use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The name of the pod (and of its container).
    pub name: String,
    /// The image for the container to run.
    #[arg(long)]
    pub image: String,
    /// The port that this container exposes.
    #[arg(long)]
    pub port: Option<String>,
    /// Comma-separated labels for the pod (default: run=NAME).
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// Environment variables to set in the container (`--env=K=V`, repeatable).
    #[arg(long)]
    pub env: Vec<String>,
    /// Annotations for the pod (`--annotations=K=V`, repeatable).
    #[arg(long)]
    pub annotations: Vec<String>,
    /// The restart policy: Always, OnFailure or Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// Use the extra arguments as the container's command rather than its args.
    #[arg(long)]
    pub command: bool,
    /// The image pull policy (left to the server's default when empty).
    #[arg(long)]
    pub image_pull_policy: Option<String>,
    /// Run the container privileged.
    #[arg(long)]
    pub privileged: bool,
    /// Also create a ClusterIP service for the pod (needs --port).
    #[arg(long)]
    pub expose: bool,
    /// `none`, or `client` to print the object without creating it.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// Output format: yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Arguments (or, with --command, the command) for the container, after `--`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// `a=b,c=d` into a map, with kubectl's errors.
pub(crate) fn parse_labels(spec: &str) -> Result<Map<String, Value>> {
    let mut labels = Map::new();
    for item in spec.split(',') {
        let parts: Vec<&str> = item.split('=').collect();
        if parts.len() != 2 {
            bail!("unexpected label spec: {item}");
        }
        if parts[0].is_empty() {
            bail!("unexpected empty label key");
        }
        labels.insert(parts[0].to_string(), Value::String(parts[1].to_string()));
    }
    Ok(labels)
}

fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The pod kubectl's `run` generates.
pub fn build_pod(a: &RunArgs) -> Result<Value> {
    if a.image.is_empty() {
        bail!("--image is required");
    }
    if !matches!(a.restart.as_str(), "Always" | "OnFailure" | "Never") {
        bail!(
            "invalid restart policy: {}, valid values are: Always, OnFailure, Never",
            a.restart
        );
    }
    let labels = match &a.labels {
        Some(spec) if !spec.is_empty() => parse_labels(spec)?,
        _ => Map::from_iter([("run".to_string(), Value::String(a.name.clone()))]),
    };
    let mut container = json!({"name": a.name, "image": a.image});
    if !a.env.is_empty() {
        let env = a
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) if is_env_var_name(k) => Ok(json!({"name": k, "value": v})),
                _ => Err(anyhow!("invalid env: {e}")),
            })
            .collect::<Result<Vec<_>>>()?;
        container["env"] = Value::Array(env);
    }
    if let Some(policy) = a.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
            bail!("invalid image pull policy: {policy}, valid values are: Always, IfNotPresent, Never");
        }
        container["imagePullPolicy"] = json!(policy);
    }
    if a.privileged {
        container["securityContext"] = json!({"privileged": true});
    }
    if !a.args.is_empty() {
        container[if a.command { "command" } else { "args" }] = json!(a.args);
    }
    if let Some(port) = a.port.as_deref().filter(|p| !p.is_empty()) {
        let port: i64 = port
            .parse()
            .map_err(|_| anyhow!("--port must be a number"))?;
        container["ports"] = json!([{"containerPort": port}]);
    }
    let mut metadata = json!({"name": a.name, "labels": labels});
    if !a.annotations.is_empty() {
        metadata["annotations"] = Value::Object(parse_pairs(&a.annotations, "annotation")?);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [container],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": a.restart,
        },
    }))
}

fn parse_pairs(items: &[String], what: &str) -> Result<Map<String, Value>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Value::String(v.to_string()))),
            _ => Err(anyhow!("invalid {what}: {i}")),
        })
        .collect()
}

/// The object as kubectl prints a client-side dry run: the empty fields Go's encoder writes
/// (`creationTimestamp: null`, `resources: {}`, `status: {}`) included.
fn as_go_prints_it(obj: &Value) -> Value {
    let mut o = obj.clone();
    o["metadata"]["creationTimestamp"] = Value::Null;
    if let Some(containers) = o
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
    {
        for c in containers {
            if c.get("resources").is_none() {
                c["resources"] = json!({});
            }
        }
    }
    if o.get("status").is_none() {
        o["status"] = json!({});
    }
    o
}

/// Print an object the way `-o yaml|json|name` asks, or kubectl's `kind/name <action>` line.
pub(crate) fn print_result(
    out: &mut (dyn Write + Send),
    obj: &Value,
    display: &str,
    action: &str,
    output: Option<&str>,
    dry_run: bool,
) -> Result<()> {
    match output.unwrap_or("") {
        "" => writeln!(out, "{display} {action}{}", if dry_run { " (dry run)" } else { "" })?,
        "name" => writeln!(out, "{display}")?,
        "yaml" => write!(out, "{}", yaml_serde::to_string(obj)?)?,
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(obj)?)?,
        other => bail!("unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,yaml"),
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, a: RunArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let dry_run = match a.dry_run.as_str() {
        "none" | "false" => false,
        "client" | "true" => true,
        "server" => bail!("--dry-run=server is not supported by rkube run; use --dry-run=client"),
        other => {
            bail!("invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"")
        }
    };
    if a.expose && a.port.as_deref().unwrap_or("").is_empty() {
        bail!("--port must be set when exposing a service");
    }
    let pod = build_pod(&a)?;
    let service = a.expose.then(|| {
        let port: i64 = a.port.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let mut metadata = json!({"name": a.name});
        if let Some(spec) = a.labels.as_deref().filter(|l| !l.is_empty()) {
            metadata["labels"] = Value::Object(parse_labels(spec).unwrap_or_default());
        }
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "selector": pod["metadata"]["labels"],
                "ports": [{"port": port, "protocol": "TCP", "targetPort": port}],
            },
        })
    });
    let output = a.output.as_deref();
    if dry_run {
        if let Some(svc) = &service {
            print_result(
                out,
                &as_go_prints_it(svc),
                &format!("service/{}", a.name),
                "created",
                output,
                true,
            )?;
        }
        return print_result(
            out,
            &as_go_prints_it(&pod),
            &format!("pod/{}", a.name),
            "created",
            output,
            true,
        );
    }
    if let Some(svc) = &service {
        let created = ctx
            .client
            .create(svc, &ctx.namespace)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        print_result(
            out,
            &created,
            &format!("service/{}", a.name),
            "created",
            output,
            false,
        )?;
    }
    let created = ctx
        .client
        .create(&pod, &ctx.namespace)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    print_result(
        out,
        &created,
        &format!("pod/{}", a.name),
        "created",
        output,
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        Cli::parse_from(std::iter::once("run").chain(args.iter().copied())).run
    }

    #[test]
    fn builds_kubectls_pod() {
        let a = parse(&[
            "kubia",
            "--image=luksa/kubia",
            "--port=8080",
            "--env=A=1",
            "--env=B=x=y",
            "--",
            "node",
            "app.js",
        ]);
        let pod = build_pod(&a).unwrap();
        assert_eq!(
            pod,
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "kubia", "labels": {"run": "kubia"}},
                "spec": {
                    "containers": [{
                        "name": "kubia",
                        "image": "luksa/kubia",
                        "args": ["node", "app.js"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "x=y"}],
                        "ports": [{"containerPort": 8080}],
                    }],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                },
            })
        );
        let a = parse(&[
            "sleeper",
            "--image=busybox",
            "--labels=app=x,tier=y",
            "--restart=Never",
            "--command",
            "--",
            "sleep",
            "3600",
        ]);
        let pod = build_pod(&a).unwrap();
        assert_eq!(pod["metadata"]["labels"], json!({"app": "x", "tier": "y"}));
        assert_eq!(
            pod["spec"]["containers"][0]["command"],
            json!(["sleep", "3600"])
        );
        assert_eq!(pod["spec"]["restartPolicy"], json!("Never"));
    }

    #[test]
    fn rejects_what_kubectl_rejects() {
        let err = |args: &[&str]| build_pod(&parse(args)).unwrap_err().to_string();
        assert_eq!(
            err(&["x", "--image=i", "--restart=Sometimes"]),
            "invalid restart policy: Sometimes, valid values are: Always, OnFailure, Never"
        );
        assert_eq!(
            err(&["x", "--image=i", "--env=1BAD=v"]),
            "invalid env: 1BAD=v"
        );
        assert_eq!(
            err(&["x", "--image=i", "--labels=a"]),
            "unexpected label spec: a"
        );
        assert_eq!(
            err(&["x", "--image=i", "--port=http"]),
            "--port must be a number"
        );
    }

    #[test]
    fn dry_run_yaml_looks_like_kubectls() {
        let pod = build_pod(&parse(&["nginx", "--image=nginx"])).unwrap();
        let mut out = Vec::new();
        print_result(
            &mut out,
            &as_go_prints_it(&pod),
            "pod/nginx",
            "created",
            Some("yaml"),
            true,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    run: nginx
  name: nginx
spec:
  containers:
  - image: nginx
    name: nginx
    resources: {}
  dnsPolicy: ClusterFirst
  restartPolicy: Always
status: {}
"
        );
    }
}
