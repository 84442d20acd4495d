//! The pod table: kubectl's STATUS, READY and RESTARTS logic, and the wide columns.

use serde_json::{json, Value};

use super::{ago, assert_table, opts, render, wide};

fn pod(name: &str, age: i64, spec: Value, status: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "kubia"}]);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(age)},
        "spec": spec, "status": status,
    })
}

fn running_container(restarts: i64) -> Value {
    json!({"name": "app", "ready": true, "restartCount": restarts, "state": {"running": {"startedAt": ago(100)}}})
}

fn pods() -> Vec<Value> {
    vec![
        pod(
            "running",
            300,
            json!({"nodeName": "node-1", "readinessGates": [{"conditionType": "example.com/feature"}]}),
            json!({"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/feature", "status": "True"}],
                "containerStatuses": [running_container(0)]}),
        ),
        pod(
            "creating",
            10,
            json!({"nodeName": "node-2"}),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        ),
        pod(
            "crashing",
            3 * 3600 + 20 * 60,
            json!({}),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(30)}}}]}),
        ),
        pod(
            "done",
            2 * 86400 + 3 * 3600,
            json!({}),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        ),
        pod(
            "init",
            45,
            json!({"initContainers": [{"name": "i1", "image": "busybox"}, {"name": "i2", "image": "busybox"}]}),
            json!({"phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "i2", "restartCount": 0, "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        ),
        pod(
            "init-crash",
            600,
            json!({"initContainers": [{"name": "i1", "image": "busybox"}]}),
            json!({"phase": "Pending",
                "initContainerStatuses": [{"name": "i1", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(60)}}}]}),
        ),
        {
            let mut p = pod(
                "terminating",
                90,
                json!({}),
                json!({"phase": "Running", "containerStatuses": [running_container(0)]}),
            );
            p["metadata"]["deletionTimestamp"] = json!(ago(1));
            p
        },
        pod(
            "oom",
            30 * 86400,
            json!({}),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137}}}]}),
        ),
        pod(
            "sidecar",
            7200,
            json!({"initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]}),
            json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}],
                "containerStatuses": [running_container(0)]}),
        ),
        pod(
            "gated",
            5,
            json!({}),
            json!({"phase": "Pending", "nominatedNodeName": "node-3",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        ),
    ]
}

#[test]
fn pod_status_ready_and_restarts_follow_kubectl() {
    assert_table(
        &render("Pod", &pods(), &opts()),
        r"
NAME          READY   STATUS                  RESTARTS      AGE
running       1/1     Running                 0             5m
creating      0/1     ContainerCreating       0             10s
crashing      0/1     CrashLoopBackOff        4 (30s ago)   3h20m
done          0/1     Completed               0             2d3h
init          0/1     Init:1/2                0             45s
init-crash    0/1     Init:CrashLoopBackOff   2 (60s ago)   10m
terminating   1/1     Terminating             0             90s
oom           0/1     ExitCode:137            0             30d
sidecar       2/2     Running                 1 (2m ago)    120m
gated         0/1     SchedulingGated         0             5s
",
    );
}

#[test]
fn wide_pods_add_ip_node_nominated_node_and_readiness_gates() {
    let pods = pods();
    let some = [pods[0].clone(), pods[1].clone(), pods[9].clone()];
    assert_table(
        &render("Pod", &some, &wide()),
        r"
NAME       READY   STATUS              RESTARTS   AGE   IP         NODE     NOMINATED NODE   READINESS GATES
running    1/1     Running             0          5m    10.1.0.5   node-1   <none>           1/1
creating   0/1     ContainerCreating   0          10s   <none>     node-2   <none>           <none>
gated      0/1     SchedulingGated     0          5s    <none>     <none>   node-3           <none>
",
    );
}

#[test]
fn a_pod_with_no_status_prints_zero_values() {
    let bare = json!({"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "c"}]}});
    assert_table(
        &render("Pod", &[bare], &opts()),
        r"
NAME   READY   STATUS   RESTARTS   AGE
bare   0/1              0          <unknown>
",
    );
}
