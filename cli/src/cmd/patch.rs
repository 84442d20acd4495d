//! `rkube patch`: change an object with a strategic merge patch (the default, as in kubectl), a
//! JSON merge patch or a JSON patch, given inline (`-p`, JSON or YAML) or in a file
//! (`--patch-file`), on the object or its status (`--subresource=status`).

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use rkube_proto::api::PatchType;
use serde::Deserialize;
use serde_json::Value;

use crate::manifest::targets::{self, Failures, Selection, Target};
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct PatchArgs {
    /// `KIND NAME` or `KIND/NAME`.
    pub args: Vec<String>,
    /// The patch, as JSON or YAML.
    #[arg(short = 'p', long, value_name = "PATCH")]
    pub patch: Option<String>,
    /// A file holding the patch.
    #[arg(long, value_name = "FILE")]
    pub patch_file: Option<String>,
    /// The kind of patch: `strategic`, `merge` or `json`.
    #[arg(long = "type", value_enum, default_value = "strategic")]
    pub patch_type: Kind,
    /// Patch this subresource instead of the object (`status`).
    #[arg(long, value_name = "NAME")]
    pub subresource: Option<String>,
    /// Files, directories or `-` (stdin) naming the objects to patch.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
    /// Process the directories named by -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Strategic,
    Merge,
    Json,
}

impl Kind {
    fn wire(self) -> PatchType {
        match self {
            Kind::Strategic => PatchType::Strategic,
            Kind::Merge => PatchType::Merge,
            Kind::Json => PatchType::Json,
        }
    }
}

pub async fn run(ctx: &Ctx, args: PatchArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let text = match (&args.patch, &args.patch_file) {
        (Some(p), None) => p.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| anyhow!("unable to read patch file {f}: {e}"))?
        }
        (Some(_), Some(_)) => bail!("--patch and --patch-file are mutually exclusive"),
        (None, None) => {
            bail!("must specify --patch or --patch-file containing the contents of the patch")
        }
    };
    let body = patch_body(&text, args.patch_type)?;
    let status = match args.subresource.as_deref() {
        None => false,
        Some("status") => true,
        Some(other) => bail!("invalid subresource value: {other:?}. Must be one of [status]"),
    };
    if args.args.is_empty() && args.filename.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    }
    let selection = Selection {
        args: &args.args,
        filenames: &args.filename,
        recursive: args.recursive,
        ..Default::default()
    };
    let mut failures = Failures::default();
    for item in targets::select(ctx, &selection).await? {
        let result = match item {
            Ok(target) => patch_one(ctx, &target, args.patch_type, &body, status).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(line) => writeln!(out, "{line}")?,
            Err(e) => failures.record(None, e)?,
        }
    }
    failures.finish()
}

async fn patch_one(
    ctx: &Ctx,
    target: &Target,
    kind: Kind,
    body: &[u8],
    status: bool,
) -> Result<String> {
    let before = ctx
        .client
        .get(&target.kind(), &target.namespace, &target.name)
        .await?;
    let after = ctx
        .client
        .patch(
            &target.kind(),
            &target.namespace,
            &target.name,
            kind.wire(),
            body,
            status,
        )
        .await?;
    let unchanged = before == after;
    Ok(format!(
        "{} patched{}",
        target.display(),
        if unchanged { " (no change)" } else { "" }
    ))
}

/// The patch as JSON bytes: JSON as given, YAML converted. A JSON patch is a list of
/// operations; the other kinds are objects.
fn patch_body(text: &str, kind: Kind) -> Result<Vec<u8>> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(json_err) => {
            let de = yaml_serde::Deserializer::from_str(text);
            Value::deserialize(de).map_err(|_| anyhow!("unable to parse {text:?}: {json_err}"))?
        }
    };
    match (kind, &value) {
        (Kind::Json, Value::Array(_)) | (Kind::Strategic | Kind::Merge, Value::Object(_)) => {}
        (Kind::Json, _) => {
            bail!("unable to parse the patch: a json patch must be a list of operations")
        }
        _ => bail!(
            "unable to parse the patch: a {} patch must be an object",
            if kind == Kind::Merge {
                "merge"
            } else {
                "strategic merge"
            }
        ),
    }
    Ok(serde_json::to_vec(&value)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(text: &str, kind: Kind) -> Result<Value> {
        Ok(serde_json::from_slice(&patch_body(text, kind)?)?)
    }

    #[test]
    fn patches_are_json_or_yaml() {
        assert_eq!(
            parsed(r#"{"spec":{"replicas":2}}"#, Kind::Strategic).unwrap(),
            json!({"spec": {"replicas": 2}})
        );
        assert_eq!(
            parsed("spec:\n  replicas: 2\n", Kind::Merge).unwrap(),
            json!({"spec": {"replicas": 2}})
        );
        assert_eq!(
            parsed(
                r#"[{"op": "replace", "path": "/spec/replicas", "value": 4}]"#,
                Kind::Json
            )
            .unwrap(),
            json!([{"op": "replace", "path": "/spec/replicas", "value": 4}])
        );
        assert_eq!(
            parsed(r#"{"spec": 1}"#, Kind::Json)
                .unwrap_err()
                .to_string(),
            "unable to parse the patch: a json patch must be a list of operations"
        );
        assert_eq!(
            parsed("[1]", Kind::Merge).unwrap_err().to_string(),
            "unable to parse the patch: a merge patch must be an object"
        );
        assert!(parsed("{\"spec\": ", Kind::Strategic)
            .unwrap_err()
            .to_string()
            .starts_with("unable to parse \"{\\\"spec\\\": \": EOF while parsing"));
    }
}
