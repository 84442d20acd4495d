//! Reading manifests (`-f`): files, directories, multi-document YAML streams, JSON objects and
//! `List`s, and stdin, turned into one [`Document`] per object; and (in [`targets`]) finding the
//! objects a command acts on, from manifests or from `KIND NAME` arguments.
//!
//! kubectl reads YAML as YAML 1.1, where an integer with a leading zero is octal: `defaultMode:
//! 0666` means 438. `yaml_serde` reads YAML 1.2, where `0666` is not an integer and comes back as
//! the string `"0666"`. Since Kubernetes has no string-valued `defaultMode` or `mode` field, a
//! string matching `^0[0-7]+$` in a field of either name is read as the octal number kubectl
//! would send. (A quoted `"0666"` is converted too: after parsing it cannot be told apart.)

pub mod targets;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// The name of stdin as a source, as kubectl calls it.
pub const STDIN: &str = "STDIN";

/// One object read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file it came from as given on the command line (`dir/kubia.yaml`), or `STDIN`.
    pub source: String,
    /// Its 1-based position in the source's document stream, counting empty documents, so the
    /// number points at the `---` section it came from. Items of a `List` share their list's.
    pub index: usize,
    /// The object.
    pub value: Value,
}

impl Document {
    /// `kubia.yaml (document 2)`: how messages name the document.
    pub fn origin(&self) -> String {
        format!("{} (document {})", self.source, self.index)
    }

    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("")
    }
}

/// Read every `-f` source in order: `-` is stdin, a directory contributes its `.yaml`, `.yml`
/// and `.json` files in name order (its subdirectories too when `recursive`), anything else is a
/// file read whatever its extension.
pub fn read(sources: &[String], recursive: bool) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the manifest from stdin")?;
            docs.extend(parse(STDIN, &text)?);
            continue;
        }
        if source.starts_with("http://") || source.starts_with("https://") {
            bail!("reading manifests from URLs is not supported: {source} (download it and pass the file)");
        }
        let path = Path::new(source);
        let meta =
            std::fs::metadata(path).map_err(|_| anyhow!("the path \"{source}\" does not exist"))?;
        if meta.is_dir() {
            for file in manifest_files(path, recursive)? {
                docs.extend(read_file(&file)?);
            }
        } else {
            docs.extend(read_file(path)?);
        }
    }
    Ok(docs)
}

fn read_file(path: &Path) -> Result<Vec<Document>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read {name}: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("error parsing {name}: the file is not UTF-8 text"))?;
    parse(&name, &text)
}

/// The manifest files of a directory, sorted by path.
fn manifest_files(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read directory {}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| anyhow!("cannot read directory {}: {e}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                out.extend(manifest_files(&path, true)?);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(out)
}

/// Parse one source's text: a stream of JSON objects when it starts with `{`, else a YAML
/// stream of `---`-separated documents. Empty documents are skipped; `List`s are flattened into
/// their items.
pub fn parse(source: &str, text: &str) -> Result<Vec<Document>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut raw = Vec::new();
    if text.trim_start().starts_with('{') {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (i, v) in stream.enumerate() {
            let v = v.map_err(|e| anyhow!("error parsing {source} (document {}): {e}", i + 1))?;
            raw.push((i + 1, v));
        }
    } else {
        for (i, de) in yaml_serde::Deserializer::from_str(text).enumerate() {
            // After a syntax error the iterator repeats it forever: stop at the first.
            let mut v = Value::deserialize(de)
                .map_err(|e| anyhow!("error parsing {source} (document {}): {e}", i + 1))?;
            yaml11_modes(&mut v);
            raw.push((i + 1, v));
        }
    }
    let mut docs = Vec::new();
    for (index, value) in raw {
        if value.is_null() {
            continue;
        }
        let fail = |what: String| anyhow!("error parsing {source} (document {index}): {what}");
        check_object(&value).map_err(fail)?;
        if is_list(&value) {
            for (n, item) in value["items"].as_array().into_iter().flatten().enumerate() {
                check_object(item).map_err(|e| fail(format!("item {n}: {e}")))?;
                docs.push(Document {
                    source: source.to_string(),
                    index,
                    value: item.clone(),
                });
            }
        } else {
            docs.push(Document {
                source: source.to_string(),
                index,
                value,
            });
        }
    }
    Ok(docs)
}

/// `kind: List` (or `PodList`, ...) with `items`.
fn is_list(v: &Value) -> bool {
    v["kind"].as_str().is_some_and(|k| k.ends_with("List")) && v["items"].is_array()
}

