//! Finishing the deletion of local volumes on this node: the local provisioner's
//! PersistentVolumes carry node affinity to the node that holds their directory and a finalizer;
//! when the PV controller deletes one (reclaim policy Delete) it names the directory in an
//! annotation, and the agent of that node — the only process that can reach it on a multi-machine
//! cluster — removes the directory, then the finalizer, which lets the object go.
//!
//! The names below are the controllers' (`rkube_controllers::controllers::volume`); the agent is
//! an API client only and cannot depend on that crate.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use rkube_client::{Client, KindRef, ListParams, WatchEvent};

use super::get_optional;

/// The local provisioner's finalizer on the volumes it creates.
pub const DIRECTORY_FINALIZER: &str = "rkube.io/local-volume-directory";
/// The directory to remove, set by the PV controller when it deletes a released volume.
pub const REMOVE_DIRECTORY_ANNOTATION: &str = "rkube.io/remove-directory";
/// The node label the provisioned volumes' node affinity names.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// How often volumes whose clean-up failed are tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What this node does for a deleted local volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Remove the directory, then the finalizer.
    RemoveDirectory(PathBuf),
    /// Remove only the finalizer: the volume was deleted by hand rather than reclaimed (its
    /// data stays, as Kubernetes keeps a deleted volume's data), or the directory it names is
    /// not one the agent may remove (the reason).
    ReleaseOnly(Option<String>),
}

/// The node a local volume lives on: the single value of its node affinity's
/// `kubernetes.io/hostname In [...]` requirement, as the local provisioner writes it.
pub fn volume_node(pv: &PersistentVolume) -> Option<&str> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let [term] = terms.as_slice() else {
        return None;
    };
    let [req] = term.match_expressions.as_deref()? else {
        return None;
    };
    match req.values.as_deref() {
        Some([value]) if req.key == HOSTNAME_LABEL && req.operator == "In" => Some(value),
        _ => None,
    }
}

/// What the agent of the node whose `kubernetes.io/hostname` is `hostname` must do for `pv`:
/// `None` unless the volume is being deleted, still holds [`DIRECTORY_FINALIZER`] and lives on
/// this node.
pub fn cleanup_for(pv: &PersistentVolume, hostname: &str) -> Option<Cleanup> {
    let meta = &pv.metadata;
    let held = meta
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == DIRECTORY_FINALIZER));
    if meta.deletion_timestamp.is_none() || !held || volume_node(pv) != Some(hostname) {
        return None;
    }
    let Some(dir) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(REMOVE_DIRECTORY_ANNOTATION))
    else {
        return Some(Cleanup::ReleaseOnly(None));
    };
    let host_path = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| h.path.as_str());
    if host_path != Some(dir.as_str()) {
        return Some(Cleanup::ReleaseOnly(Some(format!(
            "annotation {REMOVE_DIRECTORY_ANNOTATION}={dir:?} is not the volume's hostPath {:?}",
            host_path.unwrap_or_default()
        ))));
    }
    match removable(Path::new(dir)) {
        Ok(()) => Some(Cleanup::RemoveDirectory(PathBuf::from(dir))),
        Err(why) => Some(Cleanup::ReleaseOnly(Some(why))),
    }
}

/// A directory the agent may remove: absolute, without `.`/`..` components, at least two levels
/// below `/`.
fn removable(dir: &Path) -> Result<(), String> {
    let mut depth = 0;
    for c in dir.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(_) => depth += 1,
            _ => return Err(format!("{} is not a normalized path", dir.display())),
        }
    }
    if !dir.is_absolute() || depth < 2 {
        return Err(format!(
            "{} is not an absolute path at least two levels below /",
            dir.display()
        ));
    }
    Ok(())
}

/// Watch PersistentVolumes and finish the deletion of those on this node (see the module docs)
/// until the task is dropped. Failures are logged and retried every few seconds.
pub async fn run(client: Client, hostname: String) {
    let kind = KindRef::of::<PersistentVolume>();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut stream = Box::pin(client.watch(&kind, &ListParams::default(), true));
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                        let pv: PersistentVolume = match serde_json::from_value(obj) {
                            Ok(pv) => pv,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot decode a watched persistentvolume");
                                continue;
                            }
                        };
                        if cleanup_for(&pv, &hostname).is_some() {
                            let name = pv.metadata.name.clone().unwrap_or_default();
                            if finish(&client, &name, &hostname).await {
                                pending.remove(&name);
                            } else {
                                pending.insert(name);
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "persistentvolume watch ended; listing again");
                        break;
                    }
                    None => break,
                },
                _ = retry.tick(), if !pending.is_empty() => {
                    let names: Vec<String> = pending.iter().cloned().collect();
                    for name in names {
                        if finish(&client, &name, &hostname).await {
                            pending.remove(&name);
                        }
                    }
                }
            }
        }
        retry.tick().await;
    }
}

