//! The worker's configuration hooks: the ConfigMaps and Secrets a container's environment
//! refers to (fetched before each start), the pod's volumes (set up before its first container
//! starts, re-projected periodically and when the pod's metadata changes, released with the
//! pod), and retrying containers whose configuration is not there yet: a missing ConfigMap,
//! Secret, key or claim keeps the container waiting (`CreateContainerConfigError`, or
//! `ContainerCreating` with the `MountVolume.SetUp failed …` message for volumes) and is tried
//! again with a back-off of [`RETRY_BASE`] doubling to [`RETRY_MAX`], as the kubelet's pod
//! sync retries.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use tokio::time::Instant;

use super::{waiting, Worker};
use crate::env::{self, NodeAllocatable, PodFields, Sources};
use crate::runtime::Mount;
use crate::volumes::{self, get_optional, PodVolumes};

/// The first retry of a container whose configuration is missing.
pub(super) const RETRY_BASE: Duration = Duration::from_millis(500);
/// The longest wait between retries.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(10);
/// How often configMap and secret volumes are re-read from the API.
pub(super) const RESYNC: Duration = Duration::from_secs(10);

/// What the hooks remember between calls.
pub(super) struct ConfigState {
    volumes: Option<PodVolumes>,
    /// After a failed volume set-up: when to try again, and the failures so far.
    volume_retry: Option<(Instant, u32)>,
    /// Configuration failures per slot, for the back-off.
    failures: HashMap<usize, u32>,
    next_resync: Instant,
    /// The labels and annotations downwardAPI files were last written from.
    projected_meta: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

impl ConfigState {
    pub(super) fn new() -> ConfigState {
        ConfigState {
            volumes: None,
            volume_retry: None,
            failures: HashMap::new(),
            next_resync: Instant::now() + RESYNC,
            projected_meta: None,
        }
    }

    /// When the worker must wake up for these hooks.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        match (&self.volumes, self.volume_retry) {
            (Some(_), _) => Some(self.next_resync),
            (None, Some((at, _))) => Some(at),
            (None, None) => None,
        }
    }

    /// A container's configuration was complete: its back-off starts over.
    pub(super) fn succeeded(&mut self, slot: usize) {
        self.failures.remove(&slot);
    }
}

fn retry_delay(failures: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(1u32 << failures.min(16))
        .min(RETRY_MAX)
}

impl Worker {
    /// What the pod's env and downwardAPI volumes may refer to.
    pub(super) fn pod_fields(&self) -> PodFields {
        let meta = &self.pod.metadata;
        PodFields {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            uid: self.uid.clone(),
            node_name: self.ctx.options.node_name.clone(),
            service_account: self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            pod_ip: self.ip.clone(),
            host_ip: self.ctx.options.host_ip.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            allocatable: NodeAllocatable::from_quantities(
                &self.ctx.options.cpu,
                &self.ctx.options.memory,
            ),
        }
    }

    /// Fetch the ConfigMaps and Secrets container `c`'s environment refers to.
    pub(super) async fn env_sources(
        &self,
        c: &Container,
    ) -> Result<Sources, (&'static str, String)> {
        let (config_maps, secrets) = env::referenced(c);
        let mut sources = Sources::default();
        let failed = |what: &str, name: &str, e: rkube_client::Error| {
            (
                "CreateContainerConfigError",
                format!("cannot read {what} {name:?}: {e}"),
            )
        };
        for name in config_maps {
            let cm = get_optional::<ConfigMap>(&self.ctx.client, &self.namespace, &name)
                .await
                .map_err(|e| failed("configmap", &name, e))?;
            sources.config_maps.insert(name, cm);
        }
        for name in secrets {
            let secret = get_optional::<Secret>(&self.ctx.client, &self.namespace, &name)
                .await
                .map_err(|e| failed("secret", &name, e))?;
            sources.secrets.insert(name, secret);
        }
        Ok(sources)
    }

