//! The Node, Namespace, ConfigMap, Secret, Event, Lease and PriorityClass tables.

use serde_json::{json, Value};

use super::{ago, assert_table, opts, render, wide};

fn meta(name: &str, age: i64) -> Value {
    json!({"name": name, "creationTimestamp": ago(age)})
}

fn nodes() -> Vec<Value> {
    let info = |version: &str| json!({"kubeletVersion": version});
    vec![
        json!({"kind": "Node",
            "metadata": {"name": "node-1", "creationTimestamp": ago(20 * 86400),
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-1"}},
            "spec": {},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-1"}],
                "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "rkube://0.1.0"}}}),
        json!({"kind": "Node",
            "metadata": {"name": "node-2", "creationTimestamp": ago(3 * 86400),
                "labels": {"kubernetes.io/role": "worker", "node-role.kubernetes.io/gpu": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.11"}, {"type": "ExternalIP", "address": "203.0.113.5"}],
                "nodeInfo": info("v1.30.0")}}),
        json!({"kind": "Node", "metadata": meta("node-3", 30), "status": {"nodeInfo": info("v1.29.1")}}),
    ]
}

#[test]
fn nodes_show_readiness_scheduling_and_roles() {
    assert_table(
        &render("Node", &nodes(), &opts()),
        r"
NAME     STATUS                        ROLES           AGE   VERSION
node-1   Ready                         control-plane   20d   v1.30.0
node-2   NotReady,SchedulingDisabled   gpu,worker      3d    v1.30.0
node-3   Unknown                       <none>          30s   v1.29.1
",
    );
    assert_table(
        &render("Node", &nodes(), &wide()),
        r"
NAME     STATUS                        ROLES           AGE   VERSION   INTERNAL-IP    EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION   CONTAINER-RUNTIME
node-1   Ready                         control-plane   20d   v1.30.0   192.168.1.10   <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-18-amd64   rkube://0.1.0
node-2   NotReady,SchedulingDisabled   gpu,worker      3d    v1.30.0   192.168.1.11   203.0.113.5   <unknown>                        <unknown>        <unknown>
node-3   Unknown                       <none>          30s   v1.29.1   <none>         <none>        <unknown>                        <unknown>        <unknown>
",
    );
}

#[test]
fn namespaces() {
    let ns = |name: &str, age: i64, phase: &str| json!({"metadata": meta(name, age), "status": {"phase": phase}});
    let objects = [
        ns("default", 20 * 86400, "Active"),
        ns("kube-system", 20 * 86400, "Active"),
        ns("old", 300, "Terminating"),
    ];
    assert_table(
        &render("Namespace", &objects, &opts()),
        r"
NAME          STATUS        AGE
default       Active        20d
kube-system   Active        20d
old           Terminating   5m
",
    );
}

#[test]
fn config_maps_count_data_and_binary_data() {
    let objects = [
        json!({"metadata": meta("kube-root-ca.crt", 20 * 86400), "data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}}),
        json!({"metadata": meta("app-config", 10), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AAEC"}}),
        json!({"metadata": meta("empty", 10)}),
    ];
    assert_table(
        &render("ConfigMap", &objects, &opts()),
        r"
NAME               DATA   AGE
kube-root-ca.crt   1      20d
app-config         3      10s
empty              0      10s
",
    );
}

#[test]
fn secrets() {
    let objects = [
        json!({"metadata": meta("db-pass", 300), "type": "Opaque", "data": {"user": "YQ==", "password": "Yg=="}}),
        json!({"metadata": meta("tls", 300), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
        json!({"metadata": meta("token", 300), "type": "Opaque"}),
    ];
    assert_table(
        &render("Secret", &objects, &opts()),
        r"
NAME      TYPE                DATA   AGE
db-pass   Opaque              2      5m
tls       kubernetes.io/tls   2      5m
token     Opaque              0      5m
",
    );
}

fn events() -> Vec<Value> {
    vec![
        json!({"metadata": meta("kubia-abc.17a1", 120), "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "kubia-abc"},
            "message": "Successfully assigned default/kubia-abc to node-1",
            "source": {"component": "default-scheduler"}, "count": 1,
            "firstTimestamp": ago(120), "lastTimestamp": ago(120)}),
        json!({"metadata": meta("kubia-abc.17a2", 600), "type": "Warning", "reason": "BackOff",
            "involvedObject": {"kind": "Pod", "name": "kubia-abc", "fieldPath": "spec.containers{app}"},
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-1"}, "count": 5,
            "firstTimestamp": ago(600), "lastTimestamp": ago(30)}),
        json!({"metadata": meta("kubia.17a3", 300), "type": "Normal", "reason": "ScalingReplicaSet",
            "involvedObject": {"kind": "Deployment", "name": "kubia"},
            "message": "Scaled up replica set kubia-5d8f to 3",
            "reportingController": "rkube-controller-manager", "eventTime": ago(300),
            "series": {"count": 3, "lastObservedTime": ago(60)}}),
    ]
}

#[test]
fn events_sort_by_last_seen() {
    assert_table(
        &render("Event", &events(), &opts()),
        r"
LAST SEEN   TYPE      REASON              OBJECT             MESSAGE
2m          Normal    Scheduled           pod/kubia-abc      Successfully assigned default/kubia-abc to node-1
60s         Normal    ScalingReplicaSet   deployment/kubia   Scaled up replica set kubia-5d8f to 3
30s         Warning   BackOff             pod/kubia-abc      Back-off restarting failed container
",
    );
    assert_table(
        &render("Event", &events(), &wide()),
        r"
LAST SEEN   TYPE      REASON              OBJECT             SUBOBJECT              SOURCE                     MESSAGE                                             FIRST SEEN   COUNT   NAME
2m          Normal    Scheduled           pod/kubia-abc                             default-scheduler          Successfully assigned default/kubia-abc to node-1   2m           1       kubia-abc.17a1
60s         Normal    ScalingReplicaSet   deployment/kubia                          rkube-controller-manager   Scaled up replica set kubia-5d8f to 3               5m           3       kubia.17a3
30s         Warning   BackOff             pod/kubia-abc      spec.containers{app}   kubelet, node-1            Back-off restarting failed container                10m          5       kubia-abc.17a2
",
    );
}

#[test]
fn leases() {
    let objects = [
        json!({"metadata": meta("node-1", 20 * 86400), "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}),
        json!({"metadata": meta("leader", 300), "spec": {}}),
    ];
    assert_table(
        &render("Lease", &objects, &opts()),
        r"
NAME     HOLDER   AGE
node-1   node-1   20d
leader            5m
",
    );
}

#[test]
fn priority_classes() {
    let objects = [
        json!({"metadata": meta("system-cluster-critical", 20 * 86400), "value": 2_000_000_000,
            "preemptionPolicy": "PreemptLowerPriority"}),
        json!({"metadata": meta("high", 300), "value": 1000, "globalDefault": true, "preemptionPolicy": "Never"}),
    ];
    assert_table(
        &render("PriorityClass", &objects, &opts()),
        r"
NAME                      VALUE        GLOBAL-DEFAULT   AGE   PREEMPTIONPOLICY
system-cluster-critical   2000000000   false            20d   PreemptLowerPriority
high                      1000         true             5m    Never
",
    );
}
