//! Kubernetes' service environment variables, as the kubelet gives them to every container:
//! for each Service of the pod's namespace that has a cluster IP when the container starts
//! (with `enableServiceLinks`, default true) and always for the `kubernetes` Service of the
//! `default` namespace,
//!
//! - `{SVC}_SERVICE_HOST` (the cluster IP), `{SVC}_SERVICE_PORT` (the first port) and
//!   `{SVC}_SERVICE_PORT_{PORTNAME}` for each named port;
//! - the Docker-link style `{SVC}_PORT=tcp://IP:PORT` (first port) and, per port,
//!   `{SVC}_PORT_{PORT}_{PROTO}=tcp://IP:PORT` with `_PROTO`, `_PORT` and `_ADDR`,
//!
//! where `{SVC}` and `{PORTNAME}` are upper-cased with `-` turned into `_`. Headless and
//! ExternalName Services have no variables. They come before the container's own `env`, which
//! overrides them and may refer to them with `$(VAR)`.

use k8s_openapi::api::core::v1::{Pod, Service};

use crate::services::ServiceSnapshot;

/// The Service whose variables every pod gets, whatever its namespace and service links.
const MASTER_SERVICE: (&str, &str) = ("default", "kubernetes");

/// The kubelet's message when the Services are not known yet.
pub const NOT_SYNCED: &str =
    "services have not yet been read at least once, cannot construct envvars";

/// The service variables of `pod`'s containers, Services in name order; an error (the
/// kubelet's message) when the Services have not been listed yet.
pub fn for_pod(pod: &Pod, snapshot: &ServiceSnapshot) -> Result<Vec<(String, String)>, String> {
    if !snapshot.synced {
        return Err(NOT_SYNCED.into());
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: std::collections::BTreeMap<&str, &Service> = Default::default();
    for (key, svc) in &snapshot.services {
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        if (ns, name) == MASTER_SERVICE {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && links {
            chosen.insert(name, svc);
        }
    }
    Ok(chosen
        .into_iter()
        .flat_map(|(name, svc)| variables(name, svc))
        .collect())
}

/// The variables of Service `name` (none without a cluster IP or ports).
pub fn variables(name: &str, svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let ip = match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => return Vec::new(),
        Some(ip) => ip,
    };
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let prefix = env_name(name);
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    for port in ports {
        if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                port.port.to_string(),
            ));
        }
    }
    // IPv6 cluster IPs are bracketed in URLs, as Go's net.JoinHostPort does.
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{host}:{}", port.port);
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
    out
}

/// `my-svc` → `MY_SVC`.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ns: &str, name: &str, spec: serde_json::Value) -> (String, Service) {
        let obj = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
        (format!("{ns}/{name}"), serde_json::from_value(obj).unwrap())
    }

    fn snapshot(services: Vec<(String, Service)>) -> ServiceSnapshot {
        ServiceSnapshot {
            synced: true,
            services: services.into_iter().collect(),
            endpoints: Default::default(),
        }
    }

    fn pod(ns: &str, links: Option<bool>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": "p"},
            "spec": {"containers": [], "enableServiceLinks": links},
        }))
        .unwrap()
    }

    #[test]
    fn kubernetes_names_for_every_port() {
        let (_, svc) = service(
            "ns",
            "kubia-svc",
            json!({"clusterIP": "10.96.3.4", "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "metrics-port", "port": 9090, "protocol": "UDP"},
            ]}),
        );
        let got = variables("kubia-svc", &svc);
        let want: Vec<(String, String)> = [
            ("KUBIA_SVC_SERVICE_HOST", "10.96.3.4"),
            ("KUBIA_SVC_SERVICE_PORT", "80"),
            ("KUBIA_SVC_SERVICE_PORT_HTTP", "80"),
            ("KUBIA_SVC_SERVICE_PORT_METRICS_PORT", "9090"),
            ("KUBIA_SVC_PORT", "tcp://10.96.3.4:80"),
            ("KUBIA_SVC_PORT_80_TCP", "tcp://10.96.3.4:80"),
            ("KUBIA_SVC_PORT_80_TCP_PROTO", "tcp"),
            ("KUBIA_SVC_PORT_80_TCP_PORT", "80"),
            ("KUBIA_SVC_PORT_80_TCP_ADDR", "10.96.3.4"),
            ("KUBIA_SVC_PORT_9090_UDP", "udp://10.96.3.4:9090"),
            ("KUBIA_SVC_PORT_9090_UDP_PROTO", "udp"),
            ("KUBIA_SVC_PORT_9090_UDP_PORT", "9090"),
            ("KUBIA_SVC_PORT_9090_UDP_ADDR", "10.96.3.4"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn headless_and_external_name_services_have_none() {
        let (_, headless) = service(
            "ns",
            "h",
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
        );
        let (_, ext) = service(
            "ns",
            "e",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        );
        assert!(variables("h", &headless).is_empty());
        assert!(variables("e", &ext).is_empty());
    }

    #[test]
    fn namespace_service_links_and_the_master_service() {
        let snap = snapshot(vec![
            service(
                "ns",
                "b",
                json!({"clusterIP": "10.96.0.2", "ports": [{"port": 2}]}),
            ),
            service(
                "ns",
                "a",
                json!({"clusterIP": "10.96.0.1", "ports": [{"port": 1}]}),
            ),
            service(
                "other",
                "c",
                json!({"clusterIP": "10.96.0.3", "ports": [{"port": 3}]}),
            ),
            service(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.96.0.9", "ports": [{"name": "https", "port": 443}]}),
            ),
        ]);
        let names = |links| -> Vec<String> {
            for_pod(&pod("ns", links), &snap)
                .unwrap()
                .into_iter()
                .filter(|(k, _)| k.ends_with("_SERVICE_HOST"))
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            names(None),
            [
                "A_SERVICE_HOST",
                "B_SERVICE_HOST",
                "KUBERNETES_SERVICE_HOST"
            ]
        );
        assert_eq!(names(Some(false)), ["KUBERNETES_SERVICE_HOST"]);
        let unsynced = ServiceSnapshot::default();
        assert_eq!(
            for_pod(&pod("ns", None), &unsynced).unwrap_err(),
            NOT_SYNCED
        );
    }
}
