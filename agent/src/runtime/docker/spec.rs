//! The Docker Engine create requests for a pod's sandbox and its containers, built from the
//! agent's [`ContainerSpec`] without talking to the engine (so they are unit tested).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};

use crate::runtime::{ContainerSpec, PodRef};

/// Labels on everything the runtime creates: the node's label lets a restarted agent (and
/// tests) find and remove its containers.
pub const NODE_LABEL: &str = "rkube.io/node";
pub const POD_UID_LABEL: &str = "rkube.io/pod-uid";
pub const POD_NAMESPACE_LABEL: &str = "rkube.io/pod-namespace";
pub const POD_NAME_LABEL: &str = "rkube.io/pod-name";
pub const CONTAINER_LABEL: &str = "rkube.io/container";
/// The container name the sandbox has in [`CONTAINER_LABEL`].
pub const SANDBOX: &str = "POD";

/// The Docker name of pod `pod`'s sandbox container.
pub fn sandbox_name(node: &str, pod: &PodRef) -> String {
    sanitize(&format!(
        "rkube_{node}_{}_{}_{}_{SANDBOX}",
        pod.namespace, pod.name, pod.uid
    ))
}

/// The Docker name of attempt `attempt` of container `container` of pod `pod`.
pub fn container_name(node: &str, pod: &PodRef, container: &str, attempt: u64) -> String {
    sanitize(&format!(
        "rkube_{node}_{}_{}_{}_{container}_{attempt}",
        pod.namespace, pod.name, pod.uid
    ))
}

/// Docker names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; Kubernetes names already are, but keep any
/// other character from failing the create request.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn labels(node: &str, pod: &PodRef, container: &str) -> HashMap<String, String> {
    [
        (NODE_LABEL, node),
        (POD_UID_LABEL, pod.uid.as_str()),
        (POD_NAMESPACE_LABEL, pod.namespace.as_str()),
        (POD_NAME_LABEL, pod.name.as_str()),
        (CONTAINER_LABEL, container),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The sandbox: `rkube pause` from `image` on `network`, holding the pod's network namespace
/// (and its hostname, the pod's name) for the pod's containers.
pub fn sandbox_body(node: &str, pod: &PodRef, image: &str, network: &str) -> ContainerCreateBody {
    // A hostname is a DNS label: at most 63 characters.
    let hostname: String = pod.name.chars().take(63).collect();
    ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["/rkube".into(), "pause".into()]),
        cmd: Some(vec![]),
        hostname: Some(hostname.trim_end_matches(['-', '.']).to_string()),
        labels: Some(labels(node, pod, SANDBOX)),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                EndpointSettings::default(),
            )])),
        }),
        ..Default::default()
    }
}

