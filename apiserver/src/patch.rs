//! Applying `kubectl patch` / `kubectl apply` patches to an object: JSON merge patch (RFC 7386),
//! JSON patch (RFC 6902) and Kubernetes' strategic merge patch.
//!
//! A strategic merge patch is a merge patch in which some lists are merged element by element
//! (containers by `name`, finalizers as a set, ...) instead of replaced, and which understands
//! the `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`
//! directives. Kubernetes reads the merge keys from struct tags (`patchMergeKey`); rkube keeps
//! the same facts in the tables `OBJECT_LISTS`, `KIND_LISTS`, `POD_SPEC_LISTS` and
//! `CONTAINER_LISTS`. Every list not named there is replaced, as in Kubernetes (`envFrom`,
//! `tolerations`, Node `taints`, Endpoints `subsets`, ...).

use serde_json::{Map, Value};

use crate::kinds::KindInfo;

/// How the patch body is to be read, from the request's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`: RFC 7386.
    Merge,
    /// `application/json-patch+json`: RFC 6902.
    Json,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
    Strategic,
}

impl PatchType {
    /// The patch type for a `Content-Type`, as `kubectl patch --type` sends it.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
        }
    }
}

/// Apply `patch` to `original` (an object of `kind`) and return the patched object. The
/// original is not changed; a failing JSON patch applies none of its operations.
pub fn apply(
    kind: &KindInfo,
    original: &Value,
    patch: &[u8],
    ty: PatchType,
) -> Result<Value, String> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| format!("the patch is not valid JSON: {e}"))?;
    match ty {
        PatchType::Merge => {
            require_object(&patch, "a merge patch")?;
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::Json => apply_json_patch(original, &patch),
        PatchType::Strategic => {
            let patch = require_object(&patch, "a strategic merge patch")?;
            let mut doc = original.clone();
            let merger = Strategic { kind: kind.kind };
            match &mut doc {
                Value::Object(map) => {
                    if merger.merge_map(map, patch, "")? == Outcome::Delete {
                        // `$patch: delete` on the whole object leaves nothing to keep.
                        map.clear();
                    }
                }
                other => *other = Value::Object(merger.clean_map(patch, "")?.unwrap_or_default()),
            }
            Ok(doc)
        }
    }
}

fn require_object<'a>(patch: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    patch
        .as_object()
        .ok_or_else(|| format!("{what} must be a JSON object, not {}", type_name(patch)))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---- JSON patch ----

