//! Service defaulting and validation: type, ports, selector, session affinity, cluster IP as the
//! user wrote it (allocation of cluster IPs and node ports is the registry's), traffic policies,
//! and a cluster IP that cannot change once set.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::fields::{
    is_ipv4, port_name, validate_cidr, validate_enum, validate_ip, validate_port_number,
    IMMUTABLE_MSG,
};
use crate::strategy::KindRules;
use crate::validation::common::{
    dns1123_label, dns1123_subdomain, push_all, qualified_name, validate_labels,
};
use crate::validation::{FieldError, FieldErrors, Path};

/// The node port range rkube allocates from (Kubernetes' default `--service-node-port-range`).
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const DEFAULT_CLIENT_IP_TIMEOUT: i32 = 10800;
const MAX_CLIENT_IP_TIMEOUT: i32 = 86400;

/// Services (`v1`).
pub struct ServiceRules;

impl KindRules for ServiceRules {
    type Object = Service;

    fn default(&self, svc: &mut Service) {
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        if spec.type_.as_deref().unwrap_or_default().is_empty() {
            spec.type_ = Some("ClusterIP".to_string());
        }
        let ty = spec.type_.clone().unwrap_or_default();
        if spec
            .session_affinity
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            spec.session_affinity = Some("None".to_string());
        }
        match spec.session_affinity.as_deref() {
            Some("None") => spec.session_affinity_config = None,
            Some("ClientIP") => {
                let has_timeout = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .is_some_and(|c| c.timeout_seconds.is_some());
                if !has_timeout {
                    spec.session_affinity_config = Some(SessionAffinityConfig {
                        client_ip: Some(ClientIPConfig {
                            timeout_seconds: Some(DEFAULT_CLIENT_IP_TIMEOUT),
                        }),
                    });
                }
            }
            _ => {}
        }
        for port in spec.ports.iter_mut().flatten() {
            if port.protocol.as_deref().unwrap_or_default().is_empty() {
                port.protocol = Some("TCP".to_string());
            }
            let unset = match &port.target_port {
                None => true,
                Some(IntOrString::Int(0)) => true,
                Some(IntOrString::String(s)) => s.is_empty(),
                Some(IntOrString::Int(_)) => false,
            };
            if unset {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        if externally_accessible(spec)
            && spec
                .external_traffic_policy
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        {
            spec.external_traffic_policy = Some("Cluster".to_string());
        }
        if ty != "ExternalName" {
            spec.internal_traffic_policy
                .get_or_insert_with(|| "Cluster".to_string());
            // rkube clusters are single-stack IPv4.
            spec.ip_family_policy
                .get_or_insert_with(|| "SingleStack".to_string());
            if spec.ip_families.as_ref().is_none_or(|f| f.is_empty()) {
                spec.ip_families = Some(vec!["IPv4".to_string()]);
            }
        }
        if ty == "LoadBalancer" {
            spec.allocate_load_balancer_node_ports.get_or_insert(true);
        }
        // Keep `clusterIP` and `clusterIPs` in step, so users may write either.
        let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
        let first = spec
            .cluster_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .cloned()
            .unwrap_or_default();
        if !cluster_ip.is_empty() && first.is_empty() {
            spec.cluster_ips = Some(vec![cluster_ip]);
        } else if cluster_ip.is_empty() && !first.is_empty() {
            spec.cluster_ip = Some(first);
        }
    }

    fn validate(&self, svc: &Service, errs: &mut FieldErrors) {
        let spec = svc.spec.clone().unwrap_or_default();
        let sp = Path::root("spec");
        let ty = spec.type_.as_deref().unwrap_or_default();
        let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
        let headless = cluster_ip == "None";
        let ports = spec.ports.as_deref().unwrap_or_default();

        if ports.is_empty() && !headless && ty != "ExternalName" {
            errs.push(FieldError::required(&sp.child("ports"), ""));
        }
        validate_enum(Some(ty), TYPES, true, &sp.child("type"), errs);
        match ty {
            "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
                &sp.child("clusterIP"),
                cluster_ip,
                &format!("may not be set to 'None' for {ty} services"),
            )),
            "ExternalName" => {
                if !cluster_ip.is_empty() {
                    errs.push(FieldError::forbidden(
                        &sp.child("clusterIP"),
                        "may not be set for ExternalName services",
                    ));
                }
                if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
                    errs.push(FieldError::forbidden(
                        &sp.child("ipFamilies"),
                        "may not be set for ExternalName services",
                    ));
                }
                if spec.ip_family_policy.is_some() {
                    errs.push(FieldError::forbidden(
                        &sp.child("ipFamilyPolicy"),
                        "may not be set for ExternalName services",
                    ));
                }
                // The value (a CNAME) may have a trailing dot to denote it as fully qualified.
                let name = spec.external_name.as_deref().unwrap_or_default();
                let cname = name.strip_suffix('.').unwrap_or(name);
                if cname.is_empty() {
                    errs.push(FieldError::required(&sp.child("externalName"), ""));
                } else {
                    push_all(
                        errs,
                        &sp.child("externalName"),
                        cname,
                        dns1123_subdomain(cname),
                    );
                }
            }
            _ => {}
        }
        validate_ports(ty, ports, &sp.child("ports"), errs);
        validate_labels(spec.selector.as_ref(), &sp.child("selector"), errs);
        validate_session_affinity(&spec, &sp, errs);
        if ty != "ExternalName" {
            validate_cluster_ips(&spec, &sp, errs);
        }
        for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
            validate_ip(ip, &sp.child("externalIPs").index(i), errs);
        }
        validate_load_balancer_fields(&spec, &sp, errs);
        validate_traffic_policies(&spec, &sp, errs);
    }

    fn validate_update(&self, new: &Service, old: &Service, errs: &mut FieldErrors) {
        let (new_spec, old_spec) = (
            new.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        let involves_external_name = [&new_spec, &old_spec]
            .iter()
            .any(|s| s.type_.as_deref() == Some("ExternalName"));
        let old_ip = old_spec.cluster_ip.as_deref().unwrap_or_default();
        let new_ip = new_spec.cluster_ip.as_deref().unwrap_or_default();
        if !involves_external_name && !old_ip.is_empty() && new_ip != old_ip {
            errs.push(FieldError::invalid(
                &Path::root("spec").child("clusterIP"),
                new_ip,
                IMMUTABLE_MSG,
            ));
        }
        self.validate(new, errs);
    }
}

