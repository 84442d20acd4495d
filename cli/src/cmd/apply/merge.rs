//! kubectl's client-side apply: the three-way strategic merge patch that takes a live object
//! from the last applied configuration to the new one while keeping what others changed.
//!
//! Given the configuration applied last (`original`, from the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation), the new one (`modified`) and
//! the live object (`current`), the patch
//! - deletes every field that `original` set and `modified` no longer sets (`null`, or
//!   `{"$patch": "delete", <key>: ...}` for an element of a list merged by key, or
//!   `$deleteFromPrimitiveList/<field>` for a list merged as a set);
//! - sets every field of `modified` whose live value differs, descending into maps and into the
//!   elements of lists merged by key, and replacing other lists whole (when an element differs
//!   in a field the manifest sets: defaults the server added to elements are no difference);
//! - leaves everything else alone: fields only the server or other clients set survive.
//!
//! Lists merged by key carry `$setElementOrder/<field>` when they change, so the live order
//! follows the manifest's. The merge keys mirror the API server's strategic merge patch tables
//! (as kubectl's come from the OpenAPI schema). Unlike kubectl, a deletion is only sent for a
//! field the live object still has, and `$retainKeys` is not used for union fields.

use serde_json::{json, Map, Value};

/// The annotation holding the configuration applied last.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How a list is merged by a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListMerge {
    ByKey(&'static str),
    Set,
}

use ListMerge::{ByKey, Set};

/// Lists merged in every kind, by path from the root.
const OBJECT_LISTS: &[(&str, ListMerge)] = &[
    ("metadata.ownerReferences", ByKey("uid")),
    ("metadata.finalizers", Set),
    ("status.conditions", ByKey("type")),
];

/// Lists merged in one kind, by path from the root.
const KIND_LISTS: &[(&str, &str, ListMerge)] = &[
    ("Service", "spec.ports", ByKey("port")),
    ("Pod", "status.podIPs", ByKey("ip")),
    ("Node", "spec.podCIDRs", Set),
];

/// Lists merged in a pod spec, by path from the pod spec.
const POD_SPEC_LISTS: &[(&str, ListMerge)] = &[
    ("containers", ByKey("name")),
    ("initContainers", ByKey("name")),
    ("ephemeralContainers", ByKey("name")),
    ("volumes", ByKey("name")),
    ("imagePullSecrets", ByKey("name")),
    ("hostAliases", ByKey("ip")),
    ("topologySpreadConstraints", ByKey("topologyKey")),
    ("resourceClaims", ByKey("name")),
    ("schedulingGates", ByKey("name")),
];

/// Lists merged in every container, by path from the container.
const CONTAINER_LISTS: &[(&str, ListMerge)] = &[
    ("ports", ByKey("containerPort")),
    ("env", ByKey("name")),
    ("volumeMounts", ByKey("mountPath")),
    ("volumeDevices", ByKey("devicePath")),
];

/// Map keys whose values are resource quantities, and quantity fields: the server stores a
/// number given there (`cpu: 1`) as a string (`"1"`), which is no change.
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
];
const QUANTITY_FIELDS: &[&str] = &["sizeLimit", "divisor"];

fn pod_spec_roots(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "ReplicationController"
        | "ReplicaSet"
        | "Deployment"
        | "DaemonSet"
        | "StatefulSet"
        | "Job" => &["spec.template.spec"],
        "CronJob" => &["spec.jobTemplate.spec.template.spec"],
        _ => &[],
    }
}

/// The merge strategy of the list at `path` (`spec.template.spec.containers[*].env`).
fn list_merge(kind: &str, path: &str) -> Option<ListMerge> {
    let lookup =
        |table: &[(&str, ListMerge)], p: &str| table.iter().find(|(q, _)| *q == p).map(|(_, m)| *m);
    if let Some(m) = lookup(OBJECT_LISTS, path) {
        return Some(m);
    }
    if let Some((_, _, m)) = KIND_LISTS.iter().find(|(k, p, _)| *k == kind && *p == path) {
        return Some(*m);
    }
    for root in pod_spec_roots(kind) {
        let Some(rel) = path.strip_prefix(root).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        if let Some(m) = lookup(POD_SPEC_LISTS, rel) {
            return Some(m);
        }
        for containers in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(field) = rel
                .strip_prefix(containers)
                .and_then(|r| r.strip_prefix("[*]."))
            {
                return lookup(CONTAINER_LISTS, field);
            }
        }
    }
    None
}

