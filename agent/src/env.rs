//! A container's environment and command line, with Kubernetes' semantics: `envFrom` sources
//! first (ConfigMaps and Secrets, each key under the source's `prefix`, keys that are not valid
//! variable names skipped with a warning), then the `env` entries in order, each `value`
//! expanded with `$(VAR)` references to the variables defined before it and each `valueFrom`
//! read from the pod (`fieldRef`), its resources (`resourceFieldRef`, [`resources`]) or a
//! ConfigMap/Secret key; then `command` + `args` expanded with the whole environment. A missing
//! ConfigMap, Secret or key that is not `optional` is a [`ConfigError`] in the kubelet's words
//! (`configmap "x" not found`, `couldn't find key k in ConfigMap default/x`).
//!
//! Resolution is pure: the worker fetches the objects a container refers to ([`referenced`])
//! into [`Sources`] first.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Secret};

pub mod resources;

pub use resources::NodeAllocatable;

/// What a container's environment may refer to about its pod.
#[derive(Debug, Clone, Default)]
pub struct PodFields {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub service_account: String,
    pub pod_ip: String,
    pub host_ip: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// For `resourceFieldRef` limits the container does not set.
    pub allocatable: NodeAllocatable,
}

/// The ConfigMaps and Secrets of the pod's namespace a container refers to, as fetched:
/// `None` when the object does not exist.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
}

/// The names of the ConfigMaps and Secrets `container`'s environment refers to.
pub fn referenced(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut config_maps, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for from in container
        .env
        .iter()
        .flatten()
        .filter_map(|v| v.value_from.as_ref())
    {
        if let Some(r) = &from.config_map_key_ref {
            config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (config_maps, secrets)
}

/// Why a container's environment or command line could not be built. The message is what the
/// container's `Waiting` state shows (reason `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The container has no `command`; the process runtime has no image entrypoint to fall back on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "container {0:?} has no command: the process runtime runs `command` + `args` and has no image entrypoint to fall back on; set `command`"
)]
pub struct NoCommand(pub String);

/// A ConfigMap's string data, or why it cannot be read (`None` when optional and missing).
fn config_map_data<'a>(
    sources: &'a Sources,
    name: &str,
    optional: bool,
) -> Result<Option<&'a BTreeMap<String, String>>, ConfigError> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    match sources.config_maps.get(name) {
        Some(Some(cm)) => Ok(Some(cm.data.as_ref().unwrap_or(&EMPTY))),
        Some(None) if optional => Ok(None),
        Some(None) => Err(ConfigError(format!("configmap {name:?} not found"))),
        None => Err(ConfigError(format!("configmap {name:?} was not fetched"))),
    }
}

/// A Secret's data as strings (`stringData` folded in, should the server not have), or why it
/// cannot be read (`None` when optional and missing).
pub fn secret_data(
    sources: &Sources,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
    match sources.secrets.get(name) {
        Some(Some(secret)) => Ok(Some(secret_bytes(secret))),
        Some(None) if optional => Ok(None),
        Some(None) => Err(ConfigError(format!("secret {name:?} not found"))),
        None => Err(ConfigError(format!("secret {name:?} was not fetched"))),
    }
}

