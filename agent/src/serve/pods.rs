//! What the agent's service needs to know about the pods on this node: each pod's uid,
//! directory and address, and each container's current instance (runtime id and main process),
//! kept by the pod workers as containers start and exit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// The pods on this node, by namespace and name.
#[derive(Default)]
pub struct NodePods {
    pods: Mutex<HashMap<(String, String), PodEntry>>,
}

/// One pod as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub uid: String,
    /// Where its containers' logs are.
    pub dir: PathBuf,
    /// `POD_IP`; empty when it has none.
    pub ip: String,
    /// Init containers first, then app containers, in the spec's order.
    pub containers: Vec<ContainerEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEntry {
    pub name: String,
    pub init: bool,
    /// The runtime's id of the running instance.
    pub running: Option<String>,
    /// The running instance's main process, where the runtime has one on this host.
    pub pid: Option<u32>,
}

impl PodEntry {
    /// The container `name`, or the only app container when `name` is empty.
    pub fn container(&self, pod: &str, name: &str) -> Result<&ContainerEntry, ContainerError> {
        if name.is_empty() {
            let app: Vec<_> = self.containers.iter().filter(|c| !c.init).collect();
            return match app.as_slice() {
                [only] => Ok(only),
                _ => Err(ContainerError::Ambiguous {
                    pod: pod.to_string(),
                    choices: self.names(),
                }),
            };
        }
        self.containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ContainerError::NotFound {
                pod: pod.to_string(),
                container: name.to_string(),
                choices: self.names(),
            })
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.containers.iter().map(|c| c.name.as_str()).collect();
        format!("[{}]", names.join(" "))
    }

    /// The current log of `container`, or the previous instance's.
    pub fn log_path(&self, container: &str, previous: bool) -> PathBuf {
        if previous {
            self.dir.join(format!("{container}.previous.log"))
        } else {
            self.dir.join(format!("{container}.log"))
        }
    }
}

/// Why a request's container does not name one of the pod's containers (Kubernetes' wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    #[error("a container name must be specified for pod {pod}, choose one of: {choices}")]
    Ambiguous { pod: String, choices: String },
    #[error("container {container} is not valid for pod {pod}, choose one of: {choices}")]
    NotFound {
        pod: String,
        container: String,
        choices: String,
    },
}

impl NodePods {
    /// Record pod `namespace/name` as its worker sees it now (replacing what was recorded).
    pub fn add(&self, namespace: &str, name: &str, entry: PodEntry) {
        self.lock()
            .insert((namespace.to_string(), name.to_string()), entry);
    }

    /// The pod worker ended.
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.lock();
        let key = (namespace.to_string(), name.to_string());
        if pods.get(&key).is_some_and(|p| p.uid == uid) {
            pods.remove(&key);
        }
    }

    /// Pod `namespace/name`, if it runs here (and has uid `uid`, when one is given).
    pub fn get(&self, namespace: &str, name: &str, uid: &str) -> Option<PodEntry> {
        self.lock()
            .get(&(namespace.to_string(), name.to_string()))
            .filter(|p| uid.is_empty() || p.uid == uid)
            .cloned()
    }

    /// Every pod, by namespace and name.
    pub fn all(&self) -> Vec<((String, String), PodEntry)> {
        let mut all: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PodEntry>> {
        self.pods.lock().expect("node pods lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[(&str, bool)]) -> PodEntry {
        PodEntry {
            uid: "u1".into(),
            dir: "/d".into(),
            ip: "127.1.1.1".into(),
            containers: names
                .iter()
                .map(|(n, init)| ContainerEntry {
                    name: n.to_string(),
                    init: *init,
                    running: None,
                    pid: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_only_app_container_is_the_default_and_others_are_listed() {
        let pod = entry(&[("setup", true), ("web", false)]);
        assert_eq!(pod.container("p", "").unwrap().name, "web");
        assert_eq!(pod.container("p", "setup").unwrap().name, "setup");
        assert_eq!(
            pod.container("p", "db").unwrap_err().to_string(),
            "container db is not valid for pod p, choose one of: [setup web]"
        );
        let two = entry(&[("a", false), ("b", false)]);
        assert_eq!(
            two.container("p", "").unwrap_err().to_string(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
    }

    #[test]
    fn pods_are_told_apart_by_uid() {
        let pods = NodePods::default();
        pods.add("ns", "p", entry(&[("web", false)]));
        assert!(pods.get("ns", "p", "").is_some());
        assert!(pods.get("ns", "p", "u1").is_some());
        assert!(pods.get("ns", "p", "u2").is_none());
        // A worker of an older pod with the same name does not remove the new one.
        pods.remove("ns", "p", "other");
        assert!(pods.get("ns", "p", "").is_some());
        pods.remove("ns", "p", "u1");
        assert!(pods.all().is_empty());
    }
}
