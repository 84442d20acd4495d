//! A pod's volumes on this node, with Kubernetes' semantics: `emptyDir` (on disk, or
//! memory-backed with `medium: Memory`), `hostPath` (with its type checks), `configMap`,
//! `secret` (memory-backed) and `downwardAPI` (projected files, written atomically, see
//! [`projection`]) and `persistentVolumeClaim` (a Bound claim of a hostPath PersistentVolume).
//! Other volume types are refused with a message naming the field.
//!
//! Volume data lives in `<pod dir>/volumes/<name>` except for hostPath and claims, which are
//! their host paths (and are never removed by a pod's tear-down; [`reclaim`] removes a deleted
//! local volume's directory on its node). [`PodVolumes::set_up`] prepares every volume before
//! the pod's first container starts; [`PodVolumes::resync`] re-projects configMap and secret
//! volumes from the API periodically and downwardAPI volumes from the pod as it changes;
//! [`tear_down`] unmounts what the agent mounted before the pod directory is removed.
//! Containers see their `volumeMounts` through [`PodVolumes::mounts`] (bind mounts the runtime
//! makes, `subPath` resolved and kept inside its volume).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, DownwardAPIVolumeSource, Pod, Secret,
    SecretVolumeSource, Volume,
};
use rkube_client::Client;
use serde::de::DeserializeOwned;

use crate::env::PodFields;
use crate::runtime::Mount;

mod host;
pub mod projection;
pub mod reclaim;

/// The volume types this agent sets up.
const SUPPORTED: &str = "emptyDir, hostPath, configMap, secret, downwardAPI, persistentVolumeClaim";

/// A volume that could not be set up; shown as the waiting message of the pod's containers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

/// What keeps a projected volume current.
#[derive(Debug, Clone)]
enum Source {
    /// Nothing: emptyDir, hostPath, claims.
    Fixed,
    ConfigMap(ConfigMapVolumeSource),
    Secret(SecretVolumeSource),
    Downward(DownwardAPIVolumeSource),
}

#[derive(Debug, Clone)]
struct Ready {
    path: PathBuf,
    /// Mounted read-only whatever the volumeMount says.
    read_only: bool,
    source: Source,
}

/// The set-up volumes of one pod.
#[derive(Debug)]
pub struct PodVolumes {
    volumes: BTreeMap<String, Ready>,
}

