//! Snapshot tests of the describers on synthetic objects, with a fixed clock in UTC.

use serde_json::{json, Value};

use super::core_kinds::{
    describe_config_map, describe_namespace, describe_node, describe_secret, describe_service,
};
use super::generic::describe_generic;
use super::layout::{human_duration, Clock};
use super::pod::describe_pod;
use super::workloads::{
    describe_deployment, describe_replicated, new_and_old_replica_sets, PodCounts,
};

fn clock() -> Clock {
    Clock::fixed("2024-03-01T12:00:00Z".parse().unwrap())
}

fn event(reason: &str, message: &str, last: &str, count: i64, ty: &str, from: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("ev-{reason}"), "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "kubia", "namespace": "default"},
        "reason": reason,
        "message": message,
        "type": ty,
        "source": {"component": from},
        "firstTimestamp": "2024-03-01T11:00:00Z",
        "lastTimestamp": last,
        "count": count,
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "kubia",
            "namespace": "default",
            "labels": {"app": "kubia", "pod-template-hash": "5d8f"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "hello"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "kubia-5d8f", "uid": "rs-1", "controller": true}],
        },
        "spec": {
            "priority": 0,
            "serviceAccountName": "default",
            "nodeName": "node1",
            "containers": [{
                "name": "kubia",
                "image": "luksa/kubia:v1",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                ],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
                "livenessProbe": {"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 15, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "readinessProbe": {"exec": {"command": ["ls", "/var/ready"]}, "timeoutSeconds": 1, "periodSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [
                    {"name": "html", "mountPath": "/var/htdocs"},
                    {"name": "config", "mountPath": "/etc/config", "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "html", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "fortune-config"}},
            ],
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
        },
        "status": {
            "phase": "Running",
            "hostIP": "10.0.0.1",
            "podIP": "10.1.0.5",
            "podIPs": [{"ip": "10.1.0.5"}],
            "startTime": "2024-03-01T11:00:00Z",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
            "containerStatuses": [{
                "name": "kubia",
                "containerID": "process://abc",
                "image": "luksa/kubia:v1",
                "imageID": "luksa/kubia@sha256:1",
                "ready": true,
                "restartCount": 1,
                "state": {"running": {"startedAt": "2024-03-01T11:05:00Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": "2024-03-01T11:00:00Z", "finishedAt": "2024-03-01T11:04:59Z"}},
            }],
        },
    })
}

#[test]
fn pod_snapshot() {
    let events = vec![
        event(
            "Started",
            "Started container kubia",
            "2024-03-01T11:55:00Z",
            1,
            "Normal",
            "kubelet",
        ),
        event(
            "Scheduled",
            "Successfully assigned default/kubia to node1",
            "2024-03-01T11:00:00Z",
            1,
            "Normal",
            "default-scheduler",
        ),
        event(
            "Unhealthy",
            "Readiness probe failed",
            "2024-03-01T11:58:00Z",
            4,
            "Warning",
            "kubelet",
        ),
    ];
    let got = describe_pod(&pod(), Some(&events), &clock());
    let want = "\
Name:             kubia
Namespace:        default
Priority:         0
Service Account:  default
Node:             node1/10.0.0.1
Start Time:       Fri, 01 Mar 2024 11:00:00 +0000
Labels:           app=kubia
                  pod-template-hash=5d8f
Annotations:      note: hello
Status:           Running
IP:               10.1.0.5
IPs:
  IP:           10.1.0.5
Controlled By:  ReplicaSet/kubia-5d8f
Containers:
  kubia:
    Container ID:   process://abc
    Image:          luksa/kubia:v1
    Image ID:       luksa/kubia@sha256:1
    Port:           8080/TCP
    Host Port:      0/TCP
    State:          Running
      Started:      Fri, 01 Mar 2024 11:05:00 +0000
    Last State:     Terminated
      Reason:       Error
      Exit Code:    137
      Started:      Fri, 01 Mar 2024 11:00:00 +0000
      Finished:     Fri, 01 Mar 2024 11:04:59 +0000
    Ready:          True
    Restart Count:  1
    Limits:
      cpu:     500m
      memory:  128Mi
    Requests:
      cpu:      250m
      memory:   64Mi
    Liveness:   http-get http://:8080/ delay=15s timeout=1s period=10s successThreshold=1 failureThreshold=3
    Readiness:  exec [ls /var/ready] delay=0s timeout=1s period=1s successThreshold=1 failureThreshold=3
    Environment:
      MODE:      prod
      POD_NAME:  kubia (v1:metadata.name)
      PASSWORD:  <set to the key 'password' in secret 'creds'>  Optional: false
    Mounts:
      /etc/config from config (ro)
      /var/htdocs from html (rw)
Conditions:
  Type          Status
  Initialized   True 
  Ready         True 
Volumes:
  html:
    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)
    Medium:     
    SizeLimit:  <unset>
  config:
    Type:        ConfigMap (a volume populated by a ConfigMap)
    Name:        fortune-config
    Optional:    false
