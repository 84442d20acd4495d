//! Tests of the PersistentVolume and PersistentVolumeClaim rules.

use serde_json::{json, Value};

use super::*;
use crate::strategies::fields::testing::{check_create_table, defaulted, update_errors};

fn pv(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"}, "spec": spec})
}

fn host_path_pv() -> Value {
    pv(
        json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/data"}}),
    )
}

#[test]
fn persistent_volume_defaults() {
    let got = defaulted(&PersistentVolumeRules, host_path_pv());
    let spec = got.spec.unwrap();
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(spec.host_path.unwrap().type_.as_deref(), Some(""));
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Pending"));
}

const LOCAL: &str = "/mnt/disks/ssd1";

#[test]
fn persistent_volume_validation() {
    let terms =
        |exprs: Value| json!({"required": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}});
    check_create_table(
        &PersistentVolumeRules,
        vec![
            ("host path", host_path_pv(), vec![]),
            (
                "local with node affinity",
                pv(json!({"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOncePod"], "local": {"path": LOCAL},
                          "storageClassName": "local-storage",
                          "nodeAffinity": terms(json!([{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]))})),
                vec![],
            ),
            (
                "empty",
                pv(json!({})),
                vec![
                    "spec.accessModes: Required value: at least 1 access mode is required",
                    "spec.capacity: Required value",
                    "spec: Required value: must specify a volume type",
                ],
            ),
            (
                "bad values",
                pv(json!({"capacity": {"storage": "0", "cpu": "1"}, "accessModes": ["ReadWriteOncePod", "ReadWriteOnce", "Sometimes"],
                          "persistentVolumeReclaimPolicy": "Keep", "volumeMode": "Raw",
                          "hostPath": {"path": "/a/../b", "type": "Pipe"}, "nfs": {"server": "s", "path": "/x"}})),
                vec![
                    "spec.accessModes: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                    "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
                    "spec.capacity: Unsupported value: \"cpu\": supported values: \"storage\"",
                    "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero",
                    "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\"",
                    "spec.hostPath.path: Invalid value: \"/a/../b\": must not contain '..'",
                    "spec.hostPath.type: Unsupported value: \"Pipe\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
                    "spec.nfs: Forbidden: may not specify more than 1 volume type",
                    "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\"",
                ],
            ),
            (
                "bad quantity and a recycled root host path",
                pv(json!({"capacity": {"storage": "lots"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/"},
                          "persistentVolumeReclaimPolicy": "Recycle"})),
                vec![
                    "spec.capacity[storage]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got \"lots\")",
                    "spec.persistentVolumeReclaimPolicy: Forbidden: may not be 'recycle' for a hostPath mount of '/'",
                ],
            ),
            (
                "local without node affinity",
                pv(json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": ""}})),
                vec!["spec.local.path: Required value", "spec.nodeAffinity: Required value: Local volume requires node affinity"],
            ),
            (
                "node affinity",
                pv(json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": LOCAL},
                          "nodeAffinity": terms(json!([
                              {"key": "k", "operator": "In"},
                              {"key": "k", "operator": "Exists", "values": ["a"]},
                              {"key": "k", "operator": "Gt", "values": ["1", "2"]},
                              {"key": "k", "operator": "Near"},
                              {"key": "bad key", "operator": "NotIn", "values": ["bad value"]}]))})),
                vec![
                    "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                    "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[2].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
                    "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[3].operator: Invalid value: \"Near\": not a valid selector operator",
                    "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[4].key: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc'), regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'",
                    "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[4].values[0]: Invalid value: \"bad value\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ],
            ),
            (
                "node affinity without terms",
                pv(json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"},
                          "nodeAffinity": {"required": {"nodeSelectorTerms": []}}})),
                vec!["spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node selector term"],
            ),
        ],
    );
}

#[test]
fn persistent_volume_source_is_immutable() {
    let old = host_path_pv();
    let mut grown = old.clone();
    grown["spec"]["capacity"]["storage"] = json!("2Gi");
    grown["spec"]["claimRef"] =
        json!({"kind": "PersistentVolumeClaim", "namespace": "default", "name": "c"});
    assert!(update_errors(&PersistentVolumeRules, old.clone(), grown).is_empty());
    let mut moved = old.clone();
    moved["spec"]["hostPath"]["path"] = json!("/elsewhere");
    moved["spec"]["volumeMode"] = json!("Block");
    assert_eq!(
        update_errors(&PersistentVolumeRules, old, moved),
        vec![
            "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation",
            "spec.volumeMode: Invalid value: \"Block\": field is immutable",
        ]
    );
}

fn pvc(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "default"}, "spec": spec})
}

fn claim(storage: &str) -> Value {
    pvc(
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}, "storageClassName": ""}),
    )
}

#[test]
fn persistent_volume_claim_defaults() {
    let got = defaulted(&PersistentVolumeClaimRules, claim("1Gi"));
    assert_eq!(got.spec.unwrap().volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[test]
fn persistent_volume_claim_validation() {
    check_create_table(
        &PersistentVolumeClaimRules,
        vec![
            ("valid", claim("1Gi"), vec![]),
            (
                "empty",
                pvc(json!({})),
                vec!["spec.accessModes: Required value: at least 1 access mode is required", "spec.resources.requests[storage]: Required value"],
            ),
            (
                "bad values",
                pvc(json!({"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "0"}},
                           "storageClassName": "Fast_SSD", "volumeMode": "Raw",
                           "selector": {"matchExpressions": [{"key": "tier", "operator": "Near"}]}})),
                vec![
                    "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                    "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
                    "spec.resources.requests[storage]: Invalid value: \"0\": must be greater than zero",
                    "spec.storageClassName: Invalid value: \"Fast_SSD\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'), regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'",
                    "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\"",
                ],
            ),
        ],
    );
}

const IMMUTABLE_SPEC: &str =
    "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

fn bound(mut claim: Value, volume: &str) -> Value {
    claim["spec"]["volumeName"] = json!(volume);
    claim["status"] = json!({"phase": "Bound"});
    claim
}

#[test]
fn persistent_volume_claim_spec_is_immutable_except_binding_and_resize() {
    let rules = &PersistentVolumeClaimRules;
    // The binder sets volumeName once.
    assert!(update_errors(rules, claim("1Gi"), bound(claim("1Gi"), "pv1")).is_empty());
    assert_eq!(
        update_errors(
            rules,
            bound(claim("1Gi"), "pv1"),
            bound(claim("1Gi"), "pv2")
        ),
        vec![IMMUTABLE_SPEC]
    );
    // A bound claim may grow, never shrink; an unbound one may not be resized.
    assert!(update_errors(
        rules,
        bound(claim("1Gi"), "pv1"),
        bound(claim("2Gi"), "pv1")
    )
    .is_empty());
    assert_eq!(
        update_errors(
            rules,
            bound(claim("2Gi"), "pv1"),
            bound(claim("1Gi"), "pv1")
        ),
        vec![
            "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
        ]
    );
    assert_eq!(
        update_errors(rules, claim("1Gi"), claim("2Gi")),
        vec![IMMUTABLE_SPEC]
    );
    let mut many = claim("1Gi");
    many["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert_eq!(
        update_errors(rules, claim("1Gi"), many),
        vec![IMMUTABLE_SPEC]
    );
}