/// Get object `name`, `None` when it does not exist.
pub(crate) async fn get_optional<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, rkube_client::Error>
where
    K: k8s_openapi::Resource + DeserializeOwned,
{
    match client.get_typed::<K>(namespace, name).await {
        Ok(k) => Ok(Some(k)),
        Err(rkube_client::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `<pod dir>/volumes` directory.
fn volumes_root(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// The JSON name of the volume source `volume` sets (`emptyDir`, `projected`, …).
fn source_kind(volume: &Volume) -> Option<String> {
    let value = serde_json::to_value(volume).ok()?;
    value
        .as_object()?
        .keys()
        .find(|k| k.as_str() != "name")
        .cloned()
}

async fn project_config_map(
    client: &Client,
    namespace: &str,
    src: &ConfigMapVolumeSource,
    path: &Path,
) -> Result<bool, String> {
    let cm: Option<ConfigMap> = get_optional(client, namespace, &src.name)
        .await
        .map_err(|e| format!("cannot read configmap {:?}: {e}", src.name))?;
    let optional = src.optional == Some(true);
    if cm.is_none() && !optional {
        return Err(format!("configmap {:?} not found", src.name));
    }
    let payload = projection::config_map_payload(
        cm.as_ref(),
        src.items.as_deref(),
        src.default_mode,
        optional,
    )?;
    projection::write_atomic(path, &payload)
}

async fn project_secret(
    client: &Client,
    namespace: &str,
    src: &SecretVolumeSource,
    path: &Path,
) -> Result<bool, String> {
    let name = src.secret_name.clone().unwrap_or_default();
    let secret: Option<Secret> = get_optional(client, namespace, &name)
        .await
        .map_err(|e| format!("cannot read secret {name:?}: {e}"))?;
    let optional = src.optional == Some(true);
    if secret.is_none() && !optional {
        return Err(format!("secret {name:?} not found"));
    }
    let payload = projection::secret_payload(
        secret.as_ref(),
        src.items.as_deref(),
        src.default_mode,
        optional,
    )?;
    projection::write_atomic(path, &payload)
}

impl PodVolumes {
    /// Set up every volume of `pod` (idempotent: a restarted agent finds its work done).
    pub async fn set_up(
        client: &Client,
        pod: &Pod,
        fields: &PodFields,
        pod_dir: &Path,
    ) -> Result<PodVolumes, VolumeError> {
        let root = volumes_root(pod_dir);
        let mut volumes = BTreeMap::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let name = volume.name.clone();
            let fail = |message: String| VolumeError {
                volume: name.clone(),
                message,
            };
            let dir = root.join(&name);
            let ready = if let Some(empty) = &volume.empty_dir {
                match empty.medium.as_deref().unwrap_or("") {
                    "" => std::fs::create_dir_all(&dir)
                        .map_err(|e| fail(format!("{}: {e}", dir.display())))?,
                    "Memory" => {
                        let size = empty
                            .size_limit
                            .as_ref()
                            .and_then(|q| crate::env::resources::parse_nanos(&q.0).ok())
                            .map(|n| (n + 999_999_999) / 1_000_000_000);
                        host::memory_dir(&dir, &fields.uid, &name, size).map_err(fail)?
                    }
                    other => {
                        return Err(fail(format!(
                            "emptyDir.medium {other:?} is not supported; supported: \"\" and \
                             \"Memory\""
                        )));
                    }
                }
                Ready {
                    path: dir,
                    read_only: false,
                    source: Source::Fixed,
                }
            } else if let Some(hp) = &volume.host_path {
                Ready {
                    path: host::host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))
                        .map_err(fail)?,
                    read_only: false,
                    source: Source::Fixed,
                }
            } else if let Some(claim) = &volume.persistent_volume_claim {
                Ready {
                    path: host::claim_path(
                        client,
                        &fields.namespace,
                        &claim.claim_name,
                        pod.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .unwrap_or_default(),
                    )
                    .await
                    .map_err(fail)?,
                    read_only: claim.read_only == Some(true),
                    source: Source::Fixed,
                }
            } else if let Some(src) = &volume.config_map {
                project_config_map(client, &fields.namespace, src, &dir)
                    .await
                    .map_err(fail)?;
                Ready {
                    path: dir,
                    read_only: true,
                    source: Source::ConfigMap(src.clone()),
                }
            } else if let Some(src) = &volume.secret {
                host::memory_dir(&dir, &fields.uid, &name, None).map_err(fail)?;
                project_secret(client, &fields.namespace, src, &dir)
                    .await
                    .map_err(fail)?;
                Ready {
                    path: dir,
                    read_only: true,
                    source: Source::Secret(src.clone()),
                }
            } else if let Some(src) = &volume.downward_api {
                let payload = projection::downward_payload(src, pod, fields).map_err(fail)?;
                projection::write_atomic(&dir, &payload).map_err(fail)?;
                Ready {
                    path: dir,
                    read_only: true,
                    source: Source::Downward(src.clone()),
                }
            } else {
                let kind = source_kind(volume).unwrap_or_else(|| "(none)".into());
                return Err(fail(format!(
                    "volume type {kind:?} is not supported by this agent; supported: {SUPPORTED}"
                )));
            };
            volumes.insert(name, ready);
        }
        Ok(PodVolumes { volumes })
    }

    /// Re-project configMap and secret volumes from the API (when `api` is set) and
    /// downwardAPI volumes from `pod`. Failures keep the files as they were and are logged.
    pub async fn resync(&self, client: &Client, api: bool, pod: &Pod, fields: &PodFields) {
        for (name, ready) in &self.volumes {
            let result = match &ready.source {
                Source::Fixed => continue,
                Source::ConfigMap(src) if api => {
                    project_config_map(client, &fields.namespace, src, &ready.path).await
                }
                Source::Secret(src) if api => {
                    project_secret(client, &fields.namespace, src, &ready.path).await
                }
                Source::Downward(src) => projection::downward_payload(src, pod, fields)
                    .and_then(|p| projection::write_atomic(&ready.path, &p)),
                _ => continue,
            };
            match result {
                Ok(true) => {
                    tracing::debug!(pod = %fields.name, namespace = %fields.namespace, volume = %name, "volume files updated")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(pod = %fields.name, namespace = %fields.namespace, volume = %name, error = %e, "cannot update the volume's files")
                }
            }
        }
    }

    /// The bind mounts of `container`'s `volumeMounts`.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>, String> {
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let ready = self.volumes.get(&vm.name).ok_or_else(|| {
                format!(
                    "volumeMounts: volume {:?} is not one of the pod's volumes",
                    vm.name
                )
            })?;
            if vm.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(format!(
                    "volumeMounts {:?}: subPathExpr is not supported by this agent; use subPath",
                    vm.name
                ));
            }
            if vm.mount_propagation.as_deref() == Some("Bidirectional") {
                return Err(format!(
                    "volumeMounts {:?}: mountPropagation Bidirectional is not supported by this \
                     agent",
                    vm.name
                ));
            }
            let target = PathBuf::from(&vm.mount_path);
            if !target.is_absolute() {
                return Err(format!(
                    "volumeMounts {:?}: mountPath {:?} must be absolute",
                    vm.name, vm.mount_path
                ));
            }
            let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                None => ready.path.clone(),
                Some(sub) => sub_path(&ready.path, sub)
                    .map_err(|e| format!("volumeMounts {:?}: subPath {sub:?}: {e}", vm.name))?,
            };
            mounts.push(Mount {
                source,
                target,
                read_only: ready.read_only || vm.read_only == Some(true),
            });
        }
        Ok(mounts)
    }
}

