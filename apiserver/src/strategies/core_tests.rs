//! Tests of the core kinds' rules (Namespace, Node, Endpoints, ConfigMap, Secret, Event), and a
//! check that every shared example manifest of the kinds in this family validates.

use serde_json::{json, Value};

use super::*;
use crate::strategies::fields::testing::{
    check_create_table, create_errors, defaulted, update_errors,
};
use crate::validation::FieldErrorKind;

fn ns(spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": spec, "status": status})
}

#[test]
fn namespace_defaults_finalizer_and_phase() {
    let got = defaulted(
        &NamespaceRules,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
    );
    assert_eq!(
        serde_json::to_value(&got.spec).unwrap(),
        json!({"finalizers": ["kubernetes"]})
    );
    assert_eq!(
        serde_json::to_value(&got.status).unwrap(),
        json!({"phase": "Active"})
    );
    // Finalizers that were written (even none) are kept.
    let got = defaulted(
        &NamespaceRules,
        ns(json!({"finalizers": []}), json!({"phase": "Terminating"})),
    );
    assert_eq!(got.spec.unwrap().finalizers, Some(vec![]));
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Terminating"));
}

#[test]
fn namespace_validation() {
    check_create_table(
        &NamespaceRules,
        vec![
            ("valid", ns(json!({"finalizers": ["kubernetes", "example.com/cleanup"]}), json!({})), vec![]),
            (
                "bad finalizers and phase",
                ns(json!({"finalizers": ["foo", "example.com/-x"]}), json!({"phase": "Gone"})),
                vec![
                    "spec.finalizers[0]: Invalid value: \"foo\": name is neither a standard finalizer name nor is it fully qualified",
                    "spec.finalizers[1]: Invalid value: \"example.com/-x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc'), regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'",
                    "status.phase: Unsupported value: \"Gone\": supported values: \"Active\", \"Terminating\"",
                ],
            ),
        ],
    );
}

fn node(spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": spec, "status": status})
}

