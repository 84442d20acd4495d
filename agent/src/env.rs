//! A container's environment and command line, with Kubernetes' semantics: `env` entries in
//! order, each `value` expanded with `$(VAR)` references to the variables defined before it,
//! `valueFrom.fieldRef` read from the pod, and `command` + `args` expanded with the whole
//! environment. Sources this slice does not read (ConfigMaps, Secrets, resource fields,
//! `envFrom`) are reported as configuration errors that name what is missing, never skipped.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar};

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
}

/// Why a container's environment or command line could not be built. The message is what the
/// container's `Waiting` state shows (reason `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The container has no `command`; the process runtime has no image entrypoint to fall back on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container {0:?} has no command: the process runtime runs `command` + `args` and has no image entrypoint to fall back on; set `command`")]
pub struct NoCommand(pub String);

/// The environment of `container`: `base` first (variables the agent provides, such as `PATH` and
/// `POD_IP`), then the container's `env` in order, later entries overriding earlier ones.
pub fn container_env(
    container: &Container,
    pod: &PodFields,
    base: &[(String, String)],
) -> Result<Vec<(String, String)>, ConfigError> {
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(ConfigError(format!(
            "container {:?}: envFrom is not supported by this agent yet; use env with value or fieldRef",
            container.name
        )));
    }
    let mut env: Vec<(String, String)> = base.to_vec();
    for var in container.env.iter().flatten() {
        let value = env_value(var, pod, &env).map_err(|e| {
            ConfigError(format!(
                "container {:?}: env {:?}: {}",
                container.name, var.name, e.0
            ))
        })?;
        match env.iter_mut().find(|(k, _)| *k == var.name) {
            Some(slot) => slot.1 = value,
            None => env.push((var.name.clone(), value)),
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

fn env_value(
    var: &EnvVar,
    pod: &PodFields,
    defined: &[(String, String)],
) -> Result<String, ConfigError> {
    let Some(from) = &var.value_from else {
        let lookup = |name: &str| {
            defined
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        return Ok(expand(var.value.as_deref().unwrap_or(""), lookup));
    };
    if let Some(field) = &from.field_ref {
        return field_value(&field.field_path, pod);
    }
    let unsupported = if from.config_map_key_ref.is_some() {
        "configMapKeyRef"
    } else if from.secret_key_ref.is_some() {
        "secretKeyRef"
    } else if from.resource_field_ref.is_some() {
        "resourceFieldRef"
    } else {
        return Err(ConfigError("valueFrom names no source".into()));
    };
    Err(ConfigError(format!(
        "valueFrom.{unsupported} is not supported by this agent yet; supported: value and fieldRef"
    )))
}

/// The value of a downward-API field path.
fn field_value(path: &str, pod: &PodFields) -> Result<String, ConfigError> {
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
            )))
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
mod tests {
    use k8s_openapi::api::core::v1::{EnvVarSource, ObjectFieldSelector, SecretKeySelector};

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lookup_in<'a>(env: &'a [(String, String)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let env = vars(&[("A", "one"), ("B", "two")]);
        let cases = [
            ("$(A)", "one"),
            ("x$(A)y$(B)z", "xoneytwoz"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$one"),
            ("$A", "$A"),
            ("cost: 5$", "cost: 5$"),
            ("$(A", "$(A"),
            ("$()", "$()"),
            ("plain", "plain"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup_in(&env)), want, "expanding {input:?}");
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        }
    }

    fn pod() -> PodFields {
        PodFields {
            name: "web-1".into(),
            namespace: "prod".into(),
            uid: "u-1".into(),
            node_name: "n1".into(),
            pod_ip: "127.1.0.2".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn env_in_order_with_references_and_field_refs() {
        let c = Container {
            name: "main".into(),
            env: Some(vec![
                field("NAME", "metadata.name"),
                field("NS", "metadata.namespace"),
                field("UID", "metadata.uid"),
                field("NODE", "spec.nodeName"),
                field("IP", "status.podIP"),
                field("APP", "metadata.labels['app']"),
                var("URL", "http://$(IP):8080/$(NAME)/$(LATER)"),
                var("LATER", "x"),
                var("PORT", "1"),
                var("PORT", "2"),
            ]),
            command: Some(vec!["echo".into(), "$(URL)".into()]),
            args: Some(vec![
                "$(LATER)".into(),
                "$(POD_IP)".into(),
                "$$(PORT)".into(),
            ]),
            ..Default::default()
        };
        let base = vars(&[("POD_IP", "127.1.0.2")]);
        let env = container_env(&c, &pod(), &base).unwrap();
        let want = vars(&[
            ("POD_IP", "127.1.0.2"),
            ("NAME", "web-1"),
            ("NS", "prod"),
            ("UID", "u-1"),
            ("NODE", "n1"),
            ("IP", "127.1.0.2"),
            ("APP", "web"),
            ("URL", "http://127.1.0.2:8080/web-1/$(LATER)"),
            ("LATER", "x"),
            ("PORT", "2"),
        ]);
        assert_eq!(env, want);
        assert_eq!(
            command_line(&c, &env).unwrap(),
            [
                "echo",
                "http://127.1.0.2:8080/web-1/$(LATER)",
                "x",
                "127.1.0.2",
                "$(PORT)"
            ]
        );
    }

    #[test]
    fn unsupported_sources_are_errors_that_say_so() {
        let c = Container {
            name: "main".into(),
            env: Some(vec![EnvVar {
                name: "PASSWORD".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "db".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        };
        let err = container_env(&c, &pod(), &[]).unwrap_err();
        assert_eq!(
            err.0,
            "container \"main\": env \"PASSWORD\": valueFrom.secretKeyRef is not supported by \
             this agent yet; supported: value and fieldRef"
        );
        let c = Container {
            name: "main".into(),
            env: Some(vec![field("X", "status.phase")]),
            ..Default::default()
        };
        let err = container_env(&c, &pod(), &[]).unwrap_err();
        assert!(err.0.contains("\"status.phase\" is not supported"), "{err}");
    }

    #[test]
    fn no_command_is_its_own_error() {
        let c = Container {
            name: "web".into(),
            args: Some(vec!["--port=80".into()]),
            ..Default::default()
        };
        let err = command_line(&c, &[]).unwrap_err();
        assert_eq!(err, NoCommand("web".into()));
        assert!(err.to_string().contains("set `command`"));
    }
}
