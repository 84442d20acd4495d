//! `rkube label` and `rkube annotate`: set (`KEY=VALUE`) and remove (`KEY-`) labels or
//! annotations with a merge patch that names only the changed keys. Changing an existing key
//! needs `--overwrite`; `--resource-version` makes the change conditional.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use rkube_proto::api::PatchType;
use serde_json::{json, Map, Value};

use crate::manifest::targets::{self, Failures, Selection, Target};
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// `KIND NAME...` or `KIND/NAME...` (or `KIND` with -l / --all), then `KEY=VALUE` to set
    /// and `KEY-` to remove.
    pub args: Vec<String>,
    /// Allow changing the value of an existing key.
    #[arg(long)]
    pub overwrite: bool,
    /// Change the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Change every object of the given kinds in the namespace.
    #[arg(long)]
    pub all: bool,
    /// With -l or --all: in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Change the object only if this is still its resourceVersion.
    #[arg(long)]
    pub resource_version: Option<String>,
    /// Files, directories or `-` (stdin) naming the objects to change.
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<String>,
    /// Process the directories named by -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// Which metadata map the command changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Labels,
    Annotations,
}

impl Which {
    /// The metadata field.
    fn field(self) -> &'static str {
        match self {
            Which::Labels => "labels",
            Which::Annotations => "annotations",
        }
    }

    /// `label` / `annotation`, as messages say.
    fn noun(self) -> &'static str {
        match self {
            Which::Labels => "label",
            Which::Annotations => "annotation",
        }
    }
}

/// The requested changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

pub async fn run(
    ctx: &Ctx,
    args: LabelArgs,
    which: Which,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let (resources, changes) = parse_args(&args.args, which)?;
    if resources.is_empty() && args.filename.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    }
    let selection = Selection {
        args: &resources,
        filenames: &args.filename,
        recursive: args.recursive,
        selector: args.selector.as_deref(),
        all: args.all,
        all_namespaces: args.all_namespaces,
    };
    let mut failures = Failures::default();
    for item in targets::select(ctx, &selection).await? {
        let result = match item {
            Ok(target) => change(ctx, &target, &changes, which, &args, out).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failures.record(None, e)?;
        }
    }
    failures.finish()
}

async fn change(
    ctx: &Ctx,
    target: &Target,
    changes: &Changes,
    which: Which,
    args: &LabelArgs,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let obj = ctx
        .client
        .get(&target.kind(), &target.namespace, &target.name)
        .await?;
    let empty = Map::new();
    let current = obj["metadata"][which.field()].as_object().unwrap_or(&empty);
    let update = compute(current, changes, args.overwrite, which)?;
    for key in &update.missing {
        writeln!(out, "{} {key:?} not found.", which.noun())?;
    }
    let changed = !update.patch.is_empty();
    if changed || args.resource_version.is_some() {
        let mut meta = json!({ which.field(): Value::Object(update.patch) });
        if let Some(rv) = &args.resource_version {
            meta["resourceVersion"] = json!(rv);
        }
        let body = serde_json::to_vec(&json!({ "metadata": meta }))?;
        ctx.client
            .patch(
                &target.kind(),
                &target.namespace,
                &target.name,
                PatchType::Merge,
                &body,
                false,
            )
            .await?;
    }
    let verb = match (which, changed) {
        (Which::Labels, true) => "labeled",
        (Which::Labels, false) => "not labeled",
        // kubectl says "annotated" whether or not anything changed.
        (Which::Annotations, _) => "annotated",
    };
    writeln!(out, "{} {verb}", target.display())?;
    Ok(())
}

