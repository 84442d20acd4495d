//! The workload controllers' and the HorizontalPodAutoscaler's tables.

use serde_json::{json, Value};

use super::{ago, assert_table, opts, render, wide};

fn object(kind: &str, name: &str, age: i64, spec: Value, status: Value) -> Value {
    json!({
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(age)},
        "spec": spec, "status": status,
    })
}

fn template(containers: Value) -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": containers}})
}

fn deployments() -> Vec<Value> {
    vec![
        object(
            "Deployment",
            "kubia",
            600,
            json!({"replicas": 3, "selector": {"matchLabels": {"app": "kubia"}},
                "template": template(json!([{"name": "kubia", "image": "luksa/kubia:v1"}]))}),
            json!({"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}),
        ),
        object(
            "Deployment",
            "web",
            30,
            json!({"replicas": 1,
                "selector": {"matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "api"]}]},
                "template": template(json!([{"name": "nginx", "image": "nginx:1.25"}, {"name": "sidecar", "image": "busybox"}]))}),
            json!({}),
        ),
    ]
}

#[test]
fn deployments_show_ready_of_desired() {
    assert_table(
        &render("Deployment", &deployments(), &opts()),
        r"
NAME    READY   UP-TO-DATE   AVAILABLE   AGE
kubia   2/3     3            2           10m
web     0/1     0            0           30s
",
    );
    assert_table(
        &render("Deployment", &deployments(), &wide()),
        r"
NAME    READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS      IMAGES               SELECTOR
kubia   2/3     3            2           10m   kubia           luksa/kubia:v1       app=kubia
web     0/1     0            0           30s   nginx,sidecar   nginx:1.25,busybox   app=web,tier in (api,frontend)
",
    );
}

#[test]
fn replica_sets_and_replication_controllers() {
    let rs = object(
        "ReplicaSet",
        "kubia-5d8f",
        5 * 3600,
        json!({"replicas": 3, "selector": {"matchLabels": {"app": "kubia", "pod-template-hash": "5d8f"}},
            "template": template(json!([{"name": "kubia", "image": "luksa/kubia:v1"}]))}),
        json!({"replicas": 3, "readyReplicas": 3}),
    );
    assert_table(
        &render("ReplicaSet", std::slice::from_ref(&rs), &opts()),
        r"
NAME         DESIRED   CURRENT   READY   AGE
kubia-5d8f   3         3         3       5h
",
    );
    assert_table(
        &render("ReplicaSet", &[rs], &wide()),
        r"
NAME         DESIRED   CURRENT   READY   AGE   CONTAINERS   IMAGES           SELECTOR
kubia-5d8f   3         3         3       5h    kubia        luksa/kubia:v1   app=kubia,pod-template-hash=5d8f
",
    );
    let rc = object(
        "ReplicationController",
        "kubia-rc",
        3 * 86400 + 4 * 3600,
        json!({"replicas": 3, "selector": {"app": "kubia"},
            "template": template(json!([{"name": "kubia", "image": "luksa/kubia:v1"}]))}),
        json!({"replicas": 3, "readyReplicas": 1}),
    );
    assert_table(
        &render("ReplicationController", &[rc], &wide()),
        r"
NAME       DESIRED   CURRENT   READY   AGE    CONTAINERS   IMAGES           SELECTOR
kubia-rc   3         3         1       3d4h   kubia        luksa/kubia:v1   app=kubia
",
    );
}

#[test]
fn daemon_sets() {
    let fluentd = object(
        "DaemonSet",
        "fluentd",
        12 * 86400,
        json!({"selector": {"matchLabels": {"app": "fluentd"}},
            "template": {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "fluentd", "image": "fluentd:v2"}]}}}),
        json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
            "updatedNumberScheduled": 3, "numberAvailable": 2}),
    );
    let agent = object("DaemonSet", "agent", 45, json!({}), json!({}));
    assert_table(
        &render("DaemonSet", &[fluentd.clone(), agent], &opts()),
        r"
NAME      DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE
fluentd   3         3         2       3            2           disk=ssd        12d
agent     0         0         0       0            0           <none>          45s
",
    );
    assert_table(
        &render("DaemonSet", &[fluentd], &wide()),
        r"
NAME      DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE   CONTAINERS   IMAGES       SELECTOR
fluentd   3         3         2       3            2           disk=ssd        12d   fluentd      fluentd:v2   app=fluentd
",
    );
}

#[test]
fn stateful_sets() {
    let db = object(
        "StatefulSet",
        "db",
        200,
        json!({"replicas": 3, "template": template(json!([{"name": "postgres", "image": "postgres:16"}]))}),
        json!({"replicas": 2, "readyReplicas": 1}),
    );
    assert_table(
        &render("StatefulSet", std::slice::from_ref(&db), &opts()),
        r"
NAME   READY   AGE
db     1/3     3m20s
",
    );
    assert_table(
        &render("StatefulSet", &[db], &wide()),
        r"
NAME   READY   AGE     CONTAINERS   IMAGES
db     1/3     3m20s   postgres     postgres:16
",
    );
}

