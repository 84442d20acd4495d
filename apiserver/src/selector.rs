//! Kubernetes label selectors (`app=kubia,tier in (a,b),!canary`) and field selectors
//! (`spec.nodeName=,status.phase!=Running`): parsing kubectl's string syntax, converting the
//! structured `metav1.LabelSelector`, rendering back, and matching objects.
//!
//! The grammar, the matching rules and the error wording follow Kubernetes'
//! `apimachinery/pkg/labels` and `apimachinery/pkg/fields`; messages also quote the requirement
//! that failed, so a long selector's mistake is easy to find.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use crate::kinds::KindInfo;
use crate::validation::common::{label_value, qualified_name};

/// A label selector: every requirement must match. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (then operator and values), so equal selectors compare and render equally.
    requirements: Vec<Requirement>,
}

/// One requirement of a label selector: `key <operator> values`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and de-duplicated; one value for `=`, `!=`, `>`, `<`; none for exists and `!key`.
    pub values: Vec<String>,
}

/// A label requirement's operator. `==` parses as [`Operator::Equals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// `key>3`: the label's value is an integer greater than the requirement's.
    GreaterThan,
    /// `key<3`: the label's value is an integer less than the requirement's.
    LessThan,
}

impl LabelSelector {
    /// Parse kubectl's label selector syntax (`kubectl get pods -l ...`).
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let tokens = lex(s);
        let mut parser = Parser {
            input: s,
            tokens,
            pos: 0,
            last: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort();
        requirements.dedup();
        Ok(LabelSelector { requirements })
    }

    /// The selector that matches every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// A selector requiring exactly these labels, like a ReplicationController's `spec.selector`
    /// (Kubernetes' `SelectorFromSet`; keys and values are not validated here).
    pub fn from_map(labels: &BTreeMap<String, String>) -> LabelSelector {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        LabelSelector { requirements }
    }

    /// Convert a structured selector (`matchLabels` + `matchExpressions`), as found in
    /// Deployments, ReplicaSets, Jobs and affinity terms, so that it shares this matcher.
    pub fn from_label_selector(sel: &metav1::LabelSelector) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            requirements.push(new_requirement(key, Operator::Equals, vec![value.clone()])?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(format!(
                        "\"{other}\" is not a valid label selector operator (key \"{}\"); supported operators: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
                        expr.key
                    ))
                }
            };
            requirements.push(new_requirement(
                &expr.key,
                operator,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        requirements.sort();
        requirements.dedup();
        Ok(LabelSelector { requirements })
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The one value the selector requires `key` to have, if it pins it (`key=v` or `key in (v)`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.key == key)
            .and_then(|r| match (r.operator, r.values.as_slice()) {
                (Operator::Equals | Operator::In, [one]) => Some(one.as_str()),
                _ => None,
            })
    }
}

impl Requirement {
    /// Kubernetes' rules: `!=` and `notin` also match objects without the label; `=`, `in`, `>`
    /// and `<` require it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for LabelSelector {
    /// Requirements in key order, joined by `,`: `app=kubia,tier in (a,b),!canary`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={values}", self.key),
            Operator::NotEquals => write!(f, "{}!={values}", self.key),
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{values}", self.key),
            Operator::LessThan => write!(f, "{}<{values}", self.key),
        }
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LabelSelector::parse(s)
    }
}

/// A field selector: every requirement must match. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// Sorted, so equal selectors compare and render equally.
    requirements: Vec<FieldRequirement>,
}

/// `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldRequirement {
    pub field: String,
    /// `true` for `!=`.
    pub negated: bool,
    pub value: String,
}

