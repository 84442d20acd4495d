//! Structured label selectors (`metav1.LabelSelector`) as controllers and affinity terms carry
//! them: validation (Kubernetes' `ValidateLabelSelector`), whether a selector selects a pod
//! template's labels, equality as Kubernetes' semantic comparison sees it, and the Go rendering
//! Kubernetes prints in messages.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::checks::{go_string_map, go_string_slice, GoValue};
use crate::selector;
use crate::validation::common::{label_value, push_all, qualified_name, validate_labels};
use crate::validation::{FieldError, FieldErrors, Path};

/// Validate `matchLabels` (as labels) and each `matchExpressions` requirement: a known operator
/// with the values it needs, a qualified key and label-shaped values.
pub fn validate(sel: &LabelSelector, path: &Path, errs: &mut FieldErrors) {
    validate_labels(sel.match_labels.as_ref(), &path.child("matchLabels"), errs);
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let rp = path.child("matchExpressions").index(i);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                &rp.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                &rp.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => errs.push(FieldError::invalid(
                &rp.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        push_all(errs, &rp.child("key"), &req.key, qualified_name(&req.key));
        for (j, v) in values.iter().enumerate() {
            push_all(errs, &rp.child("values").index(j), v, label_value(v));
        }
    }
}

/// Whether the selector has neither labels nor expressions (it would select everything).
pub fn is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// Whether the selector selects these labels; `None` when the selector itself is invalid (its
/// errors are reported by [`validate`]).
pub fn matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> Option<bool> {
    let parsed = selector::LabelSelector::from_label_selector(sel).ok()?;
    let empty = BTreeMap::new();
    Some(parsed.matches(labels.unwrap_or(&empty)))
}

/// Equality that, like Kubernetes' semantic DeepEqual, does not tell an absent list or map from
/// an empty one.
pub fn semantically_equal(a: &LabelSelector, b: &LabelSelector) -> bool {
    let labels = |s: &LabelSelector| s.match_labels.clone().unwrap_or_default();
    let exprs = |s: &LabelSelector| {
        s.match_expressions
            .iter()
            .flatten()
            .map(|r| {
                (
                    r.key.clone(),
                    r.operator.clone(),
                    r.values.clone().unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    labels(a) == labels(b) && exprs(a) == exprs(b)
}

/// Go's `%#v` of a `metav1.LabelSelector`, as in Kubernetes' `field is immutable` message:
/// `v1.LabelSelector{MatchLabels:map[string]string{"app":"kubia"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}`.
pub fn go_value(sel: &LabelSelector) -> GoValue {
    let exprs = match &sel.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(reqs) => {
            let items: Vec<String> = reqs
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{:?}}}",
                        r.key,
                        r.operator,
                        go_string_slice(r.values.as_deref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    GoValue(format!(
        "v1.LabelSelector{{MatchLabels:{:?}, MatchExpressions:{exprs}}}",
        go_string_map(sel.match_labels.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn validation_messages() {
        let s = sel(json!({"matchLabels": {"a b": "c"}, "matchExpressions": [
            {"key": "k", "operator": "In"},
            {"key": "k", "operator": "Exists", "values": ["x"]},
            {"key": "k", "operator": "Has"},
        ]}));
        let mut errs = Vec::new();
        validate(&s, &Path::root("spec.selector"), &mut errs);
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[0].starts_with(
            r#"spec.selector.matchLabels: Invalid value: "a b": name part must consist of"#
        ));
        assert_eq!(
            got[1..],
            [
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                r#"spec.selector.matchExpressions[2].operator: Invalid value: "Has": not a valid selector operator"#,
            ]
        );
    }

    #[test]
    fn matching_and_rendering() {
        let s = sel(
            json!({"matchLabels": {"app": "kubia"}, "matchExpressions": [{"key": "env", "operator": "Exists"}]}),
        );
        let labels: BTreeMap<String, String> =
            [("app".into(), "kubia".into()), ("env".into(), "x".into())].into();
        assert_eq!(matches(&s, Some(&labels)), Some(true));
        assert_eq!(matches(&s, None), Some(false));
        assert_eq!(
            format!("{:?}", go_value(&s)),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"kubia"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"env", Operator:"Exists", Values:[]string(nil)}}}"#
        );
        assert!(semantically_equal(
            &sel(json!({"matchLabels": {}})),
            &sel(json!({}))
        ));
        assert!(is_empty(&sel(json!({"matchExpressions": []}))));
    }
}
