//! Strict decoding of Kubernetes objects: a wrong JSON type is an error naming the field path
//! (`spec.containers[0].env[0].value`), and so is a field the kind does not have, the way
//! `kubectl --validate=strict` reports them.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::validation::{FieldError, FieldErrors, Path};

/// Map keys whose values are resource quantities: Kubernetes accepts numbers there (`cpu: 0.5`).
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
];
const QUANTITY_FIELDS: &[&str] = &["sizeLimit", "divisor"];

/// Decode `value` into `T` strictly.
pub fn strict<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, FieldErrors> {
    let mut input = value.clone();
    quantities_to_strings(&mut input);
    let typed: T = serde_path_to_error::deserialize(&input).map_err(|e| {
        let path = render_path(&e.path().to_string());
        let inner = e.into_inner().to_string();
        vec![FieldError::type_invalid(&Path::root(&path), &inner)]
    })?;
    let round = serde_json::to_value(&typed).map_err(|e| {
        vec![FieldError::invalid(
            &Path::root(""),
            e.to_string(),
            "cannot encode",
        )]
    })?;
    let mut errs = Vec::new();
    unknown_fields(&input, &round, &Path::default(), &mut errs);
    if errs.is_empty() {
        Ok(typed)
    } else {
        Err(errs)
    }
}

/// serde_path_to_error renders `spec.containers[0].env[0].value`; the root is `.`.
fn render_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

fn quantities_to_strings(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str()) {
                    if let Value::Object(q) = child {
                        for qv in q.values_mut() {
                            number_to_string(qv);
                        }
                    }
                } else if QUANTITY_FIELDS.contains(&k.as_str()) {
                    number_to_string(child);
                }
                quantities_to_strings(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(quantities_to_strings),
        _ => {}
    }
}

fn number_to_string(v: &mut Value) {
    if let Value::Number(n) = v {
        *v = Value::String(n.to_string());
    }
}

/// Every field present (and not null) in `input` but absent after the typed round trip.
fn unknown_fields(input: &Value, round: &Value, path: &Path, errs: &mut FieldErrors) {
    match (input, round) {
        (Value::Object(i), Value::Object(r)) => {
            for (k, iv) in i {
                let child = path.child(k);
                match r.get(k) {
                    Some(rv) => unknown_fields(iv, rv, &child, errs),
                    None if iv.is_null() => {}
                    None => errs.push(FieldError::unknown(&child)),
                }
            }
        }
        (Value::Array(i), Value::Array(r)) => {
            for (n, (iv, rv)) in i.iter().zip(r).enumerate() {
                unknown_fields(iv, rv, &path.index(n), errs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    #[test]
    fn a_boolean_env_value_is_rejected_naming_the_field() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": true}]}]}});
        let errs = strict::<Pod>(&pod).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path.as_str(), "spec.containers[0].env[0].value");
        assert!(
            errs[0]
                .to_string()
                .starts_with("spec.containers[0].env[0].value: Invalid type"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn unknown_fields_are_listed() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "lables": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "Always"}]}});
        let errs = strict::<Pod>(&pod).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["metadata.lables", "spec.containers[0].imagePullPolice"]
        );
        assert_eq!(errs[0].to_string(), "metadata.lables: Unknown field");
    }

    #[test]
    fn numeric_quantities_are_accepted() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": 0.5, "memory": "128Mi"}}}]}});
        let p = strict::<Pod>(&pod).expect("decodes");
        let req = p.spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .requests
            .unwrap();
        assert_eq!(req["cpu"].0, "0.5");
    }
}
