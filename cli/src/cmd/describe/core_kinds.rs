//! Describing the core kinds that are not pods or workloads: Services, Nodes, Namespaces,
//! ConfigMaps and Secrets.

use base64::Engine;
use serde_json::Value;

use super::fields::{arr, flag, format_labels, int, int_or_string, map_pairs, s, time};
use super::layout::{self, w, Clock, Out};
use super::quantity;

/// `kubectl describe service`; `endpoints` is the Service's Endpoints object, if any.
pub fn describe_service(
    svc: &Value,
    endpoints: Option<&Value>,
    events: Option<&[Value]>,
    clock: &Clock,
) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(svc, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(svc, "/metadata/namespace"));
    layout::labels_and_annotations(&mut w, svc);
    w!(
        w,
        0,
        "Selector:\t{}\n",
        format_labels(&map_pairs(svc, "/spec/selector"))
    );
    w!(w, 0, "Type:\t{}\n", s(svc, "/spec/type"));
    let policy = s(svc, "/spec/ipFamilyPolicy");
    if !policy.is_empty() {
        w!(w, 0, "IP Family Policy:\t{policy}\n");
    }
    let families = strings(svc, "/spec/ipFamilies");
    w!(
        w,
        0,
        "IP Families:\t{}\n",
        if families.is_empty() {
            "<none>".into()
        } else {
            families.join(",")
        }
    );
    w!(w, 0, "IP:\t{}\n", s(svc, "/spec/clusterIP"));
    let ips = strings(svc, "/spec/clusterIPs");
    w!(
        w,
        0,
        "IPs:\t{}\n",
        if ips.is_empty() {
            "<none>".into()
        } else {
            ips.join(",")
        }
    );
    let external = strings(svc, "/spec/externalIPs");
    if !external.is_empty() {
        w!(w, 0, "External IPs:\t{}\n", external.join(","));
    }
    let lb_ip = s(svc, "/spec/loadBalancerIP");
    if !lb_ip.is_empty() {
        w!(w, 0, "Desired LoadBalancer IP:\t{lb_ip}\n");
    }
    let external_name = s(svc, "/spec/externalName");
    if !external_name.is_empty() {
        w!(w, 0, "External Name:\t{external_name}\n");
    }
    let ingress = arr(svc, "/status/loadBalancer/ingress");
    if !ingress.is_empty() {
        let list: Vec<&str> = ingress
            .iter()
            .map(|i| {
                if s(i, "/ip").is_empty() {
                    s(i, "/hostname")
                } else {
                    s(i, "/ip")
                }
            })
            .collect();
        w!(w, 0, "LoadBalancer Ingress:\t{}\n", list.join(", "));
    }
    for p in arr(svc, "/spec/ports") {
        let name = match s(p, "/name") {
            "" => "<unset>",
            n => n,
        };
        let protocol = s(p, "/protocol");
        w!(w, 0, "Port:\t{name}\t{}/{protocol}\n", int(p, "/port"));
        w!(
            w,
            0,
            "TargetPort:\t{}/{protocol}\n",
            int_or_string(p, "/targetPort")
        );
        let app_protocol = s(p, "/appProtocol");
        if !app_protocol.is_empty() {
            w!(w, 0, "AppProtocol:\t{app_protocol}\n");
        }
        if int(p, "/nodePort") != 0 {
            w!(
                w,
                0,
                "NodePort:\t{name}\t{}/{protocol}\n",
                int(p, "/nodePort")
            );
        }
        w!(
            w,
            0,
            "Endpoints:\t{}\n",
            format_endpoints(endpoints, s(p, "/name"))
        );
    }
    w!(
        w,
        0,
        "Session Affinity:\t{}\n",
        s(svc, "/spec/sessionAffinity")
    );
    for (label, ptr) in [
        ("External Traffic Policy", "/spec/externalTrafficPolicy"),
        ("Internal Traffic Policy", "/spec/internalTrafficPolicy"),
    ] {
        let v = s(svc, ptr);
        if !v.is_empty() {
            w!(w, 0, "{label}:\t{v}\n");
        }
    }
    if int(svc, "/spec/healthCheckNodePort") != 0 {
        w!(
            w,
            0,
            "HealthCheck NodePort:\t{}\n",
            int(svc, "/spec/healthCheckNodePort")
        );
    }
    let ranges = strings(svc, "/spec/loadBalancerSourceRanges");
    if !ranges.is_empty() {
        w!(w, 0, "LoadBalancer Source Ranges:\t{}\n", ranges.join(","));
    }
    layout::events(&mut w, events, clock);
    w.finish()
}

