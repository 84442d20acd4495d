//! Parsing kubectl's JSONPath templates: text and `{...}` actions into nodes, and each
//! expression into steps (members, wildcards, recursive descent, indices, slices, filters).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    Path(Path),
    Range(Path, Vec<Node>),
}

pub(super) type Path = Vec<Step>;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// A member.
    Child(String),
    /// `['a.b', 'c']`: each quoted path in turn, for every value so far.
    Union(Vec<Path>),
    /// Every member of an object or element of an array.
    Wildcard,
    /// The value itself and everything below it (the `..` of `..name`).
    Descend,
    Index(Vec<i64>),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Filter {
    pub left: Operand,
    pub comparison: Option<(Cmp, Operand)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Operand {
    Path(Path),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

pub(super) fn parse_template(src: &str) -> Result<Vec<Node>, String> {
    // Open `{range}` blocks: their paths and the nodes collected so far.
    let mut stack: Vec<(Option<Path>, Vec<Node>)> = vec![(None, Vec::new())];
    let mut rest = src;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            push_text(&mut stack, rest);
            break;
        };
        push_text(&mut stack, &rest[..open]);
        let close = action_end(&rest[open..]).ok_or("unclosed action")? + open;
        let action = rest[open + 1..close].trim();
        rest = &rest[close + 1..];
        let top = &mut stack.last_mut().expect("the template level").1;
        if action == "end" {
            if stack.len() == 1 {
                return Err("not in range, nothing to end".into());
            }
            let (path, body) = stack.pop().expect("an open range");
            let path = path.expect("a range path");
            stack
                .last_mut()
                .expect("the enclosing level")
                .1
                .push(Node::Range(path, body));
        } else if let Some(expr) = action.strip_prefix("range ") {
            stack.push((Some(parse_path(expr.trim())?), Vec::new()));
        } else if action.starts_with(['"', '\'']) {
            top.push(Node::Text(parse_quoted(action)?));
        } else if !action.is_empty() {
            top.push(Node::Path(parse_path(action)?));
        }
    }
    if stack.len() > 1 {
        return Err("unclosed range: missing {end}".into());
    }
    Ok(stack.pop().expect("the template level").1)
}

fn push_text(stack: &mut [(Option<Path>, Vec<Node>)], text: &str) {
    if !text.is_empty() {
        stack
            .last_mut()
            .expect("a level")
            .1
            .push(Node::Text(text.to_string()));
    }
}

/// The index of the `}` closing the action `s` starts with, skipping quoted text and brackets.
fn action_end(s: &str) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0i32;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (_, '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ']' | ')') => depth -= 1,
            (None, '}') if depth <= 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// A quoted string with `\n`, `\t`, `\\` and quote escapes.
fn parse_quoted(s: &str) -> Result<String, String> {
    let quote = s.chars().next().ok_or("empty string")?;
    let body = s[1..]
        .strip_suffix(quote)
        .ok_or_else(|| format!("unterminated quoted string {s}"))?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

fn parse_path(expr: &str) -> Result<Path, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    if matches!(chars.first(), Some('$' | '@')) {
        i = 1;
    }
    let mut steps = Vec::new();
    // A path may start with a bare name (`metadata.name`).
    if i < chars.len() && chars[i] != '.' && chars[i] != '[' {
        steps.push(Step::Child(field_name(&chars, &mut i)?));
    }
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                steps.push(Step::Descend);
                i += 2;
                if chars.get(i) == Some(&'*') {
                    steps.push(Step::Wildcard);
                    i += 1;
                } else if i < chars.len() && chars[i] != '[' {
                    steps.push(Step::Child(field_name(&chars, &mut i)?));
                }
            }
            '.' if chars.get(i + 1) == Some(&'*') => {
                steps.push(Step::Wildcard);
                i += 2;
            }
            '.' => {
                i += 1;
                if i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    steps.push(Step::Child(field_name(&chars, &mut i)?));
                }
            }
            '[' => {
                let end = bracket_end(&chars, i).ok_or("unclosed array expect ]")?;
                let inner: String = chars[i + 1..end].iter().collect();
                steps.push(parse_bracket(inner.trim())?);
                i = end + 1;
            }
            c => {
                return Err(format!(
                    "unrecognized character in action: {c:?} in {expr:?}"
                ))
            }
        }
    }
    Ok(steps)
}

