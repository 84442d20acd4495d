//! Table tests of the Pod rules: defaults, every validation rule with its rendered message, and
//! the update rules.

use serde_json::{json, Value};

use super::test_support::{create_errors, defaulted_json, update_errors, with};
use super::PodRules;

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc'), regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'";
const UPDATE_MSG: &str = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

/// A valid container named `c`, with `extra` merged in.
fn container(extra: Value) -> Value {
    with(&json!({"name": "c", "image": "nginx:1.27"}), extra)
}

/// A pod with one container (`c` merged with `c`) and `spec` merged into its spec.
fn pod_with(c: Value, spec: Value) -> Value {
    pod(with(&json!({"containers": [container(c)]}), spec))
}

fn check(cases: Vec<(&str, Value, Vec<String>)>) {
    for (name, obj, want) in cases {
        assert_eq!(create_errors(&PodRules, &obj), want, "case {name}");
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn valid_pods_pass() {
    check(vec![
        ("minimal", pod_with(json!({}), json!({})), vec![]),
        (
            "everything common",
            pod_with(
                json!({
                    "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
                    "env": [{"name": "A", "value": "1"}, {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                            {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k.conf"}}}],
                    "envFrom": [{"prefix": "CONF_", "configMapRef": {"name": "cm"}}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x"}],
                    "livenessProbe": {"httpGet": {"port": "http"}, "initialDelaySeconds": 5},
                    "readinessProbe": {"tcpSocket": {"port": 8080}},
                    "startupProbe": {"exec": {"command": ["true"]}},
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}
                }),
                json!({
                    "restartPolicy": "OnFailure",
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "a", "path": "a.conf"}]}}],
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}, {"operator": "Exists"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["2"]}]}]}},
                        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}}]}},
                    "initContainers": [{"name": "init", "image": "busybox"}, {"name": "sidecar", "image": "envoy", "restartPolicy": "Always",
                        "readinessProbe": {"grpc": {"port": 9000}}}]
                }),
            ),
            vec![],
        ),
    ]);
}

