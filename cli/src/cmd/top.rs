//! `rkube top nodes` and `rkube top pods`: CPU and memory usage as the agents measure it (see
//! `rkube_client::metrics`), in kubectl's columns.

use std::io::Write;

use anyhow::{anyhow, Result};

use crate::printers::TabWriter;
use crate::Ctx;

#[derive(Debug, clap::Subcommand)]
pub enum TopCommand {
    /// CPU and memory of nodes.
    #[command(alias = "node", alias = "no")]
    Nodes(TopNodesArgs),
    /// CPU and memory of pods.
    #[command(alias = "pod", alias = "po")]
    Pods(TopPodsArgs),
}

#[derive(Debug, clap::Args)]
pub struct TopNodesArgs {
    /// Only this node.
    pub name: Option<String>,
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Debug, clap::Args)]
pub struct TopPodsArgs {
    /// Only this pod.
    pub name: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only pods matching this label selector.
    #[arg(short = 'l', long, default_value = "")]
    pub selector: String,
    #[arg(long)]
    pub no_headers: bool,
}

fn cpu(millicores: u64) -> String {
    format!("{millicores}m")
}

fn memory(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

fn percent(used: u64, of: u64) -> String {
    if of == 0 {
        return "<unknown>".into();
    }
    format!("{}%", used * 100 / of)
}

pub async fn run(ctx: &Ctx, c: TopCommand, out: &mut (dyn Write + Send)) -> Result<()> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let (unavailable, no_headers, empty) = match c {
        TopCommand::Nodes(a) => {
            let list = ctx
                .client
                .node_metrics()
                .await
                .map_err(|e| anyhow!("{e}"))?;
            rows.push(
                ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
                    .map(String::from)
                    .to_vec(),
            );
            for n in list
                .items
                .iter()
                .filter(|n| a.name.as_ref().is_none_or(|w| *w == n.name))
            {
                rows.push(vec![
                    n.name.clone(),
                    cpu(n.cpu_millicores),
                    percent(n.cpu_millicores, n.allocatable_cpu_millicores),
                    memory(n.memory_bytes),
                    percent(n.memory_bytes, n.allocatable_memory_bytes),
                ]);
            }
            (
                list.unavailable,
                a.no_headers,
                "error: metrics not available yet",
            )
        }
        TopCommand::Pods(a) => {
            let namespace = if a.all_namespaces { "" } else { &ctx.namespace };
            let mut list = ctx
                .client
                .list_pod_metrics(namespace, &a.selector)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            list.items
                .retain(|p| a.name.as_ref().is_none_or(|w| *w == p.name));
            let mut header = vec!["NAME", "CPU(cores)", "MEMORY(bytes)"];
            if a.all_namespaces {
                header.insert(0, "NAMESPACE");
            }
            rows.push(header.into_iter().map(String::from).collect());
            for p in &list.items {
                let mut row = vec![
                    p.name.clone(),
                    cpu(p.cpu_millicores()),
                    memory(p.memory_bytes()),
                ];
                if a.all_namespaces {
                    row.insert(0, p.namespace.clone());
                }
                rows.push(row);
            }
            (list.unavailable, a.no_headers, "No resources found")
        }
    };
    for u in &unavailable {
        eprintln!("warning: no metrics from node {u}");
    }
    if rows.len() == 1 {
        writeln!(out, "{empty}")?;
        return Ok(());
    }
    if no_headers {
        rows.remove(0);
    }
    out.write_all(TabWriter::new().format(&rows).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_as_kubectl_does() {
        assert_eq!(cpu(250), "250m");
        assert_eq!(memory(5 * 1024 * 1024 + 10), "5Mi");
        assert_eq!(percent(250, 1000), "25%");
        assert_eq!(percent(1, 0), "<unknown>");
    }
}
