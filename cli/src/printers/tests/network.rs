//! The Service and Endpoints tables.

use serde_json::{json, Value};

use super::{ago, assert_table, opts, render, wide};

fn service(name: &str, age: i64, spec: Value, status: Value) -> Value {
    json!({"kind": "Service", "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(age)},
        "spec": spec, "status": status})
}

fn services() -> Vec<Value> {
    let kubia = json!({"app": "kubia"});
    vec![
        service(
            "kubernetes",
            10 * 86400,
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}),
            json!({}),
        ),
        service(
            "kubia-np",
            600,
            json!({"type": "NodePort", "clusterIPs": ["10.96.12.7"], "selector": kubia,
                "ports": [{"port": 80, "nodePort": 30123, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]}),
            json!({}),
        ),
        service(
            "kubia-lb",
            30,
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.40.2"], "selector": kubia,
                "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}]}),
            json!({"loadBalancer": {}}),
        ),
        service(
            "lb-ready",
            30,
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.40.3"], "selector": kubia,
                "ports": [{"port": 80, "nodePort": 31001, "protocol": "TCP"}]}),
            json!({"loadBalancer": {"ingress": [{"hostname": "a-very-long-hostname.example.com"}, {"ip": "203.0.113.10"}]}}),
        ),
        service(
            "headless",
            120,
            json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"},
                "ports": [{"port": 5432, "protocol": "TCP"}]}),
            json!({}),
        ),
        service(
            "external",
            60,
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        ),
        service(
            "dns",
            10 * 86400,
            json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.10"], "externalIPs": ["198.51.100.7"],
                "selector": {"k8s-app": "kube-dns"},
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
            json!({}),
        ),
    ]
}

#[test]
fn services_show_ips_and_ports_like_kubectl() {
    assert_table(
        &render("Service", &services(), &opts()),
        r"
NAME         TYPE           CLUSTER-IP   EXTERNAL-IP        PORT(S)                      AGE
kubernetes   ClusterIP      10.96.0.1    <none>             443/TCP                      10d
kubia-np     NodePort       10.96.12.7   <none>             80:30123/TCP,443:30443/TCP   10m
kubia-lb     LoadBalancer   10.96.40.2   <pending>          80:31000/TCP                 30s
lb-ready     LoadBalancer   10.96.40.3   203.0.113.10,...   80:31001/TCP                 30s
headless     ClusterIP      None         <none>             5432/TCP                     2m
external     ExternalName   <none>       db.example.com     <none>                       60s
dns          ClusterIP      10.96.0.10   198.51.100.7       53/UDP,53/TCP                10d
",
    );
}

#[test]
fn wide_services_add_the_selector_and_show_whole_load_balancer_addresses() {
    assert_table(
        &render("Service", &services(), &wide()),
        r"
NAME         TYPE           CLUSTER-IP   EXTERNAL-IP                                     PORT(S)                      AGE   SELECTOR
kubernetes   ClusterIP      10.96.0.1    <none>                                          443/TCP                      10d   <none>
kubia-np     NodePort       10.96.12.7   <none>                                          80:30123/TCP,443:30443/TCP   10m   app=kubia
kubia-lb     LoadBalancer   10.96.40.2   <pending>                                       80:31000/TCP                 30s   app=kubia
lb-ready     LoadBalancer   10.96.40.3   203.0.113.10,a-very-long-hostname.example.com   80:31001/TCP                 30s   app=kubia
headless     ClusterIP      None         <none>                                          5432/TCP                     2m    app=db
external     ExternalName   <none>       db.example.com                                  <none>                       60s   <none>
dns          ClusterIP      10.96.0.10   198.51.100.7                                    53/UDP,53/TCP                10d   k8s-app=kube-dns
",
    );
}

#[test]
fn endpoints_list_three_addresses_then_count_the_rest() {
    let ep = |name: &str, subsets: Value| json!({"kind": "Endpoints", "metadata": {"name": name, "creationTimestamp": ago(600)}, "subsets": subsets});
    let objects = [
        ep(
            "kubia",
            json!([
                {"addresses": [{"ip": "10.1.0.5"}, {"ip": "10.1.0.6"}], "ports": [{"port": 8080}]},
                {"addresses": [{"ip": "10.1.0.7"}, {"ip": "10.1.0.8"}], "ports": [{"port": 8080}]},
            ]),
        ),
        ep("empty", Value::Null),
        ep("headless", json!([{"addresses": [{"ip": "10.1.0.9"}]}])),
        ep(
            "ipv6",
            json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]),
        ),
    ];
    assert_table(
        &render("Endpoints", &objects, &opts()),
        r"
NAME       ENDPOINTS                                               AGE
kubia      10.1.0.5:8080,10.1.0.6:8080,10.1.0.7:8080 + 1 more...   10m
empty      <none>                                                  10m
headless   10.1.0.9                                                10m
ipv6       [fd00::1]:80                                            10m
",
    );
}