fn strings<'a>(v: &'a Value, ptr: &str) -> Vec<&'a str> {
    arr(v, ptr).iter().filter_map(Value::as_str).collect()
}

/// The addresses behind one service port (`10.1.0.5:8080,10.1.0.6:8080 + 2 more...`), as
/// kubectl printed them from Endpoints objects.
pub fn format_endpoints(endpoints: Option<&Value>, port_name: &str) -> String {
    let subsets = endpoints.map(|e| arr(e, "/subsets")).unwrap_or(&[]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            for a in addresses {
                if list.len() < MAX {
                    list.push(s(a, "/ip").to_string());
                }
                count += 1;
            }
            continue;
        }
        for p in ports.iter().filter(|p| s(p, "/name") == port_name) {
            for a in addresses {
                if list.len() < MAX {
                    let ip = s(a, "/ip");
                    let host = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip.to_string()
                    };
                    list.push(format!("{host}:{}", int(p, "/port")));
                }
                count += 1;
            }
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// `kubectl describe node`. `pods` are the node's non-terminated pods (None: not allowed to
/// list them); `lease` is its heartbeat Lease or the error fetching it.
pub fn describe_node(
    node: &Value,
    pods: Option<&[Value]>,
    lease: Result<&Value, String>,
    events: Option<&[Value]>,
    clock: &Clock,
) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(node, "/metadata/name"));
    let roles = node_roles(node);
    w!(
        w,
        0,
        "Roles:\t{}\n",
        if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        }
    );
    layout::labels_and_annotations(&mut w, node);
    w!(
        w,
        0,
        "CreationTimestamp:\t{}\n",
        clock.rfc1123z(time(node, "/metadata/creationTimestamp"))
    );
    layout::taints_multiline(&mut w, "Taints", arr(node, "/spec/taints"));
    w!(
        w,
        0,
        "Unschedulable:\t{}\n",
        flag(node, "/spec/unschedulable")
    );
    match lease {
        Ok(l) => {
            w.write(0, "Lease:\n");
            let holder = match s(l, "/spec/holderIdentity") {
                "" => "<unset>",
                h => h,
            };
            w!(w, 1, "HolderIdentity:\t{holder}\n");
            for (label, ptr) in [
                ("AcquireTime", "/spec/acquireTime"),
                ("RenewTime", "/spec/renewTime"),
            ] {
                let t = match time(l, ptr) {
                    Some(t) => clock.rfc1123z(Some(t)),
                    None => "<unset>".into(),
                };
                w!(w, 1, "{label}:\t{t}\n");
            }
        }
        Err(e) => w!(w, 0, "Lease:\tFailed to get lease: {e}\n"),
    }
    let conditions = arr(node, "/status/conditions");
    if !conditions.is_empty() {
        w.write(
            0,
            "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
        );
        w.write(
            1,
            "----\t------\t-----------------\t------------------\t------\t-------\n",
        );
        for c in conditions {
            w!(
                w,
                1,
                "{} \t{} \t{} \t{} \t{} \t{}\n",
                s(c, "/type"),
                s(c, "/status"),
                clock.rfc1123z(time(c, "/lastHeartbeatTime")),
                clock.rfc1123z(time(c, "/lastTransitionTime")),
                s(c, "/reason"),
                s(c, "/message")
            );
        }
    }
    w.write(0, "Addresses:\n");
    for a in arr(node, "/status/addresses") {
        w!(w, 1, "{}:\t{}\n", s(a, "/type"), s(a, "/address"));
    }
    for (title, ptr) in [
        ("Capacity", "/status/capacity"),
        ("Allocatable", "/status/allocatable"),
    ] {
        let list = map_pairs(node, ptr);
        if !list.is_empty() {
            w!(w, 0, "{title}:\n");
            for (name, q) in list {
                w!(w, 0, "  {name}:\t{q}\n");
            }
        }
    }
    w.write(0, "System Info:\n");
    for (label, field) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
    ] {
        w!(
            w,
            0,
            "  {label}:\t{}\n",
            s(node, &format!("/status/nodeInfo/{field}"))
        );
    }
    let cidr = s(node, "/spec/podCIDR");
    if !cidr.is_empty() {
        w!(w, 0, "PodCIDR:\t{cidr}\n");
    }
    let cidrs = strings(node, "/spec/podCIDRs");
    if !cidrs.is_empty() {
        w!(w, 0, "PodCIDRs:\t{}\n", cidrs.join(","));
    }
    let provider = s(node, "/spec/providerID");
    if !provider.is_empty() {
        w!(w, 0, "ProviderID:\t{provider}\n");
    }
    match pods {
        Some(pods) => node_resources(&mut w, node, pods, clock),
        None => w.write(0, "Pods:\tnot authorized\n"),
    }
    layout::events(&mut w, events, clock);
    w.finish()
}

/// Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label.
fn node_roles(node: &Value) -> Vec<String> {
    let mut roles: Vec<String> = map_pairs(node, "/metadata/labels")
        .into_iter()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role.to_string()),
            Some(_) => None,
            None if k == "kubernetes.io/role" && !v.is_empty() => Some(v),
            None => None,
        })
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// A pod's total request or limit of one resource: the sum over its containers, or the largest
/// init container's if that is more (init containers run one at a time).
fn pod_amount(pod: &Value, kind: &str, resource: &str) -> (f64, bool) {
    let get = |c: &Value| {
        c.pointer(&format!("/resources/{kind}/{resource}"))
            .and_then(Value::as_str)
            .map(|q| (quantity::parse(q).unwrap_or(0.0), quantity::is_binary(q)))
            .unwrap_or((0.0, false))
    };
    let mut binary = false;
    let mut sum = 0.0;
    for c in arr(pod, "/spec/containers") {
        let (v, b) = get(c);
        sum += v;
        binary |= b;
    }
    for c in arr(pod, "/spec/initContainers") {
        let (v, b) = get(c);
        if v > sum {
            sum = v;
        }
        binary |= b;
    }
    (sum, binary)
}

fn percent(part: f64, whole: f64) -> i64 {
    if whole == 0.0 {
        0
    } else {
        (part / whole * 100.0) as i64
    }
}