/// The manifest as `kubectl apply` sends it: with the last-applied annotation holding the
/// manifest itself (without that annotation, as kubectl encodes it: sorted keys, a final newline).
pub fn with_last_applied(manifest: &Value) -> Value {
    let mut bare = manifest.clone();
    if let Some(meta) = bare.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.remove(LAST_APPLIED);
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    let encoded = format!(
        "{}\n",
        serde_json::to_string(&bare).expect("a JSON value encodes")
    );
    let mut out = bare;
    let meta = out
        .as_object_mut()
        .expect("a manifest is an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let annotations = meta
        .as_object_mut()
        .expect("object")
        .entry("annotations")
        .or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[LAST_APPLIED] = Value::String(encoded);
    out
}

/// The configuration applied last, from the live object's annotation (None if it has none or
/// it is not JSON).
pub fn last_applied(current: &Value) -> Option<Value> {
    let text = current["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    serde_json::from_str(text).ok()
}

/// The strategic merge patch that applies `modified` to `current` (see the module docs). An
/// empty map means nothing to do.
pub fn three_way(
    kind: &str,
    original: Option<&Value>,
    modified: &Value,
    current: &Value,
) -> Map<String, Value> {
    let empty = Map::new();
    Differ { kind }.map(
        "",
        original.and_then(Value::as_object),
        modified.as_object().unwrap_or(&empty),
        current.as_object().unwrap_or(&empty),
    )
}

struct Differ<'a> {
    kind: &'a str,
}

impl Differ<'_> {
    fn map(
        &self,
        path: &str,
        original: Option<&Map<String, Value>>,
        modified: &Map<String, Value>,
        current: &Map<String, Value>,
    ) -> Map<String, Value> {
        let mut patch = Map::new();
        for key in original.into_iter().flat_map(|o| o.keys()) {
            if !modified.contains_key(key) && current.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
        for (key, m) in modified {
            let child = join(path, key);
            let c = current.get(key);
            let o = original.and_then(|o| o.get(key));
            match m {
                Value::Null => {
                    if c.is_some() {
                        patch.insert(key.clone(), Value::Null);
                    }
                }
                Value::Object(m) => match c {
                    Some(Value::Object(c)) => {
                        let sub = self.map(&child, o.and_then(Value::as_object), m, c);
                        if !sub.is_empty() {
                            patch.insert(key.clone(), Value::Object(sub));
                        }
                    }
                    _ => {
                        patch.insert(key.clone(), Value::Object(m.clone()));
                    }
                },
                Value::Array(m) => {
                    let o = o
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    match (list_merge(self.kind, &child), c) {
                        (Some(ByKey(merge_key)), Some(Value::Array(c)))
                            if keyed(m, merge_key) && keyed(c, merge_key) =>
                        {
                            self.keyed_list(&mut patch, key, &child, merge_key, o, m, c)
                        }
                        (Some(Set), Some(Value::Array(c))) => set_list(&mut patch, key, o, m, c),
                        (_, Some(Value::Array(c))) if self.same_list(&child, o, m, c) => {}
                        _ => {
                            patch.insert(key.clone(), Value::Array(m.clone()));
                        }
                    }
                }
                scalar => {
                    if !same_scalar(path, key, scalar, c) {
                        patch.insert(key.clone(), scalar.clone());
                    }
                }
            }
        }
        patch
    }

    /// Whether a list that is replaced whole is as the manifest wants it. The server may have
    /// added defaults to its elements (an Endpoints port's `protocol`): the elements are compared
    /// like maps, so only fields the manifest sets, or set last time and dropped, count.
    fn same_list(
        &self,
        path: &str,
        original: &[Value],
        modified: &[Value],
        current: &[Value],
    ) -> bool {
        if modified.len() != current.len() {
            return false;
        }
        let element = format!("{path}[*]");
        modified
            .iter()
            .zip(current)
            .enumerate()
            .all(|(i, (m, c))| match (m, c) {
                (Value::Object(m), Value::Object(c)) => self
                    .map(&element, original.get(i).and_then(Value::as_object), m, c)
                    .is_empty(),
                (Value::Array(m), Value::Array(c)) => {
                    let o = original
                        .get(i)
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    self.same_list(&element, o, m, c)
                }
                (m, c) => m == c,
            })
    }

    /// A list merged by `merge_key`: deleted elements, changed fields of kept elements, new
    /// elements, and the order.
    #[allow(clippy::too_many_arguments)]
    fn keyed_list(
        &self,
        patch: &mut Map<String, Value>,
        key: &str,
        path: &str,
        merge_key: &str,
        original: &[Value],
        modified: &[Value],
        current: &[Value],
    ) {
        let id = |v: &Value| v.get(merge_key).cloned();
        let find = |list: &[Value], want: &Value| {
            list.iter()
                .find(|v| v.get(merge_key) == Some(want))
                .cloned()
        };
        let mut items = Vec::new();
        for o in original {
            if let Some(oid) = id(o) {
                if find(modified, &oid).is_none() && find(current, &oid).is_some() {
                    items.push(json!({merge_key: oid, "$patch": "delete"}));
                }
            }
        }
        let element = format!("{path}[*]");
        for m in modified {
            let mid = id(m).expect("keyed");
            match find(current, &mid) {
                None => items.push(m.clone()),
                Some(c) => {
                    let o = find(original, &mid);
                    let empty = Map::new();
                    let sub = self.map(
                        &element,
                        o.as_ref().and_then(Value::as_object),
                        m.as_object().unwrap_or(&empty),
                        c.as_object().unwrap_or(&empty),
                    );
                    if !sub.is_empty() {
                        let mut sub = sub;
                        sub.insert(merge_key.to_string(), mid);
                        items.push(Value::Object(sub));
                    }
                }
            }
        }
        // The live order of the manifest's elements (others' elements stay where they are).
        let wanted: Vec<Value> = modified.iter().filter_map(id).collect();
        let live: Vec<Value> = current
            .iter()
            .filter_map(id)
            .filter(|i| wanted.contains(i))
            .collect();
        let reordered = live.len() == wanted.len() && live != wanted;
        if !items.is_empty() || reordered {
            if !items.is_empty() {
                patch.insert(key.to_string(), Value::Array(items));
            }
            let order = wanted.into_iter().map(|i| json!({merge_key: i})).collect();
            patch.insert(format!("$setElementOrder/{key}"), Value::Array(order));
        }
    }
}

/// Whether every element is an object carrying the merge key.
fn keyed(list: &[Value], merge_key: &str) -> bool {
    list.iter().all(|v| v.get(merge_key).is_some())
}

/// A list merged as a set: add what the manifest has and the live list lacks, remove what the
/// last configuration had and this one dropped.
fn set_list(
    patch: &mut Map<String, Value>,
    key: &str,
    original: &[Value],
    modified: &[Value],
    current: &[Value],
) {
    if modified.iter().any(|v| !current.contains(v)) {
        patch.insert(key.to_string(), Value::Array(modified.to_vec()));
    }
    let dropped: Vec<Value> = original
        .iter()
        .filter(|v| !modified.contains(v) && current.contains(v))
        .cloned()
        .collect();
    if !dropped.is_empty() {
        patch.insert(
            format!("$deleteFromPrimitiveList/{key}"),
            Value::Array(dropped),
        );
    }
}

/// Whether the live scalar equals the manifest's, counting a quantity the server turned from a
/// number into a string as equal.
fn same_scalar(path: &str, key: &str, modified: &Value, current: Option<&Value>) -> bool {
    match (modified, current) {
        (m, Some(c)) if m == c => true,
        (Value::Number(n), Some(Value::String(s))) => {
            let parent = path.rsplit(['.', ']']).next().unwrap_or("");
            (QUANTITY_MAPS.contains(&parent) || QUANTITY_FIELDS.contains(&key))
                && *s == n.to_string()
        }
        _ => false,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
