//! Pod defaults (Kubernetes' `SetDefaults_PodSpec`, `SetDefaults_Container`, probe, volume and
//! downward-API defaults from `pkg/apis/core/v1/defaults.go`), applied to Pods and to the pod
//! templates of every workload kind; plus what Kubernetes sets only on Pods (`SetDefaults_Pod`
//! and the Priority admission plugin's priority).

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, ObjectFieldSelector, Pod, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, Volume,
};

const DEFAULT_FILE_MODE: i32 = 0o644;
const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;
const DEFAULT_SCHEDULER: &str = "default-scheduler";
const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 3600;

/// Defaults of a Pod: its spec's, and what only Pods get (requests from limits, service links,
/// host ports under the host network, priority 0 without a priority class).
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    let host_network = spec.host_network == Some(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        // Requests default to limits, so a pod that only sets limits is scheduled by them.
        if let Some(res) = c.resources.as_mut() {
            if let Some(limits) = res.limits.clone() {
                let requests = res.requests.get_or_insert_with(Default::default);
                for (name, q) in limits {
                    requests.entry(name).or_insert(q);
                }
            }
        }
        if host_network {
            for port in c.ports.iter_mut().flatten() {
                if port.host_port.unwrap_or(0) == 0 {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }
    spec.enable_service_links.get_or_insert(true);
    // The Priority admission plugin resolves a priority class into a number; without a class
    // (and with no global default class) the priority is 0.
    if spec
        .priority_class_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        spec.priority.get_or_insert(0);
        spec.preemption_policy
            .get_or_insert_with(|| "PreemptLowerPriority".to_string());
    }
}

/// Defaults of a pod template (a missing spec is defaulted as an empty one).
pub fn default_pod_template(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// Defaults of a pod spec, wherever it appears.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    set_if_empty(&mut spec.scheduler_name, DEFAULT_SCHEDULER);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
}

/// `Always` for an image without a tag or tagged `latest` (a new pull may find a newer image),
/// `IfNotPresent` otherwise (a tag or a digest pins the image).
pub fn image_pull_policy_for(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A tag follows the last ':' after the last '/'; an earlier ':' belongs to a registry port.
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let tag = last_segment.split_once(':').map(|(_, tag)| tag);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        c.image_pull_policy =
            Some(image_pull_policy_for(c.image.as_deref().unwrap_or_default()).to_string());
    }
    set_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_if_empty(&mut c.termination_message_policy, "File");
    for port in c.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = c.lifecycle.as_mut() {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            default_lifecycle_handler(handler);
        }
    }
    for var in c.env.iter_mut().flatten() {
        if let Some(field_ref) = var.value_from.as_mut().and_then(|f| f.field_ref.as_mut()) {
            default_field_ref(field_ref);
        }
    }
}

fn default_probe(p: &mut Probe) {
    // Kubernetes treats 0 as unset for these.
    for (field, default) in [
        (&mut p.timeout_seconds, 1),
        (&mut p.period_seconds, 10),
        (&mut p.success_threshold, 1),
        (&mut p.failure_threshold, 3),
    ] {
        if field.unwrap_or(0) == 0 {
            *field = Some(default);
        }
    }
    if let Some(http) = p.http_get.as_mut() {
        default_http_get(http);
    }
}

fn default_lifecycle_handler(h: &mut LifecycleHandler) {
    if let Some(http) = h.http_get.as_mut() {
        default_http_get(http);
    }
}

fn default_http_get(http: &mut HTTPGetAction) {
    set_if_empty(&mut http.path, "/");
    set_if_empty(&mut http.scheme, "HTTP");
}

fn default_field_ref(f: &mut ObjectFieldSelector) {
    set_if_empty(&mut f.api_version, "v1");
}

fn default_volume(v: &mut Volume) {
    // A volume without a source is an emptyDir: every field but the name is a source.
    let has_source = serde_json::to_value(&*v)
        .ok()
        .and_then(|value| {
            value
                .as_object()
                .map(|o| o.iter().any(|(k, v)| k != "name" && !v.is_null()))
        })
        .unwrap_or(true);
    if !has_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(cm) = v.config_map.as_mut() {
        cm.default_mode.get_or_insert(DEFAULT_FILE_MODE);
    }
    if let Some(secret) = v.secret.as_mut() {
        secret.default_mode.get_or_insert(DEFAULT_FILE_MODE);
    }
    if let Some(hp) = v.host_path.as_mut() {
        hp.type_.get_or_insert_with(String::new);
    }
    if let Some(dapi) = v.downward_api.as_mut() {
        dapi.default_mode.get_or_insert(DEFAULT_FILE_MODE);
        for item in dapi.items.iter_mut().flatten() {
            if let Some(f) = item.field_ref.as_mut() {
                default_field_ref(f);
            }
        }
    }
    if let Some(projected) = v.projected.as_mut() {
        projected.default_mode.get_or_insert(DEFAULT_FILE_MODE);
        for source in projected.sources.iter_mut().flatten() {
            if let Some(token) = source.service_account_token.as_mut() {
                token
                    .expiration_seconds
                    .get_or_insert(SERVICE_ACCOUNT_TOKEN_SECONDS);
            }
            let items = source.downward_api.as_mut().and_then(|d| d.items.as_mut());
            for f in items
                .into_iter()
                .flatten()
                .filter_map(|item| item.field_ref.as_mut())
            {
                default_field_ref(f);
            }
        }
    }
}

/// Set a string field that is absent or empty (Go's zero value) to `default`.
fn set_if_empty(field: &mut Option<String>, default: &str) {
    if field.as_deref().unwrap_or_default().is_empty() {
        *field = Some(default.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/kubia", "Always"),
            ("localhost:5000/kubia:v3", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
            ("busybox:latest@sha256:abcd", "Always"),
            ("", "Always"),
        ] {
            assert_eq!(image_pull_policy_for(image), policy, "{image}");
        }
    }
}
