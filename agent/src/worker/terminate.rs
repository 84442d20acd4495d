//! Ending a pod on this node: every running container stopped at once (SIGTERM, then SIGKILL
//! after the grace period), then the deletion confirmed to the API with a zero grace period,
//! only for this pod's uid, retried until it is done or the pod is gone.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Error as ApiError, KindRef};
use tokio::sync::watch;

use super::{Desired, Worker};
use crate::runtime::Started;

impl Worker {
    /// Stop every running container, all at once, each with `grace`.
    pub(super) async fn stop_all(&mut self, grace: Duration) {
        let runtime = self.ctx.runtime.clone();
        let live: Vec<(String, Started)> = self
            .slots
            .iter_mut()
            .filter_map(|s| {
                s.probes = None;
                Some((s.container.name.clone(), s.live.take()?))
            })
            .collect();
        let pod = self.name.as_str();
        let stops = live.iter().map(|(name, started)| {
            let runtime = runtime.clone();
            async move {
                match runtime.stop(&started.id, grace).await {
                    Ok(exit) => tracing::debug!(%pod, container = %name, exit_code = exit.exit_code, "container stopped"),
                    Err(e) => tracing::warn!(%pod, container = %name, error = %e, "container not stopped"),
                }
                runtime.remove(&started.id);
            }
        });
        join_all(stops).await;
    }

    /// Tell the API the containers are gone: delete with a zero grace period (only this pod,
    /// by uid), retrying until it is done or the pod is gone.
    pub(super) async fn confirm_deletion(&self, desired: &mut watch::Receiver<Desired>) {
        let mut delay = Duration::from_millis(100);
        loop {
            let req = rkube_proto::api::DeleteRequest {
                grace_period_seconds: Some(0),
                precondition_uid: self.uid.clone(),
                ..Default::default()
            };
            match self
                .ctx
                .client
                .delete(&KindRef::of::<Pod>(), &self.namespace, &self.name, req)
                .await
            {
                Ok(_) | Err(ApiError::NotFound(_)) | Err(ApiError::Conflict(_)) => return,
                Err(e) => {
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "pod deletion not confirmed yet");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                changed = desired.changed() => {
                    let done = changed.is_err() || !matches!(*desired.borrow_and_update(), Desired::Pod(_));
                    if done {
                        return;
                    }
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
