//! `rkube edit`: open an object in `$KUBE_EDITOR`, `$EDITOR` or `vi` (run as
//! `sh -c "$EDITOR <file>"`, as kubectl does for editors with arguments), then update it with
//! what was saved, conditional on the resourceVersion that was read.
//!
//! Unlike kubectl, a file that fails to parse or to save is not reopened in the editor: the
//! command fails and says where the file with the changes was kept.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::cmd::create::{to_json, to_yaml};
use crate::manifest::targets::{self, Failures, Selection, Target};
use crate::manifest::{self};
use crate::Ctx;

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving, the file is kept
# and its path printed.
#
";

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// `KIND NAME...` or `KIND/NAME...`.
    pub args: Vec<String>,
    /// The format to edit in: `yaml` or `json`.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: Format,
    /// Files, directories or `-` (stdin) naming the objects to edit.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

pub async fn run(ctx: &Ctx, args: EditArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    if args.args.is_empty() && args.filename.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    }
    let selection = Selection {
        args: &args.args,
        filenames: &args.filename,
        ..Default::default()
    };
    let mut failures = Failures::default();
    for item in targets::select(ctx, &selection).await? {
        let result = match item {
            Ok(target) => edit(ctx, &target, args.output).await,
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

/// Edit one object; the line to print when it changed.
async fn edit(ctx: &Ctx, target: &Target, format: Format) -> Result<Option<String>> {
    let original = ctx
        .client
        .get(&target.kind(), &target.namespace, &target.name)
        .await?;
    let body = match format {
        Format::Yaml => to_yaml(&original)?,
        Format::Json => to_json(&original)? + "\n",
    };
    let text = format!("{HEADER}{body}");
    let extension = match format {
        Format::Yaml => ".yaml",
        Format::Json => ".json",
    };
    let file = tempfile::Builder::new()
        .prefix("rkube-edit-")
        .suffix(extension)
        .tempfile()
        .context("cannot create a temporary file to edit")?;
    std::fs::write(file.path(), &text)
        .with_context(|| format!("cannot write {}", file.path().display()))?;
    run_editor(file.path())?;
    let edited = std::fs::read_to_string(file.path())
        .with_context(|| format!("cannot read {}", file.path().display()))?;

    let edited_text = strip_comments(&edited);
    if edited_text.trim().is_empty() {
        eprintln!("Edit cancelled, saved file was empty.");
        return Ok(None);
    }
    if edited_text == strip_comments(&text) {
        eprintln!("Edit cancelled, no changes made.");
        return Ok(None);
    }
    // From here on, a failure keeps the file so the changes are not lost.
    let (file, path) = file.keep().context("cannot keep the edited file")?;
    drop(file);
    let path_text = path.display().to_string();
    let kept = |e: anyhow::Error| {
        anyhow!("{e:#}\nA copy of your changes has been stored to \"{path_text}\"\nerror: Edit cancelled, no valid changes were saved.")
    };
    let mut updated = parse_edited(&path_text, &edited_text, &original).map_err(kept)?;
    if updated == original {
        let _ = std::fs::remove_file(&path);
        eprintln!("Edit cancelled, no changes made.");
        return Ok(None);
    }
    if updated["metadata"]["resourceVersion"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        updated["metadata"]["resourceVersion"] = original["metadata"]["resourceVersion"].clone();
    }
    ctx.client
        .update(&updated)
        .await
        .map_err(|e| kept(e.into()))?;
    let _ = std::fs::remove_file(&path);
    Ok(Some(format!("{} edited", target.display())))
}

/// Run the editor on `path` and wait for it.
fn run_editor(path: &Path) -> Result<()> {
    let editor = ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    let command = format!("{editor} {}", shell_quote(&path.display().to_string()));
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .map_err(|e| anyhow!("error launching editor {editor:?}: {e}"))?;
    if !status.success() {
        bail!("there was a problem with the editor {editor:?} ({status})");
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The text without the lines starting with `#` (kubectl's comments; YAML comments elsewhere
/// in a line are the parser's business).
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The edited object, which must still be the object that was opened.
fn parse_edited(path: &str, text: &str, original: &Value) -> Result<Value> {
    let mut docs = manifest::parse(path, text)?;
    if docs.len() != 1 {
        bail!(
            "the edited file {path} must hold exactly one object, found {}",
            docs.len()
        );
    }
    let edited = docs.remove(0).value;
    for (field, what) in [
        ("/kind", "kind"),
        ("/apiVersion", "apiVersion"),
        ("/metadata/name", "name"),
        ("/metadata/namespace", "namespace"),
    ] {
        if edited.pointer(field) != original.pointer(field) {
            bail!(
                "the {what} of the object cannot be changed by edit (was {}, now {})",
                original.pointer(field).unwrap_or(&Value::Null),
                edited.pointer(field).unwrap_or(&Value::Null)
            );
        }
    }
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn comments_are_stripped_and_edits_checked() {
        assert_eq!(
            strip_comments("# a\nkind: Pod\n  # b\nx: 1 # kept\n"),
            "kind: Pod\nx: 1 # kept\n"
        );
        let original = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}});
        let ok = parse_edited("f.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\n  labels: {a: b}\n", &original).unwrap();
        assert_eq!(ok["metadata"]["labels"], json!({"a": "b"}));
        let renamed = parse_edited(
            "f.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: q\n  namespace: default\n",
            &original,
        )
        .unwrap_err();
        assert_eq!(
            renamed.to_string(),
            "the name of the object cannot be changed by edit (was \"p\", now \"q\")"
        );
        let broken = parse_edited(
            "/tmp/f.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n namespace: x\n",
            &original,
        )
        .unwrap_err();
        assert!(
            broken
                .to_string()
                .starts_with("error parsing /tmp/f.yaml (document 1): "),
            "{broken}"
        );
        assert_eq!(shell_quote("/tmp/a'b"), r"'/tmp/a'\''b'");
    }
}
