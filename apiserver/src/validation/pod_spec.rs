//! PodSpec and PodTemplateSpec validation (Kubernetes' `ValidatePodSpec` and
//! `ValidatePodTemplateSpec`), shared by Pods and by every workload kind that carries a pod
//! template. Every problem is reported with its full field path; nothing stops at the first.
//!
//! Fields that defaulting always fills (restartPolicy, dnsPolicy, a port's protocol, ...) are
//! checked as if defaulted when absent, so validating an object that skipped defaulting does not
//! report them as missing.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{PodDNSConfig, PodSecurityContext, PodSpec, PodTemplateSpec};

use crate::validation::common::{
    dns1123_label, dns1123_subdomain, push_all, validate_annotations, validate_labels,
};
use crate::validation::{FieldError, FieldErrors, Path};
use checks::{inclusive_range, one_of, MAX_INT32};

pub mod checks;
mod containers;
mod env;
pub mod label_selector;
mod scheduling;
pub(crate) use scheduling::validate_node_selector_term;
mod volumes;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// What the owner of a pod spec adds to it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PodSpecOptions<'a> {
    /// Volume names a controller adds to each pod it creates (a StatefulSet's
    /// `volumeClaimTemplates`), which containers may mount although `volumes` does not list them.
    pub extra_volumes: &'a [String],
}

/// Validate a pod spec found at `path` (`spec`, `spec.template.spec`, ...).
pub fn validate_pod_spec(
    spec: &PodSpec,
    path: &Path,
    opts: &PodSpecOptions<'_>,
    errs: &mut FieldErrors,
) {
    let volumes_path = path.child("volumes");
    let mut volume_names = volumes::validate_volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        &volumes_path,
        errs,
    );
    volume_names.extend(opts.extra_volumes.iter().cloned());
    let ctx = containers::Context {
        volumes: &volume_names,
        volumes_path: &volumes_path,
        grace_period: spec.termination_grace_period_seconds.or(Some(30)),
    };
    containers::validate_containers(&spec.containers, &ctx, &path.child("containers"), errs);
    containers::validate_init_containers(
        spec.init_containers.as_deref().unwrap_or_default(),
        &spec.containers,
        &ctx,
        &path.child("initContainers"),
        errs,
    );
    one_of(
        spec.restart_policy.as_deref().unwrap_or("Always"),
        RESTART_POLICIES,
        &path.child("restartPolicy"),
        errs,
    );
    one_of(
        spec.dns_policy.as_deref().unwrap_or("ClusterFirst"),
        DNS_POLICIES,
        &path.child("dnsPolicy"),
        errs,
    );
    validate_labels(
        spec.node_selector.as_ref(),
        &path.child("nodeSelector"),
        errs,
    );
    if let Some(sc) = &spec.security_context {
        validate_pod_security_context(sc, &path.child("securityContext"), errs);
    }
    if let Some(affinity) = &spec.affinity {
        scheduling::validate_affinity(affinity, &path.child("affinity"), errs);
    }
    scheduling::validate_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
        errs,
    );
    scheduling::validate_topology_spread_constraints(
        spec.topology_spread_constraints
            .as_deref()
            .unwrap_or_default(),
        &path.child("topologySpreadConstraints"),
        errs,
    );
    validate_dns_config(
        spec.dns_config.as_ref(),
        spec.dns_policy.as_deref(),
        &path.child("dnsConfig"),
        errs,
    );
    let named = [
        (
            &spec.service_account_name,
            "serviceAccountName",
            dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        (&spec.node_name, "nodeName", dns1123_subdomain),
        (&spec.hostname, "hostname", dns1123_label),
        (&spec.subdomain, "subdomain", dns1123_label),
        (
            &spec.priority_class_name,
            "priorityClassName",
            dns1123_subdomain,
        ),
    ];
    for (value, field, check) in named {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            push_all(errs, &path.child(field), v, check(v));
        }
    }
    if let Some(v) = spec.active_deadline_seconds {
        if !(1..=MAX_INT32).contains(&v) {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                v,
                &inclusive_range(1, MAX_INT32),
            ));
        }
    }
    checks::nonnegative(
        spec.termination_grace_period_seconds,
        &path.child("terminationGracePeriodSeconds"),
        errs,
    );
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let ap = path.child("hostAliases").index(i);
        if alias.ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError::invalid(&ap.child("ip"), &alias.ip, IP_MSG));
        }
        for (j, host) in alias.hostnames.iter().flatten().enumerate() {
            push_all(
                errs,
                &ap.child("hostnames").index(j),
                host,
                dns1123_subdomain(host),
            );
        }
    }
    if spec.host_network == Some(true) {
        validate_host_network_ports(spec, path, errs);
    }
}