/// Split the arguments into resources and changes, as kubectl does: the first `KEY=VALUE` or
/// `KEY-` starts the changes, and every argument after it must be one.
pub fn parse_args(args: &[String], which: Which) -> Result<(Vec<String>, Changes)> {
    let is_change =
        |s: &str| (s.contains('=') && !s.starts_with('=')) || (s.ends_with('-') && s != "-");
    let first = args.iter().position(|a| is_change(a)).unwrap_or(args.len());
    let (resources, pairs) = args.split_at(first);
    let mut changes = Changes::default();
    for p in pairs {
        if !is_change(p) {
            bail!(
                "all resources must be specified before {} changes: {p}",
                which.noun()
            );
        }
        if let Some((key, value)) = p.split_once('=') {
            if let Some(why) = invalid_key(key) {
                bail!("invalid {} spec: {p}, {why}", which.noun());
            }
            if which == Which::Labels {
                if let Some(why) = invalid_label_value(value) {
                    bail!("invalid label value: {p:?}: {why}");
                }
            }
            changes.set.push((key.to_string(), value.to_string()));
        } else {
            let key = p.strip_suffix('-').expect("a removal ends with '-'");
            if let Some(why) = invalid_key(key) {
                bail!("invalid {} spec: {p}, {why}", which.noun());
            }
            changes.remove.push(key.to_string());
        }
    }
    if changes.set.is_empty() && changes.remove.is_empty() {
        bail!("at least one {} update is required", which.noun());
    }
    if let Some((k, _)) = changes.set.iter().find(|(k, _)| changes.remove.contains(k)) {
        bail!(
            "can not both modify and remove the {} {k:?} in the same command",
            which.noun()
        );
    }
    Ok((resources.to_vec(), changes))
}

/// The outcome of applying changes to a label or annotation map.
#[derive(Debug, PartialEq)]
pub struct Update {
    /// The merge patch of the map: changed keys with their value, removed keys with null.
    pub patch: Map<String, Value>,
    /// Keys asked to be removed that are not there.
    pub missing: Vec<String>,
}

/// Apply `changes` to `current`. Without `overwrite`, giving an existing key another value fails
/// with kubectl's message.
pub fn compute(
    current: &Map<String, Value>,
    changes: &Changes,
    overwrite: bool,
    which: Which,
) -> Result<Update> {
    if !overwrite {
        let conflicts: Vec<String> = changes
            .set
            .iter()
            .filter_map(|(k, v)| {
                let cur = current.get(k)?.as_str().unwrap_or("");
                (cur != v)
                    .then(|| format!("'{k}' already has a value ({cur}), and --overwrite is false"))
            })
            .collect();
        match conflicts.as_slice() {
            [] => {}
            [one] => return Err(anyhow!("{one}")),
            many => return Err(anyhow!("[{}]", many.join(", "))),
        }
    }
    let mut patch = Map::new();
    for (k, v) in &changes.set {
        if current.get(k).and_then(Value::as_str) != Some(v.as_str()) {
            patch.insert(k.clone(), json!(v));
        }
    }
    let mut missing = Vec::new();
    for k in &changes.remove {
        if current.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        } else if which == Which::Labels {
            missing.push(k.clone());
        }
    }
    Ok(Update { patch, missing })
}

/// Why `key` is not a qualified name (`[prefix/]name`), if it is not.
fn invalid_key(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label_ok) {
            return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')".into());
        }
    }
    if name.is_empty() || name.len() > 63 || !name_chars_ok(name) {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc'), with at most 63 characters".into());
    }
    None
}

