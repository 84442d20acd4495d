//! The deployment controller's ReplicaSet arithmetic (Kubernetes' `deployment/util`): pod
//! template hashing, fenceposts, revisions and their annotations, proportional shares. Nothing
//! here reads a cache or writes to the cluster.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::error::{Error, Result};

use super::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
};

/// Kubernetes' `rand.SafeEncodeString` alphabet: no vowels, no look-alike digits.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Annotations of a Deployment never copied onto its ReplicaSets.
const SKIPPED_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];
/// Longest `revision-history` annotation kept (Kubernetes' default).
const REVISION_HISTORY_MAX_CHARS: usize = 2000;

/// The ReplicaSet name suffix and `pod-template-hash` label of a pod template: FNV-1a (32 bit)
/// of the template's canonical JSON (object keys sorted, nulls and empty lists dropped, any
/// `pod-template-hash` label ignored), followed by `collision_count` as 8 little-endian bytes
/// when set, rendered like Kubernetes' `SafeEncodeString` of the decimal hash.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut text = String::new();
    write_canonical(&canonical_template(template), &mut text);
    let mut hash = fnv1a32(FNV_OFFSET, text.as_bytes());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv1a32(hash, &bytes);
    }
    safe_encode(&hash.to_string())
}

/// Whether two pod templates are equal apart from their `pod-template-hash` label (and
/// representation details: absent versus empty lists and maps).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    canonical_template(a) == canonical_template(b)
}

/// Kubernetes' `ResolveFenceposts`: maxSurge as a count (percentages of `replicas` rounded up)
/// and maxUnavailable (rounded down); when both come to 0, maxUnavailable is 1 so a rollout can
/// still move. Absent values count as 0.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<(i32, i32)> {
    let surge = max_surge.map_or(Ok(0), |v| scaled_value(v, replicas, true))?;
    let unavailable = max_unavailable.map_or(Ok(0), |v| scaled_value(v, replicas, false))?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

pub(super) fn fnv1a32(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

pub(super) fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// The template as JSON without its hash label, nulls and empty lists, and with empty label
/// and annotation maps dropped, so equal templates compare and hash equal.
fn canonical_template(template: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        for key in ["labels", "annotations"] {
            if meta
                .get(key)
                .and_then(Value::as_object)
                .is_some_and(|m| m.is_empty())
            {
                meta.remove(key);
            }
        }
        if meta.is_empty() {
            v.as_object_mut().map(|o| o.remove("metadata"));
        }
    }
    prune(&mut v);
    v
}

fn prune(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null() && !x.as_array().is_some_and(|a| a.is_empty()));
            map.values_mut().for_each(prune);
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

/// JSON with object keys sorted, whatever map type serde_json was built with.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// An int-or-percent as a count of `total` (Kubernetes' `GetScaledValueFromIntOrPercent`).
fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "invalid value {s:?} for maxSurge or maxUnavailable: want an integer or \
                         a percentage such as \"25%\""
                    ))
                })?;
            let product = percent * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// A Deployment's numbers, resolved once per reconcile.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Params {
    pub replicas: i32,
    /// RollingUpdate (otherwise Recreate).
    pub rolling: bool,
    /// 0 unless rolling.
    pub max_surge: i32,
    /// 0 unless rolling with replicas; never above `replicas`.
    pub max_unavailable: i32,
    pub min_ready_seconds: i32,
    /// None when the deadline is disabled (`i32::MAX`).
    pub progress_deadline_seconds: Option<i32>,
    /// None when every old ReplicaSet is kept (`i32::MAX`).
    pub revision_history_limit: Option<i32>,
    pub paused: bool,
}

impl Params {
    pub fn of(d: &Deployment) -> Result<Params> {
        let spec = &d.spec;
        let replicas = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.clone().unwrap_or_default();
        let rolling = match strategy.type_.as_deref() {
            None | Some("") | Some("RollingUpdate") => true,
            Some("Recreate") => false,
            Some(other) => {
                let want = "want \"RollingUpdate\" or \"Recreate\"";
                let message = format!("unsupported spec.strategy.type {other:?}: {want}");
                return Err(Error::Invalid(message));
            }
        };
        let (mut max_surge, mut max_unavailable) = (0, 0);
        if rolling {
            let ru = strategy.rolling_update.unwrap_or_default();
            let quarter = IntOrString::String("25%".into());
            let surge = ru.max_surge.unwrap_or_else(|| quarter.clone());
            let unavailable = ru.max_unavailable.unwrap_or(quarter);
            (max_surge, max_unavailable) =
                resolve_fenceposts(Some(&surge), Some(&unavailable), replicas)?;
            max_unavailable = if replicas == 0 {
                0
            } else {
                max_unavailable.min(replicas)
            };
        }
        let limit =
            |v: Option<i32>, default: i32| Some(v.unwrap_or(default)).filter(|v| *v != i32::MAX);
        Ok(Params {
            replicas,
            rolling,
            max_surge,
            max_unavailable,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            progress_deadline_seconds: limit(spec.progress_deadline_seconds, 600),
            revision_history_limit: limit(spec.revision_history_limit, 10),
            paused: spec.paused.unwrap_or(false),
        })
    }

