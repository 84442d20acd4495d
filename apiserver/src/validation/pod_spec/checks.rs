//! Small field checks the pod-spec and workload validators share (number ranges, ports,
//! enumerations, environment variable names, config keys, relative paths) and the rendering of
//! values the way Kubernetes' messages print Go values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use crate::validation::{FieldError, FieldErrors, Path};

pub const NONNEGATIVE_MSG: &str = "must be greater than or equal to 0";
pub const IMMUTABLE_MSG: &str = "field is immutable";
pub const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
pub const MAX_INT32: i64 = i32::MAX as i64;

/// Kubernetes' `InclusiveRangeError`.
pub fn inclusive_range(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// `Invalid value: <v>: must be greater than or equal to 0` for a negative `v`.
pub fn nonnegative(v: Option<impl Into<i64>>, path: &Path, errs: &mut FieldErrors) {
    if let Some(v) = v.map(Into::into) {
        if v < 0 {
            errs.push(FieldError::invalid(path, v, NONNEGATIVE_MSG));
        }
    }
}

/// A port number: 1..65535.
pub fn port_number(port: i32, path: &Path, errs: &mut FieldErrors) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(path, port, &inclusive_range(1, 65535)));
    }
}

/// An IANA service name (a named port): at most 15 characters of `[-a-z0-9]` with at least one
/// letter, no `--`, and no hyphen at either end. Returns the problems (Kubernetes'
/// `IsValidPortName`).
pub fn port_name(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name.len() > 15 {
        out.push("must be no more than 15 characters".to_string());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        out.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    } else if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen".to_string());
    }
    out
}

/// A port given by number or by name (probes' `httpGet.port`, `tcpSocket.port`).
pub fn port_number_or_name(port: &IntOrString, path: &Path, errs: &mut FieldErrors) {
    match port {
        IntOrString::Int(n) => port_number(*n, path, errs),
        IntOrString::String(s) => {
            for msg in port_name(s) {
                errs.push(FieldError::invalid(path, s, &msg));
            }
        }
    }
}

/// An enumerated field whose value is known (defaulted or required): empty is `Required value`,
/// anything outside `allowed` is `Unsupported value`.
pub fn one_of(value: &str, allowed: &[&str], path: &Path, errs: &mut FieldErrors) {
    if value.is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if !allowed.contains(&value) {
        errs.push(FieldError::not_supported(path, value, allowed));
    }
}

/// An optional enumerated field: absent is fine, otherwise it must be one of `allowed`.
pub fn optional_one_of(value: Option<&str>, allowed: &[&str], path: &Path, errs: &mut FieldErrors) {
    if let Some(v) = value {
        if !allowed.contains(&v) {
            errs.push(FieldError::not_supported(path, v, allowed));
        }
    }
}

/// An environment variable name (or `envFrom` prefix): `[-._a-zA-Z][-._a-zA-Z0-9]*`, and not
/// `.`/`..` or starting with `..`.
pub fn env_var_name(name: &str) -> Vec<String> {
    let b = name.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
    let mut out = Vec::new();
    if b.is_empty() || b[0].is_ascii_digit() || !b.iter().all(ok_char) {
        out.push("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')".to_string());
    }
    out.extend(chdir_prefix(name));
    out
}

/// A key of a ConfigMap or Secret: `[-._a-zA-Z0-9]+`, at most 253 characters, and not
/// `.`/`..` or starting with `..`.
pub fn config_key(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        out.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    out.extend(chdir_prefix(key));
    out
}

fn chdir_prefix(s: &str) -> Vec<String> {
    match s {
        "." => vec!["must not be '.'".to_string()],
        ".." => vec!["must not be '..'".to_string()],
        _ if s.starts_with("..") => vec!["must not start with '..'".to_string()],
        _ => Vec::new(),
    }
}

/// A path inside a volume (`subPath`, projected item paths): relative and without `..` steps.
pub fn local_descending_path(p: &str, path: &Path, errs: &mut FieldErrors) {
    if p.starts_with('/') {
        errs.push(FieldError::invalid(path, p, "must be a relative path"));
    }
    if p.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(path, p, "must not contain '..'"));
    }
}

/// A file a volume projects (`items[*].path`): a descending path that does not start with `..`.
pub fn local_non_reserved_path(p: &str, path: &Path, errs: &mut FieldErrors) {
    local_descending_path(p, path, errs);
    if p.starts_with("..") && !p.starts_with("../") {
        errs.push(FieldError::invalid(path, p, "must not start with '..'"));
    }
}

/// A file mode (`defaultMode`, `mode`): 0..0777.
pub fn file_mode(mode: Option<i32>, path: &Path, errs: &mut FieldErrors) {
    if let Some(m) = mode {
        if !(0..=0o777).contains(&m) {
            errs.push(FieldError::invalid(path, m, FILE_MODE_MSG));
        }
    }
}