impl FieldSelector {
    /// Parse `a=b,c!=d` (`==` is `=`). Values may escape `\,`, `\=` and `\\`.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut requirements = Vec::new();
        for term in split_unescaped_commas(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let cant =
                |why: String| format!("invalid selector: '{s}'; can't understand '{term}': {why}");
            let Some((lhs, op, rhs)) = split_term(term) else {
                return Err(cant(match unsupported_operator(term) {
                    Some(op) => format!("operator '{op}' is not supported; field selectors support '=', '==' and '!='"),
                    None => "expected <field>=<value>, <field>==<value> or <field>!=<value>".into(),
                }));
            };
            if let Some(bad) = unsupported_operator(lhs) {
                return Err(cant(format!(
                    "operator '{bad}{op}' is not supported; field selectors support '=', '==' and '!='"
                )));
            }
            let field = lhs.trim();
            if field.is_empty() {
                return Err(cant("the field name is empty".into()));
            }
            let value = unescape_value(rhs.trim())
                .map_err(|e| format!("invalid field selector: {e} in '{term}'"))?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                negated: op == "!=",
                value,
            });
        }
        requirements.sort();
        requirements.dedup();
        Ok(FieldSelector { requirements })
    }

    /// The selector that matches every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Check that every field is selectable for the kind, so a bad selector is rejected when
    /// the request arrives rather than when the first object is compared.
    pub fn validate_for(&self, info: &KindInfo) -> Result<(), String> {
        for r in &self.requirements {
            if find_field(info, &r.field).is_none() {
                return Err(format!("field label not supported: {}", r.field));
            }
        }
        Ok(())
    }

    /// Whether the object is selected. A missing field compares as `""` (or the value Kubernetes'
    /// typed objects would report, such as `false` or `0`); booleans and numbers compare as text.
    pub fn matches(&self, obj: &Value, info: &KindInfo) -> Result<bool, String> {
        for r in &self.requirements {
            let field = find_field(info, &r.field)
                .ok_or_else(|| format!("field label not supported: {}", r.field))?;
            if (field.value(obj) == r.value) == r.negated {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The one value the selector requires `field` to have, if it pins it (`metadata.name=x`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        let mut pinned = self
            .requirements
            .iter()
            .filter(|r| r.field == field && !r.negated);
        match (pinned.next(), pinned.next()) {
            (Some(r), None) => Some(r.value.as_str()),
            _ => None,
        }
    }

    /// The fields selectable for a kind, for messages and documentation.
    pub fn supported_fields(info: &KindInfo) -> Vec<&'static str> {
        COMMON_FIELDS
            .iter()
            .chain(kind_fields(info))
            .map(|f| f.name)
            .collect()
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if r.negated { "!=" } else { "=" };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FieldSelector::parse(s)
    }
}

// ---- label selectors: validation, lexer and parser (Kubernetes' `labels.Parser`) ----

/// A requirement with its key and values validated (Kubernetes' `NewRequirement`).
fn new_requirement(
    key: &str,
    operator: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, String> {
    check_key(key)?;
    let problem = match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            Some("for 'in', 'notin' operators, values set can't be empty")
        }
        Operator::Equals | Operator::NotEquals if values.len() != 1 => {
            Some("exact-match compatibility requires one single value")
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            Some("values set must be empty for exists and does not exist")
        }
        Operator::GreaterThan | Operator::LessThan
            if values.len() != 1 || values[0].parse::<i64>().is_err() =>
        {
            Some(
                "for 'Gt', 'Lt' operators, exactly one value is required and it must be an integer",
            )
        }
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(format!("key \"{key}\": {problem}"));
    }
    for v in &values {
        let problems = label_value(v);
        if !problems.is_empty() {
            return Err(format!(
                "invalid label value \"{v}\" for key \"{key}\": {}",
                problems.join("; ")
            ));
        }
    }
    values.sort();
    values.dedup();
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

fn check_key(key: &str) -> Result<(), String> {
    let problems = qualified_name(key);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "invalid label key \"{key}\": {}",
            problems.join("; ")
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    Not,
    OpenPar,
    ClosePar,
    Comma,
    End,
}

impl Tok {
    /// The token as the user wrote it, for messages (`''` at the end of the input).
    fn literal(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Equals => "=",
            Tok::DoubleEquals => "==",
            Tok::NotEquals => "!=",
            Tok::GreaterThan => ">",
            Tok::LessThan => "<",
            Tok::Not => "!",
            Tok::OpenPar => "(",
            Tok::ClosePar => ")",
            Tok::Comma => ",",
            Tok::End => "",
        }
    }

    /// Where values are expected, `in` and `notin` are ordinary identifiers (`x in (in)`).
    fn as_value(&self) -> Tok {
        match self {
            Tok::In => Tok::Ident("in".into()),
            Tok::NotIn => Tok::Ident("notin".into()),
            other => other.clone(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Tokens with their byte spans; always ends with `Tok::End`.
fn lex(s: &str) -> Vec<(Tok, usize, usize)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next = chars.peek().map(|&(_, n)| n);
            let (tok, len) = match (c, next) {
                ('!', Some('=')) => (Tok::NotEquals, 2),
                ('=', Some('=')) => (Tok::DoubleEquals, 2),
                ('!', _) => (Tok::Not, 1),
                ('=', _) => (Tok::Equals, 1),
                ('(', _) => (Tok::OpenPar, 1),
                (')', _) => (Tok::ClosePar, 1),
                (',', _) => (Tok::Comma, 1),
                ('>', _) => (Tok::GreaterThan, 1),
                _ => (Tok::LessThan, 1),
            };
            if len == 2 {
                chars.next();
            }
            out.push((tok, start, start + len));
            continue;
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let word = &s[start..end];
        let tok = match word {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Ident(word.to_string()),
        };
        out.push((tok, start, end));
    }
    out.push((Tok::End, s.len(), s.len()));
    out
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<(Tok, usize, usize)>,
    pos: usize,
    /// The index of the last consumed token, to quote a failed requirement.
    last: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].0
    }

    /// Consume a token; at the end of the input, `Tok::End` is returned again and again.
    fn next(&mut self) -> Tok {
        self.last = self.pos;
        let tok = self.tokens[self.pos].0.clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        tok
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.peek().as_value() {
                Tok::Ident(_) | Tok::Not => {
                    let start = self.tokens[self.pos].1;
                    let requirement = self.parse_requirement().map_err(|e| {
                        // Quote the requirement up to and including the token that failed.
                        let end = self.tokens[self.last].2.max(start);
                        format!(
                            "unable to parse requirement: {e} (in \"{}\")",
                            self.input[start..end].trim()
                        )
                    })?;
                    requirements.push(requirement);
                    match self.next().as_value() {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let after = self.peek().as_value();
                            if !matches!(after, Tok::Ident(_) | Tok::Not) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    after.literal()
                                ));
                            }
                        }
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            ))
                        }
                    }
                }
                Tok::End => return Ok(requirements),
                other => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let mut tok = self.next().as_value();
        let negated = tok == Tok::Not;
        if negated {
            tok = self.next().as_value();
        }
        let Tok::Ident(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        check_key(&key)?;
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return new_requirement(&key, operator, Vec::new());
        }
        if negated {
            // `!key` takes no operator (Kubernetes reports the operator it finds instead).
            let found = self.next();
            return Err(format!(
                "found '{}', expected: ',' or 'end of string' after '!{key}'",
                found.literal()
            ));
        }
        let operator = match self.next() {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals | Tok::DoubleEquals => Operator::Equals,
            Tok::NotEquals => Operator::NotEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            other => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    other.literal()
                ));
            }
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(&key, operator, values)
    }

    /// `(a,b,c)`; empty entries (`(a,,b)`, `()`) are the empty value, as in Kubernetes.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let open = self.next();
        if open != Tok::OpenPar {
            return Err(format!("found '{}', expected: '('", open.literal()));
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next().as_value() {
                Tok::Ident(v) if expect_value => {
                    values.push(v);
                    expect_value = false;
                }
                Tok::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Tok::ClosePar => {
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                other if expect_value => {
                    return Err(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        other.literal()
                    ))
                }
                other => return Err(format!("found '{}', expected: ',' or ')'", other.literal())),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        match self.peek().as_value() {
            Tok::End | Tok::Comma => Ok(vec![String::new()]),
            _ => match self.next().as_value() {
                Tok::Ident(v) => Ok(vec![v]),
                other => Err(format!("found '{}', expected: identifier", other.literal())),
            },
        }
    }
}

