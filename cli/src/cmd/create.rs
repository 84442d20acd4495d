//! `rkube create`: the objects of manifests (`-f`), failing for those that exist, and the
//! generators `create namespace`, `create configmap` and `create secret generic`, which can
//! print their object instead of creating it (`--dry-run=client -o yaml`).

pub mod generators;

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use self::generators::{DataSources, Owner};
use crate::cmd::apply::merge;
use crate::context::display_name;
use crate::manifest::targets::{self, Failures};
use crate::manifest::{self, Document};
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub what: Option<CreateCommand>,
    /// Files, directories (their .yaml, .yml and .json files) or `-` (stdin) holding the
    /// objects to create.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
    /// Process the directories named by -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Store the configuration in the last-applied-configuration annotation, so that
    /// `rkube apply` can later update the object as if it had created it.
    #[arg(long, global = true)]
    pub save_config: bool,
    /// `client`: only print the object that would be created; `none`: create it.
    #[arg(long, global = true, value_enum, value_name = "STRATEGY", default_value = "none", num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: DryRun,
    /// Print the created object: `yaml`, `json`, or `name` (kind/name).
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    None,
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Yaml,
    Json,
    Name,
}

#[derive(Debug, clap::Subcommand)]
pub enum CreateCommand {
    /// Create a namespace with the specified name.
    #[command(visible_alias = "ns")]
    Namespace { name: String },
    /// Create a config map from literal values, files, directories or env files.
    #[command(visible_alias = "cm")]
    Configmap(ConfigMapArgs),
    /// Create a secret.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, clap::Args)]
pub struct ConfigMapArgs {
    pub name: String,
    #[command(flatten)]
    pub sources: DataSources,
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Create a secret from literal values, files, directories or env files.
    Generic(SecretArgs),
}

#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    pub name: String,
    #[command(flatten)]
    pub sources: DataSources,
    /// The type of secret to create (default Opaque, set by the server).
    #[arg(long = "type", value_name = "TYPE")]
    pub secret_type: Option<String>,
}

pub async fn run(ctx: &Ctx, args: CreateArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let printer = Printer {
        dry_run: args.dry_run == DryRun::Client,
        output: args.output,
        printed: 0,
    };
    match &args.what {
        Some(what) => {
            if !args.filename.is_empty() {
                bail!("-f cannot be combined with `create {}`", command_name(what));
            }
            let obj = generate(ctx, what)?;
            let obj = if args.save_config {
                merge::with_last_applied(&obj)
            } else {
                obj
            };
            let mut printer = printer;
            create_and_print(ctx, obj, &mut printer, out).await
        }
        None => from_files(ctx, &args, printer, out).await,
    }
}

fn command_name(what: &CreateCommand) -> &'static str {
    match what {
        CreateCommand::Namespace { .. } => "namespace",
        CreateCommand::Configmap(_) => "configmap",
        CreateCommand::Secret(_) => "secret",
    }
}

/// The object a generator builds. Its namespace is set only when -n was given, as kubectl does.
fn generate(ctx: &Ctx, what: &CreateCommand) -> Result<Value> {
    let namespace = ctx.explicit_namespace.then_some(ctx.namespace.as_str());
    Ok(match what {
        CreateCommand::Namespace { name } => generators::namespace(name),
        CreateCommand::Configmap(a) => {
            let data = a.sources.collect(Owner {
                kind: "ConfigMap",
                name: &a.name,
            })?;
            generators::configmap(&a.name, namespace, data)
        }
        CreateCommand::Secret(SecretCommand::Generic(a)) => {
            let data = a.sources.collect(Owner {
                kind: "Secret",
                name: &a.name,
            })?;
            generators::secret(&a.name, namespace, a.secret_type.as_deref(), data)
        }
    })
}