/// The Non-terminated Pods table and the Allocated resources summary.
fn node_resources(w: &mut Out, node: &Value, pods: &[Value], clock: &Clock) {
    w!(w, 0, "Non-terminated Pods:\t({} in total)\n", pods.len());
    w.write(
        1,
        "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
    );
    w.write(
        1,
        "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
    );
    let alloc_ptr = if map_pairs(node, "/status/allocatable").is_empty() {
        "/status/capacity"
    } else {
        "/status/allocatable"
    };
    let alloc = |r: &str| {
        node.pointer(&format!("{alloc_ptr}/{r}"))
            .and_then(Value::as_str)
            .and_then(quantity::parse)
            .unwrap_or(0.0)
    };
    let (cpu_alloc, mem_alloc, eph_alloc) =
        (alloc("cpu"), alloc("memory"), alloc("ephemeral-storage"));
    let cell = |(v, b): (f64, bool), whole: f64| {
        format!("{} ({}%)", quantity::format(v, b), percent(v, whole))
    };
    for p in pods {
        w!(
            w,
            1,
            "{}\t{}\t\t{}\t{}\t{}\t{}\t{}\n",
            s(p, "/metadata/namespace"),
            s(p, "/metadata/name"),
            cell(pod_amount(p, "requests", "cpu"), cpu_alloc),
            cell(pod_amount(p, "limits", "cpu"), cpu_alloc),
            cell(pod_amount(p, "requests", "memory"), mem_alloc),
            cell(pod_amount(p, "limits", "memory"), mem_alloc),
            clock.age(time(p, "/metadata/creationTimestamp"))
        );
    }
    w.write(
        0,
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    w.write(1, "Resource\tRequests\tLimits\n");
    w.write(1, "--------\t--------\t------\n");
    let total = |kind: &str, resource: &str| {
        pods.iter()
            .map(|p| pod_amount(p, kind, resource))
            .fold((0.0, false), |(sum, bin), (v, b)| (sum + v, bin || b))
    };
    for (resource, whole) in [
        ("cpu", cpu_alloc),
        ("memory", mem_alloc),
        ("ephemeral-storage", eph_alloc),
    ] {
        w!(
            w,
            1,
            "{resource}\t{}\t{}\n",
            cell(total("requests", resource), whole),
            cell(total("limits", resource), whole)
        );
    }
}

/// `kubectl describe namespace` (rkube serves no ResourceQuotas or LimitRanges, so, like
/// kubectl against such a server, those sections are left out).
pub fn describe_namespace(ns: &Value, clock: &Clock) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(ns, "/metadata/name"));
    layout::labels_and_annotations(&mut w, ns);
    w!(w, 0, "Status:\t{}\n", s(ns, "/status/phase"));
    let conditions = arr(ns, "/status/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n");
        w.write(1, "Type\tStatus\tLastTransitionTime\tReason\tMessage\n");
        w.write(1, "----\t------\t------------------\t------\t-------\n");
        for c in conditions {
            w!(
                w,
                1,
                "{}\t{}\t{}\t{}\t{}\n",
                s(c, "/type"),
                s(c, "/status"),
                clock.rfc1123z(time(c, "/lastTransitionTime")),
                s(c, "/reason"),
                s(c, "/message")
            );
        }
    }
    w.finish()
}

/// `kubectl describe configmap`: every value in full under a `----` rule.
pub fn describe_config_map(cm: &Value, events: Option<&[Value]>, clock: &Clock) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(cm, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(cm, "/metadata/namespace"));
    layout::labels_and_annotations(&mut w, cm);
    w.write(0, "\nData\n====\n");
    for (k, v) in map_pairs(cm, "/data") {
        w!(w, 0, "{k}:\n----\n");
        w!(w, 0, "{v}\n");
        w.write(0, "\n");
    }
    w.write(0, "\nBinaryData\n====\n");
    for (k, v) in map_pairs(cm, "/binaryData") {
        let len = base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .map(|b| b.len())
            .unwrap_or(0);
        w!(w, 0, "{k}: {len} bytes\n");
    }
    w.write(0, "\n");
    layout::events(&mut w, events, clock);
    w.finish()
}

/// `kubectl describe secret`: sizes only, never values (except a service account token).
pub fn describe_secret(secret: &Value) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(secret, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(secret, "/metadata/namespace"));
    layout::labels_and_annotations(&mut w, secret);
    let ty = s(secret, "/type");
    w!(w, 0, "\nType:\t{ty}\n");
    w.write(0, "\nData\n====\n");
    for (k, v) in map_pairs(secret, "/data") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .unwrap_or_default();
        if k == "token" && ty == "kubernetes.io/service-account-token" {
            w!(w, 0, "{k}:\t{}\n", String::from_utf8_lossy(&bytes));
        } else {
            w!(w, 0, "{k}:\t{} bytes\n", bytes.len());
        }
    }
    w.finish()
}