#[test]
fn node_validation() {
    check_create_table(
        &NodeRules,
        vec![
            (
                "valid",
                node(
                    json!({"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                           "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                                      {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]}),
                    json!({"capacity": {"cpu": "4", "memory": "8Gi", "pods": 110}}),
                ),
                vec![],
            ),
            (
                "bad taints",
                node(
                    json!({"taints": [
                        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                        {"key": "dedicated", "value": "other", "effect": "NoSchedule"},
                        {"key": "k", "effect": ""},
                        {"key": "-k", "value": "bad value", "effect": "Sometimes"}]}),
                    json!({}),
                ),
                vec![
                    "spec.taints[1]: Duplicate value: \"dedicated=other:NoSchedule\"",
                    "spec.taints[2].effect: Required value",
                    "spec.taints[3].key: Invalid value: \"-k\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc'), regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'",
                    "spec.taints[3].value: Invalid value: \"bad value\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                    "spec.taints[3].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                ],
            ),
            (
                "bad cidrs and quantities",
                node(
                    json!({"podCIDR": "10.244.1.0/33", "podCIDRs": ["10.244.1.0/24", "10.244.1.0/24"]}),
                    json!({"capacity": {"cpu": "4"}, "allocatable": {"cpu": "-1", "memory": "lots"}}),
                ),
                vec![
                    "spec.podCIDR: Invalid value: \"10.244.1.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                    "spec.podCIDRs[1]: Duplicate value: \"10.244.1.0/24\"",
                    "status.allocatable[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                    "status.allocatable[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got \"lots\")",
                ],
            ),
        ],
    );
}

#[test]
fn node_allocatable_defaults_to_capacity() {
    let got = defaulted(
        &NodeRules,
        node(json!({}), json!({"capacity": {"cpu": "2"}})),
    );
    assert_eq!(got.status.unwrap().allocatable.unwrap()["cpu"].0, "2");
}

#[test]
fn node_pod_cidr_may_be_set_once() {
    let none = node(json!({}), json!({}));
    let set = node(
        json!({"podCIDR": "10.244.1.0/24", "providerID": "p1"}),
        json!({}),
    );
    let other = node(
        json!({"podCIDR": "10.244.2.0/24", "providerID": "p2"}),
        json!({}),
    );
    assert_eq!(
        update_errors(&NodeRules, none, set.clone()),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(&NodeRules, set, other),
        vec![
            "spec.podCIDR: Forbidden: node updates may not change podCIDR except from \"\" to valid",
            "spec.providerID: Forbidden: node updates may not change providerID except from \"\" to valid",
        ]
    );
}

fn endpoints(subsets: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e", "namespace": "default"}, "subsets": subsets})
}

#[test]
fn endpoints_validation() {
    check_create_table(
        &EndpointsRules,
        vec![
            (
                "valid",
                endpoints(json!([{"addresses": [{"ip": "10.1.0.5", "hostname": "web-0"}],
                                  "notReadyAddresses": [{"ip": "10.1.0.6"}],
                                  "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}])),
                vec![],
            ),
            (
                "bad subsets",
                endpoints(json!([
                    {"addresses": [{"ip": "10.0.0.300"}, {"ip": ""}],
                     "ports": [{"port": 0, "protocol": "ICMP"}, {"name": "a", "port": 80}, {"name": "a", "port": 81}]},
                    {"ports": [{"port": 1}]}])),
                vec![
                    "subsets[0].addresses[0].ip: Invalid value: \"10.0.0.300\": must be a valid IPv4 address, (e.g. 10.9.8.7)",
                    "subsets[0].addresses[1].ip: Required value",
                    "subsets[0].ports[0].name: Required value",
                    "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "subsets[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                    "subsets[0].ports[2].name: Duplicate value: \"a\"",
                    "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
                ],
            ),
        ],
    );
    let got = defaulted(
        &EndpointsRules,
        endpoints(json!([{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 80}]}])),
    );
    assert_eq!(
        got.subsets.unwrap()[0].ports.as_ref().unwrap()[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );
}

fn configmap(data: Value, binary: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
           "data": data, "binaryData": binary})
}

#[test]
fn configmap_validation() {
    check_create_table(
        &ConfigMapRules,
        vec![
            ("valid", configmap(json!({"a.conf": "x", "B_2": "y"}), json!({"bin": "AAEC"})), vec![]),
            (
                "bad keys",
                configmap(json!({"a b": "x", "ok": "1", "..x": "y", "dup": "1"}), json!({"dup": "AA==", ".": "AA=="})),
                vec![
                    "data[..x]: Invalid value: \"..x\": must not start with '..'",
                    "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key_name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData",
                    "binaryData[.]: Invalid value: \".\": must not be '.'",
                ],
            ),
        ],
    );
}

#[test]
fn configmap_and_secret_size_is_limited() {
    let big = "x".repeat(MAX_DATA_BYTES + 1);
    let cm = defaulted(&ConfigMapRules, configmap(json!({"big": big}), json!({})));
    let mut errs = Vec::new();
    ConfigMapRules.validate(&cm, &mut errs);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        (errs[0].path.as_str(), &errs[0].kind),
        ("data", &FieldErrorKind::TooLong { max: 1_048_576 })
    );

    let secret = defaulted(&SecretRules, secret(json!({"stringData": {"big": big}})));
    let mut errs = Vec::new();
    SecretRules.validate(&secret, &mut errs);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        (errs[0].path.as_str(), &errs[0].kind),
        ("data", &FieldErrorKind::TooLong { max: 1_048_576 })
    );
}

#[test]
fn immutable_configmap_data_cannot_change() {
    let old = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
    let mut changed = old.clone();
    changed["data"]["a"] = json!("2");
    changed["binaryData"] = json!({"b": "AA=="});
    assert_eq!(
        update_errors(&ConfigMapRules, old.clone(), changed),
        vec![
            "data: Forbidden: field is immutable when `immutable` is set",
            "binaryData: Forbidden: field is immutable when `immutable` is set",
        ]
    );
    let mut unfrozen = old.clone();
    unfrozen["immutable"] = json!(false);
    assert_eq!(
        update_errors(&ConfigMapRules, old.clone(), unfrozen),
        vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
    );
    // A mutable ConfigMap may change freely, and may be frozen.
    let mut mutable = old.clone();
    mutable["immutable"] = json!(false);
    assert!(update_errors(&ConfigMapRules, mutable, old).is_empty());
}

fn secret(fields: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}});
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[test]
fn secret_defaults_type_and_folds_string_data() {
    // "eA==" is base64 for "x".
    let got = defaulted(
        &SecretRules,
        secret(
            json!({"data": {"password": "eA==", "username": "eA=="}, "stringData": {"username": "admin"}}),
        ),
    );
    assert_eq!(got.type_.as_deref(), Some("Opaque"));
    assert_eq!(got.string_data, None);
    assert_eq!(
        serde_json::to_value(&got.data).unwrap(),
        json!({"password": "eA==", "username": "YWRtaW4="})
    );
    let tls = defaulted(&SecretRules, secret(json!({"type": "kubernetes.io/tls"})));
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
}