    /// `replicas + maxSurge`, recorded as the max-replicas annotation.
    pub fn max_replicas(&self) -> i32 {
        self.replicas + self.max_surge
    }
}

// ReplicaSet accessors, with Kubernetes' defaults for absent fields.

pub(super) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

pub(super) fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub(super) fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub(super) fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub(super) fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec.template.clone().unwrap_or_default()
}

pub(super) fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

pub(super) fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
}

/// The revision of a ReplicaSet: 0 when unset, None when unparsable (skipped, as Kubernetes does).
pub(super) fn revision(rs: &ReplicaSet) -> Option<i64> {
    annotation(rs, REVISION_ANNOTATION).map_or(Some(0), |v| v.parse().ok())
}

pub(super) fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter()
        .filter_map(revision)
        .max()
        .unwrap_or(0)
        .max(0)
}

pub(super) fn sum(rss: &[&ReplicaSet], f: fn(&ReplicaSet) -> i32) -> i32 {
    rss.iter().map(|rs| f(rs)).sum()
}

pub(super) fn is_active(rs: &ReplicaSet) -> bool {
    spec_replicas(rs) > 0
}

/// Oldest first; equal timestamps by name (Kubernetes' `ReplicaSetsByCreationTimestamp`).
pub(super) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    (&a.metadata.creation_timestamp, &a.metadata.name)
        .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
}

/// Lowest revision first, then oldest.
pub(super) fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .unwrap_or(0)
        .cmp(&revision(b).unwrap_or(0))
        .then_with(|| by_creation(a, b))
}

/// Largest first; equal sizes newest first (`newer`) or oldest first.
pub(super) fn by_size(a: &ReplicaSet, b: &ReplicaSet, newer: bool) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| {
        if newer {
            by_creation(b, a)
        } else {
            by_creation(a, b)
        }
    })
}

/// Copy the Deployment's annotations (but the controller's own) onto its new ReplicaSet and
/// raise the ReplicaSet's revision to `new_revision`, keeping a replaced revision in
/// `revision-history` (a rollback to this ReplicaSet). A ReplicaSet about to be created also
/// gets its replicas annotations. Returns whether anything changed.
pub(super) fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
    params: &Params,
) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !SKIPPED_ANNOTATIONS.contains(&k.as_str()) && annotations.get(k) != Some(v) {
            annotations.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(v)) => v,
        Some(Err(_)) => {
            tracing::warn!(replicaset = ?rs.metadata.name, "unparsable revision annotation");
            return changed;
        }
    };
    if old_revision < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = match annotations.get(REVISION_HISTORY_ANNOTATION) {
                None => old,
                Some(h) if h.is_empty() => old,
                Some(h) => {
                    let mut entries: Vec<&str> = h.split(',').collect();
                    while !entries.is_empty()
                        && entries.iter().map(|e| e.len() + 1).sum::<usize>() + old.len()
                            > REVISION_HISTORY_MAX_CHARS
                    {
                        entries.remove(0);
                    }
                    entries.push(&old);
                    entries.join(",")
                }
            };
            annotations.insert(REVISION_HISTORY_ANNOTATION.into(), history);
        }
    }
    if !exists && set_replicas_annotations(rs, params.replicas, params.max_replicas()) {
        changed = true;
    }
    changed
}

/// Record the Deployment's desired and maximum replicas on a ReplicaSet; whether it changed.
pub(super) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        if annotations.get(k).map(String::as_str) != Some(v.to_string().as_str()) {
            annotations.insert(k.into(), v.to_string());
            changed = true;
        }
    }
    changed
}

/// How many replicas the new ReplicaSet should have now (Kubernetes' `NewRSNewReplicas`).
pub(super) fn new_rs_new_replicas(
    params: &Params,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> i32 {
    if !params.rolling {
        return params.replicas;
    }
    let current = sum(all, spec_replicas);
    let max_total = params.replicas + params.max_surge;
    let new_replicas = spec_replicas(new_rs);
    if current >= max_total {
        return new_replicas;
    }
    let scale_up = (max_total - current).min(params.replicas - new_replicas);
    new_replicas + scale_up
}

/// The new ReplicaSet owns every desired replica, by both its own and the Deployment's account.
pub(super) fn is_saturated(params: &Params, rs: Option<&ReplicaSet>) -> bool {
    rs.is_some_and(|rs| {
        spec_replicas(rs) == params.replicas
            && desired_replicas_annotation(rs) == Some(params.replicas)
            && available_replicas(rs) == params.replicas
    })
}

/// The change in size of one ReplicaSet when the Deployment is scaled mid-rollout (Kubernetes'
/// `GetReplicaSetProportion`): its share of `to_add` by its size relative to the Deployment size
/// it was scaled for (the max-replicas annotation), bounded by what is left to distribute.
pub(super) fn proportion(
    rs: &ReplicaSet,
    params: &Params,
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    let size = spec_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if params.replicas == 0 {
        -size
    } else {
        let annotated = int_annotation(rs, MAX_REPLICAS_ANNOTATION).unwrap_or(status_replicas);
        if annotated == 0 {
            0
        } else {
            let share = f64::from(size) * f64::from(params.max_replicas()) / f64::from(annotated);
            share.round() as i32 - size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}