/// `sub` inside volume directory `root`: created as a directory when missing (as the kubelet
/// does), and refused when it resolves (through symlinks) outside the volume.
fn sub_path(root: &Path, sub: &str) -> Result<PathBuf, String> {
    let rel = Path::new(sub);
    if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
        return Err("must be a relative path without \"..\"".into());
    }
    let full = root.join(rel);
    if std::fs::symlink_metadata(&full).is_err() {
        std::fs::create_dir_all(&full).map_err(|e| format!("{}: {e}", full.display()))?;
    }
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let real = full
        .canonicalize()
        .map_err(|e| format!("{}: {e}", full.display()))?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "resolves to {}, outside its volume",
            real.display()
        ));
    }
    Ok(real)
}

/// Undo what setting up pod `uid`'s volumes mounted (tmpfs) before its directory is removed.
pub fn tear_down(pod_dir: &Path, uid: &str) {
    host::release_memory(&volumes_root(pod_dir), uid);
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::VolumeMount;

    use super::*;

    #[test]
    fn sub_paths_stay_inside_their_volume() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        let real_root = root.canonicalize().unwrap();
        assert_eq!(
            sub_path(&root, "new/dir").unwrap(),
            real_root.join("new/dir")
        );
        assert!(root.join("new/dir").is_dir());
        assert_eq!(sub_path(&root, "file").unwrap(), real_root.join("file"));
        for bad in ["../x", "/abs", "escape", "escape/passwd"] {
            assert!(sub_path(&root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mounts_resolve_volumes_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let cm = dir.path().join("cm");
        std::fs::create_dir_all(cm.join("sub")).unwrap();
        let volumes = PodVolumes {
            volumes: [
                (
                    "data".to_string(),
                    Ready {
                        path: dir.path().to_path_buf(),
                        read_only: false,
                        source: Source::Fixed,
                    },
                ),
                (
                    "config".to_string(),
                    Ready {
                        path: cm.clone(),
                        read_only: true,
                        source: Source::Fixed,
                    },
                ),
            ]
            .into(),
        };
        let vm = |name: &str, path: &str, sub: Option<&str>, ro: Option<bool>| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            sub_path: sub.map(str::to_string),
            read_only: ro,
            ..Default::default()
        };
        let c = Container {
            volume_mounts: Some(vec![
                vm("data", "/data", None, None),
                vm("data", "/ro", None, Some(true)),
                vm("config", "/etc/app", Some("sub"), Some(false)),
            ]),
            ..Default::default()
        };
        let mounts = volumes.mounts(&c).unwrap();
        let got: Vec<(PathBuf, &str, bool)> = mounts
            .iter()
            .map(|m| (m.source.clone(), m.target.to_str().unwrap(), m.read_only))
            .collect();
        assert_eq!(
            got,
            [
                (dir.path().to_path_buf(), "/data", false),
                (dir.path().to_path_buf(), "/ro", true),
                (cm.canonicalize().unwrap().join("sub"), "/etc/app", true),
            ]
        );
        let c = Container {
            volume_mounts: Some(vec![vm("nope", "/x", None, None)]),
            ..Default::default()
        };
        assert!(volumes
            .mounts(&c)
            .unwrap_err()
            .contains("not one of the pod's volumes"));
    }

    #[test]
    fn unsupported_volume_types_are_named() {
        let v: Volume = serde_json::from_value(serde_json::json!({
            "name": "x", "projected": {"sources": []}
        }))
        .unwrap();
        assert_eq!(source_kind(&v).as_deref(), Some("projected"));
    }
}