/// Apply the operations one at a time, so a failure can be explained against the document as
/// that operation saw it.
fn apply_json_patch(original: &Value, patch: &Value) -> Result<Value, String> {
    let Value::Array(items) = patch else {
        return Err(format!(
            "a json patch must be a JSON array of operations, not {}",
            type_name(patch)
        ));
    };
    let ops = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<json_patch::PatchOperation>(item.clone())
                .map_err(|e| format!("json patch operation {i} is invalid: {e}: {item}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut doc = original.clone();
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = json_patch::patch(&mut doc, std::slice::from_ref(op)) {
            return Err(describe_failure(i, op, &e.kind, &doc));
        }
    }
    Ok(doc)
}

fn describe_failure(
    i: usize,
    op: &json_patch::PatchOperation,
    kind: &json_patch::PatchErrorKind,
    doc: &Value,
) -> String {
    use json_patch::{PatchErrorKind as K, PatchOperation as Op};
    let path = op.path().as_str();
    let (name, from) = match op {
        Op::Add(_) => ("add", None),
        Op::Remove(_) => ("remove", None),
        Op::Replace(_) => ("replace", None),
        Op::Move(m) => ("move", Some(m.from.as_str())),
        Op::Copy(c) => ("copy", Some(c.from.as_str())),
        Op::Test(_) => ("test", None),
    };
    let what = match from {
        Some(from) => format!("{name} from {from} to {path}"),
        None => format!("{name} {path}"),
    };
    let why = match (kind, op) {
        (K::TestFailed | K::InvalidPointer, Op::Test(t)) => match doc.pointer(path) {
            Some(actual) => format!("value did not match: expected {}, found {actual}", t.value),
            None => format!(
                "value did not match: expected {}, found nothing at {path}",
                t.value
            ),
        },
        (K::InvalidFromPointer, _) => format!(
            "nothing exists at the \"from\" path {}",
            from.unwrap_or_default()
        ),
        (K::InvalidPointer, Op::Add(_)) => format!(
            "path {path} is invalid: its parent does not exist or the index is out of range"
        ),
        (K::InvalidPointer, _) if doc.pointer(path).is_none() => {
            format!("path {path} is invalid: nothing exists there")
        }
        (other, _) => other.to_string(),
    };
    format!("json patch operation {i} ({what}) failed: {why}")
}

// ---- strategic merge patch ----

/// How a list is merged: element-wise by a key field, or as a set of primitive values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListMerge {
    ByKey(&'static str),
    Set,
}

use ListMerge::{ByKey, Set};

/// Lists merged for every kind, by path from the object's root.
const OBJECT_LISTS: &[(&str, ListMerge)] = &[
    ("metadata.ownerReferences", ByKey("uid")),
    ("metadata.finalizers", Set),
    ("status.conditions", ByKey("type")),
];

/// Lists merged for one kind, by path from the object's root.
const KIND_LISTS: &[(&str, &str, ListMerge)] = &[
    ("Service", "spec.ports", ByKey("port")),
    ("Pod", "status.podIPs", ByKey("ip")),
    ("Node", "spec.podCIDRs", Set),
];

/// Lists merged in a pod spec, by path from the pod spec (see [`pod_spec_roots`]).
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

/// Lists merged in every container (`containers[*]`, `initContainers[*]`,
/// `ephemeralContainers[*]`), by path from the container: so `ports` merges by `containerPort`
/// under a container but by `port` under a Service's spec.
const CONTAINER_LISTS: &[(&str, ListMerge)] = &[
    ("ports", ByKey("containerPort")),
    ("env", ByKey("name")),
    ("volumeMounts", ByKey("mountPath")),
    ("volumeDevices", ByKey("devicePath")),
];

/// Where a kind keeps its pod spec.
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

/// The merge strategy of the list at `path` (`spec.template.spec.containers[*].env`), or
/// `None` if the list is replaced.
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

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// What becomes of a merged map: kept, or deleted by `$patch: delete`.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Keep,
    Delete,
}

struct Strategic<'a> {
    kind: &'a str,
}