/// What every object needs before it can be sent anywhere.
fn check_object(v: &Value) -> Result<(), String> {
    let Value::Object(map) = v else {
        return Err(format!(
            "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
            describe(v)
        ));
    };
    let missing: Vec<&str> = ["apiVersion", "kind"]
        .into_iter()
        .filter(|f| {
            map.get(*f)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .collect();
    match missing.as_slice() {
        [] => {}
        [one] => return Err(format!("{one} not set")),
        _ => return Err("apiVersion not set, kind not set".into()),
    }
    if !v["metadata"].is_null() && !v["metadata"].is_object() {
        return Err(format!(
            "metadata must be a mapping, found {}",
            describe(&v["metadata"])
        ));
    }
    Ok(())
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// YAML 1.1 octal file modes (see the module docs): `"0666"` under `defaultMode` or `mode`
/// becomes 438.
pub fn yaml11_modes(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "defaultMode" || k == "mode" {
                    if let Some(n) = child.as_str().and_then(octal) {
                        *child = Value::from(n);
                        continue;
                    }
                }
                yaml11_modes(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(yaml11_modes),
        _ => {}
    }
}

fn octal(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('0')?;
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(docs: &[Document]) -> Vec<(usize, Value)> {
        docs.iter().map(|d| (d.index, d.value.clone())).collect()
    }

    #[test]
    fn multi_document_yaml_skips_empty_documents_and_keeps_their_numbers() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n# nothing here\n---\n\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n...\n";
        let docs = parse("m.yaml", text).unwrap();
        assert_eq!(
            values(&docs),
            vec![
                (
                    1,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
                ),
                (
                    4,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
                ),
            ]
        );
        assert_eq!(docs[1].origin(), "m.yaml (document 4)");
        assert_eq!(
            (docs[1].kind(), docs[1].name(), docs[1].api_version()),
            ("Pod", "p", "v1")
        );
        assert!(parse("e.yaml", "").unwrap().is_empty());
        assert!(parse("e.yaml", "---\n# only a comment\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn lists_are_flattened_in_yaml_and_json() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}},
        ]});
        for text in [list.to_string(), yaml_serde::to_string(&list).unwrap()] {
            let docs = parse("l", &text).unwrap();
            let names: Vec<(&str, usize)> = docs.iter().map(|d| (d.name(), d.index)).collect();
            assert_eq!(names, vec![("a", 1), ("b", 1)], "{text}");
        }
        let empty = parse("l", r#"{"apiVersion": "v1", "kind": "List", "items": []}"#).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn json_streams_and_objects() {
        let text = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "labels": {"x": "0666"}}}"#;
        let docs = parse("p.json", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index, 2);
        // JSON is not YAML 1.1: its strings stay strings.
        assert_eq!(docs[1].value["metadata"]["labels"]["x"], json!("0666"));
    }

    #[test]
    fn yaml11_octal_modes_become_numbers() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    mode: x0666\nspec:\n  volumes:\n  - name: c\n    configMap:\n      name: c\n      defaultMode: 0666\n      items:\n      - key: k\n        path: p\n        mode: 0400\n  - name: s\n    secret:\n      defaultMode: 420\n  - name: t\n    secret:\n      defaultMode: 0o644\n  - name: u\n    secret:\n      defaultMode: 0\n  - name: v\n    secret:\n      defaultMode: 0999\n";
        let doc = &parse("p.yaml", text).unwrap()[0].value;
        let vols = &doc["spec"]["volumes"];
        assert_eq!(vols[0]["configMap"]["defaultMode"], json!(438));
        assert_eq!(vols[0]["configMap"]["items"][0]["mode"], json!(256));
        assert_eq!(vols[1]["secret"]["defaultMode"], json!(420));
        assert_eq!(vols[2]["secret"]["defaultMode"], json!(420));
        assert_eq!(vols[3]["secret"]["defaultMode"], json!(0));
        // Not octal: left for the server to reject.
        assert_eq!(vols[4]["secret"]["defaultMode"], json!("0999"));
        assert_eq!(doc["metadata"]["labels"]["mode"], json!("x0666"));
    }

    #[test]
    fn the_example_configmap_volume_gets_mode_438() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/examples/fortune-configmap-volume.yaml"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            return; // The shared examples are not part of every checkout.
        };
        let docs = parse(path, &text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[1].value["spec"]["volumes"][1]["configMap"]["defaultMode"],
            json!(438)
        );
    }

    #[test]
    fn errors_name_the_source_and_the_document() {
        for (text, message) in [
            (
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n labels: x\n",
                "error parsing kubia.yaml (document 2): did not find expected key at line 10 column 2",
            ),
            (
                "apiVersion: v1\nkind: Pod\n---\nb: [\n",
                "error parsing kubia.yaml (document 2): did not find expected node content at line 5 column 1",
            ),
            ("- a\n- b\n", "error parsing kubia.yaml (document 1): expected a Kubernetes object (a mapping with apiVersion and kind), found a list"),
            ("kind: Pod\nmetadata: {name: a}\n", "error parsing kubia.yaml (document 1): apiVersion not set"),
            ("---\n---\napiVersion: v1\n", "error parsing kubia.yaml (document 2): kind not set"),
            ("metadata: {name: a}\n", "error parsing kubia.yaml (document 1): apiVersion not set, kind not set"),
            ("apiVersion: v1\nkind: Pod\nmetadata: [a]\n", "error parsing kubia.yaml (document 1): metadata must be a mapping, found a list"),
            (
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n- kind: Pod\n",
                "error parsing kubia.yaml (document 1): item 1: apiVersion not set",
            ),
            (r#"{"apiVersion": "v1", "kind": "Pod"} {"kind": "#, "error parsing kubia.yaml (document 2): EOF while parsing a value at line 1 column 45"),
        ] {
            let err = parse("kubia.yaml", text).unwrap_err().to_string();
            assert!(err.starts_with(message), "{text:?}\n got: {err}\nwant: {message}");
        }
    }

    #[test]
    fn directories_are_read_in_name_order_and_recursively_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let pod = |name: &str| format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n");
        std::fs::write(dir.path().join("b.yaml"), pod("b")).unwrap();
        std::fs::write(dir.path().join("a.yml"), pod("a")).unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/d.yaml"), pod("d")).unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let names = |docs: Vec<Document>| {
            docs.iter()
                .map(|d| d.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(read(std::slice::from_ref(&d), false).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(read(std::slice::from_ref(&d), true).unwrap()),
            ["a", "b", "c", "d"]
        );
        let docs = read(&[format!("{d}/sub/d.yaml")], false).unwrap();
        assert_eq!(docs[0].source, format!("{d}/sub/d.yaml"));
        let missing = read(&[format!("{d}/nope.yaml")], false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            missing,
            format!("the path \"{d}/nope.yaml\" does not exist")
        );
    }
}
