//! The kinds rkube serves: their group/version, resource (plural) and short names, scope, and the
//! API versions Kubernetes removed (answered with the supported one).

/// Static facts about one served kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name (lower-case plural), as in `kubectl get pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Whether the kind has a status subresource (status written separately from spec).
    pub has_status: bool,
}

impl KindInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as Kubernetes names the resource in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The store key prefix of this kind's objects: `/registry/<group>/<resource>/`.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }
}

macro_rules! kind {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $ns:expr, $status:expr) => {
        KindInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            namespaced: $ns,
            has_status: $status,
        }
    };
}

/// Every kind rkube serves.
pub static KINDS: &[KindInfo] = &[
    kind!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        ["ns"],
        false,
        true
    ),
    kind!("", "v1", "Node", "nodes", "node", ["no"], false, true),
    kind!("", "v1", "Pod", "pods", "pod", ["po"], true, true),
    kind!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        ["svc"],
        true,
        true
    ),
    kind!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        ["ep"],
        true,
        false
    ),
    kind!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        ["cm"],
        true,
        false
    ),
    kind!("", "v1", "Secret", "secrets", "secret", [], true, false),
    kind!(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        ["rc"],
        true,
        true
    ),
    kind!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        ["pv"],
        false,
        true
    ),
    kind!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        ["pvc"],
        true,
        true
    ),
    kind!("", "v1", "Event", "events", "event", ["ev"], true, false),
    kind!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        ["rs"],
        true,
        true
    ),
    kind!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        ["deploy"],
        true,
        true
    ),
    kind!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        ["ds"],
        true,
        true
    ),
    kind!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        ["sts"],
        true,
        true
    ),
    kind!("batch", "v1", "Job", "jobs", "job", [], true, true),
    kind!(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        ["cj"],
        true,
        true
    ),
    kind!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ["hpa"],
        true,
        true
    ),
    kind!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        [],
        true,
        false
    ),
    kind!(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        ["pc"],
        false,
        false
    ),
];

/// API versions Kubernetes served once and removed, with the one to use instead.
static REMOVED: &[(&str, &str, &str)] = &[
    ("extensions/v1beta1", "Deployment", "apps/v1"),
    ("extensions/v1beta1", "DaemonSet", "apps/v1"),
    ("extensions/v1beta1", "ReplicaSet", "apps/v1"),
    ("apps/v1beta1", "Deployment", "apps/v1"),
    ("apps/v1beta2", "Deployment", "apps/v1"),
    ("apps/v1beta1", "StatefulSet", "apps/v1"),
    ("apps/v1beta2", "StatefulSet", "apps/v1"),
    ("apps/v1beta2", "DaemonSet", "apps/v1"),
    ("apps/v1beta2", "ReplicaSet", "apps/v1"),
    ("batch/v1beta1", "CronJob", "batch/v1"),
    ("batch/v2alpha1", "CronJob", "batch/v1"),
    (
        "autoscaling/v2beta1",
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
    ),
    (
        "autoscaling/v2beta2",
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
    ),
    (
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
    ),
    (
        "coordination.k8s.io/v1beta1",
        "Lease",
        "coordination.k8s.io/v1",
    ),
    (
        "scheduling.k8s.io/v1beta1",
        "PriorityClass",
        "scheduling.k8s.io/v1",
    ),
];

/// The kind served for `api_version` + `kind`, or an error message that says what is served.
pub fn lookup(api_version: &str, kind: &str) -> Result<&'static KindInfo, String> {
    if let Some(k) = KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
    {
        return Ok(k);
    }
    if let Some((_, _, use_instead)) = REMOVED
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
    {
        return Err(format!(
            "no matches for kind \"{kind}\" in version \"{api_version}\": {kind} is no longer served in {api_version}; use apiVersion: {use_instead}"
        ));
    }
    if let Some(k) = KINDS.iter().find(|k| k.kind == kind) {
        return Err(format!(
            "no matches for kind \"{kind}\" in version \"{api_version}\": {kind} is served as apiVersion: {}",
            k.api_version()
        ));
    }
    Err(format!(
        "no matches for kind \"{kind}\" in version \"{api_version}\": rkube serves the kinds {}",
        KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
    ))
}

/// Find a kind by any name a user may type: kind (`Deployment`), plural (`deployments`), singular,
/// short name (`deploy`), or plural qualified by group (`deployments.apps`); case-insensitive.
pub fn resolve(name: &str) -> Option<&'static KindInfo> {
    let n = name.to_ascii_lowercase();
    KINDS.iter().find(|k| {
        k.kind.eq_ignore_ascii_case(&n)
            || k.plural == n
            || k.singular == n
            || k.short_names.contains(&n.as_str())
            || k.qualified_plural() == n
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_explains_removed_and_unknown_kinds() {
        assert_eq!(
            lookup("apps/v1", "Deployment").map(|k| k.plural),
            Ok("deployments")
        );
        let removed = lookup("extensions/v1beta1", "Deployment").unwrap_err();
        assert!(removed.contains("use apiVersion: apps/v1"), "{removed}");
        let wrong = lookup("v1", "Deployment").unwrap_err();
        assert!(wrong.contains("served as apiVersion: apps/v1"), "{wrong}");
        let unknown = lookup("v1", "Frobnicator").unwrap_err();
        assert!(
            unknown.contains("rkube serves the kinds Namespace, Node, Pod"),
            "{unknown}"
        );
    }

    #[test]
    fn resolve_accepts_kubectl_names() {
        for (name, plural) in [
            ("po", "pods"),
            ("Pod", "pods"),
            ("svc", "services"),
            ("deploy", "deployments"),
            ("deployments.apps", "deployments"),
            ("rs", "replicasets"),
            ("rc", "replicationcontrollers"),
            ("ds", "daemonsets"),
            ("sts", "statefulsets"),
            ("cm", "configmaps"),
            ("ns", "namespaces"),
            ("no", "nodes"),
            ("ep", "endpoints"),
            ("hpa", "horizontalpodautoscalers"),
            ("pv", "persistentvolumes"),
            ("pvc", "persistentvolumeclaims"),
            ("cj", "cronjobs"),
            ("ev", "events"),
            ("lease", "leases"),
        ] {
            assert_eq!(resolve(name).map(|k| k.plural), Some(plural), "{name}");
        }
        assert!(resolve("frobs").is_none());
    }

    #[test]
    fn keys_follow_the_design() {
        assert_eq!(
            resolve("pods").unwrap().key_prefix(),
            "/registry/core/pods/"
        );
        assert_eq!(
            resolve("deploy").unwrap().key_prefix(),
            "/registry/apps/deployments/"
        );
    }
}
