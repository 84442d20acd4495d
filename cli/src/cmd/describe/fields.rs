//! Reading fields of Kubernetes JSON by JSON pointer, with the zero values Go's typed structs
//! would show for absent fields ("" for strings, 0 for numbers, false for booleans).

use jiff::Timestamp;
use serde_json::Value;

/// A string field, or "".
pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// An integer field, or 0.
pub fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// A boolean field, or false.
pub fn flag(v: &Value, ptr: &str) -> bool {
    v.pointer(ptr).and_then(Value::as_bool).unwrap_or(false)
}

/// An array field, or an empty slice.
pub fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A string map (labels, annotations, selectors) as sorted pairs.
pub fn map_pairs(v: &Value, ptr: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v
        .pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

/// A timestamp field (RFC 3339), if present and valid.
pub fn time(v: &Value, ptr: &str) -> Option<Timestamp> {
    s(v, ptr).parse().ok()
}

/// An int-or-string field as Go's `IntOrString.String()` prints it.
pub fn int_or_string(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// `a=b,c=d` (Kubernetes' `labels.FormatLabels`), `<none>` when empty.
pub fn format_labels(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A LabelSelector in Kubernetes' selector syntax (`app=kubia,tier in (a,b)`), requirements
/// sorted by key; "" for an empty selector.
pub fn label_selector_string(selector: &Value) -> String {
    let mut reqs: Vec<(String, String)> = map_pairs(selector, "/matchLabels")
        .into_iter()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for e in arr(selector, "/matchExpressions") {
        let key = s(e, "/key");
        let mut values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        values.sort();
        let text = match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty.
pub fn format_label_selector(selector: &Value) -> String {
    let s = label_selector_string(selector);
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}