/// A Secret's `data` with `stringData` folded in.
pub fn secret_bytes(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// Kubernetes' rule for environment variable names (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The environment of `container`: `base` first (variables the agent provides, such as `PATH` and
/// `POD_IP`), then its `envFrom` sources and its `env` in order, later entries overriding
/// earlier ones.
pub fn container_env(
    container: &Container,
    pod: &PodFields,
    base: &[(String, String)],
    sources: &Sources,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut env: Vec<(String, String)> = base.to_vec();
    let set = |env: &mut Vec<(String, String)>, name: &str, value: String| match env
        .iter_mut()
        .find(|(k, _)| k == name)
    {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_string(), value)),
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (what, name, data): (&str, &str, BTreeMap<String, String>) =
            if let Some(r) = &from.config_map_ref {
                let data = config_map_data(sources, &r.name, r.optional == Some(true))?;
                ("configMap", &r.name, data.cloned().unwrap_or_default())
            } else if let Some(r) = &from.secret_ref {
                let data = secret_data(sources, &r.name, r.optional == Some(true))?;
                let data = data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                ("secret", &r.name, data)
            } else {
                return Err(ConfigError(format!(
                    "container {:?}: envFrom entry names neither configMapRef nor secretRef",
                    container.name
                )));
            };
        let mut invalid = Vec::new();
        for (key, value) in data {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                set(&mut env, &key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            tracing::warn!(
                pod = %pod.name, namespace = %pod.namespace, container = %container.name,
                "Keys [{}] from the EnvFrom {what} {}/{name} were skipped since they are \
                 considered invalid environment variable names.",
                invalid.join(", "), pod.namespace
            );
        }
    }
    for var in container.env.iter().flatten() {
        let value = env_value(var, container, pod, &env, sources).map_err(|e| {
            ConfigError(format!(
                "container {:?}: env {:?}: {}",
                container.name, var.name, e.0
            ))
        })?;
        if let Some(value) = value {
            set(&mut env, &var.name, value);
        }
    }
    Ok(env)
}

/// The command line of `container`: `command` then `args`, each expanded with `env`.
pub fn command_line(
    container: &Container,
    env: &[(String, String)],
) -> Result<Vec<String>, NoCommand> {
    let command = container.command.as_deref().unwrap_or_default();
    if command.is_empty() {
        return Err(NoCommand(container.name.clone()));
    }
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    Ok(command
        .iter()
        .chain(container.args.iter().flatten())
        .map(|s| expand(s, lookup))
        .collect())
}

/// The `args` of `container` alone, expanded with `env`: what a container engine runs with the
/// image's entrypoint when the container has no `command`.
pub fn args_line(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    container
        .args
        .iter()
        .flatten()
        .map(|s| expand(s, lookup))
        .collect()
}

/// One `env` entry's value; `None` when it refers to an optional source that is missing (the
/// variable is then not set, as the kubelet does).
fn env_value(
    var: &EnvVar,
    container: &Container,
    pod: &PodFields,
    defined: &[(String, String)],
    sources: &Sources,
) -> Result<Option<String>, ConfigError> {
    let Some(from) = &var.value_from else {
        let lookup = |name: &str| {
            defined
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), lookup)));
    };
    if let Some(field) = &from.field_ref {
        return field_value(&field.field_path, pod).map(Some);
    }
    if let Some(selector) = &from.resource_field_ref {
        return resources::resource_value(selector, container, &pod.allocatable).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        let Some(data) = config_map_data(sources, &r.name, optional)? else {
            return Ok(None);
        };
        return match data.get(&r.key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in ConfigMap {}/{}",
                r.key, pod.namespace, r.name
            ))),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        let Some(data) = secret_data(sources, &r.name, optional)? else {
            return Ok(None);
        };
        return match data.get(&r.key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {} in Secret {}/{}",
                r.key, pod.namespace, r.name
            ))),
        };
    }
    Err(ConfigError("valueFrom names no source".into()))
}

/// The value of a downward-API field path.
pub fn field_value(path: &str, pod: &PodFields) -> Result<String, ConfigError> {
    let keyed = |prefix: &str, map: &BTreeMap<String, String>| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(|key| map.get(key).cloned().unwrap_or_default())
    };
    if let Some(v) = keyed("metadata.labels['", &pod.labels) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", &pod.annotations) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.clone(),
        "metadata.uid" => pod.uid.clone(),
        "spec.nodeName" => pod.node_name.clone(),
        "spec.serviceAccountName" => pod.service_account.clone(),
        "status.podIP" | "status.podIPs" => pod.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => pod.host_ip.clone(),
        other => {
            return Err(ConfigError(format!(
                "fieldRef.fieldPath {other:?} is not supported; supported: metadata.name, \
                 metadata.namespace, metadata.uid, metadata.labels['KEY'], \
                 metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, \
                 status.podIP, status.podIPs, status.hostIP, status.hostIPs"
            )));
        }
    })
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the variable's value when it is defined
/// and stays as written otherwise, `$$` is an escaped `$`, and any other `$` is kept.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