/// NodePort and LoadBalancer services, and ClusterIP services with external IPs, take traffic
/// from outside the cluster.
fn externally_accessible(spec: &ServiceSpec) -> bool {
    match spec.type_.as_deref() {
        Some("NodePort" | "LoadBalancer") => true,
        Some("ClusterIP") => spec
            .external_ips
            .as_ref()
            .is_some_and(|ips| !ips.is_empty()),
        _ => false,
    }
}

fn validate_ports(ty: &str, ports: &[ServicePort], path: &Path, errs: &mut FieldErrors) {
    let mut names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = path.index(i);
        match port.name.as_deref().unwrap_or_default() {
            "" if ports.len() > 1 => errs.push(FieldError::required(&pp.child("name"), "")),
            "" => {}
            name => {
                push_all(errs, &pp.child("name"), name, dns1123_label(name));
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(&pp.child("name"), name));
                }
            }
        }
        validate_port_number(port.port, &pp.child("port"), errs);
        let protocol = port.protocol.as_deref().unwrap_or_default();
        validate_enum(Some(protocol), PROTOCOLS, true, &pp.child("protocol"), errs);
        match &port.target_port {
            Some(IntOrString::Int(n)) => validate_port_number(*n, &pp.child("targetPort"), errs),
            Some(IntOrString::String(s)) => {
                push_all(errs, &pp.child("targetPort"), s, port_name(s))
            }
            None => {}
        }
        if let Some(app) = &port.app_protocol {
            push_all(errs, &pp.child("appProtocol"), app, qualified_name(app));
        }
        let node_port = port.node_port.unwrap_or(0);
        if node_port != 0 {
            let np = pp.child("nodePort");
            if ty == "ClusterIP" || ty == "ExternalName" {
                errs.push(FieldError::forbidden(
                    &np,
                    &format!("may not be used when `type` is '{ty}'"),
                ));
            } else if !NODE_PORT_RANGE.contains(&node_port) {
                errs.push(FieldError::invalid(
                    &np,
                    node_port,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            }
            if !node_ports.insert((protocol, node_port)) {
                errs.push(FieldError::duplicate(&np, node_port));
            }
        }
        if !port_keys.insert((protocol, port.port)) {
            errs.push(FieldError::duplicate(
                &pp,
                format!("{}/{protocol}", port.port),
            ));
        }
    }
}

fn validate_session_affinity(spec: &ServiceSpec, sp: &Path, errs: &mut FieldErrors) {
    let affinity = spec.session_affinity.as_deref().unwrap_or_default();
    validate_enum(
        Some(affinity),
        &["ClientIP", "None"],
        true,
        &sp.child("sessionAffinity"),
        errs,
    );
    let cp = sp.child("sessionAffinityConfig");
    match affinity {
        "None" if spec.session_affinity_config.is_some() => errs.push(FieldError::forbidden(
            &cp,
            "must not be set when session affinity is None",
        )),
        "ClientIP" => {
            let when = "when session affinity type is ClientIP";
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => errs.push(FieldError::required(
                    &cp.child("clientIP").child("timeoutSeconds"),
                    when,
                )),
                Some(t) if t <= 0 || t > MAX_CLIENT_IP_TIMEOUT => errs.push(FieldError::invalid(
                    &cp.child("clientIP").child("timeoutSeconds"),
                    t,
                    &format!("must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}"),
                )),
                Some(_) => {}
            }
        }
        _ => {}
    }
}