// ---- field selectors: the selectable fields of each kind ----

/// One selectable field: its name and where its value lives.
struct Field {
    name: &'static str,
    /// JSON pointers tried in order; the first present one gives the value.
    pointers: &'static [&'static str],
    /// The value when none is present.
    absent: &'static str,
}

impl Field {
    fn value(&self, obj: &Value) -> String {
        for p in self.pointers {
            match obj.pointer(p) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => return s.clone(),
                Some(Value::Bool(b)) => return b.to_string(),
                Some(Value::Number(n)) => return n.to_string(),
                Some(other) => return other.to_string(),
            }
        }
        self.absent.to_string()
    }
}

const fn field(
    name: &'static str,
    pointers: &'static [&'static str],
    absent: &'static str,
) -> Field {
    Field {
        name,
        pointers,
        absent,
    }
}

/// Every kind's selectable fields. (Kubernetes offers `metadata.namespace` only for namespaced
/// kinds; rkube accepts it everywhere, where cluster-scoped objects have the namespace `""`.)
static COMMON_FIELDS: &[Field] = &[
    field("metadata.name", &["/metadata/name"], ""),
    field("metadata.namespace", &["/metadata/namespace"], ""),
];

static POD_FIELDS: &[Field] = &[
    field("spec.nodeName", &["/spec/nodeName"], ""),
    field("spec.restartPolicy", &["/spec/restartPolicy"], ""),
    field("spec.schedulerName", &["/spec/schedulerName"], ""),
    field("spec.serviceAccountName", &["/spec/serviceAccountName"], ""),
    field("spec.hostNetwork", &["/spec/hostNetwork"], "false"),
    field("status.phase", &["/status/phase"], ""),
    field(
        "status.podIP",
        &["/status/podIP", "/status/podIPs/0/ip"],
        "",
    ),
    field(
        "status.nominatedNodeName",
        &["/status/nominatedNodeName"],
        "",
    ),
];