QoS Class:       Burstable
Node-Selectors:  disk=ssd
Tolerations:     node.kubernetes.io/not-ready:NoExecute op=Exists for 300s
                 node.kubernetes.io/unreachable:NoExecute op=Exists for 300s
Events:
  Type     Reason     Age               From               Message
  ----     ------     ----              ----               -------
  Normal   Scheduled  60m               default-scheduler  Successfully assigned default/kubia to node1
  Normal   Started    60m               kubelet            Started container kubia
  Warning  Unhealthy  2m (x4 over 60m)  kubelet            Readiness probe failed
";
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn pod_without_status_or_events() {
    let p = json!({
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
    });
    let got = describe_pod(&p, Some(&[]), &clock());
    let want = "\
Name:         bare
Namespace:    default
Node:         <none>
Labels:       <none>
Annotations:  <none>
Status:       
IP:           
IPs:          <none>
Containers:
  c:
    Image:      busybox
    Port:       <none>
    Host Port:  <none>
    Command:
      sleep
      3600
    Environment:  <none>
    Mounts:       <none>
Volumes:          <none>
QoS Class:        BestEffort
Node-Selectors:   <none>
Tolerations:      <none>
Events:           <none>
";
    assert_eq!(got, want, "\n{got}");
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "kubia",
            "namespace": "default",
            "uid": "d-1",
            "creationTimestamp": "2024-03-01T10:00:00Z",
            "labels": {"app": "kubia"},
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "kubia"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "kubia"}},
                "spec": {"containers": [{"name": "nodejs", "image": "luksa/kubia:v2"}]},
            },
        },
        "status": {
            "replicas": 3,
            "updatedReplicas": 3,
            "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        },
    })
}

fn replica_set(name: &str, image: &str, replicas: i64, created: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": format!("uid-{name}"),
            "creationTimestamp": created,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "kubia", "uid": "d-1", "controller": true}],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "kubia", "pod-template-hash": name.trim_start_matches("kubia-")}},
            "template": {
                "metadata": {"labels": {"app": "kubia", "pod-template-hash": name.trim_start_matches("kubia-")}},
                "spec": {"containers": [{"name": "nodejs", "image": image}]},
            },
        },
        "status": {"replicas": replicas},
    })
}

