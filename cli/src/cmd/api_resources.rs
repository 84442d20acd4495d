//! `rkube api-resources`: the kinds the server serves, from its discovery, as kubectl's
//! `NAME SHORTNAMES APIVERSION NAMESPACED KIND` table or as `-o name` resource names.

use std::io::Write;

use anyhow::{bail, Result};
use rkube_proto::api::ApiResource;
use tabwriter::TabWriter;

use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct ApiResourcesArgs {
    /// Only namespaced (true) or only cluster-scoped (false) kinds.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub namespaced: Option<bool>,
    /// Only kinds in this API group ("" for the core group).
    #[arg(long)]
    pub api_group: Option<String>,
    /// Sort by `name` or `kind` (default: by group, then name).
    #[arg(long)]
    pub sort_by: Option<String>,
    /// Output format: `name` (or the default table, or `wide`).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
}

/// A tabwriter laid out like kubectl's tables (Go: minwidth 6, padding 3, where the padding
/// counts towards the minimum width).
pub(crate) fn table_writer<W: Write>(out: W) -> TabWriter<W> {
    TabWriter::new(out).minwidth(3).padding(3)
}

/// The filtered, sorted kinds.
pub fn select(resources: &[ApiResource], a: &ApiResourcesArgs) -> Result<Vec<ApiResource>> {
    let mut list: Vec<ApiResource> = resources
        .iter()
        .filter(|r| a.namespaced.is_none_or(|n| r.namespaced == n))
        .filter(|r| a.api_group.as_ref().is_none_or(|g| &r.group == g))
        .cloned()
        .collect();
    let key = |r: &ApiResource| -> String {
        match a.sort_by.as_deref() {
            Some("name") => r.name.clone(),
            Some("kind") => r.kind.clone(),
            _ => r.group.clone(),
        }
    };
    if let Some(other) = a
        .sort_by
        .as_deref()
        .filter(|s| !matches!(*s, "name" | "kind"))
    {
        bail!("--sort-by accepts only name or kind, not {other:?}");
    }
    list.sort_by(|x, y| key(x).cmp(&key(y)).then_with(|| x.name.cmp(&y.name)));
    Ok(list)
}

/// Print the kinds in the requested format.
pub fn print(
    list: &[ApiResource],
    a: &ApiResourcesArgs,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    match a.output.as_deref().unwrap_or("") {
        "name" => {
            for r in list {
                if r.group.is_empty() {
                    writeln!(out, "{}", r.name)?;
                } else {
                    writeln!(out, "{}.{}", r.name, r.group)?;
                }
            }
        }
        "" | "wide" => {
            let mut tw = table_writer(Vec::new());
            if !a.no_headers {
                writeln!(tw, "NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND")?;
            }
            for r in list {
                let api_version = if r.group.is_empty() {
                    r.version.clone()
                } else {
                    format!("{}/{}", r.group, r.version)
                };
                writeln!(
                    tw,
                    "{}\t{}\t{api_version}\t{}\t{}",
                    r.name,
                    r.short_names.join(","),
                    r.namespaced,
                    r.kind
                )?;
            }
            out.write_all(&tw.into_inner()?)?;
        }
        other => bail!("--output {other} is not available; use name or wide"),
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, a: ApiResourcesArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let list = select(ctx.resources().await?, &a)?;
    print(&list, &a, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: ApiResourcesArgs,
    }

    fn res(name: &str, short: &[&str], group: &str, kind: &str, namespaced: bool) -> ApiResource {
        ApiResource {
            name: name.into(),
            singular_name: kind.to_lowercase(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespaced,
            has_status: true,
        }
    }

    fn output(args: &[&str]) -> String {
        let a = Cli::parse_from(std::iter::once("api-resources").chain(args.iter().copied())).a;
        let all = vec![
            res("deployments", &["deploy"], "apps", "Deployment", true),
            res("pods", &["po"], "", "Pod", true),
            res("nodes", &["no"], "", "Node", false),
            res("secrets", &[], "", "Secret", true),
        ];
        let mut out = Vec::new();
        print(&select(&all, &a).unwrap(), &a, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_like_kubectls() {
        assert_eq!(
            output(&[]),
            "NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND
nodes         no           v1           false        Node
pods          po           v1           true         Pod
secrets                    v1           true         Secret
deployments   deploy       apps/v1      true         Deployment
"
        );
        assert_eq!(output(&["--namespaced=false", "-o", "name"]), "nodes\n");
        assert_eq!(
            output(&["--namespaced", "--sort-by=kind", "-o", "name"]),
            "deployments.apps\npods\nsecrets\n"
        );
        assert_eq!(
            output(&["--api-group=apps", "--no-headers"]),
            "deployments   deploy   apps/v1   true   Deployment\n"
        );
    }
}