static NODE_FIELDS: &[Field] = &[field(
    "spec.unschedulable",
    &["/spec/unschedulable"],
    "false",
)];

static EVENT_FIELDS: &[Field] = &[
    field("involvedObject.kind", &["/involvedObject/kind"], ""),
    field(
        "involvedObject.namespace",
        &["/involvedObject/namespace"],
        "",
    ),
    field("involvedObject.name", &["/involvedObject/name"], ""),
    field("involvedObject.uid", &["/involvedObject/uid"], ""),
    field(
        "involvedObject.apiVersion",
        &["/involvedObject/apiVersion"],
        "",
    ),
    field(
        "involvedObject.resourceVersion",
        &["/involvedObject/resourceVersion"],
        "",
    ),
    field(
        "involvedObject.fieldPath",
        &["/involvedObject/fieldPath"],
        "",
    ),
    field("reason", &["/reason"], ""),
    field("reportingComponent", &["/reportingComponent"], ""),
    // Kubernetes: the source component, or the reporting controller for newer events.
    field("source", &["/source/component", "/reportingComponent"], ""),
    field("type", &["/type"], ""),
];

static SECRET_FIELDS: &[Field] = &[field("type", &["/type"], "")];
static NAMESPACE_FIELDS: &[Field] = &[field("status.phase", &["/status/phase"], "")];
static REPLICAS_FIELDS: &[Field] = &[field("status.replicas", &["/status/replicas"], "0")];
/// Kubernetes names the selectable field `status.successful`; the object field is `succeeded`.
static JOB_FIELDS: &[Field] = &[field("status.successful", &["/status/succeeded"], "0")];