async fn from_files(
    ctx: &Ctx,
    args: &CreateArgs,
    mut printer: Printer,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    if args.filename.is_empty() {
        bail!("must specify one of -f or a generator (namespace, configmap, secret generic)");
    }
    let docs = manifest::read(&args.filename, args.recursive)?;
    if docs.is_empty() {
        bail!("no objects passed to create");
    }
    ctx.resources().await?;
    let mut failures = Failures::default();
    for doc in &docs {
        let result = async {
            let obj = with_namespace(ctx, doc).await?;
            let obj = if args.save_config {
                merge::with_last_applied(&obj)
            } else {
                obj
            };
            create_and_print(ctx, obj, &mut printer, out).await
        }
        .await;
        if let Err(e) = result {
            failures.record(Some(&doc.origin()), e)?;
        }
    }
    failures.finish()
}

/// The manifest with the namespace it will be created in (none for cluster-scoped kinds).
async fn with_namespace(ctx: &Ctx, doc: &Document) -> Result<Value> {
    let target = targets::target_of(ctx, doc).await?;
    let mut obj = doc.value.clone();
    if target.resource.namespaced {
        obj["metadata"]["namespace"] = target.namespace.into();
    } else if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("namespace");
    }
    Ok(obj)
}

/// How created objects are shown.
struct Printer {
    dry_run: bool,
    output: Option<Output>,
    /// Objects printed so far (YAML documents after the first start with `---`).
    printed: usize,
}

async fn create_and_print(
    ctx: &Ctx,
    obj: Value,
    printer: &mut Printer,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let resource =
        targets::resource_of(ctx, api_version, obj["kind"].as_str().unwrap_or("")).await?;
    let namespace = match obj["metadata"]["namespace"].as_str() {
        _ if !resource.namespaced => String::new(),
        Some(ns) => ns.to_string(),
        None => ctx.namespace.clone(),
    };
    let shown = if printer.dry_run {
        obj
    } else {
        ctx.client.create(&obj, &namespace).await?
    };
    let name = shown["metadata"]["name"].as_str().unwrap_or("");
    let display = display_name(&resource, name);
    match printer.output {
        None => writeln!(
            out,
            "{display} created{}",
            if printer.dry_run { " (dry run)" } else { "" }
        )?,
        Some(Output::Name) => writeln!(out, "{display}")?,
        Some(Output::Yaml) => {
            if printer.printed > 0 {
                writeln!(out, "---")?;
            }
            write!(out, "{}", to_yaml(&shown)?)?;
        }
        Some(Output::Json) => writeln!(out, "{}", to_json(&shown)?)?,
    }
    printer.printed += 1;
    Ok(())
}

/// An object as YAML, keys sorted as kubectl prints them.
pub fn to_yaml(obj: &Value) -> Result<String> {
    yaml_serde::to_string(obj).context("cannot encode the object as YAML")
}

