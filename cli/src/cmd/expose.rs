//! `rkube expose`: create a Service in front of a Deployment, ReplicaSet, ReplicationController,
//! Pod or Service, taking its selector, ports and labels from the exposed object, as kubectl
//! does.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};

use crate::cmd::describe::fields::{arr, int, s};
use crate::cmd::describe::{targets, Target};
use crate::cmd::run::{parse_labels, print_result};
use crate::context::kind_ref;
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct ExposeArgs {
    /// `TYPE NAME` or `TYPE/NAME` (deployment, replicaset, replicationcontroller, pod, service).
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,
    /// The port the service serves on (default: the exposed object's ports).
    #[arg(long)]
    pub port: Option<String>,
    /// The container port (name or number) traffic goes to (default: the service port).
    #[arg(long)]
    pub target_port: Option<String>,
    /// ClusterIP, NodePort, LoadBalancer or ExternalName (default: ClusterIP).
    #[arg(long = "type")]
    pub service_type: Option<String>,
    /// The name of the service (default: the exposed object's).
    #[arg(long)]
    pub name: Option<String>,
    /// The protocol (default: the exposed container ports', else TCP).
    #[arg(long)]
    pub protocol: Option<String>,
    /// The selector, `k=v,...` (default: the exposed object's).
    #[arg(long)]
    pub selector: Option<String>,
    /// Labels for the service (default: the exposed object's).
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// An external IP the service also accepts traffic on.
    #[arg(long)]
    pub external_ip: Option<String>,
    /// None or ClientIP.
    #[arg(long)]
    pub session_affinity: Option<String>,
    /// The cluster IP to assign ("None" for a headless service).
    #[arg(long)]
    pub cluster_ip: Option<String>,
    /// The load balancer IP (LoadBalancer services).
    #[arg(long)]
    pub load_balancer_ip: Option<String>,
    /// `none`, or `client` to print the service without creating it.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// Output format: yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// The selector a Service needs to reach the object's pods.
pub fn selector_for(obj: &Value) -> Result<Map<String, Value>> {
    let kind = s(obj, "/kind");
    let map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    match kind {
        "Pod" | "Service" => {
            let ptr = if kind == "Pod" {
                "/metadata/labels"
            } else {
                "/spec/selector"
            };
            let m = map(obj.pointer(ptr));
            if m.is_empty() {
                bail!(
                    "the {} has no {} to select its pods by",
                    kind.to_lowercase(),
                    if kind == "Pod" { "labels" } else { "selector" }
                );
            }
            Ok(m)
        }
        "ReplicationController" => Ok(map(obj.pointer("/spec/selector"))),
        "Deployment" | "ReplicaSet" => {
            if !arr(obj, "/spec/selector/matchExpressions").is_empty() {
                bail!(
                    "couldn't convert expressions - \"{}\" to map-based selector format",
                    s(obj, "/metadata/name")
                );
            }
            Ok(map(obj.pointer("/spec/selector/matchLabels")))
        }
        other => bail!("cannot expose a {other}"),
    }
}

/// The containers whose ports a Service would expose (a Service's own ports for a Service).
fn ports_for(obj: &Value) -> Vec<(i64, String)> {
    let ports: Vec<&Value> = match s(obj, "/kind") {
        "Service" => arr(obj, "/spec/ports").iter().collect(),
        "Pod" => arr(obj, "/spec/containers")
            .iter()
            .flat_map(|c| arr(c, "/ports"))
            .collect(),
        _ => arr(obj, "/spec/template/spec/containers")
            .iter()
            .flat_map(|c| arr(c, "/ports"))
            .collect(),
    };
    let field = if s(obj, "/kind") == "Service" {
        "/port"
    } else {
        "/containerPort"
    };
    ports
        .into_iter()
        .map(|p| {
            let protocol = match s(p, "/protocol") {
                "" => "TCP",
                pr => pr,
            };
            (int(p, field), protocol.to_string())
        })
        .collect()
}

/// The Service kubectl's `expose` generates for `obj`.
pub fn build_service(obj: &Value, a: &ExposeArgs) -> Result<Value> {
    let selector = match a.selector.as_deref().filter(|s| !s.is_empty()) {
        Some(spec) => parse_labels(spec)?,
        None => selector_for(obj).map_err(|e| {
            anyhow!("couldn't retrieve selectors via --selector flag or introspection: {e}")
        })?,
    };
    let name = match a.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        // A service name is a DNS-1035 label: at most 63 characters.
        None => s(obj, "/metadata/name").chars().take(63).collect(),
    };
    let introspected = ports_for(obj);
    let protocols: BTreeMap<i64, String> = introspected.iter().cloned().collect();
    let port_numbers: Vec<i64> = match a.port.as_deref().filter(|p| !p.is_empty()) {
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse()
                    .map_err(|_| anyhow!("strconv.Atoi: parsing {p:?}: invalid syntax"))
            })
            .collect::<Result<_>>()?,
        None => {
            let ports: Vec<i64> = introspected.iter().map(|(p, _)| *p).collect();
            if ports.is_empty() && a.cluster_ip.as_deref() != Some("None") {
                bail!("couldn't find port via --port flag or introspection");
            }
            ports
        }
    };
    let target: Option<Value> = a
        .target_port
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| match t.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(t),
        });
    let ports: Vec<Value> = port_numbers
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let protocol = a
                .protocol
                .clone()
                .filter(|p| !p.is_empty())
                .or_else(|| protocols.get(port).cloned())
                .unwrap_or_else(|| "TCP".into());
            let mut p = json!({
                "port": port,
                "protocol": protocol,
                "targetPort": target.clone().unwrap_or(json!(port)),
            });
            if port_numbers.len() > 1 {
                p["name"] = json!(format!("port-{}", i + 1));
            }
            p
        })
        .collect();
    let labels = match a.labels.as_deref().filter(|l| !l.is_empty()) {
        Some(spec) => parse_labels(spec)?,
        None => obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    let mut metadata = json!({"name": name});
    if !labels.is_empty() {
        metadata["labels"] = Value::Object(labels);
    }
    let mut spec = json!({"selector": selector, "ports": ports});
    if let Some(t) = a.service_type.as_deref().filter(|t| !t.is_empty()) {
        spec["type"] = json!(t);
        if t == "LoadBalancer" {
            if let Some(ip) = a.load_balancer_ip.as_deref().filter(|i| !i.is_empty()) {
                spec["loadBalancerIP"] = json!(ip);
            }
        }
    }
    if let Some(ip) = a.external_ip.as_deref().filter(|i| !i.is_empty()) {
        spec["externalIPs"] = json!([ip]);
    }
    if let Some(aff) = a.session_affinity.as_deref().filter(|x| !x.is_empty()) {
        if !matches!(aff, "None" | "ClientIP") {
            bail!("unknown session affinity: {aff}");
        }
        spec["sessionAffinity"] = json!(aff);
    }
    if let Some(ip) = a.cluster_ip.as_deref().filter(|i| !i.is_empty()) {
        spec["clusterIP"] = json!(ip);
    }
    Ok(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}))
}

