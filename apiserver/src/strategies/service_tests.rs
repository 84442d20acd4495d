//! Tests of the Service rules: defaults, validation messages, and cluster IP immutability.

use serde_json::{json, Value};

use super::*;
use crate::strategies::fields::testing::{check_create_table, defaulted, update_errors};

fn svc(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn defaulted_spec(spec: Value) -> Value {
    serde_json::to_value(defaulted(&ServiceRules, svc(spec)).spec).unwrap()
}

#[test]
fn cluster_ip_service_defaults() {
    assert_eq!(
        defaulted_spec(
            json!({"ports": [{"port": 80}, {"port": 81, "targetPort": "http", "protocol": "UDP"}], "selector": {"app": "web"}})
        ),
        json!({
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [
                {"port": 80, "protocol": "TCP", "targetPort": 80},
                {"port": 81, "protocol": "UDP", "targetPort": "http"},
            ],
            "selector": {"app": "web"},
        })
    );
}

#[test]
fn externally_accessible_and_client_ip_defaults() {
    let got = defaulted_spec(
        json!({"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}),
    );
    assert_eq!(got["externalTrafficPolicy"], json!("Cluster"));
    assert_eq!(got["allocateLoadBalancerNodePorts"], json!(true));
    assert_eq!(
        got["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    let got = defaulted_spec(json!({"type": "NodePort", "ports": [{"port": 80}]}));
    assert_eq!(got["externalTrafficPolicy"], json!("Cluster"));
    assert_eq!(got.get("allocateLoadBalancerNodePorts"), None);
    // A ClusterIP service with external IPs takes outside traffic too.
    let got = defaulted_spec(json!({"externalIPs": ["192.0.2.10"], "ports": [{"port": 80}]}));
    assert_eq!(got["externalTrafficPolicy"], json!("Cluster"));
}

#[test]
fn external_name_gets_no_ip_defaults() {
    let got = defaulted_spec(json!({"type": "ExternalName", "externalName": "example.com"}));
    assert_eq!(
        got,
        json!({"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"})
    );
}

#[test]
fn cluster_ip_and_cluster_ips_are_kept_in_step() {
    let got = defaulted_spec(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}));
    assert_eq!(got["clusterIPs"], json!(["10.96.0.10"]));
    let got = defaulted_spec(json!({"clusterIPs": ["None"]}));
    assert_eq!(got["clusterIP"], json!("None"));
}

#[test]
fn service_validation() {
    check_create_table(
        &ServiceRules,
        vec![
            ("valid", svc(json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443}], "selector": {"app": "web"}})), vec![]),
            ("headless without ports", svc(json!({"clusterIP": "None", "selector": {"app": "web"}})), vec![]),
            ("node port", svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]})), vec![]),
            ("external name with trailing dot", svc(json!({"type": "ExternalName", "externalName": "www.example.com."})), vec![]),
            ("no ports", svc(json!({})), vec!["spec.ports: Required value"]),
            (
                "port zero",
                svc(json!({"ports": [{"port": 0}]})),
                vec![
                    "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                "port too big and bad target ports",
                svc(json!({"ports": [{"name": "a", "port": 65536, "targetPort": 8080}, {"name": "b", "port": 81, "targetPort": 70000},
                                     {"name": "c", "port": 82, "targetPort": "Web_Port"}]})),
                vec![
                    "spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive",
                    "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                    "spec.ports[2].targetPort: Invalid value: \"Web_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                ],
            ),
            (
                "node port on a ClusterIP service",
                svc(json!({"ports": [{"port": 80, "nodePort": 30080}]})),
                vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
            ),
            (
                "node port out of range and duplicated",
                svc(json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 80},
                                                          {"name": "b", "port": 81, "nodePort": 30001},
                                                          {"name": "c", "port": 82, "nodePort": 30001}]})),
                vec![
                    "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
                    "spec.ports[2].nodePort: Duplicate value: 30001",
                ],
            ),
            (
                "port names",
                svc(json!({"ports": [{"port": 80}, {"name": "http", "port": 81}, {"name": "http", "port": 82}, {"name": "Bad_Name", "port": 83}]})),
                vec![
                    "spec.ports[0].name: Required value",
                    "spec.ports[2].name: Duplicate value: \"http\"",
                    "spec.ports[3].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc'), regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'",
                ],
            ),
            (
                "same port and protocol twice",
                svc(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}, {"name": "c", "port": 80, "protocol": "UDP"},
                                     {"name": "d", "port": 81, "protocol": "HTTP"}]})),
                vec![
                    "spec.ports[1]: Duplicate value: \"80/TCP\"",
                    "spec.ports[3].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ],
            ),
            (
                "bad type, affinity, cluster IP and selector",
                svc(json!({"type": "Bogus", "sessionAffinity": "Sticky", "clusterIP": "10.0.0", "ports": [{"port": 80}],
                           "selector": {"app": "bad value"}})),
                vec![
                    "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                    "spec.selector[app]: Invalid value: \"bad value\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                    "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
                    "spec.clusterIP: Invalid value: \"10.0.0\": must be empty, 'None', or a valid IPv4 address, (e.g. 10.96.0.10)",
                ],
            ),
            (
                "external name",
                svc(json!({"type": "ExternalName", "clusterIP": "10.96.0.1", "externalName": "Not_A_Host"})),
                vec![
                    "spec.clusterIP: Forbidden: may not be set for ExternalName services",
                    "spec.externalName: Invalid value: \"Not_A_Host\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'), regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'",
                ],
            ),
            (
                "external name missing",
                svc(json!({"type": "ExternalName", "ports": [{"port": 80}]})),
                vec!["spec.externalName: Required value"],
            ),
            (
                "headless node port",
                svc(json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]})),
                vec!["spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"],
            ),
            (
                "traffic policies",
                svc(json!({"externalTrafficPolicy": "Local", "internalTrafficPolicy": "Nearby", "ports": [{"port": 80}]})),
                vec![
                    "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services",
                    "spec.internalTrafficPolicy: Unsupported value: \"Nearby\": supported values: \"Cluster\", \"Local\"",
                ],
            ),
            (
                "client IP timeout",
                svc(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}, "ports": [{"port": 80}]})),
                vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"],
            ),
            (
                "load balancer fields on a ClusterIP service",
                svc(json!({"loadBalancerSourceRanges": ["10.0.0.0/8", "nope"], "externalIPs": ["1.2.3"], "ports": [{"port": 80}]})),
                vec![
                    "spec.externalIPs[0]: Invalid value: \"1.2.3\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    "spec.loadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'",
                    "spec.loadBalancerSourceRanges[1]: Invalid value: \"nope\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                ],
            ),
        ],
    );
}

#[test]
fn cluster_ip_is_immutable_except_through_external_name() {
    let old = svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
    let moved = svc(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}));
    assert_eq!(
        update_errors(&ServiceRules, old.clone(), moved),
        vec!["spec.clusterIP: Invalid value: \"10.96.0.11\": field is immutable"]
    );
    let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
    assert_eq!(
        update_errors(&ServiceRules, old.clone(), headless),
        vec!["spec.clusterIP: Invalid value: \"None\": field is immutable"]
    );
    assert!(update_errors(&ServiceRules, old.clone(), old.clone()).is_empty());
    // Becoming an ExternalName service drops the cluster IP; leaving it lets one be allocated.
    let external = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
    assert!(update_errors(&ServiceRules, old.clone(), external.clone()).is_empty());
    assert!(update_errors(&ServiceRules, external, old).is_empty());
}