fn kind_fields(info: &KindInfo) -> &'static [Field] {
    match (info.group, info.kind) {
        ("", "Pod") => POD_FIELDS,
        ("", "Node") => NODE_FIELDS,
        ("", "Event") => EVENT_FIELDS,
        ("", "Secret") => SECRET_FIELDS,
        ("", "Namespace") => NAMESPACE_FIELDS,
        ("", "ReplicationController") | ("apps", "ReplicaSet") => REPLICAS_FIELDS,
        ("batch", "Job") => JOB_FIELDS,
        _ => &[],
    }
}

fn find_field(info: &KindInfo, name: &str) -> Option<&'static Field> {
    COMMON_FIELDS
        .iter()
        .chain(kind_fields(info))
        .find(|f| f.name == name)
}

/// Split on commas that are not escaped with a backslash.
fn split_unescaped_commas(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Kubernetes' `splitTerm`: the first `!=`, `==` or `=` splits field from value.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

/// An operator-looking part of a term that field selectors do not support (`<`, `in`, `!`...).
fn unsupported_operator(s: &str) -> Option<String> {
    if let Some(c) = s.chars().find(|c| matches!(c, '<' | '>' | '!' | '~')) {
        return Some(c.to_string());
    }
    s.split_whitespace()
        .skip(1)
        .find(|w| matches!(*w, "in" | "notin" | "exists"))
        .map(str::to_string)
}

fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("invalid escape sequence: \\".into()),
            },
            ',' | '=' => return Err(format!("unescaped character: {c}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::resolve;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_renders_valid_selectors() {
        // (input, canonical rendering)
        for (input, rendered) in [
            ("", ""),
            ("   ", ""),
            ("app=kubia", "app=kubia"),
            ("app==kubia", "app=kubia"),
            ("app = kubia", "app=kubia"),
            ("app!=kubia", "app!=kubia"),
            ("tier in (b, a)", "tier in (a,b)"),
            ("tier  in(a,b,a)", "tier in (a,b)"),
            ("tier notin (a)", "tier notin (a)"),
            ("env", "env"),
            ("!env", "!env"),
            ("! env", "!env"),
            ("tier in (a,b),app=kubia", "app=kubia,tier in (a,b)"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("x in (in, notin)", "x in (in,notin)"),
            (
                "app.kubernetes.io/name=web,rel=",
                "app.kubernetes.io/name=web,rel=",
            ),
            ("app=", "app="),
            ("gpus>1,zone<3", "gpus>1,zone<3"),
            ("in=x", "in=x"),
            ("a=b,a=b", "a=b"),
            ("\tapp=kubia ,\n env ", "app=kubia,env"),
        ] {
            let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), rendered, "{input:?}");
            // Rendering is a fixed point: it parses back to the same selector.
            assert_eq!(
                LabelSelector::parse(&sel.to_string()).unwrap(),
                sel,
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_selectors_with_kubernetes_messages() {
        for (input, message) in [
            ("app in", "unable to parse requirement: found '', expected: '(' (in \"app in\")"),
            ("app in (a", "unable to parse requirement: found '', expected: ',' or ')' (in \"app in (a\")"),
            ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')' (in \"app in (a b\")"),
            ("app in a", "unable to parse requirement: found 'a', expected: '(' (in \"app in a\")"),
            ("app in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier (in \"app in (=\")"),
            ("app (a)", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt (in \"app (\")"),
            ("app kubia", "unable to parse requirement: found 'kubia', expected: in, notin, =, ==, !=, gt, lt (in \"app kubia\")"),
            ("app=(a)", "unable to parse requirement: found '(', expected: identifier (in \"app=(\")"),
            ("!", "unable to parse requirement: found '', expected: identifier (in \"!\")"),
            ("!app=x", "unable to parse requirement: found '=', expected: ',' or 'end of string' after '!app' (in \"!app=\")"),
            ("app=a b", "found 'b', expected: ',' or 'end of string'"),
            ("app=a,", "found '', expected: identifier after ','"),
            ("app=a,,b", "found ',', expected: identifier after ','"),
            (",app", "found ',', expected: !, identifier, or 'end of string'"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("gpus>many", "unable to parse requirement: key \"gpus\": for 'Gt', 'Lt' operators, exactly one value is required and it must be an integer (in \"gpus>many\")"),
        ] {
            assert_eq!(LabelSelector::parse(input), Err(message.to_string()), "{input:?}");
        }
        // Keys and values are validated like labels, and the message names them.
        let bad_key = LabelSelector::parse("app=a,Bad_/x=1").unwrap_err();
        assert!(
            bad_key.starts_with(
                "unable to parse requirement: invalid label key \"Bad_/x\": prefix part"
            ),
            "{bad_key}"
        );
        assert!(bad_key.ends_with("(in \"Bad_/x\")"), "{bad_key}");
        let bad_value = LabelSelector::parse("app=-kubia").unwrap_err();
        assert!(
            bad_value
                .contains("invalid label value \"-kubia\" for key \"app\": a valid label must be"),
            "{bad_value}"
        );
        let long = format!("app in (a,{})", "v".repeat(64));
        assert!(LabelSelector::parse(&long)
            .unwrap_err()
            .contains("must be no more than 63 characters"));
    }

    #[test]
    fn matches_labels() {
        let web = labels(&[("app", "kubia"), ("tier", "a"), ("gpus", "2")]);
        let bare = labels(&[]);
        // (selector, matches web, matches bare)
        for (selector, on_web, on_bare) in [
            ("", true, true),
            ("app=kubia", true, false),
            ("app=other", false, false),
            ("app!=other", true, true),
            ("app!=kubia", false, true),
            ("tier in (a,b)", true, false),
            ("tier in (b)", false, false),
            ("tier notin (b)", true, true),
            ("tier notin (a)", false, true),
            ("app", true, false),
            ("!app", false, true),
            ("app=kubia,tier in (a,b)", true, false),
            ("app=kubia,tier in (b)", false, false),
            ("gpus>1", true, false),
            ("gpus<2", false, false),
            ("app>1", false, false),
            ("rel=", false, false),
            ("rel!=", true, true),
        ] {
            let sel = LabelSelector::parse(selector).unwrap();
            assert_eq!(sel.matches(&web), on_web, "{selector:?} on web");
            assert_eq!(sel.matches(&bare), on_bare, "{selector:?} on bare");
        }
        assert!(LabelSelector::parse("rel=")
            .unwrap()
            .matches(&labels(&[("rel", "")])));
    }

    #[test]
    fn exact_matches_and_map_selectors() {
        let sel = LabelSelector::parse("app=kubia,tier in (a),env in (a,b),!x").unwrap();
        assert_eq!(sel.requires_exact_match("app"), Some("kubia"));
        assert_eq!(sel.requires_exact_match("tier"), Some("a"));
        assert_eq!(sel.requires_exact_match("env"), None);
        assert_eq!(sel.requires_exact_match("x"), None);
        let rc = LabelSelector::from_map(&labels(&[("tier", "a"), ("app", "kubia")]));
        assert_eq!(rc.to_string(), "app=kubia,tier=a");
        assert!(LabelSelector::from_map(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn converts_structured_selectors() {
        let structured = |v: Value| -> metav1::LabelSelector { serde_json::from_value(v).unwrap() };
        for (sel, rendered) in [
            (json!({}), ""),
            (json!({"matchLabels": {}}), ""),
            (json!({"matchLabels": {"app": "kubia"}}), "app=kubia"),
            (
                json!({
                    "matchLabels": {"app": "kubia"},
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["b", "a"]},
                        {"key": "env", "operator": "NotIn", "values": ["prod"]},
                        {"key": "canary", "operator": "DoesNotExist"},
                        {"key": "zone", "operator": "Exists", "values": []},
                    ]
                }),
                "app=kubia,!canary,env notin (prod),tier in (a,b),zone",
            ),
        ] {
            let converted = LabelSelector::from_label_selector(&structured(sel.clone())).unwrap();
            assert_eq!(converted.to_string(), rendered, "{sel}");
            assert_eq!(LabelSelector::parse(rendered).unwrap(), converted, "{sel}");
        }
        let everything = LabelSelector::from_label_selector(&structured(json!({}))).unwrap();
        assert!(everything.matches(&labels(&[("any", "thing")])));

        for (sel, message) in [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "\"Equals\" is not a valid label selector operator (key \"a\")",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "key \"a\": for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "key \"a\": values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchLabels": {"app": "a b"}}),
                "invalid label value \"a b\" for key \"app\"",
            ),
            (
                json!({"matchLabels": {"-app": "a"}}),
                "invalid label key \"-app\"",
            ),
        ] {
            let err = LabelSelector::from_label_selector(&structured(sel.clone())).unwrap_err();
            assert!(err.starts_with(message), "{sel}: {err}");
        }
    }

    #[test]
    fn parses_and_renders_field_selectors() {
        for (input, rendered) in [
            ("", ""),
            ("spec.nodeName=", "spec.nodeName="),
            ("status.phase==Running", "status.phase=Running"),
            (
                "status.phase != Running , metadata.name=web",
                "metadata.name=web,status.phase!=Running",
            ),
            ("metadata.name=a\\,b\\=c\\\\", "metadata.name=a\\,b\\=c\\\\"),
        ] {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), rendered, "{input:?}");
            assert_eq!(
                FieldSelector::parse(&sel.to_string()).unwrap(),
                sel,
                "{input:?}"
            );
        }
        assert_eq!(
            FieldSelector::parse("metadata.name=a\\,b")
                .unwrap()
                .requirements()[0]
                .value,
            "a,b"
        );

        for (input, message) in [
            ("status.phase<Running", "invalid selector: 'status.phase<Running'; can't understand 'status.phase<Running': operator '<' is not supported; field selectors support '=', '==' and '!='"),
            ("spec.nodeName in (a)", "invalid selector: 'spec.nodeName in (a)'; can't understand 'spec.nodeName in (a)': operator 'in' is not supported; field selectors support '=', '==' and '!='"),
            ("status.replicas>=2", "invalid selector: 'status.replicas>=2'; can't understand 'status.replicas>=2': operator '>=' is not supported; field selectors support '=', '==' and '!='"),
            ("a=b,spec.nodeName", "invalid selector: 'a=b,spec.nodeName'; can't understand 'spec.nodeName': expected <field>=<value>, <field>==<value> or <field>!=<value>"),
            ("=x", "invalid selector: '=x'; can't understand '=x': the field name is empty"),
            ("metadata.name=a=b", "invalid field selector: unescaped character: = in 'metadata.name=a=b'"),
            ("metadata.name=a\\b", "invalid field selector: invalid escape sequence: \\b in 'metadata.name=a\\b'"),
        ] {
            assert_eq!(FieldSelector::parse(input), Err(message.to_string()), "{input:?}");
        }
    }

    #[test]
    fn field_selectors_match_per_kind() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "nominatedNodeName": "node-2"}
        });
        let pending = json!({"metadata": {"name": "new", "namespace": "default"}, "spec": {}, "status": {"phase": "Pending"}});
        let node = json!({"metadata": {"name": "node-1"}, "spec": {"unschedulable": true}});
        let fresh_node = json!({"metadata": {"name": "node-2"}, "spec": {}});
        let event = json!({
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u-1", "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{web}"},
            "reason": "Scheduled", "reportingComponent": "rkube-scheduler", "type": "Normal"
        });
        let secret =
            json!({"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/tls"});
        let namespace = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        let rs =
            json!({"metadata": {"name": "rs", "namespace": "default"}, "status": {"replicas": 3}});
        let empty_rc = json!({"metadata": {"name": "rc", "namespace": "default"}, "status": {}});
        let job =
            json!({"metadata": {"name": "j", "namespace": "default"}, "status": {"succeeded": 1}});

        // (kind, object, selector, matches)
        for (kind, obj, selector, want) in [
            ("pods", &pod, "metadata.name=web", true),
            ("pods", &pod, "metadata.namespace=default,metadata.name!=web", false),
            ("pods", &pod, "spec.nodeName=node-1", true),
            ("pods", &pod, "spec.nodeName=", false),
            ("pods", &pending, "spec.nodeName=", true),
            ("pods", &pending, "spec.nodeName!=", false),
            ("pods", &pod, "spec.restartPolicy=Always,spec.schedulerName=default-scheduler", true),
            ("pods", &pod, "spec.serviceAccountName=default", true),
            ("pods", &pod, "spec.hostNetwork=false", true),
            ("pods", &pod, "status.phase!=Running", false),
            ("pods", &pending, "status.phase!=Running", true),
            ("pods", &pod, "status.podIP=10.0.0.5", true),
            ("pods", &pod, "status.nominatedNodeName=node-2", true),
            ("nodes", &node, "spec.unschedulable=true", true),
            ("nodes", &fresh_node, "spec.unschedulable=false", true),
            ("nodes", &fresh_node, "metadata.namespace=", true),
            ("events", &event, "involvedObject.kind=Pod,involvedObject.name=web,involvedObject.namespace=default", true),
            ("events", &event, "involvedObject.uid=u-1,involvedObject.apiVersion=v1,involvedObject.resourceVersion=7", true),
            ("events", &event, "involvedObject.fieldPath=spec.containers{web}", true),
            ("events", &event, "reason=Scheduled,type=Normal,reportingComponent=rkube-scheduler", true),
            ("events", &event, "source=rkube-scheduler", true),
            ("events", &event, "type=Warning", false),
            ("secrets", &secret, "type=kubernetes.io/tls", true),
            ("namespaces", &namespace, "status.phase=Active", true),
            ("replicasets", &rs, "status.replicas=3", true),
            ("replicationcontrollers", &empty_rc, "status.replicas=0", true),
            ("jobs", &job, "status.successful=1", true),
            ("deployments", &rs, "", true),
        ] {
            let info = resolve(kind).unwrap();
            let sel = FieldSelector::parse(selector).unwrap();
            assert_eq!(sel.validate_for(info), Ok(()), "{kind} {selector}");
            assert_eq!(sel.matches(obj, info), Ok(want), "{kind} {selector}");
        }

        for (kind, selector, field) in [
            ("pods", "spec.unschedulable=true", "spec.unschedulable"),
            ("nodes", "spec.nodeName=x", "spec.nodeName"),
            ("deployments", "status.replicas=1", "status.replicas"),
            ("configmaps", "type=x", "type"),
            ("events", "involvedObject.frob=x", "involvedObject.frob"),
            ("secrets", "metadata.labels=x", "metadata.labels"),
        ] {
            let info = resolve(kind).unwrap();
            let sel = FieldSelector::parse(selector).unwrap();
            let want = format!("field label not supported: {field}");
            assert_eq!(
                sel.validate_for(info),
                Err(want.clone()),
                "{kind} {selector}"
            );
            assert_eq!(
                sel.matches(&json!({}), info),
                Err(want),
                "{kind} {selector}"
            );
        }
        assert!(FieldSelector::supported_fields(resolve("jobs").unwrap())
            .contains(&"status.successful"));
        let sel = FieldSelector::parse("metadata.namespace=default,metadata.name!=x").unwrap();
        assert_eq!(
            sel.requires_exact_match("metadata.namespace"),
            Some("default")
        );
        assert_eq!(sel.requires_exact_match("metadata.name"), None);
    }
}