/// An object as JSON indented by four spaces, as kubectl prints it.
pub fn to_json(obj: &Value) -> Result<String> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    obj.serialize(&mut ser)
        .context("cannot encode the object as JSON")?;
    Ok(String::from_utf8(buf).expect("JSON is UTF-8"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        global: crate::GlobalArgs,
        #[command(subcommand)]
        command: crate::Command,
    }

    fn parse(line: &str) -> CreateArgs {
        let cli =
            Cli::try_parse_from(line.split_whitespace()).unwrap_or_else(|e| panic!("{line}: {e}"));
        match cli.command {
            crate::Command::Create(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// Run a generator with --dry-run=client (no server is contacted) and return its output.
    async fn dry_run(line: &str, namespace: Option<&str>) -> String {
        let args = parse(line);
        assert_eq!(args.dry_run, DryRun::Client, "{line}");
        let what = args.what.expect("a generator");
        let ctx = offline_ctx(namespace);
        let obj = generate(&ctx, &what).unwrap();
        let obj = if args.save_config {
            merge::with_last_applied(&obj)
        } else {
            obj
        };
        match args.output {
            Some(Output::Yaml) => to_yaml(&obj).unwrap(),
            Some(Output::Json) => to_json(&obj).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// A context whose client points nowhere: generators never call it.
    fn offline_ctx(namespace: Option<&str>) -> Ctx {
        let config = rkube_client::ClientConfig {
            servers: vec!["127.0.0.1:1".into()],
            ca_pem: String::new(),
            tls_server_name: "rkube-server".into(),
            token: None,
            client_cert_pem: None,
            client_key_pem: None,
            namespace: "default".into(),
        };
        let mut ctx = Ctx::with_client(
            rkube_client::Client::new(config).unwrap(),
            namespace.unwrap_or("default"),
        );
        ctx.explicit_namespace = namespace.is_some();
        ctx
    }

    #[tokio::test]
    async fn dry_run_output_of_the_generators() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, "server {\n  listen 80;\n}\n").unwrap();
        let env = dir.path().join("app.env");
        std::fs::write(&env, "MODE=prod\nDEBUG=0\n").unwrap();
        let cases = [
            (
                "rkube create configmap fortune --from-literal=sleep-interval=25 --dry-run=client -o yaml".to_string(),
                None,
                "apiVersion: v1\ndata:\n  sleep-interval: '25'\nkind: ConfigMap\nmetadata:\n  name: fortune\n".to_string(),
            ),
            (
                format!("rkube create cm cfg --from-file={} --from-file=other={} -o yaml --dry-run=client", file.display(), file.display()),
                Some("team"),
                "apiVersion: v1\ndata:\n  nginx.conf: |\n    server {\n      listen 80;\n    }\n  other: |\n    server {\n      listen 80;\n    }\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: team\n".to_string(),
            ),
            (
                format!("rkube create configmap envs --from-env-file={} --dry-run -o yaml", env.display()),
                None,
                "apiVersion: v1\ndata:\n  DEBUG: '0'\n  MODE: prod\nkind: ConfigMap\nmetadata:\n  name: envs\n".to_string(),
            ),
            (
                "rkube create secret generic creds --from-literal=user=admin --from-literal=pass=s3cr3t --dry-run=client -o yaml".to_string(),
                None,
                "apiVersion: v1\ndata:\n  pass: czNjcjN0\n  user: YWRtaW4=\nkind: Secret\nmetadata:\n  name: creds\n".to_string(),
            ),
            (
                "rkube create secret generic tls --type=kubernetes.io/tls --from-literal=tls.crt=x --dry-run=client -o yaml".to_string(),
                None,
                "apiVersion: v1\ndata:\n  tls.crt: eA==\nkind: Secret\nmetadata:\n  name: tls\ntype: kubernetes.io/tls\n".to_string(),
            ),
            (
                "rkube create namespace staging --dry-run=client -o yaml".to_string(),
                None,
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: staging\nspec: {}\nstatus: {}\n".to_string(),
            ),
            (
                "rkube create ns staging --dry-run=client -o json".to_string(),
                None,
                "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"Namespace\",\n    \"metadata\": {\n        \"name\": \"staging\"\n    },\n    \"spec\": {},\n    \"status\": {}\n}".to_string(),
            ),
        ];
        for (line, namespace, want) in cases {
            assert_eq!(dry_run(&line, namespace).await, want, "{line}");
        }
        let saved = dry_run(
            "rkube create cm c --from-literal=a=b --save-config --dry-run=client -o yaml",
            None,
        )
        .await;
        assert!(
            saved.contains("kubectl.kubernetes.io/last-applied-configuration"),
            "{saved}"
        );
    }

    #[test]
    fn flags_parse_like_kubectl() {
        let a = parse("rkube create -f a.yaml -f dir -R --save-config");
        assert_eq!(
            (a.filename.len(), a.recursive, a.save_config, a.dry_run),
            (2, true, true, DryRun::None)
        );
        assert!(a.what.is_none());
        let a = parse("rkube create secret generic s --from-file=k=f --from-env-file=e");
        let Some(CreateCommand::Secret(SecretCommand::Generic(s))) = a.what else {
            panic!()
        };
        assert_eq!(
            (
                s.name.as_str(),
                s.sources.from_file.len(),
                s.sources.from_env_file.len()
            ),
            ("s", 1, 1)
        );
        assert!(
            Cli::try_parse_from("rkube create configmap c --dry-run=server".split(' ')).is_err()
        );
    }
}