fn name_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn invalid_label_value(v: &str) -> Option<String> {
    if v.is_empty() || (v.len() <= 63 && name_chars_ok(v)) {
        return None;
    }
    Some("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345'), with at most 63 characters".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn changes(set: &[(&str, &str)], remove: &[&str]) -> Changes {
        Changes {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remove: strings(remove),
        }
    }

    #[test]
    fn arguments_split_into_resources_and_changes() {
        for (args, which, resources, want) in [
            (
                vec!["pod", "kubia", "env=prod"],
                Which::Labels,
                vec!["pod", "kubia"],
                changes(&[("env", "prod")], &[]),
            ),
            (
                vec!["pod/kubia", "env-", "tier=web"],
                Which::Labels,
                vec!["pod/kubia"],
                changes(&[("tier", "web")], &["env"]),
            ),
            (
                vec!["pods", "a", "b", "app.kubernetes.io/name=x"],
                Which::Labels,
                vec!["pods", "a", "b"],
                changes(&[("app.kubernetes.io/name", "x")], &[]),
            ),
            (
                vec!["pods", "empty="],
                Which::Labels,
                vec!["pods"],
                changes(&[("empty", "")], &[]),
            ),
            (
                vec!["deploy/kubia", "note=free text: anything, even = signs"],
                Which::Annotations,
                vec!["deploy/kubia"],
                changes(&[("note", "free text: anything, even = signs")], &[]),
            ),
            (
                vec!["env=prod"],
                Which::Labels,
                vec![],
                changes(&[("env", "prod")], &[]),
            ),
        ] {
            let (r, c) =
                parse_args(&strings(&args), which).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!((r, c), (strings(&resources), want), "{args:?}");
        }
    }

    #[test]
    fn argument_errors() {
        for (args, which, message) in [
            (
                vec!["pod", "kubia"],
                Which::Labels,
                "at least one label update is required",
            ),
            (
                vec!["pod", "kubia"],
                Which::Annotations,
                "at least one annotation update is required",
            ),
            (
                vec!["pod", "a=b", "kubia"],
                Which::Labels,
                "all resources must be specified before label changes: kubia",
            ),
            (
                vec!["pod", "kubia", "a=b", "a-"],
                Which::Labels,
                "can not both modify and remove the label \"a\" in the same command",
            ),
            (
                vec!["pod", "kubia", "bad key=x"],
                Which::Labels,
                "invalid label spec: bad key=x, name part must consist of",
            ),
            (
                vec!["pod", "kubia", "Example.com/x=1"],
                Which::Labels,
                "invalid label spec: Example.com/x=1, prefix part",
            ),
            (
                vec!["pod", "kubia", "env=not valid"],
                Which::Labels,
                "invalid label value: \"env=not valid\": a valid label must be",
            ),
        ] {
            let err = parse_args(&strings(&args), which).unwrap_err().to_string();
            assert!(err.starts_with(message), "{args:?}: {err}");
        }
        // Annotation values are free text.
        assert!(parse_args(
            &strings(&["pod", "kubia", "env=not valid"]),
            Which::Annotations
        )
        .is_ok());
    }

    #[test]
    fn overwrite_rules_and_patches() {
        let current: Map<String, Value> =
            serde_json::from_value(json!({"env": "prod", "tier": "web"})).unwrap();
        // A new key, the same value again, and a removal: fine without --overwrite.
        let u = compute(
            &current,
            &changes(&[("app", "kubia"), ("env", "prod")], &["tier", "gone"]),
            false,
            Which::Labels,
        )
        .unwrap();
        assert_eq!(
            Value::Object(u.patch),
            json!({"app": "kubia", "tier": null})
        );
        assert_eq!(u.missing, vec!["gone"]);
        // Another value needs --overwrite.
        let err = compute(
            &current,
            &changes(&[("env", "dev")], &[]),
            false,
            Which::Labels,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "'env' already has a value (prod), and --overwrite is false"
        );
        let err = compute(
            &current,
            &changes(&[("env", "dev"), ("tier", "db")], &[]),
            false,
            Which::Annotations,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "['env' already has a value (prod), and --overwrite is false, 'tier' already has a value (web), and --overwrite is false]"
        );
        let u = compute(
            &current,
            &changes(&[("env", "dev")], &[]),
            true,
            Which::Labels,
        )
        .unwrap();
        assert_eq!(Value::Object(u.patch), json!({"env": "dev"}));
        // Nothing to change.
        let u = compute(
            &current,
            &changes(&[("env", "prod")], &[]),
            false,
            Which::Labels,
        )
        .unwrap();
        assert!(u.patch.is_empty());
        // Missing keys are reported for labels only.
        let u = compute(
            &current,
            &changes(&[], &["gone"]),
            false,
            Which::Annotations,
        )
        .unwrap();
        assert!(u.missing.is_empty());
    }
}
