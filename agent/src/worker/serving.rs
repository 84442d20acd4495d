//! What a pod worker tells the agent service ([`crate::serve`]) about its pod: its directory,
//! address and each container's running instance, republished whenever one starts or exits.

use super::Worker;
use crate::serve::pods::{ContainerEntry, PodEntry};

impl Worker {
    /// Publish the pod as it is now to the agent service.
    pub(super) fn publish(&self) {
        let entry = PodEntry {
            uid: self.uid.clone(),
            dir: self.dir.clone(),
            ip: self.ip.clone(),
            containers: self
                .slots
                .iter()
                .map(|s| ContainerEntry {
                    name: s.container.name.clone(),
                    init: s.init,
                    running: s.live.as_ref().map(|l| l.id.clone()),
                    pid: s.live.as_ref().and_then(|l| l.pid),
                })
                .collect(),
        };
        self.ctx.node_pods.add(&self.namespace, &self.name, entry);
    }
}