/// A container of the pod joining sandbox `sandbox_id`'s network namespace. `command` and
/// `args` become the entrypoint and cmd (no `command`: the image's entrypoint runs the args),
/// limits become cgroup limits, mounts bind mounts; stdout and stderr stay with Docker's log
/// driver, from which the runtime copies them to the container's log file.
pub fn container_body(node: &str, spec: &ContainerSpec, sandbox_id: &str) -> ContainerCreateBody {
    let engine = &spec.engine;
    let split = engine.command_len.min(spec.argv.len());
    let (command, args) = spec.argv.split_at(split);
    let limits = engine.limits;
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .map(|m| {
            let mode = if m.read_only { "ro" } else { "rw" };
            format!("{}:{}:{mode}", m.source.display(), m.target.display())
        })
        .collect();
    ContainerCreateBody {
        image: Some(engine.image.clone()),
        entrypoint: (!command.is_empty()).then(|| command.to_vec()),
        // An empty cmd with an entrypoint given: no image CMD is appended either.
        cmd: Some(args.to_vec()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        // The process runtime's default (the pod directory) is a host path: engines keep the
        // image's working directory unless the container sets one.
        working_dir: engine.working_dir.as_ref().map(|d| d.display().to_string()),
        labels: Some(labels(node, &engine.pod, &spec.name)),
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{sandbox_id}")),
            memory: limits.memory_bytes,
            // No swap beyond the memory limit, as the kubelet sets it.
            memory_swap: limits.memory_bytes,
            nano_cpus: limits.nano_cpus,
            binds: (!binds.is_empty()).then_some(binds),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::{EngineSpec, Limits, Mount};

    fn pod() -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: "demo-7d9f-abcde".into(),
            uid: "0f1e".into(),
        }
    }

    fn spec(command_len: usize) -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            argv: vec!["/rkube".into(), "demo-app".into(), "--version=v2".into()],
            env: vec![("POD_IP".into(), "172.18.0.5".into())],
            working_dir: PathBuf::from("/srv"),
            log_path: PathBuf::from("/tmp/web.log"),
            mounts: vec![Mount {
                source: PathBuf::from("/var/lib/pods/x/volumes/config"),
                target: PathBuf::from("/etc/config"),
                read_only: true,
            }],
            engine: EngineSpec {
                pod: pod(),
                image: "rkube:dev".into(),
                command_len,
                working_dir: Some(PathBuf::from("/srv")),
                limits: Limits {
                    memory_bytes: Some(64 << 20),
                    nano_cpus: Some(500_000_000),
                },
            },
        }
    }

    #[test]
    fn command_and_args_become_entrypoint_and_cmd() {
        let body = container_body("n1", &spec(1), "sandbox-id");
        assert_eq!(body.entrypoint, Some(vec!["/rkube".to_string()]));
        assert_eq!(
            body.cmd,
            Some(vec!["demo-app".to_string(), "--version=v2".to_string()])
        );
        // Without a command the image's entrypoint runs everything as args.
        let body = container_body("n1", &spec(0), "sandbox-id");
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.cmd.unwrap().len(), 3);
        // Without a workingDir the image's stays.
        let mut no_dir = spec(1);
        no_dir.engine.working_dir = None;
        assert_eq!(container_body("n1", &no_dir, "s").working_dir, None);
    }

    #[test]
    fn containers_join_the_sandbox_with_their_limits_env_and_mounts() {
        let body = container_body("n1", &spec(1), "sandbox-id");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:sandbox-id"));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(
            host.binds,
            Some(vec![
                "/var/lib/pods/x/volumes/config:/etc/config:ro".to_string()
            ])
        );
        assert_eq!(body.env, Some(vec!["POD_IP=172.18.0.5".to_string()]));
        assert_eq!(body.working_dir.as_deref(), Some("/srv"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[NODE_LABEL], "n1");
        assert_eq!(labels[POD_UID_LABEL], "0f1e");
        assert_eq!(labels[CONTAINER_LABEL], "web");
    }

    #[test]
    fn the_sandbox_runs_pause_on_the_network_with_the_pod_name_as_hostname() {
        let body = sandbox_body("n1", &pod(), "rkube:dev", "rkube");
        assert_eq!(
            body.entrypoint,
            Some(vec!["/rkube".to_string(), "pause".to_string()])
        );
        assert_eq!(body.hostname.as_deref(), Some("demo-7d9f-abcde"));
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("rkube")
        );
        assert_eq!(body.labels.unwrap()[CONTAINER_LABEL], SANDBOX);
    }

    #[test]
    fn names_are_unique_per_attempt_and_valid_for_docker() {
        let a = container_name("n1", &pod(), "web", 1);
        let b = container_name("n1", &pod(), "web", 2);
        assert_ne!(a, b);
        assert_eq!(a, "rkube_n1_default_demo-7d9f-abcde_0f1e_web_1");
        assert_eq!(
            sandbox_name("n:1", &pod()),
            "rkube_n-1_default_demo-7d9f-abcde_0f1e_POD"
        );
    }
}
