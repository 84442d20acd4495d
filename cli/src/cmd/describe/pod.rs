//! Describing Pods, and the containers, volumes and pod templates every workload describer
//! shares (kubectl's `describePod`, `describeContainers`, `describeVolumes`,
//! `DescribePodTemplate`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::fields::{arr, flag, int, int_or_string, map_pairs, s, time};
use super::layout::{self, w, Clock, Out};
use super::quantity;
use super::volumes::volumes;

/// `kubectl describe pod`.
pub fn describe_pod(pod: &Value, events: Option<&[Value]>, clock: &Clock) -> String {
    let mut w = Out::new();
    w!(w, 0, "Name:\t{}\n", s(pod, "/metadata/name"));
    w!(w, 0, "Namespace:\t{}\n", s(pod, "/metadata/namespace"));
    if let Some(p) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        w!(w, 0, "Priority:\t{p}\n");
    }
    let priority_class = s(pod, "/spec/priorityClassName");
    if !priority_class.is_empty() {
        w!(w, 0, "Priority Class Name:\t{priority_class}\n");
    }
    let runtime_class = s(pod, "/spec/runtimeClassName");
    if !runtime_class.is_empty() {
        w!(w, 0, "Runtime Class Name:\t{runtime_class}\n");
    }
    let sa = s(pod, "/spec/serviceAccountName");
    if !sa.is_empty() {
        w!(w, 0, "Service Account:\t{sa}\n");
    }
    let node = s(pod, "/spec/nodeName");
    if node.is_empty() {
        w.write(0, "Node:\t<none>\n");
    } else {
        w!(w, 0, "Node:\t{node}/{}\n", s(pod, "/status/hostIP"));
    }
    if let Some(start) = time(pod, "/status/startTime") {
        w!(w, 0, "Start Time:\t{}\n", clock.rfc1123z(Some(start)));
    }
    layout::labels_and_annotations(&mut w, pod);
    let phase = s(pod, "/status/phase");
    match time(pod, "/metadata/deletionTimestamp") {
        Some(deleted) if phase != "Failed" && phase != "Succeeded" => {
            w!(
                w,
                0,
                "Status:\tTerminating (lasts {})\n",
                clock.age(Some(deleted))
            );
            w!(
                w,
                0,
                "Termination Grace Period:\t{}s\n",
                int(pod, "/metadata/deletionGracePeriodSeconds")
            );
        }
        _ => w!(w, 0, "Status:\t{phase}\n"),
    }
    for (label, ptr) in [("Reason", "/status/reason"), ("Message", "/status/message")] {
        let v = s(pod, ptr);
        if !v.is_empty() {
            w!(w, 0, "{label}:\t{v}\n");
        }
    }
    w!(w, 0, "IP:\t{}\n", s(pod, "/status/podIP"));
    let ips = arr(pod, "/status/podIPs");
    if ips.is_empty() {
        w.write(0, "IPs:\t<none>\n");
    } else {
        w.write(0, "IPs:\n");
        for ip in ips {
            w!(w, 1, "IP:\t{}\n", s(ip, "/ip"));
        }
    }
    if let Some(owner) = layout::controlled_by(pod) {
        w!(w, 0, "Controlled By:\t{owner}\n");
    }
    let nominated = s(pod, "/status/nominatedNodeName");
    if !nominated.is_empty() {
        w!(w, 0, "NominatedNodeName:\t{nominated}\n");
    }
    let init = arr(pod, "/spec/initContainers");
    if !init.is_empty() {
        containers(
            &mut w,
            "Init Containers",
            init,
            Some(arr(pod, "/status/initContainerStatuses")),
            Some(pod),
            "",
            clock,
        );
    }
    containers(
        &mut w,
        "Containers",
        arr(pod, "/spec/containers"),
        Some(arr(pod, "/status/containerStatuses")),
        Some(pod),
        "",
        clock,
    );
    let gates = arr(pod, "/spec/readinessGates");
    if !gates.is_empty() {
        w.write(0, "Readiness Gates:\n  Type\tStatus\n");
        for g in gates {
            let ty = s(g, "/conditionType");
            let status = arr(pod, "/status/conditions")
                .iter()
                .find(|c| s(c, "/type") == ty)
                .map(|c| s(c, "/status"))
                .unwrap_or("<none>");
            w!(w, 1, "{ty} \t{status} \n");
        }
    }
    let conditions = arr(pod, "/status/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\n");
        for c in conditions {
            w!(w, 1, "{} \t{} \n", s(c, "/type"), s(c, "/status"));
        }
    }
    volumes(&mut w, arr(pod, "/spec/volumes"), "");
    w!(w, 0, "QoS Class:\t{}\n", qos_class(pod));
    layout::labels_multiline(
        &mut w,
        "Node-Selectors",
        &map_pairs(pod, "/spec/nodeSelector"),
    );
    layout::tolerations_multiline(&mut w, "Tolerations", arr(pod, "/spec/tolerations"));
    layout::events(&mut w, events, clock);
    w.finish()
}