/// A member name up to the next unescaped `.` or `[`; `\.` is a literal dot.
fn field_name(chars: &[char], i: &mut usize) -> Result<String, String> {
    let mut name = String::new();
    while *i < chars.len() {
        match chars[*i] {
            '\\' if *i + 1 < chars.len() => {
                name.push(chars[*i + 1]);
                *i += 2;
            }
            '.' | '[' => break,
            c => {
                name.push(c);
                *i += 1;
            }
        }
    }
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("invalid field name {name:?}"));
    }
    Ok(name)
}

/// The index of the `]` matching the `[` at `open`, skipping quoted text and nested brackets.
fn bracket_end(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ']' | ')') => {
                depth -= 1;
                if depth == 0 && c == ']' {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix('?') {
        let body = filter
            .trim()
            .strip_prefix('(')
            .and_then(|f| f.strip_suffix(')'))
            .ok_or_else(|| format!("invalid filter [{inner}]"))?;
        return Ok(Step::Filter(Box::new(parse_filter(body.trim())?)));
    }
    if inner.starts_with(['\'', '"']) {
        // kubectl reads a quoted member as a dotted path; `\.` is a literal dot.
        let paths = split_outside_quotes(inner, ',')
            .iter()
            .map(|n| {
                let quoted = n.trim();
                let body = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or("");
                if quoted.len() < 2 || !quoted.ends_with(&quoted[..1]) {
                    return Err(format!("unterminated quoted string {quoted}"));
                }
                let chars: Vec<char> = body.chars().collect();
                let mut i = 0;
                let mut path = Vec::new();
                while i < chars.len() {
                    path.push(Step::Child(field_name(&chars, &mut i)?));
                    i += 1;
                }
                Ok(path)
            })
            .collect::<Result<_, String>>()?;
        return Ok(Step::Union(paths));
    }
    let int = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| format!("invalid array index {s:?}"))
    };
    if inner.contains(':') {
        let parts: Vec<&str> = inner.split(':').collect();
        if parts.len() > 3 {
            return Err(format!("invalid slice [{inner}]"));
        }
        let part = |n: usize| parts.get(n).map_or(Ok(None), |p| int(p));
        return Ok(Step::Slice(part(0)?, part(1)?, part(2)?));
    }
    let indices = inner
        .split(',')
        .map(|s| int(s)?.ok_or_else(|| format!("invalid array index [{inner}]")))
        .collect::<Result<_, _>>()?;
    Ok(Step::Index(indices))
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c == sep => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_filter(body: &str) -> Result<Filter, String> {
    const OPERATORS: &[(&str, Cmp)] = &[
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        ("<=", Cmp::Le),
        (">=", Cmp::Ge),
        ("<", Cmp::Lt),
        (">", Cmp::Gt),
    ];
    let mut quote = None;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, _) => {
                if let Some((op, cmp)) = OPERATORS.iter().find(|(op, _)| body[i..].starts_with(op))
                {
                    return Ok(Filter {
                        left: parse_operand(body[..i].trim())?,
                        comparison: Some((*cmp, parse_operand(body[i + op.len()..].trim())?)),
                    });
                }
            }
        }
    }
    Ok(Filter {
        left: parse_operand(body)?,
        comparison: None,
    })
}

fn parse_operand(s: &str) -> Result<Operand, String> {
    if s.starts_with(['@', '$']) {
        return Ok(Operand::Path(parse_path(s)?));
    }
    if s.starts_with(['"', '\'']) {
        return Ok(Operand::Literal(Value::String(parse_quoted(s)?)));
    }
    match s {
        "true" => return Ok(Operand::Literal(Value::Bool(true))),
        "false" => return Ok(Operand::Literal(Value::Bool(false))),
        _ => {}
    }
    let number: serde_json::Number = s.parse().map_err(|_| {
        format!(
            "invalid filter operand {s:?}: expected @.path, a quoted string, a number or a boolean"
        )
    })?;
    Ok(Operand::Literal(Value::Number(number)))
}