fn jobs() -> Vec<Value> {
    let condition = |ty: &str| json!([{"type": ty, "status": "True"}]);
    vec![
        object(
            "Job",
            "once",
            600,
            json!({"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                "template": template(json!([{"name": "pi", "image": "perl"}]))}),
            json!({"succeeded": 1, "startTime": ago(600), "completionTime": ago(570), "conditions": condition("Complete")}),
        ),
        object(
            "Job",
            "parallel",
            95,
            json!({"parallelism": 3}),
            json!({"startTime": ago(90), "active": 3}),
        ),
        object(
            "Job",
            "broken",
            7260,
            json!({"completions": 5}),
            json!({"succeeded": 2, "failed": 6, "startTime": ago(7200), "conditions": condition("Failed")}),
        ),
        object(
            "Job",
            "paused",
            40,
            json!({"completions": 1, "suspend": true}),
            json!({"conditions": condition("Suspended")}),
        ),
    ]
}

#[test]
fn jobs_show_status_completions_and_duration() {
    assert_table(
        &render("Job", &jobs(), &opts()),
        r"
NAME       STATUS      COMPLETIONS   DURATION   AGE
once       Complete    1/1           30s        10m
parallel   Running     0/1 of 3      90s        95s
broken     Failed      2/5           120m       121m
paused     Suspended   0/1                      40s
",
    );
    assert_table(
        &render("Job", &jobs()[..1], &wide()),
        r"
NAME   STATUS     COMPLETIONS   DURATION   AGE   CONTAINERS   IMAGES   SELECTOR
once   Complete   1/1           30s        10m   pi           perl     batch.kubernetes.io/controller-uid=abc
",
    );
}

#[test]
fn cron_jobs() {
    let hello = object(
        "CronJob",
        "hello",
        2 * 86400,
        json!({"schedule": "*/1 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}}),
        json!({"active": [{"name": "hello-1"}], "lastScheduleTime": ago(50)}),
    );
    let nightly = object(
        "CronJob",
        "nightly",
        30 * 3600,
        json!({"schedule": "0 3 * * *", "timeZone": "Europe/Paris", "suspend": true}),
        json!({}),
    );
    assert_table(
        &render("CronJob", &[hello.clone(), nightly], &opts()),
        r"
NAME      SCHEDULE      TIMEZONE       SUSPEND   ACTIVE   LAST SCHEDULE   AGE
hello     */1 * * * *   <none>         False     1        50s             2d
nightly   0 3 * * *     Europe/Paris   True      0        <none>          30h
",
    );
    assert_table(
        &render("CronJob", &[hello], &wide()),
        r"
NAME    SCHEDULE      TIMEZONE   SUSPEND   ACTIVE   LAST SCHEDULE   AGE   CONTAINERS   IMAGES    SELECTOR
hello   */1 * * * *   <none>     False     1        50s             2d    hello        busybox   <none>
",
    );
}

#[test]
fn horizontal_pod_autoscalers_show_current_and_target_metrics() {
    let cpu = |target: i64| json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}});
    let kubia = object(
        "HorizontalPodAutoscaler",
        "kubia",
        600,
        json!({"scaleTargetRef": {"kind": "Deployment", "name": "kubia"}, "minReplicas": 1, "maxReplicas": 10,
            "metrics": [cpu(50)]}),
        json!({"currentReplicas": 3,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 20, "averageValue": "100m"}}}]}),
    );
    let web = object(
        "HorizontalPodAutoscaler",
        "web",
        120,
        json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
        "metrics": [
            cpu(80),
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "packets"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
        ]}),
        json!({}),
    );
    let idle = object(
        "HorizontalPodAutoscaler",
        "idle",
        12 * 86400,
        json!({"scaleTargetRef": {"kind": "StatefulSet", "name": "db"}, "minReplicas": 2, "maxReplicas": 4}),
        json!({"currentReplicas": 2}),
    );
    assert_table(
        &render("HorizontalPodAutoscaler", &[kubia, web, idle], &opts()),
        r"
NAME    REFERENCE          TARGETS                                                   MINPODS   MAXPODS   REPLICAS   AGE
kubia   Deployment/kubia   cpu: 20%/50%                                              1         10        3          10m
web     Deployment/web     cpu: <unknown>/80%, memory: <unknown>/500Mi + 1 more...   <unset>   5         0          2m
idle    StatefulSet/db     <none>                                                    2         4         2          12d
",
    );
}
