//! kubectl's generic describer for kinds without their own: name, namespace, labels and
//! annotations, then every other field as an indented `Key:  value` tree with camelCase field
//! names turned into words (`apiVersion` → `API Version`).

use serde_json::Value;

use super::fields::s;
use super::layout::{self, w, Clock, Out};

/// Fields the header already shows (or nobody wants to read).
const SKIP: &[&str] = &[
    ".metadata.managedFields",
    ".metadata.name",
    ".metadata.namespace",
    ".metadata.labels",
    ".metadata.annotations",
];

pub fn describe_generic(obj: &Value, events: Option<&[Value]>, clock: &Clock) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(obj, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(obj, "/metadata/namespace"));
    layout::labels_and_annotations(&mut w, obj);
    if let Some(map) = obj.as_object() {
        content(&mut w, 0, map, "");
    }
    layout::events(&mut w, events, clock);
    w.finish()
}

fn content(w: &mut Out, level: usize, map: &serde_json::Map<String, Value>, prefix: &str) {
    let mut fields: Vec<&String> = map.keys().collect();
    fields.sort();
    for field in fields {
        let path = format!("{prefix}.{field}");
        if SKIP.contains(&path.as_str()) {
            continue;
        }
        match &map[field] {
            Value::Object(child) => {
                w!(w, level, "{}:\n", smart_label(field));
                content(w, level + 1, child, &path);
            }
            Value::Array(items) => {
                w!(w, level, "{}:\n", smart_label(field));
                for item in items {
                    match item {
                        Value::Object(child) => content(w, level + 1, child, &path),
                        other => w!(w, level + 1, "{}\n", scalar(other)),
                    }
                }
            }
            other => w!(w, level, "{}:\t{}\n", smart_label(field), scalar(other)),
        }
    }
}

/// A scalar as Go's `%v` prints a decoded JSON value.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// kubectl's `smartLabelFor`: split a camelCase field name into capitalised words, keeping
/// acronyms (`API`, `URL`, `UID`, `GUID`) upper case. Names with characters other than letters
/// and `-` are left alone.
pub fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') {
        return field.to_string();
    }
    let parts = camel_case_split(field);
    let mut merged: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let part = &parts[i];
        if let Some(next) = parts.get(i + 1) {
            let all_upper = part.chars().all(|c| !c.is_alphabetic() || c.is_uppercase());
            if part.chars().count() >= 2
                && all_upper
                && next.chars().next().is_some_and(char::is_uppercase)
            {
                merged.push(format!("{part}{next}"));
                i += 2;
                continue;
            }
        }
        merged.push(part.clone());
        i += 1;
    }
    merged
        .into_iter()
        .filter(|p| p != "_")
        .map(|p| {
            let upper = p.to_uppercase();
            if ["API", "URL", "UID", "GUID"].contains(&upper.as_str()) {
                upper
            } else if p.to_lowercase() == p {
                let mut c = p.chars();
                match c.next() {
                    Some(first) => first.to_uppercase().chain(c).collect(),
                    None => p,
                }
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `github.com/fatih/camelcase.Split`: runs of lower case, upper case, digits and other
/// characters, where the last capital of an upper-case run starts the following word.
fn camel_case_split(s: &str) -> Vec<String> {
    fn class(c: char) -> u8 {
        if c.is_lowercase() {
            1
        } else if c.is_uppercase() {
            2
        } else if c.is_numeric() {
            3
        } else {
            4
        }
    }
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last = 0;
    for c in s.chars() {
        let cl = class(c);
        if cl == last {
            runs.last_mut().expect("a run").push(c);
        } else {
            runs.push(vec![c]);
        }
        last = cl;
    }
    // "PDFLoader" → "PDF", "Loader": move the last upper-case letter onto the lower-case run.
    for i in 0..runs.len().saturating_sub(1) {
        if runs[i][0].is_uppercase() && runs[i + 1][0].is_lowercase() {
            let moved = runs[i].pop().expect("non-empty run");
            runs[i + 1].insert(0, moved);
        }
    }
    runs.into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.into_iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_labels_match_kubectl() {
        for (field, label) in [
            ("apiVersion", "API Version"),
            ("creationTimestamp", "Creation Timestamp"),
            ("uid", "UID"),
            ("holderIdentity", "Holder Identity"),
            ("podIP", "Pod IP"),
            ("leaseDurationSeconds", "Lease Duration Seconds"),
            ("kind", "Kind"),
            ("app.kubernetes.io/name", "app.kubernetes.io/name"),
            ("x1", "x1"),
        ] {
            assert_eq!(smart_label(field), label, "{field}");
        }
    }
}
