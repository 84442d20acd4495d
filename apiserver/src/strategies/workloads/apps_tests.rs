//! Table tests of the ReplicationController and `apps/v1` rules: defaults, validation messages
//! and update rules.

use serde_json::{json, Value};

use super::{
    DaemonSetRules, DeploymentRules, ReplicaSetRules, ReplicationControllerRules, StatefulSetRules,
};
use crate::strategies::pod::test_support::{create_errors, defaulted_json, update_errors, with};

const MISMATCH: &str = "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`";

/// An `apps/v1` object of `kind` selecting `app: a`, whose template makes such pods; `spec` is
/// merged into its spec.
fn apps(kind: &str, spec: Value) -> Value {
    let base = json!({
        "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    });
    with(&base, json!({"spec": spec}))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn replication_controller() {
    let rc = |spec: Value| {
        let base = json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc", "namespace": "default"},
            "spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        with(&base, json!({"spec": spec}))
    };
    let defaulted = defaulted_json(&ReplicationControllerRules, &rc(json!({})));
    assert_eq!(defaulted["spec"]["selector"], json!({"app": "a"}));
    assert_eq!(defaulted["metadata"]["labels"], json!({"app": "a"}));
    assert_eq!(defaulted["spec"]["replicas"], 1);
    assert_eq!(
        defaulted["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );

    let cases = vec![
        ("defaulted selector", rc(json!({})), vec![]),
        ("selector of some labels", rc(json!({"selector": {"app": "other"}, "template": {"metadata": {"labels": {"app": "other", "x": "y"}}}})), vec![]),
        ("not selected", rc(json!({"selector": {"app": "b"}, "template": {"metadata": {"labels": {"app": "other"}}}})), vec![MISMATCH.to_string()]),
        (
            "no template",
            with(&rc(json!({})), json!({"spec": {"template": null, "replicas": -1}})),
            s(&["spec.selector: Required value", "spec.replicas: Invalid value: -1: must be greater than or equal to 0", "spec.template: Required value"]),
        ),
        (
            "run to completion",
            rc(json!({"template": {"spec": {"restartPolicy": "OnFailure", "activeDeadlineSeconds": 10}}})),
            s(&[
                r#"spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicationController is not Supported",
            ]),
        ),
    ];
    for (name, obj, want) in cases {
        assert_eq!(
            create_errors(&ReplicationControllerRules, &obj),
            want,
            "case {name}"
        );
    }
}

#[test]
fn replica_set() {
    let defaulted = defaulted_json(&ReplicaSetRules, &apps("ReplicaSet", json!({})));
    assert_eq!(defaulted["spec"]["replicas"], 1);
    assert_eq!(
        defaulted["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );

    let cases = vec![
        ("valid", apps("ReplicaSet", json!({})), vec![]),
        (
            "expressions",
            apps("ReplicaSet", json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}})),
            vec![],
        ),
        ("missing selector", apps("ReplicaSet", json!({"selector": null})), s(&["spec.selector: Required value"])),
        (
            "empty selector",
            apps("ReplicaSet", json!({"selector": {"matchLabels": null, "matchExpressions": []}})),
            s(&[
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{}}: empty selector is invalid for deployment",
            ]),
        ),
        ("not selected", apps("ReplicaSet", json!({"template": {"metadata": {"labels": {"app": "other"}}}})), vec![MISMATCH.to_string()]),
        (
            "template problems",
            apps(
                "ReplicaSet",
                json!({"replicas": -2, "template": {"metadata": {"labels": {"bad key": "a"}}, "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c"}]}}}),
            ),
            s(&[
                "spec.replicas: Invalid value: -2: must be greater than or equal to 0",
                r#"spec.template.metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc'), regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'"#,
                "spec.template.spec.containers[0].image: Required value",
                r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#,
            ]),
        ),
    ];
    for (name, obj, want) in cases {
        assert_eq!(create_errors(&ReplicaSetRules, &obj), want, "case {name}");
    }

    let old = apps("ReplicaSet", json!({}));
    assert_eq!(
        update_errors(
            &ReplicaSetRules,
            &old,
            &with(&old, json!({"spec": {"replicas": 5}}))
        ),
        Vec::<String>::new()
    );
    let relabelled = apps(
        "ReplicaSet",
        json!({"selector": {"matchLabels": {"app": "b"}}, "template": {"metadata": {"labels": {"app": "b"}}}}),
    );
    assert_eq!(
        update_errors(&ReplicaSetRules, &old, &relabelled),
        s(&[
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"b"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
        ])
    );
}

