//! Containers and init containers: names, images, ports, resources, probes, lifecycle hooks and
//! security contexts (Kubernetes' `validateContainers` and `validateInitContainers`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe,
    ResourceRequirements, SecurityContext, SleepAction, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::checks::{self, one_of, optional_one_of};
use super::{env, volumes};
use crate::validation::common::{
    dns1123_label, parse_quantity, push_all, qualified_name, validate_quantity,
};
use crate::validation::{FieldError, FieldErrors, Path};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const HTTP_SCHEMES: &[&str] = &["HTTP", "HTTPS"];
const NOT_FOR_INIT: &str = "may not be set for init containers without restartPolicy=Always";

/// What the containers of one pod spec are checked against.
pub(super) struct Context<'a> {
    /// The volumes containers may mount.
    pub volumes: &'a BTreeSet<String>,
    pub volumes_path: &'a Path,
    /// The pod's termination grace period (bounds lifecycle `sleep` actions).
    pub grace_period: Option<i64>,
}

/// The pod's regular containers: at least one, unique names, and per-container rules.
pub(super) fn validate_containers(
    containers: &[Container],
    ctx: &Context<'_>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    if containers.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let cp = path.index(i);
        validate_common(c, ctx, &cp, errs);
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(&cp.child("name"), &c.name));
        }
        validate_hooks_and_probes(c, ctx, &cp, errs);
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                &cp.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    validate_host_port_conflicts(containers, path, errs);
}

/// Init containers: names unique across init and regular containers; only sidecars
/// (`restartPolicy: Always`) may have probes and lifecycle hooks.
pub(super) fn validate_init_containers(
    init: &[Container],
    regular: &[Container],
    ctx: &Context<'_>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let mut names: BTreeSet<&str> = regular.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in init.iter().enumerate() {
        let cp = path.index(i);
        validate_common(c, ctx, &cp, errs);
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        if let Some(policy) = c.restart_policy.as_deref() {
            if !sidecar {
                errs.push(FieldError::not_supported(
                    &cp.child("restartPolicy"),
                    policy,
                    &["Always"],
                ));
            }
        }
        if names.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(&cp.child("name"), &c.name));
        } else if !c.name.is_empty() {
            names.insert(&c.name);
        }
        if sidecar {
            validate_hooks_and_probes(c, ctx, &cp, errs);
            continue;
        }
        let forbidden = [
            (c.lifecycle.is_some(), "lifecycle"),
            (c.liveness_probe.is_some(), "livenessProbe"),
            (c.readiness_probe.is_some(), "readinessProbe"),
            (c.startup_probe.is_some(), "startupProbe"),
        ];
        for (set, field) in forbidden {
            if set {
                errs.push(FieldError::forbidden(&cp.child(field), NOT_FOR_INIT));
            }
        }
    }
    validate_host_port_conflicts(init, path, errs);
}

/// What every kind of container must satisfy.
fn validate_common(c: &Container, ctx: &Context<'_>, path: &Path, errs: &mut FieldErrors) {
    if c.name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        push_all(errs, &path.child("name"), &c.name, dns1123_label(&c.name));
    }
    if c.image.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    match c.termination_message_policy.as_deref() {
        None | Some("File") | Some("FallbackToLogsOnError") => {}
        Some("") => errs.push(FieldError::required(
            &path.child("terminationMessagePolicy"),
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
        Some(other) => errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_ports(
        c.ports.as_deref().unwrap_or_default(),
        &path.child("ports"),
        errs,
    );
    env::validate_env(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
        errs,
    );
    env::validate_env_from(
        c.env_from.as_deref().unwrap_or_default(),
        &path.child("envFrom"),
        errs,
    );
    volumes::validate_volume_mounts(
        c,
        ctx.volumes,
        ctx.volumes_path,
        &path.child("volumeMounts"),
        errs,
    );
    if let Some(policy) = c.image_pull_policy.as_deref() {
        one_of(policy, PULL_POLICIES, &path.child("imagePullPolicy"), errs);
    }
    if let Some(res) = &c.resources {
        validate_resources(res, &path.child("resources"), errs);
    }
    if let Some(sc) = &c.security_context {
        validate_security_context(sc, &path.child("securityContext"), errs);
    }
}

fn validate_hooks_and_probes(
    c: &Container,
    ctx: &Context<'_>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    if let Some(lifecycle) = &c.lifecycle {
        let lp = path.child("lifecycle");
        for (hook, field) in [
            (&lifecycle.post_start, "postStart"),
            (&lifecycle.pre_stop, "preStop"),
        ] {
            if let Some(h) = hook {
                validate_lifecycle_handler(h, ctx.grace_period, &lp.child(field), errs);
            }
        }
    }
    for (probe, field, kind) in [
        (&c.liveness_probe, "livenessProbe", ProbeKind::Liveness),
        (&c.readiness_probe, "readinessProbe", ProbeKind::Readiness),
        (&c.startup_probe, "startupProbe", ProbeKind::Startup),
    ] {
        if let Some(p) = probe {
            validate_probe(p, kind, &path.child(field), errs);
        }
    }
}

fn validate_ports(ports: &[ContainerPort], path: &Path, errs: &mut FieldErrors) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let problems = checks::port_name(name);
            if !problems.is_empty() {
                push_all(errs, &pp.child("name"), name, problems);
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(&pp.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(&pp.child("containerPort"), ""));
        } else {
            checks::port_number(port.container_port, &pp.child("containerPort"), errs);
        }
        if let Some(host) = port.host_port.filter(|h| *h != 0) {
            checks::port_number(host, &pp.child("hostPort"), errs);
        }
        one_of(
            port.protocol.as_deref().unwrap_or("TCP"),
            PROTOCOLS,
            &pp.child("protocol"),
            errs,
        );
    }
}