/// Validate a pod template at `path` (`spec.template`): its labels and annotations and its spec.
/// A template without a spec is validated as an empty spec (it has no containers).
pub fn validate_pod_template(
    template: &PodTemplateSpec,
    path: &Path,
    opts: &PodSpecOptions<'_>,
    errs: &mut FieldErrors,
) {
    let meta_path = path.child("metadata");
    if let Some(meta) = &template.metadata {
        validate_labels(meta.labels.as_ref(), &meta_path.child("labels"), errs);
        validate_annotations(
            meta.annotations.as_ref(),
            &meta_path.child("annotations"),
            errs,
        );
    }
    let spec_path = path.child("spec");
    let empty = PodSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&empty);
    validate_pod_spec(spec, &spec_path, opts, errs);
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            &spec_path.child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// The restart policy a template's pods get (absent means the default, `Always`).
pub fn template_restart_policy(template: &PodTemplateSpec) -> &str {
    template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn validate_pod_security_context(sc: &PodSecurityContext, path: &Path, errs: &mut FieldErrors) {
    for (v, field) in [
        (sc.run_as_user, "runAsUser"),
        (sc.run_as_group, "runAsGroup"),
        (sc.fs_group, "fsGroup"),
    ] {
        id_range(v, &path.child(field), errs);
    }
    for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
        id_range(Some(*g), &path.child("supplementalGroups").index(i), errs);
    }
}

/// A user or group id: 0..2147483647.
fn id_range(v: Option<i64>, path: &Path, errs: &mut FieldErrors) {
    if let Some(v) = v {
        if !(0..=MAX_INT32).contains(&v) {
            errs.push(FieldError::invalid(path, v, &inclusive_range(0, MAX_INT32)));
        }
    }
}

fn validate_dns_config(
    config: Option<&PodDNSConfig>,
    policy: Option<&str>,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let nameservers = config
        .and_then(|c| c.nameservers.as_deref())
        .unwrap_or_default();
    if policy == Some("None") {
        if config.is_none() {
            errs.push(FieldError::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if nameservers.is_empty() {
            errs.push(FieldError::required(
                &path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    let Some(config) = config else { return };
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        errs.push(FieldError::invalid(
            &path.child("nameservers"),
            checks::go_string_slice(Some(nameservers)),
            &format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if ns.parse::<IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                &path.child("nameservers").index(i),
                ns,
                IP_MSG,
            ));
        }
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(FieldError::invalid(
            &path.child("searches"),
            checks::go_string_slice(Some(searches)),
            &format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        // A trailing dot (an absolute name) is allowed.
        let name = search.strip_suffix('.').unwrap_or(search);
        push_all(
            errs,
            &path.child("searches").index(i),
            search,
            dns1123_subdomain(name),
        );
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if option.name.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(
                &path.child("options").index(i),
                "Option.Name must not be empty",
            ));
        }
    }
}

/// With the host's network, a container listens on the host's port: a `hostPort`, when given,
/// must be the `containerPort`.
fn validate_host_network_ports(spec: &PodSpec, path: &Path, errs: &mut FieldErrors) {
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let host = port.host_port.unwrap_or(0);
            if host != 0 && host != port.container_port {
                let pp = path
                    .child("containers")
                    .index(i)
                    .child("ports")
                    .index(j)
                    .child("containerPort");
                errs.push(FieldError::invalid(
                    &pp,
                    port.container_port,
                    "must match `hostPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}