#[test]
fn deployment_defaults() {
    let spec = defaulted_json(&DeploymentRules, &apps("Deployment", json!({})))["spec"].clone();
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        spec["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );

    let recreate = defaulted_json(
        &DeploymentRules,
        &apps("Deployment", json!({"strategy": {"type": "Recreate"}})),
    );
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    let partial = defaulted_json(
        &DeploymentRules,
        &apps(
            "Deployment",
            json!({"strategy": {"rollingUpdate": {"maxSurge": 1}}}),
        ),
    );
    assert_eq!(
        partial["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": "25%"})
    );
}

#[test]
fn deployment_validation() {
    let rolling = |ru: Value| json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": ru}});
    let cases = vec![
        ("valid", apps("Deployment", json!({})), vec![]),
        ("surge only", apps("Deployment", rolling(json!({"maxSurge": 1, "maxUnavailable": 0}))), vec![]),
        (
            "both zero",
            apps("Deployment", rolling(json!({"maxSurge": 0, "maxUnavailable": "0%"}))),
            s(&[r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when `maxSurge` is 0"#]),
        ),
        (
            "bad values",
            apps("Deployment", rolling(json!({"maxSurge": "lots", "maxUnavailable": "150%"}))),
            s(&[
                r#"spec.strategy.rollingUpdate.maxSurge: Invalid value: "lots": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"#,
                r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%"#,
            ]),
        ),
        (
            "negative",
            apps("Deployment", rolling(json!({"maxSurge": -1, "maxUnavailable": 1}))),
            s(&["spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0"]),
        ),
        (
            "recreate with rolling update",
            apps("Deployment", json!({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}})),
            s(&["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]),
        ),
        (
            "unknown strategy",
            apps("Deployment", json!({"strategy": {"type": "BlueGreen"}})),
            s(&[r#"spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate""#]),
        ),
        (
            "numbers",
            apps("Deployment", json!({"minReadySeconds": 10, "progressDeadlineSeconds": 10, "revisionHistoryLimit": -1, "replicas": -1})),
            s(&[
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
                "spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds",
            ]),
        ),
        (
            "negative min ready",
            apps("Deployment", json!({"minReadySeconds": -1})),
            s(&["spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"]),
        ),
        ("not selected", apps("Deployment", json!({"template": {"metadata": {"labels": {"app": "other"}}}})), vec![MISMATCH.to_string()]),
        (
            "deadline",
            apps("Deployment", json!({"template": {"spec": {"activeDeadlineSeconds": 5}}})),
            s(&["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"]),
        ),
    ];
    for (name, obj, want) in cases {
        assert_eq!(create_errors(&DeploymentRules, &obj), want, "case {name}");
    }

    let old = apps("Deployment", json!({}));
    let new_image = with(
        &old,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
    );
    assert_eq!(
        update_errors(&DeploymentRules, &old, &new_image),
        Vec::<String>::new()
    );
    let more = apps(
        "Deployment",
        json!({"selector": {"matchLabels": {"app": "a", "tier": "web"}}, "template": {"metadata": {"labels": {"tier": "web"}}}}),
    );
    assert_eq!(
        update_errors(&DeploymentRules, &old, &more),
        s(&[
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"a", "tier":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
        ])
    );
}

#[test]
fn daemon_set() {
    let spec = defaulted_json(&DaemonSetRules, &apps("DaemonSet", json!({})))["spec"].clone();
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);

    let rolling =
        |ru: Value| json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}});
    let cases = vec![
        ("valid", apps("DaemonSet", json!({})), vec![]),
        ("on delete", apps("DaemonSet", json!({"updateStrategy": {"type": "OnDelete"}})), vec![]),
        (
            "both zero",
            apps("DaemonSet", rolling(json!({"maxUnavailable": 0, "maxSurge": 0}))),
            s(&["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]),
        ),
        (
            "both set",
            apps("DaemonSet", rolling(json!({"maxUnavailable": 1, "maxSurge": "10%"}))),
            s(&[r#"spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: "10%": may not be set when maxUnavailable is non-zero"#]),
        ),
        (
            "unknown strategy",
            apps("DaemonSet", json!({"updateStrategy": {"type": "Surge"}})),
            s(&[r#"spec.updateStrategy.type: Unsupported value: "Surge": supported values: "RollingUpdate", "OnDelete""#]),
        ),
        (
            "empty selector",
            {
                // A merge patch cannot empty a map, so set the selector directly.
                let mut ds = apps("DaemonSet", json!({}));
                ds["spec"]["selector"] = json!({"matchLabels": {}});
                ds
            },
            s(&["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"]),
        ),
        (
            "deadline",
            apps("DaemonSet", json!({"template": {"spec": {"activeDeadlineSeconds": 5}}})),
            s(&["spec.template.spec.activeDeadlineSeconds: Invalid value: 5: activeDeadlineSeconds in DaemonSet is not Supported"]),
        ),
        ("not selected", apps("DaemonSet", json!({"template": {"metadata": {"labels": {"app": "other"}}}})), vec![MISMATCH.to_string()]),
    ];
    for (name, obj, want) in cases {
        assert_eq!(create_errors(&DaemonSetRules, &obj), want, "case {name}");
    }
    let old = apps("DaemonSet", json!({}));
    let new = apps(
        "DaemonSet",
        json!({"selector": {"matchLabels": {"app": "a", "x": "y"}}, "template": {"metadata": {"labels": {"x": "y"}}}}),
    );
    assert_eq!(update_errors(&DaemonSetRules, &old, &new).len(), 1);
}

#[test]
fn stateful_set() {
    let claims = json!({"serviceName": "db", "volumeClaimTemplates": [{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        "template": {"spec": {"containers": [{"name": "c", "image": "nginx", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}});
    let spec =
        defaulted_json(&StatefulSetRules, &apps("StatefulSet", claims.clone()))["spec"].clone();
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );

    let cases = vec![
        ("claims mounted", apps("StatefulSet", claims.clone()), vec![]),
        (
            "policies",
            apps("StatefulSet", json!({"podManagementPolicy": "Sometimes", "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}, "ordinals": {"start": -1}, "serviceName": "DB"})),
            s(&[
                r#"spec.podManagementPolicy: Invalid value: "Sometimes": must be 'OrderedReady' or 'Parallel'"#,
                r#"spec.updateStrategy.rollingUpdate: Invalid value: {"partition":1}: only allowed for updateStrategy 'RollingUpdate'"#,
                r#"spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": supported values: "Retain", "Delete""#,
                "spec.ordinals.start: Invalid value: -1: must be greater than or equal to 0",
                r#"spec.serviceName: Invalid value: "DB": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc'), regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'"#,
            ]),
        ),
        (
            "rolling update",
            apps("StatefulSet", json!({"updateStrategy": {"rollingUpdate": {"partition": -1, "maxUnavailable": 0}}})),
            s(&[
                "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0",
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0",
            ]),
        ),
        (
            "claim templates",
            apps("StatefulSet", json!({"volumeClaimTemplates": [{"metadata": {}, "spec": {}}]})),
            s(&[
                "spec.volumeClaimTemplates[0].metadata.name: Required value",
                "spec.volumeClaimTemplates[0].spec.accessModes: Required value: at least 1 access mode is required",
                "spec.volumeClaimTemplates[0].spec.resources[storage]: Required value",
            ]),
        ),
        (
            "unknown mount",
            apps("StatefulSet", json!({"template": {"spec": {"containers": [{"name": "c", "image": "nginx", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}})),
            s(&[r#"spec.template.spec.containers[0].volumeMounts[0].name: Invalid value: "data": must match the name of a volume in spec.template.spec.volumes"#]),
        ),
        (
            "empty selector",
            apps("StatefulSet", json!({"selector": {"matchLabels": null, "matchExpressions": []}})),
            s(&["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{}}: empty selector is invalid for statefulset"]),
        ),
    ];
    for (name, obj, want) in cases {
        assert_eq!(create_errors(&StatefulSetRules, &obj), want, "case {name}");
    }

    let old = apps("StatefulSet", claims);
    let scaled = with(
        &old,
        json!({"spec": {"replicas": 3, "updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}),
    );
    assert_eq!(
        update_errors(&StatefulSetRules, &old, &scaled),
        Vec::<String>::new()
    );
    let renamed = with(&old, json!({"spec": {"serviceName": "other"}}));
    assert_eq!(
        update_errors(&StatefulSetRules, &old, &renamed),
        s(&["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"])
    );
}