impl Strategic<'_> {
    /// Merge `patch` into `original` in place. `path` is the dotted path of `original`, with
    /// `[*]` for list elements.
    fn merge_map(
        &self,
        original: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        path: &str,
    ) -> Result<Outcome, String> {
        match patch.get(DIRECTIVE) {
            None => {}
            Some(Value::String(d)) if d == "merge" => {}
            // The field holding the map is removed. (Kubernetes' `strategicpatch` leaves an empty
            // map behind, which reads the same for optional fields.)
            Some(Value::String(d)) if d == "delete" => return Ok(Outcome::Delete),
            Some(Value::String(d)) if d == "replace" => {
                let mut rest = patch.clone();
                rest.remove(DIRECTIVE);
                *original = self.clean_map(&rest, path)?.unwrap_or_default();
                return Ok(Outcome::Keep);
            }
            Some(other) => return Err(unknown_directive(other, path)),
        }

        if let Some(retain) = patch.get(RETAIN_KEYS) {
            // Fields of the original not listed are cleared (used by `kubectl apply` for
            // union types such as a volume's source, or a Deployment's strategy).
            let retain = string_list(retain).ok_or_else(|| {
                format!(
                    "{RETAIN_KEYS} at {} must be a list of field names",
                    show(path)
                )
            })?;
            if let Some(k) = patch
                .keys()
                .find(|k| !k.starts_with('$') && !retain.contains(&k.as_str()))
            {
                return Err(format!(
                    "field {k} at {} is not listed in {RETAIN_KEYS}: {retain:?}",
                    show(path)
                ));
            }
            original.retain(|k, _| retain.contains(&k.as_str()));
        }

        for (key, values) in patch {
            let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
                continue;
            };
            let Value::Array(remove) = values else {
                return Err(format!("{key} at {} must be a list of values", show(path)));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
        }

        for (key, value) in patch {
            if key.starts_with('$') {
                if key != DIRECTIVE
                    && key != RETAIN_KEYS
                    && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                    && !key.starts_with(SET_ELEMENT_ORDER)
                {
                    return Err(format!(
                        "unknown strategic merge patch directive {key:?} at {}",
                        show(path)
                    ));
                }
                continue;
            }
            let child = join(path, key);
            match original.get_mut(key) {
                Some(slot) => {
                    let old = std::mem::take(slot);
                    match self.merge_value(Some(old), value, &child)? {
                        Some(merged) => *slot = merged,
                        None => {
                            original.remove(key);
                        }
                    }
                }
                None => {
                    if let Some(merged) = self.merge_value(None, value, &child)? {
                        original.insert(key.clone(), merged);
                    }
                }
            }
        }

        for (key, order) in patch {
            let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
                continue;
            };
            let Value::Array(order) = order else {
                return Err(format!("{key} at {} must be a list", show(path)));
            };
            let child = join(path, field);
            if let (Some(strategy), Some(Value::Array(list))) =
                (list_merge(self.kind, &child), original.get_mut(field))
            {
                set_element_order(list, order, strategy);
            }
        }
        Ok(Outcome::Keep)
    }

    /// The patch value merged into the original one; `None` deletes the field.
    fn merge_value(
        &self,
        original: Option<Value>,
        patch: &Value,
        path: &str,
    ) -> Result<Option<Value>, String> {
        match patch {
            Value::Null => Ok(None),
            Value::Object(p) => match original {
                Some(Value::Object(mut o)) => Ok((self.merge_map(&mut o, p, path)?
                    == Outcome::Keep)
                    .then_some(Value::Object(o))),
                _ => Ok(self.clean_map(p, path)?.map(Value::Object)),
            },
            Value::Array(p) => match list_merge(self.kind, path) {
                Some(strategy) => {
                    let original = match original {
                        Some(Value::Array(o)) => o,
                        _ => Vec::new(),
                    };
                    Ok(Some(Value::Array(
                        self.merge_list(original, p, strategy, path)?,
                    )))
                }
                None => Ok(Some(Value::Array(self.clean_list(p, path)?))),
            },
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// A patch map with its directives applied to nothing: what it adds where the original has
    /// no such field.
    fn clean_map(
        &self,
        patch: &Map<String, Value>,
        path: &str,
    ) -> Result<Option<Map<String, Value>>, String> {
        let mut out = Map::new();
        Ok((self.merge_map(&mut out, patch, path)? == Outcome::Keep).then_some(out))
    }

    /// A replaced list: its maps cleaned of directives, elements marked for deletion dropped.
    fn clean_list(&self, patch: &[Value], path: &str) -> Result<Vec<Value>, String> {
        let item = format!("{path}[*]");
        let mut out = Vec::with_capacity(patch.len());
        for v in patch {
            match v {
                Value::Object(m) => out.extend(self.clean_map(m, &item)?.map(Value::Object)),
                other => out.push(other.clone()),
            }
        }
        Ok(out)
    }

    fn merge_list(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        strategy: ListMerge,
        path: &str,
    ) -> Result<Vec<Value>, String> {
        // `{"$patch": "replace"}` among the elements: the other elements are the whole list.
        let is_replace = |v: &Value| v.get(DIRECTIVE).and_then(Value::as_str) == Some("replace");
        if patch.iter().any(is_replace) {
            let rest: Vec<Value> = patch.iter().filter(|v| !is_replace(v)).cloned().collect();
            return self.clean_list(&rest, path);
        }
        let item = format!("{path}[*]");
        match strategy {
            Set => {
                for v in patch {
                    if v.is_object() || v.is_array() {
                        return Err(format!(
                            "{} is merged as a set of values; found {v}",
                            show(path)
                        ));
                    }
                    if !original.contains(v) {
                        original.push(v.clone());
                    }
                }
            }
            ByKey(key) => {
                for (i, v) in patch.iter().enumerate() {
                    let Value::Object(element) = v else {
                        return Err(format!("element {i} of {} must be an object with the merge key {key:?}; found {v}", show(path)));
                    };
                    let Some(id) = element.get(key) else {
                        return Err(format!(
                            "{}: map: {v} does not contain declared merge key: {key}",
                            show(path)
                        ));
                    };
                    match element.get(DIRECTIVE) {
                        None => {}
                        Some(Value::String(d)) if d == "merge" => {}
                        Some(Value::String(d)) if d == "delete" => {
                            original.retain(|o| o.get(key) != Some(id));
                            continue;
                        }
                        Some(other) => return Err(unknown_directive(other, &item)),
                    }
                    // Only objects have a merge key, so a match is always an object.
                    if let Some(Value::Object(existing)) =
                        original.iter_mut().find(|o| o.get(key) == Some(id))
                    {
                        self.merge_map(existing, element, &item)?;
                    } else {
                        original.extend(self.clean_map(element, &item)?.map(Value::Object));
                    }
                }
            }
        }
        Ok(original)
    }
}

/// Reorder the elements named in `$setElementOrder/<field>` as it lists them. Elements it does not
/// name (present only on the server) keep their places; the named ones are permuted among the
/// positions they occupy. This is simpler than Kubernetes' interleaving but agrees with it
/// whenever the order names every element, which is what `kubectl apply` sends.
fn set_element_order(list: &mut [Value], order: &[Value], strategy: ListMerge) {
    let id = |v: &Value| -> Option<Value> {
        match strategy {
            ByKey(key) => v.get(key).cloned(),
            Set => Some(v.clone()),
        }
    };
    let rank =
        |v: &Value| id(v).and_then(|want| order.iter().position(|o| id(o).as_ref() == Some(&want)));
    let positions: Vec<usize> = (0..list.len())
        .filter(|&i| rank(&list[i]).is_some())
        .collect();
    let mut named: Vec<Value> = positions.iter().map(|&i| list[i].clone()).collect();
    named.sort_by_key(|v| rank(v));
    for (slot, value) in positions.into_iter().zip(named) {
        list[slot] = value;
    }
}

fn unknown_directive(directive: &Value, path: &str) -> String {
    format!("unknown patch type: {directive} in map at {}; expected \"merge\", \"replace\" or \"delete\"", show(path))
}

fn string_list(v: &Value) -> Option<Vec<&str>> {
    v.as_array()?.iter().map(Value::as_str).collect()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn show(path: &str) -> &str {
    if path.is_empty() {
        "the object's root"
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::resolve;

    fn patched(kind: &str, original: &Value, patch: Value, ty: PatchType) -> Result<Value, String> {
        apply(
            resolve(kind).unwrap(),
            original,
            patch.to_string().as_bytes(),
            ty,
        )
    }

    fn strategic(kind: &str, original: &Value, patch: Value) -> Value {
        patched(kind, original, patch.clone(), PatchType::Strategic)
            .unwrap_or_else(|e| panic!("{patch}: {e}"))
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "kubia", "namespace": "default", "labels": {"app": "kubia"}, "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "kubia"}},
                "template": {
                    "metadata": {"labels": {"app": "kubia"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "kubia",
                                "image": "luksa/kubia:v1",
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                            },
                            {"name": "sidecar", "image": "busybox", "args": ["sleep", "3600"]}
                        ],
                        "tolerations": [{"key": "x", "operator": "Exists"}],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            },
            "status": {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}
        })
    }

    fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
        v.pointer(pointer)
            .unwrap_or_else(|| panic!("nothing at {pointer} in {v}"))
    }

    #[test]
    fn set_image_changes_only_that_container() {
        let original = deployment();
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "kubia", "image": "luksa/kubia:v2"}]}}}});
        let out = strategic("deployments", &original, patch);
        let mut want = original.clone();
        want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("luksa/kubia:v2");
        assert_eq!(out, want);

        // A merge patch replaces the whole list instead.
        let merge = json!({"spec": {"template": {"spec": {"containers": [{"name": "kubia", "image": "luksa/kubia:v2"}]}}}});
        let out = patched("deployments", &original, merge, PatchType::Merge).unwrap();
        assert_eq!(
            at(&out, "/spec/template/spec/containers"),
            &json!([{"name": "kubia", "image": "luksa/kubia:v2"}])
        );
        assert_eq!(at(&out, "/spec/replicas"), &json!(3));
    }

    #[test]
    fn strategic_merges_lists_by_their_keys() {
        let original = deployment();
        let c0 = "/spec/template/spec/containers/0";
        // (patch, pointer, expected value there)
        for (patch, pointer, want) in [
            // env merges by name: A changes, B stays, C is appended.
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "kubia", "env": [{"name": "A", "value": "10"}, {"name": "C", "value": "3"}]}]}}}}),
                format!("{c0}/env"),
                json!([{"name": "A", "value": "10"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]),
            ),
            // null deletes a field of a merged element.
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "kubia", "env": [{"name": "A", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}}}),
                format!("{c0}/env/0"),
                json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            ),
            // container ports merge by containerPort.
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "kubia", "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090}]}]}}}}),
                format!("{c0}/ports"),
                json!([{"containerPort": 8080, "protocol": "TCP", "name": "http"}, {"containerPort": 9090}]),
            ),
            // $patch: delete removes one container.
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
                "/spec/template/spec/containers".to_string(),
                json!([original["spec"]["template"]["spec"]["containers"][0].clone()]),
            ),
            // volumes merge by name.
            (
                json!({"spec": {"template": {"spec": {"volumes": [{"name": "cache", "emptyDir": {"medium": "Memory"}}]}}}}),
                "/spec/template/spec/volumes".to_string(),
                json!([{"name": "data", "emptyDir": {}}, {"name": "cache", "emptyDir": {"medium": "Memory"}}]),
            ),
            // tolerations are not merged: replaced.
            (
                json!({"spec": {"template": {"spec": {"tolerations": [{"key": "y", "operator": "Exists"}]}}}}),
                "/spec/template/spec/tolerations".to_string(),
                json!([{"key": "y", "operator": "Exists"}]),
            ),
            // args (a list of strings without a merge strategy) are replaced.
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "args": ["sleep", "1"]}]}}}}),
                "/spec/template/spec/containers/1/args".to_string(),
                json!(["sleep", "1"]),
            ),
            // finalizers merge as a set.
            (
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                "/metadata/finalizers".to_string(),
                json!(["a", "b", "c"]),
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["d"]}}),
                "/metadata/finalizers".to_string(),
                json!(["b", "d"]),
            ),
            // status conditions merge by type.
            (
                json!({"status": {"conditions": [{"type": "Progressing", "status": "False"}]}}),
                "/status/conditions".to_string(),
                json!([{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "False"}]),
            ),
            // $patch: replace in a list element replaces the list.
            (
                json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}),
                "/spec/template/spec/containers".to_string(),
                json!([{"name": "only", "image": "x"}]),
            ),
            // $patch: replace on a map replaces the map.
            (
                json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "other"}}}}),
                "/spec/selector".to_string(),
                json!({"matchLabels": {"app": "other"}}),
            ),
            // $retainKeys clears fields the patch does not keep.
            (
                json!({"spec": {"template": {"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/d"}}]}}}}),
                "/spec/template/spec/volumes/0".to_string(),
                json!({"name": "data", "hostPath": {"path": "/d"}}),
            ),
            // $setElementOrder reorders merged elements.
            (
                json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "kubia"}], "containers": [{"name": "kubia", "image": "v3"}]}}}}),
                "/spec/template/spec/containers/0/name".to_string(),
                json!("sidecar"),
            ),
            // New list fields take the patch's elements, without directives.
            (
                json!({"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "reg", "$patch": "merge"}]}}}}),
                "/spec/template/spec/imagePullSecrets".to_string(),
                json!([{"name": "reg"}]),
            ),
        ] {
            let out = strategic("deployments", &original, patch.clone());
            assert_eq!(at(&out, &pointer), &want, "{patch}");
            // Everything else is untouched.
            assert_eq!(at(&out, "/spec/replicas"), &json!(3), "{patch}");
            assert_eq!(
                at(&out, "/metadata/labels"),
                &json!({"app": "kubia"}),
                "{patch}"
            );
        }
    }

    #[test]
    fn strategic_deletes_maps_and_fields() {
        let original = deployment();
        let out = strategic(
            "deployments",
            &original,
            json!({"spec": {"selector": {"$patch": "delete"}}, "status": null}),
        );
        assert!(out["spec"].get("selector").is_none());
        assert!(out.get("status").is_none());
        assert_eq!(out["spec"]["replicas"], json!(3));
    }

    #[test]
    fn list_strategy_depends_on_the_position() {
        let service = json!({
            "kind": "Service",
            "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}
        });
        let out = strategic(
            "services",
            &service,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}])
        );

        // A ConfigMap has no merged lists: the same shape is replaced.
        let other = json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}});
        let out = strategic(
            "configmaps",
            &other,
            json!({"spec": {"ports": [{"port": 80, "x": 1}]}}),
        );
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "x": 1}]));

        // Pods keep their spec at `spec`, CronJobs deep in the job template.
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        let out = strategic(
            "pods",
            &pod,
            json!({"spec": {"containers": [{"name": "b", "image": "2"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
        );
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}}}});
        let out = strategic(
            "cronjobs",
            &cron,
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "2"}]}}}}}}),
        );
        assert_eq!(
            out.pointer("/spec/jobTemplate/spec/template/spec/containers/1/image"),
            Some(&json!("1"))
        );
        assert_eq!(
            out.pointer("/spec/jobTemplate/spec/template/spec/containers/0/image"),
            Some(&json!("2"))
        );
        // A Pod's `spec.template` does not exist: `spec.template.spec.containers` is just a path.
        assert_eq!(list_merge("Pod", "spec.template.spec.containers"), None);
        assert_eq!(
            list_merge("Deployment", "spec.template.spec.initContainers[*].env"),
            Some(ByKey("name"))
        );
        assert_eq!(
            list_merge("Deployment", "spec.template.spec.containers[*].envFrom"),
            None
        );
        assert_eq!(list_merge("Node", "spec.taints"), None);
        assert_eq!(
            list_merge("Job", "metadata.ownerReferences"),
            Some(ByKey("uid"))
        );
    }

    #[test]
    fn strategic_errors_are_clear() {
        let original = deployment();
        for (patch, message) in [
            (
                json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
                "spec.template.spec.containers: map: {\"image\":\"x\"} does not contain declared merge key: name",
            ),
            (
                json!({"spec": {"template": {"spec": {"containers": ["x"]}}}}),
                "element 0 of spec.template.spec.containers must be an object with the merge key \"name\"; found \"x\"",
            ),
            (
                json!({"spec": {"$patch": "frob"}}),
                "unknown patch type: \"frob\" in map at spec; expected \"merge\", \"replace\" or \"delete\"",
            ),
            (json!({"spec": {"$frob": 1}}), "unknown strategic merge patch directive \"$frob\" at spec"),
            (json!({"metadata": {"finalizers": [{"a": 1}]}}), "metadata.finalizers is merged as a set of values; found {\"a\":1}"),
            (json!(["x"]), "a strategic merge patch must be a JSON object, not an array"),
        ] {
            assert_eq!(patched("deployments", &original, patch.clone(), PatchType::Strategic), Err(message.to_string()), "{patch}");
        }
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let original = deployment();
        let out = patched(
            "deployments",
            &original,
            json!({"metadata": {"labels": {"tier": "web"}, "finalizers": ["z"]}, "spec": {"replicas": 5, "template": {"spec": {"volumes": null}}}}),
            PatchType::Merge,
        )
        .unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "kubia", "tier": "web"})
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["z"]));
        assert_eq!(out["spec"]["replicas"], json!(5));
        assert!(out["spec"]["template"]["spec"].get("volumes").is_none());
        assert_eq!(
            patched("deployments", &original, json!([1]), PatchType::Merge),
            Err("a merge patch must be a JSON object, not an array".into())
        );
    }

    #[test]
    fn json_patch_applies_operations_in_order() {
        let original = deployment();
        let ops = json!([
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "third", "image": "x"}},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
            {"op": "copy", "from": "/metadata/labels", "path": "/spec/template/metadata/labels"},
            {"op": "move", "from": "/metadata/finalizers", "path": "/metadata/annotations"},
        ]);
        let out = patched("deployments", &original, ops, PatchType::Json).unwrap();
        assert_eq!(out["spec"]["replicas"], json!(4));
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "kubia", "tier": "web"})
        );
        let names: Vec<_> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("kubia"), json!("third")]);
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"],
            json!({"app": "kubia", "tier": "web"})
        );
        assert_eq!(out["metadata"]["annotations"], json!(["a", "b"]));
        assert!(out["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn json_patch_failures_name_the_operation() {
        let original = deployment();
        for (ops, message) in [
            (
                json!([{"op": "replace", "path": "/spec/replicas", "value": 4}, {"op": "test", "path": "/spec/replicas", "value": 3}]),
                "json patch operation 1 (test /spec/replicas) failed: value did not match: expected 3, found 4",
            ),
            (
                json!([{"op": "test", "path": "/spec/paused", "value": true}]),
                "json patch operation 0 (test /spec/paused) failed: value did not match: expected true, found nothing at /spec/paused",
            ),
            (
                json!([{"op": "remove", "path": "/spec/nope"}]),
                "json patch operation 0 (remove /spec/nope) failed: path /spec/nope is invalid: nothing exists there",
            ),
            (
                json!([{"op": "add", "path": "/spec/a/b", "value": 1}]),
                "json patch operation 0 (add /spec/a/b) failed: path /spec/a/b is invalid: its parent does not exist or the index is out of range",
            ),
            (
                json!([{"op": "move", "from": "/spec/nope", "path": "/spec/x"}]),
                "json patch operation 0 (move from /spec/nope to /spec/x) failed: nothing exists at the \"from\" path /spec/nope",
            ),
            (json!({"op": "add"}), "a json patch must be a JSON array of operations, not an object"),
        ] {
            assert_eq!(patched("deployments", &original, ops.clone(), PatchType::Json), Err(message.to_string()), "{ops}");
        }
        let unknown = patched(
            "deployments",
            &original,
            json!([{"op": "frob", "path": "/a"}]),
            PatchType::Json,
        )
        .unwrap_err();
        assert!(
            unknown.starts_with("json patch operation 0 is invalid: unknown variant `frob`"),
            "{unknown}"
        );
    }

    #[test]
    fn invalid_json_is_rejected_for_every_type() {
        let info = resolve("deployments").unwrap();
        for ty in [PatchType::Merge, PatchType::Json, PatchType::Strategic] {
            let err = apply(info, &deployment(), b"{\"spec\": ", ty).unwrap_err();
            assert!(
                err.starts_with("the patch is not valid JSON: EOF while parsing"),
                "{ty:?}: {err}"
            );
        }
    }

    #[test]
    fn content_types() {
        for ty in [PatchType::Merge, PatchType::Json, PatchType::Strategic] {
            assert_eq!(PatchType::from_content_type(ty.content_type()), Some(ty));
        }
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
