//! Snapshot tests of `describe` for every kind without its own describer: the generic describer
//! on a representative object of each, compared with `snapshots/<kind>.txt`. Run with
//! `RKUBE_UPDATE_SNAPSHOTS=1` to write missing or changed snapshots (then review the diff).

use serde_json::{json, Value};

use super::generic::describe_generic;
use super::layout::Clock;

fn clock() -> Clock {
    Clock::fixed("2024-03-01T12:00:00Z".parse().unwrap())
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": "u-1", "creationTimestamp": "2024-03-01T11:00:00Z", "labels": {"app": name}})
}

fn objects() -> Vec<(&'static str, Value)> {
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "main", "image": "luksa/kubia:v1", "ports": [{"containerPort": 8080}]}]}});
    vec![
        (
            "daemonset",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("ssd-monitor"),
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1}}),
        ),
        (
            "statefulset",
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("web"),
            "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}}, "template": template,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}]},
            "status": {"replicas": 3, "readyReplicas": 2}}),
        ),
        (
            "job",
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("batch-job"),
            "spec": {"completions": 5, "parallelism": 2, "backoffLimit": 6, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "luksa/batch-job"}]}}},
            "status": {"active": 2, "succeeded": 3, "startTime": "2024-03-01T11:30:00Z"}}),
        ),
        (
            "cronjob",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("batch-job-every-fifteen-minutes"),
            "spec": {"schedule": "0,15,30,45 * * * *", "concurrencyPolicy": "Allow", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "luksa/batch-job"}]}}}}},
            "status": {"lastScheduleTime": "2024-03-01T11:45:00Z"}}),
        ),
        (
            "horizontalpodautoscaler",
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta("kubia"),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kubia"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 30}}}]},
            "status": {"currentReplicas": 1, "desiredReplicas": 1}}),
        ),
        (
            "persistentvolume",
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "mongodb-pv", "uid": "u-2"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/tmp/mongodb"}},
            "status": {"phase": "Available"}}),
        ),
        (
            "persistentvolumeclaim",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("mongodb-pvc"),
            "spec": {"resources": {"requests": {"storage": "1Gi"}}, "accessModes": ["ReadWriteOnce"], "storageClassName": ""},
            "status": {"phase": "Pending"}}),
        ),
        (
            "endpoints",
            json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("external-service"),
            "subsets": [{"addresses": [{"ip": "11.11.11.11"}, {"ip": "22.22.22.22"}], "ports": [{"port": 80}]}]}),
        ),
        (
            "event",
            json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("kubia.17b"), "reason": "Scheduled", "type": "Normal",
            "message": "Successfully assigned default/kubia to node-1", "involvedObject": {"kind": "Pod", "name": "kubia", "namespace": "default"}, "count": 1}),
        ),
        (
            "priorityclass",
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high", "uid": "u-3"},
            "value": 1000, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority", "description": "for important pods"}),
        ),
        (
            "lease",
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1", "namespace": "kube-node-lease", "uid": "u-4"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2024-03-01T11:59:50.000000Z"}}),
        ),
    ]
}

#[test]
fn every_kind_without_its_own_describer_matches_its_snapshot() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cmd/describe/snapshots");
    let update = std::env::var_os("RKUBE_UPDATE_SNAPSHOTS").is_some();
    let mut problems = Vec::new();
    for (kind, obj) in objects() {
        let got = describe_generic(&obj, Some(&[]), &clock());
        let path = dir.join(format!("{kind}.txt"));
        match std::fs::read_to_string(&path) {
            Ok(want) if want == got => {}
            _ if update => std::fs::write(&path, &got).expect("write snapshot"),
            Ok(want) => problems.push(format!(
                "{kind}: output differs from {}\n--- want\n{want}--- got\n{got}",
                path.display()
            )),
            Err(_) => problems.push(format!(
                "{kind}: no snapshot at {} (run with RKUBE_UPDATE_SNAPSHOTS=1)\n{got}",
                path.display()
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