    /// Container `i`'s configuration is incomplete: it waits with `reason` and is tried again
    /// after the back-off.
    pub(super) fn config_failed(&mut self, i: usize, reason: &str, message: String) {
        let failures = self.config.failures.entry(i).or_insert(0);
        let delay = retry_delay(*failures);
        *failures += 1;
        let slot = &mut self.slots[i];
        tracing::info!(pod = %self.name, namespace = %self.namespace, container = %slot.container.name, reason, %message, retry_in = ?delay, "container configuration incomplete");
        slot.status.state = Some(waiting(reason, Some(message)));
        slot.restart_at = Some(Instant::now() + delay);
    }

    /// Set up the pod's volumes unless done; `false` while they are not (the containers then
    /// wait with the reason).
    pub(super) async fn volumes_ready(&mut self) -> bool {
        if self.config.volumes.is_some() {
            return true;
        }
        let failures = match self.config.volume_retry {
            Some((at, _)) if at > Instant::now() => return false,
            Some((_, failures)) => failures,
            None => 0,
        };
        let fields = self.pod_fields();
        match PodVolumes::set_up(&self.ctx.client, &self.pod, &fields, &self.dir).await {
            Ok(v) => {
                self.config.volumes = Some(v);
                self.config.volume_retry = None;
                self.config.projected_meta = Some((fields.labels, fields.annotations));
                true
            }
            Err(e) => {
                let delay = retry_delay(failures);
                tracing::info!(pod = %self.name, namespace = %self.namespace, error = %e, retry_in = ?delay, "cannot set up the pod's volumes");
                self.config.volume_retry = Some((Instant::now() + delay, failures + 1));
                let message = e.to_string();
                for slot in self
                    .slots
                    .iter_mut()
                    .filter(|s| s.live.is_none() && !s.blocked)
                {
                    let reason = slot
                        .status
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.clone())
                        .unwrap_or_else(|| "ContainerCreating".into());
                    slot.status.state = Some(waiting(&reason, Some(message.clone())));
                }
                false
            }
        }
    }

    /// Keep projected volumes current: configMap and secret volumes every [`RESYNC`],
    /// downwardAPI volumes as soon as the pod's labels or annotations change.
    pub(super) async fn keep_volumes_current(&mut self) {
        let Some(volumes) = &self.config.volumes else {
            return;
        };
        let fields = self.pod_fields();
        let meta = (fields.labels.clone(), fields.annotations.clone());
        let due = Instant::now() >= self.config.next_resync;
        if !due && self.config.projected_meta.as_ref() == Some(&meta) {
            return;
        }
        volumes
            .resync(&self.ctx.client, due, &self.pod, &fields)
            .await;
        self.config.projected_meta = Some(meta);
        if due {
            self.config.next_resync = Instant::now() + RESYNC;
        }
    }

    /// The bind mounts of container `c`'s `volumeMounts`.
    pub(super) fn container_mounts(
        &self,
        c: &Container,
    ) -> Result<Vec<Mount>, (&'static str, String)> {
        if c.volume_mounts.as_ref().is_none_or(|m| m.is_empty()) {
            return Ok(Vec::new());
        }
        self.ctx.runtime.check_mounts().map_err(|e| {
            (
                "CreateContainerError",
                format!("container {:?}: {e}", c.name),
            )
        })?;
        let volumes = self.config.volumes.as_ref().ok_or((
            "ContainerCreating",
            "the pod's volumes are not set up yet".to_string(),
        ))?;
        volumes.mounts(c).map_err(|e| {
            (
                "CreateContainerConfigError",
                format!("container {:?}: {e}", c.name),
            )
        })
    }

    /// Release what the pod's volumes hold on this node (tmpfs mounts) before its directory
    /// is removed.
    pub(super) fn release_volumes(&self) {
        volumes::tear_down(&self.dir, &self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling() {
        let delays: Vec<u64> = (0..7).map(|n| retry_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
    }
}