#[test]
fn secret_validation() {
    check_create_table(
        &SecretRules,
        vec![
            ("opaque", secret(json!({"stringData": {"a": "b"}})), vec![]),
            (
                "tls",
                secret(json!({"type": "kubernetes.io/tls", "stringData": {"tls.crt": "c", "tls.key": "k"}})),
                vec![],
            ),
            (
                "tls without keys",
                secret(json!({"type": "kubernetes.io/tls", "data": {"a b": "eA=="}})),
                vec![
                    "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key_name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    "data[tls.crt]: Required value",
                    "data[tls.key]: Required value",
                ],
            ),
            (
                "dockerconfigjson",
                secret(json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\": {}}"}})),
                vec![],
            ),
            (
                "dockerconfigjson missing",
                secret(json!({"type": "kubernetes.io/dockerconfigjson"})),
                vec!["data[.dockerconfigjson]: Required value"],
            ),
            (
                "dockerconfigjson not json",
                secret(json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{"}})),
                vec!["data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": EOF while parsing an object at line 1 column 1"],
            ),
            (
                "basic-auth",
                secret(json!({"type": "kubernetes.io/basic-auth"})),
                vec!["data[username]: Required value", "data[password]: Required value"],
            ),
            ("basic-auth with password only", secret(json!({"type": "kubernetes.io/basic-auth", "stringData": {"password": "p"}})), vec![]),
            (
                "ssh-auth",
                secret(json!({"type": "kubernetes.io/ssh-auth", "stringData": {"ssh-privatekey": ""}})),
                vec!["data[ssh-privatekey]: Required value"],
            ),
            (
                "service account token",
                secret(json!({"type": "kubernetes.io/service-account-token"})),
                vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"],
            ),
        ],
    );
}

#[test]
fn secret_type_and_frozen_data_are_immutable() {
    let old = secret(json!({"type": "Opaque", "immutable": true, "stringData": {"a": "1"}}));
    let new =
        secret(json!({"type": "example.com/custom", "immutable": true, "stringData": {"a": "2"}}));
    assert_eq!(
        update_errors(&SecretRules, old.clone(), new),
        vec![
            "type: Invalid value: \"example.com/custom\": field is immutable",
            "data: Forbidden: field is immutable when `immutable` is set",
        ]
    );
    // Writing the same value through stringData again is no change.
    assert!(update_errors(&SecretRules, old.clone(), old).is_empty());
}

fn event(fields: Value) -> Value {
    let mut e = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": "default"},
                       "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started"});
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

#[test]
fn event_validation() {
    check_create_table(
        &EventRules,
        vec![
            ("valid", event(json!({"type": "Normal", "count": 1, "message": "started"})), vec![]),
            ("cluster-scoped object", event(json!({"involvedObject": {"kind": "Node", "name": "n1"}})), vec![]),
            (
                "bad",
                event(json!({"involvedObject": {"namespace": "other"}, "type": "Info", "count": -1})),
                vec![
                    "involvedObject.kind: Required value",
                    "involvedObject.name: Required value",
                    "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace",
                    "type: Unsupported value: \"Info\": supported values: \"Normal\", \"Warning\"",
                    "count: Invalid value: -1: must be greater than or equal to 0",
                ],
            ),
        ],
    );
    let missing = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"}});
    assert_eq!(
        create_errors(&EventRules, missing),
        vec![
            "involvedObject.kind: Required value",
            "involvedObject.name: Required value"
        ]
    );
}

/// The kinds whose rules live in this family of strategies.
const KINDS_HERE: &[&str] = &[
    "Namespace",
    "Node",
    "Service",
    "Endpoints",
    "ConfigMap",
    "Secret",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Event",
    "HorizontalPodAutoscaler",
    "Lease",
    "PriorityClass",
];

#[test]
fn shared_example_manifests_validate() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/examples"
    ));
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("skipping: no example manifests at {}", dir.display());
        return;
    };
    let strategies = crate::strategies::all();
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let kind = value["kind"].as_str().unwrap_or_default();
            if !KINDS_HERE.contains(&kind) {
                continue;
            }
            let strategy = strategies
                .iter()
                .find(|s| s.info().kind == kind)
                .expect("served kind");
            let defaulted = strategy
                .decode_and_default(&value)
                .unwrap_or_else(|e| panic!("{} {kind}: {:?}", file.display(), e));
            let errs: Vec<String> = strategy
                .validate(&defaulted)
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert!(
                errs.is_empty(),
                "{} {kind} {}: {errs:?}",
                file.display(),
                value["metadata"]["name"]
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "only {checked} example objects of these kinds were found"
    );
}
