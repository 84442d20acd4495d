//! Label selectors (pod affinity terms) and node selectors (node affinity, PV node affinity),
//! compiled once per pod and matched with Kubernetes' semantics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object without any.
pub(crate) static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A compiled `metav1.LabelSelector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LabelMatcher {
    /// Matches no object: an absent selector in an affinity term, or an invalid one.
    Nothing,
    /// Matches objects satisfying every requirement (so an empty list matches everything).
    All(Vec<LabelRequirement>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LabelRequirement {
    key: String,
    operator: SetOperator,
    values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelMatcher {
    /// Kubernetes' `LabelSelectorAsSelector`: `None` matches nothing, `{}` matches everything;
    /// a selector that would not pass validation matches nothing.
    pub fn new(selector: Option<&LabelSelector>) -> Self {
        let Some(selector) = selector else {
            return LabelMatcher::Nothing;
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(LabelRequirement {
                key: key.clone(),
                operator: SetOperator::In,
                values: vec![value.clone()],
            });
        }
        for expression in selector.match_expressions.iter().flatten() {
            let values = expression.values.clone().unwrap_or_default();
            let operator = match expression.operator.as_str() {
                "In" if !values.is_empty() => SetOperator::In,
                "NotIn" if !values.is_empty() => SetOperator::NotIn,
                "Exists" if values.is_empty() => SetOperator::Exists,
                "DoesNotExist" if values.is_empty() => SetOperator::DoesNotExist,
                _ => return LabelMatcher::Nothing,
            };
            requirements.push(LabelRequirement {
                key: expression.key.clone(),
                operator,
                values,
            });
        }
        LabelMatcher::All(requirements)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelMatcher::Nothing => false,
            LabelMatcher::All(requirements) => requirements.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    SetOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    SetOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    SetOperator::Exists => value.is_some(),
                    SetOperator::DoesNotExist => value.is_none(),
                }
            }),
        }
    }
}

/// A compiled `NodeSelector`: terms are ORed; an empty list matches no node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeMatcher {
    terms: Vec<NodeTermMatcher>,
}

/// A compiled `NodeSelectorTerm`: its label expressions and field expressions are ANDed. An empty
/// term, or one that would not pass validation, matches no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeTermMatcher {
    /// `None` when the term is empty or invalid.
    requirements: Option<Vec<NodeRequirement>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NodeRequirement {
    Label {
        key: String,
        test: LabelTest,
    },
    /// `matchFields` on `metadata.name`: In or NotIn with exactly one value.
    Name {
        name: String,
        equal: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelTest {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

impl NodeMatcher {
    pub fn new(terms: &[NodeSelectorTerm]) -> Self {
        NodeMatcher {
            terms: terms.iter().map(NodeTermMatcher::new).collect(),
        }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }
}

impl NodeTermMatcher {
    pub fn new(term: &NodeSelectorTerm) -> Self {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if expressions.is_empty() && fields.is_empty() {
            return NodeTermMatcher { requirements: None };
        }
        let requirements = expressions
            .iter()
            .map(label_requirement)
            .chain(fields.iter().map(field_requirement))
            .collect();
        NodeTermMatcher { requirements }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        let Some(requirements) = &self.requirements else {
            return false;
        };
        requirements.iter().all(|requirement| match requirement {
            NodeRequirement::Name { name, equal } => (node_name == name) == *equal,
            NodeRequirement::Label { key, test } => {
                let value = labels.get(key);
                match test {
                    LabelTest::In(values) => value.is_some_and(|v| values.contains(v)),
                    LabelTest::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                    LabelTest::Exists => value.is_some(),
                    LabelTest::DoesNotExist => value.is_none(),
                    LabelTest::Gt(bound) => value
                        .and_then(|v| v.parse::<i64>().ok())
                        .is_some_and(|v| v > *bound),
                    LabelTest::Lt(bound) => value
                        .and_then(|v| v.parse::<i64>().ok())
                        .is_some_and(|v| v < *bound),
                }
            }
        })
    }
}

/// Kubernetes' `NodeSelectorRequirementsAsSelector` for one label expression.
fn label_requirement(requirement: &NodeSelectorRequirement) -> Option<NodeRequirement> {
    let values = requirement.values.clone().unwrap_or_default();
    let single_integer = || match values.as_slice() {
        [value] => value.parse::<i64>().ok(),
        _ => None,
    };
    let test = match requirement.operator.as_str() {
        "In" if !values.is_empty() => LabelTest::In(values),
        "NotIn" if !values.is_empty() => LabelTest::NotIn(values),
        "Exists" if values.is_empty() => LabelTest::Exists,
        "DoesNotExist" if values.is_empty() => LabelTest::DoesNotExist,
        "Gt" => LabelTest::Gt(single_integer()?),
        "Lt" => LabelTest::Lt(single_integer()?),
        _ => return None,
    };
    Some(NodeRequirement::Label {
        key: requirement.key.clone(),
        test,
    })
}

/// Kubernetes' field selector for `matchFields`: only `metadata.name`, In or NotIn, one value.
fn field_requirement(requirement: &NodeSelectorRequirement) -> Option<NodeRequirement> {
    if requirement.key != "metadata.name" {
        return None;
    }
    let [name] = requirement.values.as_deref()? else {
        return None;
    };
    let equal = match requirement.operator.as_str() {
        "In" => true,
        "NotIn" => false,
        _ => return None,
    };
    Some(NodeRequirement::Name {
        name: name.clone(),
        equal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn node_selector_terms_match_like_kubernetes() {
        let node_labels = labels(&[("disk", "ssd"), ("cores", "8"), ("zone", "a")]);
        let term = |expressions: Vec<NodeSelectorRequirement>, fields| NodeSelectorTerm {
            match_expressions: Some(expressions),
            match_fields: Some(fields),
        };
        let cases: Vec<(&str, Vec<NodeSelectorTerm>, bool)> = vec![
            (
                "In matches",
                vec![term(
                    vec![requirement("disk", "In", &["hdd", "ssd"])],
                    vec![],
                )],
                true,
            ),
            (
                "In misses",
                vec![term(vec![requirement("disk", "In", &["hdd"])], vec![])],
                false,
            ),
            (
                "NotIn on absent label",
                vec![term(vec![requirement("gpu", "NotIn", &["x"])], vec![])],
                true,
            ),
            (
                "NotIn on present value",
                vec![term(vec![requirement("disk", "NotIn", &["ssd"])], vec![])],
                false,
            ),
            (
                "Exists",
                vec![term(vec![requirement("zone", "Exists", &[])], vec![])],
                true,
            ),
            (
                "DoesNotExist",
                vec![term(vec![requirement("zone", "DoesNotExist", &[])], vec![])],
                false,
            ),
            (
                "Gt",
                vec![term(vec![requirement("cores", "Gt", &["4"])], vec![])],
                true,
            ),
            (
                "Gt equal",
                vec![term(vec![requirement("cores", "Gt", &["8"])], vec![])],
                false,
            ),
            (
                "Lt",
                vec![term(vec![requirement("cores", "Lt", &["16"])], vec![])],
                true,
            ),
            (
                "Lt on non-integer label",
                vec![term(vec![requirement("disk", "Lt", &["16"])], vec![])],
                false,
            ),
            (
                "Gt with two values is invalid",
                vec![term(vec![requirement("cores", "Gt", &["1", "2"])], vec![])],
                false,
            ),
            (
                "In without values is invalid",
                vec![term(vec![requirement("disk", "In", &[])], vec![])],
                false,
            ),
            (
                "unknown operator",
                vec![term(vec![requirement("disk", "Has", &["ssd"])], vec![])],
                false,
            ),
            (
                "expressions are ANDed",
                vec![term(
                    vec![
                        requirement("disk", "In", &["ssd"]),
                        requirement("zone", "In", &["b"]),
                    ],
                    vec![],
                )],
                false,
            ),
            (
                "terms are ORed",
                vec![
                    term(vec![requirement("zone", "In", &["b"])], vec![]),
                    term(vec![requirement("zone", "In", &["a"])], vec![]),
                ],
                true,
            ),
            (
                "empty term matches nothing",
                vec![term(vec![], vec![])],
                false,
            ),
            ("no terms match nothing", vec![], false),
            (
                "matchFields name In",
                vec![term(
                    vec![],
                    vec![requirement("metadata.name", "In", &["n1"])],
                )],
                true,
            ),
            (
                "matchFields name NotIn",
                vec![term(
                    vec![],
                    vec![requirement("metadata.name", "NotIn", &["n1"])],
                )],
                false,
            ),
            (
                "matchFields other field",
                vec![term(vec![], vec![requirement("spec.x", "In", &["n1"])])],
                false,
            ),
            (
                "matchFields with two names is invalid",
                vec![term(
                    vec![],
                    vec![requirement("metadata.name", "In", &["n1", "n2"])],
                )],
                false,
            ),
            (
                "fields and expressions are ANDed",
                vec![term(
                    vec![requirement("disk", "In", &["ssd"])],
                    vec![requirement("metadata.name", "In", &["n2"])],
                )],
                false,
            ),
        ];
        for (name, terms, want) in cases {
            assert_eq!(
                NodeMatcher::new(&terms).matches("n1", &node_labels),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let pod_labels = labels(&[("app", "web"), ("tier", "front")]);
        let expression = |key: &str, operator: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        };
        let selector = |match_labels: &[(&str, &str)],
                        expressions: Vec<LabelSelectorRequirement>| {
            LabelSelector {
                match_labels: Some(labels(match_labels)),
                match_expressions: Some(expressions),
            }
        };
        let cases: Vec<(&str, Option<LabelSelector>, bool)> = vec![
            ("absent selector matches nothing", None, false),
            (
                "empty selector matches everything",
                Some(LabelSelector::default()),
                true,
            ),
            (
                "matchLabels",
                Some(selector(&[("app", "web")], vec![])),
                true,
            ),
            (
                "matchLabels mismatch",
                Some(selector(&[("app", "db")], vec![])),
                false,
            ),
            (
                "In",
                Some(selector(
                    &[],
                    vec![expression("tier", "In", &["front", "back"])],
                )),
                true,
            ),
            (
                "NotIn",
                Some(selector(&[], vec![expression("tier", "NotIn", &["front"])])),
                false,
            ),
            (
                "Exists",
                Some(selector(&[], vec![expression("app", "Exists", &[])])),
                true,
            ),
            (
                "DoesNotExist",
                Some(selector(&[], vec![expression("db", "DoesNotExist", &[])])),
                true,
            ),
            (
                "invalid operator",
                Some(selector(&[], vec![expression("app", "Gt", &["1"])])),
                false,
            ),
            (
                "labels and expressions are ANDed",
                Some(selector(
                    &[("app", "web")],
                    vec![expression("tier", "In", &["back"])],
                )),
                false,
            ),
        ];
        for (name, selector, want) in cases {
            assert_eq!(
                LabelMatcher::new(selector.as_ref()).matches(&pod_labels),
                want,
                "{name}"
            );
        }
    }
}