/// kubectl's `DescribePodTemplate`, shared by every workload describer and `rollout history`.
pub fn pod_template(w: &mut Out, template: Option<&Value>) {
    w.write(0, "Pod Template:\n");
    let Some(t) = template else {
        w.write(1, "<unset>");
        return;
    };
    layout::labels_multiline(w, "  Labels", &map_pairs(t, "/metadata/labels"));
    let annotations = map_pairs(t, "/metadata/annotations");
    if !annotations.is_empty() {
        layout::annotations_multiline(w, "  Annotations", &annotations);
    }
    let sa = s(t, "/spec/serviceAccountName");
    if !sa.is_empty() {
        w!(w, 1, "Service Account:\t{sa}\n");
    }
    // Templates have no container statuses, so no times are shown and any clock will do.
    let clock = Clock::fixed(jiff::Timestamp::UNIX_EPOCH);
    let init = arr(t, "/spec/initContainers");
    if !init.is_empty() {
        containers(w, "Init Containers", init, None, None, "  ", &clock);
    }
    containers(
        w,
        "Containers",
        arr(t, "/spec/containers"),
        None,
        None,
        "  ",
        &clock,
    );
    volumes(w, arr(t, "/spec/volumes"), "  ");
    let priority_class = s(t, "/spec/priorityClassName");
    if !priority_class.is_empty() {
        w!(w, 1, "Priority Class Name:\t{priority_class}\n");
    }
    layout::labels_multiline(w, "  Node-Selectors", &map_pairs(t, "/spec/nodeSelector"));
    layout::tolerations_multiline(w, "  Tolerations", arr(t, "/spec/tolerations"));
}

