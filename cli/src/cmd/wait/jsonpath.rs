//! The part of Kubernetes' JSONPath that `wait --for=jsonpath=...` needs: field names
//! (`.status.phase`, `['app.kubernetes.io/name']`), indices (`[0]`, `[-1]`), wildcards
//! (`[*]`, `.*`) and filters (`[?(@.type=="Ready")]`, `[?(@.ready)]`); missing keys select
//! nothing rather than failing.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    /// `[?(@.path OP literal)]`, or `[?(@.path)]` (existence) when `op` is None.
    Filter {
        path: Vec<Step>,
        op: Option<(String, Value)>,
    },
}

/// A parsed expression, e.g. `{.status.conditions[?(@.type=="Ready")].status}`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parse an expression, braces optional (kubectl's relaxed form: `.status.phase`).
    pub fn parse(expr: &str) -> Result<JsonPath> {
        let expr = expr.trim().trim_matches(['\'', '"']);
        let inner = match expr.strip_prefix('{') {
            Some(rest) => rest
                .strip_suffix('}')
                .ok_or_else(|| anyhow!("unclosed action in jsonpath {expr:?}"))?,
            None => expr,
        };
        let inner = inner.trim();
        if inner.is_empty() {
            bail!("jsonpath expression cannot be empty");
        }
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        let mut chars: Vec<char> = inner.chars().collect();
        // A path without a leading dot (`status.phase`) means the same as `.status.phase`.
        if chars.first().is_some_and(|c| *c != '.' && *c != '[') {
            chars.insert(0, '.');
        }
        let (steps, rest) = parse_steps(&chars)?;
        if !rest.is_empty() {
            bail!(
                "unexpected {:?} in jsonpath {expr:?}",
                rest.iter().collect::<String>()
            );
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path selects in `root`.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.steps {
            current = current.into_iter().flat_map(|v| apply(step, v)).collect();
        }
        current
    }
}

fn apply<'a>(step: &Step, v: &'a Value) -> Vec<&'a Value> {
    match step {
        Step::Field(name) => v.get(name.as_str()).into_iter().collect(),
        Step::Index(i) => {
            let Some(items) = v.as_array() else {
                return vec![];
            };
            let idx = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(idx)
                .ok()
                .and_then(|i| items.get(i))
                .into_iter()
                .collect()
        }
        Step::Wildcard => match v {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => vec![],
        },
        Step::Filter { path, op } => {
            let Some(items) = v.as_array() else {
                return vec![];
            };
            let sub = JsonPath {
                steps: path.clone(),
            };
            items
                .iter()
                .filter(|item| {
                    let found = sub.find(item);
                    match op {
                        None => !found.is_empty(),
                        Some((op, literal)) => {
                            found.first().is_some_and(|f| compare(f, op, literal))
                        }
                    }
                })
                .collect()
        }
    }
}

fn compare(found: &Value, op: &str, literal: &Value) -> bool {
    let ordering = match (found, literal) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match (op, ordering) {
        ("==", Some(o)) => o.is_eq(),
        ("!=", Some(o)) => o.is_ne(),
        ("!=", None) => true,
        ("<", Some(o)) => o.is_lt(),
        ("<=", Some(o)) => o.is_le(),
        (">", Some(o)) => o.is_gt(),
        (">=", Some(o)) => o.is_ge(),
        _ => false,
    }
}

/// Parse steps until the input ends or a character that cannot start a step (`)`, an operator).
fn parse_steps(mut s: &[char]) -> Result<(Vec<Step>, &[char])> {
    let mut steps = Vec::new();
    loop {
        match s.first() {
            Some('.') => {
                s = &s[1..];
                if s.first() == Some(&'*') {
                    steps.push(Step::Wildcard);
                    s = &s[1..];
                    continue;
                }
                let end = s
                    .iter()
                    .position(|c| matches!(c, '.' | '[' | ')' | '=' | '!' | '<' | '>' | ' '))
                    .unwrap_or(s.len());
                if end == 0 {
                    bail!("jsonpath field name is empty");
                }
                steps.push(Step::Field(s[..end].iter().collect()));
                s = &s[end..];
            }
            Some('[') => {
                let close = matching_bracket(s)?;
                let inner: String = s[1..close].iter().collect();
                s = &s[close + 1..];
                steps.push(bracket(inner.trim())?);
            }
            _ => return Ok((steps, s)),
        }
    }
}

/// The index of the `]` closing the `[` at the start of `s`, skipping quoted text.
fn matching_bracket(s: &[char]) -> Result<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in s.iter().enumerate() {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    bail!("unterminated array in jsonpath")
}

fn bracket(inner: &str) -> Result<Step> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let chars: Vec<char> = filter
            .trim()
            .strip_prefix('@')
            .ok_or_else(|| anyhow!("a jsonpath filter must start with @: {inner:?}"))?
            .chars()
            .collect();
        let (path, rest) = parse_steps(&chars)?;
        let rest: String = rest.iter().collect();
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(Step::Filter { path, op: None });
        }
        let op_len = rest
            .chars()
            .take_while(|c| matches!(c, '=' | '!' | '<' | '>'))
            .count();
        let (op, literal) = rest.split_at(op_len);
        if !matches!(op, "==" | "!=" | "<" | "<=" | ">" | ">=") {
            bail!("unsupported jsonpath filter operator {op:?}");
        }
        return Ok(Step::Filter {
            path,
            op: Some((op.to_string(), literal_value(literal.trim())?)),
        });
    }
    if let Some(name) = inner
        .strip_prefix(['\'', '"'])
        .and_then(|n| n.strip_suffix(['\'', '"']))
    {
        return Ok(Step::Field(name.to_string()));
    }
    inner
        .parse()
        .map(Step::Index)
        .map_err(|_| anyhow!("unsupported jsonpath subscript [{inner}]"))
}

fn literal_value(s: &str) -> Result<Value> {
    if let Some(q) = s
        .strip_prefix(['\'', '"'])
        .and_then(|q| q.strip_suffix(['\'', '"']))
    {
        return Ok(Value::String(q.to_string()));
    }
    match s {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        _ => serde_json::from_str::<serde_json::Number>(s)
            .map(Value::Number)
            .map_err(|_| anyhow!("unsupported jsonpath filter value {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_fields_indices_wildcards_and_filters() {
        let pod = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "kubia"}},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "False"}
                ],
                "containerStatuses": [{"restartCount": 2, "ready": true}]
            }
        });
        let find = |expr: &str| {
            JsonPath::parse(expr)
                .unwrap()
                .find(&pod)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(find("{.status.phase}"), vec![json!("Running")]);
        assert_eq!(find(".status.phase"), vec![json!("Running")]);
        assert_eq!(
            find("{.status.conditions[?(@.type==\"Ready\")].status}"),
            vec![json!("False")]
        );
        assert_eq!(
            find("{.status.conditions[?(@.type=='Ready')].status}"),
            vec![json!("False")]
        );
        assert_eq!(
            find("{.status.conditions[*].type}"),
            vec![json!("Initialized"), json!("Ready")]
        );
        assert_eq!(find("{.status.conditions[-1].type}"), vec![json!("Ready")]);
        assert_eq!(
            find("{.status.containerStatuses[?(@.restartCount>1)].ready}"),
            vec![json!(true)]
        );
        assert_eq!(
            find("{.metadata.labels['app.kubernetes.io/name']}"),
            vec![json!("kubia")]
        );
        assert!(find("{.status.missing.deeper}").is_empty());
        assert!(JsonPath::parse("{}").is_err());
        assert!(JsonPath::parse("{.status[").is_err());
    }
}
