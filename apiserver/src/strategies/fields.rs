//! Field checks shared by the non-workload kinds: port numbers and names, IP addresses and CIDRs,
//! config keys, enumerations, label and node selectors, host paths and immutability. Messages
//! follow Kubernetes' apimachinery validators word for word.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::NodeSelector;

use crate::validation::common::parse_quantity;
use crate::validation::{FieldError, FieldErrors, Path};

/// The most data a ConfigMap or Secret may hold (Kubernetes' `MaxSecretSize`).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

pub const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";
pub const IMMUTABLE_MSG: &str = "field is immutable";
const IPV4_MSG: &str = "must be a valid IPv4 address, (e.g. 10.9.8.7)";
const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// Push `Invalid value: <port>: must be between 1 and 65535, inclusive` unless `port` is valid.
pub fn validate_port_number(port: i32, path: &Path, errs: &mut FieldErrors) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(path, port, PORT_RANGE_MSG));
    }
}

/// An IANA service name (a named container port): at most 15 characters of `[-a-z0-9]`, with at
/// least one letter, no `--`, and no hyphen at either end. Returns the problems.
pub fn port_name(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name.len() > 15 {
        out.push("must be no more than 15 characters".to_string());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        out.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen".to_string());
    }
    out
}

/// A key of a ConfigMap's or Secret's data: `[-._a-zA-Z0-9]+`, at most 253 characters, and not
/// `.`, `..` or starting with `..`. Returns the problems.
pub fn config_key(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        out.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key_name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if key == "." {
        out.push("must not be '.'".to_string());
    } else if key == ".." {
        out.push("must not be '..'".to_string());
    } else if key.starts_with("..") {
        out.push("must not start with '..'".to_string());
    }
    out
}

/// Validate an enumerated field: `Required value` when absent or empty (if `required`),
/// `Unsupported value` when not one of `allowed` (listed in Kubernetes' sorted order by the
/// caller). An empty string counts as absent, as for Go's non-pointer string fields.
pub fn validate_enum(
    value: Option<&str>,
    allowed: &[&str],
    required: bool,
    path: &Path,
    errs: &mut FieldErrors,
) {
    match value {
        None | Some("") if required => errs.push(FieldError::required(path, "")),
        None | Some("") => {}
        Some(v) if allowed.contains(&v) => {}
        Some(v) => errs.push(FieldError::not_supported(path, v, allowed)),
    }
}

/// Whether `s` is a dotted-quad IPv4 address (no leading zeros).
pub fn is_ipv4(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok()
}

/// An IPv4 address: rkube clusters are single-stack IPv4, so endpoints and cluster IPs are too.
pub fn validate_ipv4(value: &str, path: &Path, errs: &mut FieldErrors) {
    if value.is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if !is_ipv4(value) {
        errs.push(FieldError::invalid(path, value, IPV4_MSG));
    }
}

/// An IPv4 or IPv6 address.
pub fn validate_ip(value: &str, path: &Path, errs: &mut FieldErrors) {
    if value.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(path, value, IP_MSG));
    }
}

/// A CIDR such as `10.244.0.0/24` or `2001:db8::/64`.
pub fn validate_cidr(value: &str, path: &Path, errs: &mut FieldErrors) {
    let ok = value.split_once('/').is_some_and(|(ip, bits)| {
        let max = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        !bits.is_empty()
            && bits.bytes().all(|c| c.is_ascii_digit())
            && (bits == "0" || !bits.starts_with('0'))
            && bits.parse::<u32>().is_ok_and(|b| b <= max)
    });
    if !ok {
        errs.push(FieldError::invalid(path, value, CIDR_MSG));
    }
}

/// A resource quantity that must parse and be greater than zero.
pub fn validate_positive_quantity(q: &str, path: &Path, errs: &mut FieldErrors) {
    match parse_quantity(q) {
        Ok(v) if v <= 0 => errs.push(FieldError::invalid(path, q, "must be greater than zero")),
        Ok(_) => {}
        Err(m) => errs.push(FieldError::invalid(path, q, &m)),
    }
}

/// Whether a quantity parses and is greater than zero (Kubernetes' `Sign() == 1`).
pub fn is_positive_quantity(q: &str) -> bool {
    parse_quantity(q).is_ok_and(|v| v > 0)
}