/// Clean up volume `name` as [`cleanup_for`] says, reading it afresh; `true` when nothing is
/// left to do.
async fn finish(client: &Client, name: &str, hostname: &str) -> bool {
    let pv: PersistentVolume = match get_optional(client, "", name).await {
        Ok(Some(pv)) => pv,
        Ok(None) => return true,
        Err(e) => {
            tracing::warn!(volume = name, error = %e, "cannot read a deleted persistentvolume; retrying");
            return false;
        }
    };
    let Some(cleanup) = cleanup_for(&pv, hostname) else {
        return true;
    };
    match &cleanup {
        Cleanup::RemoveDirectory(dir) => match std::fs::remove_dir_all(dir) {
            Ok(()) => {
                tracing::info!(volume = name, dir = %dir.display(), "removed the directory of a deleted local volume");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(volume = name, dir = %dir.display(), error = %e, "cannot remove the directory of a deleted local volume; retrying");
                return false;
            }
        },
        Cleanup::ReleaseOnly(Some(why)) => {
            tracing::warn!(volume = name, reason = %why, "not removing the directory of a deleted local volume");
        }
        Cleanup::ReleaseOnly(None) => {}
    }
    let mut released = pv;
    if let Some(f) = released.metadata.finalizers.as_mut() {
        f.retain(|f| f != DIRECTORY_FINALIZER);
    }
    match client.update_typed(&released).await {
        Ok(_) => true,
        Err(rkube_client::Error::NotFound(_)) => true,
        Err(e) => {
            tracing::info!(volume = name, error = %e, "cannot remove the finalizer of a deleted local volume; retrying");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        PersistentVolumeSpec, VolumeNodeAffinity,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn volume(node: &str, path: &str, annotation: Option<&str>) -> PersistentVolume {
        let mut pv = PersistentVolume::default();
        pv.metadata.name = Some("pvc-1".into());
        pv.metadata.finalizers = Some(vec![DIRECTORY_FINALIZER.into()]);
        pv.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
        pv.metadata.annotations = annotation.map(|dir| {
            BTreeMap::from([(REMOVE_DIRECTORY_ANNOTATION.to_string(), dir.to_string())])
        });
        pv.spec = Some(PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource {
                path: path.into(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn only_the_volumes_node_removes_its_directory() {
        let dir = "/var/lib/rkube/volumes/default-data-web-0-abcdef12";
        let pv = volume("n1", dir, Some(dir));
        assert_eq!(volume_node(&pv), Some("n1"));
        assert_eq!(
            cleanup_for(&pv, "n1"),
            Some(Cleanup::RemoveDirectory(PathBuf::from(dir)))
        );
        assert_eq!(cleanup_for(&pv, "n2"), None, "another node's volume");

        let mut live = pv.clone();
        live.metadata.deletion_timestamp = None;
        assert_eq!(cleanup_for(&live, "n1"), None, "not being deleted");
        let mut released = pv.clone();
        released.metadata.finalizers = Some(vec!["other".into()]);
        assert_eq!(cleanup_for(&released, "n1"), None, "finalizer already gone");
    }

    #[test]
    fn a_volume_deleted_by_hand_or_naming_an_odd_directory_is_only_released() {
        let dir = "/var/lib/rkube/volumes/x";
        assert_eq!(
            cleanup_for(&volume("n1", dir, None), "n1"),
            Some(Cleanup::ReleaseOnly(None)),
            "no reclaim annotation: the data stays"
        );
        for (path, annotation) in [
            (dir, "/etc"),
            ("/", "/"),
            ("/srv", "/srv"),
            ("/srv/../etc", "/srv/../etc"),
            ("relative/dir", "relative/dir"),
        ] {
            let got = cleanup_for(&volume("n1", path, Some(annotation)), "n1");
            assert!(
                matches!(got, Some(Cleanup::ReleaseOnly(Some(_)))),
                "{path} {annotation}: {got:?}"
            );
        }
    }
}
