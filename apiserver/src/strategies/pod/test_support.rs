//! Helpers for the pod and workload rule tests: run a kind's rules the way the registry does
//! (strict decoding, defaulting, validation) and render the errors as Kubernetes prints them.

use serde_json::Value;

use crate::decode::strict;
use crate::strategy::KindRules;

/// Decode `obj` strictly and apply the rules' defaults.
pub fn defaulted<R: KindRules>(rules: &R, obj: &Value) -> R::Object {
    let mut typed: R::Object = strict(obj).unwrap_or_else(|e| panic!("decoding {obj}: {e:?}"));
    rules.default(&mut typed);
    typed
}

/// The defaulted object as JSON.
pub fn defaulted_json<R: KindRules>(rules: &R, obj: &Value) -> Value {
    serde_json::to_value(defaulted(rules, obj)).unwrap()
}

/// The rendered errors of creating `obj` (decoded, defaulted, validated).
pub fn create_errors<R: KindRules>(rules: &R, obj: &Value) -> Vec<String> {
    let typed = defaulted(rules, obj);
    let mut errs = Vec::new();
    rules.validate(&typed, &mut errs);
    errs.iter().map(|e| e.to_string()).collect()
}

/// The rendered errors of updating `old` (as stored: defaulted) to `new` (defaulted too).
pub fn update_errors<R: KindRules>(rules: &R, old: &Value, new: &Value) -> Vec<String> {
    let (old, new) = (defaulted(rules, old), defaulted(rules, new));
    let mut errs = Vec::new();
    rules.validate_update(&new, &old, &mut errs);
    errs.iter().map(|e| e.to_string()).collect()
}

/// `base` with the JSON merge patch `patch` applied (RFC 7386: null removes a field).
pub fn with(base: &Value, patch: Value) -> Value {
    let mut out = base.clone();
    json_patch::merge(&mut out, &patch);
    out
}