/// `Invalid value: <v>: must be greater than or equal to 0` for a negative `v`.
pub fn validate_nonnegative(v: i64, path: &Path, errs: &mut FieldErrors) {
    if v < 0 {
        errs.push(FieldError::invalid(
            path,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// `Invalid value: "<new>": field is immutable` when the string field `new` differs from `old`
/// (absent counts as empty, as in Go).
pub fn validate_immutable(
    new: Option<&str>,
    old: Option<&str>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let (new, old) = (new.unwrap_or_default(), old.unwrap_or_default());
    if new != old {
        errs.push(FieldError::invalid(path, new, IMMUTABLE_MSG));
    }
}

/// A path segment name (object kinds and names in references, metric names): not `.` or `..`,
/// and no `/` or `%`. Returns the problems.
pub fn path_segment_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s == "." || s == ".." {
        out.push(format!("may not be '{s}'"));
        return out;
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

/// A filesystem path that may not step out with `..` (host paths, local volumes).
pub fn validate_path_no_backsteps(p: &str, path: &Path, errs: &mut FieldErrors) {
    if p.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(path, p, "must not contain '..'"));
    }
}

/// A `metav1.LabelSelector` (one implementation, shared with the pod-template rules).
pub use crate::validation::pod_spec::label_selector::validate as validate_label_selector;

/// A required node selector (PersistentVolume node affinity): at least one term, each with valid
/// match expressions and match fields (the same term rules as pod node affinity).
pub fn validate_node_selector(sel: &NodeSelector, path: &Path, errs: &mut FieldErrors) {
    let terms = path.child("nodeSelectorTerms");
    if sel.node_selector_terms.is_empty() {
        errs.push(FieldError::required(
            &terms,
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, term) in sel.node_selector_terms.iter().enumerate() {
        crate::validation::pod_spec::validate_node_selector_term(term, &terms.index(i), errs);
    }
}

/// Helpers for the strategy tests: run a kind's rules on JSON the way the registry does.
#[cfg(test)]
pub mod testing {
    use serde_json::Value;

    use crate::decode;
    use crate::strategy::KindRules;

    /// Strictly decode `v` and apply the defaults.
    pub fn defaulted<R: KindRules>(rules: &R, v: Value) -> R::Object {
        let mut obj = decode::strict::<R::Object>(&v).unwrap_or_else(|e| panic!("decodes: {e:?}"));
        rules.default(&mut obj);
        obj
    }

    /// The rendered errors of creating `v` (after defaulting).
    pub fn create_errors<R: KindRules>(rules: &R, v: Value) -> Vec<String> {
        let obj = defaulted(rules, v);
        let mut errs = Vec::new();
        rules.validate(&obj, &mut errs);
        errs.iter().map(|e| e.to_string()).collect()
    }

    /// The rendered errors of updating `old` to `new` (both defaulted).
    pub fn update_errors<R: KindRules>(rules: &R, old: Value, new: Value) -> Vec<String> {
        let old = defaulted(rules, old);
        let new = defaulted(rules, new);
        let mut errs = Vec::new();
        rules.validate_update(&new, &old, &mut errs);
        errs.iter().map(|e| e.to_string()).collect()
    }

    /// Run a table of `(case name, object, expected errors)` through `create_errors`.
    pub fn check_create_table<R: KindRules>(rules: &R, table: Vec<(&str, Value, Vec<&str>)>) {
        for (name, obj, want) in table {
            assert_eq!(create_errors(rules, obj), want, "case {name:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_iana() {
        assert!(port_name("http").is_empty());
        assert!(port_name("web-8080").is_empty());
        assert_eq!(
            port_name("8080"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            port_name("a--b"),
            vec!["must not contain consecutive hyphens"]
        );
        assert_eq!(port_name("-a"), vec!["must not begin or end with a hyphen"]);
        assert_eq!(
            port_name("abcdefghijklmnop"),
            vec!["must be no more than 15 characters"]
        );
        assert_eq!(port_name("HTTP").len(), 2);
    }

    #[test]
    fn config_keys() {
        for ok in [
            "a",
            "key.name",
            "KEY_NAME",
            "my-nginx-config.conf",
            ".dockerconfigjson",
            "tls.crt",
        ] {
            assert!(config_key(ok).is_empty(), "{ok}");
        }
        assert_eq!(config_key("."), vec!["must not be '.'"]);
        assert_eq!(config_key(".."), vec!["must not be '..'"]);
        assert_eq!(config_key("..a"), vec!["must not start with '..'"]);
        assert_eq!(config_key("a b").len(), 1);
        assert_eq!(
            config_key(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
    }

    #[test]
    fn addresses_and_cidrs() {
        let p = Path::root("x");
        let mut errs = Vec::new();
        for ok in ["10.0.0.1", "127.0.0.1"] {
            validate_ipv4(ok, &p, &mut errs);
        }
        for ok in ["10.244.0.0/16", "0.0.0.0/0", "2001:db8::/64"] {
            validate_cidr(ok, &p, &mut errs);
        }
        assert!(errs.is_empty(), "{errs:?}");
        for bad in ["10.0.0", "10.0.0.256", "::1", "010.0.0.1", "host"] {
            validate_ipv4(bad, &p, &mut errs);
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "x/8", "10.0.0.0/08"] {
            validate_cidr(bad, &p, &mut errs);
        }
        assert_eq!(errs.len(), 10, "{errs:?}");
    }

    #[test]
    fn path_segments() {
        assert!(path_segment_name("Deployment").is_empty());
        assert_eq!(path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(
            path_segment_name("a/b%c"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }
}