#[test]
fn deployment_snapshot() {
    let rss = vec![
        replica_set("kubia-v1", "luksa/kubia:v1", 1, "2024-03-01T10:00:00Z"),
        replica_set("kubia-v2", "luksa/kubia:v2", 3, "2024-03-01T11:00:00Z"),
        replica_set("kubia-v0", "luksa/kubia:v0", 0, "2024-03-01T09:00:00Z"),
    ];
    let d = deployment();
    let (new, old) = new_and_old_replica_sets(&d, &rss);
    assert_eq!(
        new.map(|n| n["metadata"]["name"].clone()),
        Some(json!("kubia-v2"))
    );
    let got = describe_deployment(&d, new, &old, Some(&[]), &clock());
    let want = "\
Name:                   kubia
Namespace:              default
CreationTimestamp:      Fri, 01 Mar 2024 10:00:00 +0000
Labels:                 app=kubia
Annotations:            deployment.kubernetes.io/revision: 2
Selector:               app=kubia
Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable
StrategyType:           RollingUpdate
MinReadySeconds:        0
RollingUpdateStrategy:  25% max unavailable, 25% max surge
Pod Template:
  Labels:  app=kubia
  Containers:
   nodejs:
    Image:         luksa/kubia:v2
    Port:          <none>
    Host Port:     <none>
    Environment:   <none>
    Mounts:        <none>
  Volumes:         <none>
  Node-Selectors:  <none>
  Tolerations:     <none>
Conditions:
  Type           Status  Reason
  ----           ------  ------
  Available      True    MinimumReplicasAvailable
  Progressing    True    NewReplicaSetAvailable
OldReplicaSets:  kubia-v1 (1/1 replicas created)
NewReplicaSet:   kubia-v2 (3/3 replicas created)
Events:          <none>
";
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn replica_set_and_replication_controller_snapshots() {
    let rs = replica_set("kubia-v1", "luksa/kubia:v1", 3, "2024-03-01T10:00:00Z");
    let pods: Vec<Value> = ["Running", "Running", "Pending", "Failed"]
        .iter()
        .map(|phase| {
            json!({
                "metadata": {"ownerReferences": [{"uid": "uid-kubia-v1", "controller": true}]},
                "status": {"phase": phase},
            })
        })
        .chain([json!({"metadata": {}, "status": {"phase": "Running"}})])
        .collect();
    let counts = PodCounts::of(&pods, "uid-kubia-v1");
    let got = describe_replicated(&rs, Some(counts), None, &clock());
    assert!(got.starts_with(
        "\
Name:           kubia-v1
Namespace:      default
Selector:       app=kubia,pod-template-hash=v1
Labels:         <none>
Annotations:    <none>
Controlled By:  Deployment/kubia
Replicas:       3 current / 3 desired
Pods Status:    2 Running / 1 Waiting / 0 Succeeded / 1 Failed
Pod Template:
"
    ));
    let rc = json!({
        "kind": "ReplicationController",
        "metadata": {"name": "kubia", "namespace": "default", "labels": {"app": "kubia"}},
        "spec": {"replicas": 3, "selector": {"app": "kubia"}, "template": {"metadata": {"labels": {"app": "kubia"}}, "spec": {"containers": []}}},
        "status": {"replicas": 2},
    });
    let got = describe_replicated(&rc, Some(PodCounts::default()), None, &clock());
    assert!(got.starts_with(
        "\
Name:         kubia
Namespace:    default
Selector:     app=kubia
Labels:       app=kubia
Annotations:  <none>
Replicas:     2 current / 3 desired
Pods Status:  0 Running / 0 Waiting / 0 Succeeded / 0 Failed
"
    ));
}

#[test]
fn service_snapshot() {
    let svc = json!({
        "kind": "Service",
        "metadata": {"name": "kubia", "namespace": "default", "labels": {"app": "kubia"}},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "kubia"},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30123, "protocol": "TCP"}],
            "sessionAffinity": "None",
            "externalTrafficPolicy": "Cluster",
        },
    });
    let endpoints = json!({
        "subsets": [{
            "addresses": [{"ip": "10.1.0.5"}, {"ip": "10.1.0.6"}, {"ip": "10.1.0.7"}, {"ip": "10.1.0.8"}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }],
    });
    let got = describe_service(&svc, Some(&endpoints), Some(&[]), &clock());
    let want = "\
Name:                     kubia
Namespace:                default
Labels:                   app=kubia
Annotations:              <none>
Selector:                 app=kubia
Type:                     NodePort
IP Family Policy:         SingleStack
IP Families:              IPv4
IP:                       10.96.0.10
IPs:                      10.96.0.10
Port:                     <unset>  80/TCP
TargetPort:               8080/TCP
NodePort:                 <unset>  30123/TCP
Endpoints:                10.1.0.5:8080,10.1.0.6:8080,10.1.0.7:8080 + 1 more...
Session Affinity:         None
External Traffic Policy:  Cluster
Events:                   <none>
";
    assert_eq!(got, want, "\n{got}");
    let got = describe_service(&svc, None, None, &clock());
    assert!(got.contains("Endpoints:                <none>\n"), "{got}");
}