pub async fn run(ctx: &Ctx, a: ExposeArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let dry_run = match a.dry_run.as_str() {
        "none" | "false" => false,
        "client" | "true" => true,
        "server" => {
            bail!("--dry-run=server is not supported by rkube expose; use --dry-run=client")
        }
        other => {
            bail!("invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"")
        }
    };
    for Target { resource, name } in targets(ctx, &a.args).await? {
        let Some(name) = name else {
            bail!("resource(s) were provided, but no name was specified");
        };
        if !matches!(
            resource.kind.as_str(),
            "Deployment" | "ReplicaSet" | "ReplicationController" | "Pod" | "Service"
        ) {
            bail!("cannot expose a {}", resource.kind);
        }
        let obj = ctx
            .client
            .get(&kind_ref(&resource), ctx.namespace_for(&resource), &name)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let svc = build_service(&obj, &a)?;
        let display = format!("service/{}", s(&svc, "/metadata/name"));
        if dry_run {
            print_result(out, &svc, &display, "exposed", a.output.as_deref(), true)?;
            continue;
        }
        let created = ctx
            .client
            .create(&svc, &ctx.namespace)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        print_result(
            out,
            &created,
            &display,
            "exposed",
            a.output.as_deref(),
            false,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        expose: ExposeArgs,
    }

    fn args(extra: &[&str]) -> ExposeArgs {
        Cli::parse_from(
            ["expose", "deployment", "kubia"]
                .into_iter()
                .chain(extra.iter().copied()),
        )
        .expose
    }

    fn deployment() -> Value {
        json!({
            "kind": "Deployment",
            "metadata": {"name": "kubia", "labels": {"app": "kubia"}},
            "spec": {
                "selector": {"matchLabels": {"app": "kubia"}},
                "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}},
            },
        })
    }

    #[test]
    fn takes_selector_ports_and_labels_from_the_deployment() {
        let svc = build_service(
            &deployment(),
            &args(&["--port=80", "--target-port=8080", "--type=NodePort"]),
        )
        .unwrap();
        assert_eq!(
            svc,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kubia", "labels": {"app": "kubia"}},
                "spec": {
                    "selector": {"app": "kubia"},
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                    "type": "NodePort",
                },
            })
        );
        let svc = build_service(&deployment(), &args(&["--name=web"])).unwrap();
        assert_eq!(svc["metadata"]["name"], json!("web"));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 8080, "protocol": "TCP", "targetPort": 8080}])
        );
    }

    #[test]
    fn selectors_by_kind() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"run": "p"}}});
        assert_eq!(
            Value::Object(selector_for(&pod).unwrap()),
            json!({"run": "p"})
        );
        let rc = json!({"kind": "ReplicationController", "spec": {"selector": {"app": "kubia"}}});
        assert_eq!(
            Value::Object(selector_for(&rc).unwrap()),
            json!({"app": "kubia"})
        );
        let mut d = deployment();
        d["spec"]["selector"]["matchExpressions"] = json!([{"key": "a", "operator": "Exists"}]);
        assert!(build_service(&d, &args(&["--port=80"]))
            .unwrap_err()
            .to_string()
            .contains("couldn't retrieve selectors"));
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([]);
        assert_eq!(
            build_service(&d, &args(&[])).unwrap_err().to_string(),
            "couldn't find port via --port flag or introspection"
        );
    }
}