/// The containers section. `statuses` is None for templates; `pod` resolves field references
/// in the environment.
fn containers(
    w: &mut Out,
    label: &str,
    containers: &[Value],
    statuses: Option<&[Value]>,
    pod: Option<&Value>,
    space: &str,
    clock: &Clock,
) {
    let none = if containers.is_empty() { " <none>" } else { "" };
    w!(w, 0, "{space}{label}:{none}\n");
    let name_indent = if space.is_empty() { "" } else { " " };
    for c in containers {
        let name = s(c, "/name");
        let status = statuses.and_then(|st| st.iter().find(|st| s(st, "/name") == name));
        w!(w, 1, "{name_indent}{name}:\n");
        if let Some(st) = status {
            w!(w, 2, "Container ID:\t{}\n", s(st, "/containerID"));
        }
        w!(w, 2, "Image:\t{}\n", s(c, "/image"));
        if let Some(st) = status {
            w!(w, 2, "Image ID:\t{}\n", s(st, "/imageID"));
        }
        let ports = arr(c, "/ports");
        let port_list = |field: &str| {
            ports
                .iter()
                .map(|p| {
                    let text = format!("{}/{}", int(p, field), s(p, "/protocol"));
                    match s(p, "/name") {
                        "" => text,
                        n => format!("{text} ({n})"),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (single, plural, field) in [
            ("Port", "Ports", "/containerPort"),
            ("Host Port", "Host Ports", "/hostPort"),
        ] {
            let list = port_list(field);
            if list.contains(',') {
                w!(w, 2, "{plural}:\t{list}\n");
            } else {
                w!(w, 2, "{single}:\t{}\n", or_none(&list));
            }
        }
        for (title, ptr) in [("Command", "/command"), ("Args", "/args")] {
            let items = arr(c, ptr);
            if !items.is_empty() {
                w!(w, 2, "{title}:\n");
                for item in items.iter().filter_map(Value::as_str) {
                    for line in item.split('\n') {
                        w!(w, 3, "{line}\n");
                    }
                }
            }
        }
        if let Some(st) = status {
            container_state(w, "State", st.get("state"), clock);
            if st.pointer("/lastState/terminated").is_some() {
                container_state(w, "Last State", st.get("lastState"), clock);
            }
            w!(
                w,
                2,
                "Ready:\t{}\n",
                if flag(st, "/ready") { "True" } else { "False" }
            );
            w!(w, 2, "Restart Count:\t{}\n", int(st, "/restartCount"));
        }
        resources(w, c.get("resources"), 2);
        for (title, ptr) in [
            ("Liveness", "/livenessProbe"),
            ("Readiness", "/readinessProbe"),
            ("Startup", "/startupProbe"),
        ] {
            if let Some(p) = c.pointer(ptr).filter(|p| p.is_object()) {
                w!(w, 2, "{title}:\t{}\n", describe_probe(p));
            }
        }
        let env_from = arr(c, "/envFrom");
        if !env_from.is_empty() {
            w.write(2, "Environment Variables from:\n");
            for e in env_from {
                let (from, r) = if e.get("configMapRef").is_some() {
                    ("ConfigMap", &e["configMapRef"])
                } else {
                    ("Secret", &e["secretRef"])
                };
                let optional = flag(r, "/optional");
                match s(e, "/prefix") {
                    "" => w!(w, 3, "{}\t{from}\tOptional: {optional}\n", s(r, "/name")),
                    prefix => w!(
                        w,
                        3,
                        "{}\t{from} with prefix '{prefix}'\tOptional: {optional}\n",
                        s(r, "/name")
                    ),
                }
            }
        }
        env(w, c, pod);
        mounts(w, c);
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

fn container_state(w: &mut Out, title: &str, state: Option<&Value>, clock: &Clock) {
    let state = state.cloned().unwrap_or(Value::Null);
    let rfc = |v: &Value, ptr: &str| clock.rfc1123z(time(v, ptr));
    if let Some(r) = state.get("running") {
        w!(w, 2, "{title}:\tRunning\n");
        w!(w, 3, "Started:\t{}\n", rfc(r, "/startedAt"));
    } else if let Some(wt) = state.get("waiting") {
        w!(w, 2, "{title}:\tWaiting\n");
        let reason = s(wt, "/reason");
        if !reason.is_empty() {
            w!(w, 3, "Reason:\t{reason}\n");
        }
    } else if let Some(t) = state.get("terminated") {
        w!(w, 2, "{title}:\tTerminated\n");
        for (label, ptr) in [("Reason", "/reason"), ("Message", "/message")] {
            let v = s(t, ptr);
            if !v.is_empty() {
                w!(w, 3, "{label}:\t{v}\n");
            }
        }
        w!(w, 3, "Exit Code:\t{}\n", int(t, "/exitCode"));
        if int(t, "/signal") > 0 {
            w!(w, 3, "Signal:\t{}\n", int(t, "/signal"));
        }
        w!(w, 3, "Started:\t{}\n", rfc(t, "/startedAt"));
        w!(w, 3, "Finished:\t{}\n", rfc(t, "/finishedAt"));
    } else {
        w!(w, 2, "{title}:\tWaiting\n");
    }
}

/// `Limits:` and `Requests:`, each resource on its own line, sorted by name.
pub fn resources(w: &mut Out, resources: Option<&Value>, level: usize) {
    let Some(r) = resources else { return };
    for (title, ptr) in [("Limits", "/limits"), ("Requests", "/requests")] {
        let list = map_pairs(r, ptr);
        if !list.is_empty() {
            w!(w, level, "{title}:\n");
        }
        for (name, q) in list {
            w!(w, level + 1, "{name}:\t{q}\n");
        }
    }
}

/// kubectl's `DescribeProbe`: `http-get http://:8080/ delay=0s timeout=1s period=10s ...`.
pub fn describe_probe(p: &Value) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s successThreshold={} failureThreshold={}",
        int(p, "/initialDelaySeconds"),
        int(p, "/timeoutSeconds"),
        int(p, "/periodSeconds"),
        int(p, "/successThreshold"),
        int(p, "/failureThreshold")
    );
    if let Some(e) = p.get("exec") {
        let cmd: Vec<&str> = arr(e, "/command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        return format!("exec [{}] {attrs}", cmd.join(" "));
    }
    if let Some(h) = p.get("httpGet") {
        let scheme = s(h, "/scheme").to_ascii_lowercase();
        let port = int_or_string(h, "/port");
        let host = s(h, "/host");
        let hostport = if port.is_empty() {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let url = if scheme.is_empty() {
            format!("//{hostport}{}", s(h, "/path"))
        } else {
            format!("{scheme}://{hostport}{}", s(h, "/path"))
        };
        return format!("http-get {url} {attrs}");
    }
    if let Some(t) = p.get("tcpSocket") {
        return format!(
            "tcp-socket {}:{} {attrs}",
            s(t, "/host"),
            int_or_string(t, "/port")
        );
    }
    if let Some(g) = p.get("grpc") {
        return format!(
            "grpc <pod>:{} {} {attrs}",
            int(g, "/port"),
            s(g, "/service")
        );
    }
    format!("unknown {attrs}")
}

fn env(w: &mut Out, c: &Value, pod: Option<&Value>) {
    let vars = arr(c, "/env");
    let none = if vars.is_empty() { "\t<none>" } else { "" };
    w!(w, 2, "Environment:{none}\n");
    for e in vars {
        let name = s(e, "/name");
        let Some(from) = e.get("valueFrom") else {
            for (i, line) in s(e, "/value").split('\n').enumerate() {
                if i == 0 {
                    w!(w, 3, "{name}:\t{line}\n");
                } else {
                    w!(w, 3, "\t{line}\n");
                }
            }
            continue;
        };
        if let Some(f) = from.get("fieldRef") {
            let value = pod
                .map(|p| pod_field(p, s(f, "/fieldPath")))
                .unwrap_or_default();
            w!(
                w,
                3,
                "{name}:\t{value} ({}:{})\n",
                s(f, "/apiVersion"),
                s(f, "/fieldPath")
            );
        } else if let Some(r) = from.get("resourceFieldRef") {
            let resource = s(r, "/resource");
            let value = container_resource(c, resource);
            w!(w, 3, "{name}:\t{value} ({resource})\n");
        } else if let Some(k) = from.get("secretKeyRef") {
            w!(
                w,
                3,
                "{name}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                s(k, "/key"),
                s(k, "/name"),
                flag(k, "/optional")
            );
        } else if let Some(k) = from.get("configMapKeyRef") {
            w!(
                w,
                3,
                "{name}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                s(k, "/key"),
                s(k, "/name"),
                flag(k, "/optional")
            );
        }
    }
}

/// The value of a downward-API field path on a pod (`metadata.name`, `metadata.labels['app']`).
fn pod_field(pod: &Value, path: &str) -> String {
    if let Some(rest) = path
        .strip_prefix("metadata.labels['")
        .or_else(|| path.strip_prefix("metadata.labels[\""))
    {
        let key = rest.trim_end_matches(['\'', '"', ']']);
        return pod["metadata"]["labels"][key]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    if let Some(rest) = path
        .strip_prefix("metadata.annotations['")
        .or_else(|| path.strip_prefix("metadata.annotations[\""))
    {
        let key = rest.trim_end_matches(['\'', '"', ']']);
        return pod["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    let ptr = format!("/{}", path.replace('.', "/"));
    match pod.pointer(&ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        _ => String::new(),
    }
}

/// The value a resourceFieldRef exposes (`limits.cpu`), "node allocatable" for unset limits.
fn container_resource(c: &Value, resource: &str) -> String {
    let Some((kind, name)) = resource.split_once('.') else {
        return String::new();
    };
    match c
        .pointer(&format!("/resources/{kind}/{name}"))
        .and_then(Value::as_str)
    {
        Some(q) => q.to_string(),
        None if kind == "limits" && (name == "cpu" || name == "memory") => {
            "node allocatable".into()
        }
        None => "0".into(),
    }
}

fn mounts(w: &mut Out, c: &Value) {
    let mut list: Vec<&Value> = arr(c, "/volumeMounts").iter().collect();
    let none = if list.is_empty() { "\t<none>" } else { "" };
    w!(w, 2, "Mounts:{none}\n");
    list.sort_by_key(|m| s(m, "/mountPath").to_string());
    for m in list {
        let mut flags = vec![if flag(m, "/readOnly") {
            "ro".to_string()
        } else {
            "rw".to_string()
        }];
        let sub = s(m, "/subPath");
        if !sub.is_empty() {
            flags.push(format!("path={sub:?}"));
        }
        w!(
            w,
            3,
            "{} from {} ({})\n",
            s(m, "/mountPath"),
            s(m, "/name"),
            flags.join(",")
        );
    }
    let devices = arr(c, "/volumeDevices");
    if !devices.is_empty() {
        w.write(2, "Devices:\n");
        let mut devices: Vec<&Value> = devices.iter().collect();
        devices.sort_by_key(|d| s(d, "/devicePath").to_string());
        for d in devices {
            w!(w, 3, "{} from {}\n", s(d, "/devicePath"), s(d, "/name"));
        }
    }
}

/// The pod's QoS class: the status' if set, else computed as Kubernetes does from the
/// containers' CPU and memory requests and limits.
pub fn qos_class(pod: &Value) -> String {
    let reported = s(pod, "/status/qosClass");
    if !reported.is_empty() {
        return reported.to_string();
    }
    let containers = arr(pod, "/spec/containers")
        .iter()
        .chain(arr(pod, "/spec/initContainers"));
    let mut requests: BTreeMap<&str, f64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, f64> = BTreeMap::new();
    let mut guaranteed = true;
    for c in containers {
        let mut limits_found = 0;
        for name in ["cpu", "memory"] {
            let amount = |kind: &str| {
                c.pointer(&format!("/resources/{kind}/{name}"))
                    .and_then(Value::as_str)
                    .and_then(quantity::parse)
                    .filter(|q| *q > 0.0)
            };
            if let Some(r) = amount("requests") {
                *requests.entry(name).or_default() += r;
            }
            if let Some(l) = amount("limits") {
                *limits.entry(name).or_default() += l;
                limits_found += 1;
            }
        }
        if limits_found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort".into();
    }
    // Guaranteed: every container limits CPU and memory, and the requests equal the limits.
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
    {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}