/// A value as Kubernetes' semantic comparison sees it: JSON without nulls, empty lists and
/// empty maps (an absent field and an empty one compare equal).
pub fn semantic_json<T: Serialize>(v: &T) -> Value {
    fn strip(v: Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Array(items) if items.is_empty() => None,
            Value::Array(items) => Some(Value::Array(
                items
                    .into_iter()
                    .map(|i| strip(i).unwrap_or(Value::Null))
                    .collect(),
            )),
            Value::Object(map) => {
                let map: serde_json::Map<String, Value> = map
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, strip(v)?)))
                    .collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
            other => Some(other),
        }
    }
    serde_json::to_value(v)
        .ok()
        .and_then(strip)
        .unwrap_or(Value::Null)
}

/// The leaves that differ between two [`semantic_json`] values, as `path: old -> new` lines
/// (at most `limit` of them), for messages that must say what changed.
pub fn json_diff(old: &Value, new: &Value, path: &Path, limit: usize) -> Vec<String> {
    fn walk(old: Option<&Value>, new: Option<&Value>, path: &Path, out: &mut Vec<String>) {
        match (old, new) {
            (Some(Value::Object(o)), Some(Value::Object(n))) => {
                let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
                for k in keys {
                    walk(o.get(k), n.get(k), &path.child(k), out);
                }
            }
            (Some(Value::Array(o)), Some(Value::Array(n))) => {
                for i in 0..o.len().max(n.len()) {
                    walk(o.get(i), n.get(i), &path.index(i), out);
                }
            }
            (o, n) if o != n => {
                let show = |v: Option<&Value>| v.map_or("null".to_string(), |v| v.to_string());
                out.push(format!("{path}: {} -> {}", show(o), show(n)));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(Some(old), Some(new), path, &mut out);
    out.truncate(limit);
    out
}

/// A value printed verbatim after `Invalid value:`, for the Go renderings Kubernetes prints
/// (`map[string]string{"app":"kubia"}`) and JSON renderings of structured values.
pub struct GoValue(pub String);

impl fmt::Debug for GoValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Go's `%#v` of a `map[string]string`: `map[string]string{"a":"b", "c":"d"}`, or
/// `map[string]string(nil)` when absent.
pub fn go_string_map(m: Option<&BTreeMap<String, String>>) -> GoValue {
    match m {
        None => GoValue("map[string]string(nil)".to_string()),
        Some(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
            GoValue(format!("map[string]string{{{}}}", items.join(", ")))
        }
    }
}

/// Go's `%#v` of a `[]string`: `[]string{"a", "b"}`, or `[]string(nil)` when absent.
pub fn go_string_slice(v: Option<&[String]>) -> GoValue {
    match v {
        None => GoValue("[]string(nil)".to_string()),
        Some(v) => {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            GoValue(format!("[]string{{{}}}", items.join(", ")))
        }
    }
}

/// A structured value rendered as compact JSON (scalars print as Go prints them: strings
/// quoted, numbers bare, absent values `null`).
pub fn json_value<T: Serialize>(v: &T) -> GoValue {
    GoValue(serde_json::to_string(v).unwrap_or_else(|e| format!("<{e}>")))
}

/// An int-or-string as Kubernetes users write it: `1` or `"25%"`.
pub fn int_or_string(v: &IntOrString) -> GoValue {
    match v {
        IntOrString::Int(n) => GoValue(n.to_string()),
        IntOrString::String(s) => GoValue(format!("{s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_iana() {
        assert!(port_name("http").is_empty());
        assert!(port_name("h2-c").is_empty());
        assert_eq!(
            port_name("123"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            port_name("-Http--"),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must not contain consecutive hyphens",
                "must not begin or end with a hyphen"
            ]
        );
        assert_eq!(
            port_name("abcdefghijklmnop"),
            vec!["must be no more than 15 characters"]
        );
    }

    #[test]
    fn env_names_and_config_keys() {
        for ok in ["A", "my.env-name", "_X1", "-a"] {
            assert!(env_var_name(ok).is_empty(), "{ok}");
        }
        for bad in ["", "1A", "A B", "A=B"] {
            assert_eq!(env_var_name(bad).len(), 1, "{bad}");
        }
        assert_eq!(env_var_name(".."), vec!["must not be '..'"]);
        assert!(config_key("my-nginx-config.conf").is_empty());
        assert_eq!(config_key("..a"), vec!["must not start with '..'"]);
    }

    #[test]
    fn go_renderings() {
        let m: BTreeMap<String, String> =
            [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        assert_eq!(
            format!("{:?}", go_string_map(Some(&m))),
            r#"map[string]string{"a":"1", "b":"2"}"#
        );
        assert_eq!(
            format!("{:?}", go_string_map(None)),
            "map[string]string(nil)"
        );
        assert_eq!(
            format!("{:?}", go_string_slice(Some(&["x".to_string()]))),
            r#"[]string{"x"}"#
        );
        assert_eq!(
            format!("{:?}", int_or_string(&IntOrString::String("25%".into()))),
            r#""25%""#
        );
    }
}