/// Two ports of one pod may not claim the same host port, protocol and host IP.
fn validate_host_port_conflicts(containers: &[Container], path: &Path, errs: &mut FieldErrors) {
    let mut seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let Some(host) = port.host_port.filter(|h| *h != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{host}",
                port.protocol.as_deref().unwrap_or("TCP"),
                port.host_ip.as_deref().unwrap_or_default()
            );
            if seen.contains(&key) {
                let hp = path.index(i).child("ports").index(j).child("hostPort");
                errs.push(FieldError::duplicate(&hp, &key));
            } else {
                seen.insert(key);
            }
        }
    }
}

/// Requests and limits: known resource names, valid non-negative quantities, and requests no
/// larger than limits (equal to them for resources that cannot be overcommitted).
fn validate_resources(res: &ResourceRequirements, path: &Path, errs: &mut FieldErrors) {
    let empty = BTreeMap::new();
    let limits = res.limits.as_ref().unwrap_or(&empty);
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    for (name, q) in limits {
        let qp = limits_path.key(name);
        validate_resource_name(name, &qp, errs);
        validate_resource_quantity(name, q, &qp, errs);
    }
    for (name, q) in res.requests.iter().flatten() {
        let qp = requests_path.key(name);
        validate_resource_name(name, &qp, errs);
        validate_resource_quantity(name, q, &qp, errs);
        match limits.get(name) {
            Some(limit) => {
                let (Ok(req), Ok(lim)) = (parse_quantity(&q.0), parse_quantity(&limit.0)) else {
                    continue;
                };
                if req != lim && !overcommit_allowed(name) {
                    let msg = format!("must be equal to {name} limit of {}", limit.0);
                    errs.push(FieldError::invalid(&requests_path, &q.0, &msg));
                } else if req > lim {
                    let msg = format!("must be less than or equal to {name} limit of {}", limit.0);
                    errs.push(FieldError::invalid(&requests_path, &q.0, &msg));
                }
            }
            None if !overcommit_allowed(name) => errs.push(FieldError::required(
                &limits_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
}

fn validate_resource_name(name: &str, path: &Path, errs: &mut FieldErrors) {
    if !name.contains('/') {
        let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage")
            || name.starts_with("hugepages-");
        if !standard {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else {
        push_all(errs, path, name, qualified_name(name));
    }
}

fn validate_resource_quantity(name: &str, q: &Quantity, path: &Path, errs: &mut FieldErrors) {
    validate_quantity(&q.0, path, errs);
    if is_extended_resource(name) && parse_quantity(&q.0).is_ok_and(|milli| milli % 1000 != 0) {
        errs.push(FieldError::invalid(path, &q.0, "must be an integer"));
    }
}

/// Resources in the `kubernetes.io` domain (or unqualified) are native.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name) && !name.starts_with("requests.")
}

/// Native resources other than huge pages may be requested below their limit.
fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

fn validate_security_context(sc: &SecurityContext, path: &Path, errs: &mut FieldErrors) {
    super::id_range(sc.run_as_user, &path.child("runAsUser"), errs);
    super::id_range(sc.run_as_group, &path.child("runAsGroup"), errs);
    optional_one_of(
        sc.proc_mount.as_deref(),
        &["Default", "Unmasked"],
        &path.child("procMount"),
        errs,
    );
}

#[derive(Clone, Copy, PartialEq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn validate_probe(p: &Probe, kind: ProbeKind, path: &Path, errs: &mut FieldErrors) {
    let handler = Handler {
        exec: p.exec.as_ref(),
        http_get: p.http_get.as_ref(),
        tcp_socket: p.tcp_socket.as_ref(),
        grpc: p.grpc.as_ref(),
        sleep: None,
    };
    handler.validate(None, path, errs);
    let numbers = [
        (p.initial_delay_seconds, "initialDelaySeconds"),
        (p.timeout_seconds, "timeoutSeconds"),
        (p.period_seconds, "periodSeconds"),
        (p.success_threshold, "successThreshold"),
        (p.failure_threshold, "failureThreshold"),
    ];
    for (v, field) in numbers {
        checks::nonnegative(v, &path.child(field), errs);
    }
    let grace_path = path.child("terminationGracePeriodSeconds");
    match p.termination_grace_period_seconds {
        Some(v) if kind == ProbeKind::Readiness => errs.push(FieldError::invalid(
            &grace_path,
            v,
            "must not be set for readinessProbes",
        )),
        Some(v) if v <= 0 => errs.push(FieldError::invalid(
            &grace_path,
            v,
            "must be greater than 0",
        )),
        _ => {}
    }
    if kind != ProbeKind::Readiness {
        if let Some(v) = p.success_threshold.filter(|v| *v != 1) {
            errs.push(FieldError::invalid(
                &path.child("successThreshold"),
                v,
                "must be 1",
            ));
        }
    }
}

fn validate_lifecycle_handler(
    h: &LifecycleHandler,
    grace_period: Option<i64>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let handler = Handler {
        exec: h.exec.as_ref(),
        http_get: h.http_get.as_ref(),
        tcp_socket: h.tcp_socket.as_ref(),
        grpc: None,
        sleep: h.sleep.as_ref(),
    };
    handler.validate(grace_period, path, errs);
}

/// The actions a probe or lifecycle hook may take; exactly one must be given.
struct Handler<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
    grpc: Option<&'a GRPCAction>,
    sleep: Option<&'a SleepAction>,
}

impl Handler<'_> {
    fn validate(&self, grace_period: Option<i64>, path: &Path, errs: &mut FieldErrors) {
        let mut count = 0;
        // Counts the handler named `field`; true when it is the first one given.
        let mut one = |field: &str, errs: &mut FieldErrors| {
            count += 1;
            if count > 1 {
                errs.push(FieldError::forbidden(
                    &path.child(field),
                    "may not specify more than 1 handler type",
                ));
                return false;
            }
            true
        };
        if let Some(exec) = self.exec.filter(|_| one("exec", errs)) {
            if exec.command.as_ref().is_none_or(|c| c.is_empty()) {
                errs.push(FieldError::required(
                    &path.child("exec").child("command"),
                    "",
                ));
            }
        }
        if let Some(http) = self.http_get.filter(|_| one("httpGet", errs)) {
            validate_http_get(http, &path.child("httpGet"), errs);
        }
        if let Some(tcp) = self.tcp_socket.filter(|_| one("tcpSocket", errs)) {
            checks::port_number_or_name(&tcp.port, &path.child("tcpSocket").child("port"), errs);
        }
        if let Some(grpc) = self.grpc.filter(|_| one("grpc", errs)) {
            checks::port_number(grpc.port, &path.child("grpc").child("port"), errs);
        }
        if let Some(sleep) = self.sleep.filter(|_| one("sleep", errs)) {
            if let Some(grace) = grace_period.filter(|g| sleep.seconds < 0 || sleep.seconds > *g) {
                let msg = format!(
                    "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                );
                errs.push(FieldError::invalid(
                    &path.child("sleep"),
                    sleep.seconds,
                    &msg,
                ));
            }
        }
        if count == 0 {
            errs.push(FieldError::required(path, "must specify a handler type"));
        }
    }
}

fn validate_http_get(http: &HTTPGetAction, path: &Path, errs: &mut FieldErrors) {
    if http.path.as_deref() == Some("") {
        errs.push(FieldError::required(&path.child("path"), ""));
    }
    checks::port_number_or_name(&http.port, &path.child("port"), errs);
    let scheme = http.scheme.as_deref().unwrap_or("HTTP");
    if !HTTP_SCHEMES.contains(&scheme) {
        errs.push(FieldError::not_supported(
            &path.child("scheme"),
            scheme,
            HTTP_SCHEMES,
        ));
    }
    for header in http.http_headers.iter().flatten() {
        let name = &header.name;
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            errs.push(FieldError::invalid(
                &path.child("httpHeaders"),
                name,
                "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
            ));
        }
    }
}
