//! The objects `rkube create namespace|configmap|secret generic` build, and the data sources
//! they read: `--from-literal=key=value`, `--from-file=[key=]path` (a file, or every regular
//! file of a directory) and `--from-env-file=path` (`KEY=VALUE` lines), as kubectl reads them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use base64::Engine;
use serde_json::{json, Map, Value};

/// The data flags of `create configmap` and `create secret generic`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataSources {
    /// A key and literal value to insert (`--from-literal=mykey=somevalue`); repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// A file, optionally with the key to store it under (`--from-file=[key=]path`); a directory
    /// adds each regular file under its name; repeatable.
    #[arg(long, value_name = "[KEY=]PATH")]
    pub from_file: Vec<String>,
    /// A file of `KEY=VALUE` lines (`#` comments and blank lines ignored); repeatable.
    #[arg(long, value_name = "PATH")]
    pub from_env_file: Vec<String>,
}

/// Which object the data is for, to name it in errors.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// `ConfigMap` or `Secret`.
    pub kind: &'a str,
    pub name: &'a str,
}

impl DataSources {
    /// Every key and its bytes.
    pub fn collect(&self, owner: Owner<'_>) -> Result<BTreeMap<String, Vec<u8>>> {
        if !self.from_env_file.is_empty()
            && (!self.from_file.is_empty() || !self.from_literal.is_empty())
        {
            bail!("from-env-file cannot be combined with from-file or from-literal");
        }
        let mut data = BTreeMap::new();
        for source in &self.from_file {
            let (key, path) = file_source(source)?;
            let p = Path::new(&path);
            if p.is_dir() {
                if key.is_some() {
                    bail!("cannot give a key name for a directory path");
                }
                let mut entries: Vec<_> = std::fs::read_dir(p)
                    .map_err(|e| anyhow!("error reading {path}: {e}"))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .collect();
                entries.sort_by_key(|e| e.file_name());
                for entry in entries {
                    let key = entry.file_name().to_string_lossy().to_string();
                    let bytes = std::fs::read(entry.path())
                        .map_err(|e| anyhow!("error reading {}: {e}", entry.path().display()))?;
                    add(&mut data, owner, key, bytes)?;
                }
            } else {
                let bytes = std::fs::read(p).map_err(|e| anyhow!("error reading {path}: {e}"))?;
                let key = key.unwrap_or_else(|| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default()
                });
                add(&mut data, owner, key, bytes)?;
            }
        }
        for source in &self.from_literal {
            let (key, value) = source
                .split_once('=')
                .ok_or_else(|| anyhow!("invalid literal source {source}, expected key=value"))?;
            add(&mut data, owner, key.to_string(), value.as_bytes().to_vec())?;
        }
        for path in &self.from_env_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| anyhow!("error reading {path}: {e}"))?;
            for (key, value) in env_file(path, &text)? {
                add(&mut data, owner, key, value.into_bytes())?;
            }
        }
        Ok(data)
    }
}

/// `[key=]path` → (key, path).
fn file_source(source: &str) -> Result<(Option<String>, String)> {
    match source.split_once('=') {
        None => Ok((None, source.to_string())),
        Some(("", _)) => bail!("key name for file path {source} missing"),
        Some((_, "")) => bail!("file path for key name {source} missing"),
        Some((_, path)) if path.contains('=') => {
            bail!("key names or file paths cannot contain '='")
        }
        Some((key, path)) => Ok((Some(key.to_string()), path.to_string())),
    }
}

fn add(
    data: &mut BTreeMap<String, Vec<u8>>,
    owner: Owner<'_>,
    key: String,
    value: Vec<u8>,
) -> Result<()> {
    if let Some(why) = invalid_config_key(&key) {
        bail!(
            "{key:?} is not a valid key name for a {}: {why}",
            owner.kind
        );
    }
    if data.contains_key(&key) {
        bail!(
            "cannot add key {key:?}, another key by that name already exists in Data for {} {:?}",
            owner.kind,
            owner.name
        );
    }
    data.insert(key, value);
    Ok(())
}

/// Why `key` cannot be a ConfigMap or Secret key, if it cannot.
fn invalid_config_key(key: &str) -> Option<String> {
    let chars_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !chars_ok {
        return Some("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    if key.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if key == "." || key == ".." || key.starts_with("..") {
        return Some("must not be '.' or '..' and must not start with '..'".into());
    }
    None
}

/// The `KEY=VALUE` lines of an env file. A line with only `KEY` takes the value from the
/// environment, as kubectl does; values are taken verbatim (not trimmed, not unquoted).
fn env_file(path: &str, text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = if n == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (line.to_string(), std::env::var(line).unwrap_or_default()),
        };
        if !is_env_var_name(&key) {
            bail!(
                "{key:?} is not a valid key name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (in {path}, line {})",
                n + 1
            );
        }
        out.push((key, value));
    }
    Ok(out)
}

fn is_env_var_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'-' || b == b'.')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn metadata(name: &str, namespace: Option<&str>) -> Value {
    match namespace {
        Some(ns) => json!({"name": name, "namespace": ns}),
        None => json!({"name": name}),
    }
}

/// A Namespace (with the empty spec and status kubectl prints).
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {}, "status": {}})
}