#[test]
fn containers_names_and_images() {
    check(vec![
        ("no containers", pod(json!({"containers": []})), s(&["spec.containers: Required value"])),
        (
            "names",
            pod(json!({
                "containers": [{"name": "Web", "image": "a"}, {"name": "x", "image": "a"}, {"name": "x", "image": "a"}, {"image": "a"}],
                "initContainers": [{"name": "x", "image": "a"}]
            })),
            vec![
                format!(r#"spec.containers[0].name: Invalid value: "Web": {LABEL_MSG}"#),
                r#"spec.containers[2].name: Duplicate value: "x""#.to_string(),
                "spec.containers[3].name: Required value".to_string(),
                r#"spec.initContainers[0].name: Duplicate value: "x""#.to_string(),
            ],
        ),
        (
            "image",
            pod(json!({"containers": [{"name": "a"}, {"name": "b", "image": ""}]})),
            s(&["spec.containers[0].image: Required value", "spec.containers[1].image: Required value"]),
        ),
        (
            "pull and termination policies",
            pod_with(json!({"imagePullPolicy": "Sometimes", "terminationMessagePolicy": "Stdout"}), json!({})),
            s(&[
                r#"spec.containers[0].terminationMessagePolicy: Unsupported value: "Stdout": supported values: "File", "FallbackToLogsOnError""#,
                r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
            ]),
        ),
        (
            "init containers",
            pod_with(json!({}), json!({"initContainers": [
                {"name": "i", "image": "a", "restartPolicy": "OnFailure", "livenessProbe": {"exec": {"command": ["x"]}}}]})),
            s(&[
                r#"spec.initContainers[0].restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
                "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ]),
        ),
        (
            "restartPolicy on a regular container",
            pod_with(json!({"restartPolicy": "Always"}), json!({})),
            s(&["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]),
        ),
    ]);
}

#[test]
fn container_ports() {
    let ports = json!({"ports": [
        {"containerPort": 0},
        {"containerPort": 70000, "hostPort": 70000},
        {"containerPort": 80, "protocol": "HTTP"},
        {"containerPort": 81, "name": "Http"},
        {"containerPort": 82, "name": "web"},
        {"containerPort": 83, "name": "web"},
        {"containerPort": 84, "name": "12345"},
        {"containerPort": 85, "hostPort": 8080},
        {"containerPort": 86, "hostPort": 8080},
    ]});
    check(vec![(
        "ports",
        pod_with(ports, json!({})),
        s(&[
            "spec.containers[0].ports[0].containerPort: Required value",
            "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].hostPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            r#"spec.containers[0].ports[2].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
            r#"spec.containers[0].ports[3].name: Invalid value: "Http": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            r#"spec.containers[0].ports[5].name: Duplicate value: "web""#,
            r#"spec.containers[0].ports[6].name: Invalid value: "12345": must contain at least one letter (a-z)"#,
            r#"spec.containers[0].ports[8].hostPort: Duplicate value: "TCP//8080""#,
        ]),
    )]);
}

#[test]
fn container_env() {
    let env = json!({"env": [
        {"name": ""},
        {"name": "1BAD", "value": "x"},
        {"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "B", "valueFrom": {}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "D", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}},
        {"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "spec.foo"}}},
        {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
        {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": ""}}},
        {"name": "H", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "2"}}},
    ], "envFrom": [{"prefix": "9X"}]});
    check(vec![(
        "env",
        pod_with(env, json!({})),
        s(&[
            "spec.containers[0].env[0].name: Required value",
            r#"spec.containers[0].env[1].name: Invalid value: "1BAD": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"#,
            r#"spec.containers[0].env[2].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#,
            r#"spec.containers[0].env[3].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#,
            r#"spec.containers[0].env[4].valueFrom: Invalid value: "": may not have more than one field specified at a time"#,
            r#"spec.containers[0].env[5].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu": supported values: "limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory""#,
            r#"spec.containers[0].env[6].valueFrom.fieldRef.fieldPath: Invalid value: "spec.foo": error converting fieldPath: field label not supported: spec.foo"#,
            r#"spec.containers[0].env[7].valueFrom.fieldRef.fieldPath: Unsupported value: "metadata.labels": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs""#,
            "spec.containers[0].env[8].valueFrom.configMapKeyRef.key: Required value",
            r#"spec.containers[0].env[9].valueFrom.resourceFieldRef.divisor: Invalid value: "requests.cpu": only divisor's values 1m and 1 are supported with the cpu resource"#,
            r#"spec.containers[0].envFrom[0].prefix: Invalid value: "9X": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"#,
            r#"spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`"#,
        ]),
    )]);
}

#[test]
fn container_resources() {
    check(vec![
        (
            "requests above limits",
            pod_with(
                json!({"resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}}),
                json!({}),
            ),
            s(&[
                r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
            ]),
        ),
        (
            "names and quantities",
            pod_with(
                json!({"resources": {"limits": {"gpu": "1", "cpu": "-1", "example.com/dongle": "1"}, "requests": {"memory": "lots", "example.com/dongle": "500m"}}}),
                json!({}),
            ),
            s(&[
                r#"spec.containers[0].resources.limits[cpu]: Invalid value: "-1": must be greater than or equal to 0"#,
                r#"spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource for containers"#,
                // Requests missing from a Pod default to its limits, bad ones included.
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#,
                r#"spec.containers[0].resources.requests[example.com/dongle]: Invalid value: "500m": must be an integer"#,
                r#"spec.containers[0].resources.requests: Invalid value: "500m": must be equal to example.com/dongle limit of 1"#,
                r#"spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource for containers"#,
                r#"spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got "lots")"#,
            ]),
        ),
    ]);
}

#[test]
fn pod_level_fields() {
    check(vec![
        (
            "policies",
            pod_with(json!({}), json!({"restartPolicy": "Sometimes", "dnsPolicy": "Google", "terminationGracePeriodSeconds": -1, "activeDeadlineSeconds": 0})),
            s(&[
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
                r#"spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#,
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
                "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
            ]),
        ),
        (
            "node selector and names",
            pod_with(json!({}), json!({"nodeSelector": {"disk": "solid state"}, "hostname": "Host", "securityContext": {"runAsUser": -1}})),
            vec![
                r#"spec.nodeSelector[disk]: Invalid value: "solid state": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#.to_string(),
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive".to_string(),
                format!(r#"spec.hostname: Invalid value: "Host": {LABEL_MSG}"#),
            ],
        ),
        (
            "dns config",
            pod_with(json!({}), json!({"dnsPolicy": "None"})),
            s(&["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]),
        ),
        (
            "host network ports",
            pod_with(json!({"ports": [{"containerPort": 80, "hostPort": 8080}]}), json!({"hostNetwork": true})),
            s(&["spec.containers[0].ports[0].containerPort: Invalid value: 80: must match `hostPort` when `hostNetwork` is true"]),
        ),
        (
            "ephemeral containers",
            pod_with(json!({}), json!({"ephemeralContainers": [{"name": "debug", "image": "busybox"}]})),
            s(&["spec.ephemeralContainers: Forbidden: cannot be set on create"]),
        ),
    ]);
}

#[test]
fn volumes_and_mounts() {
    let volumes = json!({"volumes": [
        {"name": "Data", "emptyDir": {}},
        {"name": "both", "emptyDir": {}, "hostPath": {"path": "/x"}},
        {"name": "cfg", "configMap": {"name": "", "defaultMode": 1000, "items": [{"key": "", "path": "../x"}]}},
        {"name": "sec", "secret": {}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": ""}},
        {"name": "ok", "emptyDir": {}},
        {"name": "ok", "emptyDir": {}},
    ]});
    let mounts = json!({"volumeMounts": [
        {"name": "ok", "mountPath": "/a"},
        {"name": "missing", "mountPath": "/a"},
        {"name": "ok", "mountPath": ""},
        {"name": "ok", "mountPath": "/b", "subPath": "/abs"},
    ]});
    check(vec![(
        "volumes",
        pod_with(mounts, volumes),
        vec![
            format!(r#"spec.volumes[0].name: Invalid value: "Data": {LABEL_MSG}"#),
            "spec.volumes[1].hostPath: Forbidden: may not specify more than 1 volume type".to_string(),
            "spec.volumes[2].configMap.name: Required value".to_string(),
            "spec.volumes[2].configMap.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive".to_string(),
            "spec.volumes[2].configMap.items[0].key: Required value".to_string(),
            r#"spec.volumes[2].configMap.items[0].path: Invalid value: "../x": must not contain '..'"#.to_string(),
            "spec.volumes[3].secret.secretName: Required value".to_string(),
            "spec.volumes[4].persistentVolumeClaim.claimName: Required value".to_string(),
            r#"spec.volumes[6].name: Duplicate value: "ok""#.to_string(),
            r#"spec.containers[0].volumeMounts[1].name: Invalid value: "missing": must match the name of a volume in spec.volumes"#.to_string(),
            r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/a": must be unique"#.to_string(),
            "spec.containers[0].volumeMounts[2].mountPath: Required value".to_string(),
            r#"spec.containers[0].volumeMounts[3].subPath: Invalid value: "/abs": must be a relative path"#.to_string(),
        ],
    )]);
}

#[test]
fn probes_and_lifecycle() {
    let probes = json!({
        "livenessProbe": {"exec": {"command": ["x"]}, "httpGet": {"port": 80}, "successThreshold": 2, "periodSeconds": -1},
        "readinessProbe": {"terminationGracePeriodSeconds": 5},
        "startupProbe": {"httpGet": {"port": 0, "scheme": "FTP"}},
        "lifecycle": {"postStart": {"tcpSocket": {"port": "web_port"}}, "preStop": {"sleep": {"seconds": 60}}}
    });
    check(vec![(
        "probes",
        pod_with(probes, json!({})),
        s(&[
            "spec.containers[0].lifecycle.postStart.tcpSocket.port: Invalid value: \"web_port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 60: must be non-negative and less than terminationGracePeriodSeconds (30)",
            "spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.containers[0].readinessProbe: Required value: must specify a handler type",
            "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes",
            "spec.containers[0].startupProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            r#"spec.containers[0].startupProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS""#,
        ]),
    )]);
}

#[test]
fn tolerations_and_affinity() {
    let scheduling = json!({
        "tolerations": [
            {"key": "k", "operator": "Exists", "value": "x"},
            {"key": "k", "operator": "Like"},
            {"key": "k", "value": "v", "effect": "NoWay"},
            {"value": "v"},
            {"key": "k", "operator": "Exists", "tolerationSeconds": 5},
        ],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c", "operator": "Gt", "values": ["1", "2"]},
                {"key": "d", "operator": "Lt", "values": ["many"]},
                {"key": "e", "operator": "Near", "values": ["x"]},
            ]}]}},
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": ""}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "podAffinityTerm": {"topologyKey": "zone"}}]}
        }
    });
    let affinity = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions";
    check(vec![(
        "scheduling",
        pod_with(json!({}), scheduling),
        vec![
            format!("{affinity}[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
            format!("{affinity}[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
            format!("{affinity}[2].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
            format!(r#"{affinity}[3].values[0]: Invalid value: "many": must be an integer when `operator` is 'Lt' or 'Gt'"#),
            format!(r#"{affinity}[4].operator: Invalid value: "Near": not a valid selector operator"#),
            "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty".to_string(),
            "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100".to_string(),
            r#"spec.tolerations[0].operator: Invalid value: "x": value must be empty when `operator` is 'Exists'"#.to_string(),
            r#"spec.tolerations[1].operator: Unsupported value: "Like": supported values: "Equal", "Exists""#.to_string(),
            r#"spec.tolerations[2].effect: Unsupported value: "NoWay": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#.to_string(),
            "spec.tolerations[3].operator: Invalid value: \"\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"".to_string(),
            r#"spec.tolerations[4].effect: Invalid value: "": effect must be 'NoExecute' when `tolerationSeconds` is set"#.to_string(),
        ],
    )]);
}

#[test]
fn pod_defaults() {
    let obj = pod(json!({
        "containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
             "livenessProbe": {"httpGet": {"port": 80}},
             "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
             "resources": {"limits": {"cpu": "1"}}},
            {"name": "b", "image": "nginx:1.27"},
            {"name": "c", "image": "nginx:latest"},
        ],
        "volumes": [{"name": "cm", "configMap": {"name": "x"}}, {"name": "s", "secret": {"secretName": "x"}}, {"name": "e"}]
    }));
    let spec = defaulted_json(&PodRules, &obj)["spec"].clone();
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["priority"], 0);
    let a = &spec["containers"][0];
    assert_eq!(a["imagePullPolicy"], "Always");
    assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(spec["containers"][2]["imagePullPolicy"], "Always");
    assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(a["terminationMessagePolicy"], "File");
    assert_eq!(a["ports"][0]["protocol"], "TCP");
    assert_eq!(
        a["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(a["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(a["resources"]["requests"], json!({"cpu": "1"}));
    assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 420);
    assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
    assert_eq!(spec["volumes"][2]["emptyDir"], json!({}));
}

#[test]
fn updates() {
    let old = pod_with(
        json!({"ports": [{"containerPort": 8080}]}),
        json!({"tolerations": [{"key": "k", "operator": "Exists"}], "activeDeadlineSeconds": 100}),
    );
    let container_with = |c: Value| json!({"spec": {"containers": [container(c)]}});
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        ("unchanged", old.clone(), vec![]),
        ("image", with(&old, container_with(json!({"image": "nginx:1.28", "ports": [{"containerPort": 8080}]}))), vec![]),
        ("shorter deadline", with(&old, json!({"spec": {"activeDeadlineSeconds": 50}})), vec![]),
        ("binding", with(&old, json!({"spec": {"nodeName": "node-1"}})), vec![]),
        (
            "added toleration",
            with(&old, json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}, {"key": "other", "operator": "Exists"}]}})),
            vec![],
        ),
        (
            "port",
            with(&old, container_with(json!({"ports": [{"containerPort": 8081}]}))),
            vec![format!("{UPDATE_MSG}\n  spec.containers[0].ports[0].containerPort: 8080 -> 8081")],
        ),
        (
            "grace period",
            with(&old, json!({"spec": {"terminationGracePeriodSeconds": 60}})),
            vec![format!("{UPDATE_MSG}\n  spec.terminationGracePeriodSeconds: 30 -> 60")],
        ),
        (
            "containers added",
            with(&old, json!({"spec": {"containers": [container(json!({})), container(json!({"name": "d"}))]}})),
            s(&["spec.containers: Forbidden: pod updates may not add or remove containers"]),
        ),
        (
            "longer deadline",
            with(&old, json!({"spec": {"activeDeadlineSeconds": 200}})),
            s(&["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"]),
        ),
        (
            "changed toleration",
            with(&old, json!({"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}})),
            s(&["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]),
        ),
    ];
    for (name, new, want) in cases {
        assert_eq!(update_errors(&PodRules, &old, &new), want, "case {name}");
    }
    // A bound pod stays on its node.
    let bound = with(&old, json!({"spec": {"nodeName": "node-1"}}));
    let moved = with(&old, json!({"spec": {"nodeName": "node-2"}}));
    assert_eq!(
        update_errors(&PodRules, &bound, &moved),
        vec![format!(
            "{UPDATE_MSG}\n  spec.nodeName: \"node-1\" -> \"node-2\""
        )]
    );
}