/// `clusterIP` as written: empty (the registry allocates one), `None` (headless) or an IPv4
/// address; `clusterIPs` agrees with it; IP families and their policy are known values.
fn validate_cluster_ips(spec: &ServiceSpec, sp: &Path, errs: &mut FieldErrors) {
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    if !cluster_ip.is_empty() && cluster_ip != "None" && !is_ipv4(cluster_ip) {
        errs.push(FieldError::invalid(
            &sp.child("clusterIP"),
            cluster_ip,
            "must be empty, 'None', or a valid IPv4 address, (e.g. 10.96.0.10)",
        ));
    }
    let ips = spec.cluster_ips.as_deref().unwrap_or_default();
    let ips_path = sp.child("clusterIPs");
    if let Some(first) = ips.first() {
        if cluster_ip.is_empty() {
            errs.push(FieldError::invalid(
                &ips_path,
                ips,
                "must be empty when `clusterIP` is not specified",
            ));
        } else if first != cluster_ip {
            errs.push(FieldError::invalid(
                &ips_path,
                ips,
                "first value must match `clusterIP`",
            ));
        }
    }
    if ips.len() > 1 {
        errs.push(FieldError::invalid(
            &ips_path,
            ips,
            "may hold only one value: rkube clusters are single-stack IPv4",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        let fp = sp.child("ipFamilies").index(i);
        validate_enum(Some(family), &["IPv4", "IPv6"], true, &fp, errs);
        if !seen.insert(family) {
            errs.push(FieldError::duplicate(&fp, family));
        }
    }
    validate_enum(
        spec.ip_family_policy.as_deref(),
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
        false,
        &sp.child("ipFamilyPolicy"),
        errs,
    );
}

fn validate_load_balancer_fields(spec: &ServiceSpec, sp: &Path, errs: &mut FieldErrors) {
    let is_lb = spec.type_.as_deref() == Some("LoadBalancer");
    let only_lb = "may only be used when `type` is 'LoadBalancer'";
    let ranges = spec
        .load_balancer_source_ranges
        .as_deref()
        .unwrap_or_default();
    if !ranges.is_empty() {
        let rp = sp.child("loadBalancerSourceRanges");
        if !is_lb {
            errs.push(FieldError::forbidden(&rp, only_lb));
        }
        for (i, r) in ranges.iter().enumerate() {
            // Space-padded values are a historical accident Kubernetes still tolerates.
            validate_cidr(r.trim(), &rp.index(i), errs);
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && !is_lb {
        errs.push(FieldError::forbidden(
            &sp.child("allocateLoadBalancerNodePorts"),
            only_lb,
        ));
    }
    if let Some(class) = &spec.load_balancer_class {
        let cp = sp.child("loadBalancerClass");
        if !is_lb {
            errs.push(FieldError::forbidden(&cp, only_lb));
        }
        push_all(errs, &cp, class, qualified_name(class));
    }
}

fn validate_traffic_policies(spec: &ServiceSpec, sp: &Path, errs: &mut FieldErrors) {
    let ty = spec.type_.as_deref().unwrap_or_default();
    let etp = spec.external_traffic_policy.as_deref().unwrap_or_default();
    let ep = sp.child("externalTrafficPolicy");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                &ep,
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else {
        validate_enum(Some(etp), TRAFFIC_POLICIES, true, &ep, errs);
    }
    let hp = sp.child("healthCheckNodePort");
    let needs_health_check = ty == "LoadBalancer" && etp == "Local";
    match spec.health_check_node_port.unwrap_or(0) {
        0 => {}
        p if !needs_health_check => errs.push(FieldError::invalid(
            &hp,
            p,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        )),
        p => validate_port_number(p, &hp, errs),
    }
    let itp = sp.child("internalTrafficPolicy");
    validate_enum(
        spec.internal_traffic_policy.as_deref(),
        TRAFFIC_POLICIES,
        ty != "ExternalName",
        &itp,
        errs,
    );
    validate_enum(
        spec.traffic_distribution.as_deref(),
        &["PreferClose", "PreferSameNode", "PreferSameZone"],
        false,
        &sp.child("trafficDistribution"),
        errs,
    );
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