/// A ConfigMap: UTF-8 values in `data`, others base64-encoded in `binaryData`.
pub fn configmap(name: &str, namespace: Option<&str>, data: BTreeMap<String, Vec<u8>>) -> Value {
    let mut text = Map::new();
    let mut binary = Map::new();
    for (k, v) in data {
        match String::from_utf8(v) {
            Ok(s) => {
                text.insert(k, Value::String(s));
            }
            Err(e) => {
                binary.insert(k, Value::String(b64(e.as_bytes())));
            }
        }
    }
    let mut cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(name, namespace)});
    if !text.is_empty() {
        cm["data"] = Value::Object(text);
    }
    if !binary.is_empty() {
        cm["binaryData"] = Value::Object(binary);
    }
    cm
}

/// A Secret with every value base64-encoded in `data`.
pub fn secret(
    name: &str,
    namespace: Option<&str>,
    secret_type: Option<&str>,
    data: BTreeMap<String, Vec<u8>>,
) -> Value {
    let mut s =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(name, namespace)});
    if !data.is_empty() {
        s["data"] = Value::Object(
            data.into_iter()
                .map(|(k, v)| (k, Value::String(b64(&v))))
                .collect(),
        );
    }
    if let Some(t) = secret_type {
        s["type"] = Value::String(t.to_string());
    }
    s
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CM: Owner<'static> = Owner {
        kind: "ConfigMap",
        name: "cfg",
    };

    fn sources(literals: &[&str], files: &[String], env_files: &[String]) -> DataSources {
        DataSources {
            from_literal: literals.iter().map(|s| s.to_string()).collect(),
            from_file: files.to_vec(),
            from_env_file: env_files.to_vec(),
        }
    }

    fn text(data: &BTreeMap<String, Vec<u8>>) -> Vec<(String, String)> {
        data.iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).to_string()))
            .collect()
    }

    #[test]
    fn literals_files_directories_and_env_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("game.properties"), "lives=3\n").unwrap();
        std::fs::create_dir(d.join("conf")).unwrap();
        std::fs::write(d.join("conf/a.conf"), "A").unwrap();
        std::fs::write(d.join("conf/b.conf"), "B").unwrap();
        std::fs::create_dir(d.join("conf/sub")).unwrap();
        std::fs::write(
            d.join("app.env"),
            "\u{feff}# comment\n\nMODE=prod\n  SPACED=a b \nEMPTY=\nEQ=x=y\n",
        )
        .unwrap();
        let p = |f: &str| d.join(f).to_str().unwrap().to_string();

        let data = sources(
            &["k=v", "url=http://x/?a=b"],
            &[
                p("game.properties"),
                format!("renamed={}", p("game.properties")),
                p("conf"),
            ],
            &[],
        )
        .collect(CM)
        .unwrap();
        assert_eq!(
            text(&data),
            [
                ("a.conf", "A"),
                ("b.conf", "B"),
                ("game.properties", "lives=3\n"),
                ("k", "v"),
                ("renamed", "lives=3\n"),
                ("url", "http://x/?a=b")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let env = sources(&[], &[], &[p("app.env")]).collect(CM).unwrap();
        assert_eq!(
            text(&env),
            [
                ("EMPTY", ""),
                ("EQ", "x=y"),
                ("MODE", "prod"),
                ("SPACED", "a b ")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn data_source_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        std::fs::write(format!("{d}/bad.env"), "1X=a\n").unwrap();
        std::fs::write(format!("{d}/ok.env"), "A=1\n").unwrap();
        for (s, message) in [
            (sources(&["novalue"], &[], &[]), "invalid literal source novalue, expected key=value".to_string()),
            (sources(&["a=1", "a=2"], &[], &[]), "cannot add key \"a\", another key by that name already exists in Data for ConfigMap \"cfg\"".into()),
            (sources(&["a b=1"], &[], &[]), "\"a b\" is not a valid key name for a ConfigMap: a valid config key must consist of".into()),
            (sources(&[], &[format!("{d}/missing")], &[]), format!("error reading {d}/missing: No such file or directory")),
            (sources(&[], &["=x".to_string()], &[]), "key name for file path =x missing".into()),
            (sources(&[], &["k=".to_string()], &[]), "file path for key name k= missing".into()),
            (sources(&[], &[format!("k={d}")], &[]), "cannot give a key name for a directory path".into()),
            (sources(&["a=1"], &[], &[format!("{d}/ok.env")]), "from-env-file cannot be combined with from-file or from-literal".into()),
            (sources(&[], &[], &[format!("{d}/bad.env")]), "\"1X\" is not a valid key name: a valid environment variable name".into()),
        ] {
            let err = s.collect(CM).unwrap_err().to_string();
            assert!(err.starts_with(&message), "{s:?}\n got: {err}\nwant: {message}");
        }
    }

    #[test]
    fn generated_objects() {
        let mut data = BTreeMap::new();
        data.insert("k".to_string(), b"v".to_vec());
        data.insert("bin".to_string(), vec![0xff, 0x00]);
        assert_eq!(
            configmap("cfg", None, data.clone()),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}, "binaryData": {"bin": "/wA="}})
        );
        assert_eq!(
            secret("s", Some("team"), Some("Opaque"), data),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "team"}, "data": {"k": "dg==", "bin": "/wA="}, "type": "Opaque"})
        );
        assert_eq!(
            secret("s", None, None, BTreeMap::new()),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
        );
        assert_eq!(namespace("n")["metadata"], json!({"name": "n"}));
    }
}
