//! Validators shared by every kind: object names (DNS-1123), label keys and values, annotations,
//! selectors against template labels, and object metadata.

use std::collections::BTreeMap;

use super::{FieldError, FieldErrors, Path};

pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters. Returns the problems.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        out.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|c| is_alnum_lower(*c) || *c == b'-');
    if !ok {
        out.push(format!(
            "{DNS1123_LABEL_MSG}, regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'"
        ));
    }
    out
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        out.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let ok = !s.is_empty()
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && is_alnum_lower(b[0])
                && is_alnum_lower(b[b.len() - 1])
                && b.iter().all(|c| is_alnum_lower(*c) || *c == b'-')
        });
    if !ok {
        out.push(format!(
            "{DNS1123_SUBDOMAIN_MSG}, regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'"
        ));
    }
    out
}

/// A DNS-1035 label (Service names): like a DNS-1123 label but starting with a letter.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut out = dns1123_label(s);
    if s.as_bytes().first().is_some_and(|c| c.is_ascii_digit()) {
        out.push("a DNS-1035 label must start with an alphabetic character (e.g. 'my-name', or 'abc-123')".into());
    }
    out
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// A qualified name's name part: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63.
fn qualified_name_part(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.is_empty() {
        out.push("name part must be non-empty".into());
        return out;
    }
    if s.len() > 63 {
        out.push("name part must be no more than 63 characters".into());
    }
    let b = s.as_bytes();
    if !(is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter()
            .all(|c| is_alnum(*c) || matches!(c, b'-' | b'_' | b'.')))
    {
        out.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc'), regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'".into());
    }
    out
}

/// A label or annotation key: an optional DNS-1123 subdomain prefix and `/`, then a name part.
pub fn qualified_name(s: &str) -> Vec<String> {
    match s.split_once('/') {
        Some((prefix, name)) => {
            let mut out: Vec<String> = dns1123_subdomain(prefix)
                .into_iter()
                .map(|m| format!("prefix part {m}"))
                .collect();
            out.extend(qualified_name_part(name));
            out
        }
        None => qualified_name_part(s),
    }
}

/// A label value: empty, or a name part of at most 63 characters.
pub fn label_value(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        out.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    let b = s.as_bytes();
    if !(is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter()
            .all(|c| is_alnum(*c) || matches!(c, b'-' | b'_' | b'.')))
    {
        out.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    out
}

/// Push an `Invalid value` error for each problem.
pub fn push_all(errs: &mut FieldErrors, path: &Path, value: &str, problems: Vec<String>) {
    for p in problems {
        errs.push(FieldError::invalid(path, value, &p));
    }
}

pub fn validate_labels(
    labels: Option<&BTreeMap<String, String>>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    for (k, v) in labels.into_iter().flatten() {
        push_all(errs, path, k, qualified_name(k));
        push_all(errs, &path.key(k), v, label_value(v));
    }
}

pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let mut total = 0;
    for (k, v) in annotations.into_iter().flatten() {
        push_all(errs, path, k, qualified_name(&k.to_ascii_lowercase()));
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
}

/// How an object's name must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

impl NameRule {
    pub fn check(self, s: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(s),
            NameRule::Label => dns1123_label(s),
            NameRule::Dns1035 => dns1035_label(s),
        }
    }
}

/// Validate `metadata` of an object: name (or generateName), namespace presence, labels and
/// annotations.
pub fn validate_object_meta(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespaced: bool,
    rule: NameRule,
    errs: &mut FieldErrors,
) {
    let path = Path::root("metadata");
    match (&meta.name, &meta.generate_name) {
        (Some(n), _) if !n.is_empty() => push_all(errs, &path.child("name"), n, rule.check(n)),
        (_, Some(g)) if !g.is_empty() => {
            // generateName gets a 5-character suffix; check what the result would look like.
            let probe = format!("{g}abcde");
            push_all(errs, &path.child("generateName"), g, rule.check(&probe));
        }
        _ => errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        )),
    }
    if namespaced {
        match &meta.namespace {
            Some(ns) if !ns.is_empty() => {
                push_all(errs, &path.child("namespace"), ns, dns1123_label(ns))
            }
            _ => errs.push(FieldError::required(&path.child("namespace"), "")),
        }
    } else if meta.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    validate_labels(meta.labels.as_ref(), &path.child("labels"), errs);
    validate_annotations(meta.annotations.as_ref(), &path.child("annotations"), errs);
}

/// A parsed resource quantity, in milli-units (so `250m` cpu is 250 and `1` is 1000).
///
/// Accepts Kubernetes' forms: decimal numbers with optional exponent (`1e3`), decimal SI suffixes
/// (`n u m k M G T P E`) and binary suffixes (`Ki Mi Gi Ti Pi Ei`).
pub fn parse_quantity(s: &str) -> Result<i128, String> {
    let bad = || {
        format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {s:?})")
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "+" || num == "-" || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| bad())?;
            10f64.powi(exp)
        }
        _ => return Err(bad()),
    };
    // Round up like Kubernetes' MilliValue.
    Ok((value * scale * 1000.0).ceil() as i128)
}

/// Validate a quantity field: parseable and not negative.
pub fn validate_quantity(q: &str, path: &Path, errs: &mut FieldErrors) {
    match parse_quantity(q) {
        Ok(v) if v < 0 => errs.push(FieldError::invalid(
            path,
            q,
            "must be greater than or equal to 0",
        )),
        Ok(_) => {}
        Err(m) => errs.push(FieldError::invalid(path, q, &m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "my-name", "123-abc", "a.b.c"] {
            assert!(dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        assert!(!dns1123_label("a.b").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(!dns1035_label("1abc").is_empty());
    }

    #[test]
    fn labels() {
        for ok in ["app", "app.kubernetes.io/name", "a_b.c-d", "example.com/X"] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        for bad in ["", "-a", "a/", "/a", "Example.com/a", &"a".repeat(64)] {
            assert!(!qualified_name(bad).is_empty(), "{bad}");
        }
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_3").is_empty());
        assert!(!label_value("bad value").is_empty());
        assert!(!label_value(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        for (q, milli) in [
            ("250m", 250),
            ("1", 1000),
            ("0.1", 100),
            ("128Mi", 128 * 1024 * 1024 * 1000),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("2Gi", 2 * 1024i128.pow(3) * 1000),
        ] {
            assert_eq!(parse_quantity(q), Ok(milli), "{q}");
        }
        for bad in ["", "abc", "1x", "1.2.3", "Mi"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
