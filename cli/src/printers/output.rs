//! The output formats of `-o`, and the machine-readable ones: `-o json` and `-o yaml` (one
//! object as itself, several as a `List`), and `-o custom-columns`.

use serde::Serialize;
use serde_json::{json, Value};

use super::jsonpath::{value_text, Template};
use super::Table;

/// An output format (`-o`).
#[derive(Debug, Clone)]
pub enum OutputFormat {
    /// kubectl's table for the kind (the default), with its extra columns if `wide`.
    Table {
        wide: bool,
    },
    Json,
    Yaml,
    /// `kind/name` per object.
    Name,
    JsonPath(Template),
    CustomColumns(Vec<CustomColumn>),
}

impl OutputFormat {
    /// Parse an `-o` value: `wide`, `json`, `yaml`, `name`, `jsonpath=TEMPLATE`,
    /// `custom-columns=SPEC`; empty for the table.
    pub fn parse(spec: &str) -> Result<OutputFormat, String> {
        let (name, arg) = match spec.split_once('=') {
            Some((n, a)) => (n, Some(a)),
            None => (spec, None),
        };
        let argument = |what: &str| {
            arg.filter(|a| !a.is_empty())
                .ok_or_else(|| format!("{what} format specified but no {what} given"))
        };
        Ok(match name {
            "" => OutputFormat::Table { wide: false },
            "wide" => OutputFormat::Table { wide: true },
            "json" => OutputFormat::Json,
            "yaml" => OutputFormat::Yaml,
            "name" => OutputFormat::Name,
            "jsonpath" => OutputFormat::JsonPath(Template::parse(argument("template")?)?),
            "custom-columns" => {
                OutputFormat::CustomColumns(parse_custom_columns(argument("custom-columns")?)?)
            }
            other => {
                return Err(format!(
                    "unable to match a printer suitable for the output format \"{other}\", \
                     allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"
                ))
            }
        })
    }
}

/// Several objects as kubectl wraps them: a `v1` `List`.
pub fn list(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": ""},
    })
}

/// JSON indented by four spaces, as kubectl prints it, with a final newline.
pub fn to_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    v.serialize(&mut ser)
        .expect("a JSON value always serializes");
    let mut text = String::from_utf8(buf).expect("serde_json writes UTF-8");
    text.push('\n');
    text
}

/// YAML, as kubectl prints it (keys sorted, lists not indented under their key).
pub fn to_yaml(v: &Value) -> anyhow::Result<String> {
    Ok(yaml_serde::to_string(v)?)
}

/// One column of `-o custom-columns=HEADER:PATH,...`.
#[derive(Debug, Clone)]
pub struct CustomColumn {
    pub header: String,
    pub path: Template,
}

/// Parse `NAME:.metadata.name,STATUS:.status.phase`.
pub fn parse_custom_columns(spec: &str) -> Result<Vec<CustomColumn>, String> {
    if spec.trim().is_empty() {
        return Err("custom-columns format specified but no custom columns given".into());
    }
    spec.split(',')
        .map(|part| {
            let (header, path) = part.split_once(':').ok_or_else(|| {
                format!(
                    "unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>"
                )
            })?;
            Ok(CustomColumn {
                header: header.to_string(),
                path: Template::parse_relaxed(path)?,
            })
        })
        .collect()
}

/// The custom-columns table: each cell the values the column's path selects, comma-separated,
/// or `<none>`.
pub fn custom_columns_table(columns: &[CustomColumn], objects: &[Value]) -> Result<Table, String> {
    let rows = objects
        .iter()
        .map(|obj| {
            columns
                .iter()
                .map(|c| {
                    let values = c.path.values(obj)?;
                    Ok(if values.is_empty() {
                        "<none>".to_string()
                    } else {
                        values.iter().map(value_text).collect::<Vec<_>>().join(",")
                    })
                })
                .collect::<Result<Vec<String>, String>>()
        })
        .collect::<Result<_, String>>()?;
    Ok(Table {
        header: columns.iter().map(|c| c.header.clone()).collect(),
        rows,
    })
}