#[test]
fn node_snapshot() {
    let node = json!({
        "kind": "Node",
        "metadata": {
            "name": "node1",
            "creationTimestamp": "2024-03-01T08:00:00Z",
            "labels": {"kubernetes.io/hostname": "node1", "node-role.kubernetes.io/worker": ""},
        },
        "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "AgentReady", "message": "agent is posting ready status",
                "lastHeartbeatTime": "2024-03-01T11:59:50Z", "lastTransitionTime": "2024-03-01T08:00:10Z",
            }],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "node1"}],
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "nodeInfo": {"machineID": "m1", "systemUUID": "u1", "bootID": "b1", "kernelVersion": "6.1.0", "osImage": "Debian 12",
                         "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "process://1", "kubeletVersion": "rkube-0.1.0"},
        },
    });
    let pods = vec![json!({
        "metadata": {"name": "kubia", "namespace": "default", "creationTimestamp": "2024-03-01T11:00:00Z"},
        "spec": {"containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}}]},
    })];
    let lease = json!({"spec": {"holderIdentity": "node1", "renewTime": "2024-03-01T11:59:55Z"}});
    let got = describe_node(&node, Some(&pods), Ok(&lease), Some(&[]), &clock());
    let want = "\
Name:               node1
Roles:              worker
Labels:             kubernetes.io/hostname=node1
                    node-role.kubernetes.io/worker=
Annotations:        <none>
CreationTimestamp:  Fri, 01 Mar 2024 08:00:00 +0000
Taints:             dedicated=gpu:NoSchedule
Unschedulable:      false
Lease:
  HolderIdentity:  node1
  AcquireTime:     <unset>
  RenewTime:       Fri, 01 Mar 2024 11:59:55 +0000
Conditions:
  Type    Status  LastHeartbeatTime                 LastTransitionTime                Reason       Message
  ----    ------  -----------------                 ------------------                ------       -------
  Ready   True    Fri, 01 Mar 2024 11:59:50 +0000   Fri, 01 Mar 2024 08:00:10 +0000   AgentReady   agent is posting ready status
Addresses:
  InternalIP:  10.0.0.1
  Hostname:    node1
Capacity:
  cpu:     2
  memory:  4Gi
  pods:    110
Allocatable:
  cpu:     2
  memory:  4Gi
  pods:    110
System Info:
  Machine ID:                 m1
  System UUID:                u1
  Boot ID:                    b1
  Kernel Version:             6.1.0
  OS Image:                   Debian 12
  Operating System:           linux
  Architecture:               amd64
  Container Runtime Version:  process://1
  Kubelet Version:            rkube-0.1.0
Non-terminated Pods:          (1 in total)
  Namespace                   Name     CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age
  ---------                   ----     ------------  ----------  ---------------  -------------  ---
  default                     kubia    500m (25%)    1 (50%)     1Gi (25%)        2Gi (50%)      60m
Allocated resources:
  (Total limits may be over 100 percent, i.e., overcommitted.)
  Resource           Requests    Limits
  --------           --------    ------
  cpu                500m (25%)  1 (50%)
  memory             1Gi (25%)   2Gi (50%)
  ephemeral-storage  0 (0%)      0 (0%)
Events:              <none>
";
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn namespace_config_map_and_secret_snapshots() {
    let ns = json!({"kind": "Namespace", "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}}, "status": {"phase": "Active"}});
    assert_eq!(
        describe_namespace(&ns, &clock()),
        "\
Name:         team-a
Labels:       kubernetes.io/metadata.name=team-a
Annotations:  <none>
Status:       Active
"
    );
    let cm = json!({
        "kind": "ConfigMap",
        "metadata": {"name": "fortune-config", "namespace": "default"},
        "data": {"sleep-interval": "25", "my-nginx-config.conf": "server {\n  listen 80;\n}\n"},
    });
    let got = describe_config_map(&cm, Some(&[]), &clock());
    let want = "\
Name:         fortune-config
Namespace:    default
Labels:       <none>
Annotations:  <none>

Data
====
my-nginx-config.conf:
----
server {
  listen 80;
}


sleep-interval:
----
25


BinaryData
====

Events:  <none>
";
    assert_eq!(got, want, "\n{got}");
    let secret = json!({
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "type": "Opaque",
        "data": {"password": "c2VjcmV0ISE=", "username": "YWRtaW4="},
    });
    let got = describe_secret(&secret);
    let want = "\
Name:         creds
Namespace:    default
Labels:       <none>
Annotations:  <none>

Type:  Opaque

Data
====
password:  8 bytes
username:  5 bytes
";
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn generic_describer_prints_the_tree() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "rkube-controllers", "namespace": "kube-system", "uid": "u-1", "managedFields": [{"x": 1}]},
        "spec": {"holderIdentity": "server-1", "leaseDurationSeconds": 15, "preferredHolders": ["a", "b"]},
    });
    let got = describe_generic(&lease, None, &clock());
    let want = "\
Name:         rkube-controllers
Namespace:    kube-system
Labels:       <none>
Annotations:  <none>
API Version:  coordination.k8s.io/v1
Kind:         Lease
Metadata:
  UID:  u-1
Spec:
  Holder Identity:         server-1
  Lease Duration Seconds:  15
  Preferred Holders:
    a
    b
";
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn long_and_multiline_annotations_break_like_kubectl() {
    let long = "x".repeat(150);
    let obj = json!({
        "metadata": {"name": "a", "namespace": "default", "annotations": {"long": long, "multi": "one\ntwo\n", "short": "v"}},
    });
    let got = describe_generic(&obj, None, &clock());
    let want = format!(
        "\
Name:         a
Namespace:    default
Labels:       <none>
Annotations:  long:
                {}...
              multi:
                one
                two
              short: v
Metadata:
",
        "x".repeat(138)
    );
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn ages_like_kubectl() {
    for (secs, want) in [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 600, "3h10m"),
        (9 * 3600, "9h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (10 * 365 * 86400, "10y"),
    ] {
        assert_eq!(human_duration(secs), want, "{secs}s");
    }
}
