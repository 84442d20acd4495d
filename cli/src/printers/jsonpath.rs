//! kubectl's JSONPath templates (`-o jsonpath=...`, `--sort-by`, `-o custom-columns`), written
//! here because no Rust crate speaks kubectl's dialect: text with `{...}` actions, `{range}` /
//! `{end}` loops and `{"\n"}` quoted text around JSONPath expressions.
//!
//! Supported expressions: `$` / `@` (optional), `.field`, `['field']` and unions `['a','b']`,
//! escaped dots (`.metadata.labels.app\.kubernetes\.io/name`), `..field` (recursive descent),
//! `*` / `[*]`, indices `[0]` `[-1]` `[0,2]`, slices `[1:3]` `[::2]`, and filters
//! `[?(@.type=="Ready")]` with `== != < <= > >=` against strings, numbers, booleans or other
//! paths, or `[?(@.field)]` for presence. As `kubectl get` does by default, a missing field
//! selects nothing rather than failing; an index out of range fails.

mod parse;

use std::cmp::Ordering;

use serde_json::Value;

use parse::{parse_template, Cmp, Filter, Node, Operand, Step};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

impl Template {
    /// Parse a template such as `{range .items[*]}{.metadata.name}{"\n"}{end}`.
    pub fn parse(source: &str) -> Result<Template, String> {
        let nodes =
            parse_template(source).map_err(|e| format!("error parsing jsonpath {source}, {e}"))?;
        Ok(Template {
            source: source.to_string(),
            nodes,
        })
    }

    /// Parse a single expression written with or without braces and leading dot (`.a.b`, `a.b`,
    /// `{.a.b}`), as kubectl's `--sort-by` and custom-columns accept.
    pub fn parse_relaxed(expr: &str) -> Result<Template, String> {
        let inner = expr
            .strip_prefix('{')
            .and_then(|e| e.strip_suffix('}'))
            .unwrap_or(expr);
        let inner = inner.strip_prefix('.').unwrap_or(inner);
        if inner.is_empty() || inner.contains(['{', '}']) {
            return Err(format!(
                "unexpected path string {expr:?}, expected a 'name1.name2' or '.name1.name2' or \
                 '{{name1.name2}}' or '{{.name1.name2}}'"
            ));
        }
        Template::parse(&format!("{{.{inner}}}"))
    }

    /// The template's output for `data`.
    pub fn render(&self, data: &Value) -> Result<String, String> {
        let mut out = String::new();
        render_nodes(&self.nodes, data, &mut out).map_err(|e| {
            format!(
                "error executing jsonpath {:?}: Error executing template: {e}",
                self.source
            )
        })?;
        Ok(out)
    }

    /// The values the template's first expression selects in `data` (for sorting and columns).
    pub fn values(&self, data: &Value) -> Result<Vec<Value>, String> {
        let Some(path) = self.nodes.iter().find_map(|n| match n {
            Node::Path(p) => Some(p),
            _ => None,
        }) else {
            return Ok(Vec::new());
        };
        Ok(select(path, data, data)?.into_iter().cloned().collect())
    }
}

/// A value as a template prints it: strings bare, maps and lists as compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Order two values as `--sort-by` does: numbers numerically, otherwise by their text.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => value_text(a).cmp(&value_text(b)),
    }
}

// ---- evaluation ---------------------------------------------------------------------------------

fn render_nodes(nodes: &[Node], data: &Value, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let values = select(p, data, data)?;
                let texts: Vec<String> = values.into_iter().map(value_text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(p, body) => {
                let values = select(p, data, data)?;
                let items: Vec<&Value> = match values.as_slice() {
                    [Value::Array(a)] => a.iter().collect(),
                    _ => values,
                };
                for item in items {
                    render_nodes(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

/// The values `path` selects from `current`; `root` is what `$` means inside filters.
fn select<'a>(
    path: &[Step],
    current: &'a Value,
    root: &'a Value,
) -> Result<Vec<&'a Value>, String> {
    let mut values = vec![current];
    for step in path {
        let mut next = Vec::new();
        if let Step::Union(paths) = step {
            for p in paths {
                for v in &values {
                    next.extend(select(p, v, root)?);
                }
            }
            values = next;
            continue;
        }
        for v in values {
            match step {
                Step::Union(_) => unreachable!("handled above"),
                Step::Child(name) => {
                    if let Some(child) = v.get(name.as_str()) {
                        next.push(child);
                    }
                }
                Step::Wildcard => match v {
                    Value::Object(m) => next.extend(m.values()),
                    Value::Array(a) => next.extend(a.iter()),
                    _ => {}
                },
                Step::Descend => descend(v, &mut next),
                Step::Index(indices) => {
                    let Value::Array(a) = v else { continue };
                    for &i in indices {
                        let at = if i < 0 { a.len() as i64 + i } else { i };
                        let item = usize::try_from(at).ok().and_then(|at| a.get(at));
                        next.push(item.ok_or_else(|| {
                            format!("array index out of bounds: index {i}, length {}", a.len())
                        })?);
                    }
                }
                Step::Slice(start, end, step) => {
                    let Value::Array(a) = v else { continue };
                    let len = a.len() as i64;
                    let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
                    let (from, to) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(len)));
                    let step = step.filter(|s| *s > 0).unwrap_or(1);
                    let mut i = from;
                    while i < to {
                        next.push(&a[i as usize]);
                        i += step;
                    }
                }
                Step::Filter(f) => {
                    let Value::Array(a) = v else { continue };
                    for item in a {
                        if filter_matches(f, item, root)? {
                            next.push(item);
                        }
                    }
                }
            }
        }
        values = next;
    }
    Ok(values)
}

fn descend<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => m.values().for_each(|c| descend(c, out)),
        Value::Array(a) => a.iter().for_each(|c| descend(c, out)),
        _ => {}
    }
}

fn operand<'a>(
    o: &'a Operand,
    item: &'a Value,
    root: &'a Value,
) -> Result<Option<&'a Value>, String> {
    Ok(match o {
        Operand::Literal(v) => Some(v),
        Operand::Path(p) => select(p, item, root)?.into_iter().next(),
    })
}

fn filter_matches(f: &Filter, item: &Value, root: &Value) -> Result<bool, String> {
    let left = operand(&f.left, item, root)?;
    let Some((cmp, right)) = &f.comparison else {
        return Ok(left.is_some());
    };
    let (Some(l), Some(r)) = (left, operand(right, item, root)?) else {
        return Ok(false);
    };
    let order = match (l, r) {
        (Value::Number(_), Value::Number(_)) => l.as_f64().partial_cmp(&r.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) if matches!(cmp, Cmp::Eq | Cmp::Ne) => Some(a.cmp(b)),
        _ => None,
    };
    Ok(match (cmp, order) {
        (Cmp::Eq, o) => o == Some(Ordering::Equal),
        (Cmp::Ne, o) => o != Some(Ordering::Equal),
        (Cmp::Lt, Some(o)) => o == Ordering::Less,
        (Cmp::Le, Some(o)) => o != Ordering::Greater,
        (Cmp::Gt, Some(o)) => o == Ordering::Greater,
        (Cmp::Ge, Some(o)) => o != Ordering::Less,
        (_, None) => false,
    })
}
